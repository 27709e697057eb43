import { readFileSync } from 'node:fs';
import { startGroupLearner } from '@ringcast/multicast';
import { ConfigError, loadCluster } from '@ringcast/ring-paxos';
import { groupsFlag, intFlag, parse } from './flags.js';
import { launchLocalRing, spawnRingcast, stopProcess, type LocalRing, type Spawned } from './local.js';
import { percentile } from './progress.js';

const HELP = `ringcast bench multiring [--rings 1,2,4] [--size 8192] [--seconds S] [--warmup W] [--outstanding K] [--repeat N]
  Multi-Ring Paxos on 127.0.0.1: the same 3 acceptor processes in every ring (the rings' coordinators spread
  over them), one proposer process with a proposer on every ring. For
  each k it prints one JSON line per learner layout: one learner subscribed to all k groups ('all') and k
  learners on disjoint rings ('disjoint'), with the aggregate delivered payload MB/s, the CPU seconds of
  every process (acceptors, proposers, learners) per delivered MB, and the ratio to the one-ring figure
  measured first in the same run. Then one line for an idle subscribed ring: 2 rings, load on ring 0 only,
  the p99 latency of a learner of {g0,g1} next to a learner of {g0} at the same time.
  --warmup W --seconds S: each point runs W s before a window of S s (default 2 + 6; with 1 + 3 the k = 4
  points swung by a third between rounds). After W s it also waits (up to 30 s) until every acceptor log of
  every loaded ring is trimming, then 1 s more: the logs hold their full retention and the acceptors' memory
  has stopped growing, so the window sees the steady state ('warmupSeconds' and 'steady' in the diagnostics
  on stderr, with the acceptors' page faults in the window).
  --outstanding: values in flight over all proposers (default about 2 MiB of payload), split over rings.
  --repeat N: N rounds, each measuring every layout once in turn (so a slow spell of the machine hits all
  of them alike); each line is then the round with the median MB/s for that layout, and each ratio is the
  median over rounds of that round's ratio to its own one-ring point. 'runs', 'ratioRuns' and
  'costRatioRuns' list every round's figures. The idle-ring line is then the round with the median added
  p99 ('addedRuns' lists them).
`;

function line(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function note(s: string): void {
  process.stderr.write(`bench multiring: ${s}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const round = (x: number, d = 3): number => Number(x.toFixed(d));

const SETTINGS = { lambda: 20000, skipIntervalMs: 5, maxValueBytes: 32768, maxDatagramBytes: 34816 };

/** USER_HZ: the unit of utime and stime in /proc/<pid>/stat on Linux. */
const TICKS_PER_SEC = 100;

/**
 * Linux: the fields of /proc/<pid>/stat after the command name (which may hold spaces), so index 0 is
 * field 3 (state) of proc(5); undefined when the process is gone or this is not Linux.
 */
function procStat(pid: number | undefined): string[] | undefined {
  if (pid === undefined) return undefined;
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Linux: user + system CPU seconds a process has used so far (0 when it is gone or this is not Linux). */
export function cpuSecondsOf(pid: number | undefined): number {
  const f = procStat(pid);
  // utime and stime: fields 14 and 15.
  return f ? (Number(f[11]) + Number(f[12])) / TICKS_PER_SEC : 0;
}

/** Linux: minor page faults a process has taken so far (0 when it is gone or this is not Linux). */
export function minorFaultsOf(pid: number | undefined): number {
  const f = procStat(pid);
  return f ? Number(f[7]) : 0; // minflt: field 10
}

/** Each sample of a metric on a node's /metrics: its label text (`ring="0"`, or '' without labels) and value. */
export async function metricSamples(port: number, name: string): Promise<Array<{ labels: string; value: number }>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  const out: Array<{ labels: string; value: number }> = [];
  for (const l of (await res.text()).split('\n')) {
    if (!l.startsWith(name)) continue;
    const c = l[name.length];
    if (c !== ' ' && c !== '{') continue;
    const labels = c === '{' ? l.slice(name.length + 1, l.indexOf('}')) : '';
    out.push({ labels, value: Number(l.slice(l.lastIndexOf(' ') + 1)) });
  }
  return out;
}

/** Sum of a metric's samples (all label sets) on a node's /metrics. */
export async function metricValue(port: number, name: string): Promise<number> {
  return (await metricSamples(port, name)).reduce((a, x) => a + x.value, 0);
}

/** Linux: the machine's CPU ticks so far, all and stolen (a VM's vCPUs waiting for the host); zeros elsewhere. */
export function machineTicks(): { total: number; steal: number } {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    return { total: f.slice(0, 8).reduce((a, b) => a + b, 0), steal: f[7] ?? 0 };
  } catch {
    return { total: 0, steal: 0 };
  }
}

/** The share of the machine's CPU time stolen by the host between two machineTicks() readings. */
export function stealShare(a: { total: number; steal: number }, b: { total: number; steal: number }): number {
  const total = b.total - a.total;
  return total > 0 ? Number(((b.steal - a.steal) / total).toFixed(3)) : 0;
}

/**
 * Hidden: a learner process of the given groups (startGroupLearner). It measures from SIGUSR2 for
 * `seconds`: delivered values and bytes, the latency carried in the first 8 bytes of each value
 * (process.hrtime.bigint at propose time, every `every`-th value) and its own CPU time.
 */
export async function groupSink(args: string[]): Promise<number> {
  const o = parse(args, { cluster: { type: 'string' }, groups: { type: 'string' }, seconds: { type: 'string' }, every: { type: 'string' } });
  if (typeof o.cluster !== 'string') throw new ConfigError('--cluster', 'is required');
  if (typeof o.groups !== 'string') throw new ConfigError('--groups', 'is required');
  const cluster = loadCluster(o.cluster);
  const windowMs = intFlag(o.seconds, 'seconds', 3, 1, 600) * 1000;
  const every = intFlag(o.every, 'every', 4, 1, 1 << 20);
  let values = 0;
  let bytes = 0;
  let before = 0;
  let seen = 0;
  const lat: number[] = [];
  let measuring = false;
  let finish: () => void = () => {};
  const done = new Promise<void>((r) => (finish = r));
  let tStart = 0;
  let tEnd = 0;
  let cpu0 = process.cpuUsage();
  let cpu = { user: 0, system: 0 };
  const learner = await startGroupLearner(cluster, {
    groups: groupsFlag(cluster, o.groups, '--groups'),
    onDeliver(ds) {
      if (!measuring) {
        before += ds.length;
        return;
      }
      const ns = process.hrtime.bigint();
      for (const g of ds) {
        const d = g.delivery.data;
        values++;
        bytes += d.length;
        if (d.length >= 8 && ++seen % every === 0) {
          const sent = Buffer.from(d.buffer, d.byteOffset, 8).readBigUInt64LE(0);
          lat.push(Number(ns - sent) / 1e6);
        }
      }
    },
  });
  process.on('SIGUSR2', () => {
    if (measuring || tStart !== 0) return;
    cpu0 = process.cpuUsage();
    tStart = performance.now();
    measuring = true;
    setTimeout(() => {
      measuring = false;
      tEnd = performance.now();
      cpu = process.cpuUsage(cpu0);
      finish();
    }, windowMs);
  });
  line({ event: 'ready', rings: learner.rings });
  await done;
  await learner.stop();
  lat.sort((a, b) => a - b);
  line({
    event: 'result',
    values,
    bytes,
    seconds: (tEnd - tStart) / 1000,
    deliveredBeforeWindow: before,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    p50: percentile(lat, 0.5),
    p99: percentile(lat, 0.99),
    lat: lat.map((x) => round(x)),
  });
  return 0;
}


/** Longest wait past --warmup for every acceptor log to reach its retention, and the settling time after. */
const STEADY_WAIT_MS = 30_000;
const SETTLE_MS = 1000;

/** The lowest `ringcast_acceptor_trimmed_below` over every node and each of `rings` (0 when one is missing). */
export async function lowestTrimmed(ports: number[], rings: number[]): Promise<number> {
  const all = await Promise.all(ports.map((p) => metricSamples(p, 'ringcast_acceptor_trimmed_below')));
  let low = Infinity;
  for (const samples of all) {
    for (const r of rings) {
      const x = samples.find((v) => v.labels.split(',').includes(`ring="${r}"`));
      low = Math.min(low, x?.value ?? 0);
    }
  }
  return low === Infinity ? 0 : low;
}

/**
 * Wait until every node's acceptor log of each of `rings` (the loaded ones; an idle ring's skips fill little)
 * is trimmed above 0: it holds its full retention and stops growing. False when `ms` pass first.
 */
async function logsTrimming(ports: number[], rings: number[], ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (;;) {
    // A node that does not answer (busy, restarting) is "not yet"; the deadline bounds the wait.
    if ((await lowestTrimmed(ports, rings).catch(() => 0)) > 0) return true;
    if (performance.now() >= deadline) return false;
    await sleep(250);
  }
}

interface Point {
  /** Delivered payload bytes per second over all learners. */
  MBps: number;
  cpuSeconds: { acceptors: number; proposers: number; learners: number; total: number };
  windowSeconds: number;
  /** From the load's start to the window's: --warmup, then until every acceptor log trimmed (see `steady`). */
  warmupSeconds: number;
  /** Every acceptor log of every loaded ring was trimming (full retention) before the window; false: gave up waiting. */
  steady: boolean;
  /** Share of the machine's CPU time the host stole during the window. */
  steal: number;
  /** Counters summed over the acceptor processes for the whole run. */
  nodes: Record<string, number>;
  deliveredMB: number;
  lat: number[];
  sinks: Array<Record<string, unknown>>;
}

/**
 * One measurement: `rings` rings, a proposer on each ring in `loadRings`, one learner per entry of `sinks`
 * (a list of groups each). CPU of every process comes from /proc over the same window the learners measure.
 */
async function measure(opts: {
  rings: number;
  loadRings: number[];
  sinks: string[][];
  size: number;
  outstandingPerRing: number;
  warmup: number;
  seconds: number;
  every: number;
}): Promise<Point> {
  const groups: Record<string, number> = {};
  for (let r = 0; r < opts.rings; r++) groups[`g${r}`] = r;
  const settings = { ...SETTINGS, maxOutstanding: Math.max(4096, opts.outstandingPerRing) };
  const ring: LocalRing = await launchLocalRing({ acceptors: 3, rings: opts.rings, groups, mergeM: 1, settings, rotateCoordinators: true, metrics: true });
  const sinks: Spawned[] = [];
  const loads: Spawned[] = [];
  try {
    for (const gs of opts.sinks) {
      sinks.push(spawnRingcast(['bench', 'group-sink', '--cluster', ring.clusterPath, '--groups', gs.join(','), '--seconds', String(opts.seconds), '--every', String(opts.every)]));
    }
    await Promise.all(sinks.map((s) => s.waitFor('ready', 30000)));
    await sleep(200);
    // One proposer process for all loaded rings (an application multicasting to k groups), so every k
    // runs the same processes apart from the rings themselves.
    loads.push(
      spawnRingcast([
        'bench',
        'ring-load',
        '--cluster',
        ring.clusterPath,
        '--group',
        opts.loadRings.map((r) => `g${r}`).join(','),
        '--size',
        String(opts.size),
        '--outstanding',
        String(opts.outstandingPerRing * opts.loadRings.length),
        '--seconds',
        String(opts.warmup + (STEADY_WAIT_MS + SETTLE_MS) / 1000 + opts.seconds + 30),
      ]),
    );
    await Promise.all(loads.map((l) => l.waitFor('ready', 30000)));
    const tLoad = performance.now();
    await sleep(opts.warmup * 1000);
    const ports = await Promise.all(ring.nodes.map(async (n) => (await n.waitFor('ready')).metricsPort as number));
    // Measure the steady state: until every acceptor log of every loaded ring holds its full retention (logRetain
    // instances below what the learners delivered) the acceptors grow their heaps, and the page faults and
    // garbage collection of that growth land in the window. k rings fill k logs at 1/k of the rate each, so a
    // fixed warm-up charged that one-time cost to k > 1 alone (at k = 4 with 2 s: about 130,000 acceptor page
    // faults in a 4 s window against 8,000 at k = 1).
    const steady = await logsTrimming(ports, opts.loadRings, STEADY_WAIT_MS);
    if (steady) await sleep(SETTLE_MS);
    const warmupSeconds = (performance.now() - tLoad) / 1000;
    const pids = {
      acceptors: ring.nodes.map((n) => n.child.pid),
      proposers: loads.map((l) => l.child.pid),
      learners: sinks.map((s) => s.child.pid),
    };
    const sample = (): Record<keyof typeof pids, number> => ({
      acceptors: pids.acceptors.reduce<number>((a, p) => a + cpuSecondsOf(p), 0),
      proposers: pids.proposers.reduce<number>((a, p) => a + cpuSecondsOf(p), 0),
      learners: pids.learners.reduce<number>((a, p) => a + cpuSecondsOf(p), 0),
    });
    // Read just before the window: every loaded ring's log was trimming by then (the test checks it).
    const trimmedAtWindow = await lowestTrimmed(ports, opts.loadRings).catch(() => 0);
    const c0 = sample();
    const f0 = pids.acceptors.reduce<number>((a, p) => a + minorFaultsOf(p), 0);
    const m0 = machineTicks();
    const t0 = performance.now();
    for (const s of sinks) s.child.kill('SIGUSR2');
    await sleep(opts.seconds * 1000);
    const c1 = sample();
    const acceptorPageFaults = pids.acceptors.reduce<number>((a, p) => a + minorFaultsOf(p), 0) - f0;
    const steal = stealShare(m0, machineTicks());
    const windowSeconds = (performance.now() - t0) / 1000;
    const results = await Promise.all(sinks.map((s) => s.waitFor('result', 60000)));
    // What the acceptor processes did over the whole run (diagnostics; stderr).
    const sum = async (name: string): Promise<number> => (await Promise.all(ports.map((p) => metricValue(p, name)))).reduce((a, b) => a + b, 0);
    const instances = await sum('ringcast_batch_bytes_count');
    const nodes = {
      instances,
      meanBatchBytes: Math.round((await sum('ringcast_batch_bytes_sum')) / Math.max(1, instances)),
      skips: await sum('ringcast_skips'),
      retransmittedInstances: await sum('ringcast_retransmitted_instances'),
      phase2Retransmissions: await sum('ringcast_phase2_retransmissions'),
      datagramsReceived: await sum('ringcast_received_datagrams_total'),
      datagramsSent: await sum('ringcast_sent_datagrams_total'),
      dropped: await sum('ringcast_datagrams_dropped_total'),
      acceptorPageFaults,
      trimmedAtWindow,
    };
    const cpu = { acceptors: c1.acceptors - c0.acceptors, proposers: c1.proposers - c0.proposers, learners: c1.learners - c0.learners, total: 0 };
    cpu.total = cpu.acceptors + cpu.proposers + cpu.learners;
    const bytes = results.reduce((a, r) => a + (r.bytes as number), 0);
    const MBps = results.reduce((a, r) => a + (r.bytes as number) / (r.seconds as number), 0) / 1e6;
    const lat = results.flatMap((r) => r.lat as number[]).sort((a, b) => a - b);
    return {
      MBps,
      cpuSeconds: cpu,
      windowSeconds,
      warmupSeconds,
      steady,
      steal,
      nodes,
      deliveredMB: bytes / 1e6,
      lat,
      sinks: results.map((r) => ({
        values: r.values,
        MBps: round((r.bytes as number) / (r.seconds as number) / 1e6, 2),
        deliveredBeforeWindow: r.deliveredBeforeWindow,
        cpuSeconds: round(r.cpuSeconds as number),
        p50: round(r.p50 as number),
        p99: round(r.p99 as number),
      })),
    };
  } finally {
    await Promise.all([...loads, ...sinks].map((p) => stopProcess(p)));
    await ring.stop();
  }
}

export async function benchMultiring(args: string[]): Promise<number> {
  const o = parse(args, {
    rings: { type: 'string' },
    size: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    outstanding: { type: 'string' },
    every: { type: 'string' },
    repeat: { type: 'string' },
  });
  if (o.help) return void process.stdout.write(HELP), 0;
  const ks = [...new Set((typeof o.rings === 'string' ? o.rings : '1,2,4').split(',').map((s, i) => intFlag(s, `rings[${i}]`, 1, 1, 16)))].sort((a, b) => a - b);
  if (ks[0] !== 1) ks.unshift(1); // the one-ring figure is always measured first
  const size = intFlag(o.size, 'size', 8192, 8, SETTINGS.maxValueBytes);
  const seconds = intFlag(o.seconds, 'seconds', 6, 1, 600);
  const warmup = intFlag(o.warmup, 'warmup', 2, 0, 60);
  const every = intFlag(o.every, 'every', 4, 1, 1 << 20);
  // As bench ring: about 2 MiB of payload in flight in total, split over the proposers of the rings.
  const total = intFlag(o.outstanding, 'outstanding', Math.max(64, Math.min(2048, Math.floor((2 << 20) / size))), 1, 65536);
  const repeat = intFlag(o.repeat, 'repeat', 1, 1, 9);
  const layouts = ks.flatMap((k) => (k === 1 ? (['all'] as const) : (['all', 'disjoint'] as const)).map((learners) => ({ k, learners })));
  const runs: Point[][] = layouts.map(() => []);
  for (let round_ = 0; round_ < repeat; round_++) {
    for (const [i, { k, learners }] of layouts.entries()) {
      const groups = Array.from({ length: k }, (_, r) => `g${r}`);
      const sinks = learners === 'all' ? [groups] : groups.map((g) => [g]);
      const perRing = Math.max(16, Math.ceil(total / k));
      note(`${repeat > 1 ? `round ${round_ + 1}/${repeat}: ` : ''}${k} ring(s), learners ${learners}, ${size}-byte values, ${perRing} in flight per ring, ${warmup}+${seconds} s ...`);
      const p = await measure({ rings: k, loadRings: groups.map((_, r) => r), sinks, size, outstandingPerRing: perRing, warmup, seconds, every });
      note(`diagnostics ${JSON.stringify({ cpuSeconds: objRound(p.cpuSeconds), windowSeconds: round(p.windowSeconds), warmupSeconds: round(p.warmupSeconds, 1), steady: p.steady, nodes: p.nodes, sinks: p.sinks })}`);
      if (!p.steady) note(`the acceptor logs did not all reach their retention within ${STEADY_WAIT_MS / 1000} s past the warm-up: this point includes their growth`);
      runs[i]!.push(p);
    }
  }
  /** The round with the median MB/s of a layout. */
  const median = (ps: Point[]): Point => [...ps].sort((a, b) => a.MBps - b.MBps)[Math.floor(ps.length / 2)]!;
  const mid = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const cpuPerMBOf = (p: Point): number => p.cpuSeconds.total / Math.max(1e-9, p.deliveredMB);
  const one = median(runs[0]!);
  for (const [i, { k, learners }] of layouts.entries()) {
    const p = median(runs[i]!);
    const cpuPerMB = cpuPerMBOf(p);
    // Each ratio is taken within a round (this layout against the one-ring point of the same round, minutes
    // apart at most), then the median over rounds: the machine's speed drifts between rounds by more than
    // the differences measured.
    const ratios = runs[i]!.map((r, j) => r.MBps / runs[0]![j]!.MBps);
    const costRatios = runs[i]!.map((r, j) => cpuPerMBOf(runs[0]![j]!) / cpuPerMBOf(r));
    line({
      bench: 'multiring',
      rings: k,
      learners,
      valueBytes: size,
      outstandingPerRing: Math.max(16, Math.ceil(total / k)),
      payloadMBps: round(p.MBps, 2),
      cpuCores: round(p.cpuSeconds.total / p.windowSeconds, 2),
      cpuSecondsPerMB: round(cpuPerMB, 4),
      oneRingMBps: round(one.MBps, 2),
      ratioToOneRing: round(mid(ratios)),
      // MB per CPU second relative to one ring: the cost target (>= 0.8 at the same CPU).
      costRatioToOneRing: round(mid(costRatios)),
      latencyMs: { p50: round(percentile(p.lat, 0.5)), p99: round(percentile(p.lat, 0.99)) },
      // Share of the machine's CPU time the host stole in the window: high values make the line unreliable.
      steal: p.steal,
      ...(repeat > 1 ? { runs: runs[i]!.map((r) => round(r.MBps, 1)), ratioRuns: ratios.map((x) => round(x)), costRatioRuns: costRatios.map((x) => round(x)) } : {}),
    });
  }
  // An idle subscribed ring: 2 rings, load on ring 0 only; a learner of {g0,g1} and one of {g0} at once.
  // With --repeat N, N rounds and the one with the median added p99.
  const idles: Array<{ point: Point; added: number }> = [];
  for (let round_ = 0; round_ < repeat; round_++) {
    note(`${repeat > 1 ? `round ${round_ + 1}/${repeat}: ` : ''}idle ring: 2 rings, load on g0 only, learners {g0,g1} and {g0}, ${warmup}+${seconds} s ...`);
    const point = await measure({ rings: 2, loadRings: [0], sinks: [['g0', 'g1'], ['g0']], size, outstandingPerRing: total, warmup, seconds, every: 1 });
    note(`diagnostics ${JSON.stringify({ warmupSeconds: round(point.warmupSeconds, 1), steady: point.steady, nodes: point.nodes, sinks: point.sinks })}`);
    idles.push({ point, added: (point.sinks[0]!.p99 as number) - (point.sinks[1]!.p99 as number) });
  }
  const chosen = [...idles].sort((a, b) => a.added - b.added)[Math.floor(idles.length / 2)]!;
  const idle = chosen.point;
  const withIdle = idle.sinks[0]!;
  const alone = idle.sinks[1]!;
  line({
    bench: 'multiring-idle',
    valueBytes: size,
    payloadMBps: round((withIdle.MBps as number) ?? 0, 2),
    p50WithIdleMs: withIdle.p50,
    p50AloneMs: alone.p50,
    p99WithIdleMs: withIdle.p99,
    p99AloneMs: alone.p99,
    addedMs: round(chosen.added),
    skipIntervalMs: SETTINGS.skipIntervalMs,
    steal: idle.steal,
    ...(repeat > 1 ? { addedRuns: idles.map((x) => round(x.added)) } : {}),
  });
  return 0;
}

function objRound(o: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, round(v)]));
}
