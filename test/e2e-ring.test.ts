import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { launchLocalRing, NODE_FLAGS, RINGCAST_BIN, spawnRingcast, type LocalRing, type Spawned } from '@ringcast/cli';
import { delivered, scrape, stopAll, waitUntil } from './helpers.js';

// Real processes on 127.0.0.1: 3 acceptor processes from a cluster file, learner and proposer processes.
const PROPOSERS = 3;
const PER_PROPOSER = 3000;

describe('one ring, real processes on loopback', () => {
  let ring: LocalRing | undefined;
  const procs: Spawned[] = [];
  afterAll(async () => {
    await stopAll(procs);
    await ring?.stop();
  });

  it('orders concurrent proposals identically at two learners, loses nothing, and a late learner catches up', async () => {
    ring = await launchLocalRing({ acceptors: 3, metrics: true });
    const learners = [0, 1].map(() => spawnRingcast(['learn', '--cluster', ring!.clusterPath, '--from', '0']));
    procs.push(...learners);
    await Promise.all(learners.map((l) => l.waitFor('ready')));
    // Every ringcast process runs with the project's V8 flags: spawned ones, and the bin's shebang for npx.
    const argv = readFileSync(`/proc/${learners[0]!.child.pid}/cmdline`, 'utf8').split('\0');
    const shebang = readFileSync(RINGCAST_BIN, 'utf8').split('\n')[0]!;
    expect(NODE_FLAGS.length).toBeGreaterThan(0);
    for (const f of NODE_FLAGS) {
      expect(argv).toContain(f);
      expect(shebang.split(' ')).toContain(f);
    }

    const proposers = Array.from({ length: PROPOSERS }, (_, k) =>
      spawnRingcast(['propose', '--cluster', ring!.clusterPath, '--count', String(PER_PROPOSER), '--prefix', `p${k}`, '--outstanding', '128', '--size', '100']),
    );
    procs.push(...proposers);
    const done = await Promise.all(proposers.map((p) => p.waitFor('done', 90_000)));
    for (const d of done) expect(d).toMatchObject({ acked: PER_PROPOSER, failed: 0 });

    const total = PROPOSERS * PER_PROPOSER;
    expect(await waitUntil(() => learners.every((l) => delivered(l).length >= total), 30_000)).toBe(true);
    const [a, b] = learners.map(delivered);
    expect(a!.length).toBe(total);
    expect(b).toEqual(a);

    // Every proposed value exactly once, and each proposer's values in the order it proposed them
    // (one proposer, one coordinator, FIFO batches: its seqs are decided in order).
    for (let k = 0; k < PROPOSERS; k++) {
      const mine = a!.filter((x) => x.d.startsWith(`p${k}-`)).map((x) => Number(x.d.slice(`p${k}-`.length).split('.')[0]));
      expect(new Set(mine).size).toBe(PER_PROPOSER);
      expect(Math.min(...mine)).toBe(0);
      expect(Math.max(...mine)).toBe(PER_PROPOSER - 1);
    }

    // A learner that joins after the load starts from the oldest instance the acceptors hold and
    // catches up from their logs: it delivers the same sequence from where it starts.
    const late = spawnRingcast(['learn', '--cluster', ring.clusterPath, '--from', 'oldest']);
    procs.push(late);
    await late.waitFor('ready');
    expect(await waitUntil(() => delivered(late).length >= total, 30_000)).toBe(true);
    const c = delivered(late);
    expect(c).toEqual(a);

    // The coordinator (node 2, last of the ring) exports what it decided and the late learner's retransmissions.
    const coordMetrics = (await ring.nodes[1]!.waitFor('ready')).metricsPort as number;
    expect(await scrape(coordMetrics, 'ringcast_instances_decided_total')).toBeGreaterThan(0);
    const served = await Promise.all(ring.nodes.map(async (n) => scrape((await n.waitFor('ready')).metricsPort as number, 'ringcast_retransmitted_instances')));
    expect(served.reduce((x, y) => x + y, 0)).toBeGreaterThan(0);
  });

  it('refuses a bad cluster file with an error that names the field', async () => {
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'ringcast-bad-'));
    const path = join(dir, 'cluster.json');
    writeFileSync(path, JSON.stringify({ nodes: [{ id: 1, host: '127.0.0.1', port: 7001 }], rings: [{ id: 0, acceptors: [1, 2] }] }));
    const p = spawnRingcast(['node', '--cluster', path, '--id', '1']);
    procs.push(p);
    const code = await p.exited;
    expect(code).not.toBe(0);
    expect(p.stderr()).toMatch(/ERR_RINGCAST_CONFIG.*rings\[0\]\.acceptors/);
  });
});
