import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
// The package index does not export the log yet; the build output is what runs.
import { FileLog, crc32, crc32Js, type LogMode } from '../dist/storage/file-log.js';
import type { PersistRecord } from '../dist/core/outbox.js';
import type { LogEntry } from '../dist/core/acceptor.js';
import { DEFAULT_RING_SETTINGS, MessageType, RingNode } from '@ringcast/ring-paxos';

/** A plain, independent model of what a sequence of records means (no bounded loops, no cleverness). */
class Model {
  promised = 0;
  trimmed = 0;
  entries = new Map<number, LogEntry>();
  apply(r: PersistRecord): void {
    if (r.kind === 'promise') this.promised = Math.max(this.promised, r.ballot);
    else if (r.kind === 'accept') {
      if (r.instance >= this.trimmed) this.entries.set(r.instance, { ballot: r.ballot, vid: r.vid, value: Uint8Array.from(r.value), decided: false });
    } else if (r.kind === 'decide') {
      for (let k = 0; k + 2 < r.decisions.length; k += 3) {
        const [start, count, vid] = [r.decisions[k]!, r.decisions[k + 1]!, r.decisions[k + 2]!];
        for (const [i, e] of this.entries) if (i >= start && i < start + count && e.vid === vid) e.decided = true;
      }
    } else {
      this.trimmed = Math.max(this.trimmed, r.below);
      for (const i of [...this.entries.keys()]) if (i < this.trimmed) this.entries.delete(i);
    }
  }
  applyAll(rs: readonly PersistRecord[]): this {
    for (const r of rs) this.apply(r);
    return this;
  }
}

function sorted(m: Map<number, LogEntry>): Array<[number, { ballot: number; vid: number; value: number[]; decided: boolean }]> {
  return [...m.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([i, e]) => [i, { ballot: e.ballot, vid: e.vid, value: Array.from(e.value), decided: e.decided }]);
}

function expectState(got: { promised: number; trimmed: number; entries: Map<number, LogEntry> }, model: Model): void {
  expect(got.promised).toBe(model.promised);
  expect(got.trimmed).toBe(model.trimmed);
  expect(got.entries.size).toBe(model.entries.size);
  expect(sorted(got.entries)).toEqual(sorted(model.entries));
}

/** mulberry32 */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bytes(n: number, fill: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (fill + i * 31) & 0xff;
  return b;
}

/** A frame as the log writes it: [u32 length][u32 crc][payload]. */
function frame(payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(payload.length, 0);
  h.writeUInt32LE(crc32(payload), 4);
  return Buffer.concat([h, payload]);
}
const f64 = (x: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(x);
  return b;
};
const u32 = (x: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(x);
  return b;
};

const RING = 3;
const promise = (ballot: number): PersistRecord => ({ kind: 'promise', ring: RING, ballot });
const accept = (instance: number, ballot: number, vid: number, value: Uint8Array): PersistRecord => ({ kind: 'accept', ring: RING, instance, ballot, vid, value });
const decide = (...decisions: number[]): PersistRecord => ({ kind: 'decide', ring: RING, decisions });
const trim = (below: number): PersistRecord => ({ kind: 'trim', ring: RING, below });

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ringcast-log-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Segments of 256 KiB unless a test says otherwise (the 64 MiB default is slow to read back in tests). */
const open = (mode: LogMode, opts: { segmentBytes?: number; rejoin?: boolean } = {}) => FileLog.open(tmp, RING, mode, { segmentBytes: 256 * 1024, ...opts });
const ringDir = () => path.join(tmp, `ring-${RING}`);
const segs = () => fs.readdirSync(ringDir()).filter((n) => n.endsWith('.seg')).sort();
const lastSeg = () => path.join(ringDir(), segs().at(-1)!);
/** Bytes of segment file `f` up to its last non-zero byte: what was written into it. */
const used = (f: string): number => {
  const b = fs.readFileSync(f);
  const zeros = Buffer.alloc(65536);
  let n = b.length;
  while (n >= zeros.length && b.subarray(n - zeros.length, n).equals(zeros)) n -= zeros.length;
  while (n > 0 && b[n - 1] === 0) n--;
  return n;
};
/** Write `data` into segment file `f` right after what was written into it (its length stays). */
const writeAfter = (f: string, data: Buffer): void => {
  const b = fs.readFileSync(f);
  data.copy(b, used(f));
  fs.writeFileSync(f, b);
};
/** Zero segment file `f` from `from` on, its length kept: an append of which only `from` bytes reached the disk. */
const tearAt = (f: string, from: number): void => {
  const b = fs.readFileSync(f);
  b.fill(0, from);
  fs.writeFileSync(f, b);
};
/** The directory the log's damaged segments were last set aside in. */
const damagedDir = (): string => path.join(ringDir(), fs.readdirSync(ringDir()).filter((n) => n.startsWith('damaged-')).sort().at(-1)!);

/** Every kind, including large safe integers and an empty value. */
const EVERY_KIND: PersistRecord[] = [
  promise(65537),
  accept(0, 65537, 65537, bytes(10, 1)),
  accept(1, 65537, 65537, new Uint8Array(0)),
  accept(2, 65537, 65537, bytes(300, 2)),
  accept(2 ** 40, 65537, 65537, bytes(5, 3)),
  decide(0, 2, 65537, 2, 1, 99), // instance 2 holds another vid: stays undecided
  promise(131073),
  accept(3, 131073, 65537, bytes(7, 4)),
  accept(Number.MAX_SAFE_INTEGER - 1, 131073, Number.MAX_SAFE_INTEGER, bytes(3, 5)),
  decide(3, 1, 65537, Number.MAX_SAFE_INTEGER - 1, 1, Number.MAX_SAFE_INTEGER),
  promise(7), // lower promise: ignored
  trim(1),
  accept(0, 131073, 1, bytes(1, 6)), // below trimmed: ignored
];

describe('FileLog round trip', () => {
  for (const mode of ['sync', 'async'] as LogMode[]) {
    it(`${mode}: every record kind survives close and reopen`, () => {
      const { log, recovered } = open(mode);
      expect(recovered.records).toBe(0);
      expect(recovered.entries.size).toBe(0);
      const created = log.stats.syncs; // the new segment, made durable in every mode
      expect(created).toBe(1);
      log.append(EVERY_KIND.slice(0, 6));
      log.append(EVERY_KIND.slice(6));
      expect(log.stats.appends).toBe(2);
      expect(log.stats.records).toBe(EVERY_KIND.length);
      expect(log.stats.bytes).toBe(used(lastSeg()));
      expect(log.stats.syncs - created).toBe(mode === 'sync' ? 2 : 0);
      log.close();

      const again = open(mode);
      const model = new Model().applyAll(EVERY_KIND);
      expectState(again.recovered, model);
      expect(again.recovered.records).toBe(EVERY_KIND.length);
      expect(again.recovered.cutBytes).toBe(0);
      expect(again.recovered.segments).toBe(1);
      const got = again.recovered.entries;
      expect(got.has(0)).toBe(false); // trimmed
      expect(got.get(1)!.decided).toBe(true);
      expect(got.get(1)!.value.length).toBe(0);
      expect(got.get(2)!.decided).toBe(false);
      expect(got.get(3)!.decided).toBe(true);
      expect(got.get(2 ** 40)!.decided).toBe(false);
      expect(got.get(Number.MAX_SAFE_INTEGER - 1)).toMatchObject({ ballot: 131073, vid: Number.MAX_SAFE_INTEGER, decided: true });
      expect(got.get(2)!.value).toBeInstanceOf(Uint8Array);
      again.log.close();
    });
  }

  it('memory: writes nothing and recovers empty', () => {
    const { log, recovered } = open('memory');
    expect(recovered).toEqual({ promised: 0, trimmed: 0, entries: new Map(), records: 0, cutBytes: 0, segments: 0, rejoin: false });
    log.append(EVERY_KIND);
    expect(log.stats.records).toBe(EVERY_KIND.length);
    expect(log.stats.bytes).toBe(0);
    log.close();
    expect(fs.readdirSync(tmp)).toEqual([]);
    const again = open('memory');
    expect(again.recovered.entries.size).toBe(0);
    expect(again.recovered.promised).toBe(0);
  });

  it('one append is one write of all its records, and an empty append writes nothing', () => {
    const { log } = open('sync');
    const head = used(lastSeg());
    const created = log.stats.syncs;
    log.append([]);
    expect(log.stats.syncs).toBe(created);
    expect(used(lastSeg())).toBe(head);
    log.append(EVERY_KIND);
    expect(log.stats.syncs).toBe(created + 1);
    expect(log.stats.syncMicros).toBeGreaterThan(0);
    log.close();
  });

  it('rejects a record of another ring and a value that is not a safe integer, writing nothing', () => {
    const { log } = open('async');
    const head = used(lastSeg());
    expect(() => log.append([{ kind: 'promise', ring: RING + 1, ballot: 5 }])).toThrow(/ring 4/);
    expect(() => log.append([promise(5), accept(0.5, 5, 5, bytes(1, 1))])).toThrow(expect.objectContaining({ code: 'ERR_RINGCAST_LOG' }));
    expect(used(lastSeg())).toBe(head);
    log.append([promise(9)]);
    log.close();
    expect(open('async').recovered.promised).toBe(9);
  });
});

describe('FileLog against an in-memory model', () => {
  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: random appends, reopened several times, recover what the model holds`, () => {
      const rnd = prng(seed);
      const int = (n: number) => Math.floor(rnd() * n);
      const model = new Model();
      // Small segments so rotation and deletion run during the random sequence too.
      const segmentBytes = 256 * 1024;
      let { log } = FileLog.open(tmp, RING, seed === 2 ? 'sync' : 'async', { segmentBytes });
      let ballot = 65536 + 1;
      let next = 0;
      let total = 0;
      let deleted = 0;
      while (total < 3000) {
        const batch: PersistRecord[] = [];
        const n = 1 + int(8);
        for (let k = 0; k < n; k++) {
          const c = rnd();
          if (c < 0.05) {
            ballot += int(3) * 65536;
            batch.push(promise(ballot - int(2) * 65536)); // sometimes lower than before
          } else if (c < 0.65) {
            // Mostly new instances, sometimes a re-accept of a held one (new ballot, maybe new vid).
            const inst = rnd() < 0.8 ? next++ : Math.max(0, next - 1 - int(20));
            const size = rnd() < 0.03 ? 20_000 + int(20_001) : int(200);
            batch.push(accept(inst, ballot, rnd() < 0.9 ? ballot : ballot - 65536, bytes(size, int(256))));
          } else if (c < 0.9) {
            const d: number[] = [];
            for (let t = int(3) + 1; t > 0; t--) d.push(Math.max(0, next - int(30)), int(5), rnd() < 0.9 ? ballot : ballot - 65536);
            if (rnd() < 0.05) d.push(0, 2 ** 50, ballot); // an absurd count
            batch.push(decide(...d));
          } else {
            batch.push(trim(Math.max(0, next - 40 - int(40))));
          }
        }
        log.append(batch);
        model.applyAll(batch);
        total += batch.length;
        if (rnd() < 0.01) {
          deleted += log.stats.segmentsDeleted;
          log.close();
          const r = open('async', { segmentBytes });
          expectState(r.recovered, model);
          expect(r.recovered.cutBytes).toBe(0);
          log = r.log;
        }
      }
      deleted += log.stats.segmentsDeleted;
      log.close();
      const r = open('async', { segmentBytes });
      expectState(r.recovered, model);
      expect(model.entries.size).toBeGreaterThan(0);
      expect([...model.entries.values()].some((e) => e.decided)).toBe(true);
      expect([...model.entries.values()].some((e) => e.value.length > 20_000)).toBe(true);
      expect(deleted).toBeGreaterThan(0);
      r.log.close();
    });
  }
});

describe('FileLog recovery: a torn tail is cut, damage makes the node rejoin', () => {
  const first = [promise(65537), accept(0, 65537, 65537, bytes(100, 1)), accept(1, 65537, 65537, bytes(50, 2)), decide(0, 2, 65537)];
  const lastBatch = [accept(2, 65537, 65537, bytes(400, 3))];
  const after = [accept(3, 65537, 65537, bytes(20, 4)), trim(1)];

  function writeBoth(mode: LogMode): number {
    const { log } = open(mode);
    log.append(first);
    const good = used(lastSeg());
    log.append(lastBatch);
    log.close();
    return good;
  }

  function recoverAndContinue(good: number, mode: LogMode): void {
    const size = used(lastSeg());
    const r = open(mode);
    expect(r.recovered.damage).toBeUndefined();
    expect(r.recovered.rejoin).toBe(false);
    expect(r.recovered.cutBytes).toBe(size - good);
    expect(r.recovered.cutBytes).toBeGreaterThan(0);
    expect(r.recovered.records).toBe(first.length);
    expectState(r.recovered, new Model().applyAll(first));
    expect(r.recovered.entries.has(2)).toBe(false);
    expect(used(lastSeg())).toBe(good);
    r.log.append(after);
    r.log.close();
    const again = open(mode);
    expect(again.recovered.cutBytes).toBe(0);
    expect(again.recovered.records).toBe(first.length + after.length);
    expectState(again.recovered, new Model().applyAll([...first, ...after]));
    again.log.close();
  }

  /** Recovery found damage: nothing of the old log is applied, it is set aside, and the node must rejoin. */
  function expectDamaged(mode: LogMode, opts: { segmentBytes?: number } = {}, where?: { file: string; offset?: number }): void {
    const before = segs();
    const r = open(mode, opts);
    expect(r.recovered.damage).toBeDefined();
    if (where) expect(r.recovered.damage).toMatchObject(where);
    expect(r.recovered.rejoin).toBe(true);
    expect(r.recovered.entries.size).toBe(0);
    expect(r.recovered.promised).toBe(0);
    expect(r.recovered.trimmed).toBe(0);
    // The old segments are kept for inspection, out of the log; a new one holds the rejoin.
    expect(fs.readdirSync(damagedDir()).sort()).toEqual(before);
    expect(segs()).toHaveLength(1);
    expect(segs()[0]! > before.at(-1)!).toBe(true);
    // Until the acceptor records that its rejoin finished, every restart rejoins again.
    r.log.append([promise(131073)]);
    r.log.close();
    const again = open(mode, opts);
    expect(again.recovered.damage).toBeUndefined();
    expect(again.recovered.rejoin).toBe(true);
    expect(again.recovered.promised).toBe(131073);
    again.log.append([accept(7, 131073, 131073, bytes(9, 9)), { kind: 'rejoined', ring: RING }]);
    again.log.close();
    const whole = open(mode, opts);
    expect(whole.recovered.rejoin).toBe(false);
    expect([...whole.recovered.entries.keys()]).toEqual([7]);
    whole.log.close();
  }

  for (const mode of ['sync', 'async'] as LogMode[]) {
    it(`${mode}: an append cut short by a crash is a torn tail: cut, and the log goes on`, () => {
      const good = writeBoth(mode);
      tearAt(lastSeg(), good + 200); // header and half the payload of the last append's record
      recoverAndContinue(good, mode);
    });

    it(`${mode}: a flipped byte in the last, committed record is damage, not a torn tail`, () => {
      const good = writeBoth(mode);
      const f = lastSeg();
      const b = fs.readFileSync(f);
      b[good + 8 + 100] ^= 0x40; // inside the value
      fs.writeFileSync(f, b);
      expectDamaged(mode, {}, { file: f, offset: good });
    });
  }

  it('bytes flipped at the end of the last record and in the commit after it look like an append torn before its commit: that append alone is cut (a documented limit)', () => {
    const good = writeBoth('sync');
    const f = lastSeg();
    const b = fs.readFileSync(f);
    const end = used(f);
    b[end - 18] ^= 0xe5; // the last byte of the last append's accept record
    b[end - 17] ^= 0x50; // the commit's length
    fs.writeFileSync(f, b);
    // Exactly the bytes of the last append are cut; the append before it, committed, survives whole.
    recoverAndContinue(good, 'sync');
  });

  it('flipped bytes in the middle of a segment, with records after them, are damage', () => {
    const { log } = open('sync');
    log.append(first);
    const mid = used(lastSeg());
    for (let i = 2; i < 12; i++) log.append([accept(i, 65537, 65537, bytes(200, i))]);
    log.close();
    for (const at of [mid + 2, mid + 60]) {
      // A frame header (the length: the record then seems to run past the end) and a value byte.
      const f = lastSeg();
      const copy = fs.readFileSync(f);
      const b = Buffer.from(copy);
      for (let k = 0; k < 4; k++) b[at + k] ^= 0xa5;
      fs.writeFileSync(f, b);
      expectDamaged('sync', {}, { file: f, offset: mid });
      // Put the untouched log back for the next case.
      fs.rmSync(ringDir(), { recursive: true, force: true });
      fs.mkdirSync(ringDir());
      fs.writeFileSync(f, copy);
    }
  });

  it('any bytes after the last commit, with no commit after them, are a torn tail; a bad record before a commit is damage', () => {
    const payload = Buffer.from([77, 1, 2, 3]); // an unknown kind, with a valid crc
    const commitAt = (at: number): Buffer => frame(Buffer.concat([Buffer.from([5]), f64(at)]));
    for (const [tail, torn] of [
      [Buffer.from([9, 0, 0]), true],
      [Buffer.from([0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 1]), true], // an absurd length: a write torn at any page
      [Buffer.concat([frame(payload), frame(payload)]), true],
      [Buffer.concat([frame(payload)]), false], // followed by a commit below
    ] as Array<[Buffer, boolean]>) {
      fs.rmSync(ringDir(), { recursive: true, force: true });
      const { log } = open('async');
      log.append(first);
      log.close();
      const good = used(lastSeg());
      writeAfter(lastSeg(), torn ? tail : Buffer.concat([tail, commitAt(good + tail.length)]));
      if (!torn) {
        expectDamaged('async', {}, { offset: good });
        continue;
      }
      const tornBytes = used(lastSeg()) - good;
      const r = open('async');
      expect(r.recovered.cutBytes).toBe(tornBytes);
      expect(r.recovered.rejoin).toBe(false);
      expectState(r.recovered, new Model().applyAll(first));
      expect(used(lastSeg())).toBe(good);
      r.log.close();
    }
  });

  function manySegments(): { names: string[]; all: PersistRecord[] } {
    const { log } = open('sync', { segmentBytes: 1000 });
    const all: PersistRecord[] = [promise(65537)];
    log.append([all[0]!]);
    for (let i = 0; i < 20; i++) {
      const r = accept(i, 65537, 65537, bytes(300, i));
      all.push(r);
      log.append([r]);
    }
    log.close();
    const names = segs();
    expect(names.length).toBeGreaterThan(3);
    return { names, all };
  }

  it('a bad record in a segment that is not the last is damage, even at its end', () => {
    const { names } = manySegments();
    const second = path.join(ringDir(), names[1]!);
    const b = fs.readFileSync(second);
    b[b.length - 20] ^= 1; // the last append of the segment
    fs.writeFileSync(second, b);
    expectDamaged('sync', { segmentBytes: 1000 }, { file: second });
  });

  it('a middle segment cut short (even at a record boundary) is damage', () => {
    const { names } = manySegments();
    const second = path.join(ringDir(), names[1]!);
    const size = fs.statSync(second).size;
    // Cut exactly one append (its accept and commit) off the end: every record left is whole.
    fs.truncateSync(second, size - (8 + 29 + 300) - 17);
    expectDamaged('sync', { segmentBytes: 1000 }, { file: second, offset: size - (8 + 29 + 300) - 17 });
  });

  it('a missing middle segment is damage; the whole log with no gap is not', () => {
    const { names, all } = manySegments();
    const whole = open('sync', { segmentBytes: 1000 });
    expect(whole.recovered.damage).toBeUndefined();
    expectState(whole.recovered, new Model().applyAll(all));
    whole.log.close();
    fs.rmSync(path.join(ringDir(), names[2]!));
    expectDamaged('sync', { segmentBytes: 1000 }, { file: path.join(ringDir(), names[3]!), offset: 0 });
  });

  it('the last segment cut anywhere (inside any synced append, or one byte short) is damage, not a torn tail', () => {
    for (const part of [1 / 3, 1 / 2, 1]) {
      fs.rmSync(ringDir(), { recursive: true, force: true });
      const { log } = open('sync', { segmentBytes: 100_000 });
      log.append([promise(65537)]);
      for (let i = 0; i < 20; i++) log.append([accept(i, 65537, 65537, bytes(300, i))]);
      log.close();
      expect(segs()).toHaveLength(1);
      const f = lastSeg();
      const size = fs.statSync(f).size;
      fs.truncateSync(f, part === 1 ? size - 1 : Math.floor(used(f) * part) + 7);
      expectDamaged('sync', { segmentBytes: 100_000 }, { file: f });
    }
  });

  it('the first segment deleted (nothing was ever trimmed) is damage', () => {
    const { names } = manySegments();
    fs.rmSync(path.join(ringDir(), names[0]!));
    expectDamaged('sync', { segmentBytes: 1000 }, { file: path.join(ringDir(), names[1]!), offset: 0 });
  });

  it('the last segment deleted is damage (its promise would be forgotten)', () => {
    const { names } = manySegments();
    fs.rmSync(path.join(ringDir(), names.at(-1)!));
    expectDamaged('sync', { segmentBytes: 1000 }, { file: path.join(ringDir(), names.at(-2)!) });
  });

  it('a log of the format before commit records (format 1) is read; a short tail is cut, a bad crc is damage', () => {
    const old = [promise(65537), accept(0, 65537, 65537, bytes(20, 1)), accept(1, 65537, 65537, bytes(20, 2))];
    const v1 = Buffer.concat([frame(Buffer.concat([Buffer.from([1]), f64(65537)])), ...[0, 1].map((i) => frame(Buffer.concat([Buffer.from([2]), f64(i), f64(65537), f64(65537), u32(20), Buffer.from(bytes(20, i + 1))])))]);
    fs.mkdirSync(ringDir(), { recursive: true });
    const f = path.join(ringDir(), '0000000000000001.seg');
    fs.writeFileSync(f, v1);
    const r = open('sync');
    expect(r.recovered.damage).toBeUndefined();
    expectState(r.recovered, new Model().applyAll(old));
    r.log.append([accept(2, 65537, 65537, bytes(5, 5))]); // appended to a new segment, in the current format
    r.log.close();
    expect(segs()).toEqual(['0000000000000001.seg', '0000000000000002.seg']);
    const again = open('sync');
    expectState(again.recovered, new Model().applyAll([...old, accept(2, 65537, 65537, bytes(5, 5))]));
    again.log.close();

    fs.rmSync(ringDir(), { recursive: true, force: true });
    fs.mkdirSync(ringDir());
    fs.writeFileSync(f, v1.subarray(0, v1.length - 5));
    const cut = open('sync');
    expect(cut.recovered.cutBytes).toBe(v1.length - 5 - (8 + 9) - (8 + 29 + 20));
    expect(cut.recovered.rejoin).toBe(false);
    cut.log.close();

    fs.rmSync(ringDir(), { recursive: true, force: true });
    fs.mkdirSync(ringDir());
    const flipped = Buffer.from(v1);
    flipped[flipped.length - 3] ^= 1;
    fs.writeFileSync(f, flipped);
    expectDamaged('sync');
  });

  it('--rejoin on a whole log is recorded: a restart before the rejoin finishes rejoins again', () => {
    const { log } = open('sync');
    log.append(first);
    log.close();
    const r = open('sync', { rejoin: true });
    expect(r.recovered.rejoin).toBe(true);
    expect(r.recovered.damage).toBeUndefined();
    expectState(r.recovered, new Model().applyAll(first)); // a whole log is kept
    r.log.close();
    const again = open('sync');
    expect(again.recovered.rejoin).toBe(true);
    again.log.append([{ kind: 'rejoined', ring: RING }]);
    again.log.close();
    expect(open('sync').recovered.rejoin).toBe(false);
  });

  it('a rejoin that finds nothing to fetch (every other acceptor at top 0) records rejoined: the next start votes', () => {
    const { log } = open('sync', { rejoin: true });
    const ids = [1, 2, 3];
    const node = new RingNode({ ring: RING, id: 1, ringOrder: ids, acceptors: ids, settings: { ...DEFAULT_RING_SETTINGS }, rejoin: true, incarnation: 7 });
    node.start(0);
    node.tick(1);
    log.append(node.out.drain().persist);
    // A young ring: the others promised but nothing was accepted yet.
    for (const from of [2, 3]) node.step({ t: MessageType.RejoinReply, ring: RING, from, nonce: 7, promised: 65538, top: 0 }, 2);
    node.tick(100);
    const persisted = node.out.drain().persist;
    log.append(persisted);
    log.close();
    expect(node.acceptor!.rejoining).toBe(false);
    expect(persisted.map((r) => r.kind)).toContain('rejoined');
    expect(open('sync').recovered.rejoin).toBe(false);
  });
});

describe('FileLog segments', () => {
  it('rotates at segmentBytes, deletes old segments after a trim, and recovers the right state', () => {
    const segmentBytes = 4096;
    const { log } = open('sync', { segmentBytes });
    const model = new Model();
    const add = (rs: PersistRecord[]) => {
      log.append(rs);
      model.applyAll(rs);
    };
    add([promise(65537)]);
    for (let i = 0; i < 40; i++) add([accept(i, 65537, 65537, bytes(1000, i)), decide(i, 1, 65537)]);
    add([promise(131073)]);
    const before = segs();
    expect(before.length).toBeGreaterThanOrEqual(8);
    expect(log.stats.segmentsCreated).toBe(before.length - 1);
    for (const n of before) expect(n).toMatch(/^\d{16}\.seg$/);
    for (const n of before) expect(fs.statSync(path.join(ringDir(), n)).size).toBe(segmentBytes); // made that long when created
    expect(log.stats.segmentsDeleted).toBe(0);

    add([trim(30)]);
    const after = segs();
    expect(log.stats.segmentsDeleted).toBeGreaterThan(0);
    expect(after.length).toBe(before.length - log.stats.segmentsDeleted);
    expect(after.length).toBeLessThanOrEqual(4); // instances 30..39 fit in about three 4 KB segments
    expect(after.at(-1)).toBe(before.at(-1));
    log.append([accept(40, 131073, 131073, bytes(5000, 0))]); // larger than segmentBytes: a segment of its own size
    model.apply(accept(40, 131073, 131073, bytes(5000, 0)));
    const big = fs.statSync(lastSeg()).size;
    expect(big).toBeGreaterThan(5000);
    log.append([accept(41, 131073, 131073, bytes(10, 0))]); // does not fit after it: the next segment
    model.apply(accept(41, 131073, 131073, bytes(10, 0)));
    // A new segment opens with its header (seq, its length, the first segment of the log), the current
    // promise and trim, and a commit; then the records of that append, then a commit naming its own offset.
    const head = fs.readFileSync(lastSeg());
    const seq = Number(segs().at(-1)!.slice(0, 16));
    expect([head.readUInt32LE(0), head[8], head.readDoubleLE(9), head.readDoubleLE(17), head.readDoubleLE(25), head.length]).toEqual([25, 6, seq, segmentBytes, Number(segs()[0]!.slice(0, 16)), segmentBytes]);
    expect([head.readUInt32LE(33), head[41], head.readDoubleLE(42)]).toEqual([9, 1, 131073]);
    expect([head.readUInt32LE(50), head[58], head.readDoubleLE(59)]).toEqual([9, 4, 30]);
    expect([head.readUInt32LE(67), head[75], head.readDoubleLE(76)]).toEqual([9, 5, 67]);
    expect([head[84 + 8], head.readDoubleLE(84 + 9)]).toEqual([2, 41]);
    const commitAt = 84 + 8 + 29 + 10;
    expect([head.readUInt32LE(commitAt), head[commitAt + 8], head.readDoubleLE(commitAt + 9), used(lastSeg())]).toEqual([9, 5, commitAt, commitAt + 17]);
    // The segment before it is sealed: it ends with a record naming this one, and a commit.
    const prev = fs.readFileSync(path.join(ringDir(), segs().at(-2)!));
    const sealAt = used(path.join(ringDir(), segs().at(-2)!)) - 34;
    expect([prev.readUInt32LE(sealAt), prev[sealAt + 8], prev.readDoubleLE(sealAt + 9), prev[sealAt + 17 + 8]]).toEqual([9, 9, seq, 5]);
    expect(prev.length).toBe(big);
    expect(segs().length).toBe(after.length + 2);
    log.close();

    const r = open('sync', { segmentBytes });
    expectState(r.recovered, model);
    expect(r.recovered.promised).toBe(131073);
    expect(r.recovered.trimmed).toBe(30);
    expect([...r.recovered.entries.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, k) => 30 + k));
    expect(r.recovered.segments).toBe(after.length + 2);

    // A later rotation and a trim past everything leave only the current segment, still carrying the state.
    for (let i = 42; i < 50; i++) {
      r.log.append([accept(i, 131073, 131073, bytes(1000, i))]);
      model.applyAll([accept(i, 131073, 131073, bytes(1000, i))]);
    }
    r.log.append([trim(1000)]);
    model.apply(trim(1000));
    r.log.append([accept(1000, 131073, 131073, bytes(10, 0))]);
    model.apply(accept(1000, 131073, 131073, bytes(10, 0)));
    expect(segs().length).toBe(1);
    r.log.close();
    const again = open('sync', { segmentBytes });
    expectState(again.recovered, model);
    expect(again.recovered.promised).toBe(131073);
    again.log.close();
  });

  it('keeps a segment whose decision marks an entry that is still held', () => {
    const segmentBytes = 2048;
    const { log } = open('async', { segmentBytes });
    const model = new Model();
    const add = (rs: PersistRecord[]) => {
      log.append(rs);
      model.applyAll(rs);
    };
    add([accept(100, 5, 5, bytes(10, 1))]); // held entry, undecided for a while
    for (let i = 0; i < 20; i++) add([accept(i, 5, 5, bytes(500, i))]);
    add([decide(100, 1, 5)]); // lands in a segment whose accepts are all below 20
    for (let i = 20; i < 30; i++) add([accept(i, 5, 5, bytes(500, i))]);
    add([trim(25)]);
    log.close();
    const r = open('async', { segmentBytes });
    expectState(r.recovered, model);
    expect(r.recovered.entries.get(100)!.decided).toBe(true);
    r.log.close();
  });
});

describe('FileLog errors and crc', () => {
  it('a directory that cannot be created gives ERR_RINGCAST_LOG naming the path', () => {
    const file = path.join(tmp, 'not-a-dir');
    fs.writeFileSync(file, 'x');
    const bad = path.join(file, 'logs');
    let err: unknown;
    try {
      FileLog.open(bad, RING, 'sync');
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'ERR_RINGCAST_LOG', name: 'RingcastError' });
    expect((err as Error).message).toContain(bad);
  });

  it('appending after close throws ERR_RINGCAST_LOG', () => {
    const { log } = open('async');
    log.close();
    expect(() => log.append([promise(1)])).toThrow(expect.objectContaining({ code: 'ERR_RINGCAST_LOG' }));
  });

  it('the pure crc32 matches the standard check value and node:zlib', () => {
    expect(crc32Js(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    const rnd = prng(7);
    const zcrc = (zlib as unknown as { crc32?: (b: Uint8Array) => number }).crc32;
    for (let n = 0; n < 50; n++) {
      const b = bytes(Math.floor(rnd() * 5000), Math.floor(rnd() * 256));
      expect(crc32Js(b)).toBe(crc32(b));
      if (typeof zcrc === 'function') expect(crc32Js(b)).toBe(zcrc(b) >>> 0);
      expect(crc32Js(b, 3, b.length)).toBe(crc32Js(b.subarray(3)));
    }
  });
});
