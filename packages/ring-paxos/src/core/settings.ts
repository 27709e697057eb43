/**
 * Tunables of one ring, with defaults. Every queue, window and buffer in the cores takes its bound from
 * here; the cluster-file loader validates them once at start (see ../config.ts).
 */
export interface RingSettings {
  /** Most undecided instances the coordinator keeps open at once (flow control). */
  window: number;
  /** Most instances an acceptor log holds; the coordinator never opens an instance past safe + this. */
  logCapacity: number;
  /** Instances acceptors keep below what every learner delivered, for learners that join later. */
  logRetain: number;
  /**
   * Value bytes acceptors keep below what every learner delivered (0: no byte bound, logRetain alone). The
   * trim point then rises until the instances kept hold at most this many bytes, never keeping fewer than
   * min(window, logRetain) instances (a coordinator that takes over re-learns recent proposals from them).
   */
  logRetainBytes: number;
  /**
   * Most retention holds (holders with durable checkpoints, e.g. replicas with --checkpoint-dir) the
   * coordinator keeps in force; past it the least recently renewed hold yields (0: every hold refused).
   */
  maxHolds: number;
  /** Byte bound of one instance value (a batch of proposals). */
  maxValueBytes: number;
  /** Byte bound of one datagram on the wire, header and tag included. */
  maxDatagramBytes: number;
  /** How long the coordinator may wait to fill a batch; 0 cuts a value at the end of every turn. */
  lingerMs: number;
  /** How long a proposer may wait to fill a Propose datagram; 0 sends at the end of every turn. */
  proposerLingerMs: number;
  /** Coordinator re-sends Phase 2A of an instance undecided for this long. */
  phase2TimeoutMs: number;
  /** Coordinator re-sends Phase 1A when a range is not promised within this long. */
  phase1TimeoutMs: number;
  /** Instances covered by one Phase 1 run ahead. */
  phase1Range: number;
  /** Learner keep-alive and safe-instance report period. */
  progressIntervalMs: number;
  /** A learner silent this long is dropped from the safe-instance computation. */
  learnerTimeoutMs: number;
  /** Most learners one coordinator serves. */
  maxLearners: number;
  /** A learner asks an acceptor for missing instances after waiting this long. */
  gapTimeoutMs: number;
  /** Most instances asked for in one retransmission request. */
  maxRetransmitInstances: number;
  /** Most instances a learner buffers ahead of the one it delivers next. */
  learnerBuffer: number;
  /** Proposer re-sends a value unacknowledged for this long. */
  retryTimeoutMs: number;
  /** Proposer gives a value up (and reports it failed) after this many sends. */
  maxSends: number;
  /** Most values one proposer has outstanding (sent or queued) at once. */
  maxOutstanding: number;
  /** Most proposers whose de-duplication state the coordinator and learners keep (least recent evicted). */
  maxProposers: number;
  /** Coordinator heartbeats every acceptor this often, and sends learners a decision heartbeat when idle. */
  heartbeatMs: number;
  /** An acceptor that hears nothing from the coordinator this long (plus a third of it per rank) takes over. */
  coordinatorTimeoutMs: number;
  /** The coordinator replaces a ring member it has not heard from this long (new ballot, new ring). */
  acceptorTimeoutMs: number;
  /**
   * Multi-Ring Paxos rate leveling, λ: logical positions per second every ring keeps up with (0: off, and an
   * instance's position is its instance number). With λ > 0 each instance ends at max(prev + 1,
   * λ * (now - epochMs)), an idle ring proposes a skip every skipIntervalMs, and a ring never runs more
   * than `window` positions ahead of the target (`window` past the end of its last skip with a lead, at most
   * skipLeadMs of positions past the target). λ must exceed the busiest ring's instance rate.
   */
  lambda: number;
  /** Δ: how often an idle coordinator checks whether it must propose a skip. */
  skipIntervalMs: number;
  /**
   * A ring that opened no value for a whole Δ skips this many milliseconds of positions past the target
   * (0: exactly to it). Busy rings merged with an idle one then find it already past their values instead of
   * waiting on a skip on demand; a value that then comes to the idle ring waits up to this long for the
   * others to catch up.
   */
  skipLeadMs: number;
  /** The start time all rings share for rate leveling (wall-clock milliseconds). */
  epochMs: number;
}

export const DEFAULT_RING_SETTINGS: Readonly<RingSettings> = Object.freeze({
  window: 64,
  logCapacity: 16384,
  logRetain: 4096,
  logRetainBytes: 0,
  maxHolds: 16,
  maxValueBytes: 32 * 1024,
  maxDatagramBytes: 60 * 1024,
  lingerMs: 0,
  proposerLingerMs: 0,
  phase2TimeoutMs: 50,
  phase1TimeoutMs: 100,
  phase1Range: 4096,
  progressIntervalMs: 50,
  learnerTimeoutMs: 2000,
  maxLearners: 256,
  gapTimeoutMs: 30,
  maxRetransmitInstances: 64,
  learnerBuffer: 8192,
  retryTimeoutMs: 200,
  maxSends: 25,
  maxOutstanding: 4096,
  maxProposers: 4096,
  heartbeatMs: 50,
  coordinatorTimeoutMs: 500,
  acceptorTimeoutMs: 500,
  lambda: 0,
  skipIntervalMs: 10,
  skipLeadMs: 0,
  epochMs: 1_700_000_000_000,
});

/**
 * How often a node without an acceptor role needs its timers: a third of the shortest wait its roles time
 * (a learner: gapTimeoutMs and progressIntervalMs; a proposer: retryTimeoutMs, and proposerLingerMs when
 * set), never more often than the cluster's tick. A timer wake-up costs a process about 0.1 ms of CPU on a
 * busy machine, and clients are the processes there are many of. Acceptors keep the cluster's tick: the
 * coordinator's Δ check and Phase 2 retransmissions need it.
 */
export function clientTickMs(s: RingSettings, tickMs: number, roles: { learner: boolean; proposer: boolean }): number {
  let need = Infinity;
  if (roles.learner) need = Math.min(need, s.gapTimeoutMs, s.progressIntervalMs);
  if (roles.proposer) need = Math.min(need, s.retryTimeoutMs, s.proposerLingerMs > 0 ? s.proposerLingerMs : Infinity);
  return need === Infinity ? tickMs : Math.max(tickMs, Math.floor(need / 3));
}

/** Bytes the wire adds around a value in Phase 2A / Learn, decisions included (see wire/codec.ts). */
export const DATAGRAM_OVERHEAD = 1024;
/** Bytes a batch adds per entry around its data (seq and length headers). */
export const ENTRY_OVERHEAD = 16;
/** Bytes a batch adds per proposer group. */
export const GROUP_OVERHEAD = 32;
/** Most decision triples one message carries. */
export const MAX_DECISION_TRIPLES = 32;
