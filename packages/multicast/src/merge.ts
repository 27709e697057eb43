/**
 * The deterministic merge of Multi-Ring Paxos (pure: no I/O, no clock). A learner subscribed to several
 * rings feeds each ring's decided instances in instance order, each with its logical end position (see the
 * README: a value ends at `prev + 1` or further, a skip at its target, positions strictly increasing per ring).
 * Round `r` gives every ring, in ring id order, the window of positions `(r*M, (r+1)*M]`: first the items
 * of the ring's instances ending in the window, then the next ring once this one's stream has passed the
 * window's end. Because the result depends only on positions, two learners deliver the messages they both
 * receive in the same relative order, whatever the timing of arrivals.
 */
import { ERR, RingcastError } from '@ringcast/ring-paxos';

export interface PositionedInstance<T> {
  /** Logical end position of the instance in its ring. */
  pos: number;
  items: readonly T[];
}

export interface Merged<T> {
  ring: number;
  pos: number;
  item: T;
}

export interface MergerOptions {
  /** Subscribed ring ids (any order; merged in ascending id order). */
  rings: readonly number[];
  /** Positions per ring per round (M). */
  m: number;
  /** Deliver nothing ending at or before `startRound * m` (an agreed subscription point). */
  startRound?: number;
  /** Deliver nothing ending after `stopRound * m` (an agreed unsubscription point); then `done` is true. */
  stopRound?: number;
  /** Most instances buffered per ring; `push` refuses more (back-pressure). */
  maxBuffered: number;
}

/**
 * The round a learner joining where the rings are now starts at, from the end position of the first instance
 * it received from each ring. Several rings: the first round every ring has fully reached (a ring's first
 * instance may have skipped over earlier windows it did not see). One ring: the round its first instance
 * ends in, so that instance is delivered even when M > 1.
 */
export function joinRound(firstPositions: readonly number[], m: number): number {
  const highest = Math.max(0, ...firstPositions.map((p) => p - 1));
  return firstPositions.length === 1 ? Math.floor(highest / m) : Math.ceil(highest / m);
}

/** A merge misconfigured (m, rings, start and stop rounds) or fed a position that does not increase. */
export class MergeError extends RingcastError {
  constructor(message: string) {
    super(ERR.MERGE, message);
    this.name = 'MergeError';
  }
}

interface RingState<T> {
  id: number;
  queue: PositionedInstance<T>[];
  head: number;
  /** Highest position pushed so far (the stream has passed every window ending at or below it). */
  lastPos: number;
}

export class Merger<T> {
  private readonly rings: RingState<T>[];
  private readonly byId = new Map<number, RingState<T>>();
  private readonly m: number;
  private readonly floor: number;
  private readonly maxBuffered: number;
  private round: number;
  private readonly stopRound: number;
  private turn = 0;
  /** Instances refused because the ring's buffer was full. */
  refused = 0;

  constructor(opts: MergerOptions) {
    if (!Number.isInteger(opts.m) || opts.m < 1) throw new MergeError(`m must be a positive integer, got ${opts.m}`);
    if (opts.rings.length === 0) throw new MergeError('rings must not be empty');
    if (new Set(opts.rings).size !== opts.rings.length) throw new MergeError('rings lists a ring twice');
    this.m = opts.m;
    this.maxBuffered = opts.maxBuffered;
    this.round = opts.startRound ?? 0;
    this.stopRound = opts.stopRound ?? Infinity;
    if (this.stopRound < this.round) throw new MergeError(`stopRound ${this.stopRound} is before startRound ${this.round}`);
    this.floor = this.round * this.m;
    this.rings = [...opts.rings].sort((a, b) => a - b).map((id) => ({ id, queue: [], head: 0, lastPos: this.floor }));
    for (const r of this.rings) this.byId.set(r.id, r);
  }

  /**
   * Add the next decided instance of `ring`. Returns false when that ring's buffer is full (the caller
   * stops reading the ring and retries later). Throws MergeError on a position that does not increase.
   */
  push(ring: number, inst: PositionedInstance<T>): boolean {
    const r = this.byId.get(ring);
    if (!r) throw new MergeError(`ring ${ring} is not subscribed`);
    if (inst.pos <= r.lastPos) {
      // Before the agreed start: not ours to deliver; otherwise positions must increase.
      if (inst.pos <= this.floor && r.lastPos === this.floor) return true;
      throw new MergeError(`ring ${ring}: position ${inst.pos} does not follow ${r.lastPos}`);
    }
    if (r.queue.length - r.head >= this.maxBuffered) {
      this.refused++;
      return false;
    }
    r.queue.push(inst);
    r.lastPos = inst.pos;
    return true;
  }

  /** Instances buffered for `ring`. */
  backlog(ring: number): number {
    const r = this.byId.get(ring);
    return r ? r.queue.length - r.head : 0;
  }

  /** The ring the merge is waiting on (its stream has not passed the current window), if any. */
  get waitingOn(): number | undefined {
    const r = this.rings[this.turn]!;
    return r.lastPos >= this.windowEnd() ? undefined : r.id;
  }

  /**
   * A stall a skip would end: the ring the merge waits on while another ring holds *values* to deliver after
   * it, and the position that ring must pass: the end of the round of the first value held back (at least
   * the current window's end), so that one skip can free it even when that value lies rounds ahead (a ring
   * that skipped ahead of the rate-leveling target). Undefined when no value is held up: skips held back by
   * skips are nobody's wait (asking then would make idle rings skip each other in a loop).
   */
  get stall(): { ring: number; pos: number } | undefined {
    const w = this.waitingOn;
    if (w === undefined) return undefined;
    let first = Infinity;
    for (const r of this.rings) {
      if (r.id === w) continue;
      for (let k = r.head; k < r.queue.length; k++) {
        if (r.queue[k]!.items.length > 0) {
          first = Math.min(first, r.queue[k]!.pos);
          break;
        }
      }
    }
    if (first === Infinity) return undefined;
    return { ring: w, pos: Math.max(this.windowEnd(), (Math.floor((first - 1) / this.m) + 1) * this.m) };
  }

  /** True once every round before `stopRound` is delivered. */
  get done(): boolean {
    return this.round >= this.stopRound;
  }

  /** The current round (windows `(round*M, (round+1)*M]`). */
  get currentRound(): number {
    return this.round;
  }

  private windowEnd(): number {
    return (this.round + 1) * this.m;
  }

  /** Deliver everything the merge can deliver now, in merged order. */
  take(): Merged<T>[] {
    const out: Merged<T>[] = [];
    for (;;) {
      if (this.round >= this.stopRound) return out;
      const r = this.rings[this.turn]!;
      const end = this.windowEnd();
      while (r.head < r.queue.length && r.queue[r.head]!.pos <= end) {
        const inst = r.queue[r.head]!;
        r.queue[r.head++] = undefined as unknown as PositionedInstance<T>;
        for (const item of inst.items) out.push({ ring: r.id, pos: inst.pos, item });
      }
      if (r.head > 64 && r.head * 2 > r.queue.length) {
        r.queue.splice(0, r.head);
        r.head = 0;
      }
      if (r.lastPos < end) return out; // this ring has not passed the window yet: wait for it
      this.turn++;
      if (this.turn === this.rings.length) {
        this.turn = 0;
        this.round++;
        this.skipIdleRounds();
      }
    }
  }

  /** Jump over rounds in which no ring has anything to deliver and none needs waiting for. */
  private skipIdleRounds(): void {
    let next = Infinity;
    for (const r of this.rings) {
      const round = r.head < r.queue.length ? Math.floor((r.queue[r.head]!.pos - 1) / this.m) : Math.floor(r.lastPos / this.m);
      if (round < next) next = round;
    }
    if (next > this.round) this.round = Math.min(next, this.stopRound);
  }
}
