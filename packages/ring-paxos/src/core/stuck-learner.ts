import type { RingSettings } from './settings.js';

/**
 * No single learner can stop a ring. Trimming waits for what every registered learner delivered, and the
 * coordinator opens no instance past safe + logCapacity, so a learner that keeps reporting Progress but
 * never delivers (hung, or a Progress datagram replayed on a network without a cluster secret) would hold
 * the logs until they are full and the ring stops.
 *
 * A learner is stuck when both hold:
 * - its delivered point has not moved for learnerTimeoutMs (the time a silent learner is kept anyway);
 * - the instances the acceptor logs keep for it, from its trim point (delivered + 1 - logRetain) up to
 *   the decided frontier, reached STUCK_FILL of logCapacity. (logRetain is at most half of logCapacity,
 *   so such a learner is at least a quarter of logCapacity behind: one with nothing left to deliver, or a
 *   slow one that moves, is never stuck; a slow learner slows the ring down, it does not stop it.)
 * A stuck learner is left out of the trim computation, and stays out while the trim point is above what
 * it delivered (the instances it needs next are trimmed or about to be). It stays registered; if it asks
 * for instances that every acceptor trimmed it gets ERR_RINGCAST_TRIMMED (a P-SMR replica then restarts
 * from a checkpoint). Once it moves and is at or above the trim point again, it holds trimming as before.
 */
export const STUCK_FILL = 0.75;

/** What the rule reads of a registered learner. */
export interface TrimLearner {
  /** Highest instance it reported delivered. */
  readonly delivered: number;
  /** Coordinator time its delivered point last moved (or it registered). */
  readonly movedAt: number;
  /** The rule left it out last time. */
  readonly leftBehind: boolean;
}

/** Whether learner `l` is left out of the trim computation (see above). */
export function leftBehind(l: TrimLearner, now: number, frontier: number, safe: number, s: RingSettings): boolean {
  const from = l.delivered + 1;
  if (l.leftBehind && from < safe) return true;
  return now - l.movedAt >= s.learnerTimeoutMs && frontier - from + s.logRetain >= STUCK_FILL * s.logCapacity;
}
