import { decodeBatch } from './batch.js';
import type { RingSettings } from './settings.js';

/** The counters rate leveling keeps (fields of the coordinator's stats). */
export interface RateLevelerStats {
  skips: number;
  /** Skips proposed at once because a learner asked (SkipRequest), counted in `skips` too. */
  demandSkips: number;
}

/**
 * Rate leveling at a coordinator (pure): the position each value of the ring ends at, and when the ring
 * proposes skips. With λ (`settings.lambda`) on, a ring's positions follow the target λ x (now - epoch), so
 * that learners merging several rings by position find every ring near the same point:
 * - a new value's position is at least the target (and, while a learner waits for this ring to pass a
 *   position, that position, within the lead);
 * - an idle ring behind the target proposes a skip (a value with no proposals) ending at it; a ring quiet
 *   for a whole Δ (`skipIntervalMs`) skips `lead()` positions further;
 * - a learner whose merge waits for this ring asks it (SkipRequest) to skip now rather than at the next Δ;
 * - a ring never opens a value more than `window` positions past the target (or the end of its last lead).
 * The coordinator decides whether the ring is idle and proposes the skips; this class keeps the clocks,
 * the positions asked for and the last position (`lastPos`).
 */
export class RateLeveler {
  /** Position of instance next - 1 (-1: unknown, after a takeover that could not read it). */
  lastPos = -1;
  /** The last Δ check, or the last value instance opened (its position was raised to the target then). */
  private lastSkipCheckAt = -Infinity;
  /** When this coordinator last opened an instance with proposals (a ring quiet since a Δ skips with a lead). */
  private lastValueAt = -Infinity;
  /** The end of the last skip past the target: values may open up to `window` past it (flow control). */
  private ledTo = -1;
  private lastDemandSkipAt = -Infinity;
  /** The highest position a learner asked this ring to pass (skips on demand until it has). */
  private demandPos = -1;

  constructor(
    private readonly s: RingSettings,
    private readonly stats: RateLevelerStats,
  ) {}

  /** A ballot starts. Not quiet yet: a coordinator that takes over a busy ring does not lead its first skip past the values about to come. */
  started(now: number): void {
    this.lastValueAt = now;
  }

  /** The target position at `now` (0 when λ is off). */
  target(now: number): number {
    return this.s.lambda > 0 ? Math.floor((this.s.lambda * (now - this.s.epochMs)) / 1000) : 0;
  }

  /** Positions a quiet ring's skips, and skips on demand, may run ahead of the target (skipLeadMs of λ). */
  private lead(): number {
    return this.s.skipLeadMs > 0 ? Math.floor((this.s.lambda * this.s.skipLeadMs) / 1000) : 0;
  }

  /**
   * The position a learner asked this ring to pass, as far as the other rings' leads can reach past the
   * target (-1: none asked). A skip on demand, or a value opening while one is asked, ends there.
   */
  private demandedWithin(target: number): number {
    return Math.min(this.demandPos, target + this.lead());
  }

  /** Flow control: whether a value may open now (never more than `window` positions past the target or the last lead). */
  allowsOpen(now: number): boolean {
    return this.s.lambda <= 0 || this.lastPos < 0 || this.lastPos < Math.max(this.target(now), this.ledTo) + this.s.window;
  }

  /**
   * The position of the instance being opened. λ off: its instance number. Otherwise one past the last
   * instance's, and, for new proposals (`raise`), at least the rate-leveling target. Fillers below a
   * recovered value are never raised: they must stay below it. With the last position unknown (a takeover
   * that could not read it): just below the next recovered value (`recovered`: what Phase 1 found, by
   * instance), counting down one per instance between (the coordinator that proposed it counted up at least
   * that much), or else the target (a ring never runs more than `window` positions, plus `skipLeadMs` of
   * them after a lead skip, ahead of it, and it has grown by λ times the takeover delay since: config checks
   * that this covers both).
   */
  nextPos(instance: number, raise: boolean, now: number, recovered: ReadonlyMap<number, { value: Uint8Array }>): number {
    if (this.s.lambda <= 0) return instance;
    let base: number;
    if (this.lastPos >= 0) {
      base = this.lastPos + 1;
    } else {
      let above = -1;
      for (const j of recovered.keys()) if (j > instance && (above < 0 || j < above)) above = j;
      const b = above >= 0 ? decodeBatch(recovered.get(above)!.value) : undefined;
      base = b ? b.pos - (above - instance) : this.target(now);
    }
    if (!raise) return base;
    // A value opening while a learner waits for this ring to pass a position (another ring ran ahead with a
    // lead) goes there at once, within the lead: a busy ring cannot skip, but its next value can end there.
    const target = this.target(now);
    const demanded = this.demandedWithin(target);
    if (demanded <= Math.max(base, target)) return Math.max(base, target);
    this.ledTo = Math.max(this.ledTo, demanded);
    return demanded;
  }

  /** A value with proposals opened at `now`: it counts as a Δ check, the ring is next checked a whole Δ after it. */
  valueOpened(now: number): void {
    this.lastSkipCheckAt = now;
    this.lastValueAt = now;
  }

  /**
   * Where a skip proposed now would end: at the target, `lead()` further when the ring opened no value for a
   * whole Δ (so that the busy rings merged with it find it already past their values' positions instead
   * of waiting for a skip on demand), or where a learner asked (`onDemand`). Undefined when the ring
   * already passed it: no skip.
   */
  skipEnd(now: number, onDemand: boolean): number | undefined {
    const quiet = now - this.lastValueAt >= this.s.skipIntervalMs;
    const target = this.target(now);
    const t = Math.max(target + (quiet ? this.lead() : 0), onDemand ? this.demandedWithin(target) : -1);
    return this.lastPos < t ? t : undefined;
  }

  /** The coordinator proposed a skip ending at `t` (given by skipEnd). */
  skipped(t: number, now: number, onDemand: boolean): void {
    if (t > this.target(now)) this.ledTo = t;
    this.stats.skips++;
    if (onDemand) this.stats.demandSkips++;
  }

  /**
   * A learner of this ring (the caller checks it registered) waits for the ring to pass `pos`. Kept (at most
   * the lead and a window past the target) so that ends of turns skip until the ring passed it.
   */
  onSkipRequest(pos: number, now: number): void {
    if (this.s.lambda <= 0 || pos <= this.lastPos) return;
    this.demandPos = Math.max(this.demandPos, Math.min(pos, this.target(now) + this.lead() + this.s.window));
  }

  /** End of a turn: whether to try a skip on demand now (a position asked is not passed; at most once per ms). */
  demandSkipDue(now: number): boolean {
    if (this.demandPos <= this.lastPos || now - this.lastDemandSkipAt < 1) return false;
    this.lastDemandSkipAt = now;
    return true;
  }

  /**
   * Tick: whether a Δ check is due. A busy ring (a value opened within Δ) is never checked, so it proposes
   * no skips that would only cost instances; an idle one is checked Δ after it went quiet and every Δ after.
   */
  checkDue(now: number): boolean {
    if (this.s.lambda <= 0 || now - this.lastSkipCheckAt < this.s.skipIntervalMs) return false;
    this.lastSkipCheckAt = now;
    return true;
  }
}
