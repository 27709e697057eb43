// The B+-tree service: the tree against a sorted-map model with its invariants checked after every step,
// the opt-PSMR safety check's three conditions, snapshot/restore, the O(1) digest, codecs, params and the
// cluster file's services section.
import { describe, expect, it } from 'vitest';
import { ConfigError, ERR, Prng, parseCluster } from '@ringcast/ring-paxos';
import { ByteReader, ByteWriter } from '../src/protocol/bytes.js';
import { loadService } from '../src/service-loader.js';
import { BTREE_ERR } from '../src/services/btree-errors.js';
import { BTree, checkConditions, checkTree, restoreTree, snapshotTree, treeBytes } from '../src/services/btree-tree.js';
import { btreeParams, btreeService, rangeBounds, rangeOf, type BtreeCommand, type BtreeReply } from '../src/services/btree.js';

/** Uniform floats in [0, 1) from the project's seeded generator. */
function seeded(seed: number): () => number {
  const p = new Prng(seed);
  return () => p.float();
}

const tree = (order: number, capacity: number, range: number, keys = 0, fill = 0.75): BTree =>
  BTree.bulkLoad(new SharedArrayBuffer(treeBytes(order, capacity)), { order, capacity, range: BigInt(range) }, keys, fill);

describe('B+-tree against a sorted-map model', () => {
  for (const [seed, order] of [
    [1, 4],
    [2, 5],
    [3, 8],
  ] as const) {
    it(`seed ${seed}, order ${order}: random inserts, deletes, gets and scans; invariants after every step`, () => {
      const range = 600;
      const t = tree(order, 1000, range, 120);
      const model = new Map<bigint, bigint>();
      for (let i = 0; i < 120; i++) model.set(BigInt(Math.floor((i * range) / 120)), BigInt(i + 1));
      const rnd = seeded(seed);
      let splits = 0;
      let merges = 0;
      let maxHeight = 0;
      const steps = 3000;
      try {
        for (let s = 0; s < steps; s++) {
          // Grow for the first half, shrink for the second: many splits, then many borrows and merges.
          const pInsert = s < steps / 2 ? 0.65 : 0.12;
          const k = BigInt(Math.floor(rnd() * range));
          const r = rnd();
          const before = t.usedPrefix - t.freeNodes;
          if (r < pInsert) {
            const v = BigInt(s) * 7n - 1000n;
            expect(t.insert(k, v)).toBe(!model.has(k));
            model.set(k, v);
          } else if (r < (s < steps / 2 ? 0.95 : 0.75)) {
            expect(t.delete(k)).toBe(model.delete(k));
          } else if (r < 0.98) {
            expect(t.get(k)).toBe(model.get(k) ?? null);
          } else {
            const limit = 1 + Math.floor(rnd() * 20);
            const want = [...model].filter(([x]) => x >= k).sort((a, b) => (a[0] < b[0] ? -1 : 1)).slice(0, limit);
            expect(t.scan(k, limit)).toEqual(want);
          }
          const after = t.usedPrefix - t.freeNodes;
          if (after > before) splits++;
          if (after < before) merges++;
          maxHeight = Math.max(maxHeight, t.height);
          expect(checkTree(t), `step ${s}`).toEqual([]);
          expect(t.size()).toBe(model.size);
          if (s % 100 === 0) expect(t.digest()).toBe(t.digestFull());
        }
      } catch (e) {
        (e as Error).message = `seed ${seed} order ${order}: ${(e as Error).message}`;
        throw e;
      }
      expect(t.digest()).toBe(t.digestFull());
      expect(splits).toBeGreaterThan(25);
      expect(merges).toBeGreaterThan(25);
      expect(maxHeight).toBeGreaterThanOrEqual(3);
    });
  }

  it('the bulk load is deterministic, within fill bounds, and every key reads back', () => {
    for (const [keys, order, fill] of [
      [0, 4, 0.75],
      [1, 4, 0.75],
      [7, 4, 1],
      [1000, 6, 0.6],
      [5000, 64, 0.75],
    ] as const) {
      const a = tree(order, 4000, 2 * keys + 2, keys, fill);
      const b = tree(order, 4000, 2 * keys + 2, keys, fill);
      expect(checkTree(a), `${keys} keys, order ${order}`).toEqual([]);
      expect(a.size()).toBe(keys);
      expect(Buffer.from(snapshotTree(a)).equals(Buffer.from(snapshotTree(b)))).toBe(true);
      expect(a.digest()).toBe(a.digestFull());
      for (let i = 0; i < keys; i += Math.max(1, keys >> 6)) expect(a.get(BigInt(Math.floor((i * (2 * keys + 2)) / keys)))).toBe(BigInt(i + 1));
    }
    // The pinned fill: leaves after the load hold floor(order * fill) entries (the last ones spread evenly).
    const t = tree(64, 4000, 192_000, 96_000);
    for (let leaf = t.firstLeaf; leaf !== -1; leaf = t.next(leaf)) expect(t.count(leaf)).toBe(48);
  });

  it('a full node pool refuses an insert (ERR_BTREE_FULL) and changes nothing', () => {
    const t = tree(4, 12, 1000, 0);
    const rnd = seeded(9);
    let refused = 0;
    for (let s = 0; s < 400; s++) {
      const k = BigInt(Math.floor(rnd() * 1000));
      const snap = snapshotTree(t);
      const digest = t.digest();
      try {
        t.insert(k, 1n);
      } catch (e) {
        expect((e as { code?: string }).code).toBe(BTREE_ERR.FULL);
        expect(t.digest()).toBe(digest);
        expect(Buffer.from(snapshotTree(t)).equals(Buffer.from(snap))).toBe(true);
        refused++;
      }
      expect(checkTree(t)).toEqual([]);
    }
    expect(refused).toBeGreaterThan(100);
    expect(t.freeNodes).toBeLessThan(3);
  });
});

describe('range partitioning', () => {
  it('rangeOf agrees with the bounds for every key', () => {
    for (const [range, n] of [
      [10n, 3],
      [2_000_000n, 4],
      [7n, 7],
      [1000n, 1],
    ] as const) {
      const b = rangeBounds(range, n);
      expect(b[0]).toBe(0n);
      expect(b[n]).toBe(range);
      const probe = [0n, range - 1n, ...b.slice(1, n).flatMap((x) => [x - 1n, x])];
      for (const k of probe) {
        const i = rangeOf(k, range, n);
        expect(b[i]! <= k && k < b[i + 1]!, `key ${k} in range ${i} of ${n}`).toBe(true);
      }
    }
  });

  it('C-G: get to its range, insert/delete/scan/size to g_all; optimistically insert/delete to their range', () => {
    const s = btreeService({ keys: 10, range: 100 });
    const cmds: BtreeCommand[] = [
      { op: 'get', key: 75n },
      { op: 'insert', key: 75n, value: 1n },
      { op: 'delete', key: 10 },
      { op: 'scan', from: 0n, limit: 3 },
      { op: 'size' },
    ];
    expect(cmds.map((c) => s.group(c, 4))).toEqual([3, 'all', 'all', 'all', 'all']);
    expect(cmds.map((c) => s.optimisticGroup!(c, 4))).toEqual([3, 3, 0, 'all', 'all']);
    expect(cmds.map((c) => s.group(c, 1))).toEqual([0, 0, 0, 0, 0]);
  });
});

describe('the opt-PSMR safety check', () => {
  // Order 4, range 100 over 2 workers: bounds 0, 50, 100. 33 keys loaded (0, 3, 6, 9, 12, ...), 3 to a
  // leaf: the leaf [45, 54) holds 45, 48, 51 and straddles the boundary.
  const setup = () => {
    const s = btreeService({ keys: 33, order: 4, range: 100, nodes: 200 });
    const shared = new SharedArrayBuffer(s.sharedBytes!);
    s.initShared!(shared);
    return { s, w0: s.createPartition(0, 2, shared), w1: s.createPartition(1, 2, shared), t: new BTree(shared, 0) };
  };

  it('condition 1: a leaf inside one range passes while it stays within its fill bounds', () => {
    const { s, w0, t } = setup();
    // A leaf of worker 0 that every routed key keeps inside [0, 50).
    const { leaf, lo, hi } = t.routeOf(12n);
    expect(lo !== null && hi !== null && hi <= 50n).toBe(true);
    const present = [...Array(t.count(leaf)).keys()].map((j) => t.key(leaf, j));
    const absent = [...Array(Number(hi! - lo!)).keys()].map((j) => lo! + BigInt(j)).filter((k) => !present.includes(k));
    expect(t.count(leaf)).toBe(3);
    expect(s.check!(w0, { op: 'insert', key: absent[0]! , value: 1n }, 0, 2)).toBe(true);
    s.execute(w0, { op: 'insert', key: absent[0]!, value: 1n });
    // Full now (order 4): another absent key would split it; an overwrite would not; a delete of an absent key neither.
    expect(checkConditions(t, 'insert', absent[1]!, 0, w0.bounds)).toEqual([false, true, true]);
    expect(s.check!(w0, { op: 'insert', key: absent[1]!, value: 1n }, 0, 2)).toBe(false);
    expect(s.check!(w0, { op: 'insert', key: present[0]!, value: 9n }, 0, 2)).toBe(true);
    expect(s.check!(w0, { op: 'delete', key: absent[1]! }, 0, 2)).toBe(true);
    // Down to the minimum (2): deleting a present key would merge or borrow.
    s.execute(w0, { op: 'delete', key: present[0]! });
    s.execute(w0, { op: 'delete', key: present[1]! });
    expect(t.count(leaf)).toBe(2);
    expect(checkConditions(t, 'delete', present[2]!, 0, w0.bounds)).toEqual([false, true, true]);
    expect(s.check!(w0, { op: 'delete', key: absent[1]! }, 0, 2)).toBe(true);
    expect(checkTree(t)).toEqual([]);
  });

  it('conditions 2 and 3: a leaf that keys of both ranges reach is refused on both sides', () => {
    const { s, w0, w1, t } = setup();
    const { leaf, lo, hi } = t.routeOf(50n);
    // The fixture: the leaf holding 50 straddles the boundary, and has room for an insert.
    expect(lo! < 50n && hi! > 50n).toBe(true);
    expect(t.count(leaf)).toBeLessThan(4);
    const k0 = 49n; // worker 0's key, its leaf reached by worker 1's key 50 too
    expect(t.leafOf(k0)).toBe(leaf);
    expect(t.get(k0)).toBe(null);
    // Condition 1 and worker 0's missing left neighbour hold; only condition 3 refuses. A check that left
    // condition 3 out would let worker 0 write the leaf while worker 1 reads or writes it (key 50).
    expect(checkConditions(t, 'insert', k0, 0, w0.bounds)).toEqual([true, true, false]);
    expect(s.check!(w0, { op: 'insert', key: k0, value: 1n }, 0, 2)).toBe(false);
    // Worker 1's side: condition 2 refuses.
    expect(t.get(50n)).toBe(null);
    expect(checkConditions(t, 'insert', 50n, 1, w1.bounds)).toEqual([true, false, true]);
    expect(s.check!(w1, { op: 'insert', key: 50n, value: 1n }, 1, 2)).toBe(false);
    // A delete there is refused alike, even one that never restructures.
    expect(s.check!(w1, { op: 'delete', key: 51n }, 1, 2)).toBe(false);
    // One worker: nobody else reaches the leaf.
    const one = s.createPartition(0, 1, t.shared);
    expect(s.check!(one, { op: 'insert', key: k0, value: 1n }, 0, 1)).toBe(true);
  });

  it('β1 and β2 come from the ancestors when α is its parent first or last child', () => {
    // 3 levels; a leaf that is the first child of its parent but not the first leaf: its parent has no
    // separator below it, the grandparent does.
    const t = tree(4, 400, 1000, 200, 0.75);
    expect(t.height).toBeGreaterThanOrEqual(4);
    let checked = 0;
    for (let leaf = t.firstLeaf; leaf !== -1; leaf = t.next(leaf)) {
      const k = t.key(leaf, 0);
      const { lo, hi } = t.routeOf(k);
      // Every key in [lo, hi) reaches this leaf and none just outside does.
      if (lo !== null) {
        expect(t.leafOf(lo)).toBe(leaf);
        expect(t.leafOf(lo - 1n)).not.toBe(leaf);
      }
      if (hi !== null) {
        expect(t.leafOf(hi - 1n)).toBe(leaf);
        expect(t.leafOf(hi)).not.toBe(leaf);
      }
      checked++;
    }
    expect(checked).toBeGreaterThan(50);
    // Leftmost leaf: unbounded below, so worker 1 of 2 could never pass there; worker 0 needs only hi.
    expect(t.routeOf(0n).lo).toBe(null);
  });

  it('a tree that is one leaf is reached by every range', () => {
    const s = btreeService({ keys: 2, order: 4, range: 100 });
    const shared = new SharedArrayBuffer(s.sharedBytes!);
    s.initShared!(shared);
    const w0 = s.createPartition(0, 2, shared);
    const w1 = s.createPartition(1, 2, shared);
    expect(checkConditions(w0.tree, 'insert', 10n, 0, w0.bounds)).toEqual([true, true, false]);
    expect(checkConditions(w1.tree, 'insert', 90n, 1, w1.bounds)).toEqual([true, false, true]);
    expect(s.check!(w0, { op: 'get', key: 10n }, 0, 2)).toBe(true);
    expect(s.check!(w0, { op: 'size' }, 0, 2)).toBe(false);
    expect(s.check!(w0, { op: 'scan', from: 0n, limit: 2 }, 0, 2)).toBe(false);
  });
});

describe('digest, snapshot and restore', () => {
  const ops = (seed: number, n: number, range: number): BtreeCommand[] => {
    const rnd = seeded(seed);
    return Array.from({ length: n }, (_, i): BtreeCommand => {
      const key = BigInt(Math.floor(rnd() * range));
      const r = rnd();
      return r < 0.5 ? { op: 'insert', key, value: BigInt(i) } : r < 0.85 ? { op: 'delete', key } : { op: 'get', key };
    });
  };

  it('the same commands give the same digest and bytes; the O(1) digest equals a full recompute; workers add up', () => {
    const s = btreeService({ keys: 300, order: 6, range: 1000, nodes: 500 });
    const make = () => {
      const shared = new SharedArrayBuffer(s.sharedBytes!);
      s.initShared!(shared);
      return shared;
    };
    const a = make();
    const b = make();
    const c = make();
    const sa = s.createPartition(0, 3, a);
    const sb = s.createPartition(0, 3, b);
    const byWorker = [0, 1, 2].map((i) => s.createPartition(i, 3, c));
    const list = ops(5, 3000, 1000);
    list.forEach((cmd, i) => {
      const ra = s.execute(sa, cmd);
      expect(s.execute(sb, cmd)).toEqual(ra);
      // The same commands run by different workers (each counting into its own slot).
      expect(s.execute(byWorker[i % 3]!, cmd)).toEqual(ra);
    });
    expect(s.digest(sa)).toBe(s.digest(sb));
    expect(Buffer.from(s.snapshot!(sa)).equals(Buffer.from(s.snapshot!(sb)))).toBe(true);
    expect(s.digest(byWorker[2]!)).toBe(s.digest(sa));
    expect(s.digest(sa)).toBe(sa.tree.digestFull());
    // Another command sequence, another digest.
    s.execute(sb, { op: 'insert', key: 1n, value: -5n });
    expect(s.digest(sb)).not.toBe(s.digest(sa));
  });

  it('a restored snapshot has the same digest and behaves the same', () => {
    const s = btreeService({ keys: 500, order: 5, range: 2000, nodes: 1000 });
    const shared = new SharedArrayBuffer(s.sharedBytes!);
    s.initShared!(shared);
    const st = s.createPartition(1, 2, shared);
    for (const c of ops(6, 800, 2000)) s.execute(st, c);
    const bytes = s.snapshot!(st);
    expect(bytes.byteLength).toBeLessThan(s.sharedBytes!); // only the nodes ever used
    const back = s.restore!(bytes, 0, 1);
    expect(s.digest(back)).toBe(s.digest(st));
    expect(checkTree(back.tree)).toEqual([]);
    for (const c of ops(7, 800, 2000)) expect(s.execute(back, c)).toEqual(s.execute(st, c));
    expect(s.digest(back)).toBe(s.digest(st));
    // Into a replica's own shared memory, as a resuming replica would.
    const mem = new SharedArrayBuffer(s.sharedBytes!);
    s.restoreShared!(mem, s.snapshot!(st));
    expect(s.digest(s.createPartition(0, 2, mem))).toBe(s.digest(st));
  });

  it('a bad snapshot, or one of another shape, is refused with ERR_PSMR_BAD_SNAPSHOT', () => {
    const s = btreeService({ keys: 50, order: 5, range: 200, nodes: 100 });
    const other = btreeService({ keys: 50, order: 6, range: 200, nodes: 100 });
    const shared = new SharedArrayBuffer(other.sharedBytes!);
    other.initShared!(shared);
    const good = other.snapshot!(other.createPartition(0, 1, shared));
    const mem = new SharedArrayBuffer(s.sharedBytes!);
    const code = { code: ERR.PSMR_BAD_SNAPSHOT };
    expect(() => s.restoreShared!(mem, good)).toThrow(expect.objectContaining(code));
    expect(() => s.restoreShared!(mem, new Uint8Array(10))).toThrow(expect.objectContaining(code));
    expect(() => other.restoreShared!(shared, good.subarray(0, good.byteLength - 8))).toThrow(expect.objectContaining(code));
    expect(() => restoreTree(mem, new Uint8Array(8000), { order: 5, capacity: 100, range: 200n })).toThrow(expect.objectContaining(code));
  });
});

describe('the service boundary', () => {
  const s = btreeService({ keys: 0, range: 1000 });
  const roundtrip = (c: BtreeCommand): BtreeCommand => {
    const w = new ByteWriter(64);
    s.writeCommand(w, c);
    const b = w.take();
    return s.readCommand(new ByteReader(b, 0, b.length));
  };
  const replyRoundtrip = (c: BtreeCommand, r: BtreeReply): BtreeReply => {
    const w = new ByteWriter(64);
    s.writeReply(w, r, c);
    const b = w.take();
    return s.readReply(new ByteReader(b, 0, b.length), c);
  };

  it('commands and replies cross the wire as 8-byte integers', () => {
    expect(roundtrip({ op: 'insert', key: 999, value: -(1n << 63n) })).toEqual({ op: 'insert', key: 999n, value: -(1n << 63n) });
    expect(roundtrip({ op: 'get', key: 0n })).toEqual({ op: 'get', key: 0n });
    expect(roundtrip({ op: 'delete', key: 5n })).toEqual({ op: 'delete', key: 5n });
    expect(roundtrip({ op: 'scan', from: 3n, limit: 256 })).toEqual({ op: 'scan', from: 3n, limit: 256 });
    expect(roundtrip({ op: 'size' })).toEqual({ op: 'size' });
    expect(replyRoundtrip({ op: 'get', key: 1n }, { value: (1n << 63n) - 1n })).toEqual({ value: (1n << 63n) - 1n });
    expect(replyRoundtrip({ op: 'get', key: 1n }, { value: null })).toEqual({ value: null });
    expect(replyRoundtrip({ op: 'insert', key: 1n, value: 1n }, { inserted: false })).toEqual({ inserted: false });
    expect(replyRoundtrip({ op: 'delete', key: 1n }, { deleted: true })).toEqual({ deleted: true });
    expect(replyRoundtrip({ op: 'scan', from: 1n, limit: 2 }, { entries: [[1n, 2n], [3n, -4n]] })).toEqual({ entries: [[1n, 2n], [3n, -4n]] });
    expect(replyRoundtrip({ op: 'size' }, { size: 12345 })).toEqual({ size: 12345 });
  });

  it('bad keys, values, limits and operations are typed errors, at the client and at a replica', () => {
    const w = new ByteWriter(64);
    const refuses = (c: unknown, code: string): void => expect(() => s.writeCommand(w, c as BtreeCommand)).toThrow(expect.objectContaining({ code }));
    refuses({ op: 'get', key: 1000n }, BTREE_ERR.BAD_KEY);
    refuses({ op: 'get', key: -1 }, BTREE_ERR.BAD_KEY);
    refuses({ op: 'get', key: 1.5 }, BTREE_ERR.BAD_KEY);
    refuses({ op: 'get', key: '7' }, BTREE_ERR.BAD_KEY);
    refuses({ op: 'insert', key: 1n, value: 1n << 63n }, BTREE_ERR.BAD_VALUE);
    refuses({ op: 'insert', key: 1n, value: null }, BTREE_ERR.BAD_VALUE);
    refuses({ op: 'scan', from: 1n, limit: 0 }, BTREE_ERR.BAD_LIMIT);
    refuses({ op: 'scan', from: 1n, limit: 257 }, BTREE_ERR.BAD_LIMIT);
    refuses({ op: 'drop' }, BTREE_ERR.UNKNOWN_OP);
    const raw = (bytes: number[]): unknown => {
      try {
        return s.readCommand(new ByteReader(Buffer.from(bytes), 0, bytes.length));
      } catch (e) {
        return (e as { code?: string }).code;
      }
    };
    const key = (k: bigint): number[] => [...Buffer.from(new BigInt64Array([k]).buffer)];
    expect(raw([1, ...key(1000n)])).toBe(BTREE_ERR.BAD_KEY);
    expect(raw([1, ...key(-1n)])).toBe(BTREE_ERR.BAD_KEY);
    expect(raw([4, ...key(1n), 0, 0])).toBe(BTREE_ERR.BAD_LIMIT);
    expect(raw([9])).toBe(BTREE_ERR.UNKNOWN_OP);
    expect(raw([1, 1, 2])).toBe(ERR.WIRE);
    expect(raw([5, 0])).toBe(ERR.WIRE);
  });

  it('params: defaults pinned, bad fields named; the cluster file carries them; loadService configures', async () => {
    expect(btreeParams(undefined)).toMatchObject({ keys: 1_000_000, order: 64, fill: 0.75, range: 2_000_000 });
    const field = (raw: unknown): string | undefined => {
      try {
        btreeParams(raw);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as ConfigError).field;
      }
      return undefined;
    };
    expect(field({ order: 3 })).toBe('services.btree.order');
    expect(field({ fill: 0.5 })).toBe('services.btree.fill');
    expect(field({ keys: -1 })).toBe('services.btree.keys');
    expect(field({ keys: 10, range: 5 })).toBe('services.btree.range');
    expect(field({ keys: 1000, order: 4, nodes: 10 })).toBe('services.btree.nodes');
    expect(field({ ordr: 8 })).toBe('services.btree.ordr');
    expect(field([])).toBe('services.btree');
    const nodes = [{ id: 1, host: '127.0.0.1', port: 7001 }];
    const rings = [{ id: 0, acceptors: [1] }];
    const cluster = parseCluster({ nodes, rings, services: { btree: { keys: 100, order: 8 } } });
    expect(cluster.services.btree).toEqual({ keys: 100, order: 8 });
    expect(parseCluster({ nodes, rings }).services).toEqual({});
    expect(() => parseCluster({ nodes, rings, services: { btree: 3 } })).toThrow(expect.objectContaining({ field: 'services.btree' }));
    expect(() => parseCluster({ nodes, rings, services: [] })).toThrow(expect.objectContaining({ field: 'services' }));
    const svc = await loadService('btree', cluster.services.btree);
    expect((svc as unknown as { params: { keys: number; order: number } }).params).toMatchObject({ keys: 100, order: 8 });
    expect(svc.sharedBytes).toBe(treeBytes(8, btreeParams({ keys: 100, order: 8 }).nodes));
    expect((await loadService('btree')).name).toBe('btree');
    await expect(loadService('btree', { order: 2 })).rejects.toMatchObject({ field: 'services.btree.order' });
    await expect(loadService('kv', { keys: 1 })).rejects.toMatchObject({ code: ERR.CONFIG, field: 'services.kv' });
  });
});
