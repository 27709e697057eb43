/**
 * The key-value store service. Keys and values are strings (UTF-8) or bytes; a key is its bytes, so 'a'
 * and Uint8Array [0x61] name the same key, and a value comes back as the type it was stored as.
 *
 * C-G: get, put, delete and cas go to the partition of their key (FNV-1a of the key bytes mod n);
 * mget, mput, scan and size go to g_all. State: partitioned, one Map per worker, keyed by the key bytes as a
 * latin1 string; a value is stored as a one-char type tag plus its bytes as latin1.
 */
import type { ByteReader, ByteWriter } from '../protocol/bytes.js';
import { WireError } from '../protocol/bytes.js';
import { pack, unpack } from 'msgpackr';
import { ERR } from '@ringcast/ring-paxos';
import { ServiceError, type GroupChoice, type Service } from '../service.js';
import { KV_ERR } from './kv-errors.js';

export type KvBytes = string | Uint8Array;

export type KvCommand =
  | { op: 'get'; key: KvBytes }
  | { op: 'put'; key: KvBytes; value: KvBytes }
  | { op: 'delete'; key: KvBytes }
  /** Set `value` if the key currently holds `expected` (null: the key is absent). */
  | { op: 'cas'; key: KvBytes; expected: KvBytes | null; value: KvBytes }
  | { op: 'mget'; keys: KvBytes[] }
  | { op: 'mput'; entries: Array<[KvBytes, KvBytes]> }
  /** Up to `limit` entries whose key starts with `prefix`, in key byte order. */
  | { op: 'scan'; prefix: KvBytes; limit: number }
  | { op: 'size' };

export type KvReply =
  | { value: KvBytes | null }
  | { ok: true }
  | { deleted: boolean }
  | { swapped: boolean }
  | { values: Array<KvBytes | null> }
  | { entries: Array<[KvBytes, KvBytes]> }
  | { size: number };

/** Bounds of one command (a command past them is refused with a typed error and changes nothing). */
export const KV_LIMITS = Object.freeze({ maxKeyBytes: 128, maxValueBytes: 512, maxKeys: 32, maxScan: 32 });

const OP = { get: 1, put: 2, delete: 3, cas: 4, mget: 5, mput: 6, scan: 7, size: 8 } as const;
const OP_NAMES = ['', 'get', 'put', 'delete', 'cas', 'mget', 'mput', 'scan', 'size'] as const;

export class KvState {
  readonly map = new Map<string, string>();
  constructor(
    readonly index: number,
    readonly partitions: number,
  ) {}
}

/** FNV-1a over the key's bytes (a string key: its UTF-8 bytes). */
export function kvKeyHash(key: KvBytes): number {
  let h = 0x811c9dc5;
  if (typeof key === 'string') {
    for (let i = 0; i < key.length; i++) {
      const c = key.charCodeAt(i);
      if (c >= 0x80) return kvKeyHash(Buffer.from(key, 'utf8'));
      h = Math.imul(h ^ c, 0x01000193);
    }
    return h >>> 0;
  }
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
  return h >>> 0;
}

/** Same hash over a key held as a latin1 string of its bytes (replica side). */
function latin1Hash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const bad = (code: string, msg: string): ServiceError => new ServiceError(code, msg);

/** Write a key's or a value's bytes (a string as UTF-8); returns how many, refusing more than `max`. */
function writeBody(w: ByteWriter, x: KvBytes, what: 'key' | 'value', max: number): number {
  let n: number;
  if (typeof x === 'string') n = w.utf8(x);
  else if (x instanceof Uint8Array) {
    n = x.length;
    w.bytes(x);
  } else throw bad(what === 'key' ? KV_ERR.BAD_KEY : KV_ERR.BAD_VALUE, `a ${what} must be a string or a Uint8Array`);
  if (n > max) throw bad(what === 'key' ? KV_ERR.KEY_TOO_LARGE : KV_ERR.VALUE_TOO_LARGE, `${what} of ${n} bytes exceeds ${max}`);
  return n;
}

function writeKey(w: ByteWriter, key: KvBytes): void {
  const at = w.reserve(2);
  w.buf.writeUInt16LE(writeBody(w, key, 'key', KV_LIMITS.maxKeyBytes), at);
}

function writeValue(w: ByteWriter, v: KvBytes): void {
  const at = w.reserve(5);
  w.buf.writeUInt32LE(writeBody(w, v, 'value', KV_LIMITS.maxValueBytes), at);
  w.buf[at + 4] = typeof v === 'string' ? 0 : 1;
}

/** Replica side: a key as the latin1 string of its bytes. */
function readKey(r: ByteReader): string {
  const n = r.u16('key length');
  if (n > KV_LIMITS.maxKeyBytes) throw bad(KV_ERR.KEY_TOO_LARGE, `key of ${n} bytes exceeds ${KV_LIMITS.maxKeyBytes}`);
  return r.latin1(n, 'key');
}

/** Replica side: a value as its tag plus the latin1 string of its bytes. */
function readStoredValue(r: ByteReader): string {
  const n = r.u32('value length');
  if (n > KV_LIMITS.maxValueBytes) throw bad(KV_ERR.VALUE_TOO_LARGE, `value of ${n} bytes exceeds ${KV_LIMITS.maxValueBytes}`);
  // The tag byte and the body together are the stored string (tag char first).
  const stored = r.latin1(n + 1, 'value');
  const tag = stored.charCodeAt(0);
  if (tag > 1) throw bad(KV_ERR.MALFORMED, `bad value type ${tag}`);
  return stored;
}

/** Client side: a stored value back to its type. */
function readClientValue(r: ByteReader): KvBytes {
  const n = r.u32('value length');
  const tag = r.u8('value type');
  r.need(n, 'value');
  if (tag === 0) return r.utf8(n, 'value');
  const s = r.pos;
  r.pos += n;
  return new Uint8Array(r.buf.subarray(s, s + n));
}

function readCount(r: ByteReader, what: string, max: number): number {
  const n = r.u16(what);
  if (n > max) throw bad(KV_ERR.TOO_MANY_KEYS, `${n} ${what} exceeds ${max}`);
  return n;
}

/** Decoded commands at the replica: keys and stored values as latin1 strings. */
type Wire =
  | { op: 'get'; key: string }
  | { op: 'put'; key: string; value: string }
  | { op: 'delete'; key: string }
  | { op: 'cas'; key: string; expected: string | null; value: string }
  | { op: 'mget'; keys: string[] }
  | { op: 'mput'; entries: Array<[string, string]> }
  | { op: 'scan'; prefix: string; limit: number; prefixString: boolean }
  | { op: 'size' };

type Part = Array<string | null> | number | Array<[string, string]>;

const partitionOf = (key: string, n: number): number => (n === 1 ? 0 : latin1Hash(key) % n);

function scanPart(map: Map<string, string>, prefix: string, limit: number): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [k, v] of map) if (k.startsWith(prefix)) out.push([k, v]);
  out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return out.length > limit ? out.slice(0, limit) : out;
}

/**
 * The key-value service. Commands and replies cross the wire as `KvCommand`/`KvReply` at the client; inside
 * a replica they stay latin1 strings (no per-command byte copies beyond the strings themselves).
 */
export const kvService: Service<KvCommand, KvReply, KvState, Part> & {
  /** Replica-side decode type (keys as latin1 strings); exposed for tests. */
  readonly limits: typeof KV_LIMITS;
} = {
  name: 'kv',
  state: 'partitioned',
  // The largest part: a full scan (32 entries of a 128-byte key and a 513-char stored value); a latin1
  // char above 0x7f takes two bytes in msgpack, hence the factor 2.
  maxPartBytes: KV_LIMITS.maxScan * (2 * (KV_LIMITS.maxKeyBytes + KV_LIMITS.maxValueBytes + 1) + 16) + 64,
  limits: KV_LIMITS,
  group(c: KvCommand | Wire, n: number): GroupChoice {
    switch (c.op) {
      case 'get':
      case 'put':
      case 'delete':
      case 'cas':
        if (n === 1) return 0;
        // At a replica keys are latin1 strings of their bytes; at a client, strings (UTF-8) or bytes.
        return isWire(c) ? partitionOf(c.key as string, n) : kvKeyHash(c.key) % n;
      default:
        return 'all';
    }
  },
  kind: (c) => c.op,
  writeCommand(w, c) {
    const op = OP[c?.op as keyof typeof OP];
    if (op === undefined) throw bad(KV_ERR.UNKNOWN_OP, `unknown operation ${JSON.stringify(c?.op)}`);
    w.u8(op);
    switch (c.op) {
      case 'get':
      case 'delete':
        writeKey(w, c.key);
        return;
      case 'put':
        writeKey(w, c.key);
        writeValue(w, c.value);
        return;
      case 'cas':
        writeKey(w, c.key);
        w.u8(c.expected === null ? 0 : 1);
        if (c.expected !== null) writeValue(w, c.expected);
        writeValue(w, c.value);
        return;
      case 'mget':
        if (!Array.isArray(c.keys) || c.keys.length > KV_LIMITS.maxKeys) throw bad(KV_ERR.TOO_MANY_KEYS, `mget takes at most ${KV_LIMITS.maxKeys} keys`);
        w.u16(c.keys.length);
        for (const k of c.keys) writeKey(w, k);
        return;
      case 'mput':
        if (!Array.isArray(c.entries) || c.entries.length > KV_LIMITS.maxKeys) throw bad(KV_ERR.TOO_MANY_KEYS, `mput takes at most ${KV_LIMITS.maxKeys} entries`);
        w.u16(c.entries.length);
        for (const [k, v] of c.entries) {
          writeKey(w, k);
          writeValue(w, v);
        }
        return;
      case 'scan':
        if (!Number.isInteger(c.limit) || c.limit < 1 || c.limit > KV_LIMITS.maxScan) throw bad(KV_ERR.BAD_LIMIT, `scan limit must be an integer in 1..${KV_LIMITS.maxScan}`);
        w.u8(typeof c.prefix === 'string' ? 0 : 1);
        writeKey(w, c.prefix);
        w.u16(c.limit);
        return;
      case 'size':
        return;
    }
  },
  readCommand(r): KvCommand {
    const op = r.u8('operation');
    let c: Wire;
    switch (OP_NAMES[op]) {
      case 'get':
        c = { op: 'get', key: readKey(r) };
        break;
      case 'delete':
        c = { op: 'delete', key: readKey(r) };
        break;
      case 'put':
        c = { op: 'put', key: readKey(r), value: readStoredValue(r) };
        break;
      case 'cas': {
        const key = readKey(r);
        const has = r.u8('cas flag');
        if (has > 1) throw bad(KV_ERR.MALFORMED, 'bad cas flag');
        const expected = has === 1 ? readStoredValue(r) : null;
        c = { op: 'cas', key, expected, value: readStoredValue(r) };
        break;
      }
      case 'mget': {
        const n = readCount(r, 'keys', KV_LIMITS.maxKeys);
        const keys: string[] = [];
        for (let i = 0; i < n; i++) keys.push(readKey(r));
        c = { op: 'mget', keys };
        break;
      }
      case 'mput': {
        const n = readCount(r, 'entries', KV_LIMITS.maxKeys);
        const entries: Array<[string, string]> = [];
        for (let i = 0; i < n; i++) entries.push([readKey(r), readStoredValue(r)]);
        c = { op: 'mput', entries };
        break;
      }
      case 'scan': {
        const t = r.u8('prefix type');
        const prefix = readKey(r);
        const limit = r.u16('limit');
        if (limit < 1 || limit > KV_LIMITS.maxScan) throw bad(KV_ERR.BAD_LIMIT, `scan limit must be in 1..${KV_LIMITS.maxScan}`);
        c = { op: 'scan', prefix, limit, prefixString: t === 0 };
        break;
      }
      case 'size':
        c = { op: 'size' };
        break;
      default:
        throw bad(KV_ERR.UNKNOWN_OP, `unknown operation code ${op}`);
    }
    if (r.pos !== r.end) throw new WireError(`${r.end - r.pos} trailing bytes after a ${c.op} command`);
    (c as { wire?: true }).wire = true;
    return c as unknown as KvCommand;
  },
  writeReply(w, reply, c) {
    // Replica side: `reply` holds stored (tagged latin1) values; see execute/combine.
    const x = reply as unknown as Record<string, unknown>;
    switch (c.op) {
      case 'get':
        if (x.value === null) w.u8(0);
        else {
          w.u8(1);
          putStored(w, x.value as string);
        }
        return;
      case 'put':
      case 'mput':
        return;
      case 'delete':
        w.u8(x.deleted ? 1 : 0);
        return;
      case 'cas':
        w.u8(x.swapped ? 1 : 0);
        return;
      case 'mget': {
        const vs = x.values as Array<string | null>;
        w.u16(vs.length);
        for (const v of vs) {
          if (v === null) w.u8(0);
          else {
            w.u8(1);
            putStored(w, v);
          }
        }
        return;
      }
      case 'scan': {
        const es = x.entries as Array<[string, string]>;
        w.u16(es.length);
        for (const [k, v] of es) {
          w.u16(k.length);
          w.latin1(k);
          putStored(w, v);
        }
        return;
      }
      case 'size':
        w.f64(x.size as number);
        return;
    }
  },
  readReply(r, c): KvReply {
    switch (c.op) {
      case 'get':
        return { value: r.u8('present') === 1 ? readClientValue(r) : null };
      case 'put':
      case 'mput':
        return { ok: true };
      case 'delete':
        return { deleted: r.u8('deleted') === 1 };
      case 'cas':
        return { swapped: r.u8('swapped') === 1 };
      case 'mget': {
        const n = r.u16('values');
        const values: Array<KvBytes | null> = [];
        for (let i = 0; i < n; i++) values.push(r.u8('present') === 1 ? readClientValue(r) : null);
        return { values };
      }
      case 'scan': {
        const n = r.u16('entries');
        const entries: Array<[KvBytes, KvBytes]> = [];
        const asString = typeof c.prefix === 'string';
        for (let i = 0; i < n; i++) {
          const kl = r.u16('key length');
          r.need(kl, 'key');
          const k = asString ? r.utf8(kl, 'key') : new Uint8Array(r.buf.subarray(r.pos, r.pos + kl));
          if (!asString) r.pos += kl;
          entries.push([k, readClientValue(r)]);
        }
        return { entries };
      }
      case 'size':
        return { size: r.f64('size') };
    }
  },
  createPartition: (index, partitions) => new KvState(index, partitions),
  execute(s, cmd): KvReply {
    const c = cmd as unknown as Wire;
    const m = s.map;
    switch (c.op) {
      case 'get':
        return { value: m.get(c.key) ?? null };
      case 'put':
        m.set(c.key, c.value);
        return OK;
      case 'delete':
        return { deleted: m.delete(c.key) };
      case 'cas': {
        const cur = m.get(c.key);
        // A value matches whatever type it was stored as: compare the bytes, not the tag.
        const e = c.expected;
        const match = e === null ? cur === undefined : cur !== undefined && (cur === e || (cur.length === e.length && cur.slice(1) === e.slice(1)));
        if (match) m.set(c.key, c.value);
        return { swapped: match };
      }
      default:
        // A multi-key command in a one-partition stream (smr): its one part is the whole answer.
        return kvService.combine!(cmd, [kvService.executePart!(s, cmd)]);
    }
  },
  executePart(s, cmd): Part {
    const c = cmd as unknown as Wire;
    const m = s.map;
    const mine = (k: string): boolean => partitionOf(k, s.partitions) === s.index;
    switch (c.op) {
      case 'mget':
        return c.keys.map((k) => (mine(k) ? (m.get(k) ?? null) : null));
      case 'mput': {
        let n = 0;
        for (const [k, v] of c.entries) if (mine(k)) (m.set(k, v), n++);
        return n;
      }
      case 'scan':
        return scanPart(m, c.prefix, c.limit);
      case 'size':
        return m.size;
      default:
        // A single-key command never reaches the part path (the executor refuses it in g_all).
        return 0;
    }
  },
  combine(cmd, parts): KvReply {
    const c = cmd as unknown as Wire;
    switch (c.op) {
      case 'mget': {
        const values: Array<string | null> = (parts[0] as Array<string | null>).slice();
        for (let p = 1; p < parts.length; p++) {
          const xs = parts[p] as Array<string | null>;
          for (let i = 0; i < values.length; i++) if (values[i] === null && xs[i] !== null) values[i] = xs[i]!;
        }
        return { values } as unknown as KvReply;
      }
      case 'mput':
        return OK;
      case 'scan': {
        const all = (parts as Array<Array<[string, string]>>).flat();
        all.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
        return { entries: all.slice(0, c.limit) } as unknown as KvReply;
      }
      case 'size':
        return { size: (parts as number[]).reduce((a, b) => a + b, 0) };
      default:
        return OK;
    }
  },
  snapshot(s): Uint8Array {
    // Entries in the map's order, so a restored partition iterates as this one does.
    return pack([...s.map]);
  },
  restore(bytes, index, partitions): KvState {
    const st = new KvState(index, partitions);
    const entries = unpack(bytes) as unknown;
    if (!Array.isArray(entries)) throw new ServiceError(ERR.PSMR_BAD_SNAPSHOT, 'a kv snapshot is a list of [key, value] pairs');
    for (const e of entries) {
      if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || typeof e[1] !== 'string') {
        throw new ServiceError(ERR.PSMR_BAD_SNAPSHOT, 'a kv snapshot entry is a [key, value] pair of strings');
      }
      st.map.set(e[0], e[1]);
    }
    return st;
  },
  digest(s): string {
    // Order-independent: a sum and an xor of per-entry hashes, plus the count.
    let sum = 0;
    let x = 0;
    for (const [k, v] of s.map) {
      const h = latin1Hash(`${k}\u0000${v}`);
      sum = (sum + h) >>> 0;
      x = (x ^ Math.imul(h, 0x9e3779b1)) >>> 0;
    }
    return `${s.map.size}:${sum.toString(16)}:${x.toString(16)}`;
  },
};

const OK = { ok: true } as const;

function isWire(c: unknown): boolean {
  return (c as { wire?: true }).wire === true;
}

/** Write a stored value (tag char + latin1 body) in the client wire form (u8 tag, u32 length, bytes). */
function putStored(w: ByteWriter, stored: string): void {
  w.u32(stored.length - 1);
  w.latin1(stored);
}
