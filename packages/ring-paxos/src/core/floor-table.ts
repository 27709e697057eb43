/**
 * A bounded per-client floor table: for each client (a proposer, or a P-SMR client), the seqs seen with a
 * value each, and a floor below which every seq is settled and forgotten. The coordinator stores the
 * instance each (proposer, seq) was ordered in (do not order a value twice), the learner a mark (do not
 * deliver a value twice), a P-SMR replica the reply of each command (`SessionTable`, a retried command
 * runs once).
 *
 * Every decision follows the order of the calls only, so replicas that apply the same stream make the same
 * ones, evictions included:
 * - `open` makes a client the most recently used; past `maxClients` the least recently used is evicted.
 * - A client keeps at most `maxPerClient` seqs: the oldest inserted goes first.
 * - Raising a floor forgets the seqs below it. `floorCut: 'all'` forgets every one (cut as a prefix while
 *   seqs were inserted in increasing order, the usual case); `'prefix'` forgets only those inserted before
 *   the first seq at or above the floor (a seq retried after a higher one stays until evicted), which is
 *   the rule P-SMR session tables replicate and checkpoint, so it is kept as it is.
 */
export interface FloorEntry<V> {
  floor: number;
  /** Seqs at or above the floor (with `'prefix'`, possibly some below), in insertion order. */
  seen: Map<number, V>;
  /** True while `seen` iterates in increasing seq order, so a floor cut can stop early. */
  ordered: boolean;
  /** Largest seq ever marked. */
  top: number;
}

export interface FloorTableOptions {
  maxClients: number;
  maxPerClient: number;
  /** How raising a floor forgets seqs (see above); 'all' when not given. */
  floorCut?: 'all' | 'prefix';
}

export class FloorTable<V> {
  private readonly clients = new Map<number, FloorEntry<V>>();
  private readonly prefixCut: boolean;
  readonly maxClients: number;
  readonly maxPerClient: number;
  /** Clients evicted past maxClients (a retry of theirs could pass twice). */
  evictedClients = 0;
  /** Seqs evicted past maxPerClient. */
  evictedSeqs = 0;

  constructor(o: FloorTableOptions) {
    this.maxClients = o.maxClients;
    this.maxPerClient = o.maxPerClient;
    this.prefixCut = o.floorCut === 'prefix';
  }

  get size(): number {
    return this.clients.size;
  }

  /** The entry of `client` as it is, if any (no change: not made more recent, floor untouched). */
  peek(client: number): FloorEntry<V> | undefined {
    return this.clients.get(client);
  }

  /** The entry of `client` as of a message carrying `floor`; it becomes the most recently used. Call once per group of seqs, not per seq. */
  open(client: number, floor: number): FloorEntry<V> {
    let e = this.clients.get(client);
    if (e) {
      this.clients.delete(client);
    } else {
      e = { floor: 0, seen: new Map(), ordered: true, top: -1 };
      if (this.clients.size >= this.maxClients) {
        this.clients.delete(this.clients.keys().next().value as number);
        this.evictedClients++;
      }
    }
    this.clients.set(client, e);
    if (floor > e.floor) {
      e.floor = floor;
      const seen = e.seen;
      if (e.ordered || this.prefixCut) {
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
    return e;
  }

  /** 'settled' below the floor, the stored value when seen, undefined when new. */
  find(e: FloorEntry<V>, seq: number): V | 'settled' | undefined {
    if (seq < e.floor) return 'settled';
    return e.seen.get(seq);
  }

  /** Remember `seq` with `value` (a seq seen already keeps its place and takes the new value). */
  mark(e: FloorEntry<V>, seq: number, value: V): void {
    const seen = e.seen;
    // `ordered` and `top` serve only the 'all' cut (the prefix cut stops at the first seq at or above the floor).
    if (!this.prefixCut && !seen.has(seq)) {
      if (seq < e.top) e.ordered = false;
      else e.top = seq;
    }
    seen.set(seq, value);
    if (seen.size > this.maxPerClient) {
      seen.delete(seen.keys().next().value as number);
      this.evictedSeqs++;
    }
  }

  /** Every entry, least recently used first, with its seqs in insertion order (for checkpoints). */
  *entries(): Generator<[client: number, floor: number, seen: Array<[seq: number, value: V]>]> {
    for (const [c, e] of this.clients) yield [c, e.floor, [...e.seen]];
  }

  /** Replace the table with `entries` (as `entries()` gave them: the order is the recency order). */
  load(entries: Iterable<[number, number, Array<[number, V]>]>): void {
    this.clients.clear();
    // Over the bounds (not from a table with the same ones): keep the most recent, as eviction would.
    for (const [c, floor, seen] of [...entries].slice(-this.maxClients)) {
      const e: FloorEntry<V> = { floor, seen: new Map(), ordered: true, top: -1 };
      for (const [seq, v] of seen.slice(-this.maxPerClient)) {
        if (seq < e.top) e.ordered = false;
        else e.top = seq;
        e.seen.set(seq, v);
      }
      this.clients.set(c, e);
    }
  }

  /** A digest of the table (clients, floors, numbers of seqs) for comparing replicas. */
  digest(): string {
    let h = 0;
    for (const [c, e] of this.clients) {
      h = (Math.imul(h ^ (c % 4294967296), 0x01000193) + e.floor * 31 + e.seen.size) >>> 0;
    }
    return `${this.clients.size}:${h.toString(16)}`;
  }
}
