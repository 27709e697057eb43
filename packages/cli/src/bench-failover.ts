import { loadavg } from 'node:os';
import { ERR, ConfigError, DEFAULT_RING_SETTINGS } from '@ringcast/ring-paxos';
import { intFlag, parse } from './flags.js';
import { runKvLoad } from './kv-load.js';
import { kvService, modeNamed } from '@ringcast/psmr-proxy';
import { metricSamples, metricValue } from './bench-multiring.js';
import { launchLocalRing, spawnRingcast, stopProcess, type LocalRing, type Spawned } from './local.js';
import { percentile } from './progress.js';
import { launchLocalPsmr } from './psmr-local.js';
import { shareFlag } from './replica.js';

/** A psmr kill's measuring window; the killed node is restarted at its end. */
const GAP_WINDOW_MS = 4000;
/** From one kill to the next (the restarted node back in the rings, the load steady again). */
const SLOT_MS = 7000;

const HELP = `ringcast bench failover [--layer ring|psmr] [--kills N] [--durable sync|async]
                        [--gall-share X] [--soak S] [--trace]
  --layer ring (default): a ring of 3 acceptors (durable logs) on 127.0.0.1 under a steady proposal load; N
  times: kill -9 the current coordinator, time until a learner delivers the next value, restart the killed
  node from its log, let the ring settle. It runs with its own settings (heartbeatMs 50,
  coordinatorTimeoutMs 300, acceptorTimeoutMs 300, retryTimeoutMs 100), not the cluster defaults.
  --layer psmr: the P-SMR key-value store with default ring settings (3 acceptor processes with async logs,
  rings g0, g1 and gall, coordinators spread over the nodes, 2 replica processes). A closed-loop kv-load
  first measures the rate it sustains; then a kv-load at half that rate runs throughout (in this process)
  while the coordinator of each ring in turn is killed with kill -9, N times, and restarted from its log
  ${GAP_WINDOW_MS / 1000} s later (one kill every ${SLOT_MS / 1000} s). Per kill, the client-observed gap: per group, the longest time that group's
  commands went unanswered after the kill; the gap is the maximum over groups (a partition that kept working
  does not hide one that stopped).
  --trace (psmr): per kill, on stderr: per replica worker and ring, the longest time its delivered count
  stood still after the kill and the merge stall it added; which node coordinates each ring before and after.
  --soak S (psmr): first run the load S seconds without a kill, and count the takeovers and ballot changes
  the acceptors report in that time (a false takeover under load; 1-minute load average sampled too).
  Prints one JSON line: bench "failover", layer, gapMs (psmr) or msToNextDelivery (ring), p50, max, settings.
`;

function line(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function benchFailover(args: string[]): Promise<number> {
  const o = parse(args, { layer: { type: 'string' }, kills: { type: 'string' }, durable: { type: 'string' }, 'gall-share': { type: 'string' }, soak: { type: 'string' }, trace: { type: 'boolean' } });
  if (o.help) return void process.stdout.write(HELP), 0;
  const layer = o.layer ?? 'ring';
  if (layer === 'ring') return benchRingFailover(intFlag(o.kills, 'kills', 5, 1, 100), durableFlag(o.durable, 'sync'));
  if (layer !== 'psmr') throw new ConfigError('--layer', `must be ring or psmr, got ${JSON.stringify(layer)}`);
  return benchPsmrFailover(intFlag(o.kills, 'kills', 6, 0, 100), durableFlag(o.durable, 'async'), shareFlag(o['gall-share'], 'gall-share', 0.1), intFlag(o.soak, 'soak', 0, 0, 3600), o.trace === true);
}

function durableFlag(v: string | boolean | undefined, dflt: 'sync' | 'async'): 'sync' | 'async' {
  const d = v ?? dflt;
  if (d !== 'sync' && d !== 'async') throw new ConfigError('--durable', `must be sync or async, got ${JSON.stringify(d)}`);
  return d;
}

/** Metrics port of every live node of `ring`, by node id. */
async function livePorts(ring: LocalRing): Promise<Map<number, number>> {
  const ports = new Map<number, number>();
  for (let id = 1; id <= ring.nodes.length; id++) {
    const n = ring.nodes[id - 1]!;
    if (n.child.exitCode !== null || n.child.signalCode !== null) continue;
    ports.set(id, (await n.waitFor('ready')).metricsPort as number);
  }
  return ports;
}

/** Which node coordinates ring `r` now: the one whose metrics report a window for it. */
async function currentCoordinator(ring: LocalRing, r = 0): Promise<number | undefined> {
  for (const [id, port] of await livePorts(ring)) {
    try {
      const s = await metricSamples(port, 'ringcast_window_size');
      if (s.some((x) => x.labels.split(',').includes(`ring="${r}"`) && x.value > 0)) return id;
    } catch {
      /* not answering */
    }
  }
  return undefined;
}

/** Takeovers so far and the promised ballot of every (node, ring), from every live node's metrics. */
async function ballots(ring: LocalRing): Promise<{ takeovers: number; promised: Map<string, number> }> {
  let takeovers = 0;
  const promised = new Map<string, number>();
  for (const [id, port] of await livePorts(ring)) {
    takeovers += await metricValue(port, 'ringcast_takeovers');
    for (const x of await metricSamples(port, 'ringcast_promised_ballot')) promised.set(`${id}:${x.labels}`, x.value);
  }
  return { takeovers, promised };
}

async function benchPsmrFailover(kills: number, durable: 'sync' | 'async', gallShare: number, soakSeconds: number, trace: boolean): Promise<number> {
  const workers = 2;
  const local = await launchLocalPsmr({ mode: 'psmr', workers, ringArgs: { metrics: true, durable } });
  const ring = local.ring;
  const gapMs: number[] = [];
  const perGroup: Array<Record<string, number>> = [];
  let closedLoop = 0;
  let soak: Record<string, unknown> | undefined;
  let clientRetries = 0;
  try {
    // The closed-loop rate, measured on this cluster in this run.
    const base = ['kv-load', '--cluster', local.clusterPath, '--mode', 'psmr', '--workers', String(workers), '--gall-share', String(gallShare), '--quiet'];
    const closed = spawnRingcast([...base, '--seconds', '3', '--warmup', '1']);
    closedLoop = (await closed.waitFor('summary', 60_000)).perSecond as number;
    await closed.exited;
    const rate = Math.max(1, Math.round(closedLoop / 2));
    process.stderr.write(`bench failover: closed loop ${Math.round(closedLoop)} commands/s; load at ${rate}/s\n`);

    // Per group: the last answer, and (while a kill is measured) the longest wait since the kill.
    const psmr = modeNamed('psmr');
    const groups = psmr.replicaGroups(workers);
    const last = new Map<string, number>(groups.map((g) => [g, 0]));
    const worst = new Map<string, number>();
    let killedAt = -1;
    const onReply = (c: Parameters<typeof kvService.group>[0], err: Error | null): void => {
      const code = (err as { code?: string } | null)?.code;
      if (code === ERR.NO_REPLY || code === ERR.STOPPED) return;
      const g = psmr.route(kvService.group(c, workers));
      const t = performance.now();
      if (killedAt >= 0) worst.set(g, Math.max(worst.get(g) ?? 0, t - Math.max(last.get(g)!, killedAt)));
      last.set(g, t);
    };
    const warmMs = 3000;
    const seconds = Math.ceil((warmMs + soakSeconds * 1000 + kills * SLOT_MS) / 1000) + 1;
    const load = runKvLoad({ cluster: local.cluster, mode: 'psmr', workers, rate, gallShare, seconds, onReply });
    const loadDone = load.then(
      (r) => void (clientRetries = r.retries),
      (e: Error) => e,
    );
    await sleep(warmMs);
    if (soakSeconds > 0) {
      const b0 = await ballots(ring);
      const loads: number[] = [];
      const t0 = performance.now();
      while (performance.now() - t0 < soakSeconds * 1000) {
        await sleep(Math.min(10_000, soakSeconds * 1000 - (performance.now() - t0)));
        loads.push(loadavg()[0]!);
      }
      const b1 = await ballots(ring);
      let ballotChanges = 0;
      for (const [k, v] of b1.promised) if (b0.promised.get(k) !== v) ballotChanges++;
      soak = {
        seconds: soakSeconds,
        takeovers: b1.takeovers - b0.takeovers,
        ballotChanges,
        loadAvg1m: { min: Math.min(...loads), mean: Number((loads.reduce((a, b) => a + b, 0) / loads.length).toFixed(2)), max: Math.max(...loads) },
      };
      process.stderr.write(`bench failover: soak ${JSON.stringify(soak)}\n`);
    }
    for (let k = 0; k < kills; k++) {
      const r = k % (workers + 1);
      const slot = performance.now();
      const coord = await currentCoordinator(ring, r);
      if (coord === undefined) throw new Error(`no node reports a window for ring ${r}`);
      worst.clear();
      const before = trace ? await coordinators(ring, workers + 1) : [];
      killedAt = performance.now();
      await ring.kill(coord);
      const traced = trace ? traceLearners(local.metricsPorts, killedAt, killedAt + GAP_WINDOW_MS - 100) : undefined;
      const nodeTrace = trace ? traceNodes(await livePorts(ring), killedAt, killedAt + GAP_WINDOW_MS - 100) : undefined;
      await sleep(GAP_WINDOW_MS - (performance.now() - killedAt));
      if (traced) {
        const after = await coordinators(ring, workers + 1);
        process.stderr.write(`bench failover: trace kill ${k + 1}: coordinators by ring before ${JSON.stringify(before)} after ${JSON.stringify(after)}; ${await traced}\n  nodes: ${await nodeTrace}\n`);
      }
      // A group that has not answered since is still waiting: its gap runs to now.
      const end = performance.now();
      for (const g of groups) worst.set(g, Math.max(worst.get(g) ?? 0, end - Math.max(last.get(g)!, killedAt)));
      killedAt = -1;
      const row = Object.fromEntries(groups.map((g) => [g, Math.round(worst.get(g)!)]));
      const gap = Math.max(...Object.values(row));
      gapMs.push(gap);
      perGroup.push(row);
      process.stderr.write(`bench failover: kill ${k + 1}/${kills}: ring ${r} coordinator ${coord}, gap ${gap} ms ${JSON.stringify(row)}\n`);
      await ring.restart(coord);
      await sleep(SLOT_MS - (performance.now() - slot));
    }
    const err = await loadDone;
    if (err) throw err;
  } finally {
    await local.stop();
  }
  const sorted = [...gapMs].sort((a, b) => a - b);
  const s = DEFAULT_RING_SETTINGS;
  line({
    bench: 'failover',
    layer: 'psmr',
    durable,
    kills,
    closedLoopPerSec: Math.round(closedLoop),
    gapMs,
    perGroup,
    p50: percentile(sorted, 0.5),
    max: sorted[sorted.length - 1] ?? null,
    soak: soak ?? null,
    // Commands the client proxy sent again after its retryMs (a proposal lost with a coordinator).
    clientRetries,
    settings: { heartbeatMs: s.heartbeatMs, coordinatorTimeoutMs: s.coordinatorTimeoutMs, acceptorTimeoutMs: s.acceptorTimeoutMs, retryTimeoutMs: s.retryTimeoutMs, progressIntervalMs: s.progressIntervalMs },
  });
  return 0;
}

/** The node coordinating each of rings 0..n-1 (null: none reports a window). */
async function coordinators(ring: LocalRing, n: number): Promise<Array<number | null>> {
  const out: Array<number | null> = [];
  for (let r = 0; r < n; r++) out.push((await currentCoordinator(ring, r)) ?? null);
  return out;
}

/** Replica metrics whose first and last value in a kill's window the trace prints. */
const LEARNER_SPAN = ['ringcast_learner_next_instance', 'ringcast_retransmit_requests', 'ringcast_merge_backlog'];
/** Node metrics whose first and last value in a kill's window the trace prints. */
const NODE_SPAN = ['ringcast_learners', 'ringcast_skips', 'ringcast_window_occupancy', 'ringcast_retransmitted_instances', 'ringcast_proposer_outstanding'];

/**
 * Poll the replicas' learner metrics every 25 ms from `from` until `until`: per (replica, worker, ring), the
 * longest time its delivered count stood still after `from`, and the merge stall seconds it added.
 */
async function traceLearners(ports: number[], from: number, until: number): Promise<string> {
  const lastChange = new Map<string, { value: number; at: number; longest: number }>();
  const stall0 = new Map<string, number>();
  const stall = new Map<string, number>();
  const span = new Map<string, { first: number; last: number }>();
  const key = (port: number, labels: string): string => `${port}/${labels.split(',').filter((l) => !l.startsWith('replica=')).map((l) => l.replace(/"/g, '')).join(',')}`;
  for (let polls = 0; performance.now() < until && polls < 400; polls++) {
    for (const port of ports) {
      try {
        const now = performance.now();
        for (const x of await metricSamples(port, 'ringcast_values_delivered_total')) {
          const k = key(port, x.labels);
          const e = lastChange.get(k);
          if (!e) lastChange.set(k, { value: x.value, at: from, longest: now - from });
          else if (x.value !== e.value) {
            e.longest = Math.max(e.longest, now - e.at);
            e.value = x.value;
            e.at = now;
          } else e.longest = Math.max(e.longest, now - e.at);
        }
        for (const name of LEARNER_SPAN) {
          for (const x of await metricSamples(port, name)) {
            const k = `${key(port, x.labels)}:${name.slice('ringcast_'.length)}`;
            const e = span.get(k);
            if (!e) span.set(k, { first: x.value, last: x.value });
            else e.last = x.value;
          }
        }
        for (const x of await metricSamples(port, 'ringcast_merge_stall_seconds_total')) {
          const k = key(port, x.labels);
          if (!stall0.has(k)) stall0.set(k, x.value);
          stall.set(k, x.value - stall0.get(k)!);
        }
      } catch {
        /* not answering */
      }
    }
    await sleep(25);
  }
  const still = [...lastChange].map(([k, e]) => `${k}:${Math.round(e.longest)}`).join(' ');
  const stalls = [...stall].map(([k, v]) => `${k}:${Math.round(v * 1000)}`).join(' ');
  const spans = [...span].map(([k, e]) => `${k}:${e.first}->${e.last}`).join(' ');
  return `longest still (ms) ${still}; merge stall added (ms) ${stalls}\n  learners: ${spans}`;
}

/** Node metrics whose changes make the trace's timeline (coordinator role, ballots, rejoin, decisions stopping). */
const NODE_TRACE = ['ringcast_window_size', 'ringcast_promised_ballot', 'ringcast_acceptor_rejoining', 'ringcast_takeovers'];

/**
 * Poll the live nodes' metrics every 25 ms from `from` until `until`: a timeline (ms after `from`) of every
 * change of NODE_TRACE per node and ring, and per node and ring the longest time its decided count stood still.
 */
async function traceNodes(ports: Map<number, number>, from: number, until: number): Promise<string> {
  const seen = new Map<string, number>();
  const events: string[] = [];
  const decided = new Map<string, { value: number; at: number; longest: number }>();
  const span = new Map<string, { first: number; last: number }>();
  for (let polls = 0; performance.now() < until && polls < 400; polls++) {
    for (const [id, port] of ports) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) });
        const now = performance.now();
        const t = Math.round(now - from);
        const present = new Set<string>();
        for (const l of (await res.text()).split('\n')) {
          const name = l.slice(0, l.search(/[ {]/));
          const ring = /ring="(\d+)"/.exec(l)?.[1];
          const v = Number(l.slice(l.lastIndexOf(' ') + 1));
          if (name === 'ringcast_instances_decided_total') {
            const k = `n${id}r${ring}`;
            const e = decided.get(k);
            const sp = span.get(`${k}:decided`);
            if (!sp) span.set(`${k}:decided`, { first: v, last: v });
            else sp.last = v;
            if (!e) decided.set(k, { value: v, at: now, longest: 0 });
            else if (v !== e.value) Object.assign(e, { longest: Math.max(e.longest, now - e.at), value: v, at: now });
            continue;
          }
          if (NODE_SPAN.includes(name)) {
            const k = `n${id}r${ring}:${name.slice('ringcast_'.length)}`;
            const e = span.get(k);
            if (!e) span.set(k, { first: v, last: v });
            else e.last = v;
            continue;
          }
          if (!NODE_TRACE.includes(name)) continue;
          const k = `n${id}r${ring}:${name.slice('ringcast_'.length)}`;
          present.add(k);
          if (seen.get(k) !== v) events.push(`${t}ms ${k}=${v}`);
          seen.set(k, v);
        }
        for (const k of seen.keys()) {
          if (k.startsWith(`n${id}r`) && !present.has(k) && seen.get(k) !== -1) {
            events.push(`${t}ms ${k} gone`);
            seen.set(k, -1);
          }
        }
      } catch {
        /* not answering */
      }
    }
    await sleep(25);
  }
  const still = [...decided].map(([k, e]) => `${k}:${Math.round(Math.max(e.longest, performance.now() - e.at))}`).join(' ');
  return `${events.join(', ')}\n  decided still (ms, coordinators only) ${still}\n  ${[...span].map(([k, e]) => `${k}:${e.first}->${e.last}`).join(' ')}`;
}

async function benchRingFailover(kills: number, durable: 'sync' | 'async'): Promise<number> {
  const settings = { heartbeatMs: 50, coordinatorTimeoutMs: 300, acceptorTimeoutMs: 300, retryTimeoutMs: 100, maxSends: 1000, learnerTimeoutMs: 1000 };
  const ring = await launchLocalRing({ acceptors: 3, metrics: true, durable, settings });
  const procs: Spawned[] = [];
  const times: number[] = [];
  try {
    const learner = spawnRingcast(['learn', '--cluster', ring.clusterPath, '--from', 'next', '--quiet', '--metrics-port', '0']);
    procs.push(learner);
    const lport = (await learner.waitFor('ready')).metricsPort as number;
    const load = spawnRingcast(['propose', '--cluster', ring.clusterPath, '--count', '100000000', '--rate', '2000', '--outstanding', '64', '--size', '64']);
    procs.push(load);
    const deliveredNow = (): Promise<number> => metricValue(lport, 'ringcast_values_delivered_total');
    await sleep(1500);
    for (let k = 0; k < kills; k++) {
      const coord = await currentCoordinator(ring);
      if (coord === undefined) throw new Error('no coordinator answers its metrics');
      const before = await deliveredNow();
      const t0 = performance.now();
      await ring.kill(coord);
      let t = 0;
      while (performance.now() - t0 < 20_000) {
        if ((await deliveredNow()) > before + 1) {
          t = performance.now() - t0;
          break;
        }
        await sleep(5);
      }
      if (t === 0) throw new Error(`no delivery within 20 s of killing coordinator ${coord}`);
      times.push(Math.round(t));
      process.stderr.write(`bench failover: kill ${k + 1}/${kills}: coordinator ${coord}, next delivery after ${Math.round(t)} ms\n`);
      await ring.restart(coord);
      await sleep(1500);
    }
  } finally {
    await Promise.all(procs.map((p) => stopProcess(p)));
    await ring.stop();
  }
  const sorted = [...times].sort((a, b) => a - b);
  line({ bench: 'failover', layer: 'ring', durable, kills, msToNextDelivery: times, p50: percentile(sorted, 0.5), max: sorted[sorted.length - 1], settings });
  return 0;
}
