import type { LogEntry } from './acceptor.js';

/** What replay reads of a persisted record (a PersistRecord without its ring, which the log implies). */
export type ReplayRecord =
  | { kind: 'promise'; ballot: number }
  | { kind: 'accept'; instance: number; ballot: number; vid: number; value: Uint8Array }
  | { kind: 'decide'; decisions: readonly number[] }
  | { kind: 'trim'; below: number }
  | { kind: 'rejoin' }
  | { kind: 'rejoined' };

/** The state a sequence of records leaves: what recovery returns and `Acceptor.restore` takes. */
export interface ReplayState {
  promised: number;
  trimmed: number;
  entries: Map<number, LogEntry>;
  /** A `rejoin` record with no `rejoined` after it: the acceptor must rejoin before it takes part. */
  rejoining: boolean;
}

export function emptyReplayState(): ReplayState {
  return { promised: 0, trimmed: 0, entries: new Map(), rejoining: false };
}

/**
 * Apply one record: promise raises `promised`; accept sets the entry (undecided) if not below `trimmed`;
 * decide marks entries of each `[start, count, vid]` triple whose vid matches; trim raises `trimmed` and
 * drops entries below it; rejoin / rejoined set and clear `rejoining`. Work is bounded by the entries held, whatever the counts say.
 */
export function applyRecord(s: ReplayState, r: ReplayRecord): void {
  switch (r.kind) {
    case 'promise':
      if (r.ballot > s.promised) s.promised = r.ballot;
      break;
    case 'accept':
      if (r.instance >= s.trimmed) s.entries.set(r.instance, { ballot: r.ballot, vid: r.vid, value: r.value, decided: false });
      break;
    case 'decide': {
      const d = r.decisions;
      for (let k = 0; k + 2 < d.length; k += 3) {
        const start = d[k]!;
        const count = d[k + 1]!;
        const vid = d[k + 2]!;
        if (count <= 0) continue;
        if (count > s.entries.size) {
          for (const [i, e] of s.entries) if (i >= start && i < start + count && e.vid === vid) e.decided = true;
        } else {
          for (let i = start; i < start + count; i++) {
            const e = s.entries.get(i);
            if (e && e.vid === vid) e.decided = true;
          }
        }
      }
      break;
    }
    case 'trim':
      if (r.below > s.trimmed) {
        if (r.below - s.trimmed > s.entries.size) {
          for (const i of s.entries.keys()) if (i < r.below) s.entries.delete(i);
        } else {
          for (let i = s.trimmed; i < r.below; i++) s.entries.delete(i);
        }
        s.trimmed = r.below;
      }
      break;
    case 'rejoin':
      s.rejoining = true;
      break;
    case 'rejoined':
      s.rejoining = false;
      break;
  }
}

