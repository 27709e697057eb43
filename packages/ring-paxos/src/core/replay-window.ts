/**
 * Anti-replay for authenticated datagrams (pure: time comes in as `now`, milliseconds).
 *
 * With a cluster secret every datagram carries, inside the HMAC, its sender's incarnation (48 random bits
 * drawn when the sender's codec is made, one per process role set), a counter that rises by one per
 * datagram the sender encodes, and the sender's clock in whole milliseconds. A receiver accepts a datagram
 * only if:
 * - its timestamp is within `freshnessMs` of the receiver's clock (else 'stale'): nothing captured more
 *   than that long ago is accepted anywhere, so clocks must agree within freshnessMs less network delay;
 * - its counter was not seen before and is above the sender's highest counter less `windowBits` (else
 *   'replay'): a sliding bitmap per sender, as IPsec's, so datagrams reordered within the window pass;
 * - for a sender not in the table, its timestamp is at least the table's floor (else 'replay').
 *
 * The table holds at most `maxSenders` incarnations, least recently used evicted first. An entry whose
 * newest timestamp is older than freshnessMs can go without a trace (its datagrams are all stale already).
 * Evicting one that is still fresh raises the floor above its newest timestamp: a replay of its datagrams
 * is then refused as older than the floor, and the sender's own new datagrams (later timestamps) open a
 * new entry. What eviction costs is liveness, never a second acceptance: a sender whose clock is behind
 * the evicted sender's newest timestamp is not heard until its clock passes the floor. The floor starts at
 * the receiver's start time, so a datagram captured before a receiver restarted is refused by the new
 * process (a sender whose clock lags the receiver's by d is heard d after the restart).
 */

export type ReplayVerdict = 'ok' | 'replay' | 'stale';

export interface ReplayGuardOptions {
  /** Bits of the per-sender sliding window: reorder depth in the sender's datagrams (a multiple of 32). */
  windowBits: number;
  /** Most senders (incarnations) tracked at once. */
  maxSenders: number;
  /** Timestamps further than this from the receiver's clock are stale. */
  freshnessMs: number;
}

export const DEFAULT_REPLAY_GUARD: Readonly<ReplayGuardOptions> = Object.freeze({ windowBits: 2048, maxSenders: 4096, freshnessMs: 5000 });

interface SenderWindow {
  /** Highest counter accepted. */
  top: number;
  /** Bit (c mod windowBits) is set when counter c in (top - windowBits, top] was accepted. */
  bits: Uint32Array;
  /** Newest timestamp accepted. */
  maxTs: number;
  /** Timestamps below this are refused (the floor when the entry opened). */
  minTs: number;
  /** Receiver time of the last move to the most-recently-used end of the table. */
  touched: number;
}

export class ReplayGuard {
  private readonly senders = new Map<number, SenderWindow>();
  private readonly words: number;
  private readonly mask: number;
  private readonly o: ReplayGuardOptions;
  /** A sender not in the table is heard only from this timestamp on. */
  floor: number;
  /** Entries evicted while still fresh (each raised the floor). */
  evictedFresh = 0;

  constructor(now: number, opts: Partial<ReplayGuardOptions> = {}) {
    this.o = { ...DEFAULT_REPLAY_GUARD, ...opts };
    const w = this.o.windowBits;
    if (!Number.isInteger(w) || w < 32 || (w & (w - 1)) !== 0) throw new RangeError(`windowBits must be a power of two >= 32, got ${w}`);
    if (!(this.o.maxSenders >= 1)) throw new RangeError(`maxSenders must be at least 1, got ${this.o.maxSenders}`);
    this.words = w >>> 5;
    this.mask = w - 1;
    this.floor = Math.floor(now);
  }

  get size(): number {
    return this.senders.size;
  }

  /** Check a datagram's envelope and, when it is accepted, remember it. */
  check(incarnation: number, counter: number, ts: number, now: number): ReplayVerdict {
    const F = this.o.freshnessMs;
    if (ts < now - F || ts > now + F) return 'stale';
    const e = this.senders.get(incarnation);
    if (e === undefined) {
      if (ts < this.floor) return 'replay';
      if (this.senders.size >= this.o.maxSenders) this.evictOne(now);
      const bits = new Uint32Array(this.words);
      bits[(counter & this.mask) >>> 5] = 1 << (counter & 31);
      this.senders.set(incarnation, { top: counter, bits, maxTs: ts, minTs: this.floor, touched: now });
      return 'ok';
    }
    if (ts < e.minTs) return 'replay';
    const k = (counter & this.mask) >>> 5;
    const b = 1 << (counter & 31);
    if (counter > e.top) {
      this.clearAbove(e, counter);
      e.top = counter;
    } else if (e.top - counter >= this.o.windowBits || (e.bits[k]! & b) !== 0) {
      return 'replay';
    }
    e.bits[k]! |= b;
    if (ts > e.maxTs) e.maxTs = ts;
    // Keep the table in least-recently-used order, coarsely: one move per quarter of freshnessMs.
    if (now - e.touched > F / 4) {
      this.senders.delete(incarnation);
      this.senders.set(incarnation, e);
      e.touched = now;
    }
    return 'ok';
  }

  /** Clear the bits of counters (e.top, to]: they enter the window unseen. */
  private clearAbove(e: SenderWindow, to: number): void {
    const bits = e.bits;
    if (to - e.top >= this.o.windowBits) {
      bits.fill(0);
      return;
    }
    for (let c = e.top + 1; c <= to; c++) {
      if ((c & 31) === 0 && c + 31 <= to) {
        bits[(c & this.mask) >>> 5] = 0;
        c += 31;
      } else {
        bits[(c & this.mask) >>> 5]! &= ~(1 << (c & 31));
      }
    }
  }

  private evictOne(now: number): void {
    const first = this.senders.entries().next().value as [number, SenderWindow];
    this.senders.delete(first[0]);
    const e = first[1];
    if (e.maxTs >= now - this.o.freshnessMs) {
      this.evictedFresh++;
      if (e.maxTs + 1 > this.floor) this.floor = e.maxTs + 1;
    }
  }
}
