import { afterAll, describe, expect, it } from 'vitest';
import { launchLocalRing, spawnRingcast, type LocalRing, type Spawned } from '@ringcast/cli';
import { delivered, scrape, stopAll, waitUntil } from './helpers.js';

// An acceptor that loses its log (memory mode, kill -9) comes back with --rejoin: it stays out of what it
// may have forgotten while the ring goes on, then carries decisions once the ring trimmed past that.
const SETTINGS = { heartbeatMs: 50, coordinatorTimeoutMs: 300, acceptorTimeoutMs: 300, retryTimeoutMs: 150, maxSends: 200, window: 16, logRetain: 16, phase1Range: 256 };

describe('rejoin without a log, real processes', () => {
  let ring: LocalRing | undefined;
  const procs: Spawned[] = [];
  afterAll(async () => {
    await stopAll(procs);
    await ring?.stop();
  });

  it('a memory-mode acceptor killed and restarted with --rejoin becomes a full acceptor again', async () => {
    ring = await launchLocalRing({ acceptors: 3, metrics: true, settings: SETTINGS });
    const learners = [0, 1].map(() => spawnRingcast(['learn', '--cluster', ring!.clusterPath, '--from', '0']));
    procs.push(...learners);
    await Promise.all(learners.map((l) => l.waitFor('ready')));
    const p1 = spawnRingcast(['propose', '--cluster', ring.clusterPath, '--count', '500', '--outstanding', '8', '--prefix', 'a', '--size', '32']);
    procs.push(p1);
    expect(await p1.waitFor('done', 60_000)).toMatchObject({ acked: 500, failed: 0 });

    // Acceptor 1 (a ring member) loses everything and rejoins.
    await ring.kill(1);
    const back = await ring.restart(1, ['--rejoin']);
    const port = (await back.waitFor('ready')).metricsPort as number;
    const p2 = spawnRingcast(['propose', '--cluster', ring.clusterPath, '--count', '1500', '--outstanding', '8', '--prefix', 'b', '--size', '32']);
    procs.push(p2);
    expect(await p2.waitFor('done', 60_000)).toMatchObject({ acked: 1500, failed: 0 });
    // It has caught up with the ring's trim point: it holds a log again.
    expect(await waitUntil(async () => (await scrape(port, 'ringcast_acceptor_trimmed_below')) > 0, 10_000)).toBe(true);

    // Now the ring needs it: stop acceptor 3.
    await ring.kill(3);
    const p3 = spawnRingcast(['propose', '--cluster', ring.clusterPath, '--count', '500', '--outstanding', '8', '--prefix', 'c', '--size', '32']);
    procs.push(p3);
    expect(await p3.waitFor('done', 60_000)).toMatchObject({ acked: 500, failed: 0 });
    expect(await waitUntil(() => learners.every((l) => delivered(l).length >= 2500), 30_000)).toBe(true);
    const [a, b] = learners.map(delivered);
    expect(b).toEqual(a);
    expect(new Set(a!.map((x) => x.d)).size).toBe(2500);
  });
});
