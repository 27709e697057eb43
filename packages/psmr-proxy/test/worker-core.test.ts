import { describe, expect, it } from 'vitest';
import { WorkerCore, type Delivery, type Scheduler } from '../src/core/worker-core.js';

/** A scheduler that records what it is handed; `wait` makes the next deliver (or drain) pending. */
function fakeScheduler(): Scheduler & { log: string[]; release(): void; wait: boolean; pendingDrain: boolean } {
  let release = (): void => {};
  const pending = (): Promise<void> => new Promise<void>((r) => (release = r));
  const s = {
    log: [] as string[],
    wait: false,
    pendingDrain: false,
    release: () => release(),
    deliver(group: string, batches: readonly Uint8Array[]) {
      s.log.push(`${group}:${batches.map((b) => b[0]).join(',')}`);
      if (s.wait) return pending();
    },
    drain() {
      if (!s.pendingDrain) return;
      s.log.push('drain');
      return pending();
    },
    executedTotal: 0,
    stats: { executed: {}, errors: {}, duplicatesReplied: 0, duplicatesDropped: 0, malformedBatches: 0, barrierRounds: 0, replyBatches: 0, sendErrors: 0, repliesLeftToOthers: 0 },
    sessions: [],
    sessionsSnapshot: () => new Uint8Array(),
    restoreSessions: () => {},
  };
  return s;
}

/** Deliveries (ring, pos, tag) as a queue the core takes an instance's rest from. */
function queue(ds: Array<[number, number, number]>): { next(): Delivery | undefined; source: { peek(): Delivery | undefined; poll(): Delivery | undefined } } {
  const q = ds.map(([ring, pos, tag]) => ({ ring, pos, data: Uint8Array.of(tag) }));
  return { next: () => q.shift(), source: { peek: () => q[0], poll: () => q.shift() } };
}

const groupOf = (r: number): string => (r === 9 ? 'gall' : `g${r}`);

describe('worker-core', () => {
  it('hands each ring instance to the scheduler whole, and takes the checkpoint before the first delivery of its round', () => {
    const s = fakeScheduler();
    const core = new WorkerCore({ scheduler: s, groupOf, mergeM: 2, checkpointReady: (r) => s.log.push(`checkpoint ${r}`) });
    expect(core.askCheckpoint(2)).toBe(true); // positions 5..6
    const q = queue([[0, 1, 1], [0, 1, 2], [9, 2, 3], [9, 2, 4], [9, 3, 5], [0, 5, 6], [0, 5, 7], [9, 6, 8]]);
    for (let d = q.next(); d; d = q.next()) expect(core.run(d, q.source)).toBeUndefined();
    expect(s.log).toEqual(['g0:1,2', 'gall:3,4', 'gall:5', 'checkpoint 2', 'g0:6,7', 'gall:8']);
    expect(core.delivered).toBe(8);
    // Round 2 has run: a checkpoint there can no longer be taken; one further ahead can.
    expect(core.askCheckpoint(2)).toBe(false);
    expect(core.askCheckpoint(3)).toBe(true);
    core.idle(2, false);
    expect(s.log.at(-1)).toBe('gall:8');
    core.idle(3, true); // something is queued: it runs first
    expect(s.log.at(-1)).toBe('gall:8');
    core.idle(3, false);
    expect(s.log.at(-1)).toBe('checkpoint 3');
  });

  it('waits for the scheduler: no checkpoint while an instance runs, and a pending drain holds the next instance back', async () => {
    const s = fakeScheduler();
    const core = new WorkerCore({ scheduler: s, groupOf, mergeM: 1, startRound: 4, checkpointReady: (r) => s.log.push(`checkpoint ${r}`) });
    expect(core.askCheckpoint(3)).toBe(false); // a worker started from a checkpoint of round 4 is past round 3
    expect(core.askCheckpoint(6)).toBe(true);
    const q = queue([[9, 5, 1], [0, 7, 2]]);
    s.wait = true;
    const p = core.run(q.next()!, q.source);
    expect(p).toBeInstanceOf(Promise);
    core.idle(6, false); // busy: not now
    expect(s.log).toEqual(['gall:1']);
    s.release();
    await p;
    s.wait = false;
    s.pendingDrain = true;
    const p2 = core.run(q.next()!, q.source);
    expect(s.log).toEqual(['gall:1', 'drain']);
    s.release();
    await p2;
    expect(s.log).toEqual(['gall:1', 'drain', 'checkpoint 6', 'g0:2']);
  });
});
