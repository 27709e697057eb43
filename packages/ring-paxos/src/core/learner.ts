import { decodeBatch } from './batch.js';
import { FloorTable } from './floor-table.js';
import { isHoldData } from './retention-hold.js';
import {
  MessageType,
  START_NEXT,
  START_OLDEST,
  type Decision,
  type Learn,
  type Phase2A,
  type Progress,
  type Redirect,
  type Status,
} from './messages.js';
import type { Outbox } from './outbox.js';
import type { RingSettings } from './settings.js';

/** One value delivered to the application, in ring order. */
export interface Delivery {
  instance: number;
  proposer: number;
  seq: number;
  data: Uint8Array;
}

/** One decided instance with its logical position (for Multi-Ring Paxos merging); skips have no values. */
export interface InstanceRecord {
  instance: number;
  pos: number;
  deliveries: Delivery[];
}

/** The learner cannot continue: instances it needs were trimmed from every acceptor it asked. */
export interface GapTrimmed {
  needed: number;
  oldest: number;
}

export interface LearnerStats {
  deliveredInstances: number;
  deliveredValues: number;
  duplicatesDropped: number;
  malformedValues: number;
  retransmitRequests: number;
  bufferFull: number;
  /** Retention holds passed over (control values for the coordinator, never delivered). */
  holdValues: number;
}

export interface LearnerConfig {
  ring: number;
  id: number;
  coordinator: number;
  /** Acceptors that may serve retransmissions, asked in turn. */
  acceptors: readonly number[];
  /** Where to start: START_NEXT, START_OLDEST or an instance number. */
  start: number;
  settings: RingSettings;
  /** Also keep one InstanceRecord per delivered instance (a multi-ring learner merges them). */
  records?: boolean;
  /** This learner needs the ring's position to keep pace with λ (see Progress.paced). */
  paced?: boolean;
}

/**
 * A Ring Paxos learner (pure). It subscribes to the coordinator with periodic Progress reports (which also
 * report the safe instance), collects values from Phase 2A and decisions, delivers decided values in
 * instance order exactly once per (proposer, seq), and fetches what it missed from acceptor logs; it never
 * decides anything itself.
 */
export class Learner {
  readonly stats: LearnerStats = {
    deliveredInstances: 0,
    deliveredValues: 0,
    duplicatesDropped: 0,
    malformedValues: 0,
    retransmitRequests: 0,
    bufferFull: 0,
    holdValues: 0,
  };
  /** Deliveries since the last drain. */
  deliveries: Delivery[] = [];
  /** Instance records since the last drain (only with `records`). */
  records: InstanceRecord[] = [];
  /** Set when the learner fell behind what acceptors still hold; the driver reports it. */
  gapTrimmed: GapTrimmed | undefined;

  /** Next instance to deliver; meaningful once started. */
  next = 0;
  started = false;
  /** Instances below this are known decided (from decisions or the coordinator's Status). */
  knownFrontier = 0;

  private readonly cfg: LearnerConfig;
  private readonly s: RingSettings;
  private readonly values = new Map<number, { vid: number; value: Uint8Array }>();
  private readonly decided = new Map<number, number>();
  private readonly dedup: FloorTable<number>;
  private lastProgressAt = -Infinity;
  private stalledSince = -1;
  private lastRetransmitAt = -Infinity;
  private acceptorTurn = 0;
  /** Last time anything came from the coordinator (2A, Decision, Status); -1 until the first tick. */
  private lastContactAt = -1;
  /** When the acceptors were last asked who coordinates (while the coordinator is silent). */
  private lastProbeAt = -Infinity;
  private knownBallot = 0;
  coordinator: number;

  constructor(cfg: LearnerConfig) {
    this.cfg = cfg;
    this.s = cfg.settings;
    this.coordinator = cfg.coordinator;
    this.dedup = new FloorTable<number>({ maxClients: cfg.settings.maxProposers, maxPerClient: cfg.settings.maxOutstanding * 2 });
  }

  /** May instance i be buffered in `map`? Hard bound learnerBuffer on each map, even before starting. */
  private inWindow(i: number, map: Map<number, unknown>): boolean {
    if (map.size >= this.s.learnerBuffer && !map.has(i)) return false;
    if (!this.started) return i >= this.knownFrontier - this.s.learnerBuffer && i < this.knownFrontier + this.s.learnerBuffer;
    return i >= this.next && i < this.next + this.s.learnerBuffer;
  }

  /** Follow the coordinator of the highest ballot seen. */
  private seeCoordinator(ballot: number, coordinator: number): boolean {
    if (ballot > this.knownBallot) {
      this.knownBallot = ballot;
      this.coordinator = coordinator;
    }
    return coordinator === this.coordinator;
  }
  /** Heard from the coordinator itself since the last tick (a redirect does not count). */
  private contact = false;

  onRedirect(m: Redirect): void {
    if (this.seeCoordinator(m.ballot, m.coordinator)) this.lastProgressAt = -Infinity; // report there now
  }

  onPhase2A(m: Phase2A): void {
    if (this.seeCoordinator(m.ballot, m.from)) this.contact = true;
    this.noteValue(m.instance, m.vid, m.value);
    this.applyDecisions(m.decisions);
    this.tryDeliver();
  }

  onDecision(m: Decision): void {
    if (this.seeCoordinator(m.ballot, m.from)) this.contact = true;
    this.applyDecisions(m.decisions);
    this.tryDeliver();
  }

  onLearn(m: Learn): void {
    for (let k = 0; k < m.insts.length; k++) {
      const i = m.insts[k]!;
      this.noteValue(i, m.vids[k]!, m.values[k]!);
      this.noteDecided(i, m.vids[k]!);
    }
    if (this.started && m.trimmed > this.next && !this.values.has(this.next)) {
      // One acceptor trimmed past us; another may still hold the instance. Give up only when every
      // acceptor has said so for the instance we need.
      if (this.trimmedAt !== this.next) {
        this.trimmedAt = this.next;
        this.trimmedBy.clear();
      }
      this.trimmedBy.set(m.from, m.trimmed);
      if (this.trimmedBy.size >= this.cfg.acceptors.length) {
        const oldest = Math.min(...this.trimmedBy.values());
        if (this.cfg.start === START_OLDEST && this.stats.deliveredInstances === 0) {
          // Asked for the oldest instance held, and told too low an one (the coordinator's view lagged
          // the acceptors'): start at the oldest any acceptor still holds.
          this.next = oldest;
          this.trimmedBy.clear();
          for (const i of this.values.keys()) if (i < oldest) this.values.delete(i);
          for (const i of this.decided.keys()) if (i < oldest) this.decided.delete(i);
        } else {
          this.gapTrimmed = { needed: this.next, oldest };
        }
      }
    }
    this.tryDeliver();
  }
  private trimmedAt = -1;
  private readonly trimmedBy = new Map<number, number>();

  onStatus(m: Status): void {
    if (this.seeCoordinator(m.ballot, m.from)) this.contact = true;
    if (!this.started) {
      const start = this.cfg.start;
      this.next = start === START_NEXT ? m.next : start < 0 ? m.oldest : start;
      if (start >= 0 && start < m.oldest) this.gapTrimmed = { needed: start, oldest: m.oldest };
      this.started = true;
      for (const i of this.values.keys()) if (i < this.next) this.values.delete(i);
      for (const i of this.decided.keys()) if (i < this.next) this.decided.delete(i);
    }
    if (m.next > this.knownFrontier) this.knownFrontier = m.next;
    this.tryDeliver();
  }

  private noteValue(i: number, vid: number, value: Uint8Array): void {
    if (this.started && i < this.next) return;
    if (!this.inWindow(i, this.values)) {
      this.stats.bufferFull++;
      return;
    }
    const d = this.decided.get(i);
    const have = this.values.get(i);
    // Keep the value that matches the decision when there is one; otherwise the newest ballot's.
    if (have && (d === have.vid || (d === undefined && have.vid >= vid))) return;
    this.values.set(i, { vid, value });
  }

  private noteDecided(i: number, vid: number): void {
    if (this.started && i < this.next) return;
    if (i + 1 > this.knownFrontier) this.knownFrontier = i + 1;
    if (!this.inWindow(i, this.decided)) return;
    this.decided.set(i, vid);
  }

  private applyDecisions(d: readonly number[]): void {
    for (let k = 0; k + 2 < d.length; k += 3) {
      const start = d[k]!;
      const end = start + d[k + 1]!;
      const vid = d[k + 2]!;
      const from = this.started ? Math.max(start, this.next) : start;
      if (end > this.knownFrontier) this.knownFrontier = end;
      for (let i = from; i < end; i++) {
        if (!this.inWindow(i, this.decided)) break;
        this.decided.set(i, vid);
      }
    }
  }

  /**
   * Back-pressure: while paused nothing is delivered; values wait in the bounded buffer (what does not fit is
   * dropped and fetched again from acceptors later).
   */
  paused = false;

  resume(): void {
    this.paused = false;
    this.tryDeliver();
  }

  private tryDeliver(): void {
    if (!this.started || this.paused) return;
    for (;;) {
      const vid = this.decided.get(this.next);
      if (vid === undefined) break;
      const v = this.values.get(this.next);
      if (!v || v.vid !== vid) break;
      this.values.delete(this.next);
      this.decided.delete(this.next);
      this.deliverValue(this.next, v.value);
      this.next++;
      this.stalledSince = -1;
    }
  }

  private deliverValue(instance: number, value: Uint8Array): void {
    this.stats.deliveredInstances++;
    const b = decodeBatch(value);
    if (!b) {
      // Every learner sees the same bytes, so every learner skips the same value.
      this.stats.malformedValues++;
      return;
    }
    const first = this.deliveries.length;
    for (const g of b.groups) {
      const cur = this.dedup.open(g.pid, g.floor);
      for (let k = 0; k < g.seqs.length; k++) {
        const seq = g.seqs[k]!;
        if (this.dedup.find(cur, seq) !== undefined) {
          this.stats.duplicatesDropped++;
          continue;
        }
        this.dedup.mark(cur, seq, 1);
        if (isHoldData(g.datas[k]!)) {
          this.stats.holdValues++;
          continue;
        }
        this.stats.deliveredValues++;
        this.deliveries.push({ instance, proposer: g.pid, seq, data: g.datas[k]! });
      }
    }
    if (this.cfg.records) this.records.push({ instance, pos: b.pos, deliveries: this.deliveries.slice(first) });
  }

  /** Take the instance records made since the last call. */
  takeRecords(): InstanceRecord[] {
    const r = this.records;
    if (r.length > 0) this.records = [];
    return r;
  }

  /** Take the deliveries made since the last call. */
  takeDeliveries(): Delivery[] {
    const d = this.deliveries;
    if (d.length > 0) this.deliveries = [];
    return d;
  }

  /**
   * Ask the coordinator for a skip: a multi-ring merge waits for this ring to pass `pos` (the caller rate
   * limits; the coordinator ignores it if the ring already passed or has values on the way).
   */
  requestSkip(pos: number, out: Outbox): void {
    out.send(this.coordinator, { t: MessageType.SkipRequest, ring: this.cfg.ring, from: this.cfg.id, pos: Math.max(0, Math.floor(pos)) });
  }

  private progressMsg(): Progress {
    return {
      t: MessageType.Progress,
      ring: this.cfg.ring,
      from: this.cfg.id,
      delivered: this.started ? this.next - 1 : -1,
      paced: this.cfg.paced ? 1 : 0,
      // Once started, re-registering (after a silence the coordinator timed out) holds trimming from here.
      start: this.started ? this.next : this.cfg.start,
    };
  }

  /** Timers: report progress to the coordinator, and ask an acceptor for what is missing. */
  tick(now: number, out: Outbox): void {
    if (this.contact || this.lastContactAt < 0) {
      this.contact = false;
      this.lastContactAt = now;
    } else if (now - this.lastContactAt > 2 * this.s.heartbeatMs && now - this.lastProbeAt >= this.s.progressIntervalMs) {
      // The coordinator is silent (it sends at least every heartbeatMs): report to every acceptor, every
      // progress interval until it is heard again. A new coordinator answers with Status and the others
      // redirect to the highest ballot they know, so a takeover is followed within one interval of its
      // Phase 1, not a whole coordinatorTimeoutMs later.
      this.lastProbeAt = now;
      for (const a of this.cfg.acceptors) {
        if (a === this.coordinator) continue;
        out.send(a, this.progressMsg());
      }
    }
    if (now - this.lastProgressAt >= this.s.progressIntervalMs) {
      this.lastProgressAt = now;
      out.send(this.coordinator, this.progressMsg());
    }
    if (!this.started || this.knownFrontier <= this.next) {
      this.stalledSince = -1;
      return;
    }
    if (this.stalledSince < 0) {
      this.stalledSince = now;
      return;
    }
    if (now - this.stalledSince < this.s.gapTimeoutMs || now - this.lastRetransmitAt < this.s.gapTimeoutMs) return;
    this.lastRetransmitAt = now;
    const hi = Math.min(this.knownFrontier, this.next + this.s.maxRetransmitInstances);
    const acc = this.cfg.acceptors;
    const target = acc[this.acceptorTurn++ % acc.length]!;
    this.stats.retransmitRequests++;
    out.send(target, { t: MessageType.RetransmitRequest, ring: this.cfg.ring, from: this.cfg.id, lo: this.next, hi });
  }
}
