import { ERR, RingcastError, type ClusterConfig } from '@ringcast/ring-paxos';

/** Options every registry call takes: how long it may take before it rejects. */
export interface CallOptions {
  /** Milliseconds (1..60000); default: the registry's `timeoutMs` (500 unless configured). */
  timeoutMs?: number;
}

/** Where a node listens, as it registers itself. */
export interface NodeAddress {
  host: string;
  port: number;
  metricsPort?: number;
}

/** A node as the registry knows it: from the cluster file (`configured`) and/or a live registration. */
export interface RegistryNode extends NodeAddress {
  id: number;
  /** Listed by the loaded cluster file. */
  configured: boolean;
  /** Registered and not expired; host/port/metricsPort are then the registered ones. */
  live: boolean;
  /** When the registration lapses (registry clock, ms since the epoch); null when not live. */
  expiresAt: number | null;
}

export interface RegistryRing {
  id: number;
  /** All 2f+1 acceptors. */
  acceptors: number[];
  /** The current ring order; the last member is the coordinator it was laid out for. */
  ring: number[];
  /** Acceptors not in the ring order. */
  spares: number[];
  f: number;
}

/** A coordinator lease: a liveness hint, never a safety argument (Paxos ballots decide). */
export interface Lease {
  ring: number;
  holder: number;
  ballot: number;
  /** Registry clock, ms since the epoch; null: never expires (StaticRegistry). */
  expiresAt: number | null;
}

export interface Subscription {
  learner: number;
  rings: number[];
  expiresAt: number;
}

/** The whole live view: expired registrations, leases and subscriptions are left out. */
export interface RegistryView {
  /** The registry's clock when the view was read (ms since the epoch). */
  now: number;
  /** A cluster file was loaded. */
  loaded: boolean;
  nodes: RegistryNode[];
  rings: RegistryRing[];
  /** Group name -> ring id (one ring per group; `g<ringId>` unless given at load). */
  groups: Record<string, number>;
  leases: Lease[];
  subscriptions: Subscription[];
}

/** Change notifications; after `registry-up`, read `view()` again: changes while down were not seen. */
export type RegistryEvent =
  | { kind: 'cluster-loaded'; nodes: number; rings: number }
  | { kind: 'node-registered'; node: number; host: string; port: number }
  | { kind: 'node-expired'; node: number }
  | { kind: 'lease-changed'; ring: number; holder: number | null; ballot: number | null; reason: 'acquired' | 'expired' | 'released' }
  | { kind: 'ring-changed'; ring: number; order: number[] }
  | { kind: 'subscription-changed'; learner: number; rings: number[] | null; reason: 'subscribed' | 'unsubscribed' | 'expired' }
  | { kind: 'registry-down'; error: string }
  | { kind: 'registry-up' };

export type RegistryListener = (event: RegistryEvent) => void;

export interface LoadOptions extends CallOptions {
  /** Group name -> ring id; default: `g<ringId>` for every ring. */
  groups?: Record<string, number>;
}

export interface LoadResult {
  /** False when the registry already held exactly these facts (load is idempotent). */
  changed: boolean;
}

/**
 * Where rings, acceptors, coordinators and learners are. Every call is bounded by its timeout and
 * rejects with a typed error (RegistryUnavailableError, ConfigError), never hangs.
 */
export interface Registry {
  /** Write a cluster's facts (nodes, rings, groups), replacing the previous ones; idempotent. */
  load(cluster: ClusterConfig, opts?: LoadOptions): Promise<LoadResult>;
  view(opts?: CallOptions): Promise<RegistryView>;
  /**
   * Take or refresh the coordinator lease of `ring`. An unexpired lease is only renewed by its holder
   * (with a ballot not lower than the lease's); another node gets it only after it expired.
   */
  acquireLease(ring: number, node: number, ballot: number, ttlMs: number, opts?: CallOptions): Promise<boolean>;
  /** Extend an unexpired lease held by `node`; false if it lapsed or another node holds it. */
  renewLease(ring: number, node: number, ttlMs: number, opts?: CallOptions): Promise<boolean>;
  /** Give the lease up (only its holder can); false if `node` did not hold it. */
  releaseLease(ring: number, node: number, opts?: CallOptions): Promise<boolean>;
  /** The unexpired lease of `ring`, or null. */
  leaseOf(ring: number, opts?: CallOptions): Promise<Lease | null>;
  /** Record the current ring order of `ring`; only the holder of its unexpired lease may. */
  setRingOrder(ring: number, node: number, order: number[], opts?: CallOptions): Promise<boolean>;
  /** Announce that `node` is alive at `addr` for `ttlMs`; call again before it lapses. */
  registerNode(node: number, addr: NodeAddress, ttlMs: number, opts?: CallOptions): Promise<void>;
  /** Learner `learnerId` follows `rings` for `ttlMs`; the learner calls again to refresh. */
  subscribe(learnerId: number, rings: number[], ttlMs: number, opts?: CallOptions): Promise<void>;
  /** Drop a learner's subscription; false if it had none. */
  unsubscribe(learnerId: number, opts?: CallOptions): Promise<boolean>;
  /** Receive change notifications; returns the function that stops them. */
  watch(listener: RegistryListener): () => void;
  /** Release connections and timers; later calls reject. */
  close(): Promise<void>;
}

/** The registry could not be reached (or did not answer) within the call's timeout. */
export class RegistryUnavailableError extends RingcastError {
  constructor(
    readonly operation: string,
    detail: string,
  ) {
    super(ERR.REGISTRY, `registry ${operation}: ${detail}`);
    this.name = 'RegistryUnavailableError';
  }
}
