/**
 * Retention holds (pure): a holder (a replica with durable checkpoints) asks the acceptors of a ring to keep
 * every instance from `instance` on, the first instance a restart from its oldest kept checkpoint needs.
 *
 * A hold is a control value proposed through the ring itself, so every acceptor logs it in order with the
 * application's values and it outlives the holder's process (a learner's registration expires seconds after
 * it dies). The coordinator applies the holds of every value it decides and never trims past the lowest one
 * in force. Since a hold's own instance lies above the instance it holds, it is never trimmed while in force:
 * a coordinator that takes over learns the holds again from the decided values it retains and from the
 * values its Phase 1 recovers (re-proposed and decided again), as it re-learns proposals. A newer hold from
 * the same holder replaces the older one. Learners never deliver hold values to the application.
 *
 * Bounded: at most `maxHolds` holders (the least recently renewed yields to a newer holder), and a hold
 * yields (is broken, counted) as soon as keeping it would pass the log's bounds: more than
 * logCapacity - 2 x window instances kept, or, with logRetainBytes set, more value bytes than that. A holder
 * that later resumes from the checkpoint its broken hold protected finds the instances trimmed
 * (ERR_RINGCAST_TRIMMED) and must be restored from a live peer instead.
 *
 * Wire form of a hold (one proposal's data): 0xC1 'R' 'H' version 1, instance as two big-endian u32 (high,
 * low), then the holder id in UTF-8 (1..64 bytes). 0xC1 is the one byte msgpack never uses, and proposers
 * refuse application data that starts with these four bytes, so no application value is taken for a hold.
 */

/** The four bytes every hold starts with. */
export const HOLD_PREFIX: readonly number[] = [0xc1, 0x52, 0x48, 1];
export const MAX_HOLDER_BYTES = 64;
const HEADER = HOLD_PREFIX.length + 8;

export interface Hold {
  holder: string;
  /** Keep every instance from this one on. */
  instance: number;
}

/** Data that starts with the hold prefix: a control value, never an application one. */
export function isHoldData(data: Uint8Array): boolean {
  return data.length >= HOLD_PREFIX.length && data[0] === 0xc1 && data[1] === 0x52 && data[2] === 0x48 && data[3] === 1;
}

export function encodeHold(holder: string, instance: number): Uint8Array {
  const id = new TextEncoder().encode(holder);
  if (id.length < 1 || id.length > MAX_HOLDER_BYTES) throw new RangeError(`a hold's holder id must be 1..${MAX_HOLDER_BYTES} bytes, got ${id.length}`);
  if (!Number.isSafeInteger(instance) || instance < 0) throw new RangeError(`a hold's instance must be a non-negative integer, got ${instance}`);
  const out = new Uint8Array(HEADER + id.length);
  out.set(HOLD_PREFIX);
  const v = new DataView(out.buffer);
  v.setUint32(4, Math.floor(instance / 2 ** 32));
  v.setUint32(8, instance % 2 ** 32);
  out.set(id, HEADER);
  return out;
}

/** A hold's content; undefined when the data is not a well-formed hold. */
export function decodeHold(data: Uint8Array): Hold | undefined {
  if (!isHoldData(data) || data.length <= HEADER || data.length > HEADER + MAX_HOLDER_BYTES) return undefined;
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const instance = v.getUint32(4) * 2 ** 32 + v.getUint32(8);
  if (!Number.isSafeInteger(instance)) return undefined;
  let holder: string;
  try {
    holder = new TextDecoder('utf-8', { fatal: true }).decode(data.subarray(HEADER));
  } catch {
    return undefined;
  }
  return { holder, instance };
}

/**
 * Whether a coordinator that takes over re-learns hold `h` from a value it finds in its log or recovers
 * with Phase 1: not when it holds below `trimmed`, where the acceptor trimmed past it, so it was replaced
 * or broken already (and counted by the coordinator that saw it), not broken now.
 */
export function relearnable(h: Hold, trimmed: number): boolean {
  return h.instance >= trimmed;
}

/** Add the hold `data` carries, if well formed, to `out` (a proposal's data already seen to be a hold). */
export function pushHold(out: Hold[], data: Uint8Array): void {
  const h = decodeHold(data);
  if (h) out.push(h);
}

export interface HoldStats {
  /** Holds placed by a holder not holding before. */
  placed: number;
  /** Holds that replaced an older one of the same holder. */
  renewed: number;
  /** Holds dropped because keeping them would pass logCapacity / logRetainBytes, or already trimmed past. */
  broken: number;
  /** Holds that yielded to a newer holder at maxHolds (the least recently renewed). */
  evicted: number;
  /** Holds of a new holder refused at maxHolds (maxHolds 0, or every holder in force renewed since). */
  refused: number;
}

/**
 * The holds a coordinator keeps in force: one per holder, the newest (highest instance of the hold value)
 * winning. Whatever order the values are seen in, the same set of decided values gives the same holds
 * (the newest value of each holder; the `maxHolds` most recently renewed holders), so a coordinator that
 * re-learns them after a takeover ends where the old one was, less what was trimmed since.
 */
export class RetentionHolds {
  readonly stats: HoldStats = { placed: 0, renewed: 0, broken: 0, evicted: 0, refused: 0 };
  /** holder -> the instance held and the instance of the hold value that placed it. */
  private readonly holds = new Map<string, { instance: number; at: number }>();

  constructor(private readonly maxHolds: number) {}

  get size(): number {
    return this.holds.size;
  }

  /** A hold decided at instance `at` (a hold never holds above its own instance). */
  apply(h: Hold, at: number): void {
    const instance = Math.min(h.instance, at);
    const cur = this.holds.get(h.holder);
    if (cur) {
      if (at <= cur.at) return; // an older hold of this holder, seen again
      cur.instance = instance;
      cur.at = at;
      this.stats.renewed++;
      return;
    }
    if (this.holds.size >= this.maxHolds) {
      let oldest: string | undefined;
      let oldestAt = Infinity;
      for (const [k, v] of this.holds) if (v.at < oldestAt) (oldest = k), (oldestAt = v.at);
      if (oldest === undefined || oldestAt > at) {
        this.stats.refused++; // maxHolds 0, or every holder renewed since this hold
        return;
      }
      this.stats.evicted++;
      this.holds.delete(oldest);
    }
    this.holds.set(h.holder, { instance, at });
    this.stats.placed++;
  }

  /**
   * The coordinator's trim point with the holds applied (see cap). `recovering`: the coordinator has not
   * chosen its ring yet (Phase 1 unanswered) or still re-proposes what earlier ballots accepted, so holds
   * among those values are not learned again yet: the trim point rises only as far as the log's bounds
   * (`bound`, the byte budget included) force, where any hold would yield anyway. Nothing to keep back when
   * holds are refused (maxHolds 0).
   */
  trimPoint(safe: number, bound: number, recovering: boolean): number {
    if (this.holds.size > 0) safe = this.cap(safe, bound);
    if (recovering && this.maxHolds > 0 && bound < safe) safe = bound;
    return safe;
  }

  /**
   * The trim point with the holds applied: `safe` (what the learners and the log's own retention allow),
   * lowered to the lowest hold. Holds below `bound` (the lowest trim point the log's bounds allow) are
   * broken first: a hold yields rather than stop the ring or pass the memory budget.
   */
  cap(safe: number, bound: number): number {
    let lo = safe;
    for (const [k, v] of this.holds) {
      if (v.instance < bound) {
        this.holds.delete(k);
        this.stats.broken++;
      } else if (v.instance < lo) lo = v.instance;
    }
    return lo;
  }
}
