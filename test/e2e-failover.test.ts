import { afterAll, describe, expect, it } from 'vitest';
import { launchLocalRing, spawnRingcast, type LocalRing, type Spawned } from '@ringcast/psmr-proxy';
import { delivered, stopAll, waitUntil } from './helpers.js';

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
});
