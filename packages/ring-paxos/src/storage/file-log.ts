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
 * Only `sync` mode makes the damage rules below sound after a power loss: in `async` mode the unsynced
 * tail lost with the page cache is taken for a torn tail, and the node votes again.
 *
 * Layout (format 3): `<dir>/ring-<ring>/<16-digit seq>.seg`, read in seq order. A segment is created with
 * a fixed length (`segmentBytes`, or more for an append larger than that), zeros after its header, under a
 * temporary name, fdatasynced and renamed, the directory fsynced: once a segment is listed, its length
 * and header are on stable storage. Appends write into it in place. It holds records, each framed
 * `[u32 length][u32 crc32(payload)][payload]` (little-endian). The payload starts with a kind byte;
 * numbers (instances, ballots, vids, decision triples, offsets, seqs) are float64, exact for safe integers:
 *
 *   1 promise  [f64 ballot]
 *   2 accept   [f64 instance][f64 ballot][f64 vid][u32 valueLength][value bytes]
 *   3 decide   [u32 n][n x f64]   the flat triples [start, count, vid, ...] as the acceptor produced them
 *   4 trim     [f64 below]
 *   5 commit   [f64 at]            ends every append; `at` is its own offset in the segment
 *   6 segment  [f64 seq][f64 size][f64 first]   the header, first record of every segment: its seq, the
 *                                  length it was created with, and the lowest seq the log held then
 *   7 rejoin   []                  the acceptor lost (part of) its log and is rejoining
 *   8 rejoined []                  ... and has finished: the log is whole again
 *   9 next     [f64 seq]           seals a segment: segment seq (created and synced first) follows it
 *  10 dropped  [f64 below]         the segments below seq `below` are being deleted (after a trim)
 *
 * A header is followed by the state a reader of that segment alone needs (promise, trim, a pending
 * rejoin) and a commit. Each append is one write of its records and a commit, then (sync mode) one
 * fdatasync; an append that does not fit in the rest of the current segment first creates the next one and
 * seals the current one (`next`, synced in sync mode). A trim that makes old segments useless first
 * writes a synced `dropped` record, then deletes them, oldest first, then fsyncs the directory.
 *
 * Recovery reads every segment, applies the good records in order (`applyRecord`, core/replay.ts),
 * and classifies what it finds:
 * - a **torn tail**, zeroed silently (the length stays): bytes after the last good record of the last
 *   segment with no valid commit record after them, whatever they are (a crash in the middle of a write
 *   can leave any prefix of it, page by page). Only the bytes of an append that was not synced qualify:
 *   every synced append ends with a commit, and a bad record before a commit is damage. (The same holds for
 *   the segment before the last when a crash came between creating the last one and sealing it; the seal
 *   is then written.)
 * - **damage**, everything else: a bad record with a commit after it; bad bytes in a segment that is not
 *   the last; a segment whose length is not the one its header gives (cut short, or grown); a segment
 *   missing before, between or after the others (the headers' `first` and the `dropped` records say where
 *   the log begins, a `next` record in the last segment says one followed it); a damaged header. The log
 *   may have lost promises or votes. Recovery then forgets the whole log: it creates a new segment whose
 *   header says the log begins there and holds a `rejoin` record, moves the old segments into
 *   `<ring dir>/damaged-<seq>/` (the newest three incidents are kept), and reports `rejoin: true` with the
 *   file, offset and reason; the node must rejoin (see the README) before it answers Phase 1 or votes.
 * A `rejoin` record with no `rejoined` after it also reports `rejoin: true`: a rejoin that a crash
 * interrupted is started again.
 * What recovery cannot see (documented limits): synced records zeroed in place with the length kept, at
 * the end of the last segment (they look like the unwritten rest); bytes damaged in the final commit
 * record of the last segment and, before it, only in the records of the same append (that append then has
 * no commit, like one torn before its commit was written: it is cut, nothing before it); a log directory
 * emptied of every segment (it looks like a new node: start it with `--rejoin`).
 *
 * Format 1 (no headers, no commit records, files that grow by appending): read by the same rules as
 * before: a bad record is a torn tail only when it ends the last segment cut short or zero; damage
 * otherwise. Appends then go to a new format-3 segment. (Format 2, never released, is read as damage.)
 *
 * Each segment remembers the highest instance it can affect (accepts, and decisions clamped to the highest
 * instance ever accepted); after a trim, the oldest segments whose highest instance is below the trimmed
 * point are deleted.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import type { DurableLog } from '../driver.js';
import type { PersistRecord } from '../core/outbox.js';
import type { LogEntry } from '../core/acceptor.js';
import { applyRecord, emptyReplayState, type ReplayRecord } from '../core/replay.js';
import { ERR, RingcastError } from '../errors.js';

export type LogMode = 'sync' | 'async' | 'memory';

/** Where recovery found a log that lost synced records. */
export interface LogDamage {
  /** The segment file (or the store's name for it). */
  file: string;
  /** Byte offset in it where the damage starts. */
  offset: number;
  reason: string;
}

export interface RecoveredLog {
  promised: number;
  trimmed: number;
  entries: Map<number, LogEntry>;
  /** Good records applied. */
  records: number;
  /** Bytes cut from a torn tail. */
  cutBytes: number;
  /** Segment files kept after recovery. */
  segments: number;
  /** The acceptor must rejoin before it takes part: the log is damaged, a rejoin was asked, or one was left unfinished. */
  rejoin: boolean;
  /** Set when the log lost synced records (it was then set aside and the state above is empty). */
  damage?: LogDamage;
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
export const KIND_COMMIT = 5;
const KIND_SEGMENT = 6;
const KIND_REJOIN = 7;
const KIND_REJOINED = 8;
const KIND_NEXT = 9;
const KIND_DROPPED = 10;
/** Bytes of a framed commit record. */
export const COMMIT_BYTES = FRAME_HEADER_BYTES + 9;
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

/** Every record the log writes: what replay reads, plus the framing records it does not apply. */
type LogRecord =
  | ReplayRecord
  | { kind: 'commit'; at: number }
  | { kind: 'segment'; seq: number; size: number; first: number }
  | { kind: 'next'; seq: number }
  | { kind: 'dropped'; below: number };

function payloadBytes(r: LogRecord): number {
  switch (r.kind) {
    case 'rejoin':
    case 'rejoined':
      return 1;
    case 'promise':
    case 'trim':
    case 'commit':
    case 'next':
    case 'dropped':
      return 1 + 8;
    case 'segment':
      return 1 + 24;
    case 'accept':
      return 1 + 24 + 4 + r.value.length;
    case 'decide':
      return 1 + 4 + 8 * r.decisions.length;
  }
}

function checkInt(x: number, what: string): void {
  if (!Number.isSafeInteger(x)) throw new RingcastError(ERR.LOG, `cannot log ${what} ${x}: not a safe integer`);
}

/** Encode one framed record at `off` in `buf`; returns the offset after it. */
function encodeRecord(buf: Buffer, off: number, r: LogRecord): number {
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
    case 'commit':
      buf[p] = KIND_COMMIT;
      q = buf.writeDoubleLE(r.at, q);
      break;
    case 'segment':
      buf[p] = KIND_SEGMENT;
      q = buf.writeDoubleLE(r.seq, q);
      q = buf.writeDoubleLE(r.size, q);
      q = buf.writeDoubleLE(r.first, q);
      break;
    case 'next':
      buf[p] = KIND_NEXT;
      q = buf.writeDoubleLE(r.seq, q);
      break;
    case 'dropped':
      buf[p] = KIND_DROPPED;
      q = buf.writeDoubleLE(r.below, q);
      break;
    case 'rejoin':
      buf[p] = KIND_REJOIN;
      break;
    case 'rejoined':
      buf[p] = KIND_REJOINED;
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

const safe = Number.isSafeInteger;

/** Decode a payload whose crc matched; undefined if malformed (taken as corruption). Copies the value. */
function decodePayload(b: Buffer, p: number, len: number): LogRecord | undefined {
  if (len < 1) return undefined;
  const kind = b[p];
  const q = p + 1;
  switch (kind) {
    case KIND_PROMISE:
    case KIND_TRIM:
    case KIND_COMMIT:
    case KIND_NEXT:
    case KIND_DROPPED: {
      if (len !== 9) return undefined;
      const x = b.readDoubleLE(q);
      if (!safe(x)) return undefined;
      if (kind === KIND_PROMISE) return { kind: 'promise', ballot: x };
      if (kind === KIND_TRIM) return { kind: 'trim', below: x };
      if (kind === KIND_COMMIT) return { kind: 'commit', at: x };
      return kind === KIND_NEXT ? { kind: 'next', seq: x } : { kind: 'dropped', below: x };
    }
    case KIND_SEGMENT: {
      if (len !== 25) return undefined;
      const seq = b.readDoubleLE(q);
      const size = b.readDoubleLE(q + 8);
      const first = b.readDoubleLE(q + 16);
      return safe(seq) && safe(size) && safe(first) ? { kind: 'segment', seq, size, first } : undefined;
    }
    case KIND_REJOIN:
      return len === 1 ? { kind: 'rejoin' } : undefined;
    case KIND_REJOINED:
      return len === 1 ? { kind: 'rejoined' } : undefined;
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
// Where segments live

/** Reads one segment. */
export interface SegmentReader {
  readonly size: number;
  /** Copy up to `n` bytes at file offset `pos` into `buf` at `off`; returns how many. */
  read(pos: number, buf: Uint8Array, off: number, n: number): number;
  close(): void;
}

/**
 * The segments of one ring's log, by seq: files in a directory (`FsSegments`), or bytes in memory
 * (`MemSegments`, the simulator's disk, which survives a simulated crash). The log and its recovery run
 * the same code over either.
 */
export interface SegmentStore {
  /** Where the log lives (for messages). */
  readonly where: string;
  /** Segment seqs present (any order). */
  list(): number[];
  /** The name of segment `seq` (for messages). */
  name(seq: number): string;
  open(seq: number): SegmentReader;
  /**
   * Create segment `seq`, `size` bytes long (zeros after `head`), durably and atomically: once it is
   * listed, its length and its `head` are on stable storage, and so is its directory entry.
   */
  create(seq: number, size: number, head: Uint8Array): void;
  /** Write `data` at offset `pos` of segment `seq` (inside its size). */
  write(seq: number, pos: number, data: Uint8Array): void;
  /** fdatasync segment `seq`. */
  sync(seq: number): void;
  /** Cut segment `seq` to `size` bytes, durably (format-1 segments only). */
  truncate(seq: number, size: number): void;
  remove(seq: number): void;
  /** Move segments out of the log, kept for inspection. */
  setAside(seqs: readonly number[]): void;
  /** Make removals and renames durable. */
  syncDir(): void;
  close(): void;
}

function segName(seq: number): string {
  return `${String(seq).padStart(16, '0')}.seg`;
}

function fsyncPath(p: string): void {
  const fd = fs.openSync(p, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Damaged logs set aside per ring directory: the newest this many are kept. */
const KEEP_DAMAGED = 3;

/** Segment files in a directory; keeps one write descriptor open. */
export class FsSegments implements SegmentStore {
  private fd = -1;
  private fdSeq = -1;
  constructor(readonly where: string) {}

  list(): number[] {
    return fs
      .readdirSync(this.where)
      .map((n) => SEG_RE.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]));
  }

  name(seq: number): string {
    return path.join(this.where, segName(seq));
  }

  open(seq: number): SegmentReader {
    const fd = fs.openSync(this.name(seq), 'r');
    return {
      size: fs.fstatSync(fd).size,
      read: (pos, buf, off, n) => fs.readSync(fd, buf, off, n, pos),
      close: () => fs.closeSync(fd),
    };
  }

  private writeFd(seq: number): number {
    if (this.fdSeq !== seq) {
      const fd = fs.openSync(this.name(seq), 'r+');
      this.closeFd();
      this.fd = fd;
      this.fdSeq = seq;
    }
    return this.fd;
  }

  private closeFd(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
    this.fdSeq = -1;
  }

  create(seq: number, size: number, head: Uint8Array): void {
    // Built under a temporary name and renamed: a crash leaves either no segment or a whole, synced one.
    const tmp = `${this.name(seq)}.tmp`;
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.ftruncateSync(fd, size);
      let w = 0;
      while (w < head.length) w += fs.writeSync(fd, head, w, head.length - w, w);
      fs.fdatasyncSync(fd); // covers the length too
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.name(seq));
    this.syncDir();
  }

  write(seq: number, pos: number, data: Uint8Array): void {
    const fd = this.writeFd(seq);
    let w = 0;
    while (w < data.length) w += fs.writeSync(fd, data, w, data.length - w, pos + w);
  }

  sync(seq: number): void {
    fs.fdatasyncSync(this.writeFd(seq));
  }

  truncate(seq: number, size: number): void {
    const fd = this.writeFd(seq);
    fs.ftruncateSync(fd, size);
    fs.fsyncSync(fd);
  }

  remove(seq: number): void {
    if (this.fdSeq === seq) this.closeFd();
    fs.unlinkSync(this.name(seq));
  }

  /** Into `damaged-<first seq>/`, one directory per incident; only the newest KEEP_DAMAGED stay. */
  setAside(seqs: readonly number[]): void {
    if (seqs.length === 0) return;
    const aside = path.join(this.where, `damaged-${String(Math.min(...seqs)).padStart(16, '0')}`);
    fs.mkdirSync(aside, { recursive: true });
    for (const seq of seqs) {
      if (this.fdSeq === seq) this.closeFd();
      fs.renameSync(this.name(seq), path.join(aside, segName(seq)));
    }
    fsyncPath(aside);
    const incidents = fs
      .readdirSync(this.where)
      .filter((n) => /^damaged-\d{16}$/.test(n))
      .sort();
    for (const old of incidents.slice(0, Math.max(0, incidents.length - KEEP_DAMAGED))) fs.rmSync(path.join(this.where, old), { recursive: true, force: true });
  }

  syncDir(): void {
    fsyncPath(this.where);
  }

  close(): void {
    this.closeFd();
  }
}

/**
 * Segments in memory (the simulator's disk, kept across its crashes): every write is durable at once,
 * except that `tearNextWrite` makes the next write stop part-way and throw, as a crash in the middle of an
 * append leaves it.
 */
export class MemSegments implements SegmentStore {
  private readonly segs = new Map<number, Buffer>();
  private tear: { keep: number; garbage: boolean } | undefined;
  constructor(readonly where = '(memory)') {}
  list(): number[] {
    return [...this.segs.keys()];
  }
  name(seq: number): string {
    return `${this.where}/${segName(seq)}`;
  }
  /** The bytes of segment `seq` (empty if absent). */
  bytes(seq: number): Buffer {
    return this.segs.get(seq) ?? Buffer.alloc(0);
  }
  /** Replace the bytes of segment `seq` (storage faults). */
  put(seq: number, data: Buffer): void {
    this.segs.set(seq, data);
  }
  /** The next write keeps only the first `keep` bytes of its data (then, with `garbage`, a few junk bytes) and throws. */
  tearNextWrite(keep: number, garbage: boolean): void {
    this.tear = { keep, garbage };
  }
  open(seq: number): SegmentReader {
    const b = this.bytes(seq);
    return {
      size: b.length,
      read: (pos, buf, off, n) => {
        const k = Math.max(0, Math.min(n, b.length - pos));
        buf.set(b.subarray(pos, pos + k), off);
        return k;
      },
      close: () => {},
    };
  }
  create(seq: number, size: number, head: Uint8Array): void {
    const b = Buffer.alloc(size);
    b.set(head);
    this.segs.set(seq, b);
  }
  write(seq: number, pos: number, data: Uint8Array): void {
    const b = this.segs.get(seq)!;
    const t = this.tear;
    if (!t) {
      b.set(data, pos);
      return;
    }
    this.tear = undefined;
    const keep = Math.min(t.keep, data.length - 1);
    b.set(data.subarray(0, keep), pos);
    if (t.garbage) for (let k = 0; k < 3 && pos + keep + k < b.length; k++) b[pos + keep + k] = 0xa5 ^ k;
    throw new Error('simulated crash in the middle of a write');
  }
  sync(): void {}
  truncate(seq: number, size: number): void {
    this.put(seq, this.bytes(seq).subarray(0, size));
  }
  remove(seq: number): void {
    this.segs.delete(seq);
  }
  setAside(seqs: readonly number[]): void {
    for (const s of seqs) this.segs.delete(s);
  }
  syncDir(): void {}
  close(): void {}
}

// ---------------------------------------------------------------------------------------------------------
// The log

interface Segment {
  seq: number;
  /** Its length, fixed when it was created (format 3); for a format-1 segment, the bytes in it. */
  size: number;
  /** Offset where the next append goes: after the last record. */
  end: number;
  /** Highest instance any record in this segment can affect; -1 when none. */
  maxInstance: number;
}

function logError(where: string, err: unknown): RingcastError {
  const msg = err instanceof Error ? err.message : String(err);
  return new RingcastError(ERR.LOG, `acceptor log ${where}: ${msg}`);
}

export interface OpenOptions {
  segmentBytes?: number;
  /** The node was started to rejoin (`--rejoin`): record that, so a crash before it finishes rejoins again. */
  rejoin?: boolean;
}

/** Bytes a `next` (or `dropped`) record and its commit take. */
const SEAL_BYTES = 2 * COMMIT_BYTES;
/** Room every append leaves at the end of its segment: for a `dropped` record, and the seal. */
const RESERVE_BYTES = 2 * SEAL_BYTES;
/** Bytes of the largest header: segment, promise, trim, rejoin, commit. */
const MAX_HEAD_BYTES = FRAME_HEADER_BYTES + 25 + 2 * COMMIT_BYTES + FRAME_HEADER_BYTES + 1 + COMMIT_BYTES;
const ZEROS = Buffer.alloc(64 * 1024);

/** What the log keeps of the records it wrote or read (the one place that reads their meaning for it). */
interface Tracked {
  promised: number;
  trimmed: number;
  maxAccepted: number;
  rejoining: boolean;
  /** Lowest segment seq the log holds: segments below it were dropped, durably. */
  first: number;
}

/** Fold one record into `t` and into the reach of segment `seg`; returns true when it raised the trim point. */
function track(t: Tracked, seg: Segment, r: LogRecord): boolean {
  switch (r.kind) {
    case 'promise':
      if (r.ballot > t.promised) t.promised = r.ballot;
      break;
    case 'accept':
      if (r.instance > t.maxAccepted) t.maxAccepted = r.instance;
      if (r.instance > seg.maxInstance) seg.maxInstance = r.instance;
      break;
    case 'decide':
      seg.maxInstance = Math.max(seg.maxInstance, decideReach(r.decisions, t.maxAccepted));
      break;
    case 'trim':
      if (r.below > t.trimmed) {
        t.trimmed = r.below;
        return true;
      }
      break;
    case 'rejoin':
      t.rejoining = true;
      break;
    case 'rejoined':
      t.rejoining = false;
      break;
    case 'segment':
    case 'dropped':
      if (r.kind === 'segment' ? r.first > t.first : r.below > t.first) t.first = r.kind === 'segment' ? r.first : r.below;
      break;
  }
  return false;
}

export class FileLog implements DurableLog {
  readonly stats: FileLogStats = { appends: 0, records: 0, bytes: 0, syncs: 0, syncMicros: 0, segmentsDeleted: 0, segmentsCreated: 0 };
  readonly mode: LogMode;
  readonly ring: number;
  /** `<dir>/ring-<ring>` (the store's name); empty in memory mode. */
  readonly path: string;
  readonly segmentBytes: number;

  private segments: Segment[];
  private readonly t: Tracked;
  private broken: Error | undefined;
  private closed = false;

  private constructor(mode: LogMode, ring: number, private readonly store: SegmentStore | undefined, segmentBytes: number, segments: Segment[], t: Tracked) {
    this.mode = mode;
    this.ring = ring;
    this.path = store?.where ?? '';
    this.segmentBytes = segmentBytes;
    this.segments = segments;
    this.t = t;
  }

  /** Open (creating if needed) the log of one ring in directory `dir`, recover it, and return both. */
  static open(dir: string, ring: number, mode: LogMode, opts?: OpenOptions): { log: FileLog; recovered: RecoveredLog } {
    if (mode === 'memory') return FileLog.openStore(undefined, ring, mode, opts);
    const ringDir = path.join(dir, `ring-${ring}`);
    try {
      fs.mkdirSync(ringDir, { recursive: true });
      fs.accessSync(ringDir, fs.constants.W_OK);
    } catch (err) {
      throw logError(`directory ${ringDir}`, err);
    }
    return FileLog.openStore(new FsSegments(ringDir), ring, mode, opts);
  }

  /** Open and recover the log of one ring kept in `store` (undefined in memory mode). */
  static openStore(store: SegmentStore | undefined, ring: number, mode: LogMode, opts: OpenOptions = {}): { log: FileLog; recovered: RecoveredLog } {
    const segmentBytes = opts.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    if (!(segmentBytes > 0)) throw new RingcastError(ERR.LOG, `segmentBytes must be positive, got ${segmentBytes}`);
    const rejoin = opts.rejoin === true;
    const empty = (): Tracked => ({ promised: 0, trimmed: 0, maxAccepted: -1, rejoining: false, first: 0 });
    if (mode === 'memory' || !store) {
      const log = new FileLog('memory', ring, undefined, segmentBytes, [], empty());
      return { log, recovered: { promised: 0, trimmed: 0, entries: new Map(), records: 0, cutBytes: 0, segments: 0, rejoin } };
    }
    let r: Recovery;
    try {
      r = recover(store);
    } catch (err) {
      throw logError(`recovering ${store.where}`, err);
    }
    if (r.damage) {
      // Forget the log, durably before the old segments go: a new segment that says "rejoin" and that the
      // log begins with it.
      const seq = r.seqs.reduce((m, s) => Math.max(m, s), 0) + 1;
      const fresh = new FileLog(mode, ring, store, segmentBytes, [], { ...empty(), rejoining: true, first: seq });
      try {
        fresh.startSegment(seq, 0);
        store.setAside(r.seqs);
        store.syncDir();
      } catch (err) {
        throw logError(`setting aside the damaged log in ${store.where}`, err);
      }
      return { log: fresh, recovered: { promised: 0, trimmed: 0, entries: new Map(), records: 0, cutBytes: 0, segments: 1, rejoin: true, damage: r.damage } };
    }
    const { state } = r;
    const log = new FileLog(mode, ring, store, segmentBytes, r.segments, r.tracked);
    try {
      for (const s of r.leftovers) store.remove(s);
      if (r.leftovers.length > 0) store.syncDir();
      const last = r.segments[r.segments.length - 1];
      if (r.torn) {
        // Zero the torn bytes (the length stays), so the next append leaves nothing between commits.
        if (r.torn.legacy) store.truncate(r.torn.seq, r.torn.from);
        else {
          for (let at = r.torn.from; at < r.torn.to; at += ZEROS.length) store.write(r.torn.seq, at, ZEROS.subarray(0, Math.min(ZEROS.length, r.torn.to - at)));
          store.sync(r.torn.seq);
        }
      }
      if (r.unsealed !== undefined) {
        // A crash between creating the last segment and sealing the one before: seal it now.
        const prev = r.segments[r.segments.length - 2]!;
        log.writeSeal(prev, r.unsealed);
      }
      if (!last) log.startSegment(1, 0);
      else if (r.legacyLast) log.startSegment(last.seq + 1, 0, last);
      if (rejoin && !log.t.rejoining) log.append([{ kind: 'rejoin', ring }]);
    } catch (err) {
      throw logError(`opening ${store.where}`, err);
    }
    return {
      log,
      recovered: {
        promised: state.promised,
        trimmed: state.trimmed,
        entries: state.entries,
        records: r.records,
        cutBytes: r.torn ? r.torn.to - r.torn.from : 0,
        segments: log.segments.length,
        rejoin: rejoin || state.rejoining,
      },
    };
  }

  /** Segment files currently held (oldest first). */
  segmentFiles(): string[] {
    return this.segments.map((s) => this.store!.name(s.seq));
  }

  /**
   * Make `records` durable as far as the mode promises: one write of all of them and a commit record
   * (into a new segment first when they do not fit in the current one), then in sync mode one fdatasync.
   */
  append(records: readonly PersistRecord[]): void {
    if (this.closed) throw new RingcastError(ERR.LOG, `acceptor log ${this.path || '(memory)'} is closed`);
    if (this.broken) throw new RingcastError(ERR.LOG, `acceptor log ${this.path} failed earlier: ${this.broken.message}`);
    for (const r of records) {
      if (r.ring !== this.ring) throw new RingcastError(ERR.LOG, `record for ring ${r.ring} given to the log of ring ${this.ring}`);
    }
    this.stats.appends++;
    this.stats.records += records.length;
    const store = this.store;
    if (!store || records.length === 0) return;

    let size = COMMIT_BYTES;
    for (const r of records) size += FRAME_HEADER_BYTES + payloadBytes(r);
    const buf = Buffer.allocUnsafe(size);
    let off = 0;
    for (const r of records) off = encodeRecord(buf, off, r); // throws before anything is written

    try {
      let cur = this.segments[this.segments.length - 1]!;
      if (cur.end + size + RESERVE_BYTES > cur.size) cur = this.rotate(size);
      encodeRecord(buf, off, { kind: 'commit', at: cur.end + off });
      this.writeAt(cur, buf);
      let trimmedUp = false;
      for (const r of records) trimmedUp = track(this.t, cur, r) || trimmedUp;
      if (trimmedUp) this.dropSegments();
    } catch (err) {
      this.broken = err instanceof Error ? err : new Error(String(err));
      throw logError(`append to ${this.path}`, err);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.store) return;
    try {
      if (this.mode === 'sync' && !this.broken) this.store.sync(this.segments[this.segments.length - 1]!.seq);
      this.store.close();
    } catch (err) {
      throw logError(`closing ${this.path}`, err);
    }
  }

  /** Write `buf` (records ending with a commit) at the end of `seg`; fdatasync in sync mode. */
  private writeAt(seg: Segment, buf: Buffer): void {
    const store = this.store!;
    store.write(seg.seq, seg.end, buf);
    seg.end += buf.length;
    this.stats.bytes += buf.length;
    if (this.mode === 'sync') this.sync(() => store.sync(seg.seq));
  }

  private sync(f: () => void): void {
    const t0 = process.hrtime.bigint();
    f();
    this.stats.syncs++;
    this.stats.syncMicros += Number(process.hrtime.bigint() - t0) / 1000;
  }

  /**
   * Create segment `seq` (room for `need` more bytes at least) with its header: seq, length, the first
   * segment of the log, and the state a reader of it alone needs (promise, trim, a pending rejoin). Durable
   * when this returns, whatever the mode. With `prev`, seal that segment afterwards.
   */
  private startSegment(seq: number, need: number, prev?: Segment): Segment {
    const store = this.store!;
    const t = this.t;
    if (t.first === 0) t.first = seq;
    const size = Math.max(this.segmentBytes, MAX_HEAD_BYTES + need + RESERVE_BYTES);
    const head: LogRecord[] = [{ kind: 'segment', seq, size, first: t.first }];
    if (t.promised > 0) head.push({ kind: 'promise', ballot: t.promised });
    if (t.trimmed > 0) head.push({ kind: 'trim', below: t.trimmed });
    if (t.rejoining) head.push({ kind: 'rejoin' });
    let n = COMMIT_BYTES;
    for (const r of head) n += FRAME_HEADER_BYTES + payloadBytes(r);
    const buf = Buffer.allocUnsafe(n);
    let off = 0;
    for (const r of head) off = encodeRecord(buf, off, r);
    encodeRecord(buf, off, { kind: 'commit', at: off });
    const seg: Segment = { seq, size, end: n, maxInstance: -1 };
    this.sync(() => store.create(seq, size, buf));
    this.stats.bytes += n;
    this.segments.push(seg);
    if (prev) this.writeSeal(prev, seq);
    return seg;
  }

  /** Append `next <seq>` to `seg`: it was followed by segment `seq`, which exists durably already. */
  private writeSeal(seg: Segment, seq: number): void {
    const buf = Buffer.allocUnsafe(SEAL_BYTES);
    const off = encodeRecord(buf, 0, { kind: 'next', seq });
    encodeRecord(buf, off, { kind: 'commit', at: seg.end + off });
    this.writeAt(seg, buf);
  }

  /** Start the next segment, with room for `need` bytes, and seal the current one. */
  private rotate(need: number): Segment {
    this.stats.segmentsCreated++;
    const cur = this.segments[this.segments.length - 1]!;
    return this.startSegment(cur.seq + 1, need, cur);
  }

  /**
   * Delete the oldest segments (never the current one) that hold nothing at or above the trimmed point,
   * stopping at the first that must stay. A synced `dropped` record says first where the log now begins,
   * so recovery can take any other missing first segment for damage.
   */
  private dropSegments(): void {
    const store = this.store!;
    let n = 0;
    while (n < this.segments.length - 1 && this.segments[n]!.maxInstance < this.t.trimmed) n++;
    if (n === 0) return;
    const cur = this.segments[this.segments.length - 1]!;
    const below = this.segments[n]!.seq;
    // The trim and this record must reach the disk before the segments leave it (async mode too: rare).
    if (cur.end + RESERVE_BYTES > cur.size) return; // not reached: every append leaves this room
    const buf = Buffer.allocUnsafe(SEAL_BYTES);
    const off = encodeRecord(buf, 0, { kind: 'dropped', below });
    encodeRecord(buf, off, { kind: 'commit', at: cur.end + off });
    this.writeAt(cur, buf);
    if (this.mode !== 'sync') this.sync(() => store.sync(cur.seq));
    this.t.first = below;
    for (const s of this.segments.slice(0, n)) {
      store.remove(s.seq);
      this.stats.segmentsDeleted++;
    }
    this.segments = this.segments.slice(n);
    this.sync(() => store.syncDir());
  }
}

// ---------------------------------------------------------------------------------------------------------
// Recovery

interface Recovery {
  state: ReturnType<typeof emptyReplayState>;
  tracked: Tracked;
  /** Every segment seq present. */
  seqs: number[];
  segments: Segment[];
  records: number;
  /** Segments below the log's first (a drop that a crash interrupted): removed. */
  leftovers: number[];
  /** Bytes of a torn tail to zero (format 3) or cut (format 1). */
  torn?: { seq: number; from: number; to: number; legacy: boolean };
  /** The last segment's predecessor still needs its seal naming it. */
  unsealed?: number;
  /** The last segment is format 1: appends go to a new one. */
  legacyLast: boolean;
  damage?: LogDamage;
}

/** Read every segment in seq order, apply the good records, and classify what is not. */
function recover(store: SegmentStore): Recovery {
  const seqs = store.list().sort((a, b) => a - b);
  const state = emptyReplayState();
  const tracked: Tracked = { promised: 0, trimmed: 0, maxAccepted: -1, rejoining: false, first: 0 };
  const segments: Segment[] = [];
  const rec: Recovery = { state, tracked, seqs, segments, records: 0, leftovers: [], legacyLast: false };
  const damaged = (seq: number, offset: number, reason: string): Recovery => ({ ...rec, damage: { file: store.name(seq), offset, reason } });

  // Which segments belong to the log: the highest first any header names. Those below are leftovers of a
  // drop or a set-aside that a crash interrupted.
  let first = 0;
  for (const seq of seqs) {
    const h = readHead(store, seq);
    if (typeof h === 'string') return damaged(seq, 0, h);
    if (h && h.seq !== seq) return damaged(seq, 0, `its header names segment ${h.seq}`);
    if (h && h.first > first) first = h.first;
  }
  const live = seqs.filter((s) => s >= first);
  if (live.length === 0 && first > 0) return damaged(seqs[seqs.length - 1]!, 0, `the log begins at segment ${first}, which is missing`);
  rec.leftovers = seqs.filter((s) => s < first);
  const scans: ScanResult[] = [];
  for (let k = 0; k < live.length; k++) {
    const seq = live[k]!;
    if (k > 0 && seq !== live[k - 1]! + 1) return damaged(seq, 0, `segment ${live[k - 1]! + 1} before it is missing`);
    const seg: Segment = { seq, size: 0, end: 0, maxInstance: -1 };
    const r = scanSegment(store, seq, (d) => {
      track(tracked, seg, d);
      if (d.kind === 'segment' || d.kind === 'next' || d.kind === 'dropped' || d.kind === 'commit') return;
      applyRecord(state, d);
      rec.records++;
    });
    if (r.head && r.size !== r.head.size) return damaged(seq, Math.min(r.size, r.head.size), `it is ${r.size} bytes long but was created ${r.head.size} bytes long`);
    if (r.commitAfter) return damaged(seq, r.good, `bad record (${r.bad ?? 'zeros'}), with committed records after it`);
    if (!r.head && k > 0 && scans[k - 1]!.head) return damaged(seq, 0, 'a segment without a header after one with a header');
    seg.size = r.head ? r.head.size : r.good;
    seg.end = r.good;
    segments.push(seg);
    scans.push(r);
  }
  // The log begins where the highest header or drop record says: a segment missing there is damage.
  if (live.length > 0 && tracked.first > live[0]!) {
    // A drop that a crash interrupted: the segments below were meant to go.
    const keep = live.findIndex((s) => s >= tracked.first);
    if (keep < 0) return damaged(live[live.length - 1]!, 0, `the log begins at segment ${tracked.first}, which is missing`);
    rec.leftovers.push(...live.slice(0, keep));
    segments.splice(0, keep);
    scans.splice(0, keep);
  } else if (live.length > 0 && tracked.first > 0 && tracked.first < live[0]!) {
    return damaged(live[0]!, 0, `segment ${tracked.first}, where the log begins, is missing`);
  }
  if (tracked.first === 0 && segments.length > 0) tracked.first = segments[0]!.seq; // format 1 only
  const n = segments.length;
  // A crash between creating the last segment and sealing the one before it (or while writing the seal):
  // the last holds its header only, and the one before may end with a torn seal.
  const midRotation = n >= 2 && scans[n - 2]!.head !== undefined && scans[n - 1]!.good === scans[n - 1]!.headEnd && scans[n - 1]!.tornTo === scans[n - 1]!.good;
  for (let k = 0; k < n; k++) {
    const r = scans[k]!;
    const seq = segments[k]!.seq;
    const last = k === n - 1;
    const mayTear = last || (k === n - 2 && midRotation);
    if (r.head) {
      if (last && r.sealed !== undefined) return damaged(seq, r.good, `it was followed by segment ${r.sealed}, which is missing`);
      if (!last && r.sealed !== seq + 1 && !(k === n - 2 && midRotation)) return damaged(seq, r.good, r.sealed === undefined ? `it ends without naming segment ${seq + 1} after it` : `it names segment ${r.sealed} after it`);
      if (r.tornTo > r.good) {
        if (!mayTear) return damaged(seq, r.good, `bad record (${r.bad ?? 'unfinished append'}), in a segment that is not the last`);
        rec.torn = { seq, from: r.good, to: r.tornTo, legacy: false };
      }
    } else if (r.bad) {
      // Format 1: a torn tail only at the end of the last segment, cut short or zeros.
      if (!last || (r.bad !== 'short' && r.bad !== 'zero')) return damaged(seq, r.good, `bad record (${r.bad}${last ? '' : ', in a segment that is not the last'})`);
      rec.torn = { seq, from: r.good, to: r.size, legacy: true };
    }
  }
  if (midRotation && scans[n - 2]!.sealed === undefined) rec.unsealed = segments[n - 1]!.seq;
  rec.legacyLast = n > 0 && !scans[n - 1]!.head;
  return rec;
}

/** The header of segment `seq`: undefined for a format-1 segment, a string when it is unreadable. */
function readHead(store: SegmentStore, seq: number): { seq: number; size: number; first: number } | undefined | string {
  const rd = store.open(seq);
  try {
    const buf = Buffer.alloc(FRAME_HEADER_BYTES + 25);
    const got = rd.read(0, buf, 0, buf.length);
    if (got < FRAME_HEADER_BYTES + 1) return rd.size === 0 ? undefined : 'its header is cut short';
    const len = buf.readUInt32LE(0);
    if (buf[FRAME_HEADER_BYTES] !== KIND_SEGMENT) return undefined; // format 1 (or damage the scan finds)
    if (len !== 25 || got < FRAME_HEADER_BYTES + 25 || crc32(buf, FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + 25) !== buf.readUInt32LE(4)) return 'its header is damaged';
    const d = decodePayload(buf, FRAME_HEADER_BYTES, 25);
    return d?.kind === 'segment' ? d : 'its header is damaged';
  } finally {
    rd.close();
  }
}

interface ScanResult {
  /** File size. */
  size: number;
  /** Offset after the last good record. */
  good: number;
  /** The header (format 3), and the offset after its commit. */
  head?: { seq: number; size: number; first: number };
  headEnd: number;
  /** The segment named by a `next` record in it. */
  sealed?: number;
  /** Why the record at `good` is bad: cut short by the end of the file, a zero frame header, or else. */
  bad?: 'short' | 'zero' | 'crc mismatch' | 'bad length' | 'malformed';
  /** A valid commit record lies after `good`: its append, and all before it, were written in full. */
  commitAfter: boolean;
  /** Offset after the last non-zero byte at or after `good` (`good` when there is none). */
  tornTo: number;
}

/** Read a segment record by record through a bounded buffer, calling `apply` on each good record. */
function scanSegment(store: SegmentStore, seq: number, apply: (d: LogRecord) => void): ScanResult {
  const rd = store.open(seq);
  try {
    const size = rd.size;
    let buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(size, COMMIT_BYTES)));
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
        const k = rd.read(pos + got, buf, got, want - got);
        if (k === 0) break;
        got += k;
      }
      bufPos = pos;
      bufLen = got;
      return got >= n;
    };
    let pos = 0;
    let head: ScanResult['head'];
    let headEnd = 0;
    let sealed: number | undefined;
    let bad: ScanResult['bad'];
    while (pos < size) {
      if (!ensure(pos, FRAME_HEADER_BYTES)) {
        bad = 'short';
        break;
      }
      const h = pos - bufPos;
      const len = buf.readUInt32LE(h);
      const crc = buf.readUInt32LE(h + 4);
      if (len === 0 && crc === 0) {
        bad = 'zero';
        break;
      }
      if (len < 1 || len > MAX_RECORD_BYTES) {
        bad = 'bad length';
        break;
      }
      if (!ensure(pos + FRAME_HEADER_BYTES, len)) {
        bad = 'short';
        break;
      }
      const p = pos + FRAME_HEADER_BYTES - bufPos;
      if (crc32(buf, p, p + len) !== crc) {
        bad = 'crc mismatch';
        break;
      }
      const d = decodePayload(buf, p, len);
      // A header anywhere but first, or a commit that does not name its own offset, is not what was written.
      if (!d || (d.kind === 'segment' && pos !== 0) || (d.kind === 'commit' && d.at !== pos)) {
        bad = 'malformed';
        break;
      }
      if (d.kind === 'segment') head = d;
      else if (d.kind === 'next') sealed = d.seq;
      else if (d.kind === 'commit' && headEnd === 0) headEnd = pos + FRAME_HEADER_BYTES + len;
      apply(d);
      pos += FRAME_HEADER_BYTES + len;
    }
    // Past the last good record: is there a commit record naming its own offset ([9][crc][5][f64 at])
    // further on, and where do the non-zero bytes end? Zero blocks (the unwritten rest) are skipped fast.
    let commitAfter = false;
    let tornTo = pos;
    const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - pos) + COMMIT_BYTES);
    for (let at = pos; at < size; at += READ_CHUNK) {
      const n = Math.min(READ_CHUNK + COMMIT_BYTES, size - at);
      let got = 0;
      while (got < n) {
        const k = rd.read(at + got, chunk, got, n - got);
        if (k === 0) break;
        got += k;
      }
      const body = Math.min(READ_CHUNK, got);
      for (let b = 0; b < body; b += ZEROS.length) {
        const e = Math.min(body, b + ZEROS.length);
        if (chunk.subarray(b, e).equals(ZEROS.subarray(0, e - b))) continue;
        for (let i = b; i < e; i++) {
          if (chunk[i] === 0) continue;
          tornTo = at + i + 1;
          if (!commitAfter && chunk[i] === 9 && i + COMMIT_BYTES <= got) {
            commitAfter = chunk[i + 8] === KIND_COMMIT && chunk.readUInt32LE(i) === 9 && crc32(chunk, i + 8, i + 17) === chunk.readUInt32LE(i + 4) && chunk.readDoubleLE(i + 9) === at + i;
          }
        }
      }
    }
    return { size, good: pos, head, headEnd, sealed, bad, commitAfter, tornTo };
  } finally {
    rd.close();
  }
}
