import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
// The package index does not export the log yet; the build output is what runs.
import { FileLog, crc32, crc32Js, type LogMode } from '../dist/storage/file-log.js';
import type { PersistRecord } from '../dist/core/outbox.js';
import type { LogEntry } from '../dist/core/acceptor.js';

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

const ringDir = () => path.join(tmp, `ring-${RING}`);
const segs = () => fs.readdirSync(ringDir()).filter((n) => n.endsWith('.seg')).sort();
const lastSeg = () => path.join(ringDir(), segs().at(-1)!);

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
      const { log, recovered } = FileLog.open(tmp, RING, mode);
      expect(recovered.records).toBe(0);
      expect(recovered.entries.size).toBe(0);
      log.append(EVERY_KIND.slice(0, 6));
      log.append(EVERY_KIND.slice(6));
      expect(log.stats.appends).toBe(2);
      expect(log.stats.records).toBe(EVERY_KIND.length);
      expect(log.stats.bytes).toBe(fs.statSync(lastSeg()).size);
      expect(log.stats.syncs).toBe(mode === 'sync' ? 2 : 0);
      log.close();

      const again = FileLog.open(tmp, RING, mode);
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
    const { log, recovered } = FileLog.open(tmp, RING, 'memory');
    expect(recovered).toEqual({ promised: 0, trimmed: 0, entries: new Map(), records: 0, cutBytes: 0, segments: 0 });
    log.append(EVERY_KIND);
    expect(log.stats.records).toBe(EVERY_KIND.length);
    expect(log.stats.bytes).toBe(0);
    log.close();
    expect(fs.readdirSync(tmp)).toEqual([]);
    const again = FileLog.open(tmp, RING, 'memory');
    expect(again.recovered.entries.size).toBe(0);
    expect(again.recovered.promised).toBe(0);
  });

  it('one append is one write of all its records, and an empty append writes nothing', () => {
    const { log } = FileLog.open(tmp, RING, 'sync');
    log.append([]);
    expect(log.stats.syncs).toBe(0);
    expect(fs.statSync(lastSeg()).size).toBe(0);
    log.append(EVERY_KIND);
    expect(log.stats.syncs).toBe(1);
    expect(log.stats.syncMicros).toBeGreaterThan(0);
    log.close();
  });

  it('rejects a record of another ring and a value that is not a safe integer, writing nothing', () => {
    const { log } = FileLog.open(tmp, RING, 'async');
    expect(() => log.append([{ kind: 'promise', ring: RING + 1, ballot: 5 }])).toThrow(/ring 4/);
    expect(() => log.append([promise(5), accept(0.5, 5, 5, bytes(1, 1))])).toThrow(expect.objectContaining({ code: 'ERR_RINGCAST_LOG' }));
    expect(fs.statSync(lastSeg()).size).toBe(0);
    log.append([promise(9)]);
    log.close();
    expect(FileLog.open(tmp, RING, 'async').recovered.promised).toBe(9);
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
          const r = FileLog.open(tmp, RING, 'async', { segmentBytes });
          expectState(r.recovered, model);
          expect(r.recovered.cutBytes).toBe(0);
          log = r.log;
        }
      }
      deleted += log.stats.segmentsDeleted;
      log.close();
      const r = FileLog.open(tmp, RING, 'async', { segmentBytes });
      expectState(r.recovered, model);
      expect(model.entries.size).toBeGreaterThan(0);
      expect([...model.entries.values()].some((e) => e.decided)).toBe(true);
      expect([...model.entries.values()].some((e) => e.value.length > 20_000)).toBe(true);
      expect(deleted).toBeGreaterThan(0);
      r.log.close();
    });
  }
});

describe('FileLog recovery from a torn or corrupt tail', () => {
  const first = [promise(65537), accept(0, 65537, 65537, bytes(100, 1)), accept(1, 65537, 65537, bytes(50, 2)), decide(0, 2, 65537)];
  const lastBatch = [accept(2, 65537, 65537, bytes(400, 3))];
  const after = [accept(3, 65537, 65537, bytes(20, 4)), trim(1)];

  function writeBoth(mode: LogMode): number {
    const { log } = FileLog.open(tmp, RING, mode);
    log.append(first);
    const good = fs.statSync(lastSeg()).size;
    log.append(lastBatch);
    log.close();
    return good;
  }

  function recoverAndContinue(good: number, mode: LogMode): void {
    const size = fs.statSync(lastSeg()).size;
    const r = FileLog.open(tmp, RING, mode);
    expect(r.recovered.cutBytes).toBe(size - good);
    expect(r.recovered.cutBytes).toBeGreaterThan(0);
    expect(r.recovered.records).toBe(first.length);
    expectState(r.recovered, new Model().applyAll(first));
    expect(r.recovered.entries.has(2)).toBe(false);
    expect(fs.statSync(lastSeg()).size).toBe(good);
    r.log.append(after);
    r.log.close();
    const again = FileLog.open(tmp, RING, mode);
    expect(again.recovered.cutBytes).toBe(0);
    expect(again.recovered.records).toBe(first.length + after.length);
    expectState(again.recovered, new Model().applyAll([...first, ...after]));
    again.log.close();
  }

  for (const mode of ['sync', 'async'] as LogMode[]) {
    it(`${mode}: a file truncated mid-record is cut there and the log goes on`, () => {
      const good = writeBoth(mode);
      fs.truncateSync(lastSeg(), good + 200); // header and half the payload of the last record
      recoverAndContinue(good, mode);
    });

    it(`${mode}: a flipped byte in the last record's payload is cut`, () => {
      const good = writeBoth(mode);
      const f = lastSeg();
      const b = fs.readFileSync(f);
      b[good + 8 + 100] ^= 0x40; // inside the value
      fs.writeFileSync(f, b);
      recoverAndContinue(good, mode);
    });
  }

  it('a torn frame header, an absurd length and a zero-filled tail are cut', () => {
    for (const tail of [Buffer.from([9, 0, 0]), Buffer.from([0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 1]), Buffer.alloc(4096)]) {
      fs.rmSync(ringDir(), { recursive: true, force: true });
      const { log } = FileLog.open(tmp, RING, 'async');
      log.append(first);
      log.close();
      const good = fs.statSync(lastSeg()).size;
      fs.appendFileSync(lastSeg(), tail);
      const r = FileLog.open(tmp, RING, 'async');
      expect(r.recovered.cutBytes).toBe(tail.length);
      expectState(r.recovered, new Model().applyAll(first));
      expect(fs.statSync(lastSeg()).size).toBe(good);
      r.log.close();
    }
  });

  it('an unknown kind byte (with a valid crc) is never applied', () => {
    const { log } = FileLog.open(tmp, RING, 'async');
    log.append(first);
    log.close();
    const payload = Buffer.from([77, 1, 2, 3]);
    const frame = Buffer.alloc(8);
    frame.writeUInt32LE(payload.length, 0);
    frame.writeUInt32LE(crc32(payload), 4);
    fs.appendFileSync(lastSeg(), Buffer.concat([frame, payload, frame, payload]));
    const r = FileLog.open(tmp, RING, 'async');
    expect(r.recovered.cutBytes).toBe(2 * (8 + payload.length));
    expect(r.recovered.records).toBe(first.length);
    r.log.close();
  });

  it('corruption in an older segment cuts it there and deletes every later segment', () => {
    const { log } = FileLog.open(tmp, RING, 'async', { segmentBytes: 1000 });
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
    // Flip a byte in the value of the first accept of the second segment.
    const second = path.join(ringDir(), names[1]!);
    const b = fs.readFileSync(second);
    // The second segment starts with the promise header record (8 + 9 bytes), then an accept.
    const at = 17 + 8 + 29 + 10;
    b[at] ^= 1;
    fs.writeFileSync(second, b);
    const r = FileLog.open(tmp, RING, 'async', { segmentBytes: 1000 });
    expect(r.recovered.segments).toBe(2);
    expect(segs()).toEqual(names.slice(0, 2));
    expect(fs.statSync(second).size).toBe(17);
    expect(r.recovered.cutBytes).toBeGreaterThan(b.length - 17);
    const firstSegAccepts = r.recovered.entries.size;
    expect(firstSegAccepts).toBeGreaterThan(0);
    expectState(r.recovered, new Model().applyAll(all.slice(0, 1 + firstSegAccepts)));
    r.log.close();
  });
});

describe('FileLog segments', () => {
  it('rotates at segmentBytes, deletes old segments after a trim, and recovers the right state', () => {
    const segmentBytes = 4096;
    const { log } = FileLog.open(tmp, RING, 'sync', { segmentBytes });
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
    for (const n of before.slice(0, -1)) expect(fs.statSync(path.join(ringDir(), n)).size).toBeLessThan(segmentBytes + 1100);
    expect(log.stats.segmentsDeleted).toBe(0);

    add([trim(30)]);
    const after = segs();
    expect(log.stats.segmentsDeleted).toBeGreaterThan(0);
    expect(after.length).toBe(before.length - log.stats.segmentsDeleted);
    expect(after.length).toBeLessThanOrEqual(4); // instances 30..39 fit in about three 4 KB segments
    expect(after.at(-1)).toBe(before.at(-1));
    log.append([accept(40, 131073, 131073, bytes(5000, 0))]); // past segmentBytes: the next append rotates
    model.apply(accept(40, 131073, 131073, bytes(5000, 0)));
    log.append([accept(41, 131073, 131073, bytes(10, 0))]);
    model.apply(accept(41, 131073, 131073, bytes(10, 0)));
    // The new segment opens with the current promise and trim, then the records of that append.
    const head = fs.readFileSync(lastSeg());
    expect([head.readUInt32LE(0), head[8], head.readDoubleLE(9)]).toEqual([9, 1, 131073]);
    expect([head.readUInt32LE(17), head[25], head.readDoubleLE(26)]).toEqual([9, 4, 30]);
    expect([head[42], head.readDoubleLE(43)]).toEqual([2, 41]);
    expect(segs().length).toBe(after.length + 1);
    log.close();

    const r = FileLog.open(tmp, RING, 'sync', { segmentBytes });
    expectState(r.recovered, model);
    expect(r.recovered.promised).toBe(131073);
    expect(r.recovered.trimmed).toBe(30);
    expect([...r.recovered.entries.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, k) => 30 + k));
    expect(r.recovered.segments).toBe(after.length + 1);

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
    const again = FileLog.open(tmp, RING, 'sync', { segmentBytes });
    expectState(again.recovered, model);
    expect(again.recovered.promised).toBe(131073);
    again.log.close();
  });

  it('keeps a segment whose decision marks an entry that is still held', () => {
    const segmentBytes = 2048;
    const { log } = FileLog.open(tmp, RING, 'async', { segmentBytes });
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
    const r = FileLog.open(tmp, RING, 'async', { segmentBytes });
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
    const { log } = FileLog.open(tmp, RING, 'async');
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
