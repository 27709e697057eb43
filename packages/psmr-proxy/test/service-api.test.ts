import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PsmrScheduler } from '../src/core/psmr-scheduler.js';
import { CommandBatchWriter, ReplyBatchReader, STATUS_OK } from '../src/protocol/wire.js';
import { ServiceError, type Service } from '../src/service.js';
import { loadService } from '../src/service-loader.js';

// The service of the README's "Embedding a client" section, verbatim: the example must keep working.
type Cmd = { op: 'add'; account: number; amount: number } | { op: 'total' };
type Reply = { balance: number } | { total: number };
class Part { balances = new Map<number, number>(); }

export const bank: Service<Cmd, Reply, Part, number> = {
  name: 'bank',
  state: 'partitioned',
  group: (c, n) => (c.op === 'add' ? c.account % n : 'all'),    // C-G
  kind: (c) => c.op,
  writeCommand(w, c) {
    if (c.op === 'add') {
      if (!Number.isSafeInteger(c.amount)) throw new ServiceError('ERR_BANK_AMOUNT', 'amount must be an integer');
      w.u8(1); w.u32(c.account); w.f64(c.amount);
    } else w.u8(2);
  },
  readCommand: (r) => (r.u8() === 1 ? { op: 'add', account: r.u32(), amount: r.f64() } : { op: 'total' }),
  writeReply: (w, rep) => w.f64('balance' in rep ? rep.balance : rep.total),
  readReply: (r, c) => (c.op === 'add' ? { balance: r.f64() } : { total: r.f64() }),
  createPartition: () => new Part(),
  execute(s, c) {                      // single-partition commands (and everything when there is one partition)
    if (c.op === 'total') return { total: [...s.balances.values()].reduce((a, b) => a + b, 0) };
    const b = (s.balances.get(c.account) ?? 0) + c.amount;
    s.balances.set(c.account, b);
    return { balance: b };
  },
  executePart: (s) => [...s.balances.values()].reduce((a, b) => a + b, 0), // g_all: each partition's part
  combine: (_c, parts) => ({ total: parts.reduce((a, b) => a + b, 0) }),   // at worker 0
  digest: (s) => JSON.stringify([...s.balances].sort()),
  // Optional: checkpoints (a replica started with --from-replica restores a live one's state).
  snapshot: (s) => Buffer.from(JSON.stringify([...s.balances])),
  restore(bytes) {
    const p = new Part();
    for (const [k, v] of JSON.parse(Buffer.from(bytes).toString()) as Array<[number, number]>) p.balances.set(k, v);
    return p;
  },
};

function run(ex: PsmrScheduler<Cmd, Reply, Part>, cmds: Cmd[], firstSeq: number): Reply[] {
  const sent: Buffer[] = [];
  (ex as unknown as { o: { send: unknown } }).o.send = (_h: string, _p: number, d: Uint8Array) => sent.push(Buffer.from(d));
  const w = new CommandBatchWriter();
  w.begin({ clientId: 1, replyHost: '127.0.0.1', replyPort: 1, floor: 0 });
  cmds.forEach((c, i) => {
    w.beginCommand(firstSeq + i);
    bank.writeCommand(w.w, c);
    w.endCommand();
  });
  const data = w.finish();
  const decode = (): Reply[] => {
    const out: Reply[] = [];
    for (const d of sent) {
      const rd = new ReplyBatchReader(d);
      while (rd.next()) {
        expect(rd.status).toBe(STATUS_OK);
        out.push(bank.readReply(rd.r, cmds[rd.seq - firstSeq]!));
      }
    }
    return out;
  };
  ex.runOwn(data);
  return decode();
}

describe('Service API (the README example)', () => {
  it('a custom partitioned service runs single-partition and g_all commands', async () => {
    const one = new PsmrScheduler<Cmd, Reply, Part>({ service: bank, worker: 0, workers: 1, state: bank.createPartition(0, 1), send: () => {} });
    expect(run(one, [{ op: 'add', account: 7, amount: 5 }, { op: 'add', account: 8, amount: 2 }, { op: 'add', account: 7, amount: 1 }, { op: 'total' }], 1)).toEqual([
      { balance: 5 },
      { balance: 2 },
      { balance: 6 },
      { total: 8 },
    ]);
    expect(() => bank.writeCommand(new CommandBatchWriter().w, { op: 'add', account: 1, amount: 0.5 })).toThrow(ServiceError);
    // Its checkpoint methods give back a partition with the same digest.
    const st = (one as unknown as { o: { state: Part } }).o.state;
    expect(bank.digest(bank.restore!(bank.snapshot!(st), 0, 1))).toBe(bank.digest(st));
    expect(st.balances.size).toBe(2);
  });

  it('loads a service from a module path, as `ringcast replica --service ./bank.js` does', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ringcast-svc-'));
    try {
      const file = join(dir, 'bank.mjs');
      writeFileSync(
        file,
        `export default { name: 'bank', state: 'partitioned', group: (c, n) => (c.op === 'add' ? c.account % n : 'all'), kind: (c) => c.op,
          writeCommand() {}, readCommand() { return { op: 'total' }; }, writeReply() {}, readReply() { return {}; },
          createPartition: () => ({}), execute: () => ({}), digest: () => '' };`,
      );
      const s = await loadService(file);
      expect(s.name).toBe('bank');
      expect(s.group({ op: 'add', account: 5 }, 2)).toBe(1);
      await expect(loadService(join(dir, 'missing.mjs'))).rejects.toMatchObject({ code: 'ERR_RINGCAST_CONFIG', field: 'service' });
      writeFileSync(join(dir, 'bad.mjs'), 'export default { name: "x" };');
      await expect(loadService(join(dir, 'bad.mjs'))).rejects.toThrow(/missing group\(\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('shared-state services', () => {
  it('a g_all command runs on worker 0 alone while the others wait; single-partition commands run at once', async () => {
    const { SharedBarrier } = await import('../src/barrier.js');
    type C2 = { op: 'inc'; cell: number } | { op: 'sum' };
    const counters: Service<C2, { value: number }, Int32Array> = {
      name: 'counters',
      state: 'shared',
      sharedBytes: 64,
      initShared: (m) => new Int32Array(m).fill(100),
      group: (c, n) => (c.op === 'inc' ? c.cell % n : 'all'),
      kind: (c) => c.op,
      writeCommand: (w, c) => (c.op === 'inc' ? (w.u8(1), w.u8(c.cell)) : w.u8(2)),
      readCommand: (r) => (r.u8() === 1 ? { op: 'inc', cell: r.u8() } : { op: 'sum' }),
      writeReply: (w, r) => w.f64(r.value),
      readReply: (r) => ({ value: r.f64() }),
      createPartition: (_i, _n, m) => new Int32Array(m!),
      execute: (s, c) => (c.op === 'inc' ? { value: ++s[c.cell]! } : { value: s.reduce((a, b) => a + b, 0) }),
      digest: (s) => s.join(','),
    };
    const mem = new SharedArrayBuffer(64);
    counters.initShared!(mem);
    const sab = SharedBarrier.allocate(2, 1024);
    const sent: Array<{ w: number; d: Buffer }> = [];
    const exs = [0, 1].map(
      (w) =>
        new PsmrScheduler<C2, { value: number }, Int32Array>({
          service: counters,
          worker: w,
          workers: 2,
          state: counters.createPartition(w, 2, mem),
          barrier: new SharedBarrier(sab, 2, w, 1024),
          send: (_h, _p, d) => sent.push({ w, d: Buffer.from(d) }),
        }),
    );
    const mk = (cmds: C2[], first: number): Buffer => {
      const w = new CommandBatchWriter();
      w.begin({ clientId: 1, replyHost: '127.0.0.1', replyPort: 1, floor: 0 });
      cmds.forEach((c, i) => {
        w.beginCommand(first + i);
        counters.writeCommand(w.w, c);
        w.endCommand();
      });
      return w.finish();
    };
    exs[0]!.runOwn(mk([{ op: 'inc', cell: 0 }, { op: 'inc', cell: 2 }], 1));
    exs[1]!.runOwn(mk([{ op: 'inc', cell: 1 }], 3));
    await Promise.all(exs.map((e) => e.runAll(mk([{ op: 'sum' }], 4))));
    const sums = sent.filter((x) => x.w === 0).map((x) => {
      const rd = new ReplyBatchReader(x.d);
      const out: number[] = [];
      while (rd.next()) out.push(rd.r.f64());
      return out;
    });
    expect(sums.at(-1)).toEqual([16 * 100 + 3]);
    expect(sent.filter((x) => x.w === 1)).toHaveLength(1); // worker 1 answered only its own inc
  });
});
