import { ConfigError, type ClusterConfig } from '@ringcast/ring-paxos';
import {
  checkAddress,
  checkBallot,
  checkInt,
  checkLearner,
  checkNode,
  checkOrder,
  checkRing,
  checkRings,
  checkTimeout,
  checkTtl,
  clusterFacts,
  type ClusterFacts,
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
  type RegistryListener,
  type RegistryNode,
  type RegistryView,
} from './types.js';

export interface StaticRegistryOptions {
  groups?: Record<string, number>;
  /** While watched, look for expired registrations and subscriptions this often; default 250 ms. */
  sweepMs?: number;
  /** Clock (ms since the epoch); default Date.now. */
  now?: () => number;
}

/**
 * The embedded default: the facts of a cluster file, kept in this process, no server. The coordinator lease
 * of a ring is always held by its configured coordinator (the last member of the file's ring order) and
 * never expires; node registrations and learner subscriptions are local and expire by their TTL.
 */
export class StaticRegistry implements Registry {
  private facts: ClusterFacts = { nodes: [], rings: [], groups: {} };
  private digest = '';
  /** The configured coordinator of each ring, from the loaded file (fixed until the next load). */
  private coordinators = new Map<number, number>();
  private readonly live = new Map<number, { addr: NodeAddress; expiresAt: number }>();
  private readonly subs = new Map<number, { rings: number[]; expiresAt: number }>();
  private readonly watchers = new Watchers();
  private readonly now: () => number;
  private readonly sweepMs: number;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(cluster?: ClusterConfig, opts: StaticRegistryOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.sweepMs = opts.sweepMs === undefined ? 250 : checkInt(opts.sweepMs, 'sweepMs', 10, 60_000);
    if (cluster) this.apply(cluster, opts.groups);
  }

  private apply(cluster: ClusterConfig, groups?: Record<string, number>): boolean {
    const facts = clusterFacts(cluster, groups);
    const digest = JSON.stringify(facts);
    if (digest === this.digest) return false;
    this.facts = facts;
    this.digest = digest;
    this.coordinators = new Map(facts.rings.map((r) => [r.id, r.ring[r.ring.length - 1]!]));
    return true;
  }

  private check(op: string, opts?: CallOptions): void {
    if (opts?.timeoutMs !== undefined) checkTimeout(opts.timeoutMs);
    if (this.closed) throw new RegistryUnavailableError(op, 'the registry is closed');
  }

  async load(cluster: ClusterConfig, opts: LoadOptions = {}): Promise<LoadResult> {
    this.check('load', opts);
    const changed = this.apply(cluster, opts.groups);
    if (changed) this.watchers.emit({ kind: 'cluster-loaded', nodes: this.facts.nodes.length, rings: this.facts.rings.length });
    return { changed };
  }

  async view(opts?: CallOptions): Promise<RegistryView> {
    this.check('view', opts);
    const now = this.now();
    const nodes = new Map<number, RegistryNode>();
    for (const n of this.facts.nodes) nodes.set(n.id, { ...n, configured: true, live: false, expiresAt: null });
    for (const [id, l] of this.live) {
      if (l.expiresAt <= now) continue;
      const prev = nodes.get(id);
      const n: RegistryNode = { id, host: l.addr.host, port: l.addr.port, configured: prev !== undefined, live: true, expiresAt: l.expiresAt };
      const mp = l.addr.metricsPort ?? prev?.metricsPort;
      if (mp !== undefined) n.metricsPort = mp;
      nodes.set(id, n);
    }
    const leases: Lease[] = [...this.coordinators].map(([ring, holder]) => ({ ring, holder, ballot: 0, expiresAt: null }));
    return {
      now,
      loaded: this.digest !== '',
      nodes: [...nodes.values()].sort((a, b) => a.id - b.id),
      rings: this.facts.rings.map((r) => ({ ...r, acceptors: [...r.acceptors], ring: [...r.ring], spares: [...r.spares] })),
      groups: { ...this.facts.groups },
      leases: leases.sort((a, b) => a.ring - b.ring),
      subscriptions: [...this.subs]
        .filter(([, s]) => s.expiresAt > now)
        .map(([learner, s]) => ({ learner, rings: [...s.rings], expiresAt: s.expiresAt }))
        .sort((a, b) => a.learner - b.learner),
    };
  }

  /** True only for the ring's configured coordinator. */
  async acquireLease(ring: number, node: number, ballot: number, ttlMs: number, opts?: CallOptions): Promise<boolean> {
    checkRing(ring);
    checkNode(node);
    checkBallot(ballot);
    checkTtl(ttlMs);
    this.check('acquireLease', opts);
    return this.coordinators.get(ring) === node;
  }

  async renewLease(ring: number, node: number, ttlMs: number, opts?: CallOptions): Promise<boolean> {
    checkRing(ring);
    checkNode(node);
    checkTtl(ttlMs);
    this.check('renewLease', opts);
    return this.coordinators.get(ring) === node;
  }

  /** Static leases cannot be given up: always false. */
  async releaseLease(ring: number, node: number, opts?: CallOptions): Promise<boolean> {
    checkRing(ring);
    checkNode(node);
    this.check('releaseLease', opts);
    return false;
  }

  async leaseOf(ring: number, opts?: CallOptions): Promise<Lease | null> {
    checkRing(ring);
    this.check('leaseOf', opts);
    const holder = this.coordinators.get(ring);
    return holder === undefined ? null : { ring, holder, ballot: 0, expiresAt: null };
  }

  async setRingOrder(ring: number, node: number, order: number[], opts?: CallOptions): Promise<boolean> {
    checkRing(ring);
    checkNode(node);
    this.check('setRingOrder', opts);
    const r = this.facts.rings.find((x) => x.id === ring);
    if (!r) throw new ConfigError('ring', `ring ${ring} is not in the registry (load a cluster first)`);
    const o = checkOrder(order, r);
    if (this.coordinators.get(ring) !== node) return false;
    r.ring = o;
    r.spares = r.acceptors.filter((a) => !o.includes(a));
    this.watchers.emit({ kind: 'ring-changed', ring, order: [...o] });
    return true;
  }

  async registerNode(node: number, addr: NodeAddress, ttlMs: number, opts?: CallOptions): Promise<void> {
    checkNode(node);
    const a = checkAddress(addr);
    checkTtl(ttlMs);
    this.check('registerNode', opts);
    const now = this.now();
    const prev = this.live.get(node);
    this.live.set(node, { addr: a, expiresAt: now + ttlMs });
    if (!prev || prev.expiresAt <= now || JSON.stringify(prev.addr) !== JSON.stringify(a)) {
      this.watchers.emit({ kind: 'node-registered', node, host: a.host, port: a.port });
    }
  }

  async subscribe(learnerId: number, rings: number[], ttlMs: number, opts?: CallOptions): Promise<void> {
    checkLearner(learnerId);
    const rs = checkRings(rings);
    checkTtl(ttlMs);
    this.check('subscribe', opts);
    const now = this.now();
    const prev = this.subs.get(learnerId);
    this.subs.set(learnerId, { rings: rs, expiresAt: now + ttlMs });
    if (!prev || prev.expiresAt <= now || prev.rings.join() !== rs.join()) {
      this.watchers.emit({ kind: 'subscription-changed', learner: learnerId, rings: [...rs], reason: 'subscribed' });
    }
  }

  async unsubscribe(learnerId: number, opts?: CallOptions): Promise<boolean> {
    checkLearner(learnerId);
    this.check('unsubscribe', opts);
    const prev = this.subs.get(learnerId);
    this.subs.delete(learnerId);
    const was = prev !== undefined && prev.expiresAt > this.now();
    if (was) this.watchers.emit({ kind: 'subscription-changed', learner: learnerId, rings: null, reason: 'unsubscribed' });
    return was;
  }

  /** Drop what expired and announce it (done every `sweepMs` while watched). */
  sweep(): number {
    const now = this.now();
    let n = 0;
    for (const [id, l] of this.live) {
      if (l.expiresAt > now) continue;
      this.live.delete(id);
      this.watchers.emit({ kind: 'node-expired', node: id });
      n++;
    }
    for (const [id, s] of this.subs) {
      if (s.expiresAt > now) continue;
      this.subs.delete(id);
      this.watchers.emit({ kind: 'subscription-changed', learner: id, rings: null, reason: 'expired' });
      n++;
    }
    return n;
  }

  watch(listener: RegistryListener): () => void {
    if (this.closed) throw new RegistryUnavailableError('watch', 'the registry is closed');
    const stop = this.watchers.add(listener);
    if (!this.sweeper) {
      this.sweeper = setInterval(() => this.sweep(), this.sweepMs);
      this.sweeper.unref();
    }
    return () => {
      stop();
      if (this.watchers.size === 0 && this.sweeper) {
        clearInterval(this.sweeper);
        this.sweeper = undefined;
      }
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watchers.clear();
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }
}

