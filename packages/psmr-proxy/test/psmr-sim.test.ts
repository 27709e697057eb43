import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { runPsmrSimulation } from '../src/sim.js';
import { SharedBarrier } from '../src/barrier.js';

const SEEDS = 200;

describe('P-SMR simulation: merge, barrier and execution', () => {
  it(`${SEEDS} seeds: replies equal sequential SMR, workers meet at every g_all round, replicas agree`, async () => {
    const failed: string[] = [];
    let multiWorker = 0;
    let gallRounds = 0;
    for (let seed = 1; seed <= SEEDS; seed++) {
      const r = await runPsmrSimulation({ seed });
      if (r.workers > 1) multiWorker++;
      gallRounds += r.gallRounds;
      if (!r.ok) failed.push(`seed ${seed}: ${r.failures.slice(0, 3).join('; ')} (replay: npx ringcast sim --psmr --seed ${seed})`);
    }
    expect(failed).toEqual([]);
    // The swarm really exercised several workers and the barrier.
    expect(multiWorker).toBeGreaterThan(SEEDS / 2);
    expect(gallRounds).toBeGreaterThan(SEEDS * 10);
  });

  it('the checkers catch a replica whose workers do not wait at the barrier', async () => {
    let multi = 0;
    let caught = 0;
    for (let seed = 1; seed <= 30; seed++) {
      const good = await runPsmrSimulation({ seed });
      if (good.workers === 1) continue;
      multi++;
      const r = await runPsmrSimulation({ seed, barrier: 'none' });
      if (!r.ok) caught++;
    }
    expect(multi).toBeGreaterThan(10);
    expect(caught).toBe(multi);
  });

  it('the checkers catch a worker loop that groups deliveries of one ring across instances', async () => {
    let multi = 0;
    const missed: number[] = [];
    for (let seed = 1; seed <= 10; seed++) {
      const r = await runPsmrSimulation({ seed, loop: 'group-by-ring' });
      if (r.workers === 1) continue;
      multi++;
      if (r.ok) missed.push(seed);
    }
    expect(multi).toBeGreaterThan(4);
    expect(missed).toEqual([]);
    // Seed 2 (three workers): the workers cut different g_all rounds and stop meeting at the barrier.
    const two = await runPsmrSimulation({ seed: 2, loop: 'group-by-ring' });
    expect(two.failures.join('\n')).toMatch(/wait at the barrier forever/);
    expect((await runPsmrSimulation({ seed: 2 })).ok).toBe(true);
  });
});

describe('SharedArrayBuffer barrier across real worker threads', () => {
  it('no worker passes a round before every worker arrived, and the executing worker\'s writes are seen by all', async () => {
    const workers = 3;
    const rounds = 3000;
    const sab = SharedBarrier.allocate(workers, 64);
    const data = new SharedArrayBuffer(8);
    const url = new URL('../dist/barrier.js', import.meta.url).href;
    // Each round: arrive; worker 0 bumps a plain (non-atomic) counter; arrive; everyone checks it.
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      import(${JSON.stringify(url)}).then(async ({ SharedBarrier }) => {
        const { sab, data, w, n, rounds } = workerData;
        const b = new SharedBarrier(sab, n, w, 64);
        const counter = new Int32Array(data);
        let bad = 0;
        for (let r = 0; r < rounds; r++) {
          const p1 = b.arrive(); if (p1) await p1;
          if (w === 0) counter[0] = counter[0] + 1;
          const p2 = b.arrive(); if (p2) await p2;
          if (counter[0] !== r + 1) bad++;
          b.writeSlot(Uint8Array.of(w, r & 255));
          const p3 = b.arrive(); if (p3) await p3;
          for (let x = 0; x < n; x++) { const s = b.readSlot(x); if (s[0] !== x || s[1] !== (r & 255)) bad++; }
          const p4 = b.arrive(); if (p4) await p4;
        }
        parentPort.postMessage({ bad, waits: b.stats.waits });
      });`;
    const results = await Promise.all(
      Array.from(
        { length: workers },
        (_, w) =>
          new Promise<{ bad: number; waits: number }>((resolve, reject) => {
            const t = new Worker(code, { eval: true, workerData: { sab, data, w, n: workers, rounds } });
            t.once('message', (m) => {
              resolve(m as { bad: number; waits: number });
              void t.terminate();
            });
            t.once('error', reject);
          }),
      ),
    );
    expect(results.map((r) => r.bad)).toEqual([0, 0, 0]);
    expect(new Int32Array(data)[0]).toBe(rounds);
  });
});
