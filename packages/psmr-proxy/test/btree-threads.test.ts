// Real worker threads over one SharedArrayBuffer: each thread runs optimistic inserts and deletes of its
// own key range that pass the safety check (and skips those that fail, as a replica would before the
// client resubmits them to g_all), gets of its own range, and gets anywhere; then the tree's invariants,
// size, digest and bytes are compared with a sequential replay of the same per-thread operations. Runs the
// built dist/ (run `npx tsc -b` first).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Prng } from '@ringcast/ring-paxos';
import { checkTree } from '../src/services/btree-tree.js';
import { btreeService, rangeBounds, type BtreeCommand } from '../src/services/btree.js';

const DIST = join(import.meta.dirname, '..', 'dist', 'services', 'btree.js');
const THREADS = 3;
const OPS = 6000;
const PARAMS = { keys: 3000, order: 16, fill: 0.75, range: 6000, nodes: 2000 };
const TIME_LIMIT_MS = 5000;

/** Uniform floats in [0, 1) from the project's seeded generator. */
function seeded(seed: number): () => number {
  const p = new Prng(seed);
  return () => p.float();
}

type Op = [kind: 0 | 1 | 2 | 3, key: number, value: number]; // insert, delete, own get, foreign get

function opsOf(thread: number): Op[] {
  const rnd = seeded(1000 + thread);
  const b = rangeBounds(BigInt(PARAMS.range), THREADS).map(Number);
  const own = (): number => b[thread]! + Math.floor(rnd() * (b[thread + 1]! - b[thread]!));
  return Array.from({ length: OPS }, (_, i): Op => {
    const r = rnd();
    if (r < 0.4) return [0, own(), i + 1];
    if (r < 0.8) return [1, own(), 0];
    if (r < 0.9) return [2, own(), 0];
    return [3, Math.floor(rnd() * PARAMS.range), 0];
  });
}

// The thread's loop, also run sequentially in the main thread for the replay. Returns one outcome per op:
// 'F' failed check, 'I'/'O' inserted/overwrote, 'D'/'-' deleted/absent, a get's value or 'null'; a
// foreign get only its type (another thread may be writing that leaf).
const LOOP = `
function runOps(svc, st, ops, deadline, now) {
  const out = [];
  for (let i = 0; i < ops.length; i++) {
    if ((i & 255) === 0 && now() > deadline) throw new Error('time limit passed at op ' + i);
    const [kind, key, value] = ops[i];
    const k = BigInt(key);
    if (kind === 0 || kind === 1) {
      const c = kind === 0 ? { op: 'insert', key: k, value: BigInt(value) } : { op: 'delete', key: k };
      if (!svc.check(st, c, st.worker, st.workers)) { out.push('F'); continue; }
      const r = svc.execute(st, c);
      out.push(kind === 0 ? (r.inserted ? 'I' : 'O') : (r.deleted ? 'D' : '-'));
    } else {
      const v = svc.execute(st, { op: 'get', key: k }).value;
      out.push(kind === 2 ? String(v) : v === null || typeof v === 'bigint' ? 'ok' : 'bad');
    }
  }
  return out;
}`;

const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
${LOOP}
(async () => {
  const m = await import(workerData.url);
  const svc = m.btreeService(workerData.params);
  const st = svc.createPartition(workerData.index, workerData.threads, workerData.shared);
  parentPort.once('message', () => {
    try {
      parentPort.postMessage({ out: runOps(svc, st, workerData.ops, Date.now() + workerData.ms, Date.now) });
    } catch (e) {
      parentPort.postMessage({ error: String(e && e.stack || e) });
    }
  });
  parentPort.postMessage({ ready: true });
})().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
`;

describe('B+-tree with real worker threads', () => {
  it(`${THREADS} threads of ${OPS} optimistic operations each equal a sequential replay`, async () => {
    expect(existsSync(DIST), `${DIST} is missing: run \`npx tsc -b\` first`).toBe(true);
    const svc = btreeService(PARAMS);
    const shared = new SharedArrayBuffer(svc.sharedBytes!);
    svc.initShared!(shared);
    const ops = Array.from({ length: THREADS }, (_, i) => opsOf(i));
    const workers = ops.map(
      (o, index) => new Worker(WORKER, { eval: true, workerData: { url: pathToFileURL(DIST).href, params: PARAMS, shared, index, threads: THREADS, ops: o, ms: TIME_LIMIT_MS } }),
    );
    let outs: string[][];
    try {
      const ready = workers.map((w) => new Promise<void>((res, rej) => w.once('message', (m: { error?: string }) => (m.error ? rej(new Error(m.error)) : res()))));
      await Promise.all(ready);
      const done = workers.map(
        (w) =>
          new Promise<string[]>((res, rej) => {
            w.once('message', (m: { out?: string[]; error?: string }) => (m.error ? rej(new Error(m.error)) : res(m.out!)));
            w.once('error', rej);
          }),
      );
      for (const w of workers) w.postMessage('go'); // all start together
      outs = await Promise.all(done);
    } finally {
      await Promise.all(workers.map((w) => w.terminate()));
    }
    // Sequential replay on a fresh tree: thread 0's operations, then thread 1's, ...
    const replay = new SharedArrayBuffer(svc.sharedBytes!);
    svc.initShared!(replay);
    const run = new Function(`${LOOP}; return runOps;`)() as (
      s: typeof svc,
      st: unknown,
      ops: Op[],
      deadline: number,
      now: () => number,
    ) => string[];
    const want = ops.map((o, i) => run(svc, svc.createPartition(i, THREADS, replay), o, Date.now() + TIME_LIMIT_MS, Date.now));
    for (let i = 0; i < THREADS; i++) {
      expect(outs[i]!.length).toBe(OPS);
      expect(outs[i], `thread ${i}'s outcomes`).toEqual(want[i]);
      expect(outs[i]!.filter((x) => x === 'bad')).toEqual([]);
    }
    // Enough of both outcomes for the run to mean something.
    const all = outs.flat();
    const failed = all.filter((x) => x === 'F').length;
    const passed = all.filter((x) => ['I', 'O', 'D', '-'].includes(x)).length;
    expect(passed).toBeGreaterThan(THREADS * OPS * 0.3);
    expect(failed).toBeGreaterThan(50);
    const view = svc.createPartition(0, THREADS, shared);
    const ref = svc.createPartition(0, THREADS, replay);
    expect(checkTree(view.tree)).toEqual([]);
    expect(view.tree.size()).toBe(ref.tree.size());
    expect(svc.digest(view)).toBe(svc.digest(ref));
    expect(svc.digest(view)).toBe(view.tree.digestFull());
    expect(Buffer.from(new Uint8Array(shared)).equals(Buffer.from(new Uint8Array(replay)))).toBe(true);
  }, 30_000);
});
