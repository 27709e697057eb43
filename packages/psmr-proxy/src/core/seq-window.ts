/**
 * The commands a client has in flight, by seq (pure). Seqs are handed out consecutively and a new one is
 * admitted only while it is less than `span` past the oldest one still waiting, so a ring of `span` slots
 * (rounded up to a power of two) holds them all: no hash table to grow, shrink and copy as the number in
 * flight moves (a Map did that at every swing, and the garbage collector copied its tables).
 */
/** The largest span (slots are allocated up front: 2^20 of them take 8 MB). */
export const MAX_SPAN = 1 << 20;

export interface Sequenced {
  readonly seq: number;
}

export class SeqWindow<T extends Sequenced> {
  private readonly slots: Array<T | undefined>;
  private readonly mask: number;
  private n = 0;
  /** No seq below this is in the window (the oldest one is at or above it). */
  private low = 0;
  /** The highest seq ever added (-1: none): seqs only go up. */
  private high = -1;

  constructor(readonly span: number) {
    if (!Number.isInteger(span) || span < 1 || span > MAX_SPAN) throw new RangeError(`span must be an integer in 1..${MAX_SPAN}, got ${span}`);
    let size = 1;
    while (size < span) size *= 2;
    // Filled one by one: a packed array (a large `new Array(n)` may start out as a dictionary).
    this.slots = [];
    for (let i = 0; i < size; i++) this.slots.push(undefined);
    this.mask = size - 1;
  }

  get size(): number {
    return this.n;
  }

  get(seq: number): T | undefined {
    if (seq < this.low) return undefined;
    const p = this.slots[seq & this.mask];
    return p !== undefined && p.seq === seq ? p : undefined;
  }

  /** Add `p`; its seq must be above every seq added before and less than `span` past the oldest in the window. */
  add(p: T): void {
    if (!Number.isSafeInteger(p.seq) || p.seq <= this.high) throw new RangeError(`seq ${p.seq} is not above the last one added (${this.high})`);
    if (this.n === 0) this.low = p.seq;
    else if (p.seq - this.oldest()! >= this.span) throw new RangeError(`seq ${p.seq} is ${this.span} or more past the oldest one in flight`);
    this.slots[p.seq & this.mask] = p;
    this.high = p.seq;
    this.n++;
  }

  /** Remove the entry of `seq`, if it is in the window; returns it. */
  delete(seq: number): T | undefined {
    const p = this.get(seq);
    if (p === undefined) return undefined;
    this.slots[seq & this.mask] = undefined;
    this.n--;
    return p;
  }

  /** The oldest seq in the window (undefined when empty). */
  oldest(): number | undefined {
    if (this.n === 0) return undefined;
    while (this.slots[this.low & this.mask] === undefined || this.slots[this.low & this.mask]!.seq !== this.low) this.low++;
    return this.low;
  }

  /**
   * Visit the entries there at the start, oldest first, until `fn` returns false. `fn` may delete entries,
   * add newer ones (not visited) or clear the window (the visit then ends).
   */
  forEach(fn: (p: T) => boolean): void {
    const first = this.oldest();
    if (first === undefined) return;
    const last = this.high;
    for (let s = first; s <= last && this.n > 0; s++) {
      const p = this.slots[s & this.mask];
      if (p === undefined || p.seq !== s) continue;
      if (!fn(p)) return;
    }
  }

  /** Empty the window; returns what it held, oldest first. */
  clear(): T[] {
    const out: T[] = [];
    this.forEach((p) => (out.push(p), true));
    this.slots.fill(undefined);
    this.n = 0;
    return out;
  }
}
