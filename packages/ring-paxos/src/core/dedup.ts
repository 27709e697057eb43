/**
 * Bounded de-duplication by (proposer id, seq), shared by the coordinator (do not order a value twice) and
 * the learner (do not deliver a value twice). Each proposer announces a floor: every seq below it is
 * settled and will never be sent again, so entries below the floor are forgotten. Proposers are kept in
 * least-recently-used order and evicted past `maxProposers`; each keeps at most `maxPerProposer` seqs.
 */
interface ProposerEntry {
  floor: number;
  seen: Map<number, number>;
}

export class DedupTable {
  private readonly proposers = new Map<number, ProposerEntry>();
  /** Entries dropped to stay within bounds (a retry after such an eviction could pass twice). */
  evictions = 0;

  constructor(
    private readonly maxProposers: number,
    private readonly maxPerProposer: number,
  ) {}

  get size(): number {
    return this.proposers.size;
  }

  /**
   * Open the record of one proposer: raise its floor, mark it most recently used, and return it for
   * look-ups. Call once per group of seqs, not per seq.
   */
  open(pid: number, floor: number): DedupCursor {
    let e = this.proposers.get(pid);
    if (e) {
      this.proposers.delete(pid);
    } else {
      e = { floor: 0, seen: new Map() };
      if (this.proposers.size >= this.maxProposers) {
        const oldest = this.proposers.keys().next().value as number;
        this.proposers.delete(oldest);
        this.evictions++;
      }
    }
    this.proposers.set(pid, e);
    if (floor > e.floor) {
      e.floor = floor;
      for (const s of e.seen.keys()) if (s < floor) e.seen.delete(s);
    }
    return new DedupCursor(this, e, this.maxPerProposer);
  }
}

export class DedupCursor {
  constructor(
    private readonly table: DedupTable,
    private readonly e: ProposerEntry,
    private readonly maxPerProposer: number,
  ) {}

  /** 'settled' below the floor, the stored tag when seen, undefined when new. */
  check(seq: number): number | 'settled' | undefined {
    if (seq < this.e.floor) return 'settled';
    return this.e.seen.get(seq);
  }

  /** Remember seq with a tag (the coordinator stores the instance, the learner anything). */
  mark(seq: number, tag: number): void {
    const seen = this.e.seen;
    if (!seen.has(seq) && seen.size >= this.maxPerProposer) {
      seen.delete(seen.keys().next().value as number);
      this.table.evictions++;
    }
    seen.set(seq, tag);
  }
}
