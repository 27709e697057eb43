import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Packr } from 'msgpackr';
import { mpEncode } from '../core/mpack.js';
import { ERR, RingcastError } from '../errors.js';
import { ReplayGuard, type ReplayGuardOptions } from '../core/replay-window.js';
import { MESSAGE_SHAPES, type FieldShape, type Message, type MessageType } from '../core/messages.js';

/**
 * Datagram layout:
 *   byte 0      WIRE_VERSION
 *   byte 1      message type
 *   byte 2      flags (bit 0: an HMAC tag ends the datagram, and the envelope follows the header)
 *   bytes 3..20 envelope (only with a cluster secret): the sender's incarnation, its datagram counter and
 *               its clock in milliseconds, 48-bit big-endian each (see core/replay-window.ts)
 *   then        msgpack array of the type's fields, in MESSAGE_SHAPES order
 *   last 16     HMAC-SHA256 over everything before it, truncated (only with a cluster secret)
 * Decoding never throws: a bad datagram comes back as a DropReason for the caller to count. With a secret,
 * a datagram seen before, older than the sender's window or outside the freshness window is dropped as
 * 'replay' or 'stale'; without one there is no envelope (anyone can forge a datagram then anyway).
 */
export const WIRE_VERSION = 6;
const HEADER_BYTES = 3;
const ENVELOPE_BYTES = 18;
export const TAG_BYTES = 16;
const FLAG_TAG = 1;
/** Largest UDP payload over IPv4. */
export const MAX_UDP_PAYLOAD = 65507;

export type DropReason = 'short' | 'oversize' | 'version' | 'type' | 'auth' | 'malformed' | 'shape' | 'replay' | 'stale';

export interface CodecOptions {
  /** Byte bound of a datagram, tag included. */
  maxDatagramBytes: number;
  /** Cluster secret: when set every datagram is tagged and untagged or mistagged ones are refused. */
  secret?: string | Uint8Array;
  /**
   * With a secret: this sender's incarnation, 48 bits, drawn at random once per codec (one codec per
   * process and role set, never shared by two senders). Default: 6 random bytes.
   */
  incarnation?: number;
  /** With a secret: the clock stamped into envelopes and checked for freshness (ms). Default Date.now. */
  now?: () => number;
  /** With a secret: anti-replay bounds, or false to verify tags only (a passive observer). */
  replay?: Partial<ReplayGuardOptions> | false;
}

export type Decoded = { ok: true; msg: Message } | { ok: false; reason: DropReason };

/** A message that does not fit in one datagram (encode side; decoding never throws). */
export class CodecError extends RingcastError {
  constructor(message: string) {
    super(ERR.ENCODE, message);
    this.name = 'CodecError';
  }
}

const allocUnsafe = (n: number): Uint8Array => Buffer.allocUnsafe(n);

const packr = new Packr({ useRecords: false, variableMapSize: true, moreTypes: false });

function checkField(kind: FieldShape['kind'], v: unknown): boolean {
  switch (kind) {
    case 'u':
      return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
    case 'i':
      return typeof v === 'number' && Number.isSafeInteger(v);
    case 'b':
      return v instanceof Uint8Array;
    case 'u[]':
      if (!Array.isArray(v)) return false;
      for (let k = 0; k < v.length; k++) {
        const x = v[k];
        if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) return false;
      }
      return true;
    case 'b[]':
      if (!Array.isArray(v)) return false;
      for (let k = 0; k < v.length; k++) if (!(v[k] instanceof Uint8Array)) return false;
      return true;
  }
}

type F = any[]; // eslint-disable-line @typescript-eslint/no-explicit-any -- fields already checked against the shape

/**
 * One object literal per message type (fixed key order, so V8 gives every decoded message of a type the
 * same hidden class instead of growing each object key by key). Checked against MESSAGE_SHAPES below.
 */
const BUILDERS: Readonly<Record<MessageType, (f: F) => Message>> = {
  1: (f) => ({ t: 1, ring: f[0], from: f[1], floor: f[2], seqs: f[3], datas: f[4] }),
  2: (f) => ({ t: 2, ring: f[0], from: f[1], seqs: f[2] }),
  3: (f) => ({ t: 3, ring: f[0], from: f[1], ballot: f[2], lo: f[3], hi: f[4] }),
  4: (f) => ({ t: 4, ring: f[0], from: f[1], ballot: f[2], lo: f[3], hi: f[4], trimmed: f[5], top: f[6], insts: f[7], vballots: f[8], vids: f[9], values: f[10], decided: f[11] }),
  5: (f) => ({ t: 5, ring: f[0], from: f[1], ballot: f[2], instance: f[3], vid: f[4], value: f[5], decisions: f[6], safe: f[7], layout: f[8] }),
  6: (f) => ({ t: 6, ring: f[0], from: f[1], ballot: f[2], instance: f[3], vid: f[4], votes: f[5] }),
  7: (f) => ({ t: 7, ring: f[0], from: f[1], ballot: f[2], decisions: f[3], safe: f[4] }),
  8: (f) => ({ t: 8, ring: f[0], from: f[1], delivered: f[2], start: f[3], paced: f[4] }),
  9: (f) => ({ t: 9, ring: f[0], from: f[1], oldest: f[2], next: f[3], ballot: f[4] }),
  10: (f) => ({ t: 10, ring: f[0], from: f[1], lo: f[2], hi: f[3] }),
  11: (f) => ({ t: 11, ring: f[0], from: f[1], trimmed: f[2], insts: f[3], vids: f[4], values: f[5] }),
  12: (f) => ({ t: 12, ring: f[0], from: f[1], ballot: f[2], promised: f[3] }),
  13: (f) => ({ t: 13, ring: f[0], from: f[1], ballot: f[2], safe: f[3] }),
  14: (f) => ({ t: 14, ring: f[0], from: f[1], ballot: f[2] }),
  15: (f) => ({ t: 15, ring: f[0], from: f[1], coordinator: f[2], ballot: f[3] }),
  16: (f) => ({ t: 16, ring: f[0], from: f[1], nonce: f[2] }),
  17: (f) => ({ t: 17, ring: f[0], from: f[1], nonce: f[2], promised: f[3], top: f[4] }),
  18: (f) => ({ t: 18, ring: f[0], from: f[1], pos: f[2] }),
};

// The builders must say exactly what the frozen shapes say, in the same order: fail loudly at load if not.
for (const [t, shape] of Object.entries(MESSAGE_SHAPES)) {
  const built = BUILDERS[Number(t) as MessageType](shape.map((_, k) => k));
  const keys = Object.keys(built);
  const want = ['t', ...shape.map((f) => f.name)];
  if (built.t !== Number(t) || keys.length !== want.length || keys.some((k, i) => k !== want[i] || (i > 0 && (built as unknown as Record<string, unknown>)[k] !== i - 1))) {
    throw new Error(`codec: decoder for message type ${t} disagrees with MESSAGE_SHAPES`);
  }
}

const U32 = 2 ** 32;

function writeU48(buf: Uint8Array, off: number, v: number): void {
  const hi = Math.floor(v / U32);
  const lo = v >>> 0;
  buf[off] = hi >>> 8;
  buf[off + 1] = hi;
  buf[off + 2] = lo >>> 24;
  buf[off + 3] = lo >>> 16;
  buf[off + 4] = lo >>> 8;
  buf[off + 5] = lo;
}

function readU48(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 8) | buf[off + 1]!) * U32 + (((buf[off + 2]! << 24) | (buf[off + 3]! << 16) | (buf[off + 4]! << 8) | buf[off + 5]!) >>> 0);
}

export class Codec {
  private readonly max: number;
  private readonly secret: Buffer | undefined;
  private readonly incarnation: number;
  private counter = 0;
  private readonly now: () => number;
  /** Senders seen and their windows (with a secret, unless turned off). */
  readonly replay: ReplayGuard | undefined;

  constructor(opts: CodecOptions) {
    this.max = Math.min(opts.maxDatagramBytes, MAX_UDP_PAYLOAD);
    this.secret = opts.secret === undefined || opts.secret.length === 0 ? undefined : Buffer.from(opts.secret);
    this.incarnation = opts.incarnation ?? randomBytes(6).readUIntBE(0, 6);
    if (!Number.isSafeInteger(this.incarnation) || this.incarnation < 0 || this.incarnation >= 2 ** 48) throw new RangeError(`incarnation must be a 48-bit integer, got ${this.incarnation}`);
    this.now = opts.now ?? Date.now;
    this.replay = this.secret && opts.replay !== false ? new ReplayGuard(this.now(), opts.replay || {}) : undefined;
  }

  get authenticated(): boolean {
    return this.secret !== undefined;
  }

  encode(msg: Message): Buffer {
    const shape = MESSAGE_SHAPES[msg.t];
    const fields = new Array(shape.length);
    const rec = msg as unknown as Record<string, unknown>;
    for (let k = 0; k < shape.length; k++) fields[k] = rec[shape[k]!.name];
    const tagLen = this.secret ? TAG_BYTES : 0;
    const head = this.secret ? HEADER_BYTES + ENVELOPE_BYTES : HEADER_BYTES;
    // The body is written once, straight into the datagram, after the header and envelope bytes left free;
    // anything the small writer does not handle (never a well-formed message) goes through msgpackr.
    let buf = mpEncode(fields, head, tagLen, allocUnsafe) as Buffer | undefined;
    if (buf === undefined) {
      const body = packr.pack(fields);
      buf = Buffer.allocUnsafe(head + body.length + tagLen);
      buf.set(body, head);
    }
    const total = buf.length;
    if (total > this.max) throw new CodecError(`message type ${msg.t} encodes to ${total} bytes, above the ${this.max}-byte datagram bound`);
    buf[0] = WIRE_VERSION;
    buf[1] = msg.t;
    buf[2] = this.secret ? FLAG_TAG : 0;
    if (this.secret) {
      writeU48(buf, HEADER_BYTES, this.incarnation);
      writeU48(buf, HEADER_BYTES + 6, ++this.counter);
      writeU48(buf, HEADER_BYTES + 12, Math.floor(this.now()));
      const tag = createHmac('sha256', this.secret).update(buf.subarray(0, total - TAG_BYTES)).digest();
      tag.copy(buf, total - TAG_BYTES, 0, TAG_BYTES);
    }
    return buf;
  }

  decode(buf: Uint8Array): Decoded {
    if (buf.length < HEADER_BYTES + 1) return { ok: false, reason: 'short' };
    if (buf.length > this.max) return { ok: false, reason: 'oversize' };
    if (buf[0] !== WIRE_VERSION) return { ok: false, reason: 'version' };
    const t = buf[1] as MessageType;
    const shape = MESSAGE_SHAPES[t];
    if (shape === undefined) return { ok: false, reason: 'type' };
    const flags = buf[2]!;
    let end = buf.length;
    let start = HEADER_BYTES;
    if (this.secret) {
      if (flags !== FLAG_TAG || buf.length < HEADER_BYTES + ENVELOPE_BYTES + 1 + TAG_BYTES) return { ok: false, reason: 'auth' };
      end -= TAG_BYTES;
      const want = createHmac('sha256', this.secret).update(buf.subarray(0, end)).digest().subarray(0, TAG_BYTES);
      if (!timingSafeEqual(want, buf.subarray(end))) return { ok: false, reason: 'auth' };
      if (this.replay) {
        const v = this.replay.check(readU48(buf, HEADER_BYTES), readU48(buf, HEADER_BYTES + 6), readU48(buf, HEADER_BYTES + 12), this.now());
        if (v !== 'ok') return { ok: false, reason: v };
      }
      start += ENVELOPE_BYTES;
    } else if (flags === FLAG_TAG) {
      // Without the secret the tag cannot be checked: read past the envelope and the tag (an observer).
      end -= TAG_BYTES;
      start += ENVELOPE_BYTES;
      if (end <= start) return { ok: false, reason: 'short' };
    } else if (flags !== 0) {
      return { ok: false, reason: 'malformed' };
    }
    let fields: unknown;
    try {
      fields = packr.unpack(buf.subarray(start, end));
    } catch {
      return { ok: false, reason: 'malformed' };
    }
    if (!Array.isArray(fields) || fields.length !== shape.length) return { ok: false, reason: 'shape' };
    for (let k = 0; k < shape.length; k++) {
      if (!checkField(shape[k]!.kind, (fields as unknown[])[k])) return { ok: false, reason: 'shape' };
    }
    const msg = BUILDERS[t](fields as F);
    if (!fieldsAgree(msg as unknown as Message)) return { ok: false, reason: 'shape' };
    return { ok: true, msg: msg as unknown as Message };
  }
}

/**
 * Rules the per-field kinds cannot say: parallel arrays of equal length, decision triples, and the signed
 * fields' ranges (Progress: delivered >= -1, start is START_NEXT, START_OLDEST or an instance, paced 0 or 1).
 */
function fieldsAgree(m: Message): boolean {
  switch (m.t) {
    case 1:
      return m.seqs.length === m.datas.length;
    case 4:
      return m.insts.length === m.vballots.length && m.insts.length === m.vids.length && m.insts.length === m.values.length && m.insts.length === m.decided.length && m.decided.every((d) => d <= 1);
    case 5:
      return m.decisions.length % 3 === 0 && m.layout.length > 0 && m.layout.length <= 64;
    case 7:
      return m.decisions.length % 3 === 0;
    case 8:
      return m.delivered >= -1 && m.start >= -2 && m.paced <= 1;
    case 11:
      return m.insts.length === m.vids.length && m.insts.length === m.values.length;
    default:
      return true;
  }
}
