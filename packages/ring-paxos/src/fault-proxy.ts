import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { ConfigError } from './errors.js';
import { Prng } from './sim/prng.js';

/**
 * A UDP fault proxy: a NAT-like relay between clients and one target that drops, duplicates and delays
 * (and so reorders) datagrams in both directions. For tests on kernels without netem.
 *
 * A datagram from client C on the listen socket goes to the target from an upstream socket dedicated to
 * C (created on first sight; at most `maxClients`, the least recently used closed beyond that); what the
 * target sends back to that upstream socket goes to C from the listen socket. Each datagram is dropped
 * with probability `drop`; otherwise sent once, or twice with probability `duplicate`, each copy after
 * its own delay drawn uniformly from [delayMinMs, delayMaxMs]. At most `maxQueue` copies wait in the
 * delay queue; beyond it a copy is dropped and counted as `overflow`. All randomness comes from a seeded
 * PRNG. Hosts must be IPv4 literals on 127.0.0.0/8 unless `allowNonLoopback` is set.
 */
export interface FaultProxyOptions {
  listenHost: string;
  /** 0 binds an ephemeral port; `port` tells which once started. */
  listenPort: number;
  targetHost: string;
  targetPort: number;
  /** Probability in [0, 1] that a datagram is dropped (default 0). */
  drop?: number;
  /** Probability in [0, 1] that a forwarded datagram is sent twice (default 0). */
  duplicate?: number;
  /** Per-copy delay, drawn uniformly from [delayMinMs, delayMaxMs] (default 0, 0: no delay). */
  delayMinMs?: number;
  delayMaxMs?: number;
  /** PRNG seed (default 1). */
  seed?: number;
  /** Copies held in the delay queue at most (default 10000). */
  maxQueue?: number;
  /** Upstream sockets (distinct clients) at most (default 256). */
  maxClients?: number;
  /** Allow listen and target hosts outside 127.0.0.0/8 (default false). */
  allowNonLoopback?: boolean;
  /** Sees every datagram relayed, either way, before any fault (tests capture datagrams with it). */
  tap?: (data: Buffer, toTarget: boolean) => void;
}

export interface FaultRates {
  drop: number;
  duplicate: number;
  delayMinMs: number;
  delayMaxMs: number;
}

export interface FaultDirectionStats {
  /** Datagrams that arrived to be relayed in this direction. */
  received: number;
  /** Copies actually sent (duplicates included). */
  forwarded: number;
  /** Datagrams dropped by the drop rate (or whose socket was gone when their delay ended). */
  dropped: number;
  /** Extra copies made by the duplicate rate. */
  duplicated: number;
  /** Copies that went through the delay queue. */
  delayed: number;
  /** Copies dropped because the delay queue held `maxQueue`. */
  overflow: number;
}

export interface FaultProxyStats {
  toTarget: FaultDirectionStats;
  toClient: FaultDirectionStats;
  /** Upstream sockets open now, and how many were closed as least recently used. */
  clients: number;
  evicted: number;
  /** Copies waiting in the delay queue now. */
  queued: number;
  /** Datagrams on an upstream socket from someone other than the target (ignored). */
  foreign: number;
}

interface Upstream {
  key: string;
  clientHost: string;
  clientPort: number;
  sock: Socket;
  closed: boolean;
}

interface Pending {
  due: number;
  order: number;
  data: Buffer;
  dir: FaultDirectionStats;
  /** Sends the copy; false if its socket is gone. */
  send: (data: Buffer) => boolean;
}

const MAX_DELAY_MS = 60_000;

function emptyDir(): FaultDirectionStats {
  return { received: 0, forwarded: 0, dropped: 0, duplicated: 0, delayed: 0, overflow: 0 };
}

function isLoopback(host: string): boolean {
  return isIPv4(host) && host.split('.')[0] === '127';
}

function checkRate(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) {
    throw new ConfigError(field, `must be a number between 0 and 1, got ${JSON.stringify(v)}`);
  }
  return v;
}

function checkInt(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(field, `must be an integer between ${min} and ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function checkHost(v: unknown, field: string, allowNonLoopback: boolean): string {
  if (typeof v !== 'string' || !isIPv4(v)) throw new ConfigError(field, `must be an IPv4 address, got ${JSON.stringify(v)}`);
  if (!allowNonLoopback && !isLoopback(v)) throw new ConfigError(field, `must be a loopback address (127.0.0.0/8), got ${v}`);
  return v;
}

function checkRates(r: FaultRates): FaultRates {
  checkRate(r.drop, 'drop');
  checkRate(r.duplicate, 'duplicate');
  checkInt(r.delayMinMs, 'delayMinMs', 0, MAX_DELAY_MS);
  checkInt(r.delayMaxMs, 'delayMaxMs', 0, MAX_DELAY_MS);
  if (r.delayMinMs > r.delayMaxMs) throw new ConfigError('delayMinMs', `must not exceed delayMaxMs (${r.delayMinMs} > ${r.delayMaxMs})`);
  return r;
}

export class FaultProxy {
  readonly listenHost: string;
  readonly targetHost: string;
  readonly targetPort: number;
  readonly seed: number;
  readonly maxQueue: number;
  readonly maxClients: number;
  private readonly requestedPort: number;
  private rates: FaultRates;
  private readonly prng: Prng;
  private listen: Socket | undefined;
  private boundPort = 0;
  /** Map order is recency order: first = least recently used. */
  private readonly upstreams = new Map<string, Upstream>();
  /** Min-heap of delayed copies by (due, order). */
  private readonly heap: Pending[] = [];
  private order = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerDue = Infinity;
  private running = false;
  private readonly s = { toTarget: emptyDir(), toClient: emptyDir(), evicted: 0, foreign: 0 };
  private readonly tap: FaultProxyOptions['tap'];

  constructor(opts: FaultProxyOptions) {
    const allow = opts.allowNonLoopback === true;
    this.listenHost = checkHost(opts.listenHost, 'listenHost', allow);
    this.requestedPort = checkInt(opts.listenPort, 'listenPort', 0, 65535);
    this.targetHost = checkHost(opts.targetHost, 'targetHost', allow);
    this.targetPort = checkInt(opts.targetPort, 'targetPort', 1, 65535);
    this.rates = checkRates({
      drop: opts.drop ?? 0,
      duplicate: opts.duplicate ?? 0,
      delayMinMs: opts.delayMinMs ?? 0,
      delayMaxMs: opts.delayMaxMs ?? opts.delayMinMs ?? 0,
    });
    this.seed = checkInt(opts.seed ?? 1, 'seed', 0, 0xffffffff);
    this.maxQueue = checkInt(opts.maxQueue ?? 10_000, 'maxQueue', 0, 10_000_000);
    this.maxClients = checkInt(opts.maxClients ?? 256, 'maxClients', 1, 65536);
    this.prng = new Prng(this.seed);
    this.tap = opts.tap;
  }

  /** The bound listen port (after start). */
  get port(): number {
    return this.boundPort;
  }

  /** Current fault rates. */
  getRates(): FaultRates {
    return { ...this.rates };
  }

  /** Change some rates at run time (e.g. all to 0 to heal). Copies already delayed keep their delay. */
  setRates(partial: Partial<FaultRates>): void {
    const next = { ...this.rates };
    for (const k of ['drop', 'duplicate', 'delayMinMs', 'delayMaxMs'] as const) {
      if (partial[k] !== undefined) next[k] = partial[k];
    }
    this.rates = checkRates(next);
  }

  /** A snapshot of the counters. */
  get stats(): FaultProxyStats {
    return {
      toTarget: { ...this.s.toTarget },
      toClient: { ...this.s.toClient },
      clients: this.upstreams.size,
      evicted: this.s.evicted,
      queued: this.heap.length,
      foreign: this.s.foreign,
    };
  }

  async start(): Promise<void> {
    if (this.running || this.listen) throw new Error('FaultProxy already started');
    const sock = createSocket('udp4');
    this.listen = sock;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => reject(e);
      sock.once('error', onError);
      sock.bind(this.requestedPort, this.listenHost, () => {
        sock.off('error', onError);
        resolve();
      });
    }).catch((e: unknown) => {
      this.listen = undefined;
      try {
        sock.close();
      } catch {
        /* already closed */
      }
      throw e;
    });
    bigBuffers(sock);
    // Errors on an unconnected UDP socket after bind (e.g. a failed send) must not kill the process.
    sock.on('error', () => {});
    sock.on('message', (msg, r) => this.fromClient(msg, r));
    this.boundPort = sock.address().port;
    this.running = true;
  }

  async stop(): Promise<void> {
    if (!this.listen) return;
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerDue = Infinity;
    this.heap.length = 0;
    const socks = [this.listen, ...[...this.upstreams.values()].map((u) => u.sock)];
    for (const u of this.upstreams.values()) u.closed = true;
    this.upstreams.clear();
    this.listen = undefined;
    await Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  private fromClient(msg: Buffer, r: RemoteInfo): void {
    if (!this.running) return;
    const up = this.upstreamFor(r.address, r.port);
    this.tap?.(msg, true);
    this.relay(msg, this.s.toTarget, (data) => {
      if (up.closed) return false;
      up.sock.send(data, this.targetPort, this.targetHost, ignore);
      return true;
    });
  }

  private fromTarget(up: Upstream, msg: Buffer, r: RemoteInfo): void {
    if (!this.running || up.closed) return;
    if (r.address !== this.targetHost || r.port !== this.targetPort) {
      this.s.foreign++;
      return;
    }
    this.touch(up);
    this.tap?.(msg, false);
    const listen = this.listen!;
    this.relay(msg, this.s.toClient, (data) => {
      if (!this.running) return false;
      listen.send(data, up.clientPort, up.clientHost, ignore);
      return true;
    });
  }

  private upstreamFor(host: string, port: number): Upstream {
    const key = `${host}:${port}`;
    const found = this.upstreams.get(key);
    if (found) {
      this.touch(found);
      return found;
    }
    while (this.upstreams.size >= this.maxClients) {
      const lru = this.upstreams.values().next().value as Upstream;
      this.upstreams.delete(lru.key);
      lru.closed = true;
      lru.sock.close();
      this.s.evicted++;
    }
    const sock = createSocket('udp4');
    const up: Upstream = { key, clientHost: host, clientPort: port, sock, closed: false };
    sock.on('error', () => {});
    sock.on('message', (m, rr) => this.fromTarget(up, m, rr));
    // Sends issued before the bind completes are queued by node:dgram.
    sock.bind(0, isLoopback(this.targetHost) ? '127.0.0.1' : undefined, () => bigBuffers(sock));
    this.upstreams.set(key, up);
    return up;
  }

  private touch(up: Upstream): void {
    this.upstreams.delete(up.key);
    this.upstreams.set(up.key, up);
  }

  private relay(msg: Buffer, dir: FaultDirectionStats, send: (data: Buffer) => boolean): void {
    dir.received++;
    const { drop, duplicate, delayMinMs, delayMaxMs } = this.rates;
    if (drop > 0 && this.prng.chance(drop)) {
      dir.dropped++;
      return;
    }
    let copies = 1;
    if (duplicate > 0 && this.prng.chance(duplicate)) {
      copies = 2;
      dir.duplicated++;
    }
    for (let c = 0; c < copies; c++) {
      const delay = delayMaxMs > 0 ? delayMinMs + this.prng.float() * (delayMaxMs - delayMinMs) : 0;
      if (delay <= 0) {
        if (send(msg)) dir.forwarded++;
        else dir.dropped++;
        continue;
      }
      if (this.heap.length >= this.maxQueue) {
        dir.overflow++;
        continue;
      }
      dir.delayed++;
      this.push({ due: performance.now() + delay, order: this.order++, data: msg, dir, send });
    }
    this.arm();
  }

  private arm(): void {
    const first = this.heap[0];
    if (!first || !this.running) return;
    if (this.timer && this.timerDue <= first.due) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerDue = first.due;
    this.timer = setTimeout(() => this.flush(), Math.max(0, first.due - performance.now()));
  }

  private flush(): void {
    this.timer = undefined;
    this.timerDue = Infinity;
    if (!this.running) return;
    const now = performance.now();
    while (this.heap.length > 0 && this.heap[0]!.due <= now + 0.5) {
      const p = this.pop();
      if (p.send(p.data)) p.dir.forwarded++;
      else p.dir.dropped++;
    }
    this.arm();
  }

  private push(p: Pending): void {
    const h = this.heap;
    h.push(p);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private pop(): Pending {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l]!, h[m]!)) m = l;
        if (r < h.length && less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

function less(a: Pending, b: Pending): boolean {
  return a.due < b.due || (a.due === b.due && a.order < b.order);
}

function ignore(): void {}

/** Ask for large kernel buffers so bursts are not lost before the proxy sees them (clamped by the kernel). */
function bigBuffers(sock: Socket): void {
  try {
    sock.setRecvBufferSize(4 * 1024 * 1024);
    sock.setSendBufferSize(4 * 1024 * 1024);
  } catch {
    /* keep the defaults */
  }
}
