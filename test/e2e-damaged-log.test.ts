import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { launchLocalRing, spawnRingcast, type LocalRing, type Spawned } from '@ringcast/cli';
import { delivered, scrape, stopAll, waitUntil, writtenBytes } from './helpers.js';

// An acceptor whose synced log lost records in its middle must not vote as if the log were whole. Ring
// [1, 2] (2 coordinates), node 3 a spare, sync logs. Node 1 is killed and 4 bytes are flipped in the middle
// of its segment; then the coordinator dies. Before format 2, recovery cut the log at the flip and node 1
// went back to voting: with the spare it formed a Phase 1 quorum that knew nothing of the instances after
// the cut, and decided them again with new values. Now node 1 rejoins: with node 2 down and node 1 not yet
// trusted, nothing is decided until node 2 is back; then node 1 finishes its rejoin and votes again.
const SETTINGS = { heartbeatMs: 50, coordinatorTimeoutMs: 300, acceptorTimeoutMs: 300, retryTimeoutMs: 150, maxSends: 400 };
const N = 200;

function onlySegment(dir: string): string {
  const ringDir = join(dir, 'ring-0');
  const segs = readdirSync(ringDir).filter((f) => f.endsWith('.seg'));
  expect(segs).toHaveLength(1);
  return join(ringDir, segs[0]!);
}

/** The values (their first 8 characters) a learner delivered at each instance (an instance holds a batch). */
function byInstance(l: Spawned): Map<number, string> {
  const m = new Map<number, string>();
  for (const d of delivered(l)) m.set(d.i, `${m.get(d.i) ?? ''} ${d.d.slice(0, 8)}`);
  return m;
}

/** What a learner delivered, in order: instance and value. */
const history = (l: Spawned): string[] => delivered(l).map((d) => `${d.i}:${d.d}`);

describe('a damaged acceptor log, real processes', () => {
  let ring: LocalRing | undefined;
  const procs: Spawned[] = [];
  afterAll(async () => {
    await stopAll(procs);
    await ring?.stop();
  });

  it('a node whose log lost synced records rejoins before it votes: no instance is decided twice', async () => {
    ring = await launchLocalRing({ acceptors: 3, durable: 'sync', metrics: true, settings: SETTINGS });
    const first = spawnRingcast(['learn', '--cluster', ring.clusterPath, '--from', 'oldest']);
    procs.push(first);
    await first.waitFor('ready');
    const p1 = spawnRingcast(['propose', '--cluster', ring.clusterPath, '--count', String(N), '--outstanding', '8', '--prefix', 'old', '--size', '64']);
    procs.push(p1);
    expect(await p1.waitFor('done', 60_000)).toMatchObject({ acked: N, failed: 0 });
    expect(await waitUntil(() => delivered(first).length >= N, 20_000)).toBe(true);

    // Node 1 (ring member, not the coordinator) dies; flip 4 bytes in the middle of its segment.
    await ring.kill(1);
    const seg = onlySegment(ring.logDir(1));
    const bytes = readFileSync(seg);
    const written = writtenBytes(bytes);
    expect(written).toBeGreaterThan(N * 64);
    const at = Math.floor(written / 2);
    for (let k = 0; k < 4; k++) bytes[at + k] ^= 0x5a;
    writeFileSync(seg, bytes);

    // The coordinator dies too; node 1 comes back.
    await ring.kill(2);
    const back = await ring.restart(1);
    const port1 = (await back.waitFor('ready')).metricsPort as number;

    // New values, and a second learner from the oldest instance.
    const p2 = spawnRingcast(['propose', '--cluster', ring.clusterPath, '--count', String(N), '--outstanding', '8', '--prefix', 'new', '--size', '64']);
    procs.push(p2);
    const second = spawnRingcast(['learn', '--cluster', ring.clusterPath, '--from', 'oldest']);
    procs.push(second);
    await second.waitFor('ready');
    // Give a takeover by node 3 (or node 1, were it to vote) time to happen: several coordinator timeouts.
    await new Promise((r) => setTimeout(r, 6 * SETTINGS.coordinatorTimeoutMs));
    expect(back.stderr()).toMatch(/log is damaged at .*\.seg byte \d+: bad record .*rejoins/);
    expect(await scrape(port1, 'ringcast_log_damaged')).toBe(1);
    expect(await scrape(port1, 'ringcast_acceptor_rejoining')).toBe(1);

    // The old coordinator restarts from its (whole) log: node 1 finishes its rejoin and the ring goes on.
    await ring.restart(2);
    expect(await p2.waitFor('done', 60_000)).toMatchObject({ acked: N, failed: 0 });
    expect(await waitUntil(async () => (await scrape(port1, 'ringcast_acceptor_rejoining')) === 0, 20_000)).toBe(true);
    const all = await waitUntil(() => delivered(first).length >= 2 * N && delivered(second).length >= 2 * N, 20_000);

    // Both learners delivered the same value at every instance they both delivered, and then every value once.
    const [one, two] = [first, second].map(byInstance);
    const differ = [...two.keys()].filter((i) => one.has(i) && one.get(i) !== two.get(i)).map((i) => `instance ${i}: ${one.get(i)} vs ${two.get(i)}`);
    expect(differ.slice(0, 2)).toEqual([]);
    expect(all).toBe(true);
    expect(history(second)).toEqual(history(first));
    expect(new Set(delivered(second).map((d) => d.d)).size).toBe(2 * N);
    expect(delivered(second).filter((d) => d.d.startsWith('old-')).length).toBe(N);

    // Node 1 is a full acceptor again: without the spare, ring [1, 2] must carry new values.
    await ring.kill(3);
    const p3 = spawnRingcast(['propose', '--cluster', ring.clusterPath, '--count', '50', '--outstanding', '4', '--prefix', 'end', '--size', '64']);
    procs.push(p3);
    expect(await p3.waitFor('done', 60_000)).toMatchObject({ acked: 50, failed: 0 });
  });
});
