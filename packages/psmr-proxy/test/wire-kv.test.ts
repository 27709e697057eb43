import { describe, expect, it } from 'vitest';
import { Prng } from '@ringcast/ring-paxos';
import { ByteReader, ByteWriter, WireError } from '../src/protocol/bytes.js';
import { CommandBatchReader, CommandBatchWriter, ReplyBatchReader, ReplyBatchWriter, STATUS_ERROR, STATUS_OK } from '../src/protocol/wire.js';
import { PsmrScheduler } from '../src/core/psmr-scheduler.js';
import { SessionTable } from '../src/core/session.js';
import { checkpointAllowed, checkpointToken } from '../src/replica.js';
import { kvKeyHash, kvService, KV_LIMITS, type KvCommand, type KvReply } from '../src/services/kv.js';
import { ServiceError } from '../src/service.js';
import { modeNamed } from '../src/modes/index.js';

const header = { clientId: 2 ** 40 + 12345, replyHost: '127.0.0.1', replyPort: 40000, floor: 0 };

function batch(cmds: KvCommand[], firstSeq = 1, h = header): Buffer {
  const w = new CommandBatchWriter();
  w.begin(h);
  cmds.forEach((c, i) => {
    w.beginCommand(firstSeq + i);
    kvService.writeCommand(w.w, c);
    w.endCommand();
  });
  return w.finish();
}

/** Run commands through a one-worker executor and decode the replies as a client would. */
function runSmr(cmds: KvCommand[], ex?: PsmrScheduler<KvCommand, KvReply, unknown>, firstSeq = 1): Array<KvReply | { error: string }> {
  const sent: Buffer[] = [];
  const e =
    ex ??
    new PsmrScheduler<KvCommand, KvReply, unknown>({ service: kvService as never, worker: 0, workers: 1, state: kvService.createPartition(0, 1), send: (_h, _p, d) => sent.push(Buffer.from(d)) });
  (e as unknown as { o: { send: (h: string, p: number, d: Uint8Array) => void } }).o.send = (_h, _p, d) => sent.push(Buffer.from(d));
  e.runOwn(batch(cmds, firstSeq));
  const out: Array<KvReply | { error: string }> = [];
  for (const d of sent) {
    const rd = new ReplyBatchReader(d);
    expect(rd.clientId).toBe(header.clientId);
    while (rd.next()) {
      if (rd.status === STATUS_OK) out.push(kvService.readReply(rd.r, cmds[rd.seq - firstSeq]!));
      else out.push({ error: rd.r.latin1(rd.r.u16()) });
    }
  }
  return out;
}

describe('P-SMR wire formats', () => {
  it('round-trips a command batch and a reply batch', () => {
    const b = batch([{ op: 'get', key: 'a' }, { op: 'put', key: 'b', value: 'xyz' }], 41);
    const rd = new CommandBatchReader(b);
    expect(rd.header).toEqual({ ...header, replier: 0 });
    expect(rd.count).toBe(2);
    const got: unknown[] = [];
    while (rd.next()) got.push([rd.seq, (kvService.readCommand(rd.r) as { op: string }).op]);
    expect(got).toEqual([
      [41, 'get'],
      [42, 'put'],
    ]);
    const w = new ReplyBatchWriter();
    w.begin(99);
    w.beginReply(5, STATUS_OK);
    w.w.u8(1);
    w.endReply();
    w.beginReply(6, STATUS_ERROR);
    w.endReply();
    const rr = new ReplyBatchReader(Buffer.from(w.view()));
    expect(rr.clientId).toBe(99);
    const rs: number[][] = [];
    while (rr.next()) rs.push([rr.seq, rr.status, rr.end - rr.start]);
    expect(rs).toEqual([
      [5, 0, 1],
      [6, 1, 0],
    ]);
  });

  it('carries the replier a client names and the reply tag a replica signs with', () => {
    const b = batch([{ op: 'get', key: 'a' }], 1, { ...header, replier: 7 });
    expect(new CommandBatchReader(b).header.replier).toBe(7);
    // A retried command joining an open batch asks every replica: the writer patches the batch it holds.
    const w = new CommandBatchWriter();
    w.begin({ ...header, replier: 7 });
    w.beginCommand(1);
    kvService.writeCommand(w.w, { op: 'get', key: 'a' });
    w.endCommand();
    w.setReplier(0);
    expect(new CommandBatchReader(w.finish()).header.replier).toBe(0);
    const r = new ReplyBatchWriter();
    r.begin(99, 200);
    expect(new ReplyBatchReader(Buffer.from(r.view())).replyByte).toBe(200);
    expect(() => r.begin(99, 256)).toThrow(WireError);
    expect(() => new CommandBatchWriter().begin({ ...header, replier: -1 })).toThrow(WireError);
  });

  it('only the replica a batch names answers it; every replica runs it and a retry asking everyone is answered by all', () => {
    const replicas = [1, 2].map((tag) => {
      const sent: Buffer[] = [];
      const ex = new PsmrScheduler<KvCommand, KvReply, unknown>({ service: kvService as never, worker: 0, workers: 1, state: kvService.createPartition(0, 1), send: (_h, _p, d) => sent.push(Buffer.from(d)), replyTag: tag });
      return { ex, sent };
    });
    const first = batch([{ op: 'put', key: 'k', value: 'v1' }, { op: 'get', key: 'k' }], 1, { ...header, replier: 2 });
    for (const r of replicas) r.ex.runOwn(first);
    for (const r of replicas) expect(r.ex.executedTotal).toBe(2);
    expect(replicas[0]!.sent).toEqual([]);
    expect(replicas[0]!.ex.stats.repliesLeftToOthers).toBe(2);
    expect(replicas[1]!.sent.length).toBe(1);
    expect(new ReplyBatchReader(replicas[1]!.sent[0]!).replyByte).toBe(2);
    // The client heard nothing (say replica 2 died): it retries seq 2 asking everyone. Replica 1 answers
    // from its session table, without running the command again.
    const retry = batch([{ op: 'get', key: 'k' }], 2, { ...header, replier: 0 });
    for (const r of replicas) r.ex.runOwn(retry);
    for (const r of replicas) expect(r.ex.executedTotal).toBe(2);
    const answer = (d: Buffer): unknown[] => {
      const rd = new ReplyBatchReader(d);
      const out: unknown[] = [];
      while (rd.next()) out.push([rd.seq, rd.replyByte, kvService.readReply(rd.r, { op: 'get', key: 'k' })]);
      return out;
    };
    expect(answer(replicas[0]!.sent[0]!)).toEqual([[2, 1, { value: 'v1' }]]);
    expect(answer(replicas[1]!.sent[1]!)).toEqual([[2, 2, { value: 'v1' }]]);
  });

  it('refuses truncated, foreign and trailing-byte batches with a WireError', () => {
    const b = batch([{ op: 'get', key: 'a' }]);
    expect(() => new CommandBatchReader(b.subarray(0, 10))).toThrow(WireError);
    const bad = Buffer.from(b);
    bad[0] = 0;
    expect(() => new CommandBatchReader(bad)).toThrow(/magic/);
    const cut = new CommandBatchReader(b.subarray(0, b.length - 1));
    expect(() => cut.next()).toThrow(WireError);
    const extra = new CommandBatchReader(Buffer.concat([b, Buffer.from([1, 2])]));
    expect(extra.next()).toBe(true);
    expect(() => extra.next()).toThrow(/trailing/);
    expect(() => new CommandBatchWriter().begin({ ...header, replyHost: 'localhost' })).toThrow(/IPv4/);
  });

  it('byte reader bounds every read', () => {
    const w = new ByteWriter(1);
    w.u32(7);
    w.f64(1.5);
    const r = new ByteReader(w.take());
    expect(r.u32()).toBe(7);
    expect(r.f64()).toBe(1.5);
    expect(() => r.u8('x')).toThrow(/truncated x/);
  });
});

describe('key-value service', () => {
  it('runs every operation with the replies a key-value store gives', () => {
    const bin = new Uint8Array([0, 255, 7]);
    const r = runSmr([
      { op: 'get', key: 'a' },
      { op: 'put', key: 'a', value: 'héllo' },
      { op: 'get', key: 'a' },
      { op: 'cas', key: 'a', expected: 'nope', value: 'x' },
      { op: 'cas', key: 'a', expected: 'héllo', value: 'y' },
      { op: 'cas', key: 'n', expected: null, value: bin },
      { op: 'mput', entries: [['b', '1'], ['c', '2']] },
      { op: 'mget', keys: ['a', 'b', 'zz', 'n'] },
      { op: 'scan', prefix: '', limit: 3 },
      { op: 'delete', key: 'b' },
      { op: 'delete', key: 'b' },
      { op: 'size' },
    ]);
    expect(r).toEqual([
      { value: null },
      { ok: true },
      { value: 'héllo' },
      { swapped: false },
      { swapped: true },
      { swapped: true },
      { ok: true },
      { values: ['y', '1', null, bin] },
      { entries: [['a', 'y'], ['b', '1'], ['c', '2']] },
      { deleted: true },
      { deleted: false },
      { size: 3 },
    ]);
  });

  it('a string key and its UTF-8 bytes are the same key, in the store and in C-G', () => {
    const r = runSmr([
      { op: 'put', key: 'ké', value: 'v' },
      { op: 'get', key: new Uint8Array(Buffer.from('ké', 'utf8')) },
    ]);
    expect(r[1]).toEqual({ value: 'v' });
    expect(kvKeyHash('ké')).toBe(kvKeyHash(new Uint8Array(Buffer.from('ké', 'utf8'))));
    for (let n = 2; n <= 5; n++) {
      for (const k of ['a', 'key-17', 'ké', 'zzz']) {
        const g = kvService.group({ op: 'get', key: k }, n);
        expect(g).toBe(kvKeyHash(k) % n);
        // The replica computes the same partition from the bytes it received.
        const rd = new CommandBatchReader(batch([{ op: 'get', key: k }]));
        rd.next();
        expect(kvService.group(kvService.readCommand(rd.r), n)).toBe(g);
      }
      expect(kvService.group({ op: 'mget', keys: ['a'] }, n)).toBe('all');
      expect(modeNamed('psmr').route('all')).toBe('gall');
      expect(modeNamed('psmr').route(1)).toBe('g1');
      expect(modeNamed('smr').route('all')).toBe('g0');
    }
  });

  it('refuses oversized or malformed commands at the client with a typed error', () => {
    const w = new ByteWriter();
    const refuse = (c: unknown, code: string): void => {
      let err: unknown;
      try {
        kvService.writeCommand(w, c as KvCommand);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ServiceError);
      expect((err as ServiceError).code).toBe(code);
    };
    refuse({ op: 'get', key: 'k'.repeat(KV_LIMITS.maxKeyBytes + 1) }, 'ERR_KV_KEY_TOO_LARGE');
    refuse({ op: 'put', key: 'k', value: 'v'.repeat(KV_LIMITS.maxValueBytes + 1) }, 'ERR_KV_VALUE_TOO_LARGE');
    refuse({ op: 'mget', keys: Array.from({ length: KV_LIMITS.maxKeys + 1 }, (_, i) => `k${i}`) }, 'ERR_KV_TOO_MANY_KEYS');
    refuse({ op: 'scan', prefix: '', limit: 0 }, 'ERR_KV_BAD_LIMIT');
    refuse({ op: 'frobnicate' }, 'ERR_KV_UNKNOWN_OP');
    refuse({ op: 'get', key: 42 }, 'ERR_KV_BAD_KEY');
  });

  it('a replica answers malformed or oversized command bytes with a typed error and changes nothing', () => {
    const ex = new PsmrScheduler<KvCommand, KvReply, unknown>({ service: kvService as never, worker: 0, workers: 1, state: kvService.createPartition(0, 1), send: () => {} });
    runSmr([{ op: 'put', key: 'a', value: '1' }], ex, 1);
    const w = new CommandBatchWriter();
    w.begin(header);
    const raw = (seq: number, bytes: number[]): void => {
      w.beginCommand(seq);
      w.w.bytes(Uint8Array.from(bytes));
      w.endCommand();
    };
    raw(2, [99]); // unknown op
    raw(3, [2, 1, 0, 0x61]); // put with the value missing
    raw(4, [2, 1, 0, 0x62, 0xff, 0xff, 0, 0, 0]); // put 'b' with a 65535-byte value
    raw(5, [1, 1, 0, 0x61, 9]); // get 'a' with a trailing byte
    const sent: Buffer[] = [];
    (ex as unknown as { o: { send: unknown } }).o.send = (_h: string, _p: number, d: Uint8Array) => sent.push(Buffer.from(d));
    ex.runOwn(w.finish());
    const codes: string[] = [];
    const rd = new ReplyBatchReader(sent[0]!);
    while (rd.next()) {
      expect(rd.status).toBe(STATUS_ERROR);
      codes.push(rd.r.latin1(rd.r.u16()));
    }
    expect(codes).toEqual(['ERR_KV_UNKNOWN_OP', 'ERR_PSMR_MALFORMED_COMMAND', 'ERR_KV_VALUE_TOO_LARGE', 'ERR_PSMR_MALFORMED_COMMAND']);
    expect(runSmr([{ op: 'size' }, { op: 'get', key: 'a' }], ex, 10)).toEqual([{ size: 1 }, { value: '1' }]);
    expect(ex.stats.errors.ERR_KV_UNKNOWN_OP).toBe(1);
  });

  it('a partitioned g_all command gives the same reply as on one partition (random stores)', () => {
    const g = new Prng(12345);
    const rnd = (n: number): number => g.int(0, n);
    for (let trial = 0; trial < 30; trial++) {
      const n = 2 + rnd(4);
      const whole = kvService.createPartition(0, 1);
      const parts = Array.from({ length: n }, (_, i) => kvService.createPartition(i, n));
      const exec = (c: KvCommand): KvReply[] => {
        // Feed the same decoded command to both layouts (replica form: decode from the wire).
        const rd = new CommandBatchReader(batch([c]));
        rd.next();
        const d = kvService.readCommand(rd.r);
        const one = kvService.execute(whole, d);
        const g = kvService.group(d, n);
        const many = g === 'all' ? kvService.combine!(d, parts.map((p) => kvService.executePart!(p, d))) : kvService.execute(parts[g]!, d);
        return [one, many];
      };
      for (let i = 0; i < 200; i++) {
        const k = (): string => `k${rnd(40)}`;
        const choice = rnd(7);
        const c: KvCommand =
          choice === 0
            ? { op: 'put', key: k(), value: `v${rnd(9)}` }
            : choice === 1
              ? { op: 'mput', entries: [[k(), `m${rnd(9)}`], [k(), `m${rnd(9)}`]] }
              : choice === 2
                ? { op: 'mget', keys: [k(), k(), k()] }
                : choice === 3
                  ? { op: 'scan', prefix: `k${rnd(4)}`, limit: 1 + rnd(6) }
                  : choice === 4
                    ? { op: 'size' }
                    : choice === 5
                      ? { op: 'delete', key: k() }
                      : { op: 'cas', key: k(), expected: rnd(2) ? null : `v${rnd(9)}`, value: `c${rnd(9)}` };
        const [a, b] = exec(c);
        expect(b).toEqual(a);
      }
      const total = parts.reduce((s, p) => s + p.map.size, 0);
      expect(total).toBe(whole.map.size);
    }
  });
});

describe('key-value parts fit the barrier slots', () => {
  it('the largest scan and mget parts stay within maxPartBytes once packed', async () => {
    const { pack } = await import('msgpackr');
    const st = kvService.createPartition(0, 1);
    const high = new Uint8Array(KV_LIMITS.maxValueBytes).fill(0xff);
    const keys: Uint8Array[] = [];
    for (let i = 0; i < KV_LIMITS.maxScan; i++) {
      const k = new Uint8Array(KV_LIMITS.maxKeyBytes).fill(0xfe);
      k[0] = 0x70;
      k[1] = i;
      keys.push(k);
      runSmrOn(st, [{ op: 'put', key: k, value: high }]);
    }
    const dec = (c: KvCommand): KvCommand => {
      const rd = new CommandBatchReader(batch([c]));
      rd.next();
      return kvService.readCommand(rd.r);
    };
    const scan = pack(kvService.executePart!(st, dec({ op: 'scan', prefix: new Uint8Array([0x70]), limit: KV_LIMITS.maxScan })));
    const mget = pack(kvService.executePart!(st, dec({ op: 'mget', keys })));
    expect(scan.length).toBeGreaterThan(KV_LIMITS.maxScan * KV_LIMITS.maxValueBytes);
    expect(scan.length).toBeLessThanOrEqual(kvService.maxPartBytes!);
    expect(mget.length).toBeLessThanOrEqual(kvService.maxPartBytes!);
  });
});

function runSmrOn(state: unknown, cmds: KvCommand[]): void {
  const ex = new PsmrScheduler<KvCommand, KvReply, unknown>({ service: kvService as never, worker: 0, workers: 1, state, send: () => {} });
  ex.runOwn(batch(cmds));
}

describe('session table', () => {
  it('replays a retried command, drops one below the floor, and trims replies below the floor', () => {
    const t = new SessionTable<string>(4, 100);
    let s = t.open(1, 0);
    expect(t.check(s, 5).kind).toBe('new');
    t.record(s, 5, 'r5');
    t.record(s, 6, 'r6');
    expect(t.check(s, 5)).toEqual({ kind: 'replay', reply: 'r5' });
    s = t.open(1, 6);
    expect(t.check(s, 5).kind).toBe('stale');
    expect(s.replies.has(5)).toBe(false);
    expect(t.check(s, 6)).toEqual({ kind: 'replay', reply: 'r6' });
  });

  it('is bounded, and evicts by delivery order only (the same on every replica)', () => {
    const run = (): string => {
      const t = new SessionTable<number>(3, 2);
      for (let c = 1; c <= 10; c++) {
        const s = t.open(c % 5, 0);
        for (let q = 0; q < 4; q++) t.record(s, c * 10 + q, q);
      }
      expect(t.size).toBe(3);
      return `${t.digest()} ${t.evictedClients} ${t.evictedReplies}`;
    };
    const a = run();
    expect(run()).toBe(a);
    const t = new SessionTable<number>(2, 2);
    const s = t.open(1, 0);
    t.record(s, 1, 1);
    t.record(s, 2, 2);
    t.record(s, 3, 3);
    expect([...s.replies.keys()]).toEqual([2, 3]);
  });

  it('loads what entries() gave, in recency order; over its bounds it keeps the most recent, as eviction would', () => {
    const big = new SessionTable<number>(10, 10);
    for (let c = 1; c <= 5; c++) big.record(big.open(c, 0), c, c * 100);
    big.open(2, 0); // client 2 becomes the most recent
    const same = new SessionTable<number>(10, 10);
    same.load(big.entries());
    expect(same.digest()).toBe(big.digest());
    expect([...same.entries()].map((e) => e[0])).toEqual([1, 3, 4, 5, 2]);
    const small = new SessionTable<number>(2, 10);
    small.load(big.entries());
    expect([...small.entries()].map((e) => e[0])).toEqual([5, 2]);
  });
});

describe('bad batches at a replica', () => {
  it('a reply port of 0 or random corruption never makes the executor throw (dropped and counted)', () => {
    // Like dgram: a send to port 0 throws synchronously.
    const send = (_h: string, p: number): void => {
      if (p <= 0 || p > 65535) throw new RangeError(`bad port ${p}`);
    };
    const ex = new PsmrScheduler<KvCommand, KvReply, unknown>({ service: kvService as never, worker: 0, workers: 1, state: kvService.createPartition(0, 1), send });
    const zero = batch([{ op: 'get', key: 'a' }], 1, { ...header, replyPort: 0 });
    expect(() => ex.runOwn(zero)).not.toThrow();
    expect(() => ex.runAll(zero)).not.toThrow();
    expect(ex.stats.malformedBatches).toBe(2);
    const g = new Prng(99);
    const rnd = (n: number): number => g.int(0, n);
    const good = batch([{ op: 'put', key: 'k', value: 'v' }, { op: 'mget', keys: ['a', 'b'] }, { op: 'scan', prefix: 'k', limit: 3 }], 5);
    for (let i = 0; i < 20_000; i++) {
      const b = Buffer.from(good.subarray(0, rnd(4) === 0 ? rnd(good.length + 1) : good.length));
      for (let k = 0, m = 1 + rnd(4); k < m && b.length > 0; k++) b[rnd(b.length)] = rnd(256);
      expect(() => ex.runOwn(b)).not.toThrow();
      expect(() => ex.runAll(b)).not.toThrow();
    }
  });
});

/** Two psmr workers of one replica, in this thread, meeting at a real SharedArrayBuffer barrier. */
async function twoWorkers(slot: number, roundSize: number, onSend: (port: number, d: Buffer) => void): Promise<Array<PsmrScheduler<KvCommand, KvReply, unknown>>> {
  const { SharedBarrier } = await import('../src/barrier.js');
  const sab = SharedBarrier.allocate(2, slot);
  return [0, 1].map(
    (w) =>
      new PsmrScheduler<KvCommand, KvReply, unknown>({
        service: kvService as never,
        worker: w,
        workers: 2,
        state: kvService.createPartition(w, 2),
        barrier: new SharedBarrier(sab, 2, w, slot),
        send: (_h, p, d) => onSend(p, Buffer.from(d)),
        roundSize,
      }),
  );
}

describe('g_all rounds that go wrong', () => {
  it('a part too large for its slot becomes an error reply; no worker is left at the barrier', async () => {
    const sent: Buffer[] = [];
    // One command per round: a failed slot fails its whole round, here just the mget.
    const exs = await twoWorkers(48, 1, (_p, d) => sent.push(d));
    // Fill both partitions through g_all, then read everything back in one mget: the parts outgrow 48 bytes.
    const keys = Array.from({ length: 8 }, (_, i) => `key-${i}`);
    const fill = batch([{ op: 'mput', entries: keys.map((k) => [k, 'x'.repeat(40)] as [string, string]) }, { op: 'mget', keys }, { op: 'size' }], 1);
    await Promise.all(exs.map((e) => e.runAll(fill)));
    const rd = new ReplyBatchReader(sent[0]!);
    const got: Array<[number, number]> = [];
    while (rd.next()) got.push([rd.seq, rd.status]);
    expect(got).toEqual([
      [1, STATUS_OK],
      [2, STATUS_ERROR],
      [3, STATUS_OK],
    ]);
    expect(sent).toHaveLength(1); // only worker 0 answers g_all commands
    expect(exs[0]!.stats.errors.ERR_PSMR_SERVICE_FAILED).toBe(1);
  });
});

describe('a g_all instance with the batches of several clients', () => {
  it('runs them in shared rounds and answers each client with its own reply batch', async () => {
    const sent: Array<{ port: number; d: Buffer }> = [];
    const exs = await twoWorkers(1 << 16, 3, (port, d) => sent.push({ port, d }));
    const a = batch([{ op: 'mput', entries: [['x', '1'], ['y', '2']] }, { op: 'size' }], 1, { ...header, clientId: 11, replyPort: 1111 });
    const b = batch([{ op: 'mget', keys: ['x', 'y', 'z'] }, { op: 'size' }, { op: 'scan', prefix: '', limit: 5 }], 1, { ...header, clientId: 22, replyPort: 2222 });
    await Promise.all(exs.map((e) => e.runAll([a, b])));
    expect(exs[0]!.stats.barrierRounds).toBe(2); // 5 commands, rounds of 3 across both batches
    expect(exs[1]!.stats.barrierRounds).toBe(2);
    const byPort = new Map<number, number[]>();
    for (const { port, d } of sent) {
      const rd = new ReplyBatchReader(d);
      expect(rd.clientId).toBe(port === 1111 ? 11 : 22);
      while (rd.next()) byPort.set(port, [...(byPort.get(port) ?? []), rd.seq]);
    }
    expect(byPort.get(1111)).toEqual([1, 2]);
    expect(byPort.get(2222)).toEqual([1, 2, 3]);
  });
});

describe('checkpoints of a worker', () => {
  it('a restored worker has the same state and sessions: retries replay their original replies, new commands agree', () => {
    const mk = (state = kvService.createPartition(0, 1)): PsmrScheduler<KvCommand, KvReply, unknown> =>
      new PsmrScheduler<KvCommand, KvReply, unknown>({ service: kvService as never, worker: 0, workers: 1, state, send: () => {} });
    const a = mk();
    const rng = new Prng(11);
    const cmds: KvCommand[] = [];
    for (let i = 0; i < 300; i++) {
      const key = `k${rng.int(40)}`;
      const pick = rng.int(4);
      const other = `k${rng.int(40)}`;
      cmds.push(
        pick === 0
          ? { op: 'get', key }
          : pick === 1
            ? { op: 'delete', key }
            : pick === 2
              ? { op: 'mput', entries: [[key, Buffer.from([i & 0xff, 0xfe, 0x80])], [other, `s${i}`]] }
              : { op: 'put', key, value: Buffer.from([i & 0xff, 0xfe, 0x80]) },
      );
      if (i % 50 === 0) cmds.push({ op: 'mget', keys: [key, other] }, { op: 'scan', prefix: 'k1', limit: 5 }, { op: 'size' });
    }
    runSmr(cmds, a, 1);
    // An error outcome is cached too: a command with an unknown operation (seq 1000).
    const unknownOp = (ex: PsmrScheduler<KvCommand, KvReply, unknown>): string[] => {
      const w = new CommandBatchWriter();
      w.begin(header);
      w.beginCommand(1000);
      w.w.bytes(Uint8Array.of(99));
      w.endCommand();
      const sent: Buffer[] = [];
      (ex as unknown as { o: { send: unknown } }).o.send = (_h: string, _p: number, d: Uint8Array) => sent.push(Buffer.from(d));
      ex.runOwn(w.finish());
      const codes: string[] = [];
      const rd = new ReplyBatchReader(sent[0]!);
      while (rd.next()) codes.push(rd.status === STATUS_ERROR ? rd.r.latin1(rd.r.u16()) : 'ok');
      return codes;
    };
    expect(cmds.length).toBe(300 + 18);
    expect(unknownOp(a)).toEqual(['ERR_KV_UNKNOWN_OP']);
    const state = kvService.snapshot!((a as unknown as { o: { state: never } }).o.state);
    const sessions = a.sessionsSnapshot();
    const b = mk(kvService.restore!(state, 0, 1));
    b.restoreSessions(sessions);
    const digest = (e: PsmrScheduler<KvCommand, KvReply, unknown>): string =>
      `${kvService.digest((e as unknown as { o: { state: never } }).o.state)}/${e.own.digest()}/${e.all.digest()}/${e.executedTotal}`;
    expect(digest(b)).toBe(digest(a));
    // The cached outcomes themselves (decoded commands and replies) came back as they were.
    expect([...b.own.entries()]).toEqual([...a.own.entries()]);
    // A retry of the last 30 commands gets what the original run answered, from the cache, on both.
    const retry = cmds.slice(cmds.length - 30);
    expect(runSmr(retry, b, cmds.length - 29)).toEqual(runSmr(retry, a, cmds.length - 29));
    expect(unknownOp(b)).toEqual(['ERR_KV_UNKNOWN_OP']);
    expect(b.stats.duplicatesReplied).toBe(31);
    expect(b.stats.errors.ERR_KV_UNKNOWN_OP).toBeUndefined();
    const next: KvCommand[] = [{ op: 'get', key: 'k3' }, { op: 'cas', key: 'k4', expected: null, value: 'n' }, { op: 'size' }];
    expect(runSmr(next, b, 1001)).toEqual(runSmr(next, a, 1001));
    expect(digest(b)).toBe(digest(a));
  });

  it('a checkpoint goes only to a request with the cluster secret\'s token, when there is a secret', () => {
    const token = checkpointToken('s3cret');
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect(checkpointToken('other')).not.toBe(token);
    expect(checkpointAllowed('s3cret', token)).toBe(true);
    expect(checkpointAllowed('s3cret', checkpointToken('other'))).toBe(false);
    expect(checkpointAllowed('s3cret', undefined)).toBe(false);
    expect(checkpointAllowed('s3cret', [token, token])).toBe(false);
    expect(checkpointAllowed('s3cret', token.slice(1))).toBe(false);
    expect(checkpointAllowed(undefined, undefined)).toBe(true);
  });

  it('a batch of nothing but retries changes no session (so a replica that saw a retry its ring filtered elsewhere stays equal)', () => {
    const mk = (): PsmrScheduler<KvCommand, KvReply, unknown> =>
      new PsmrScheduler<KvCommand, KvReply, unknown>({ service: kvService as never, worker: 0, workers: 1, state: kvService.createPartition(0, 1), send: () => {} });
    const a = mk();
    const b = mk();
    const ha = { ...header, clientId: 7 };
    const hb = { ...header, clientId: 8 };
    for (const ex of [a, b]) {
      ex.runOwn(batch([{ op: 'put', key: 'x', value: '1' }, { op: 'put', key: 'y', value: '2' }], 1, ha));
      ex.runOwn(batch([{ op: 'put', key: 'z', value: '3' }], 1, hb));
    }
    // Replica b alone gets client 7's retry of both commands, with a higher floor: replayed, no session change.
    const before = a.own.digest();
    b.runOwn(batch([{ op: 'put', key: 'x', value: '1' }, { op: 'put', key: 'y', value: '2' }], 1, { ...ha, floor: 2 }));
    expect(b.stats.duplicatesReplied).toBe(2);
    expect(b.own.digest()).toBe(before);
    expect([...b.own.entries()]).toEqual([...a.own.entries()]);
    // A batch with a new command opens the session: most recent now, and its floor applied.
    for (const ex of [a, b]) ex.runOwn(batch([{ op: 'get', key: 'x' }], 3, { ...ha, floor: 2 }));
    expect([...b.own.entries()].map((e) => [e[0], e[1]])).toEqual([
      [8, 0],
      [7, 2],
    ]);
    expect(b.own.digest()).toBe(a.own.digest());
  });

  it('refuses a damaged snapshot with a typed error', () => {
    const ex = new PsmrScheduler<KvCommand, KvReply, unknown>({ service: kvService as never, worker: 0, workers: 1, state: kvService.createPartition(0, 1), send: () => {} });
    expect(() => ex.restoreSessions(Uint8Array.of(0xc1))).toThrow(ServiceError);
    expect(() => ex.restoreSessions(Buffer.from(JSON.stringify({ v: 1 })))).toThrow(/session snapshot/);
    expect(() => kvService.restore!(Uint8Array.of(0x91, 0x01), 0, 1)).toThrow(ServiceError);
  });
});
