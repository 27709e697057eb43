import { randomInt } from 'node:crypto';
import type { RemoteInfo } from 'node:dgram';
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { isIPv4 } from 'node:net';
import { performance } from 'node:perf_hooks';
import DgramAsPromised, { type SocketAsPromised } from 'dgram-as-promised';
import type { ClusterConfig, RingSpec } from './config.js';
import { DYNAMIC_ID_BASE, START_NEXT } from './core/messages.js';
import { RingNode } from './core/ring-node.js';
import { encodeHold } from './core/retention-hold.js';
import { Driver, type Address, type Clock, type DriverHooks, type Transport } from './driver.js';
import { ConfigError, listenError, RingcastError } from './errors.js';
import { RingMetrics } from './metrics.js';
import { Codec } from './wire/codec.js';
import { FileLog, type LogMode } from './storage/file-log.js';

/** Wall-clock time for the driver: monotonic milliseconds, real timers, end of turn on setImmediate. */
export const realClock: Clock = {
  // Wall-clock milliseconds (monotonic within the process): rate leveling compares positions across
  // processes against a shared epoch.
  now: () => performance.timeOrigin + performance.now(),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
  defer: (fn) => setImmediate(fn),
};

/**
 * The address lookup for ringcast's UDP sockets (dgram's `lookup` option): an IPv4 literal is answered at
 * once, a host name goes to dns.lookup. Node's default answers even a literal on the next tick, so every
 * datagram sent paid a deferral: about 1.5 µs of CPU per send here, out of 13-15.
 */
export function ipv4Lookup(host: string, options: LookupOneOptions, cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  if (isIPv4(host)) cb(null, host, 4);
  else dnsLookup(host, options, cb);
}

/** Socket buffer size asked of the kernel (capped by net.core.rmem_max / wmem_max). */
const SOCKET_BUFFER_BYTES = 8 * 1024 * 1024;

/**
 * A UDP socket (dgram-as-promised) as a driver transport. Addresses are "host:port". With IP multicast a
 * second socket, bound to the group's address and port, receives what the coordinator sends to the group;
 * the first socket sends to the group out of the configured interface.
 */
export class UdpTransport implements Transport {
  private readonly cache = new Map<Address, { host: string; port: number }>();
  private constructor(
    readonly sock: SocketAsPromised,
    private readonly group: SocketAsPromised | undefined,
  ) {}

  static async bind(
    host: string,
    port: number,
    onMessage: (buf: Buffer, from: Address) => void,
    multicast?: { group: string; port: number; interface: string },
  ): Promise<UdpTransport> {
    const open = async (bindHost: string, bindPort: number, reuseAddr: boolean): Promise<SocketAsPromised> => {
      const sock = DgramAsPromised.createSocket({ type: 'udp4', reuseAddr, lookup: ipv4Lookup }, (msg: Buffer, r: RemoteInfo) =>
        onMessage(msg, `${r.address}:${r.port}`),
      );
      // A send error on one datagram (e.g. ICMP refusal from a dead peer) must never take the process down.
      sock.socket.on('error', () => {});
      await sock.bind(bindPort, bindHost);
      try {
        sock.setRecvBufferSize(SOCKET_BUFFER_BYTES);
        sock.setSendBufferSize(SOCKET_BUFFER_BYTES);
      } catch {
        /* the kernel keeps its default */
      }
      return sock;
    };
    const sock = await open(host, port, false);
    let group: SocketAsPromised | undefined;
    if (multicast) {
      sock.setMulticastInterface(multicast.interface);
      sock.setMulticastLoopback(true);
      group = await open(multicast.group, multicast.port, true);
      group.addMembership(multicast.group, multicast.interface);
    }
    return new UdpTransport(sock, group);
  }

  get port(): number {
    return this.sock.address().port;
  }

  send(buf: Uint8Array, to: Address): void {
    let a = this.cache.get(to);
    if (!a) {
      const i = to.lastIndexOf(':');
      a = { host: to.slice(0, i), port: Number(to.slice(i + 1)) };
      if (this.cache.size > 65536) this.cache.clear();
      this.cache.set(to, a);
    }
    this.sock.socket.send(buf, a.port, a.host);
  }

  async close(): Promise<void> {
    for (const sk of [this.sock, this.group]) {
      try {
        await sk?.close();
      } catch {
        /* already closed */
      }
    }
  }
}

function ringOf(cluster: ClusterConfig, ringId: number): RingSpec {
  const r = cluster.rings.find((x) => x.id === ringId);
  if (!r) throw new ConfigError('ring', `no ring ${ringId} in the cluster file (rings: ${cluster.rings.map((x) => x.id).join(', ')})`);
  return r;
}

/**
 * The UDP port node `n` uses for ring `ring`: a node in several rings has one socket per ring, on its
 * configured port plus the index of the ring among its rings (ascending ring id).
 */
export function ringPort(cluster: ClusterConfig, nodeId: number, ring: number): number {
  const n = cluster.nodes.find((x) => x.id === nodeId);
  if (!n) throw new ConfigError('id', `node ${nodeId} is not in the cluster file`);
  const mine = cluster.rings.filter((r) => r.acceptors.includes(nodeId)).map((r) => r.id).sort((a, b) => a - b);
  const k = mine.indexOf(ring);
  return n.port + Math.max(0, k);
}

function peersOf(cluster: ClusterConfig, ring: number): Map<number, Address> {
  return new Map(cluster.nodes.map((n) => [n.id, `${n.host}:${ringPort(cluster, n.id, ring)}`]));
}

/**
 * The ballot round a coordinator starts with: tenths of a second since 2023-11-14 from the wall clock, so a
 * coordinator restarted (with its memory log gone) at least 100 ms later never reuses a ballot it held
 * before. Until the durable log keeps the round (next issue), this is what makes a restart safe; it assumes
 * the clock does not step back across the restart.
 */
export function startRound(): number {
  return Math.max(1, Math.floor(Date.now() / 100) - 17_000_000_000);
}

export interface RunningRing {
  driver: Driver;
  transport: UdpTransport;
}

export interface RunningNode {
  id: number;
  rings: RunningRing[];
  metrics: RingMetrics;
  metricsPort?: number;
  stop(): Promise<void>;
}

/**
 * Start the acceptor (and coordinator, if last in a ring) roles of static node `id` for every ring it
 * belongs to. One UDP socket per ring: the node's port for the first ring, the next ports after it.
 */
export async function startNode(cluster: ClusterConfig, id: number, opts: Parameters<typeof openNode>[2] = {}): Promise<RunningNode> {
  // A start that fails half-way (a port in use, a log it cannot open) closes what it opened, then throws:
  // a process that cannot serve must not keep its UDP ports bound.
  const opened = { rings: [] as RunningRing[], logs: [] as FileLog[] };
  try {
    return await openNode(cluster, id, opts, opened);
  } catch (e) {
    await closeRings(opened.rings, opened.logs).catch(() => {}); // the first error is the one to report
    throw e;
  }
}

async function closeRings(running: RunningRing[], logs: FileLog[]): Promise<void> {
  for (const r of running) {
    r.driver.stop();
    await r.transport.close();
  }
  for (const l of logs) l.close();
}

async function openNode(
  cluster: ClusterConfig,
  id: number,
  opts: {
    metricsPort?: number;
    /** What a metrics-port error names when `metricsPort` is given (a CLI passes its flag); default 'metricsPort'. */
    metricsPortName?: string;
    hooks?: DriverHooks;
    /** Bind this UDP port instead of the cluster file's (a fault proxy then listens on the file's port). */
    bindPort?: number;
    /** Acceptor log: 'memory' (default, nothing survives a restart), 'async' or 'sync' in `logDir`. */
    durable?: LogMode;
    logDir?: string;
    /**
     * This node lost its log (memory mode restarted, or the log directory is gone): rejoin safely. A durable
     * log found damaged at start (or holding an unfinished rejoin) makes the node rejoin without it.
     */
    rejoin?: boolean;
  },
  opened: { rings: RunningRing[]; logs: FileLog[] },
): Promise<RunningNode> {
  const spec = cluster.nodes.find((n) => n.id === id);
  if (!spec) throw new ConfigError('id', `node ${id} is not in the cluster file (nodes: ${cluster.nodes.map((n) => n.id).join(', ')})`);
  const rings = cluster.rings.filter((r) => r.acceptors.includes(id));
  if (rings.length === 0) throw new ConfigError('id', `node ${id} is an acceptor of no ring`);
  const metrics = new RingMetrics({ node: String(id) });
  const codec = new Codec({ maxDatagramBytes: cluster.settings.maxDatagramBytes, secret: cluster.secret });
  const running = opened.rings;
  const durable = opts.durable ?? 'memory';
  if (durable !== 'memory' && !opts.logDir) throw new ConfigError('logDir', `durable mode '${durable}' needs a log directory`);
  const logs = opened.logs;
  for (const r of rings) {
    let log: FileLog | undefined;
    let rejoin = opts.rejoin === true;
    const restored = durable === 'memory' ? undefined : FileLog.open(opts.logDir!, r.id, durable, { rejoin });
    if (restored) {
      const rec = restored.recovered;
      log = restored.log;
      logs.push(log);
      if (rec.cutBytes > 0) process.stderr.write(`ringcast node ${id}: ring ${r.id} log had a torn tail (an append a crash cut short); cut ${rec.cutBytes} bytes\n`);
      // A log that lost synced records lost promises or votes: rejoin, exactly as --rejoin does.
      if (rec.damage) process.stderr.write(`ringcast node ${id}: ring ${r.id} log is damaged at ${rec.damage.file} byte ${rec.damage.offset}: ${rec.damage.reason}; its segments were moved to ${log.path}/damaged and the node rejoins (as with --rejoin) before it votes\n`);
      else if (rec.rejoin && !rejoin) process.stderr.write(`ringcast node ${id}: ring ${r.id} log holds a rejoin that did not finish; the node rejoins again\n`);
      rejoin = rec.rejoin;
      metrics.attachLog(r.id, log, rec);
    }
    const node = new RingNode({ ring: r.id, id, ringOrder: r.ring, acceptors: r.acceptors, settings: cluster.settings, round: startRound(), rejoin, incarnation: startRound() });
    if (restored) node.acceptor!.restore(restored.recovered.promised, restored.recovered.entries, restored.recovered.trimmed);
    let driver: Driver | undefined;
    const port = (opts.bindPort ?? spec.port) + (ringPort(cluster, id, r.id) - spec.port);
    const transport = await UdpTransport.bind(spec.host, port, (buf, from) => driver?.receive(buf, from), r.multicast).catch((e: Error) => {
      throw listenError(e, opts.bindPort !== undefined ? 'bindPort' : `nodes[${cluster.nodes.indexOf(spec)}].port`, spec.host, port, true);
    });
    driver = new Driver({
      node,
      codec,
      transport,
      clock: realClock,
      peers: peersOf(cluster, r.id),
      tickMs: cluster.tickMs,
      multicast: r.multicast ? `${r.multicast.group}:${r.multicast.port}` : undefined,
      hooks: metrics.hooksFor(r.id, opts.hooks),
      maxDynamicPeers: cluster.settings.maxLearners + cluster.settings.maxProposers,
      log,
    });
    metrics.attach(r.id, driver);
    driver.start();
    running.push({ driver, transport });
  }
  // An explicit 0 asks for any free port; the cluster file's 0 means none.
  const mport = opts.metricsPort ?? (spec.metricsPort ? spec.metricsPort : undefined);
  const mfield = opts.metricsPort !== undefined ? (opts.metricsPortName ?? 'metricsPort') : `nodes[${cluster.nodes.indexOf(spec)}].metricsPort`;
  const server = mport !== undefined ? await metrics.serve(mport, '127.0.0.1', mfield) : undefined;
  return {
    id,
    rings: running,
    metrics,
    metricsPort: server?.port,
    async stop() {
      await closeRings(running, logs);
      await server?.close();
    },
  };
}

export interface ClientOptions {
  ring?: number;
  /** Learner role: where to start (START_NEXT, START_OLDEST or an instance). Absent: no learner. */
  learnFrom?: number;
  /** Proposer role. */
  propose?: boolean;
  /** Learner keeps per-instance records with positions (hooks.onInstances), for a multi-ring merge. */
  records?: boolean;
  /**
   * The learner needs the ring's position to keep pace with λ: it merges this ring with others, or starts
   * or stops at an agreed position. An idle ring proposes rate-leveling skips only while such a learner
   * is registered with its coordinator.
   */
  paced?: boolean;
  /** Identity; default a random id in the dynamic range. */
  id?: number;
  host?: string;
  hooks?: DriverHooks;
  metrics?: RingMetrics;
}

export interface RingClient {
  id: number;
  driver: Driver;
  transport: UdpTransport;
  propose(data: Uint8Array): Promise<void>;
  /** Propose a retention hold (needs the proposer role): keep every instance of this ring from `instance` on. */
  hold(holder: string, instance: number): Promise<void>;
  stop(): Promise<void>;
}

/** Start a run-time learner and/or proposer of one ring (it joins by subscribing; no cluster entry). */
export async function startClient(cluster: ClusterConfig, opts: ClientOptions): Promise<RingClient> {
  const r = opts.ring === undefined ? cluster.rings[0]! : ringOf(cluster, opts.ring);
  const id = opts.id ?? randomInt(DYNAMIC_ID_BASE, 2 ** 32);
  if (id < DYNAMIC_ID_BASE) throw new ConfigError('id', `client ids start at ${DYNAMIC_ID_BASE}`);
  if (opts.learnFrom === undefined && !opts.propose) throw new ConfigError('roles', 'a client needs a learner or a proposer role');
  const node = new RingNode({
    ring: r.id,
    id,
    ringOrder: r.ring,
    acceptors: r.acceptors,
    settings: cluster.settings,
    learnerStart: opts.learnFrom,
    proposer: opts.propose,
    records: opts.records,
    paced: opts.paced,
  });
  const codec = new Codec({ maxDatagramBytes: cluster.settings.maxDatagramBytes, secret: cluster.secret });
  let driver: Driver | undefined;
  const mc = opts.learnFrom !== undefined ? r.multicast : undefined;
  const transport = await UdpTransport.bind(opts.host ?? '127.0.0.1', 0, (buf, from) => driver?.receive(buf, from), mc);
  const hooks = opts.metrics ? opts.metrics.hooksFor(r.id, opts.hooks) : opts.hooks;
  driver = new Driver({
    node,
    codec,
    transport,
    clock: realClock,
    peers: peersOf(cluster, r.id),
    tickMs: cluster.tickMs,
    hooks,
    maxDynamicPeers: 16,
  });
  opts.metrics?.attach(r.id, driver);
  driver.start();
  const d = driver;
  return {
    id,
    driver: d,
    transport,
    propose: (data) => d.propose(data),
    hold: (holder, instance) => d.propose(encodeHold(holder, instance), true),
    async stop() {
      d.stop();
      await transport.close();
    },
  };
}

export { START_NEXT };
