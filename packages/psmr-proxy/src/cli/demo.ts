import { RingMetrics, START_NEXT, startClient } from '@ringcast/ring-paxos';
import { intFlag, parse } from '../cli.js';
import { launchLocalRing } from './local.js';
import { percentile, proposeLoop, RateDisplay } from './progress.js';

const HELP = `ringcast demo [--seconds S] [--values N] [--size B] [--outstanding K] [--metrics-port P]
  Starts a ring of 3 acceptor processes on 127.0.0.1 (embedded static cluster file), a learner and a
  proposer in this process, orders values for S seconds (default 10) or N values, shows the live rate, and
  ends with a JSON summary. /metrics of this process is served while it runs.
`;

export async function runDemo(args: string[]): Promise<number> {
  const o = parse(args, {
    seconds: { type: 'string' },
    values: { type: 'string' },
    size: { type: 'string' },
    outstanding: { type: 'string' },
    'metrics-port': { type: 'string' },
  });
  if (o.help) return void process.stdout.write(HELP), 0;
  const seconds = intFlag(o.seconds, 'seconds', 10, 1, 3600);
  const maxValues = intFlag(o.values, 'values', Number.MAX_SAFE_INTEGER, 1, Number.MAX_SAFE_INTEGER);
  const size = intFlag(o.size, 'size', 1024, 16, 30000);
  const outstanding = intFlag(o.outstanding, 'outstanding', 512, 1, 4096);
  const ring = await launchLocalRing({ acceptors: 3 });
  const metrics = new RingMetrics({ role: 'demo' });
  const server = await metrics.serve(intFlag(o['metrics-port'], 'metrics-port', 0, 0, 65535));
  process.stderr.write(`ringcast demo: ring of 3 acceptors (pids ${ring.nodes.map((n) => n.child.pid).join(', ')}), cluster file ${ring.clusterPath}\n`);
  process.stderr.write(`ringcast demo: metrics at http://127.0.0.1:${server.port}/metrics\n`);
  let delivered = 0;
  let deliveredBytes = 0;
  const learner = await startClient(ring.cluster, {
    learnFrom: START_NEXT,
    metrics,
    hooks: {
      onDeliver(ds) {
        delivered += ds.length;
        for (const d of ds) deliveredBytes += d.data.length;
      },
    },
  });
  const proposer = await startClient(ring.cluster, { propose: true, metrics });
  const display = new RateDisplay('ordered', 'values');
  const latencies: number[] = [];
  const payload = Buffer.alloc(size, 0x61);
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  let proposed = 0;
  let failed = 0;
  const tick = setInterval(() => display.update(delivered, deliveredBytes), 500);
  try {
    const r = await proposeLoop(
      (d) => proposer.propose(d),
      outstanding,
      (k) => (k < maxValues && performance.now() < deadline ? payload : undefined),
      (ms) => latencies.length < 1_000_000 && latencies.push(ms),
    );
    proposed = r.proposed;
    failed = r.failed;
    const until = performance.now() + 2000;
    while (delivered < proposed - failed && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
  } finally {
    clearInterval(tick);
    display.done(delivered, deliveredBytes);
    await proposer.stop();
    await learner.stop();
    await server.close();
    await ring.stop();
  }
  const elapsed = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const summary = {
    event: 'summary',
    values: delivered,
    seconds: Number(elapsed.toFixed(3)),
    valuesPerSecond: Math.round(delivered / elapsed),
    payloadMBps: Number((deliveredBytes / elapsed / 1e6).toFixed(2)),
    ackLatencyMs: { p50: Number(percentile(latencies, 0.5).toFixed(3)), p99: Number(percentile(latencies, 0.99).toFixed(3)) },
    failed,
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  return delivered === proposed - failed && failed === 0 ? 0 : 1;
}
