import { afterAll, describe, expect, it } from 'vitest';
import { loadCluster } from '@ringcast/ring-paxos';
import { startGroupLearner, type GroupDelivery, type GroupLearner } from '@ringcast/multicast';
import { launchLocalRing, spawnRingcast, type LocalRing, type Spawned } from '@ringcast/cli';
import { delivered, stopAll, waitUntil } from './helpers.js';

// Multi-Ring Paxos with real processes on 127.0.0.1: three rings (g0, g1 and gall) over three acceptor
// processes, learners subscribed to {g0, gall}, {g1, gall} and {g0, g1, gall}. Their common messages must
// come in the same relative order, and an idle ring must not stop the others.
const SETTINGS = { lambda: 2000, skipIntervalMs: 5, heartbeatMs: 50, coordinatorTimeoutMs: 300, acceptorTimeoutMs: 300 };
const GROUPS = { g0: 0, g1: 1, gall: 2 };
// Positions follow the wall clock at lambda per second from the epoch (settings default), M = 1.
const EPOCH = 1_700_000_000_000;
const roundAt = (ms: number): number => Math.floor((SETTINGS.lambda * (ms - EPOCH)) / 1000);

/**
 * Run `attempt` with a start round `marginMs` ahead of the rings. A learner started on a busy machine may
 * find that round passed (ERR_RINGCAST_START_PASSED, exit 4, naming the round the rings were at when it
 * joined): then try again with a margin derived from how late it joined (at most 3 attempts).
 */
async function aheadOfRings<T extends Record<string, Spawned>>(marginMs: number, attempt: (start: number) => Promise<T>): Promise<T> {
  let start = roundAt(Date.now() + marginMs);
  for (let k = 1; ; k++) {
    const got = await attempt(start);
    const passed = Object.values(got).map((p) => /ERR_RINGCAST_START_PASSED.*the rings are at round (\d+)/.exec(p.stderr()));
    if (k === 3 || passed.every((m) => m === null)) return got;
    // The latest learner joined `lateMs` after the start round: it needs that much more margin (twice, for slack).
    const lateMs = Math.max(...passed.map((m) => (m ? ((Number(m[1]) - start) * 1000) / SETTINGS.lambda : 0)));
    marginMs = 2 * (marginMs + lateMs);
    start = roundAt(Date.now() + marginMs);
  }
}

describe('Multi-Ring Paxos, real processes', () => {
  let ring: LocalRing | undefined;
  const procs: Spawned[] = [];
  afterAll(async () => {
    await stopAll(procs);
    await ring?.stop();
  });

  it('learners with overlapping subscriptions agree on the order of what they share; an idle ring does not stall the others', async () => {
    ring = await launchLocalRing({ acceptors: 3, rings: 3, settings: SETTINGS, groups: GROUPS, mergeM: 1 });
    const subs = ['g0,gall', 'g1,gall', 'g0,g1,gall'];
    const learners = subs.map((g) => spawnRingcast(['learn', '--cluster', ring!.clusterPath, '--groups', g]));
    procs.push(...learners);
    await Promise.all(learners.map((l) => l.waitFor('ready')));
    await new Promise((r) => setTimeout(r, 300));

    const N = 300;
    const proposers = (['g0', 'g1', 'gall'] as const).map((g) =>
      spawnRingcast(['propose', '--cluster', ring!.clusterPath, '--group', g, '--count', String(N), '--rate', '1500', '--outstanding', '8', '--prefix', g]),
    );
    procs.push(...proposers);
    for (const p of proposers) expect(await p.waitFor('done', 60_000)).toMatchObject({ acked: N, failed: 0 });

    const want = [2 * N, 2 * N, 3 * N];
    expect(await waitUntil(() => learners.every((l, i) => delivered(l).length >= want[i]!), 30_000)).toBe(true);
    const seqs = learners.map((l) => delivered(l).map((x) => x.d));
    seqs.forEach((s, i) => {
      expect(s).toHaveLength(want[i]!);
      expect(new Set(s).size).toBe(want[i]);
    });
    for (let i = 0; i < seqs.length; i++) {
      for (let j = i + 1; j < seqs.length; j++) {
        const other = new Set(seqs[j]!);
        const common = seqs[i]!.filter((x) => other.has(x));
        const mine = new Set(common);
        expect(seqs[j]!.filter((x) => mine.has(x))).toEqual(common);
        expect(common.length).toBeGreaterThanOrEqual(N); // at least everything multicast to gall
      }
    }

    // Ring 1 stays idle now: the learner of all three groups still gets everything sent to g0.
    const before = delivered(learners[2]!).length;
    const busy = spawnRingcast(['propose', '--cluster', ring.clusterPath, '--group', 'g0', '--count', '500', '--rate', '2000', '--outstanding', '8', '--prefix', 'busy']);
    procs.push(busy);
    expect(await busy.waitFor('done', 60_000)).toMatchObject({ acked: 500, failed: 0 });
    expect(await waitUntil(() => delivered(learners[2]!).length >= before + 500, 10_000)).toBe(true);
  });

  it('learners given the same start and stop rounds deliver exactly the same sequence, whenever they joined', async () => {
    expect(ring).toBeDefined();
    const args = (start: number): string[] => ['learn', '--cluster', ring!.clusterPath, '--groups', 'g0,gall', '--start-round', String(start), '--stop-round', String(start + 2 * SETTINGS.lambda)];
    // The load runs from before the start round is chosen until both learners are done (at most 60 s at
    // 400/s per group): however slowly the machine starts processes, the rounds [start, stop) fall inside it.
    const load = (['g0', 'gall'] as const).map((g) =>
      spawnRingcast(['propose', '--cluster', ring!.clusterPath, '--group', g, '--count', '24000', '--rate', '400', '--outstanding', '4', '--prefix', `agreed-${g}`]),
    );
    procs.push(...load);
    await Promise.all(load.map((l) => l.waitFor('ready', 60_000)));
    const { early, late } = await aheadOfRings(5000, async (start) => {
      const early = spawnRingcast(args(start));
      procs.push(early);
      await early.waitFor('ready').catch(() => {}); // a learner that found the round passed exits at once
      await new Promise((r) => setTimeout(r, 1500));
      const late = spawnRingcast(args(start));
      procs.push(late);
      await Promise.all([early.exited, late.exited]);
      return { early, late };
    });
    await stopAll(load);
    expect(await early.exited, `early learner: ${early.stderr()}`).toBe(0);
    expect(await late.exited, `late learner: ${late.stderr()}`).toBe(0);
    const a = delivered(early).map((x) => x.d);
    expect(a.length).toBeGreaterThan(100);
    expect(delivered(late).map((x) => x.d)).toEqual(a);
  });

  it('a learner started at another one\'s resume point delivers exactly what that one delivers from there', async () => {
    expect(ring).toBeDefined();
    const cluster = loadCluster(ring!.clusterPath);
    const got = (into: string[]) => (ds: GroupDelivery[]) => {
      for (const d of ds) into.push(`${d.ring}:${d.pos}:${Buffer.from(d.delivery.data).toString()}`);
    };
    const aSeen: string[] = [];
    const errors: Error[] = [];
    const a = await startGroupLearner(cluster, { groups: ['g0', 'gall'], onDeliver: got(aSeen), onError: (e) => errors.push(e) });
    const learners = [a];
    try {
      const load = (['g0', 'gall'] as const).map((g) =>
        spawnRingcast(['propose', '--cluster', ring!.clusterPath, '--group', g, '--count', '1200', '--rate', '400', '--outstanding', '4', '--prefix', `resume-${g}`]),
      );
      procs.push(...load);
      expect(await waitUntil(() => aSeen.length > 200, 20_000)).toBe(true);
      // No resume point for a round the rings have not reached, nor for one before this learner's history.
      expect(a.resumePoint(a.mergedRound()! + 1_000_000)).toBeUndefined();
      const round = a.mergedRound()!;
      const rp = a.resumePoint(round)!;
      expect(rp.round).toBe(round);
      expect(rp.rings.map((x) => x.ring).sort()).toEqual([0, 2]);
      const bSeen: string[] = [];
      const b = await startGroupLearner(cluster, { groups: ['g0', 'gall'], resume: rp, onDeliver: got(bSeen), onError: (e) => errors.push(e) });
      learners.push(b);
      for (const l of load) expect(await l.exited).toBe(0);
      const last = aSeen.length > 0 ? aSeen[aSeen.length - 1] : '';
      expect(await waitUntil(() => bSeen.includes(last!), 20_000)).toBe(true);
      // What a delivered after the round's start (each ring's positions past round * M, M = 1).
      const after = aSeen.filter((x) => Number(x.split(':')[1]) > round);
      expect(after.length).toBeGreaterThan(100);
      expect(bSeen).toEqual(after);
      expect(errors).toEqual([]);
    } finally {
      await Promise.all(learners.map((l) => l.stop()));
    }
  });

  it('learners of several rings that start from the first instance with a backlog to catch up all deliver the same order', async () => {
    // The start a replica's workers make: from instance 0 with a backlog, skip requests flying while the
    // merge begins. (The race this start once lost, newer records of a ring fed before the older ones it
    // held, is replayed deterministically in packages/multicast/test/group-learner.test.ts.) Rings of their
    // own, so nothing is trimmed yet.
    const two = await launchLocalRing({ acceptors: 3, rings: 2, settings: SETTINGS, groups: { g0: 0, gall: 1 }, mergeM: 1 });
    const mine: Spawned[] = [];
    const learners: GroupLearner[] = [];
    try {
      const cluster = loadCluster(two.clusterPath);
      const load = (['g0', 'gall'] as const).map((g) =>
        spawnRingcast(['propose', '--cluster', two.clusterPath, '--group', g, '--count', '600', '--rate', '300', '--outstanding', '4', '--prefix', `backlog-${g}`]),
      );
      mine.push(...load);
      for (const l of load) expect(await l.exited).toBe(0);
      const errors: Error[] = [];
      const seen: string[][] = Array.from({ length: 8 }, () => []);
      for (const got of seen) {
        learners.push(
          await startGroupLearner(cluster, {
            groups: ['g0', 'gall'],
            from: 'start',
            onDeliver: (ds) => {
              for (const d of ds) got.push(Buffer.from(d.delivery.data).toString());
            },
            onError: (e) => errors.push(e),
          }),
        );
      }
      const total = (x: string[]): number => x.filter((v) => v.startsWith('backlog-')).length;
      expect(await waitUntil(() => seen.every((x) => total(x) === 1200) || errors.length > 0, 30_000)).toBe(true);
      expect(errors.map((e) => e.message)).toEqual([]);
      for (const x of seen.slice(1)) expect(x).toEqual(seen[0]);
    } finally {
      await Promise.all(learners.map((l) => l.stop()));
      await stopAll(mine);
      await two.stop();
    }
  });

  it('a learner of one idle ring with a start round gets the values proposed after that round, not a passed-round error', async () => {
    // Its own ring, read by nobody else: the ring skips only because this learner needs the pace. Without
    // skips, the first instance it saw would be the first value, at a position past the start round.
    const solo = await launchLocalRing({ acceptors: 3, rings: 1, settings: SETTINGS, groups: { g0: 0 }, mergeM: 1 });
    const mine: Spawned[] = [];
    try {
      const { learner } = await aheadOfRings(3000, async (start) => {
        const learner = spawnRingcast(['learn', '--cluster', solo.clusterPath, '--groups', 'g0', '--start-round', String(start), '--count', '5']);
        mine.push(learner);
        await learner.waitFor('ready').catch(() => {});
        // Propose only once the start round has passed (or the learner found it passed and left).
        await waitUntil(() => roundAt(Date.now()) > start + 2 * SETTINGS.lambda || learner.child.exitCode !== null, 30_000);
        if (learner.child.exitCode === null) {
          const load = spawnRingcast(['propose', '--cluster', solo.clusterPath, '--group', 'g0', '--count', '5', '--outstanding', '1', '--prefix', 'late']);
          mine.push(load);
          expect(await load.exited).toBe(0);
        }
        await learner.exited;
        return { learner };
      });
      expect(await learner.exited, `learner: ${learner.stderr()}`).toBe(0);
      const ds = delivered(learner);
      expect(ds.map((x) => x.d)).toHaveLength(5);
      expect(ds.every((x) => x.d.startsWith('late'))).toBe(true);
    } finally {
      await stopAll(mine);
      await solo.stop();
    }
  });
});
