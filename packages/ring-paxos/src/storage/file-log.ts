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
 * byte; numbers (instances, ballots, vids, decision triples, offsets) are float64, exact for safe integers:
 *
 *   1 promise  [f64 ballot]
 *   2 accept   [f64 instance][f64 ballot][f64 vid][u32 valueLength][value bytes]
 *   3 decide   [u32 n][n x f64]   the flat triples [start, count, vid, ...] as the acceptor produced them
 *   4 trim     [f64 below]
 *   5 commit   [f64 at]            ends every append; `at` is its own offset in the segment
 *   6 segment  [f64 seq][f64 prevSize]   first record of every segment (format 2); prevSize is the final
 *                                  size of segment seq - 1 (0: none), which was synced before this one began
 *   7 rejoin   []                  the acceptor lost (part of) its log and is rejoining
 *   8 rejoined []                  ... and has finished: the log is whole again
 *
 * Each append is one write: (a new segment's header records: segment, promise, trim, rejoin while one is
 * pending), the records, then a commit. In sync mode an append starts only after the previous one's
 * fdatasync returned, so a commit record proves that everything before it was written in full, and every
 * earlier append was synced.
 *
 * Recovery applies records in order (the same rules as `replayRecords`) up to the first bad record (short
 * header, length past the end of the file or above 64 MiB, crc mismatch, unknown kind or a malformed
 * payload) and classifies it:
 * - a **torn tail**, cut silently: the bad record is in the last segment, no valid commit record lies after
 *   it, and it is what a crash leaves (the file ends inside the record, or its frame header is zeros: the
 *   bytes of an append that was not synced). Only the bytes of the last, unfinished append qualify.
 * - **damage**, everything else: a bad record with a commit after it, a bad record in a segment that is not
 *   the last, bytes that are neither cut short nor zero (a flipped bit in a complete append), a segment
 *   missing between two others, a segment shorter than the next one says it ended, a segment whose header
 *   names another seq. The log may have lost promises or votes. Recovery then forgets the whole log: it
 *   starts a new segment holding a `rejoin` record, moves the old segments into `<ring dir>/damaged/`
 *   (replacing what an earlier damage left there), and reports `rejoin: true` with the file, offset and
 *   reason; the node must rejoin (see the README) before it answers Phase 1 or votes.
 * A `rejoin` record with no `rejoined` after it also reports `rejoin: true`: a rejoin that a crash
 * interrupted is started again.
 * What recovery cannot see: the last segment cut short at (or inside) its last append, or a whole first or
 * last segment gone, look the same as a crash or a trim.
 *
 * Format 1 (before the commit and segment records): a segment that does not begin with a segment record is
 * read by the same rules; it has no commit records, so a bad record in it is a torn tail only when it is
 * in the last segment and cut short or zero (a crash), damage otherwise. New appends to it carry commits.
 *
 * Rotation: once the current segment reaches `segmentBytes`, the next append starts a new segment. Each
 * segment remembers the highest instance it can affect (accepts, and decisions clamped to the highest
 * instance ever accepted); after a trim, the oldest segments whose highest instance is below the trimmed
 * point are deleted, oldest first and never past one that must stay, so a gap between segments is damage.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import type { DurableLog } from '../driver.js';
import type { PersistRecord } from '../core/outbox.js';
import type { LogEntry } from '../core/acceptor.js';
import { applyRecord, emptyReplayState, type ReplayRecord } from '../core/replay.js';
import { RingcastError } from '../errors.js';

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
const KIND_COMMIT = 5;
const KIND_SEGMENT = 6;
const KIND_REJOIN = 7;
const KIND_REJOINED = 8;
/** Bytes of a framed commit record. */
const COMMIT_BYTES = FRAME_HEADER_BYTES + 9;
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
type LogRecord = ReplayRecord | { kind: 'commit'; at: number } | { kind: 'segment'; seq: number; prevSize: number };

function payloadBytes(r: LogRecord): number {
  switch (r.kind) {
    case 'rejoin':
    case 'rejoined':
      return 1;
    case 'promise':
    case 'trim':
    case 'commit':
      return 1 + 8;
    case 'segment':
      return 1 + 16;
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
      q = buf.writeDoubleLE(r.prevSize, q);
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


function safe(x: number): boolean {
  return Number.isSafeInteger(x);
}

/** Decode a payload whose crc matched; undefined if malformed (taken as corruption). Copies the value. */
function decodePayload(b: Buffer, p: number, len: number): LogRecord | undefined {
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
    case KIND_COMMIT: {
      if (len !== 9) return undefined;
      const at = b.readDoubleLE(q);
      return safe(at) ? { kind: 'commit', at } : undefined;
    }
    case KIND_SEGMENT: {
      if (len !== 17) return undefined;
      const seq = b.readDoubleLE(q);
      const prevSize = b.readDoubleLE(q + 8);
      return safe(seq) && safe(prevSize) ? { kind: 'segment', seq, prevSize } : undefined;
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
  /** Create segment `seq` empty (it becomes the one appended to). */
  create(seq: number): void;
  /** Append to segment `seq` (the one created last, or the last one recovered). */
  append(seq: number, data: Uint8Array): void;
  /** fdatasync segment `seq` (the one appended to). */
  sync(seq: number): void;
  /** Cut segment `seq` to `size` bytes, durably. */
  truncate(seq: number, size: number): void;
  remove(seq: number): void;
  /** Move segments out of the log, kept for inspection in place of what an earlier call set aside. */
  setAside(seqs: readonly number[]): void;
  /** Make creations, removals and renames durable. */
  syncDir(): void;
  close(): void;
}

function segName(seq: number): string {
  return `${String(seq).padStart(16, '0')}.seg`;
}

/** Segment files in a directory; keeps one append descriptor open. */
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

  private appendFd(seq: number): number {
    if (this.fdSeq !== seq) {
      const fd = fs.openSync(this.name(seq), 'a');
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

  create(seq: number): void {
    this.appendFd(seq);
  }

  append(seq: number, data: Uint8Array): void {
    const fd = this.appendFd(seq);
    let w = 0;
    while (w < data.length) w += fs.writeSync(fd, data, w, data.length - w);
  }

  sync(seq: number): void {
    fs.fdatasyncSync(this.appendFd(seq));
  }

  truncate(seq: number, size: number): void {
    if (this.fdSeq === seq) this.closeFd();
    const fd = fs.openSync(this.name(seq), 'r+');
    try {
      fs.ftruncateSync(fd, size);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  remove(seq: number): void {
    if (this.fdSeq === seq) this.closeFd();
    fs.unlinkSync(this.name(seq));
  }

  setAside(seqs: readonly number[]): void {
    const aside = path.join(this.where, 'damaged');
    fs.rmSync(aside, { recursive: true, force: true });
    fs.mkdirSync(aside);
    for (const seq of seqs) {
      if (this.fdSeq === seq) this.closeFd();
      fs.renameSync(this.name(seq), path.join(aside, segName(seq)));
    }
  }

  syncDir(): void {
    const fd = fs.openSync(this.where, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  close(): void {
    this.closeFd();
  }
}

/** Segments in memory: every append is durable at once (the simulator's disk, kept across its crashes). */
export class MemSegments implements SegmentStore {
  private readonly segs = new Map<number, Buffer[]>();
  constructor(readonly where = '(memory)') {}
  list(): number[] {
    return [...this.segs.keys()];
  }
  name(seq: number): string {
    return `${this.where}/${segName(seq)}`;
  }
  /** The bytes of segment `seq` (empty if absent). */
  bytes(seq: number): Buffer {
    const parts = this.segs.get(seq) ?? [];
    if (parts.length > 1) parts.splice(0, parts.length, Buffer.concat(parts));
    return parts[0] ?? Buffer.alloc(0);
  }
  /** Replace the bytes of segment `seq` (storage faults). */
  put(seq: number, data: Buffer): void {
    this.segs.set(seq, [data]);
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
  create(seq: number): void {
    if (!this.segs.has(seq)) this.segs.set(seq, []);
  }
  append(seq: number, data: Uint8Array): void {
    this.create(seq);
    this.segs.get(seq)!.push(Buffer.from(data.buffer, data.byteOffset, data.length)); // the log never reuses a buffer it appended
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
  /** Bytes in it. */
  size: number;
  /** Highest instance any record in this segment can affect; -1 when none. */
  maxInstance: number;
}

function logError(where: string, err: unknown): RingcastError {
  const msg = err instanceof Error ? err.message : String(err);
  return new RingcastError('ERR_RINGCAST_LOG', `acceptor log ${where}: ${msg}`);
}

export interface OpenOptions {
  segmentBytes?: number;
  /** The node was started to rejoin (`--rejoin`): record that, so a crash before it finishes rejoins again. */
  rejoin?: boolean;
}

export class FileLog implements DurableLog {
  readonly stats: FileLogStats = { appends: 0, records: 0, bytes: 0, syncs: 0, syncMicros: 0, segmentsDeleted: 0, segmentsCreated: 0 };
  readonly mode: LogMode;
  readonly ring: number;
  /** `<dir>/ring-<ring>` (the store's name); empty in memory mode. */
  readonly path: string;
  readonly segmentBytes: number;

  private segments: Segment[];
  private promised: number;
  private trimmed: number;
  private maxAccepted: number;
  private rejoining: boolean;
  private broken: Error | undefined;
  private closed = false;

  private constructor(
    mode: LogMode,
    ring: number,
    private readonly store: SegmentStore | undefined,
    segmentBytes: number,
    segments: Segment[],
    state: { promised: number; trimmed: number; maxAccepted: number; rejoining: boolean },
  ) {
    this.mode = mode;
    this.ring = ring;
    this.path = store?.where ?? '';
    this.segmentBytes = segmentBytes;
    this.segments = segments;
    this.promised = state.promised;
    this.trimmed = state.trimmed;
    this.maxAccepted = state.maxAccepted;
    this.rejoining = state.rejoining;
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
    if (!(segmentBytes > 0)) throw new RingcastError('ERR_RINGCAST_LOG', `segmentBytes must be positive, got ${segmentBytes}`);
    const rejoin = opts.rejoin === true;
    if (mode === 'memory' || !store) {
      const log = new FileLog('memory', ring, undefined, segmentBytes, [], { promised: 0, trimmed: 0, maxAccepted: -1, rejoining: false });
      return { log, recovered: { promised: 0, trimmed: 0, entries: new Map(), records: 0, cutBytes: 0, segments: 0, rejoin } };
    }
    let r: Recovery;
    try {
      r = recover(store);
    } catch (err) {
      throw logError(`recovering ${store.where}`, err);
    }
    const { state, damage } = r;
    if (damage) {
      // Forget the log, durably before the old segments go: a new segment that says "rejoin".
      const fresh = new FileLog(mode, ring, store, segmentBytes, [], { promised: 0, trimmed: 0, maxAccepted: -1, rejoining: false });
      try {
        const seq = Math.max(0, ...store.list()) + 1;
        store.create(seq);
        fresh.segments = [{ seq, size: 0, maxInstance: -1 }];
        fresh.append([{ kind: 'rejoin', ring }]);
        if (mode !== 'sync') store.sync(seq);
        store.syncDir();
        store.setAside(store.list().filter((s) => s !== seq));
        store.syncDir();
      } catch (err) {
        throw logError(`setting aside the damaged log in ${store.where}`, err);
      }
      return { log: fresh, recovered: { ...emptyReplayState(), records: 0, cutBytes: 0, segments: 1, rejoin: true, damage } };
    }
    const log = new FileLog(mode, ring, store, segmentBytes, r.segments, { ...state, maxAccepted: r.maxAccepted });
    try {
      if (r.segments.length === 0) {
        store.create(1);
        log.segments = [{ seq: 1, size: 0, maxInstance: -1 }];
        store.syncDir();
      } else if (r.cutBytes > 0) {
        const last = r.segments[r.segments.length - 1]!;
        store.truncate(last.seq, last.size);
      }
      if (rejoin && !state.rejoining) log.append([{ kind: 'rejoin', ring }]);
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
        cutBytes: r.cutBytes,
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
   * Make `records` durable as far as the mode promises: one write of all of them (a new segment's header
   * records first, a commit record last), then in sync mode one fdatasync.
   */
  append(records: readonly PersistRecord[]): void {
    if (this.closed) throw new RingcastError('ERR_RINGCAST_LOG', `acceptor log ${this.path || '(memory)'} is closed`);
    if (this.broken) throw new RingcastError('ERR_RINGCAST_LOG', `acceptor log ${this.path} failed earlier: ${this.broken.message}`);
    for (const r of records) {
      if (r.ring !== this.ring) throw new RingcastError('ERR_RINGCAST_LOG', `record for ring ${r.ring} given to the log of ring ${this.ring}`);
    }
    this.stats.appends++;
    this.stats.records += records.length;
    const store = this.store;
    if (!store || records.length === 0) return;

    let cur = this.segments[this.segments.length - 1]!;
    const rotate = cur.size >= this.segmentBytes;
    const header: LogRecord[] = [];
    if (rotate || cur.size === 0) {
      const prev = rotate ? cur : this.segments[this.segments.length - 2];
      const prevSize = prev && prev.seq === (rotate ? cur.seq : cur.seq - 1) ? prev.size : 0;
      header.push({ kind: 'segment', seq: rotate ? cur.seq + 1 : cur.seq, prevSize });
      if (this.promised > 0) header.push({ kind: 'promise', ballot: this.promised });
      if (this.trimmed > 0) header.push({ kind: 'trim', below: this.trimmed });
      if (this.rejoining) header.push({ kind: 'rejoin' });
    }
    let size = COMMIT_BYTES;
    for (const r of header) size += FRAME_HEADER_BYTES + payloadBytes(r);
    for (const r of records) size += FRAME_HEADER_BYTES + payloadBytes(r);
    const buf = Buffer.allocUnsafe(size);
    let off = 0;
    for (const r of header) off = encodeRecord(buf, off, r);
    for (const r of records) off = encodeRecord(buf, off, r); // throws before anything is written

    try {
      if (rotate) cur = this.rotate();
      encodeRecord(buf, off, { kind: 'commit', at: cur.size + off });
      store.append(cur.seq, buf);
      cur.size += size;
      this.stats.bytes += size;
      if (this.mode === 'sync') this.sync(() => store.sync(cur.seq));

      let trimmedUp = false;
      for (const r of records) {
        switch (r.kind) {
          case 'promise':
            if (r.ballot > this.promised) this.promised = r.ballot;
            break;
          case 'accept':
            if (r.instance > this.maxAccepted) this.maxAccepted = r.instance;
            if (r.instance > cur.maxInstance) cur.maxInstance = r.instance;
            break;
          case 'decide':
            cur.maxInstance = Math.max(cur.maxInstance, decideReach(r.decisions, this.maxAccepted));
            break;
          case 'trim':
            if (r.below > this.trimmed) {
              this.trimmed = r.below;
              trimmedUp = true;
            }
            break;
          case 'rejoin':
            this.rejoining = true;
            break;
          case 'rejoined':
            this.rejoining = false;
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
    if (!this.store) return;
    try {
      if (this.mode === 'sync' && !this.broken) this.store.sync(this.segments[this.segments.length - 1]!.seq);
      this.store.close();
    } catch (err) {
      throw logError(`closing ${this.path}`, err);
    }
  }

  private sync(f: () => void): void {
    const t0 = process.hrtime.bigint();
    f();
    this.stats.syncs++;
    this.stats.syncMicros += Number(process.hrtime.bigint() - t0) / 1000;
  }

  /** Start the next segment (the current one is synced in sync mode already). */
  private rotate(): Segment {
    const store = this.store!;
    const seg: Segment = { seq: this.segments[this.segments.length - 1]!.seq + 1, size: 0, maxInstance: -1 };
    store.create(seg.seq);
    this.segments.push(seg);
    this.stats.segmentsCreated++;
    if (this.mode === 'sync') this.sync(() => store.syncDir());
    return seg;
  }

  /**
   * Delete the oldest segments (never the current one) that hold nothing at or above the trimmed point,
   * stopping at the first that must stay: only a prefix goes, so recovery can take a gap for damage.
   */
  private dropSegments(): void {
    const store = this.store!;
    let n = 0;
    while (n < this.segments.length - 1 && this.segments[n]!.maxInstance < this.trimmed) n++;
    if (n === 0) return;
    const cur = this.segments[this.segments.length - 1]!;
    // The trim record that makes these segments useless must reach the disk before they leave it, or a
    // power loss could keep the deletion and lose the trim (async mode syncs here too: it is rare).
    if (this.mode !== 'sync') this.sync(() => store.sync(cur.seq));
    for (const s of this.segments.slice(0, n)) {
      store.remove(s.seq);
      this.stats.segmentsDeleted++;
    }
    this.segments = this.segments.slice(n);
    if (this.mode === 'sync') this.sync(() => store.syncDir());
  }
}

// ---------------------------------------------------------------------------------------------------------
// Recovery

interface Recovery {
  state: ReturnType<typeof emptyReplayState>;
  segments: Segment[];
  maxAccepted: number;
  records: number;
  /** Bytes of a torn tail to cut from the last segment (its `size` is already the size to keep). */
  cutBytes: number;
  damage?: LogDamage;
}

/** Read every segment in seq order, apply the good records, and classify the first bad one. */
function recover(store: SegmentStore): Recovery {
  const seqs = store.list().sort((a, b) => a - b);
  const state = emptyReplayState();
  const segments: Segment[] = [];
  let records = 0;
  let maxAccepted = -1;
  let cutBytes = 0;
  const damaged = (seq: number, offset: number, reason: string): Recovery => ({
    state,
    segments,
    maxAccepted,
    records,
    cutBytes: 0,
    damage: { file: store.name(seq), offset, reason },
  });
  for (let k = 0; k < seqs.length; k++) {
    const seq = seqs[k]!;
    const last = k === seqs.length - 1;
    const seg: Segment = { seq, size: 0, maxInstance: -1 };
    const r = scanSegment(store, seq, (d) => {
      applyRecord(state, d);
      records++;
      if (d.kind === 'accept') {
        maxAccepted = Math.max(maxAccepted, d.instance);
        seg.maxInstance = Math.max(seg.maxInstance, d.instance);
      } else if (d.kind === 'decide') {
        seg.maxInstance = Math.max(seg.maxInstance, decideReach(d.decisions, maxAccepted));
      }
    });
    const prev = segments[segments.length - 1];
    if (r.header) {
      if (r.header.seq !== seq) return damaged(seq, 0, `its header names segment ${r.header.seq}`);
      if (prev && prev.seq !== seq - 1) return damaged(seq, 0, `segment ${seq - 1} before it is missing`);
      if (prev && r.header.prevSize > 0 && prev.size !== r.header.prevSize)
        return damaged(prev.seq, prev.size, `it is ${prev.size} bytes but ended at ${r.header.prevSize} when the next segment began`);
    }
    seg.size = r.good;
    segments.push(seg);
    if (r.bad) {
      const torn = last && !r.commitAfter && (r.bad === 'short' || r.bad === 'zero');
      if (!torn) {
        const why = r.commitAfter ? `${r.bad}, with committed records after it` : last ? r.bad : `${r.bad}, in a segment that is not the last`;
        return damaged(seq, r.good, `bad record (${why})`);
      }
      cutBytes = r.size - r.good;
    }
  }
  return { state, segments, maxAccepted, records, cutBytes };
}

interface ScanResult {
  /** File size. */
  size: number;
  /** Offset after the last good record. */
  good: number;
  /** The first record when it is a segment header (format 2). */
  header?: { seq: number; prevSize: number };
  /** Why the record at `good` is bad: cut short by the end of the file, a zero frame header, or else. */
  bad?: 'short' | 'zero' | 'crc mismatch' | 'bad length' | 'malformed';
  /** A valid commit record lies after the bad one: its append, and all before it, were written in full. */
  commitAfter: boolean;
}

/** Read a segment record by record through a bounded buffer, calling `apply` on each good state record. */
function scanSegment(store: SegmentStore, seq: number, apply: (d: ReplayRecord) => void): ScanResult {
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
    let header: ScanResult['header'];
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
      if (!d) {
        bad = 'malformed';
        break;
      }
      if (d.kind === 'segment') {
        if (pos !== 0) {
          bad = 'malformed';
          break;
        }
        header = { seq: d.seq, prevSize: d.prevSize };
      } else if (d.kind !== 'commit') apply(d);
      pos += FRAME_HEADER_BYTES + len;
    }
    let commitAfter = false;
    if (bad) {
      // Look for a commit record that names its own offset: [9][crc][5][f64 at].
      for (let at = pos + 1; at + COMMIT_BYTES <= size && !commitAfter; at++) {
        if (!ensure(at, COMMIT_BYTES)) break;
        const h = at - bufPos;
        if (buf.readUInt32LE(h) !== 9 || buf[h + 8] !== KIND_COMMIT) continue;
        commitAfter = crc32(buf, h + 8, h + 17) === buf.readUInt32LE(h + 4) && buf.readDoubleLE(h + 9) === at;
      }
    }
    return { size, good: pos, header, bad, commitAfter };
  } finally {
    rd.close();
  }
}
