/**
 * The durable acceptor log of one ring: append-only segment files with group commit.
 *
 * What each mode survives:
 * - `sync`: every `append` ends with one fdatasync, and the driver calls `append` before it sends the turn's
 *   datagrams, so no vote or 1B leaves the process before the records behind it are on stable storage.
 *   Survives a process crash and a power loss (or kernel crash) of everything that was acknowledged.
 * - `async`: every `append` is written to the file (the OS page cache) but not fsynced. Survives a crash of
 *   the process (the kernel still writes the pages back), but not a power loss or kernel crash: the tail of
 *   what was voted on can be lost, which an acceptor must not do under Paxos. For tests and benchmarks, or
 *   for rings that accept that risk.
 * - `memory`: nothing is written and recovery is always empty. Survives nothing; an acceptor restarted in
 *   this mode has forgotten its promises and votes.
 *
 * Layout: `<dir>/ring-<ring>/<16-digit seq>.seg`, read in seq order. A segment is a sequence of records,
 * each framed `[u32 length][u32 crc32(payload)][payload]` (little-endian). The payload starts with a kind
 * byte; numbers (instances, ballots, vids, decision triples) are float64, exact for safe integers:
 *
 *   1 promise  [f64 ballot]
 *   2 accept   [f64 instance][f64 ballot][f64 vid][u32 valueLength][value bytes]
 *   3 decide   [u32 n][n x f64]   the flat triples [start, count, vid, ...] as the acceptor produced them
 *   4 trim     [f64 below]
 *
 * Recovery applies records in order (the same rules as `replayRecords`) and stops at the first bad or torn
 * record (short header, length past the end of the file or above 64 MiB, crc mismatch, unknown kind or a
 * malformed payload): that segment is truncated there and every later segment is deleted, so a corrupt record
 * is never applied and the log continues from the last good one.
 *
 * Rotation: once the current segment reaches `segmentBytes`, the next append starts a new segment whose first
 * records are the current promise and trim (in the same write as that append's records). Each segment
 * remembers the highest instance it can affect (accepts, and decisions clamped to the highest instance ever
 * accepted); after a trim, old segments whose highest instance is below the trimmed point are deleted.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import type { DurableLog } from '../driver.js';
import type { PersistRecord } from '../core/outbox.js';
import type { LogEntry } from '../core/acceptor.js';
import { applyRecord, emptyReplayState } from '../core/replay.js';
import { RingcastError } from '../errors.js';

export type LogMode = 'sync' | 'async' | 'memory';

export interface RecoveredLog {
  promised: number;
  trimmed: number;
  entries: Map<number, LogEntry>;
  /** Good records applied. */
  records: number;
  /** Bytes cut from a torn or corrupt tail (and from segments deleted after it). */
  cutBytes: number;
  /** Segment files kept after recovery. */
  segments: number;
}

export interface FileLogStats {
  appends: number;
  records: number;
  bytes: number;
  syncs: number;
  /** Total microseconds spent in fdatasync/fsync. */
  syncMicros: number;
  segmentsDeleted: number;
  /** Segments started by rotation. */
  segmentsCreated: number;
}

/** Frame header: u32 length, u32 crc32. */
export const FRAME_HEADER_BYTES = 8;
/** A record longer than this is taken as corruption. */
export const MAX_RECORD_BYTES = 64 * 1024 * 1024;
export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;

const KIND_PROMISE = 1;
const KIND_ACCEPT = 2;
const KIND_DECIDE = 3;
const KIND_TRIM = 4;
const SEG_RE = /^(\d{16})\.seg$/;
const READ_CHUNK = 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------
// crc32 (IEEE, the zlib/PNG polynomial)

let TABLE: Uint32Array | undefined;

/** Table-driven crc32, pure JS; the fallback where node:zlib has no crc32 (before Node 20.15). */
export function crc32Js(data: Uint8Array, start = 0, end = data.length): number {
  let t = TABLE;
  if (!t) {
    t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      t[n] = c >>> 0;
    }
    TABLE = t;
  }
  let crc = 0xffffffff;
  for (let i = start; i < end; i++) crc = t[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const zlibCrc = (zlib as unknown as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;

/** crc32 of `data[start, end)`: node:zlib's when it has one, else `crc32Js`. */
export function crc32(data: Uint8Array, start = 0, end = data.length): number {
  if (typeof zlibCrc === 'function') return zlibCrc(start === 0 && end === data.length ? data : data.subarray(start, end)) >>> 0;
  return crc32Js(data, start, end);
}

// ---------------------------------------------------------------------------------------------------------
// Encoding

function payloadBytes(r: PersistRecord): number {
  switch (r.kind) {
    case 'promise':
    case 'trim':
      return 1 + 8;
    case 'accept':
      return 1 + 24 + 4 + r.value.length;
    case 'decide':
      return 1 + 4 + 8 * r.decisions.length;
  }
}

function checkInt(x: number, what: string): void {
  if (!Number.isSafeInteger(x)) throw new RingcastError('ERR_RINGCAST_LOG', `cannot log ${what} ${x}: not a safe integer`);
}

/** Encode one framed record at `off` in `buf`; returns the offset after it. */
function encodeRecord(buf: Buffer, off: number, r: PersistRecord): number {
  const len = payloadBytes(r);
  const p = off + FRAME_HEADER_BYTES;
  let q = p + 1;
  switch (r.kind) {
    case 'promise':
      checkInt(r.ballot, 'ballot');
      buf[p] = KIND_PROMISE;
      q = buf.writeDoubleLE(r.ballot, q);
      break;
    case 'trim':
      checkInt(r.below, 'trim point');
      buf[p] = KIND_TRIM;
      q = buf.writeDoubleLE(r.below, q);
      break;
    case 'accept':
      checkInt(r.instance, 'instance');
      checkInt(r.ballot, 'ballot');
      checkInt(r.vid, 'vid');
      buf[p] = KIND_ACCEPT;
      q = buf.writeDoubleLE(r.instance, q);
      q = buf.writeDoubleLE(r.ballot, q);
      q = buf.writeDoubleLE(r.vid, q);
      q = buf.writeUInt32LE(r.value.length, q);
      buf.set(r.value, q);
      q += r.value.length;
      break;
    case 'decide':
      buf[p] = KIND_DECIDE;
      q = buf.writeUInt32LE(r.decisions.length, q);
      for (const x of r.decisions) {
        checkInt(x, 'decision');
        q = buf.writeDoubleLE(x, q);
      }
      break;
  }
  buf.writeUInt32LE(len, off);
  buf.writeUInt32LE(crc32(buf, p, p + len), off + 4);
  return p + len;
}

/** A decoded payload (the ring is implied by the log). */
type Decoded =
  | { kind: 'promise'; ballot: number }
  | { kind: 'accept'; instance: number; ballot: number; vid: number; value: Uint8Array }
  | { kind: 'decide'; decisions: number[] }
  | { kind: 'trim'; below: number };

function safe(x: number): boolean {
  return Number.isSafeInteger(x);
}

/** Decode a payload whose crc matched; undefined if malformed (taken as corruption). Copies the value. */
function decodePayload(b: Buffer, p: number, len: number): Decoded | undefined {
  if (len < 1) return undefined;
  const kind = b[p];
  const q = p + 1;
  switch (kind) {
    case KIND_PROMISE:
    case KIND_TRIM: {
      if (len !== 9) return undefined;
      const x = b.readDoubleLE(q);
      if (!safe(x)) return undefined;
      return kind === KIND_PROMISE ? { kind: 'promise', ballot: x } : { kind: 'trim', below: x };
    }
    case KIND_ACCEPT: {
      if (len < 29) return undefined;
      const instance = b.readDoubleLE(q);
      const ballot = b.readDoubleLE(q + 8);
      const vid = b.readDoubleLE(q + 16);
      const vlen = b.readUInt32LE(q + 24);
      if (len !== 29 + vlen || !safe(instance) || !safe(ballot) || !safe(vid)) return undefined;
      const value = new Uint8Array(vlen);
      value.set(b.subarray(q + 28, q + 28 + vlen));
      return { kind: 'accept', instance, ballot, vid, value };
    }
    case KIND_DECIDE: {
      if (len < 5) return undefined;
      const n = b.readUInt32LE(q);
      if (len !== 5 + 8 * n) return undefined;
      const decisions = new Array<number>(n);
      for (let i = 0; i < n; i++) {
        const x = b.readDoubleLE(q + 4 + 8 * i);
        if (!safe(x)) return undefined;
        decisions[i] = x;
      }
      return { kind: 'decide', decisions };
    }
    default:
      return undefined;
  }
}

// Replay: the one definition of what a sequence of records means lives in core/replay.ts (pure), shared
// with the simulator.
export { applyRecord, emptyReplayState, type ReplayState } from '../core/replay.js';

/** Highest instance a decide record can touch, given the highest instance ever accepted (-1: none). */
function decideReach(decisions: readonly number[], maxAccepted: number): number {
  let hi = -1;
  for (let k = 0; k + 2 < decisions.length; k += 3) {
    const count = decisions[k + 1]!;
    if (count > 0) hi = Math.max(hi, Math.min(decisions[k]! + count - 1, maxAccepted));
  }
  return hi;
}

// ---------------------------------------------------------------------------------------------------------
// The log

interface Segment {
  seq: number;
  file: string;
  /** Highest instance any record in this segment can affect; -1 when none. */
  maxInstance: number;
}

function logError(where: string, err: unknown): RingcastError {
  const msg = err instanceof Error ? err.message : String(err);
  return new RingcastError('ERR_RINGCAST_LOG', `acceptor log ${where}: ${msg}`);
}

function segName(seq: number): string {
  return `${String(seq).padStart(16, '0')}.seg`;
}

export class FileLog implements DurableLog {
  readonly stats: FileLogStats = { appends: 0, records: 0, bytes: 0, syncs: 0, syncMicros: 0, segmentsDeleted: 0, segmentsCreated: 0 };
  readonly mode: LogMode;
  readonly ring: number;
  /** `<dir>/ring-<ring>`; empty in memory mode. */
  readonly path: string;
  readonly segmentBytes: number;

  private segments: Segment[];
  private fd: number;
  private segSize: number;
  private promised: number;
  private trimmed: number;
  private maxAccepted: number;
  private broken: Error | undefined;
  private closed = false;

  private constructor(
    mode: LogMode,
    ring: number,
    dirPath: string,
    segmentBytes: number,
    segments: Segment[],
    fd: number,
    segSize: number,
    state: { promised: number; trimmed: number; maxAccepted: number },
  ) {
    this.mode = mode;
    this.ring = ring;
    this.path = dirPath;
    this.segmentBytes = segmentBytes;
    this.segments = segments;
    this.fd = fd;
    this.segSize = segSize;
    this.promised = state.promised;
    this.trimmed = state.trimmed;
    this.maxAccepted = state.maxAccepted;
  }

  /** Open (creating if needed) the log of one ring in directory `dir`, recover it, and return both. */
  static open(dir: string, ring: number, mode: LogMode, opts?: { segmentBytes?: number }): { log: FileLog; recovered: RecoveredLog } {
    const segmentBytes = opts?.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    if (!(segmentBytes > 0)) throw new RingcastError('ERR_RINGCAST_LOG', `segmentBytes must be positive, got ${segmentBytes}`);
    if (mode === 'memory') {
      const log = new FileLog(mode, ring, '', segmentBytes, [], -1, 0, { promised: 0, trimmed: 0, maxAccepted: -1 });
      return { log, recovered: { promised: 0, trimmed: 0, entries: new Map(), records: 0, cutBytes: 0, segments: 0 } };
    }
    const ringDir = path.join(dir, `ring-${ring}`);
    let names: string[];
    try {
      fs.mkdirSync(ringDir, { recursive: true });
      names = fs.readdirSync(ringDir);
      fs.accessSync(ringDir, fs.constants.W_OK);
    } catch (err) {
      throw logError(`directory ${ringDir}`, err);
    }
    const seqs = names
      .map((n) => SEG_RE.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);

    const state = emptyReplayState();
    const segments: Segment[] = [];
    let records = 0;
    let cutBytes = 0;
    let maxAccepted = -1;
    let stopped = false;
    let lastSize = 0;
    for (const seq of seqs) {
      const file = path.join(ringDir, segName(seq));
      if (stopped) {
        try {
          cutBytes += fs.statSync(file).size;
          fs.unlinkSync(file);
        } catch (err) {
          throw logError(`deleting ${file} after a corrupt record`, err);
        }
        continue;
      }
      const seg: Segment = { seq, file, maxInstance: -1 };
      let r: ScanResult;
      try {
        r = scanSegment(file, (d) => {
          applyRecord(state, d);
          records++;
          if (d.kind === 'accept') {
            maxAccepted = Math.max(maxAccepted, d.instance);
            seg.maxInstance = Math.max(seg.maxInstance, d.instance);
          } else if (d.kind === 'decide') {
            seg.maxInstance = Math.max(seg.maxInstance, decideReach(d.decisions, maxAccepted));
          }
        });
      } catch (err) {
        throw logError(`reading ${file}`, err);
      }
      segments.push(seg);
      lastSize = r.good;
      if (r.good < r.size) {
        cutBytes += r.size - r.good;
        stopped = true;
        try {
          const fd = fs.openSync(file, 'r+');
          try {
            fs.ftruncateSync(fd, r.good);
            fs.fsyncSync(fd);
          } finally {
            fs.closeSync(fd);
          }
        } catch (err) {
          throw logError(`truncating ${file} at ${r.good}`, err);
        }
      }
    }

    let fd: number;
    try {
      if (segments.length === 0) {
        const file = path.join(ringDir, segName(1));
        segments.push({ seq: 1, file, maxInstance: -1 });
        lastSize = 0;
      }
      const cur = segments[segments.length - 1]!;
      fd = fs.openSync(cur.file, 'a');
      if (stopped || seqs.length === 0) syncDir(ringDir);
    } catch (err) {
      throw logError(`opening ${ringDir}`, err);
    }
    const log = new FileLog(mode, ring, ringDir, segmentBytes, segments, fd, lastSize, {
      promised: state.promised,
      trimmed: state.trimmed,
      maxAccepted,
    });
    return {
      log,
      recovered: { promised: state.promised, trimmed: state.trimmed, entries: state.entries, records, cutBytes, segments: segments.length },
    };
  }

  /** Segment files currently held (oldest first). */
  segmentFiles(): string[] {
    return this.segments.map((s) => s.file);
  }

  /**
   * Make `records` durable as far as the mode promises: one write of all of them (with a new segment's
   * header records first when rotating), then in sync mode one fdatasync.
   */
  append(records: readonly PersistRecord[]): void {
    if (this.closed) throw new RingcastError('ERR_RINGCAST_LOG', `acceptor log ${this.path || '(memory)'} is closed`);
    if (this.broken) throw new RingcastError('ERR_RINGCAST_LOG', `acceptor log ${this.path} failed earlier: ${this.broken.message}`);
    for (const r of records) {
      if (r.ring !== this.ring) throw new RingcastError('ERR_RINGCAST_LOG', `record for ring ${r.ring} given to the log of ring ${this.ring}`);
    }
    this.stats.appends++;
    this.stats.records += records.length;
    if (this.mode === 'memory' || records.length === 0) return;

    const header: PersistRecord[] = [];
    const rotate = this.segSize >= this.segmentBytes;
    if (rotate) {
      if (this.promised > 0) header.push({ kind: 'promise', ring: this.ring, ballot: this.promised });
      if (this.trimmed > 0) header.push({ kind: 'trim', ring: this.ring, below: this.trimmed });
    }
    let size = 0;
    for (const r of header) size += FRAME_HEADER_BYTES + payloadBytes(r);
    for (const r of records) size += FRAME_HEADER_BYTES + payloadBytes(r);
    const buf = Buffer.allocUnsafe(size);
    let off = 0;
    for (const r of header) off = encodeRecord(buf, off, r);
    for (const r of records) off = encodeRecord(buf, off, r); // throws before anything is written

    try {
      if (rotate) this.rotate();
      const seg = this.segments[this.segments.length - 1]!;
      let w = 0;
      while (w < size) w += fs.writeSync(this.fd, buf, w, size - w);
      this.segSize += size;
      this.stats.bytes += size;
      if (this.mode === 'sync') this.sync(() => fs.fdatasyncSync(this.fd));

      let trimmedUp = false;
      for (const r of records) {
        switch (r.kind) {
          case 'promise':
            if (r.ballot > this.promised) this.promised = r.ballot;
            break;
          case 'accept':
            if (r.instance > this.maxAccepted) this.maxAccepted = r.instance;
            if (r.instance > seg.maxInstance) seg.maxInstance = r.instance;
            break;
          case 'decide':
            seg.maxInstance = Math.max(seg.maxInstance, decideReach(r.decisions, this.maxAccepted));
            break;
          case 'trim':
            if (r.below > this.trimmed) {
              this.trimmed = r.below;
              trimmedUp = true;
            }
            break;
        }
      }
      if (trimmedUp) this.dropSegments();
    } catch (err) {
      this.broken = err instanceof Error ? err : new Error(String(err));
      throw logError(`append to ${this.path}`, err);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.fd >= 0) {
      try {
        if (this.mode === 'sync' && !this.broken) fs.fdatasyncSync(this.fd);
        fs.closeSync(this.fd);
      } catch (err) {
        throw logError(`closing ${this.path}`, err);
      } finally {
        this.fd = -1;
      }
    }
  }

  private sync(f: () => void): void {
    const t0 = process.hrtime.bigint();
    f();
    this.stats.syncs++;
    this.stats.syncMicros += Number(process.hrtime.bigint() - t0) / 1000;
  }

  /** Close the current segment (synced in sync mode already) and start the next one. */
  private rotate(): void {
    const last = this.segments[this.segments.length - 1]!;
    const seq = last.seq + 1;
    const file = path.join(this.path, segName(seq));
    const fd = fs.openSync(file, 'a');
    fs.closeSync(this.fd);
    this.fd = fd;
    this.segments.push({ seq, file, maxInstance: -1 });
    this.segSize = 0;
    this.stats.segmentsCreated++;
    if (this.mode === 'sync') this.sync(() => syncDir(this.path));
  }

  /** Delete old segments (never the current one) that hold nothing at or above the trimmed point. */
  private dropSegments(): void {
    const cur = this.segments[this.segments.length - 1]!;
    const drop = this.segments.filter((s) => s !== cur && s.maxInstance < this.trimmed);
    if (drop.length === 0) return;
    // The trim record that makes these segments useless must reach the disk before they leave it, or a
    // power loss could keep the deletion and lose the trim (async mode syncs here too: it is rare).
    if (this.mode !== 'sync') this.sync(() => fs.fdatasyncSync(this.fd));
    for (const s of drop) {
      fs.unlinkSync(s.file);
      this.stats.segmentsDeleted++;
    }
    this.segments = this.segments.filter((s) => !drop.includes(s));
    if (this.mode === 'sync') this.sync(() => syncDir(this.path));
  }
}

function syncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

interface ScanResult {
  /** File size. */
  size: number;
  /** Offset after the last good record. */
  good: number;
}

/** Read a segment record by record through a bounded buffer, calling `apply` on each good record. */
function scanSegment(file: string, apply: (d: Decoded) => void): ScanResult {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    let buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(size, FRAME_HEADER_BYTES)));
    let bufPos = 0; // file offset of buf[0]
    let bufLen = 0;
    /** Make file bytes [pos, pos + n) available in buf; false if the file ends first. */
    const ensure = (pos: number, n: number): boolean => {
      if (pos + n > size) return false;
      if (pos >= bufPos && pos + n <= bufPos + bufLen) return true;
      const want = Math.min(Math.max(n, READ_CHUNK), size - pos);
      if (buf.length < want) buf = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const k = fs.readSync(fd, buf, got, want - got, pos + got);
        if (k === 0) break;
        got += k;
      }
      bufPos = pos;
      bufLen = got;
      return got >= n;
    };
    let pos = 0;
    while (pos < size) {
      if (!ensure(pos, FRAME_HEADER_BYTES)) break;
      const h = pos - bufPos;
      const len = buf.readUInt32LE(h);
      const crc = buf.readUInt32LE(h + 4);
      if (len < 1 || len > MAX_RECORD_BYTES) break;
      if (!ensure(pos + FRAME_HEADER_BYTES, len)) break;
      const p = pos + FRAME_HEADER_BYTES - bufPos;
      if (crc32(buf, p, p + len) !== crc) break;
      const d = decodePayload(buf, p, len);
      if (!d) break;
      apply(d);
      pos += FRAME_HEADER_BYTES + len;
    }
    return { size, good: pos };
  } finally {
    fs.closeSync(fd);
  }
}
