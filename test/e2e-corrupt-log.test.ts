import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { launchLocalRing, spawnRingcast, type LocalRing, type Spawned } from '@ringcast/cli';
import { delivered, scrape, stopAll, waitUntil, writtenBytes } from './helpers.js';

// Corrupt the last record of an acceptor's log on disk. That record was synced (a vote left after it), so
// it is a lost vote, not a torn tail: the acceptor restarts, finds its log damaged, sets it aside and
// rejoins (as --rejoin does), and the ring stays correct when it then has to rely on that acceptor.
const SETTINGS = { heartbeatMs: 50, coordinatorTimeoutMs: 300, acceptorTimeoutMs: 300, retryTimeoutMs: 150, maxSends: 200 };

function lastSegment(dir: string): string {
  const ringDir = join(dir, 'ring-0');
  const segs = readdirSync(ringDir).filter((f) => f.endsWith('.seg')).sort();
  return join(ringDir, segs[segs.length - 1]!);
}

describe('acceptor log corruption, real processes', () => {
  let ring: LocalRing | undefined;
  const procs: Spawned[] = [];
  afterAll(async () => {
    await stopAll(procs);
    await ring?.stop();
  });

  it('takes a corrupt last (synced) record for damage: the node rejoins, and the ring stays correct', async () => {
    ring = await launchLocalRing({ acceptors: 3, durable: 'sync', metrics: true, settings: SETTINGS });
    const learners = [0, 1].map(() => spawnRingcast(['learn', '--cluster', ring!.clusterPath, '--from', '0']));
    procs.push(...learners);
    await Promise.all(learners.map((l) => l.waitFor('ready')));
    const p1 = spawnRingcast(['propose', '--cluster', ring.clusterPath, '--count', '1000', '--outstanding', '16', '--prefix', 'c1', '--size', '64']);
    procs.push(p1);
    expect(await p1.waitFor('done', 60_000)).toMatchObject({ acked: 1000, failed: 0 });

    // A ring member other than the coordinator (node 2) dies: the one of 1 and 3 whose log holds the votes
    // (the other is the spare). Flip a byte inside the last record of its log.
    const size = (id: number): number => writtenBytes(readFileSync(lastSegment(ring!.logDir(id))));
    const victim = size(1) >= size(3) ? 1 : 3;
    const other = victim === 1 ? 3 : 1;
    await ring.kill(victim);
    const seg = lastSegment(ring.logDir(victim));
    const bytes = readFileSync(seg);
    const written = writtenBytes(bytes);
    expect(written).toBeGreaterThan(64);
    bytes[written - 17 - 3] ^= 0xff; // the last record before the final commit
    writeFileSync(seg, bytes);

    const back = await ring.restart(victim);
    const port = (await back.waitFor('ready')).metricsPort as number;
    expect(back.stderr()).toMatch(new RegExp(`log is damaged at ${seg.replace(/[.]/g, '[.]')} byte \\d+: bad record \\(crc mismatch\\)`));
    expect(await scrape(port, 'ringcast_log_damaged')).toBe(1);
    // The damaged segment is kept for inspection, out of the log.
    expect(existsSync(seg)).toBe(false);
    const ringDir = join(ring.logDir(victim), 'ring-0');
    const aside = readdirSync(ringDir).filter((n) => n.startsWith('damaged-'));
    expect(aside).toHaveLength(1);
    expect(readFileSync(join(ringDir, aside[0]!, seg.slice(seg.lastIndexOf('/') + 1))).equals(bytes)).toBe(true); // (64 MiB: no deep compare)
    expect(await waitUntil(async () => (await scrape(port, 'ringcast_acceptor_rejoining')) === 0, 20_000)).toBe(true);

    // Now the ring must rely on it: stop the other acceptor so that it and node 2 carry every decision.
    await ring.kill(other);
    const p2 = spawnRingcast(['propose', '--cluster', ring.clusterPath, '--count', '1000', '--outstanding', '16', '--prefix', 'c2', '--size', '64']);
    procs.push(p2);
    expect(await p2.waitFor('done', 60_000)).toMatchObject({ acked: 1000, failed: 0 });
    expect(await waitUntil(() => learners.every((l) => delivered(l).length >= 2000), 30_000)).toBe(true);
    const [a, b] = learners.map(delivered);
    expect(b).toEqual(a);
    expect(new Set(a!.map((x) => x.d)).size).toBe(2000);
  });
});
