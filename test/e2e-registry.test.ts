import { afterAll, describe, expect, it } from 'vitest';
import { RedisRegistry } from '@ringcast/multicast';
import { launchLocalRing, spawnRingcast, type LocalRing, type Spawned } from '@ringcast/cli';
import { startRedisServer, type RedisServer } from '../packages/multicast/test/redis-server.js';
import { delivered, stopAll, waitUntil } from './helpers.js';

// Ring nodes announce themselves and their coordinator lease in a real redis-server (started by the test on
// a free loopback port). Redis is a hint only: stopping it must not stop the ring from ordering.
describe('ring nodes with a Redis registry, real processes', () => {
  let redis: RedisServer | undefined;
  let ring: LocalRing | undefined;
  let reg: RedisRegistry | undefined;
  const procs: Spawned[] = [];
  afterAll(async () => {
    await stopAll(procs);
    await ring?.stop();
    await reg?.close();
    await redis?.stop();
  });

  it('registers nodes and the coordinator lease, and keeps ordering while Redis is stopped', async () => {
    redis = await startRedisServer();
    ring = await launchLocalRing({ acceptors: 3, nodeArgs: ['--registry', redis.url] });
    reg = new RedisRegistry({ url: redis.url });
    await reg.load(ring.cluster);
    expect(
      await waitUntil(async () => {
        const v = await reg!.view().catch(() => undefined);
        return !!v && v.nodes.filter((n) => n.live).length === 3 && (await reg!.leaseOf(0))?.holder === 2;
      }, 10_000),
    ).toBe(true);

    const learner = spawnRingcast(['learn', '--cluster', ring.clusterPath, '--from', '0']);
    procs.push(learner);
    await learner.waitFor('ready');
    await redis.stop();
    const p = spawnRingcast(['propose', '--cluster', ring.clusterPath, '--count', '500', '--outstanding', '16', '--prefix', 'noredis']);
    procs.push(p);
    expect(await p.waitFor('done', 60_000)).toMatchObject({ acked: 500, failed: 0 });
    expect(await waitUntil(() => delivered(learner).length >= 500, 20_000)).toBe(true);
    for (const n of ring.nodes) expect(n.child.exitCode).toBeNull();
    expect(await waitUntil(() => /registry unreachable/.test(ring!.nodes[1]!.stderr()), 10_000)).toBe(true);

    // Redis comes back (empty: no persistence); the nodes announce themselves again.
    await redis.start();
    expect(await waitUntil(async () => ((await reg!.view().catch(() => undefined))?.nodes ?? []).filter((n) => n.live).length === 3, 15_000)).toBe(true);
  });
});
