import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { ConfigError, hasName, ipv4Lookup, loadCluster, START_NEXT, startClient, suggest } from '@ringcast/ring-paxos';
import { ringsOf } from '@ringcast/multicast';
import { groupsFlag, intFlag, parse, untilSignal } from './flags.js';
import { benchMultiring, groupSink, machineTicks, metricValue, stealShare } from './bench-multiring.js';
import { benchFailover } from './bench-failover.js';
import { benchPsmr } from './bench-psmr.js';
import { freeUdpPorts, launchLocalRing, spawnRingcast, stopProcess, type Spawned } from './local.js';
import { percentile, proposeLoop } from './progress.js';

const RING_HELP = `ringcast bench ring [--sizes 1024,8192] [--seconds S] [--warmup W] [--outstanding K] [--batch B] [--window N]
  One ring (3 acceptors, 2 learners, 1 proposer, each a process) on 127.0.0.1. For each value size it
  prints one JSON line: values/s, payload MB/s, p50/p99 propose-to-delivery latency, the raw one-hop UDP
  MB/s measured in the same run with the ring's mean Phase 2A datagram size, and the wire efficiency
  = payload MB/s x copies / raw MB/s, copies = 1 + other ring acceptors + learners.
`;

/** The benchmarks, in the order the help lists them; `ringcast bench NAME --help` gives each one's options. */
export const BENCHES: ReadonlyArray<{ name: string; summary: string; run: (args: string[]) => Promise<number> }> = [
  { name: 'ring', summary: 'one ring on loopback against raw one-hop UDP: values/s, MB/s, p50/p99, wire efficiency', run: benchRing },
  { name: 'multiring', summary: 'k = 1, 2, 4 rings: MB/s and CPU s per MB vs one ring; idle-ring latency', run: benchMultiring },
  { name: 'psmr', summary: 'P-SMR key-value store: commands/s and p99 vs share of g_all, smr vs psmr; SVG plot', run: benchPsmr },
  { name: 'failover', summary: 'kill -9 coordinators under load: ring (next delivery) or psmr (client-observed gap)', run: benchFailover },
];

/** Processes the benchmarks start (sinks, sources, echo); not benchmarks, so not in the help. */
const HELPERS: Readonly<Record<string, (args: string[]) => Promise<number>>> = {
  'group-sink': groupSink,
  'udp-sink': udpSink,
  'udp-source': udpSource,
  'udp-echo': udpEcho,
  'udp-ping': udpPing,
  'hop-fanout': hopFanout,
  'hop-vote': hopVote,
  'hop-source': hopSource,
  'ring-sink': ringSink,
  'ring-load': ringLoad,
};

export const BENCH_HELP = `Usage: ringcast bench <name> [options]   (ringcast bench <name> --help: its options)

Benchmarks (JSON lines on stdout):
${BENCHES.map((b) => `  ${b.name.padEnd(10)} ${b.summary}\n`).join('')}`;

function line(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const nowNs = (): bigint => process.hrtime.bigint();

export async function runBenchCommand(args: string[]): Promise<number> {
  const [what, ...rest] = args;
  if (what === undefined || what === '--help' || what === '-h' || what === 'help') {
    process.stdout.write(BENCH_HELP);
    return 0;
  }
  const run = BENCHES.find((b) => b.name === what)?.run ?? (hasName(HELPERS, what) ? HELPERS[what] : undefined);
  if (run === undefined) {
    process.stderr.write(`ringcast bench: unknown benchmark '${what}'; ${suggest(what, BENCHES.map((b) => b.name))}\n\n${BENCH_HELP}`);
    return 2;
  }
  return run(rest);
}

/** Hidden: count UDP bytes received for `seconds` after the first datagram. */
async function udpSink(args: string[]): Promise<number> {
  const o = parse(args, { seconds: { type: 'string' } });
  const seconds = intFlag(o.seconds, 'seconds', 3, 1, 600);
  const sock = await loopbackSocket();
  let bytes = 0;
  let datagrams = 0;
  let t0 = 0n;
  let finish: () => void = () => {};
  const done = new Promise<void>((r) => (finish = r));
  sock.on('message', (m) => {
    if (t0 === 0n) {
      t0 = nowNs();
      setTimeout(finish, seconds * 1000);
      return;
    }
    bytes += m.length;
    datagrams++;
  });
  try {
    sock.setRecvBufferSize(8 << 20);
  } catch {
    /* default */
  }
  line({ event: 'ready', port: sock.address().port });
  await done;
  const secs = Number(nowNs() - t0) / 1e9;
  sock.close();
  line({ event: 'result', bytes, datagrams, seconds: secs, MBps: bytes / secs / 1e6 });
  return 0;
}

/**
 * A UDP socket bound to a free port on 127.0.0.1; socket errors (e.g. ICMP unreachable) are ignored. With
 * `big`, 8 MiB socket buffers (as ring nodes ask for) and the lookup ring nodes use.
 */
async function loopbackSocket(big = false): Promise<Socket> {
  const sock = big ? createSocket({ type: 'udp4', lookup: ipv4Lookup }) : createSocket('udp4');
  sock.on('error', () => {});
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  if (big) {
    try {
      sock.setRecvBufferSize(8 << 20);
      sock.setSendBufferSize(8 << 20);
    } catch {
      /* the kernel's limit */
    }
  }
  return sock;
}

/** Hidden: send every datagram back to where it came from, until stopped. */
async function udpEcho(_args: string[]): Promise<number> {
  const sock = await loopbackSocket();
  sock.on('message', (m, r) => sock.send(m, r.port, r.address));
  line({ event: 'ready', port: sock.address().port });
  await untilSignal();
  sock.close();
  return 0;
}

/**
 * Hidden: the latency baseline of a benchmark. Every millisecond it sends what `rate` says is due (16-byte
 * datagrams) to a `udp-echo` process for `seconds`, and prints the round-trip p50/p99: what one hop there
 * and back costs on this machine at that moment, before any ringcast code runs.
 */
async function udpPing(args: string[]): Promise<number> {
  const o = parse(args, { to: { type: 'string' }, rate: { type: 'string' }, seconds: { type: 'string' } });
  const port = intFlag(o.to, 'to', 0, 1, 65535);
  const rate = intFlag(o.rate, 'rate', 1000, 1, 100000);
  const seconds = intFlag(o.seconds, 'seconds', 3, 1, 600);
  const sock = await loopbackSocket();
  // Send times by seq in a ring: bounded memory whatever the rate; a reply older than the ring is ignored.
  const RING = 1 << 16;
  const sentAt = new Float64Array(RING);
  const sentSeq = new Int32Array(RING).fill(-1);
  const rtts: number[] = [];
  sock.on('message', (m) => {
    if (m.length < 4) return;
    const seq = m.readInt32LE(0);
    if (seq < 0 || sentSeq[seq & (RING - 1)] !== seq) return;
    sentSeq[seq & (RING - 1)] = -1;
    rtts.push(performance.now() - sentAt[seq & (RING - 1)]!);
  });
  const t0 = performance.now();
  let seq = 0;
  await new Promise<void>((resolve) => {
    const iv = setInterval(() => {
      const now = performance.now();
      if (now - t0 >= seconds * 1000) {
        clearInterval(iv);
        resolve();
        return;
      }
      const due = Math.min(1000, Math.floor(((now - t0) * rate) / 1000) - seq);
      for (let k = 0; k < due; k++) {
        // A buffer per datagram: a send the socket queues still refers to its buffer after this loop.
        const buf = Buffer.alloc(16);
        buf.writeInt32LE(seq, 0);
        sentAt[seq & (RING - 1)] = performance.now();
        sentSeq[seq & (RING - 1)] = seq;
        sock.send(buf, port, '127.0.0.1');
        seq++;
      }
    }, 1);
  });
  // Late replies still count (a busy machine can hold one back for a while): wait up to 1 s for them.
  for (let w = 0; w < 50 && rtts.length < seq; w++) await sleep(20);
  sock.close();
  rtts.sort((a, b) => a - b);
  const q = (x: number): number | null => (rtts.length > 0 ? percentile(rtts, x) : null);
  line({ event: 'result', sent: seq, received: rtts.length, p50: q(0.5), p99: q(0.99), max: rtts[rtts.length - 1] ?? null });
  return 0;
}

/*
 * The ring's hop pattern with no protocol in it (the skeleton baseline of `bench ring`): a source sends one
 * datagram per instance to a fan-out process (the coordinator), which sends the same bytes to a vote
 * process (the other ring acceptor) and to two udp-sink processes (the learners); the vote process answers
 * with a 16-byte datagram, and the fan-out process then sends a 16-byte acknowledgement to the source. No
 * encoding, no log, no decisions: an upper bound for any implementation of the pattern on this machine.
 */

/** Hidden: skeleton coordinator. Sends every datagram of 100 bytes or more to each --fan port; a shorter one (a vote) is acknowledged to the source. */
async function hopFanout(args: string[]): Promise<number> {
  const o = parse(args, { fan: { type: 'string' } });
  if (typeof o.fan !== 'string') throw new ConfigError('--fan', 'is required (comma-separated ports)');
  const fan = o.fan.split(',').map((x, i) => intFlag(x, `fan[${i}]`, 0, 1, 65535));
  const sock = await loopbackSocket(true);
  const ack = Buffer.alloc(16);
  let source: { port: number; address: string } | undefined;
  sock.on('message', (m, r) => {
    if (m.length >= 100) {
      source = r;
      for (const port of fan) sock.send(m, port, '127.0.0.1');
    } else if (source) sock.send(ack, source.port, source.address);
  });
  line({ event: 'ready', port: sock.address().port });
  await untilSignal();
  sock.close();
  return 0;
}

/** Hidden: skeleton ring acceptor. Answers every datagram of 100 bytes or more with a 16-byte vote. */
async function hopVote(_args: string[]): Promise<number> {
  const sock = await loopbackSocket(true);
  const vote = Buffer.alloc(16);
  sock.on('message', (m, r) => {
    if (m.length >= 100) sock.send(vote, r.port, r.address);
  });
  line({ event: 'ready', port: sock.address().port });
  await untilSignal();
  sock.close();
  return 0;
}

/**
 * Hidden: skeleton proposer. Keeps --outstanding datagrams of --size bytes (a fresh buffer each, as values
 * are) unacknowledged at --to, for --seconds; a window with no acknowledgement for 50 ms is refilled.
 */
async function hopSource(args: string[]): Promise<number> {
  const o = parse(args, { to: { type: 'string' }, size: { type: 'string' }, seconds: { type: 'string' }, outstanding: { type: 'string' } });
  const port = intFlag(o.to, 'to', 0, 1, 65535);
  const size = intFlag(o.size, 'size', 24000, 100, 65507);
  const seconds = intFlag(o.seconds, 'seconds', 3, 1, 600);
  const outstanding = intFlag(o.outstanding, 'outstanding', 64, 1, 4096);
  const sock = await loopbackSocket(true);
  let inflight = 0;
  let lastAck = performance.now();
  let sent = 0;
  const fill = (): void => {
    for (; inflight < outstanding; inflight++, sent++) sock.send(Buffer.allocUnsafe(size).fill(sent & 0xff), port, '127.0.0.1');
  };
  sock.on('message', () => {
    inflight = Math.max(0, inflight - 1);
    lastAck = performance.now();
    fill();
  });
  const watchdog = setInterval(() => {
    if (performance.now() - lastAck > 50) {
      inflight = 0;
      lastAck = performance.now();
      fill();
    }
  }, 25);
  fill();
  await sleep(seconds * 1000);
  clearInterval(watchdog);
  sock.close();
  line({ event: 'result', sent });
  return 0;
}

/** Payload MB/s of the skeleton (as seen by the slower of its two sinks) with `size`-byte datagrams. */
async function skeletonRing(size: number, seconds: number): Promise<number> {
  const procs: Spawned[] = [];
  try {
    const sinks = [0, 1].map(() => spawnRingcast(['bench', 'udp-sink', '--seconds', String(seconds)]));
    const vote = spawnRingcast(['bench', 'hop-vote']);
    procs.push(...sinks, vote);
    const ports = await Promise.all([vote, ...sinks].map(async (p) => (await p.waitFor('ready')).port as number));
    const fanout = spawnRingcast(['bench', 'hop-fanout', '--fan', ports.join(',')]);
    procs.push(fanout);
    const coord = (await fanout.waitFor('ready')).port as number;
    procs.push(spawnRingcast(['bench', 'hop-source', '--to', String(coord), '--size', String(size), '--seconds', String(seconds + 2)]));
    const results = await Promise.all(sinks.map((p) => p.waitFor('result', (seconds + 30) * 1000)));
    return Math.min(...results.map((r) => r.MBps as number));
  } finally {
    await Promise.all(procs.map((p) => stopProcess(p)));
  }
}

/** Hidden: send datagrams of `size` bytes to `to` as fast as the socket takes them, for `seconds`. */
async function udpSource(args: string[]): Promise<number> {
  const o = parse(args, { to: { type: 'string' }, size: { type: 'string' }, seconds: { type: 'string' } });
  const size = intFlag(o.size, 'size', 1024, 1, 65507);
  const seconds = intFlag(o.seconds, 'seconds', 3, 1, 600);
  const port = intFlag(o.to, 'to', 0, 1, 65535);
  const sock = await loopbackSocket();
  try {
    sock.setSendBufferSize(8 << 20);
  } catch {
    /* default */
  }
  const buf = Buffer.alloc(size, 0x62);
  const end = Date.now() + seconds * 1000 + 500;
  let sent = 0;
  while (Date.now() < end) {
    await new Promise<void>((resolve) => {
      for (let k = 0; k < 31; k++) sock.send(buf, port, '127.0.0.1');
      sock.send(buf, port, '127.0.0.1', () => resolve());
    });
    sent += 32;
  }
  sock.close();
  line({ event: 'result', sent });
  return 0;
}

/** Hidden: a learner process that measures deliveries over a window and the latency carried in values. */
async function ringSink(args: string[]): Promise<number> {
  const o = parse(args, { cluster: { type: 'string' }, warmup: { type: 'string' }, seconds: { type: 'string' } });
  if (typeof o.cluster !== 'string') throw new ConfigError('--cluster', 'is required');
  const cluster = loadCluster(o.cluster);
  const warmupMs = intFlag(o.warmup, 'warmup', 1, 0, 600) * 1000;
  const windowMs = intFlag(o.seconds, 'seconds', 3, 1, 600) * 1000;
  let first = 0;
  let values = 0;
  let bytes = 0;
  const lat: number[] = [];
  let measuring = false;
  let finish: () => void = () => {};
  const done = new Promise<void>((r) => (finish = r));
  let tStart = 0;
  const client = await startClient(cluster, {
    learnFrom: START_NEXT,
    hooks: {
      onDeliver(ds) {
        const now = performance.now();
        if (first === 0) {
          first = now;
          setTimeout(() => {
            measuring = true;
            tStart = performance.now();
            setTimeout(finish, windowMs);
          }, warmupMs);
        }
        if (!measuring) return;
        const ns = nowNs();
        for (const d of ds) {
          values++;
          bytes += d.data.length;
          if (d.data.length >= 8 && (values & 7) === 0) {
            const sent = Buffer.from(d.data.buffer, d.data.byteOffset, 8).readBigUInt64LE(0);
            lat.push(Number(ns - sent) / 1e6);
          }
        }
      },
    },
  });
  line({ event: 'ready', id: client.id });
  await done;
  const secs = (performance.now() - tStart) / 1000;
  measuring = false;
  lat.sort((a, b) => a - b);
  await client.stop();
  const ls = client.driver.node.learner!.stats;
  line({ event: 'result', values, bytes, seconds: secs, p50: percentile(lat, 0.5), p99: percentile(lat, 0.99), retransmitRequests: ls.retransmitRequests, bufferFull: ls.bufferFull, drops: Object.fromEntries(client.driver.drops) });
  return 0;
}

/** Hidden: a proposer process (of the first ring, or one proposer per ring of `--group g0,g1,...`) that keeps `outstanding` values in flight for `seconds`. */
async function ringLoad(args: string[]): Promise<number> {
  const o = parse(args, { cluster: { type: 'string' }, group: { type: 'string' }, size: { type: 'string' }, seconds: { type: 'string' }, outstanding: { type: 'string' } });
  if (typeof o.cluster !== 'string') throw new ConfigError('--cluster', 'is required');
  const cluster = loadCluster(o.cluster);
  // --group g0,g1,...: one proposer per ring in this process, the values in flight split over them in turn
  // (as one application multicasting to several groups). Without it: the cluster's first ring.
  const rings: Array<number | undefined> = typeof o.group === 'string' ? ringsOf(cluster, groupsFlag(cluster, o.group, '--group')) : [undefined];
  const size = intFlag(o.size, 'size', 1024, 8, cluster.settings.maxValueBytes);
  const seconds = intFlag(o.seconds, 'seconds', 6, 1, 3600);
  const outstanding = intFlag(o.outstanding, 'outstanding', 1024, 1, cluster.settings.maxOutstanding * rings.length);
  const clients = await Promise.all(rings.map((ring) => startClient(cluster, { ring, propose: true })));
  line({ event: 'ready', ids: clients.map((c) => c.id) });
  const end = performance.now() + seconds * 1000;
  // One buffer per worker, reused: the proposer holds it only until the value is acknowledged, and the
  // Propose datagram is a copy, so the next value of this worker may overwrite it.
  const bufs = Array.from({ length: outstanding }, () => Buffer.alloc(size, 0x63));
  // Worker w proposes to ring w mod k.
  const { acked, failed } = await proposeLoop(
    (d, w) => clients[w % clients.length]!.propose(d),
    outstanding,
    (_k, w) => {
      if (performance.now() >= end) return undefined;
      const b = bufs[w]!;
      b.writeBigUInt64LE(nowNs(), 0);
      return b;
    },
  );
  await Promise.all(clients.map((c) => c.stop()));
  const resent = clients.reduce((a, c) => a + c.driver.node.proposer!.stats.resent, 0);
  const drops: Record<string, number> = {};
  for (const c of clients) for (const [k, v] of c.driver.drops) drops[k] = (drops[k] ?? 0) + v;
  line({ event: 'result', acked, failed, resent, drops });
  return 0;
}

/** Diagnostics (Linux): kernel receive-buffer drops per local UDP port with any drops. */
function udpSocketDrops(): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    const rows = readFileSync('/proc/net/udp', 'utf8').trim().split('\n').slice(1);
    for (const r of rows) {
      const f = r.trim().split(/\s+/);
      const drops = Number(f[f.length - 1]);
      if (drops > 0) out[String(parseInt(f[1]!.split(':')[1]!, 16))] = drops;
    }
  } catch {
    /* not Linux */
  }
  return out;
}

async function rawUdp(size: number, seconds: number): Promise<number> {
  const sink = spawnRingcast(['bench', 'udp-sink', '--seconds', String(seconds)]);
  let source: Spawned | undefined;
  try {
    const ready = await sink.waitFor('ready');
    source = spawnRingcast(['bench', 'udp-source', '--to', String(ready.port), '--size', String(size), '--seconds', String(seconds)]);
    const r = await sink.waitFor('result', (seconds + 30) * 1000);
    return r.MBps as number;
  } finally {
    if (source) await stopProcess(source);
    await stopProcess(sink);
  }
}

async function benchRing(args: string[]): Promise<number> {
  const o = parse(args, {
    sizes: { type: 'string' },
    seconds: { type: 'string' },
    warmup: { type: 'string' },
    outstanding: { type: 'string' },
    batch: { type: 'string' },
    window: { type: 'string' },
    durable: { type: 'string' },
  });
  if (o.help) return void process.stdout.write(RING_HELP), 0;
  const modes = (typeof o.durable === 'string' ? o.durable : 'memory').split(',').map((m) => {
    if (m !== 'memory' && m !== 'async' && m !== 'sync') throw new ConfigError('--durable', `must list sync, async or memory, got ${JSON.stringify(m)}`);
    return m;
  });
  const sizes = (typeof o.sizes === 'string' ? o.sizes : '1024,8192').split(',').map((s, i) => intFlag(s, `sizes[${i}]`, 0, 8, 30000));
  const seconds = intFlag(o.seconds, 'seconds', 4, 1, 600);
  const warmup = intFlag(o.warmup, 'warmup', 1, 0, 60);
  // Default in-flight values per size: about 2 MiB of payload (2048 x 1 KB, 256 x 8 KB). Sixteen MiB of 8 KB
  // values in flight overflowed the coordinator's socket buffer (its Phase 2B votes were dropped with the
  // proposals, stalling the window for a Phase 2 timeout) without adding throughput, only queueing delay.
  const outstandingFlag = o.outstanding === undefined ? undefined : intFlag(o.outstanding, 'outstanding', 2048, 1, 65536);
  const outstandingFor = (size: number): number => outstandingFlag ?? Math.max(64, Math.min(2048, Math.floor((2 << 20) / size)));
  const batch = intFlag(o.batch, 'batch', 32768, 1024, 60000);
  const window = intFlag(o.window, 'window', 64, 1, 4096);
  await freeUdpPorts(1);
  for (const durable of modes)
  for (const size of sizes) {
    process.stderr.write(`bench ring: ${size}-byte values, ${durable} log, ${warmup}+${seconds} s ...\n`);
    const outstanding = outstandingFor(size);
    const ring = await launchLocalRing({
      acceptors: 3,
      metrics: true,
      durable,
      settings: { window, maxValueBytes: batch, maxDatagramBytes: Math.min(65507, batch + 2048), maxOutstanding: Math.max(outstanding, 4096) },
    });
    const procs: Spawned[] = [];
    let result: Record<string, unknown>;
    try {
      const sinks = [0, 1].map(() => spawnRingcast(['bench', 'ring-sink', '--cluster', ring.clusterPath, '--warmup', String(warmup), '--seconds', String(seconds)]));
      procs.push(...sinks);
      await Promise.all(sinks.map((s) => s.waitFor('ready')));
      await sleep(200);
      const load = spawnRingcast(['bench', 'ring-load', '--cluster', ring.clusterPath, '--size', String(size), '--seconds', String(warmup + seconds + 3), '--outstanding', String(outstanding)]);
      procs.push(load);
      const coordPort = (await ring.nodes[1]!.waitFor('ready')).metricsPort as number;
      const occ: number[] = [];
      const sampler = setInterval(() => void metricValue(coordPort, 'ringcast_window_occupancy').then((v) => occ.push(v)), 250);
      const m0 = machineTicks();
      const results = await Promise.all(sinks.map((s) => s.waitFor('result', (warmup + seconds + 60) * 1000)));
      const steal = stealShare(m0, machineTicks());
      clearInterval(sampler);
      process.stderr.write(`bench ring: node ports ${ring.cluster.nodes.map((n) => `${n.id}:${n.port}`).join(' ')} udp drops ${JSON.stringify(udpSocketDrops())}\n`);
      const batchSum = await metricValue(coordPort, 'ringcast_batch_bytes_sum');
      const batchCount = await metricValue(coordPort, 'ringcast_batch_bytes_count');
      const batchValues = (await metricValue(coordPort, 'ringcast_batch_values_sum')) / Math.max(1, batchCount);
      await stopProcess(load);
      const loadResult = load.lines.find((l) => (l as Record<string, unknown>).event === 'result');
      const diag = {
        phase2MeanMs: (1000 * (await metricValue(coordPort, 'ringcast_phase2_latency_seconds_sum'))) / Math.max(1, await metricValue(coordPort, 'ringcast_phase2_latency_seconds_count')),
        windowSamples: occ,
        coordRecvDatagrams: await metricValue(coordPort, 'ringcast_received_datagrams_total'),
        coordRecvBytes: await metricValue(coordPort, 'ringcast_received_bytes_total'),
        coordSentDatagrams: await metricValue(coordPort, 'ringcast_sent_datagrams_total'),
        instances: batchCount,
        phase2Retransmits: await metricValue(coordPort, 'ringcast_phase2_retransmissions'),
        coordDrops: await metricValue(coordPort, 'ringcast_datagrams_dropped_total'),
        sinks: results.map((r) => ({ retransmitRequests: r.retransmitRequests, bufferFull: r.bufferFull, drops: r.drops })),
        load: loadResult,
        udpDrops: udpSocketDrops(),
      };
      process.stderr.write(`bench ring: diagnostics ${JSON.stringify(diag)}\n`);
      const meanDatagram = Math.round(batchSum / Math.max(1, batchCount)) + 64;
      const values = Math.min(...results.map((r) => (r.values as number) / (r.seconds as number)));
      const payloadMBps = (values * size) / 1e6;
      const raw = await rawUdp(meanDatagram, Math.max(2, Math.min(seconds, 4)));
      const skeleton = await skeletonRing(meanDatagram, Math.max(2, Math.min(seconds, 4)));
      const ringMembers = ring.cluster.rings[0]!.ring.length;
      const copies = 1 + (ringMembers - 1) + 2;
      result = {
        bench: 'ring',
        durable,
        valueBytes: size,
        acceptors: 3,
        ringMembers,
        learners: 2,
        batchBoundBytes: batch,
        outstanding,
        meanBatchBytes: meanDatagram - 64,
        meanBatchValues: Number(batchValues.toFixed(1)),
        valuesPerSec: Math.round(values),
        payloadMBps: Number(payloadMBps.toFixed(2)),
        latencyMs: { p50: Number((results[0]!.p50 as number).toFixed(3)), p99: Number((results[0]!.p99 as number).toFixed(3)) },
        rawUdpMBps: Number(raw.toFixed(2)),
        rawDatagramBytes: meanDatagram,
        copies,
        efficiency: Number(((payloadMBps * copies) / raw).toFixed(3)),
        // The same hops with no protocol (hop-source -> hop-fanout -> hop-vote + 2 udp-sinks, 16-byte votes
        // and acknowledgements), same datagram size, same run: the part of the gap to 1.0 that is the
        // machine's (a datagram that wakes a sleeping process costs several times one that does not).
        skeletonMBps: Number(skeleton.toFixed(2)),
        skeletonEfficiency: Number(((skeleton * copies) / raw).toFixed(3)),
        ofSkeleton: Number((payloadMBps / skeleton).toFixed(3)),
        // Share of the machine's CPU time the host stole while the ring ran (a VM waiting for a core).
        steal,
      };
    } finally {
      await Promise.all(procs.map((p) => stopProcess(p)));
      await ring.stop();
    }
    line(result);
  }
  return 0;
}
