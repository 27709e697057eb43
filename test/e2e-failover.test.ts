import { afterAll, describe, expect, it } from 'vitest';
import { launchLocalRing, spawnRingcast, type LocalRing, type Spawned } from '@ringcast/cli';
import { DEFAULT_RING_SETTINGS } from '@ringcast/ring-paxos';
import { delivered, scrape, stopAll, waitUntil } from './helpers.js';

// Real processes on 127.0.0.1 with a fault proxy in front of every acceptor (10 % loss, duplicates,
// reordering), durable sync logs, and kill -9: first the coordinator, then (once it is back from its disk
// log) another acceptor. Learners must agree and every acknowledged value must be delivered exactly once.
const SETTINGS = { heartbeatMs: 50, coordinatorTimeoutMs: 300, acceptorTimeoutMs: 300, retryTimeoutMs: 150, maxSends: 200, phase2TimeoutMs: 40 };
const PER_PROPOSER = 2500;
const RATE = 500;

/** Milliseconds from now until `learner` delivers more than it has now (bounded wait). */
async function timeToNextDelivery(learner: Spawned, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  const before = delivered(learner).length;
  const ok = await waitUntil(() => delivered(learner).length > before, timeoutMs, 5);
  if (!ok) throw new Error(`no delivery within ${timeoutMs} ms`);
  return performance.now() - t0;
}

describe('ring under failures, real processes', () => {
  let ring: LocalRing | undefined;
  const procs: Spawned[] = [];
  afterAll(async () => {
    await stopAll(procs);
    await ring?.stop();
  });

  it('survives kill -9 of the coordinator and then of an acceptor, with loss and reordering, losing nothing', async () => {
    ring = await launchLocalRing({ acceptors: 3, durable: 'sync', settings: SETTINGS, faults: { drop: 0.1, dup: 0.02, delay: '0-3', seed: 7 } });
    const learners = [0, 1].map(() => spawnRingcast(['learn', '--cluster', ring!.clusterPath, '--from', '0']));
    procs.push(...learners);
    await Promise.all(learners.map((l) => l.waitFor('ready')));
    const proposers = [0, 1].map((k) =>
      spawnRingcast(['propose', '--cluster', ring!.clusterPath, '--count', String(PER_PROPOSER), '--rate', String(RATE), '--outstanding', '32', '--prefix', `f${k}`]),
    );
    procs.push(...proposers);
    const [watch] = learners;
    expect(await waitUntil(() => delivered(watch!).length >= 600, 20_000)).toBe(true);

    // 1. The coordinator (node 2, last of the configured ring) dies.
    await ring.kill(2);
    const coordinatorFailover = await timeToNextDelivery(watch!, 15_000);
    console.log(JSON.stringify({ event: 'failover', killed: 'coordinator', msToNextDelivery: Math.round(coordinatorFailover) }));
    expect(await waitUntil(() => delivered(watch!).length >= 1500, 20_000)).toBe(true);

    // 2. It comes back from its disk log and rejoins; then another acceptor dies.
    await ring.restart(2);
    await new Promise((r) => setTimeout(r, 800));
    await ring.kill(3);
    const acceptorFailover = await timeToNextDelivery(watch!, 15_000);
    console.log(JSON.stringify({ event: 'failover', killed: 'acceptor 3', msToNextDelivery: Math.round(acceptorFailover) }));
    expect(await waitUntil(() => delivered(watch!).length >= 2500, 20_000)).toBe(true);
    await ring.restart(3);

    const done = await Promise.all(proposers.map((p) => p.waitFor('done', 120_000)));
    for (const d of done) expect(d).toMatchObject({ acked: PER_PROPOSER, failed: 0 });
    const total = 2 * PER_PROPOSER;
    expect(await waitUntil(() => learners.every((l) => delivered(l).length >= total), 60_000)).toBe(true);
    const [a, b] = learners.map(delivered);
    expect(b).toEqual(a);
    for (let k = 0; k < 2; k++) {
      const mine = a!.filter((x) => x.d.startsWith(`f${k}-`)).map((x) => x.d);
      expect(mine).toHaveLength(PER_PROPOSER);
      expect(new Set(mine).size).toBe(PER_PROPOSER);
    }
  });

  it('SIGSTOP of the coordinator past its timeout, then SIGCONT: a member takes over, the old one steps down, nothing stalls (default settings)', async () => {
    const d = DEFAULT_RING_SETTINGS;
    const stopped = await launchLocalRing({ acceptors: 3, metrics: true });
    const mine: Spawned[] = [];
    try {
      const learner = spawnRingcast(['learn', '--cluster', stopped.clusterPath, '--from', '0']);
      mine.push(learner);
      await learner.waitFor('ready');
      const count = 1500;
      const proposer = spawnRingcast(['propose', '--cluster', stopped.clusterPath, '--count', String(count), '--rate', '500', '--outstanding', '32', '--prefix', 's']);
      mine.push(proposer);
      expect(await waitUntil(() => delivered(learner).length >= 100, 20_000)).toBe(true);
      const coordinator = stopped.nodes[1]!; // node 2, last of the configured ring [1, 2]
      const port = (id: number): number => stopped.nodes[id - 1]!.lines.find((l) => (l as { event?: string }).event === 'ready')!.metricsPort as number;
      expect(await scrape(port(2), 'ringcast_window_size')).toBeGreaterThan(0);
      const other = async (): Promise<number> => (await scrape(port(1), 'ringcast_window_size')) + (await scrape(port(3), 'ringcast_window_size'));
      process.kill(coordinator.child.pid!, 'SIGSTOP');
      try {
        // Takeover while the old coordinator is still stopped.
        const t0 = performance.now();
        expect(await waitUntil(async () => (await other()) > 0, 2 * d.coordinatorTimeoutMs + 5000, 10)).toBe(true);
        const took = performance.now() - t0;
        console.log(JSON.stringify({ event: 'sigstop', msToTakeover: Math.round(took) }));
        await new Promise((r) => setTimeout(r, Math.max(0, 3 * d.coordinatorTimeoutMs - took)));
      } finally {
        process.kill(coordinator.child.pid!, 'SIGCONT');
      }
      // The resumed node hears the higher ballot and gives the role up; the ring keeps delivering.
      expect(await waitUntil(async () => (await scrape(port(2), 'ringcast_window_size')) === 0, 10 * d.coordinatorTimeoutMs)).toBe(true);
      expect(await other()).toBeGreaterThan(0);
      const afterResume = delivered(learner).length;
      expect(await waitUntil(() => delivered(learner).length >= afterResume + 100, 10_000)).toBe(true);
      const done = await proposer.waitFor('done', 60_000);
      expect(done).toMatchObject({ acked: count, failed: 0 });
      await waitUntil(() => delivered(learner).length >= count, 20_000);
      const values = delivered(learner).map((x) => x.d);
      expect(values.length, `learner stderr: ${learner.stderr().slice(-1000)}`).toBe(count);
      expect(new Set(values).size).toBe(count);
    } finally {
      await stopAll(mine);
      await stopped.stop();
    }
  });
});
