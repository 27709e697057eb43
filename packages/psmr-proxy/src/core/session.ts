/**
 * The session table of one command stream: for each client, which of its commands already ran and their
 * replies, so a retried command (same clientId and seq) runs once and gets the original reply again.
 *
 * It is replicated state: every replica (and, for the g_all stream, every worker) applies the same stream
 * and so makes the same decisions, including evictions, which follow delivery order only.
 * - A batch carries the client's floor: every seq below it has been answered, so replies below it go.
 * - A command below the floor is a stale duplicate: dropped.
 * - Bounds: `maxClients` sessions (the least recently active is evicted) and `maxReplies` cached replies
 *   per client (the oldest goes first). A retry of an evicted command would run again; the bounds are sized
 *   above a client proxy's outstanding limit so that needs a client silent for `maxClients` others.
 */
export interface Session<R> {
  floor: number;
  replies: Map<number, R>;
}

export type Verdict<R> = { kind: 'new' } | { kind: 'stale' } | { kind: 'replay'; reply: R };

const NEW = { kind: 'new' } as const;
const STALE = { kind: 'stale' } as const;

export class SessionTable<R> {
  private readonly sessions = new Map<number, Session<R>>();
  evictedClients = 0;
  evictedReplies = 0;

  constructor(
    readonly maxClients: number,
    readonly maxReplies: number,
  ) {}

  get size(): number {
    return this.sessions.size;
  }

  /** The session of `clientId` as it is, if any (no change: not made more recent, floor untouched). */
  peek(clientId: number): Session<R> | undefined {
    return this.sessions.get(clientId);
  }

  /** The session of `clientId` as of a batch carrying `floor` (it becomes the most recently active). */
  open(clientId: number, floor: number): Session<R> {
    let s = this.sessions.get(clientId);
    if (s) {
      this.sessions.delete(clientId);
    } else {
      s = { floor: 0, replies: new Map() };
      if (this.sessions.size >= this.maxClients) {
        const oldest = this.sessions.keys().next().value as number;
        this.sessions.delete(oldest);
        this.evictedClients++;
      }
    }
    this.sessions.set(clientId, s);
    if (floor > s.floor) {
      s.floor = floor;
      // Replies are inserted in execution order, which follows seq order except for retries.
      for (const seq of s.replies.keys()) {
        if (seq >= floor) break;
        s.replies.delete(seq);
      }
    }
    return s;
  }

  check(s: Session<R>, seq: number): Verdict<R> {
    if (seq < s.floor) return STALE;
    const r = s.replies.get(seq);
    return r === undefined ? NEW : { kind: 'replay', reply: r };
  }

  record(s: Session<R>, seq: number, reply: R): void {
    s.replies.set(seq, reply);
    if (s.replies.size > this.maxReplies) {
      s.replies.delete(s.replies.keys().next().value as number);
      this.evictedReplies++;
    }
  }

  /** Every session, least recently active first, with its cached replies in insertion order (for checkpoints). */
  *entries(): Generator<[clientId: number, floor: number, replies: Array<[seq: number, reply: R]>]> {
    for (const [c, s] of this.sessions) yield [c, s.floor, [...s.replies]];
  }

  /** Replace the table with `entries` (as `entries()` gave them: the order is the recency order). */
  load(entries: Iterable<[number, number, Array<[number, R]>]>): void {
    this.sessions.clear();
    // Over the bounds (not from a replica with the same ones): keep the most recent, as eviction would.
    for (const [c, floor, replies] of [...entries].slice(-this.maxClients)) {
      this.sessions.set(c, { floor, replies: new Map(replies.slice(-this.maxReplies)) });
    }
  }

  /** A digest of the table (clients, floors, cached seqs) for comparing replicas. */
  digest(): string {
    let h = 0;
    for (const [c, s] of this.sessions) {
      h = (Math.imul(h ^ (c % 4294967296), 0x01000193) + s.floor * 31 + s.replies.size) >>> 0;
    }
    return `${this.sessions.size}:${h.toString(16)}`;
  }
}
