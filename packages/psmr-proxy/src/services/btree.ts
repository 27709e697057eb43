/**
 * The B+-tree service (`state: 'shared'`): 8-byte signed integer keys and values, as `bigint` in commands
 * and replies (a client may also pass a safe-integer `number`), in a B+-tree inside the replica's
 * SharedArrayBuffer (`btree-tree.ts`).
 *
 * Keys are integers in [0, range). The range is split over the n workers at fixed boundaries,
 * bounds[i] = floor(i * range / n): the same on every replica, since range comes from the cluster file.
 * C-G (safe, P-SMR): get to its key's range; insert and delete to g_all (any of them may split or merge
 * nodes that other ranges reach); scan and size to g_all (a scan follows the leaf links past any range).
 * opt-PSMR: `optimisticGroup` sends insert and delete to their key's range too, and `check` is the seed's
 * safety check, run by the worker that delivers one of them before it changes anything.
 *
 * Parameters (the cluster file's `services.btree`, the same on every replica): `keys` bulk-loaded entries,
 * `order`, `fill`, `range`, `nodes`; see BTREE_DEFAULTS.
 */
import { ConfigError, checkKeys } from '@ringcast/ring-paxos';
import type { ByteReader, ByteWriter } from '../protocol/bytes.js';
import { WireError } from '../protocol/bytes.js';
import { ServiceError, type GroupChoice, type Service } from '../service.js';
import { BTREE_ERR } from './btree-errors.js';
import { BTree, MAX_ORDER, MAX_WORKERS, MIN_ORDER, checkConditions, restoreTree, snapshotTree, treeBytes } from './btree-tree.js';

export type BtreeKey = bigint | number;

export type BtreeCommand =
  | { op: 'get'; key: BtreeKey }
  /** Insert, or overwrite the value of a present key. */
  | { op: 'insert'; key: BtreeKey; value: BtreeKey }
  | { op: 'delete'; key: BtreeKey }
  /** Up to `limit` entries with key >= from, ascending. */
  | { op: 'scan'; from: BtreeKey; limit: number }
  | { op: 'size' };

export type BtreeReply =
  | { value: bigint | null }
  /** true: the key was absent and is now present; false: a present key's value was overwritten. */
  | { inserted: boolean }
  | { deleted: boolean }
  | { entries: Array<[bigint, bigint]> }
  | { size: number };

export interface BtreeParams {
  /** Entries bulk-loaded at start. */
  keys: number;
  /** Most keys in a node (a leaf's entries; an internal node has one child more). */
  order: number;
  /** How full the bulk load packs a node, in (0.5, 1]. */
  fill: number;
  /** Keys are integers in [0, range); the bulk load spreads its keys evenly over it. */
  range: number;
  /** Nodes in the pool (fixed: an insert that would need more is refused with ERR_BTREE_FULL). */
  nodes: number;
}

/**
 * Defaults, pinned because they set opt-PSMR's fail rate. Order 64: a leaf takes 16 inserts or 16
 * deletes after the load before the check refuses one. Fill 0.75, not 1: a full load would make the first
 * insert into every leaf a split (a failed optimistic command), and 0.5 the first delete a merge; 0.75
 * leaves room both ways. Range 2 * keys: the load takes the even keys, so half of the key space is absent
 * and an insert can draw an absent key uniformly (the bench draws absent keys for inserts and present keys
 * for deletes). Nodes: room for 1.5 times the pool the keys take at minimum fill.
 */
export const BTREE_DEFAULTS = Object.freeze({ keys: 1_000_000, order: 64, fill: 0.75 });

/** Bounds of one command. */
export const BTREE_LIMITS = Object.freeze({ maxScan: 256 });

const OP = { get: 1, insert: 2, delete: 3, scan: 4, size: 5 } as const;
const OP_NAMES = ['', 'get', 'insert', 'delete', 'scan', 'size'] as const;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

/** Validate service params (absent fields take the defaults); a ConfigError names the field under `field`. */
export function btreeParams(raw: unknown, field = 'services.btree'): BtreeParams {
  if (raw === undefined) raw = {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(field, 'must be an object { keys, order, fill, range, nodes }');
  const o = raw as Record<string, unknown>;
  checkKeys(o, ['keys', 'order', 'fill', 'range', 'nodes'], field);
  const int = (name: string, dflt: number, min: number, max: number): number => {
    const v = o[name] ?? dflt;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
      throw new ConfigError(`${field}.${name}`, `must be an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const keys = int('keys', BTREE_DEFAULTS.keys, 0, 100_000_000);
  const order = int('order', BTREE_DEFAULTS.order, MIN_ORDER, MAX_ORDER);
  const fill = o.fill ?? BTREE_DEFAULTS.fill;
  if (typeof fill !== 'number' || !(fill > 0.5 && fill <= 1)) throw new ConfigError(`${field}.fill`, `must be a number in (0.5, 1], got ${JSON.stringify(fill)}`);
  // keys * range stays exact in a double: the bulk load computes floor(i * range / keys).
  const range = int('range', Math.max(2 * keys, 2), Math.max(keys, 2), Math.floor(Number.MAX_SAFE_INTEGER / Math.max(keys, 1)));
  const minLeaf = order >> 1;
  const atMin = Math.ceil(Math.max(keys, 1) / minLeaf);
  const nodes = int('nodes', Math.ceil(1.5 * atMin) + 64, Math.ceil(atMin * 1.1) + 2, 0x7fff_ffff);
  if (treeBytes(order, nodes) > 2 ** 40) throw new ConfigError(`${field}.nodes`, `${nodes} nodes of order ${order} take more than 1 TiB`);
  return { keys, order, fill, range, nodes };
}

/** One worker's view of the shared tree and the range boundaries of its replica's workers. */
export class BtreeState {
  /** bounds[i]: the smallest key of worker i's range; bounds[workers]: the key range's end. */
  readonly bounds: bigint[];
  constructor(
    readonly tree: BTree,
    readonly worker: number,
    readonly workers: number,
  ) {
    this.bounds = rangeBounds(tree.range, workers);
  }
}

export function rangeBounds(range: bigint, workers: number): bigint[] {
  const b: bigint[] = [];
  for (let i = 0; i <= workers; i++) b.push((BigInt(i) * range) / BigInt(workers));
  return b;
}

/** The worker whose range holds k: the largest i with floor(i * range / n) <= k. */
export function rangeOf(k: bigint, range: bigint, workers: number): number {
  return workers === 1 ? 0 : Number(((k + 1n) * BigInt(workers) - 1n) / range);
}

const bad = (code: string, msg: string): ServiceError => new ServiceError(code, msg);

export type BtreeService = Service<BtreeCommand, BtreeReply, BtreeState> & {
  readonly params: BtreeParams;
  configure(params: unknown): BtreeService;
};

/** The B+-tree service with these params (validated; absent fields take the defaults). */
export function btreeService(raw?: unknown): BtreeService {
  const params = btreeParams(raw);
  const range = BigInt(params.range);
  const shape = { order: params.order, capacity: params.nodes, range };

  const toKey = (x: unknown, what: string): bigint => {
    const k = typeof x === 'number' && Number.isSafeInteger(x) ? BigInt(x) : x;
    if (typeof k !== 'bigint' || k < 0n || k >= range) throw bad(BTREE_ERR.BAD_KEY, `${what} must be an integer in [0, ${range}), got ${String(x)}`);
    return k;
  };
  const toValue = (x: unknown): bigint => {
    const v = typeof x === 'number' && Number.isSafeInteger(x) ? BigInt(x) : x;
    if (typeof v !== 'bigint' || v < INT64_MIN || v > INT64_MAX) throw bad(BTREE_ERR.BAD_VALUE, `a value must be a signed 64-bit integer, got ${String(x)}`);
    return v;
  };
  const checkLimit = (n: unknown): number => {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > BTREE_LIMITS.maxScan) throw bad(BTREE_ERR.BAD_LIMIT, `scan limit must be an integer in 1..${BTREE_LIMITS.maxScan}, got ${String(n)}`);
    return n;
  };
  const i64 = (w: ByteWriter, v: bigint): void => {
    w.buf.writeBigInt64LE(v, w.reserve(8));
  };
  const readI64 = (r: ByteReader, what: string): bigint => {
    r.need(8, what);
    const v = r.buf.readBigInt64LE(r.pos);
    r.pos += 8;
    return v;
  };
  const keyRange = (c: BtreeCommand, n: number): number => rangeOf(toKey((c as { key: BtreeKey }).key, 'key'), range, n);

  const service: BtreeService = {
    name: 'btree',
    state: 'shared',
    params,
    sharedBytes: treeBytes(params.order, params.nodes),
    configure: (p) => btreeService(p),
    initShared(shared) {
      BTree.bulkLoad(shared, shape, params.keys, params.fill);
    },
    group(c, n): GroupChoice {
      if (n === 1) return 0;
      return c.op === 'get' ? keyRange(c, n) : 'all';
    },
    optimisticGroup(c, n): GroupChoice {
      if (n === 1) return 0;
      return c.op === 'get' || c.op === 'insert' || c.op === 'delete' ? keyRange(c, n) : 'all';
    },
    check(s, c, worker, workers): boolean {
      if (c.op === 'get') return true;
      if (c.op !== 'insert' && c.op !== 'delete') return false; // scan and size run at a barrier only
      if (workers !== s.workers || worker !== s.worker) return false;
      const [c1, c2, c3] = checkConditions(s.tree, c.op, c.key as bigint, worker, s.bounds);
      return c1 && c2 && c3;
    },
    kind: (c) => c.op,
    writeCommand(w, c) {
      const op = OP[c?.op as keyof typeof OP];
      if (op === undefined) throw bad(BTREE_ERR.UNKNOWN_OP, `unknown operation ${JSON.stringify(c?.op)}`);
      // Check everything before writing anything.
      switch (c.op) {
        case 'get':
        case 'delete': {
          const k = toKey(c.key, 'key');
          w.u8(op);
          i64(w, k);
          return;
        }
        case 'insert': {
          const k = toKey(c.key, 'key');
          const v = toValue(c.value);
          w.u8(op);
          i64(w, k);
          i64(w, v);
          return;
        }
        case 'scan': {
          const from = toKey(c.from, 'scan from');
          const limit = checkLimit(c.limit);
          w.u8(op);
          i64(w, from);
          w.u16(limit);
          return;
        }
        case 'size':
          w.u8(op);
          return;
      }
    },
    readCommand(r): BtreeCommand {
      const op = r.u8('operation');
      let c: BtreeCommand;
      switch (OP_NAMES[op]) {
        case 'get':
          c = { op: 'get', key: toKey(readI64(r, 'key'), 'key') };
          break;
        case 'delete':
          c = { op: 'delete', key: toKey(readI64(r, 'key'), 'key') };
          break;
        case 'insert':
          c = { op: 'insert', key: toKey(readI64(r, 'key'), 'key'), value: readI64(r, 'value') };
          break;
        case 'scan':
          c = { op: 'scan', from: toKey(readI64(r, 'scan from'), 'scan from'), limit: checkLimit(r.u16('limit')) };
          break;
        case 'size':
          c = { op: 'size' };
          break;
        default:
          throw bad(BTREE_ERR.UNKNOWN_OP, `unknown operation code ${op}`);
      }
      if (r.pos !== r.end) throw new WireError(`${r.end - r.pos} trailing bytes after a ${c.op} command`);
      return c;
    },
    writeReply(w, reply, c) {
      const x = reply as Record<string, unknown>;
      switch (c.op) {
        case 'get':
          if (x.value === null) w.u8(0);
          else (w.u8(1), i64(w, x.value as bigint));
          return;
        case 'insert':
          w.u8(x.inserted ? 1 : 0);
          return;
        case 'delete':
          w.u8(x.deleted ? 1 : 0);
          return;
        case 'scan': {
          const es = x.entries as Array<[bigint, bigint]>;
          w.u16(es.length);
          for (const [k, v] of es) (i64(w, k), i64(w, v));
          return;
        }
        case 'size':
          w.f64(x.size as number);
          return;
      }
    },
    readReply(r, c): BtreeReply {
      switch (c.op) {
        case 'get':
          return { value: r.u8('present') === 1 ? readI64(r, 'value') : null };
        case 'insert':
          return { inserted: r.u8('inserted') === 1 };
        case 'delete':
          return { deleted: r.u8('deleted') === 1 };
        case 'scan': {
          const n = r.u16('entries');
          if (n > BTREE_LIMITS.maxScan) throw new WireError(`a scan reply of ${n} entries exceeds ${BTREE_LIMITS.maxScan}`);
          const entries: Array<[bigint, bigint]> = [];
          for (let i = 0; i < n; i++) entries.push([readI64(r, 'key'), readI64(r, 'value')]);
          return { entries };
        }
        case 'size':
          return { size: r.f64('size') };
      }
    },
    createPartition(index, partitions, shared) {
      if (shared === undefined) throw new ConfigError('service', 'the btree service keeps its state in shared memory; none was given');
      if (partitions > MAX_WORKERS) throw new ConfigError('workers', `the btree service runs at most ${MAX_WORKERS} workers, got ${partitions}`);
      return new BtreeState(new BTree(shared, index), index, partitions);
    },
    execute(s, c): BtreeReply {
      const t = s.tree;
      switch (c.op) {
        case 'get':
          return { value: t.get(c.key as bigint) };
        case 'insert':
          return { inserted: t.insert(c.key as bigint, c.value as bigint) };
        case 'delete':
          return { deleted: t.delete(c.key as bigint) };
        case 'scan':
          return { entries: t.scan(c.from as bigint, c.limit) };
        case 'size':
          return { size: t.size() };
      }
    },
    digest: (s) => s.tree.digest(),
    // The whole tree, shared by every worker: take it at a barrier of all workers.
    snapshot: (s) => snapshotTree(s.tree),
    restore(bytes, index, partitions) {
      const shared = new SharedArrayBuffer(service.sharedBytes!);
      service.restoreShared!(shared, bytes);
      return service.createPartition(index, partitions, shared);
    },
    restoreShared: (shared, bytes) => restoreTree(shared, bytes, shape),
  };
  return service;
}

/** The B+-tree service with the default params (BTREE_DEFAULTS); `configure` gives another. */
export const btree: BtreeService = btreeService();
