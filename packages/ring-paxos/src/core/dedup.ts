/**
 * Bounded de-duplication by (proposer id, seq), shared by the coordinator (do not order a value twice) and
 * the learner (do not deliver a value twice). Each proposer announces a floor: every seq below it is
 * settled and will never be sent again, so entries below the floor are forgotten. Proposers are kept in
 * least-recently-used order and evicted past `maxProposers`; each keeps at most `maxPerProposer` seqs.
 */
interface ProposerEntry {
  floor: number;
  seen: Map<number, number>;
  /** True while `seen` iterates in increasing seq order (the usual case), so a floor cut can stop early. */
  ordered: boolean;
  /** Largest seq ever marked. */
  top: number;
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
      e = { floor: 0, seen: new Map(), ordered: true, top: -1 };
      if (this.proposers.size >= this.maxProposers) {
        const oldest = this.proposers.keys().next().value as number;
        this.proposers.delete(oldest);
        this.evictions++;
      }
    }
    this.proposers.set(pid, e);
    if (floor > e.floor) {
      e.floor = floor;
      const seen = e.seen;
      if (e.ordered) {
        // Keys ascend in insertion order: everything below the floor is a prefix.
        for (const s of seen.keys()) {
          if (s >= floor) break;
          seen.delete(s);
        }
      } else {
        let prev = -1;
        let ordered = true;
        for (const s of seen.keys()) {
          if (s < floor) seen.delete(s);
          else {
            if (s < prev) ordered = false;
            prev = s;
          }
        }
        e.ordered = ordered;
      }
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
    if (!seen.has(seq)) {
      if (seen.size >= this.maxPerProposer) {
        seen.delete(seen.keys().next().value as number);
        this.table.evictions++;
      }
      if (seq < this.e.top) this.e.ordered = false;
      else this.e.top = seq;
    }
    seen.set(seq, tag);
  }
}
