/**
 * The session table of one command stream: for each client, which of its commands already ran and their
 * replies, so a retried command (same clientId and seq) runs once and gets the original reply again.
 *
 * It is replicated state: every replica (and, for the g_all stream, every worker) applies the same stream
 * and so makes the same decisions, including evictions, which follow delivery order only.
 * - A batch carries the client's floor: every seq below it has been answered, so replies below it go
 *   (those inserted before the first reply at or above it: the table's `'prefix'` floor cut, which
 *   checkpoints record as it is).
 * - A command below the floor is a stale duplicate: dropped.
 * - Bounds: `maxClients` sessions (the least recently active is evicted) and `maxReplies` cached replies
 *   per client (the oldest goes first). A retry of an evicted command would run again; the bounds are sized
 *   above a client proxy's outstanding limit so that needs a client silent for `maxClients` others.
 * The table itself is ring-paxos's `FloorTable` (the same one de-duplicates proposals in a ring).
 */
import { FloorTable, type FloorEntry } from '@ringcast/ring-paxos';

/** A client's session: its floor and its cached replies by seq (`seen`). */
export type Session<R> = FloorEntry<R>;

export type Verdict<R> = { kind: 'new' } | { kind: 'stale' } | { kind: 'replay'; reply: R };

const NEW = { kind: 'new' } as const;
const STALE = { kind: 'stale' } as const;

export class SessionTable<R> extends FloorTable<R> {
  constructor(maxClients: number, maxReplies: number) {
    super({ maxClients, maxPerClient: maxReplies, floorCut: 'prefix' });
  }

  get maxReplies(): number {
    return this.maxPerClient;
  }

  /** Cached replies evicted past maxReplies. */
  get evictedReplies(): number {
    return this.evictedSeqs;
  }

  check(s: Session<R>, seq: number): Verdict<R> {
    if (seq < s.floor) return STALE;
    const r = s.seen.get(seq);
    return r === undefined ? NEW : { kind: 'replay', reply: r };
  }

  record(s: Session<R>, seq: number, reply: R): void {
    this.mark(s, seq, reply);
  }
}
