import { Registry } from 'prom-client';
import { createServer } from 'node:http';
import { intFlag, listenHttp, parse } from './flags.js';
import { runKvLoad } from './kv-load.js';
import { modeFlag, shareFlag } from './replica.js';
import { modeNamed } from '@ringcast/psmr-proxy';
import { launchLocalPsmr } from './psmr-local.js';
import { RateDisplay } from './progress.js';

const HELP = `ringcast demo [--seconds S] [--workers N] [--mode psmr|smr] [--gall-share X] [--clients C] [--window W]
             [--metrics-port P]
  The main job on the embedded default (a static cluster file on 127.0.0.1): acceptor rings for g0..g<N-1>
  and gall (3 acceptor processes), two P-SMR replica processes with N worker threads (default 2) running the
  key-value store, and a key-value load from this process (default 10 s, 10% g_all commands) with a live
  rate. Ends with a JSON summary: commands/s, p50/p99 latency, the share of g_all commands, and whether the
  two replicas ended in the same state. /metrics: this process (client metrics) and each replica.
`;

export async function runDemo(args: string[]): Promise<number> {
  const o = parse(args, {
    seconds: { type: 'string' },
    workers: { type: 'string' },
    mode: { type: 'string' },
    'gall-share': { type: 'string' },
    clients: { type: 'string' },
    window: { type: 'string' },
    'metrics-port': { type: 'string' },
  });
  if (o.help) return void process.stdout.write(HELP), 0;
  const seconds = intFlag(o.seconds, 'seconds', 10, 1, 3600);
  const mode = modeFlag(o.mode);
  const workers = intFlag(o.workers, 'workers', 2, 1, 16);
  const share = shareFlag(o['gall-share'], 'gall-share', 0.1);
  const clients = intFlag(o.clients, 'clients', 2, 1, 64);
  const window = intFlag(o.window, 'window', 256, 1, 65536);
  const registry = new Registry();
  const server = createServer((_req, res) => void registry.metrics().then((t) => res.writeHead(200, { 'content-type': registry.contentType }).end(t)));
  const port = await listenHttp(server, intFlag(o['metrics-port'], 'metrics-port', 0, 0, 65535), '--metrics-port');
  const say = (s: string): void => void process.stderr.write(`ringcast demo: ${s}\n`);
  const groups = modeNamed(mode).replicaGroups(workers);
  say(`starting ${mode}: ${groups.length} ring(s) for ${groups.join(', ')} on 3 acceptor processes and two replicas...`);
  const local = await launchLocalPsmr({ mode, workers });
  let ok = false;
  try {
    say(`acceptors: pids ${local.ring.nodes.map((n) => n.child.pid).join(', ')}; cluster file ${local.clusterPath}`);
    say(`replicas: pids ${local.replicas.map((r) => r.child.pid).join(', ')}; /metrics and /state at ${local.metricsPorts.map((p) => `http://127.0.0.1:${p}`).join(' and ')}`);
    say(`client metrics at http://127.0.0.1:${port}/metrics`);
    process.stdout.write(`${JSON.stringify({ event: 'ready', metricsPort: port, replicaMetricsPorts: local.metricsPorts, clusterFile: local.clusterPath })}\n`);
    say(`running ${seconds} s of key-value commands (${Math.round(share * 100)}% to g_all), ${clients} clients x ${window} in flight`);
    const display = new RateDisplay('replied', 'commands');
    const r = await runKvLoad({ cluster: local.cluster, mode, workers: local.workers, seconds, gallShare: share, clients, window, registry, onTick: (n) => display.update(n, 0) });
    display.done(r.commands + r.errors, 0);
    // Both replicas end in the same state once they have executed everything.
    const states = async (): Promise<string[]> => Promise.all(local.metricsPorts.map(async (p) => JSON.stringify(((await (await fetch(`http://127.0.0.1:${p}/state`)).json()) as { workers: unknown }).workers)));
    let same = false;
    for (let i = 0; i < 50 && !same; i++) {
      const [a, b] = await states();
      same = a === b;
      if (!same) await new Promise((res) => setTimeout(res, 100));
    }
    ok = same && r.noReply === 0;
    process.stdout.write(
      `${JSON.stringify({
        event: 'summary',
        mode,
        workers: local.workers,
        seconds: r.seconds,
        commands: r.commands,
        commandsPerSecond: r.perSecond,
        latencyMs: r.latencyMs,
        gallShare: r.gallShare,
        errors: r.errors,
        retries: r.retries,
        replicasEqual: same,
      })}\n`,
    );
  } finally {
    await local.stop();
    server.close();
  }
  return ok ? 0 : 1;
}
