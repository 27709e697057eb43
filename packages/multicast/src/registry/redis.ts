import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { ConfigError, RingcastError, type ClusterConfig } from '@ringcast/ring-paxos';
import { SCRIPTS, type ScriptName } from './scripts.js';
import {
  DEFAULT_PREFIX,
  DEFAULT_TIMEOUT_MS,
  checkAddress,
  checkBallot,
  checkInt,
  checkLearner,
  checkNode,
  checkOrder,
  checkPrefix,
  checkRedisUrl,
  checkRing,
  checkRings,
  checkTimeout,
  checkTtl,
  clusterFacts,
} from './validate.js';
import { Watchers } from './watchers.js';
import {
  RegistryUnavailableError,
  type CallOptions,
  type Lease,
  type LoadOptions,
  type LoadResult,
  type NodeAddress,
  type Registry,
  type RegistryEvent,
  type RegistryListener,
  type RegistryNode,
  type RegistryRing,
  type RegistryView,
  type Subscription,
} from './types.js';

export interface RedisRegistryOptions {
  /** redis:// or rediss:// URL; default redis://127.0.0.1:6379. */
  url?: string;
  /** Key prefix, one cluster per prefix; default `ringcast:`. */
  prefix?: string;
  /** Default timeout of every call in ms (1..60000); default 500. */
  timeoutMs?: number;
  /** TCP connect timeout in ms; default 1000. */
  connectTimeoutMs?: number;
  /** Longest pause between reconnect attempts in ms; default 1000. Reconnecting never stops before close(). */
  reconnectMaxDelayMs?: number;
  /** While watched, sweep expired registrations, leases and subscriptions (and announce them) this often; default 250. */
  sweepMs?: number;
}

/** The Redis keys of one cluster (prefix P). */
export function registryKeys(prefix: string) {
  return {
    meta: `${prefix}meta`,
    nodes: `${prefix}nodes`,
    rings: `${prefix}rings`,
    groups: `${prefix}groups`,
    live: `${prefix}live`,
    addrs: `${prefix}addrs`,
    leases: `${prefix}leases`,
    subs: `${prefix}subs`,
    subRings: `${prefix}sub-rings`,
    channel: `${prefix}events`,
  };
}

const REMOTE_KINDS = new Set(['cluster-loaded', 'node-registered', 'node-expired', 'lease-changed', 'ring-changed', 'subscription-changed']);

type ScriptHost = Record<ScriptName, (...args: Array<string | number>) => Promise<unknown>>;

function parseLeaseValue(ring: number, v: string): Lease | null {
  const m = /^(\d+)\|(\d+)\|(\d+)$/.exec(v);
  if (!m) return null;
  return { ring, holder: Number(m[1]), ballot: Number(m[2]), expiresAt: Number(m[3]) };
}

function pairs(flat: unknown): Array<[string, string]> {
  const a = Array.isArray(flat) ? (flat as unknown[]) : [];
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < a.length; i += 2) out.push([String(a[i]), String(a[i + 1])]);
  return out;
}

function json<T>(s: string, fallback: T): T {
  try {
    return JSON.parse(s) as T;
  } catch {
    return fallback;
  }
}

/**
 * The registry in Redis (ioredis). Liveness and discovery hints only: a ring keeps ordering while Redis is
 * gone. Every call is bounded by its timeout and rejects with RegistryUnavailableError when Redis does not
 * answer in time; the client reconnects in the background; watchers see registry-down / registry-up.
 */
export class RedisRegistry implements Registry {
  readonly prefix: string;
  readonly url: string;
  readonly timeoutMs: number;
  private readonly keys: ReturnType<typeof registryKeys>;
  private readonly client: Redis;
  private readonly scripts: ScriptHost;
  private readonly sweepMs: number;
  private readonly watchers = new Watchers();
  private sub: Redis | undefined;
  private subscribed = false;
  private health: 'unknown' | 'up' | 'down' = 'unknown';
  private sweeper: NodeJS.Timeout | undefined;
  private sweeping = false;
  private readyWait: Promise<void> | undefined;
  private lastError = '';
  private closed = false;

  constructor(opts: RedisRegistryOptions = {}) {
    this.url = checkRedisUrl(opts.url ?? 'redis://127.0.0.1:6379');
    this.prefix = checkPrefix(opts.prefix ?? DEFAULT_PREFIX);
    this.timeoutMs = opts.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : checkTimeout(opts.timeoutMs);
    const connectTimeout = opts.connectTimeoutMs === undefined ? 1000 : checkInt(opts.connectTimeoutMs, 'connectTimeoutMs', 10, 60_000);
    const maxDelay = opts.reconnectMaxDelayMs === undefined ? 1000 : checkInt(opts.reconnectMaxDelayMs, 'reconnectMaxDelayMs', 10, 60_000);
    this.sweepMs = opts.sweepMs === undefined ? 250 : checkInt(opts.sweepMs, 'sweepMs', 10, 60_000);
    this.keys = registryKeys(this.prefix);
    this.client = new Redis(this.url, {
      // Fail fast instead of queueing: a command either goes out on a live connection or rejects.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout,
      // Bounded back-off, never giving up: the registry comes back on its own when Redis does.
      retryStrategy: (times: number) => Math.min(25 * 2 ** Math.min(times, 10), maxDelay),
      enableReadyCheck: true,
      autoResubscribe: false,
      // Commands cut off by a lost connection fail; they are not sent again after the reconnect.
      autoResendUnfulfilledCommands: false,
      lazyConnect: false,
    });
    this.client.on('error', (e: Error) => {
      this.lastError = e.message;
    });
    for (const [name, s] of Object.entries(SCRIPTS)) this.client.defineCommand(name, { numberOfKeys: s.keys, lua: s.lua });
    this.scripts = this.client as unknown as ScriptHost;
  }

  /** Run `fn` once the connection is ready, bounded by the call's timeout; errors become typed. */
  private async call<T>(op: string, opts: CallOptions | undefined, fn: () => Promise<T>): Promise<T> {
    const timeoutMs = opts?.timeoutMs === undefined ? this.timeoutMs : checkTimeout(opts.timeoutMs);
    if (this.closed) throw new RegistryUnavailableError(op, 'the registry is closed');
    let timer: NodeJS.Timeout | undefined;
    let expired = false;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        expired = true;
        const why = this.client.status === 'ready' ? 'Redis did not answer' : `not connected (${this.client.status}${this.lastError ? `: ${this.lastError}` : ''})`;
        reject(new RegistryUnavailableError(op, `${why} within ${timeoutMs} ms at ${this.url}`));
      }, timeoutMs);
    });
    // A call that timed out while waiting for the connection is dropped, never sent later: a caller that
    // saw its acquireLease fail must not find the lease taken behind its back once Redis is back.
    const work = this.waitReady().then(() => {
      if (expired) throw new RegistryUnavailableError(op, 'timed out before it was sent');
      return fn();
    });
    work.catch(() => {}); // a late failure after the timeout is not an unhandled rejection
    try {
      return await Promise.race([work, timeout]);
    } catch (e) {
      if (e instanceof RingcastError) throw e;
      throw new RegistryUnavailableError(op, (e as Error).message);
    } finally {
      clearTimeout(timer);
    }
  }

  private waitReady(): Promise<void> {
    if (this.client.status === 'ready') return Promise.resolve();
    this.readyWait ??= new Promise<void>((resolve) => {
      this.client.once('ready', () => {
        this.readyWait = undefined;
        resolve();
      });
    });
    return this.readyWait;
  }

  async load(cluster: ClusterConfig, opts: LoadOptions = {}): Promise<LoadResult> {
    const facts = clusterFacts(cluster, opts.groups);
    const digest = createHash('sha256').update(JSON.stringify(facts)).digest('hex');
    const nodes = facts.nodes.flatMap((n) => [String(n.id), JSON.stringify(n)]);
    const rings = facts.rings.flatMap((r) => [String(r.id), JSON.stringify({ id: r.id, acceptors: r.acceptors, ring: r.ring, f: r.f })]);
    const groups = Object.entries(facts.groups).flatMap(([g, r]) => [g, String(r)]);
    const event: RegistryEvent = { kind: 'cluster-loaded', nodes: facts.nodes.length, rings: facts.rings.length };
    const k = this.keys;
    const changed = await this.call('load', opts, () =>
      this.scripts.load(k.meta, k.nodes, k.rings, k.groups, digest, k.channel, JSON.stringify(event), nodes.length / 2, rings.length / 2, groups.length / 2, ...nodes, ...rings, ...groups),
    );
    return { changed: Number(changed) === 1 };
  }

  async view(opts?: CallOptions): Promise<RegistryView> {
    const k = this.keys;
    const raw = (await this.call('view', opts, () => this.scripts.view(k.meta, k.nodes, k.rings, k.groups, k.live, k.addrs, k.leases, k.subs, k.subRings))) as unknown[];
    const now = Number(raw[0]);
    const nodes = new Map<number, RegistryNode>();
    for (const [, v] of pairs(raw[2])) {
      const n = json<{ id: number; host: string; port: number; metricsPort?: number } | null>(v, null);
      if (!n) continue;
      nodes.set(n.id, { ...n, configured: true, live: false, expiresAt: null });
    }
    const live = pairs(raw[5]);
    const addrs = Array.isArray(raw[6]) ? (raw[6] as unknown[]) : [];
    live.forEach(([id, exp], i) => {
      const a = json<NodeAddress | null>(String(addrs[i] ?? ''), null);
      if (!a) return;
      const nid = Number(id);
      const prev = nodes.get(nid);
      const n: RegistryNode = { id: nid, host: a.host, port: a.port, configured: prev !== undefined, live: true, expiresAt: Number(exp) };
      const mp = a.metricsPort ?? prev?.metricsPort;
      if (mp !== undefined) n.metricsPort = mp;
      nodes.set(nid, n);
    });
    const rings: RegistryRing[] = [];
    for (const [, v] of pairs(raw[3])) {
      const r = json<{ id: number; acceptors: number[]; ring: number[]; f: number } | null>(v, null);
      if (!r) continue;
      rings.push({ id: r.id, acceptors: r.acceptors, ring: r.ring, spares: r.acceptors.filter((a) => !r.ring.includes(a)), f: r.f });
    }
    const groups: Record<string, number> = {};
    for (const [g, r] of pairs(raw[4]).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) groups[g] = Number(r);
    const leases: Lease[] = [];
    for (const [ring, v] of pairs(raw[7])) {
      const l = parseLeaseValue(Number(ring), v);
      if (l && l.expiresAt !== null && l.expiresAt > now) leases.push(l);
    }
    const subRings = Array.isArray(raw[9]) ? (raw[9] as unknown[]) : [];
    const subscriptions: Subscription[] = pairs(raw[8]).map(([id, exp], i) => ({
      learner: Number(id),
      rings: json<number[]>(String(subRings[i] ?? '[]'), []),
      expiresAt: Number(exp),
    }));
    const byId = <T extends { id: number }>(a: T, b: T): number => a.id - b.id;
    return {
      now,
      loaded: String(raw[1]) !== '',
      nodes: [...nodes.values()].sort(byId),
      rings: rings.sort(byId),
      groups,
      leases: leases.sort((a, b) => a.ring - b.ring),
      subscriptions: subscriptions.sort((a, b) => a.learner - b.learner),
    };
  }

  async acquireLease(ring: number, node: number, ballot: number, ttlMs: number, opts?: CallOptions): Promise<boolean> {
    checkRing(ring);
    checkNode(node);
    checkBallot(ballot);
    checkTtl(ttlMs);
    const r = (await this.call('acquireLease', opts, () => this.scripts.acquire(this.keys.leases, ring, node, String(ballot), ttlMs, this.keys.channel))) as unknown[];
    return Number(r[0]) === 1;
  }

  async renewLease(ring: number, node: number, ttlMs: number, opts?: CallOptions): Promise<boolean> {
    checkRing(ring);
    checkNode(node);
    checkTtl(ttlMs);
    return Number(await this.call('renewLease', opts, () => this.scripts.renew(this.keys.leases, ring, node, ttlMs))) === 1;
  }

  async releaseLease(ring: number, node: number, opts?: CallOptions): Promise<boolean> {
    checkRing(ring);
    checkNode(node);
    return Number(await this.call('releaseLease', opts, () => this.scripts.release(this.keys.leases, ring, node, this.keys.channel))) === 1;
  }

  async leaseOf(ring: number, opts?: CallOptions): Promise<Lease | null> {
    checkRing(ring);
    const r = (await this.call('leaseOf', opts, () => this.scripts.leaseOf(this.keys.leases, ring))) as unknown[];
    const l = parseLeaseValue(ring, String(r[0]));
    return l && l.expiresAt !== null && l.expiresAt > Number(r[1]) ? l : null;
  }

  async setRingOrder(ring: number, node: number, order: number[], opts?: CallOptions): Promise<boolean> {
    checkRing(ring);
    checkNode(node);
    const o = checkOrder(order, undefined);
    const r = Number(await this.call('setRingOrder', opts, () => this.scripts.setOrder(this.keys.leases, this.keys.rings, ring, node, JSON.stringify(o), this.keys.channel)));
    if (r === -1) throw new ConfigError('ring', `ring ${ring} is not in the registry (load a cluster first)`);
    if (r === -2) throw new ConfigError('order', `must list f+1 distinct acceptors of ring ${ring}, got ${JSON.stringify(o)}`);
    return r === 1;
  }

  async registerNode(node: number, addr: NodeAddress, ttlMs: number, opts?: CallOptions): Promise<void> {
    checkNode(node);
    const a = checkAddress(addr);
    checkTtl(ttlMs);
    const event: RegistryEvent = { kind: 'node-registered', node, host: a.host, port: a.port };
    await this.call('registerNode', opts, () => this.scripts.register(this.keys.live, this.keys.addrs, node, JSON.stringify(a), ttlMs, this.keys.channel, JSON.stringify(event)));
  }

  async subscribe(learnerId: number, rings: number[], ttlMs: number, opts?: CallOptions): Promise<void> {
    checkLearner(learnerId);
    const rs = checkRings(rings);
    checkTtl(ttlMs);
    const event: RegistryEvent = { kind: 'subscription-changed', learner: learnerId, rings: rs, reason: 'subscribed' };
    await this.call('subscribe', opts, () =>
      this.scripts.register(this.keys.subs, this.keys.subRings, learnerId, JSON.stringify(rs), ttlMs, this.keys.channel, JSON.stringify(event)),
    );
  }

  async unsubscribe(learnerId: number, opts?: CallOptions): Promise<boolean> {
    checkLearner(learnerId);
    const event: RegistryEvent = { kind: 'subscription-changed', learner: learnerId, rings: null, reason: 'unsubscribed' };
    return Number(await this.call('unsubscribe', opts, () => this.scripts.unsubscribe(this.keys.subs, this.keys.subRings, learnerId, this.keys.channel, JSON.stringify(event)))) === 1;
  }

  /** Remove what expired and announce it (watching registries do this every `sweepMs`). */
  async sweep(opts?: CallOptions): Promise<number> {
    const k = this.keys;
    return Number(await this.call('sweep', opts, () => this.scripts.sweep(k.live, k.addrs, k.leases, k.subs, k.subRings, k.channel, 1000)));
  }

  watch(listener: RegistryListener): () => void {
    if (this.closed) throw new RegistryUnavailableError('watch', 'the registry is closed');
    const stop = this.watchers.add(listener);
    if (!this.sub) this.startWatching();
    return () => {
      stop();
      if (this.watchers.size === 0) this.stopWatching();
    };
  }

  private setHealth(up: boolean, error = ''): void {
    if (up && this.health !== 'up') {
      this.health = 'up';
      this.watchers.emit({ kind: 'registry-up' });
    } else if (!up && this.health !== 'down') {
      this.health = 'down';
      this.watchers.emit({ kind: 'registry-down', error: error || this.lastError || 'connection lost' });
    }
  }

  private startWatching(): void {
    const sub = this.client.duplicate({ enableOfflineQueue: true, autoResubscribe: false });
    this.sub = sub;
    this.subscribed = false;
    sub.on('error', (e: Error) => {
      this.lastError = e.message;
    });
    sub.on('ready', () => {
      sub.subscribe(this.keys.channel).then(
        () => {
          if (this.sub !== sub) return;
          this.subscribed = true;
          this.setHealth(true);
        },
        (e: Error) => {
          if (this.sub === sub) this.setHealth(false, e.message);
        },
      );
    });
    sub.on('close', () => {
      if (this.sub !== sub) return;
      this.subscribed = false;
      this.setHealth(false, this.lastError || 'connection to Redis closed');
    });
    sub.on('message', (channel: string, message: string) => {
      if (channel !== this.keys.channel) return;
      const ev = json<Record<string, unknown> | null>(message, null);
      if (!ev || typeof ev !== 'object' || typeof ev.kind !== 'string' || !REMOTE_KINDS.has(ev.kind)) return;
      this.watchers.emit(ev as unknown as RegistryEvent);
    });
    this.sweeper = setInterval(() => {
      if (this.sweeping) return;
      this.sweeping = true;
      this.sweep({ timeoutMs: Math.min(this.timeoutMs, Math.max(this.sweepMs, 50)) }).then(
        () => {
          this.sweeping = false;
          if (this.subscribed) this.setHealth(true);
        },
        (e: Error) => {
          this.sweeping = false;
          this.setHealth(false, e.message);
        },
      );
    }, this.sweepMs);
    this.sweeper.unref();
  }

  private stopWatching(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    const sub = this.sub;
    this.sub = undefined;
    this.subscribed = false;
    this.health = 'unknown';
    sub?.disconnect(false);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watchers.clear();
    this.stopWatching();
    this.client.disconnect(false);
  }
}
