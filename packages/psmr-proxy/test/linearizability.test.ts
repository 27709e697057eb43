import { describe, expect, it } from 'vitest';
import { Prng } from '@ringcast/ring-paxos';
import { checkLinearizable, type HistoryOp } from '../src/check/linearizability.js';
import { checkKvHistory, kvKeyModel, kvModel, type KvCheckCommand, type KvCheckReply } from '../src/check/kv-model.js';

type Op = HistoryOp<KvCheckCommand, KvCheckReply>;

function op(client: number, call: number, ret: number, command: KvCheckCommand, reply?: KvCheckReply): Op {
  return { client, call, ret, command, reply: ret === Infinity ? undefined : reply };
}
const get = (key: string): KvCheckCommand => ({ op: 'get', key });
const put = (key: string, value: string): KvCheckCommand => ({ op: 'put', key, value });
const del = (key: string): KvCheckCommand => ({ op: 'delete', key });
const cas = (key: string, expected: string | null, value: string): KvCheckCommand => ({ op: 'cas', key, expected, value });
const OK: KvCheckReply = { ok: true };
const val = (value: string | null): KvCheckReply => ({ value });

/** Both checkers on the same history. */
function both(history: Op[]): { whole: ReturnType<typeof checkLinearizable>; perKey: ReturnType<typeof checkKvHistory> } {
  return { whole: checkLinearizable(kvModel, history), perKey: checkKvHistory(history) };
}

// ---------------------------------------------------------------------------------------------------
// Seeded generator of linearizable histories: a reference KV (a plain mutable Map, independent of the
// checker's models) applies each op atomically at a random instant inside its interval.

/** A seeded float generator in [0, 1) (the project's Prng). */
function mulberry32(seed: number): () => number {
  const g = new Prng(seed);
  return () => g.float();
}

interface GenOptions {
  clients: number;
  keys: number;
  ops: number;
  pendingRate?: number;
  errorRate?: number;
}

function referenceApply(store: Map<string, string>, c: KvCheckCommand): KvCheckReply {
  switch (c.op) {
    case 'get':
      return { value: store.has(c.key) ? store.get(c.key)! : null };
    case 'put':
      store.set(c.key, c.value);
      return { ok: true };
    case 'delete':
      return { deleted: store.delete(c.key) };
    case 'cas': {
      const cur = store.has(c.key) ? store.get(c.key)! : null;
      if (cur !== c.expected) return { swapped: false };
      store.set(c.key, c.value);
      return { swapped: true };
    }
    case 'mget':
      return { values: c.keys.map((k) => (store.has(k) ? store.get(k)! : null)) };
    case 'mput':
      for (const [k, v] of c.entries) store.set(k, v);
      return { ok: true };
    case 'scan': {
      const keys = [...store.keys()].filter((k) => k.startsWith(c.prefix)).sort();
      return { entries: keys.slice(0, c.limit).map((k): [string, string] => [k, store.get(k)!]) };
    }
    case 'size':
      return { size: store.size };
  }
}

function generateHistory(seed: number, o: GenOptions): Op[] {
  const rnd = mulberry32(seed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const width = String(o.keys - 1).length;
  const keyNames = Array.from({ length: o.keys }, (_, i) => 'k' + String(i).padStart(width, '0'));
  const key = (): string => keyNames[int(keyNames.length)]!;
  const value = (): string => 'v' + int(5);
  const command = (): KvCheckCommand => {
    const r = rnd();
    if (r < 0.3) return get(key());
    if (r < 0.5) return put(key(), value());
    if (r < 0.58) return del(key());
    if (r < 0.7) return cas(key(), rnd() < 0.25 ? null : value(), value());
    if (r < 0.8) return { op: 'mget', keys: [key(), key(), key()].slice(0, 1 + int(3)) };
    if (r < 0.88) return { op: 'mput', entries: [[key(), value()], [key(), value()]].slice(0, 1 + int(2)) as Array<[string, string]> };
    if (r < 0.95) return { op: 'scan', prefix: rnd() < 0.5 ? '' : key().slice(0, -1), limit: 1 + int(4) };
    return { op: 'size' };
  };

  interface Gen {
    client: number;
    call: number;
    ret: number;
    lin: number | undefined; // undefined = never applied
    command: KvCheckCommand;
    kind: 'ok' | 'pending' | 'error';
    reply?: KvCheckReply;
  }
  const gens: Gen[] = [];
  const cursor = new Array<number>(o.clients).fill(0);
  for (let i = 0; i < o.ops; i++) {
    const client = int(o.clients);
    const call = cursor[client]! + rnd() * 2;
    const dur = 0.2 + rnd() * 6;
    const r = rnd();
    const kind: Gen['kind'] = r < (o.pendingRate ?? 0) ? 'pending' : r < (o.pendingRate ?? 0) + (o.errorRate ?? 0) ? 'error' : 'ok';
    const lin = kind === 'error' || (kind === 'pending' && rnd() < 0.5) ? undefined : call + rnd() * dur;
    gens.push({ client, call, ret: kind === 'pending' ? Infinity : call + dur, lin, command: command(), kind });
    cursor[client] = call + dur; // a client whose op got no reply times out and carries on
  }
  const store = new Map<string, string>();
  for (const g of [...gens].filter((g) => g.lin !== undefined).sort((a, b) => a.lin! - b.lin!)) {
    g.reply = referenceApply(store, g.command);
  }
  return gens.map((g) => ({
    client: g.client,
    call: g.call,
    ret: g.ret,
    command: g.command,
    reply: g.kind === 'pending' ? undefined : g.kind === 'error' ? { error: 'busy' } : g.reply!,
  }));
}

// ---------------------------------------------------------------------------------------------------

describe('checkLinearizable / checkKvHistory', () => {
  it('1. accepts a sequential valid history', () => {
    const h = [
      op(0, 0, 1, put('a', '1'), OK),
      op(0, 2, 3, get('a'), val('1')),
      op(0, 4, 5, cas('a', '1', '2'), { swapped: true }),
      op(0, 6, 7, get('a'), val('2')),
      op(0, 8, 9, del('a'), { deleted: true }),
      op(0, 10, 11, get('a'), val(null)),
    ];
    expect(checkLinearizable(kvModel, h)).toEqual({ ok: true, ops: 6 });
    expect(checkLinearizable(kvKeyModel, h)).toEqual({ ok: true, ops: 6 });
    expect(checkKvHistory(h)).toEqual({ ok: true, ops: 6, keys: 1 });
    // The same history with the last read wrong must be rejected.
    const bad = [...h.slice(0, 5), op(0, 10, 11, get('a'), val('2'))];
    expect(checkLinearizable(kvModel, bad).ok).toBe(false);
    expect(checkKvHistory(bad).ok).toBe(false);
  });

  it('2. accepts concurrent ops where only one order works', () => {
    // cas x->y is invoked before cas null->x, and both overlap: only null->x, x->y, get works.
    const h = [
      op(0, 0, 10, cas('a', 'x', 'y'), { swapped: true }),
      op(1, 1, 11, cas('a', null, 'x'), { swapped: true }),
      op(2, 2, 12, get('a'), val('x')),
      op(2, 20, 21, get('a'), val('y')),
    ];
    const { whole, perKey } = both(h);
    expect(whole.ok).toBe(true);
    expect(perKey.ok).toBe(true);

    // Concurrent puts 1 and 2; reads 2, then 1, then 2 need three writes: not linearizable.
    const puts = [op(0, 0, 10, put('a', '1'), OK), op(1, 1, 11, put('a', '2'), OK)];
    expect(checkLinearizable(kvModel, [...puts, op(2, 2, 3, get('a'), val('2')), op(2, 4, 5, get('a'), val('1'))]).ok).toBe(true);
    const r = checkLinearizable(kvModel, [
      ...puts,
      op(2, 2, 3, get('a'), val('2')),
      op(2, 4, 5, get('a'), val('1')),
      op(2, 20, 21, get('a'), val('2')),
    ]);
    expect(r.ok).toBe(false);
  });

  it('3. rejects a stale read after a completed write', () => {
    const h = [op(0, 0, 1, put('a', '1'), OK), op(1, 2, 3, get('a'), val(null))];
    const { whole, perKey } = both(h);
    expect(whole.ok).toBe(false);
    expect(perKey.ok).toBe(false);
    expect(perKey.failedKey).toBe('a');
    if (whole.ok !== false) throw new Error('unreachable');
    // The reason names the longest partial linearization and the op that could not be placed.
    expect(whole.reason).toMatch(/places 1 of 2 ops/);
    expect(whole.reason).toContain('"op":"get"');
    // Overlapping, the same read is fine (it may be linearized before the put).
    expect(checkLinearizable(kvModel, [op(0, 0, 3, put('a', '1'), OK), op(1, 2, 4, get('a'), val(null))]).ok).toBe(true);
    // Touching intervals (ret == call) count as concurrent.
    expect(checkLinearizable(kvModel, [op(0, 0, 2, put('a', '1'), OK), op(1, 2, 4, get('a'), val(null))]).ok).toBe(true);
  });

  it('4. rejects a cas that failed although the value equalled expected and nothing was concurrent', () => {
    const h = [
      op(0, 0, 1, put('a', '1'), OK),
      op(0, 2, 3, cas('a', '1', '2'), { swapped: false }),
      op(0, 4, 5, get('a'), val('1')),
    ];
    const { whole, perKey } = both(h);
    expect(whole.ok).toBe(false);
    expect(perKey.ok).toBe(false);
    // With a concurrent put of 3, the failed cas is explained.
    const withConcurrent = [...h, op(1, 1.5, 4.5, put('a', '3'), OK), op(1, 10, 11, put('a', '1'), OK)];
    withConcurrent[2] = op(0, 4, 5, get('a'), val('3'));
    expect(checkLinearizable(kvModel, withConcurrent).ok).toBe(true);
  });

  it('5. rejects a lost update: two non-overlapping cas from null both succeed', () => {
    const h = [op(0, 0, 1, cas('a', null, '1'), { swapped: true }), op(1, 2, 3, cas('a', null, '2'), { swapped: true })];
    const { whole, perKey } = both(h);
    expect(whole.ok).toBe(false);
    expect(perKey.ok).toBe(false);
    // Even overlapping they cannot both succeed.
    expect(checkLinearizable(kvModel, [op(0, 0, 5, cas('a', null, '1'), { swapped: true }), op(1, 1, 6, cas('a', null, '2'), { swapped: true })]).ok).toBe(false);
    // One succeeding and one failing is fine.
    expect(checkLinearizable(kvModel, [h[0]!, op(1, 2, 3, cas('a', null, '2'), { swapped: false })]).ok).toBe(true);
  });

  it('6. a pending op may explain a later read, but not a read before its call', () => {
    const pendingPut = op(0, 0, Infinity, put('a', '1'));
    expect(pendingPut.reply).toBeUndefined();
    const explains = [pendingPut, op(1, 5, 6, get('a'), val('1'))];
    expect(checkLinearizable(kvModel, explains)).toEqual({ ok: true, ops: 2 });
    expect(checkKvHistory(explains).ok).toBe(true);
    // A pending op may also never take effect.
    expect(checkLinearizable(kvModel, [pendingPut, op(1, 5, 6, get('a'), val(null)), op(1, 7, 8, get('a'), val(null))]).ok).toBe(true);
    // ...or take effect late: null, then 1.
    expect(checkLinearizable(kvModel, [pendingPut, op(1, 5, 6, get('a'), val(null)), op(1, 7, 8, get('a'), val('1'))]).ok).toBe(true);
    // But once seen it cannot be undone: 1, then null.
    expect(checkLinearizable(kvModel, [pendingPut, op(1, 5, 6, get('a'), val('1')), op(1, 7, 8, get('a'), val(null))]).ok).toBe(false);

    const tooEarly = [op(1, 5, 6, get('a'), val('1')), op(0, 10, Infinity, put('a', '1'))];
    const { whole, perKey } = both(tooEarly);
    expect(whole.ok).toBe(false);
    expect(perKey.ok).toBe(false);
  });

  it('7. multi-key: mput is atomic for kvModel; per-key projection is only a necessary condition', () => {
    const mput: KvCheckCommand = { op: 'mput', entries: [['a', '1'], ['b', '1']] };
    const mget: KvCheckCommand = { op: 'mget', keys: ['a', 'b'] };
    // mget after mput returned: b must be 1.
    const after = [op(0, 0, 1, mput, OK), op(1, 2, 3, mget, { values: ['1', null] })];
    const perKey = checkKvHistory(after);
    expect(perKey.ok).toBe(false);
    expect(perKey.failedKey).toBe('b');
    expect(perKey.keys).toBe(2);
    expect(checkLinearizable(kvModel, after).ok).toBe(false);
    expect(checkKvHistory([after[0]!, op(1, 2, 3, mget, { values: ['1', '1'] })]).ok).toBe(true);
    expect(checkLinearizable(kvModel, [after[0]!, op(1, 2, 3, mget, { values: ['1', '1'] })]).ok).toBe(true);

    // mget concurrent with the mput: [1, null] is a torn read. The whole model (mput atomic) rejects it;
    // the per-key projection cannot see it (a before mget, b after) and accepts it: projection is weaker.
    const torn = [op(0, 0, 10, mput, OK), op(1, 1, 3, mget, { values: ['1', null] })];
    expect(checkLinearizable(kvModel, torn).ok).toBe(false);
    expect(checkKvHistory(torn).ok).toBe(true);
    // Both before or both after are fine for both checkers.
    for (const values of [[null, null], ['1', '1']]) {
      const h = [op(0, 0, 10, mput, OK), op(1, 1, 3, mget, { values })];
      expect(checkLinearizable(kvModel, h).ok).toBe(true);
      expect(checkKvHistory(h).ok).toBe(true);
    }
  });

  it('7b. scan and size follow the whole model; projection checks scan values and reply shape', () => {
    const base = [
      op(0, 0, 1, put('b', '2'), OK),
      op(0, 2, 3, put('a', '1'), OK),
      op(0, 4, 5, put('c', '3'), OK),
      op(0, 6, 7, put('x', '9'), OK),
    ];
    const good = [
      ...base,
      op(1, 8, 9, { op: 'scan', prefix: '', limit: 2 }, { entries: [['a', '1'], ['b', '2']] }),
      op(1, 10, 11, { op: 'size' }, { size: 4 }),
      op(1, 12, 13, { op: 'scan', prefix: 'x', limit: 5 }, { entries: [['x', '9']] }),
    ];
    expect(checkLinearizable(kvModel, good).ok).toBe(true);
    expect(checkKvHistory(good).ok).toBe(true);
    // A scan that misses 'a' is wrong for the whole model; projection does not check absence.
    const missing = [...base, op(1, 8, 9, { op: 'scan', prefix: '', limit: 2 }, { entries: [['b', '2'], ['c', '3']] })];
    expect(checkLinearizable(kvModel, missing).ok).toBe(false);
    expect(checkKvHistory(missing).ok).toBe(true);
    // A wrong scan value is caught by both.
    const wrongValue = [...base, op(1, 8, 9, { op: 'scan', prefix: '', limit: 2 }, { entries: [['a', '1'], ['b', '7']] })];
    expect(checkLinearizable(kvModel, wrongValue).ok).toBe(false);
    expect(checkKvHistory(wrongValue)).toMatchObject({ ok: false, failedKey: 'b' });
    // Wrong size.
    expect(checkLinearizable(kvModel, [...base, op(1, 8, 9, { op: 'size' }, { size: 3 })]).ok).toBe(false);
    // Malformed replies fail the projection outright.
    expect(checkKvHistory([op(0, 0, 1, { op: 'scan', prefix: '', limit: 2 }, { entries: [['b', '2'], ['a', '1']] })]).ok).toBe(false);
    expect(checkKvHistory([op(0, 0, 1, { op: 'scan', prefix: 'a', limit: 2 }, { entries: [['b', '2']] })]).ok).toBe(false);
    expect(checkKvHistory([op(0, 0, 1, { op: 'scan', prefix: '', limit: 1 }, { entries: [['a', '1'], ['b', '2']] })]).ok).toBe(false);
    expect(checkKvHistory([op(0, 0, 1, { op: 'mget', keys: ['a', 'b'] }, { values: [null] })]).ok).toBe(false);
  });

  it('8. random linearizable histories pass; one corrupted read fails', () => {
    let mutated = 0;
    for (let seed = 1; seed <= 50; seed++) {
      const h = generateHistory(seed, { clients: 3, keys: 3, ops: 300, pendingRate: 0.03, errorRate: 0.03 });
      const whole = checkLinearizable(kvModel, h);
      expect(whole, `seed ${seed}`).toEqual({ ok: true, ops: 300 });
      const perKey = checkKvHistory(h);
      expect(perKey.ok, `seed ${seed}`).toBe(true);

      const idx = h.findIndex((o) => o.command.op === 'get' && o.reply !== undefined && 'value' in o.reply);
      expect(idx).toBeGreaterThanOrEqual(0);
      const bad = h.slice();
      bad[idx] = { ...h[idx]!, reply: { value: 'never-written' } };
      expect(checkLinearizable(kvModel, bad).ok, `seed ${seed} mutated`).toBe(false);
      const badPerKey = checkKvHistory(bad);
      expect(badPerKey.ok, `seed ${seed} mutated`).toBe(false);
      expect(badPerKey.failedKey).toBe((h[idx]!.command as { key: string }).key);
      mutated++;
    }
    expect(mutated).toBe(50);
  });

  it('9. error replies are no-ops that match anything', () => {
    const h = [
      op(0, 0, 1, put('a', '1'), { error: 'busy' }),
      op(0, 2, 3, get('a'), val(null)),
      op(1, 4, 5, get('a'), { error: 'timeout' }),
      op(1, 6, 7, cas('a', null, 'x'), { error: 'busy' }),
      op(1, 8, 9, del('a'), { deleted: false }),
      op(1, 10, 11, { op: 'mput', entries: [['a', '1'], ['b', '2']] }, { error: 'busy' }),
      op(1, 12, 13, { op: 'size' }, { size: 0 }),
    ];
    expect(checkLinearizable(kvModel, h)).toEqual({ ok: true, ops: 7 });
    expect(checkLinearizable(kvKeyModel, h.slice(0, 5))).toEqual({ ok: true, ops: 5 });
    expect(checkKvHistory(h).ok).toBe(true);
    // The same put with a success reply makes the later read stale.
    const real = [op(0, 0, 1, put('a', '1'), OK), ...h.slice(1)];
    expect(checkLinearizable(kvModel, real).ok).toBe(false);
    expect(checkKvHistory(real).ok).toBe(false);
  });

  it('10. a tiny step budget on a hard history gives unknown', () => {
    // 12 concurrent puts, then a read of a value nobody wrote: the search must try every subset.
    const h: Op[] = [];
    for (let c = 0; c < 12; c++) h.push(op(c, c * 0.1, 100, put('a', 'v' + c), OK));
    h.push(op(99, 200, 201, get('a'), val('zzz')));
    const tiny = checkLinearizable(kvModel, h, { maxSteps: 100 });
    expect(tiny.ok).toBe('unknown');
    if (tiny.ok !== 'unknown') throw new Error('unreachable');
    expect(tiny.reason).toMatch(/budget/);
    const perKey = checkKvHistory(h, { maxSteps: 100 });
    expect(perKey).toMatchObject({ ok: 'unknown', failedKey: 'a' });
    // With the default budget the memoized search settles it.
    expect(checkLinearizable(kvModel, h).ok).toBe(false);
  });

  it('rejects malformed histories', () => {
    expect(() => checkLinearizable(kvModel, [op(0, 5, 4, get('a'), val(null))])).toThrow(RangeError);
    expect(() => checkLinearizable(kvModel, [{ client: 0, call: 0, ret: 1, command: get('a'), reply: undefined }])).toThrow(RangeError);
    expect(checkLinearizable(kvModel, [])).toEqual({ ok: true, ops: 0 });
    expect(checkKvHistory([])).toEqual({ ok: true, ops: 0, keys: 0 });
  });

  it('checks a 20k-op, 200-key random history quickly', () => {
    const h = generateHistory(4242, { clients: 16, keys: 200, ops: 20_000, pendingRate: 0.01, errorRate: 0.01 });
    const t0 = performance.now();
    const r = checkKvHistory(h);
    const ms = performance.now() - t0;
    console.log(`checkKvHistory: 20000 ops over ${r.keys} keys in ${ms.toFixed(0)} ms`);
    expect(r).toEqual({ ok: true, ops: 20_000, keys: 200 });

    // A few thousand ops on one key.
    const one = generateHistory(7, { clients: 8, keys: 1, ops: 4000, pendingRate: 0.01, errorRate: 0.01 });
    const t1 = performance.now();
    const r1 = checkKvHistory(one);
    console.log(`checkKvHistory: 4000 ops on 1 key in ${(performance.now() - t1).toFixed(0)} ms`);
    expect(r1.ok).toBe(true);
    const t2 = performance.now();
    const r2 = checkLinearizable(kvModel, one);
    console.log(`checkLinearizable(kvModel): 4000 ops on 1 key in ${(performance.now() - t2).toFixed(0)} ms`);
    expect(r2.ok).toBe(true);
  });
});
