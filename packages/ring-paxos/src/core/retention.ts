import { START_NEXT, START_OLDEST } from './messages.js';
import { RetentionHolds } from './retention-hold.js';
import type { RingSettings } from './settings.js';
import { leftBehind } from './stuck-learner.js';

interface LearnerInfo {
  delivered: number;
  lastSeen: number;
  /** When `delivered` last moved (or the learner registered): the stuck-learner rule reads it. */
  movedAt: number;
  /** Left out of the trim computation (stuck-learner.ts); counted once each time it is. */
  leftBehind: boolean;
  /** It needs this ring's position to keep pace with λ (Progress.paced). */
  paced: boolean;
}

/** The counter retention keeps (a field of the coordinator's stats). */
export interface RetentionStats {
  /** Learners left out of the trim computation because they did not advance while the logs filled. */
  learnersLeftBehind: number;
}

/** What the trim computation reads of the ring at the coordinator. */
export interface RetentionInput {
  now: number;
  /** All instances below are decided. */
  frontier: number;
  /** What the coordinator's acceptor trimmed. */
  trimmed: number;
  /** The coordinator's acceptor log: the byte budget reads the sizes of the values it keeps. */
  log: ReadonlyMap<number, { value: Uint8Array }>;
  /** Ring not chosen yet, or re-proposing what earlier ballots accepted: the holds are not all known. */
  recovering: boolean;
}

/**
 * Retention at a coordinator (pure): the learners subscribed with Progress and what they delivered, and
 * from that the trim point `safe` below which acceptors trim: what every live learner delivered less
 * logRetain, leaving out learners that did not advance while the logs filled (stuck-learner.ts), raised
 * to keep at most logRetainBytes of values, and capped by the retention holds in force (retention-hold.ts).
 */
export class Retention {
  /** Acceptors may trim below this. */
  safe = 0;
  /** Retention holds in force (see retention-hold.ts): the trim point never passes the lowest. */
  readonly holds: RetentionHolds;
  private readonly learners = new Map<number, LearnerInfo>();
  /** Learners re-register after a takeover; until then the trim point stays where it is. */
  private holdUntil = 0;

  /**
   * The byte-bounded retention: value sizes of instances [retainedLo, retainedHi) (kept here, since the log
   * drops its entries once trimmed), from `sizes[sizesHead]` on, and their sum.
   */
  private retainedBytes = 0;
  private retainedLo = 0;
  private retainedHi = 0;
  private sizes: number[] = [];
  private sizesHead = 0;

  constructor(
    private readonly s: RingSettings,
    private readonly stats: RetentionStats,
  ) {
    this.holds = new RetentionHolds(s.maxHolds);
  }

  get learnerCount(): number {
    return this.learners.size;
  }

  /** The subscribed learners (Phase 2A and decisions go to each). */
  learnerIds(): IterableIterator<number> {
    return this.learners.keys();
  }

  isLearner(id: number): boolean {
    return this.learners.has(id);
  }

  /** Some learner needs this ring's position to keep pace with λ (rate leveling skips only then). */
  paced(): boolean {
    for (const l of this.learners.values()) if (l.paced) return true;
    return false;
  }

  /** Taking over: keep the trim point where it is until `until` while learners re-register. */
  holdFor(until: number): void {
    this.holdUntil = until;
  }

  /** The acceptors trimmed up to `t` (or the log starts there): the trim point is at least `t`. */
  atLeast(t: number): void {
    if (this.safe < t) this.safe = t;
  }

  /**
   * A learner's Progress (`start`: where a new one starts, `delivered`: what it delivered). A new learner
   * holds back trimming from where it starts. Returns the oldest instance the logs keep (for the Status
   * answer), or undefined when the learner is refused (maxLearners reached). The caller recomputes the trim
   * point after.
   */
  progress(from: number, start: number, delivered: number, paced: boolean, now: number, frontier: number, trimmed: number): number | undefined {
    // Safe may run ahead of what the acceptors trimmed so far: nothing below it can be promised.
    const oldest = Math.max(this.safe, trimmed);
    let l = this.learners.get(from);
    if (!l) {
      if (this.learners.size >= this.s.maxLearners) return undefined;
      const first = start === START_OLDEST ? oldest : start === START_NEXT ? frontier : Math.max(start, oldest);
      l = { delivered: first - 1, lastSeen: now, movedAt: now, leftBehind: false, paced: false };
      this.learners.set(from, l);
    }
    l.lastSeen = now;
    l.paced = paced;
    if (delivered > l.delivered) {
      l.delivered = Math.min(delivered, frontier - 1);
      l.movedAt = now;
    }
    return oldest;
  }

  /** Forget learners silent for learnerTimeoutMs: they stop holding back trimming. */
  expire(now: number): void {
    for (const [id, l] of this.learners) {
      if (now - l.lastSeen > this.s.learnerTimeoutMs) this.learners.delete(id);
    }
  }

  /**
   * Recompute the trim point: what every live learner delivered less logRetain, leaving out learners that
   * did not advance while the logs filled (stuck-learner.ts). With no learner subscribed (none yet, or all
   * away after a failover) nothing tells what is safe, so the log keeps all it can: it trims only what the
   * window needs room for.
   */
  update(r: RetentionInput): void {
    if (r.now < this.holdUntil) return;
    const s = this.s;
    let safe: number;
    /** The top of what is kept for retention: what every learner delivered, or the frontier with none. */
    let upTo: number;
    if (this.learners.size === 0) {
      upTo = r.frontier;
      safe = r.frontier - Math.max(s.logRetain, s.logCapacity - 2 * s.window);
    } else {
      let delivered = r.frontier;
      for (const l of this.learners.values()) {
        const behind = leftBehind(l, r.now, r.frontier, this.safe, s);
        if (behind && !l.leftBehind) this.stats.learnersLeftBehind++;
        l.leftBehind = behind;
        if (!behind && l.delivered + 1 < delivered) delivered = l.delivered + 1;
      }
      upTo = delivered;
      safe = delivered - s.logRetain;
    }
    // The lowest trim point the log's bounds allow (room for the window under logCapacity, the byte budget).
    let bound = Math.max(this.safe, r.trimmed, r.frontier - (s.logCapacity - 2 * s.window));
    if (s.logRetainBytes > 0) {
      const bytesSafe = this.byteBoundedSafe(upTo, r);
      safe = Math.max(safe, bytesSafe);
      bound = Math.max(bound, bytesSafe);
    }
    // A retention hold wins over every learner rule (it is explicit and bounded): the trim point stops at
    // the lowest hold, unless keeping it would pass the bounds, where the hold yields. Recovering, the holds
    // are not all known: only the bounds.
    safe = this.holds.trimPoint(safe, bound, r.recovering);
    if (safe > this.safe) this.safe = safe;
  }

  /**
   * The lowest trim point below `upTo` (what every learner delivered, or the frontier with none) at which the
   * instances kept below `upTo` hold at most logRetainBytes of values, never keeping fewer than
   * min(window, logRetain). Amortized O(1) per instance: the span only moves up (`upTo` may come down when a
   * slower learner registers; the result is then capped, and the trim point never goes down anyway).
   */
  private byteBoundedSafe(upTo: number, r: RetentionInput): number {
    const floor = Math.max(this.safe, r.trimmed);
    if (this.retainedHi <= floor) {
      this.retainedLo = this.retainedHi = floor;
      this.retainedBytes = 0;
      this.sizes = [];
      this.sizesHead = 0;
    }
    while (this.retainedLo < floor) this.dropOldestRetained();
    for (; this.retainedHi < upTo; this.retainedHi++) {
      const n = r.log.get(this.retainedHi)?.value.length ?? 0;
      this.sizes.push(n);
      this.retainedBytes += n;
    }
    const keepAtLeast = Math.min(this.s.window, this.s.logRetain);
    while (this.retainedBytes > this.s.logRetainBytes && this.retainedLo < this.retainedHi - keepAtLeast) this.dropOldestRetained();
    return Math.min(this.retainedLo, upTo - keepAtLeast);
  }

  private dropOldestRetained(): void {
    this.retainedBytes -= this.sizes[this.sizesHead++]!;
    this.retainedLo++;
    if (this.sizesHead > 1024 && this.sizesHead * 2 > this.sizes.length) {
      this.sizes = this.sizes.slice(this.sizesHead);
      this.sizesHead = 0;
    }
  }
}
