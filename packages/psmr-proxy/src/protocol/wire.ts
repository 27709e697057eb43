/**
 * The two P-SMR datagram formats (little-endian):
 *
 * Command batch: the data of one ring proposal, one client's commands for one group.
 *   u8 magic 0xC5 | u8 version 1 | u8 kind 1 | u8 replier (0: every replica answers; else only the replica
 *   with that reply tag)
 *   u16 clientId high | u32 clientId low | u32 reply IPv4 | u16 reply port
 *   f64 floor (every seq below it has been answered: replicas may forget those replies)
 *   u16 count | count x (f64 seq | u32 length | command bytes)
 *
 * Reply batch: one worker's replies to one client.
 *   u8 magic 0xC5 | u8 version 1 | u8 kind 2 | u8 reply tag of the replica (1..255)
 *   u16 clientId high | u32 clientId low | u16 count
 *   count x (f64 seq | u8 status (0 ok, 1 error) | u32 length | reply bytes)
 *
 * Commands and replies are the service's own bytes; it writes them straight into the batch (no copy).
 */
import { ByteReader, ByteWriter, WireError } from './bytes.js';

const PSMR_MAGIC = 0xc5;
const PSMR_VERSION = 1;
const KIND_COMMANDS = 1;
const KIND_REPLIES = 2;
export const COMMAND_HEADER_BYTES = 26;
/** Most commands (or replies) in one batch. */
export const MAX_BATCH_COUNT = 0xffff;

export const STATUS_OK = 0;
export const STATUS_ERROR = 1;

export interface BatchHeader {
  clientId: number;
  replyHost: string;
  replyPort: number;
  floor: number;
  /** The reply tag of the one replica that should answer; 0 (or absent when writing): every replica. */
  replier?: number;
}

/** Largest reply tag (a replica's tag is 1..MAX_REPLY_TAG; 0 in a command batch means every replica). */
export const MAX_REPLY_TAG = 255;

function ipv4ToU32(host: string): number {
  const parts = host.split('.');
  if (parts.length !== 4) throw new WireError(`reply host must be an IPv4 address, got '${host}'`);
  let v = 0;
  for (const p of parts) {
    const n = Number(p);
    if (!/^\d{1,3}$/.test(p) || n > 255) throw new WireError(`reply host must be an IPv4 address, got '${host}'`);
    v = v * 256 + n;
  }
  return v;
}
const u32ToIpv4 = (v: number): string => `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;

/** The prefix both batch kinds share: magic, version, kind, the reply byte, 48-bit client id. */
function writePrefix(w: ByteWriter, kind: number, clientId: number, reply: number): void {
  if (!Number.isInteger(reply) || reply < 0 || reply > MAX_REPLY_TAG) throw new WireError(`reply tag must be an integer in 0..${MAX_REPLY_TAG}, got ${reply}`);
  w.reset();
  w.u8(PSMR_MAGIC);
  w.u8(PSMR_VERSION);
  w.u8(kind);
  w.u8(reply);
  w.u16(Math.floor(clientId / 2 ** 32));
  w.u32(clientId % 2 ** 32);
}

/** Writes one command batch; `beginCommand`/`endCommand` frame each command the service writes. */
export class CommandBatchWriter {
  readonly w = new ByteWriter(8192);
  count = 0;
  private countAt = 0;
  private lenAt = 0;
  begin(h: BatchHeader): void {
    const w = this.w;
    this.count = 0;
    writePrefix(w, KIND_COMMANDS, h.clientId, h.replier ?? 0);
    w.u32(ipv4ToU32(h.replyHost));
    w.u16(h.replyPort);
    w.f64(h.floor);
    this.countAt = w.reserve(2);
  }
  beginCommand(seq: number): void {
    this.w.f64(seq);
    this.lenAt = this.w.reserve(4);
  }
  endCommand(): void {
    this.w.buf.writeUInt32LE(this.w.pos - this.lenAt - 4, this.lenAt);
    this.count++;
  }
  /** Change who should answer the batch being written (a retried command joining it wants everyone). */
  setReplier(tag: number): void {
    this.w.buf[3] = tag;
  }
  /** Drop the command begun last (its encoding failed). */
  abortCommand(): void {
    this.w.pos = this.lenAt - 8;
  }
  get bytes(): number {
    return this.w.pos;
  }
  finish(): Buffer {
    this.w.buf.writeUInt16LE(this.count, this.countAt);
    return this.w.take();
  }
}

/**
 * Reads a batch: the shared prefix in the constructor, then one entry per `next()` (seq, the kind's own
 * fields, then the entry's byte range). After `next()`, `r` is positioned on the entry's bytes [start, end)
 * with r.end = end, so a service reading past its entry gets a WireError.
 */
abstract class BatchReader {
  readonly r: ByteReader;
  readonly clientId: number;
  /** The byte after the kind: a command batch's replier, a reply batch's reply tag. */
  readonly replyByte: number;
  count = 0;
  seq = 0;
  start = 0;
  end = 0;
  /** Set by a caller that caught an error from next(): the rest of the batch is skipped. */
  broken = false;
  private read = 0;
  private batchEnd = -1;

  constructor(
    data: Uint8Array,
    kind: number,
    private readonly entry: string,
  ) {
    const r = new ByteReader(data);
    this.r = r;
    if (r.u8('magic') !== PSMR_MAGIC) throw new WireError('not a P-SMR batch (bad magic)');
    const v = r.u8('version');
    if (v !== PSMR_VERSION) throw new WireError(`unsupported P-SMR version ${v}`);
    if (r.u8('kind') !== kind) throw new WireError(`not a ${entry} batch`);
    this.replyByte = r.u8('reply tag');
    const hi = r.u16('clientId');
    this.clientId = hi * 2 ** 32 + r.u32('clientId');
  }

  /** The kind's fields between an entry's seq and its length. */
  protected entryFields(): void {}

  /** Advance to the next entry; false at the end. */
  next(): boolean {
    const r = this.r;
    if (this.batchEnd < 0) this.batchEnd = r.end;
    else {
      r.end = this.batchEnd;
      r.pos = this.end;
    }
    if (this.read >= this.count) {
      if (r.pos !== r.end) throw new WireError(`trailing bytes after the last ${this.entry}`);
      return false;
    }
    this.seq = r.f64('seq');
    if (!Number.isSafeInteger(this.seq) || this.seq < 0) throw new WireError('bad seq');
    this.entryFields();
    const len = r.u32(`${this.entry} length`);
    r.need(len, this.entry);
    this.start = r.pos;
    this.end = r.pos + len;
    r.end = this.end;
    this.read++;
    return true;
  }
}

/** A decoded command batch header; commands are read with `next()`. */
export class CommandBatchReader extends BatchReader {
  readonly header: BatchHeader;
  constructor(data: Uint8Array) {
    super(data, KIND_COMMANDS, 'command');
    const r = this.r;
    const replyHost = u32ToIpv4(r.u32('reply host'));
    const replyPort = r.u16('reply port');
    if (replyPort === 0) throw new WireError('reply port 0');
    const floor = r.f64('floor');
    if (!Number.isSafeInteger(floor) || floor < 0) throw new WireError('bad floor');
    this.header = { clientId: this.clientId, replyHost, replyPort, floor, replier: this.replyByte };
    this.count = r.u16('count');
  }
}

/** Writes one reply batch to one client. */
export class ReplyBatchWriter {
  readonly w = new ByteWriter(4096);
  count = 0;
  private countAt = 0;
  private lenAt = 0;
  /** Start a batch to `clientId` from the replica with reply tag `tag` (0 in tests and tools: no tag). */
  begin(clientId: number, tag = 0): void {
    this.count = 0;
    writePrefix(this.w, KIND_REPLIES, clientId, tag);
    this.countAt = this.w.reserve(2);
  }
  beginReply(seq: number, status: number): void {
    this.w.f64(seq);
    this.w.u8(status);
    this.lenAt = this.w.reserve(4);
  }
  endReply(): void {
    this.w.buf.writeUInt32LE(this.w.pos - this.lenAt - 4, this.lenAt);
    this.count++;
  }
  get bytes(): number {
    return this.w.pos;
  }
  /** The finished datagram, a view of the writer's buffer: send it before writing the next batch. */
  view(): Buffer {
    this.w.buf.writeUInt16LE(this.count, this.countAt);
    return this.w.buf.subarray(0, this.w.pos);
  }
}

/** A decoded reply batch; replies are read with `next()` (then `status` holds the reply's status). */
export class ReplyBatchReader extends BatchReader {
  status = 0;
  constructor(data: Uint8Array) {
    super(data, KIND_REPLIES, 'reply');
    this.count = this.r.u16('count');
  }
  protected override entryFields(): void {
    this.status = this.r.u8('status');
    if (this.status > STATUS_ERROR) throw new WireError(`bad status ${this.status}`);
  }
}
