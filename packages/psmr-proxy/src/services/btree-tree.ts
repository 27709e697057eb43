/**
 * A B+-tree inside one SharedArrayBuffer: signed 64-bit integer keys and values (held as `bigint` at the
 * API, as `BigInt64Array` words in memory), a fixed pool of fixed-size nodes with a free-list allocator,
 * internal nodes and linked leaves. Pure: no I/O, no clock, no randomness.
 *
 * Layout (little-endian, every offset a multiple of 8):
 *   header  [0, 128)         int32 fields (H_*), the key range as an int64 at byte 64
 *   slots   [128, 4224)      per worker w (64 bytes each, own cache line): entry-count delta (f64) and two
 *                            32-bit digest sums (int32); only worker w writes them, readers add them up
 *   nodes   [4224, ...)      `capacity` nodes of NODE_META + 16 * order bytes each:
 *                            meta int32 [isLeaf, n, next leaf (or next free node), unused],
 *                            keys int64[order], then values int64[order] (leaf) or children int32[order+1]
 *                            (internal, over the same bytes).
 * A leaf holds up to `order` entries, an internal node up to `order` keys (order + 1 children); every node
 * but the root holds at least floor(order / 2) keys. Child c of an internal node holds the keys k with
 * key[c-1] <= k < key[c].
 *
 * Concurrency (opt-PSMR): internal nodes, the allocator and the links change only in a restructuring
 * insert or delete, which a mode runs with every other worker stopped. A write that passed the safety
 * check (`checkConditions`) writes its leaf's entries and count, and its own worker's slot: no word another
 * worker reads or writes at the same time.
 */

import { ERR } from '@ringcast/ring-paxos';
import { ServiceError } from '../service.js';
import { BTREE_ERR } from './btree-errors.js';

export const MAX_WORKERS = 64;
export const MIN_ORDER = 4;
export const MAX_ORDER = 1024;
const MAX_HEIGHT = 64;
const MAGIC = 0x31525442; // 'BTR1'

// int32 header fields
const H_MAGIC = 0;
const H_ORDER = 1;
const H_CAPACITY = 2;
const H_ROOT = 3;
const H_HEIGHT = 4;
const H_FREE = 5;
const H_FREE_COUNT = 6;
const H_BUMP = 7;
const H_FIRST_LEAF = 8;
const RANGE_I64 = 8; // byte 64
const SLOTS_BYTE = 128;
const SLOT_BYTES = 64;
export const HEADER_BYTES = SLOTS_BYTE + MAX_WORKERS * SLOT_BYTES;
const NODE_META = 16;
const NONE = -1;

export const nodeBytes = (order: number): number => NODE_META + 16 * order;
export const treeBytes = (order: number, capacity: number): number => HEADER_BYTES + capacity * nodeBytes(order);

let H1 = 0;
let H2 = 0;
/** The two 32-bit hashes of the entry whose key and value start at int32 indexes k and v, into H1, H2. */
function entryHash(i32: Int32Array, k: number, v: number): void {
  const a = fmix(i32[k]! ^ fmix(i32[k + 1]! ^ 0x27d4eb2f));
  const b = fmix(i32[v]! ^ fmix(i32[v + 1]! ^ 0x165667b1));
  H1 = fmix(a ^ Math.imul(b, 0x9e3779b1));
  H2 = fmix(((a + 0x7f4a7c15) | 0) ^ fmix((b + 0x61c88647) | 0));
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** The tree's shape: order, node pool and key range [0, range). */
export interface TreeShape {
  order: number;
  capacity: number;
  range: bigint;
}

const full = (why: string): ServiceError => new ServiceError(BTREE_ERR.FULL, `${why}; nothing changed`);
const hex8 = (x: number): string => (x >>> 0).toString(16).padStart(8, '0');
const digestText = (n: number, a: number, b: number): string => `${n}:${hex8(a)}${hex8(b)}`;

/** The safety check's three conditions, each as it held (see `checkConditions`). */
export type Conditions = [leafFits: boolean, belowLeftNeighbour: boolean, aboveRightNeighbour: boolean];


export class BTree {
  readonly i32: Int32Array;
  readonly i64: BigInt64Array;
  readonly f64: Float64Array;
  readonly order: number;
  readonly capacity: number;
  readonly range: bigint;
  readonly minKeys: number;
  private readonly nodeWords: number; // node size in int32 words
  private readonly countAt: number; // f64 index of this worker's count
  private readonly sumAt: number; // i32 index of this worker's first digest sum
  // Descent path of the last restructuring operation (node ids, child indexes), root first.
  private readonly pathNode = new Int32Array(MAX_HEIGHT);
  private readonly pathIdx = new Int32Array(MAX_HEIGHT);

  /** A view of the tree already laid out in `shared` (by `BTree.init` or `restoreTree`), writing as `worker`. */
  constructor(
    readonly shared: SharedArrayBuffer,
    readonly worker = 0,
  ) {
    if (!Number.isInteger(worker) || worker < 0 || worker >= MAX_WORKERS) throw new RangeError(`worker must be in 0..${MAX_WORKERS - 1}`);
    this.i32 = new Int32Array(shared);
    this.i64 = new BigInt64Array(shared);
    this.f64 = new Float64Array(shared);
    if (this.i32[H_MAGIC] !== MAGIC) throw new RangeError('no B+-tree laid out in this buffer');
    this.order = this.i32[H_ORDER]!;
    this.capacity = this.i32[H_CAPACITY]!;
    this.range = this.i64[RANGE_I64]!;
    this.minKeys = this.order >> 1;
    this.nodeWords = nodeBytes(this.order) / 4;
    this.countAt = (SLOTS_BYTE + worker * SLOT_BYTES) / 8;
    this.sumAt = (SLOTS_BYTE + worker * SLOT_BYTES + 8) / 4;
  }

  /** Lay out an empty tree (one empty root leaf) in `shared`, which must hold `treeBytes(order, capacity)`. */
  static init(shared: SharedArrayBuffer, shape: TreeShape): BTree {
    const { order, capacity } = shape;
    if (shared.byteLength < treeBytes(order, capacity)) throw new RangeError(`the buffer holds ${shared.byteLength} bytes, the tree needs ${treeBytes(order, capacity)}`);
    new Uint8Array(shared, 0, HEADER_BYTES).fill(0);
    const i32 = new Int32Array(shared);
    i32[H_MAGIC] = MAGIC;
    i32[H_ORDER] = order;
    i32[H_CAPACITY] = capacity;
    i32[H_FREE] = NONE;
    i32[H_FREE_COUNT] = capacity;
    i32[H_BUMP] = 0;
    new BigInt64Array(shared)[RANGE_I64] = shape.range;
    const t = new BTree(shared, 0);
    const root = t.alloc(true);
    i32[H_ROOT] = root;
    i32[H_FIRST_LEAF] = root;
    i32[H_HEIGHT] = 1;
    return t;
  }

  // ---- node fields --------------------------------------------------------------------------------
  private meta(id: number): number {
    return (HEADER_BYTES >> 2) + id * this.nodeWords;
  }
  /** i64 index of key 0 of node `id`. */
  keyAt(id: number): number {
    return (this.meta(id) + 4) >> 1;
  }
  /** i64 index of value 0 of leaf `id`. */
  private valAt(id: number): number {
    return this.keyAt(id) + this.order;
  }
  /** i32 index of child 0 of internal node `id`. */
  private kidAt(id: number): number {
    return (this.keyAt(id) + this.order) << 1;
  }
  isLeaf(id: number): boolean {
    return this.i32[this.meta(id)] === 1;
  }
  /** Keys in node `id`, clamped to the node's bounds (a reader never indexes past a node). */
  count(id: number): number {
    const n = this.i32[this.meta(id) + 1]!;
    return n < 0 ? 0 : n > this.order ? this.order : n;
  }
  private setCount(id: number, n: number): void {
    this.i32[this.meta(id) + 1] = n;
  }
  next(id: number): number {
    return this.i32[this.meta(id) + 2]!;
  }
  private setNext(id: number, v: number): void {
    this.i32[this.meta(id) + 2] = v;
  }
  key(id: number, j: number): bigint {
    return this.i64[this.keyAt(id) + j]!;
  }
  value(id: number, j: number): bigint {
    return this.i64[this.valAt(id) + j]!;
  }
  child(id: number, j: number): number {
    return this.i32[this.kidAt(id) + j]!;
  }
  get root(): number {
    return this.i32[H_ROOT]!;
  }
  get height(): number {
    return this.i32[H_HEIGHT]!;
  }
  get firstLeaf(): number {
    return this.i32[H_FIRST_LEAF]!;
  }
  get freeNodes(): number {
    return this.i32[H_FREE_COUNT]!;
  }
  /** Nodes ever handed out from the pool (the rest were never used): what a snapshot copies. */
  get usedPrefix(): number {
    return this.i32[H_BUMP]!;
  }

  // ---- allocator (restructuring only: never while another worker runs) -----------------------------
  private alloc(leaf: boolean): number {
    let id = this.i32[H_FREE]!;
    if (id !== NONE) this.i32[H_FREE] = this.next(id);
    else {
      id = this.i32[H_BUMP]!;
      if (id >= this.capacity) throw full('the node pool is exhausted');
      this.i32[H_BUMP] = id + 1;
    }
    this.i32[H_FREE_COUNT]!--;
    const m = this.meta(id);
    this.i32[m] = leaf ? 1 : 0;
    this.i32[m + 1] = 0;
    this.i32[m + 2] = NONE;
    return id;
  }
  private free(id: number): void {
    const m = this.meta(id);
    this.i32[m] = 2; // neither leaf nor internal: a free node
    this.i32[m + 1] = 0;
    this.i32[m + 2] = this.i32[H_FREE]!;
    this.i32[H_FREE] = id;
    this.i32[H_FREE_COUNT]!++;
  }

  // ---- entry count and digest (this worker's slot) ---------------------------------------------------
  /** Add or remove (sign -1) the hash of entry j of leaf `id` to this worker's digest sums. */
  private account(id: number, j: number, sign: 1 | -1): void {
    entryHash(this.i32, (this.keyAt(id) + j) << 1, (this.valAt(id) + j) << 1);
    const s = this.sumAt;
    this.i32[s] = (this.i32[s]! + sign * H1) | 0;
    this.i32[s + 1] = (this.i32[s + 1]! + sign * H2) | 0;
  }
  private addCount(d: number): void {
    this.f64[this.countAt]! += d;
  }

  /** Entries in the tree: every worker's count slot added up. */
  size(): number {
    let n = 0;
    for (let w = 0; w < MAX_WORKERS; w++) n += this.f64[(SLOTS_BYTE + w * SLOT_BYTES) / 8]!;
    return n;
  }

  /** An order-independent digest of the entries (count and two 32-bit sums of entry hashes), O(workers). */
  digest(): string {
    let a = 0;
    let b = 0;
    for (let w = 0; w < MAX_WORKERS; w++) {
      const s = (SLOTS_BYTE + w * SLOT_BYTES + 8) / 4;
      a = (a + this.i32[s]!) | 0;
      b = (b + this.i32[s + 1]!) | 0;
    }
    return digestText(this.size(), a, b);
  }

  /** The same digest recomputed from every entry, walking the leaves (tests: the O(1) updates must agree). */
  digestFull(): string {
    let a = 0;
    let b = 0;
    let n = 0;
    for (let leaf = this.firstLeaf, steps = 0; leaf !== NONE && steps <= this.capacity; leaf = this.next(leaf), steps++) {
      const c = this.count(leaf);
      for (let j = 0; j < c; j++) {
        entryHash(this.i32, (this.keyAt(leaf) + j) << 1, (this.valAt(leaf) + j) << 1);
        a = (a + H1) | 0;
        b = (b + H2) | 0;
      }
      n += c;
    }
    return digestText(n, a, b);
  }

  // ---- search -------------------------------------------------------------------------------------
  /** Child index of internal node `id` for key k: the number of its keys <= k. */
  private route(id: number, k: bigint): number {
    const base = this.keyAt(id);
    let lo = 0;
    let hi = this.count(id);
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.i64[base + mid]! <= k) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  /** First position in leaf `id` whose key is >= k. */
  private lowerBound(id: number, k: bigint): number {
    const base = this.keyAt(id);
    let lo = 0;
    let hi = this.count(id);
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.i64[base + mid]! < k) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
  /** The leaf key k reaches, recording the path (internal nodes and child indexes); returns the depth. */
  private descend(k: bigint): number {
    let id = this.root;
    let d = 0;
    while (!this.isLeaf(id) && d < MAX_HEIGHT - 1) {
      const c = this.route(id, k);
      this.pathNode[d] = id;
      this.pathIdx[d] = c;
      d++;
      id = this.child(id, c);
    }
    this.pathNode[d] = id;
    return d;
  }
  /** The leaf key k reaches (reads only). */
  leafOf(k: bigint): number {
    let id = this.root;
    for (let d = 0; !this.isLeaf(id) && d < MAX_HEIGHT; d++) id = this.child(id, this.route(id, k));
    return id;
  }

  get(k: bigint): bigint | null {
    const leaf = this.leafOf(k);
    const p = this.lowerBound(leaf, k);
    return p < this.count(leaf) && this.key(leaf, p) === k ? this.value(leaf, p) : null;
  }

  /** Up to `limit` entries with key >= from, ascending. */
  scan(from: bigint, limit: number): Array<[bigint, bigint]> {
    const out: Array<[bigint, bigint]> = [];
    let leaf = this.leafOf(from);
    let p = this.lowerBound(leaf, from);
    // Bounded by the pool: a damaged link cycle cannot loop forever.
    for (let steps = 0; leaf !== NONE && out.length < limit && steps <= this.capacity; steps++) {
      const n = this.count(leaf);
      for (; p < n && out.length < limit; p++) out.push([this.key(leaf, p), this.value(leaf, p)]);
      leaf = this.next(leaf);
      p = 0;
    }
    return out;
  }

  /**
   * The key interval [lo, hi) the tree routes to the leaf key k reaches (null: unbounded on that side):
   * the separators of α's parent around α, narrowed by those of its ancestors when α is the parent's
   * first or last child.
   */
  routeOf(k: bigint): { leaf: number; lo: bigint | null; hi: bigint | null } {
    let id = this.root;
    let lo: bigint | null = null;
    let hi: bigint | null = null;
    for (let d = 0; !this.isLeaf(id) && d < MAX_HEIGHT; d++) {
      const c = this.route(id, k);
      if (c > 0) lo = this.key(id, c - 1);
      if (c < this.count(id)) hi = this.key(id, c);
      id = this.child(id, c);
    }
    return { leaf: id, lo, hi };
  }

  /**
   * Condition 1 of the safety check: inserting (absent key) or deleting (present key) k in its leaf keeps
   * the leaf within its fill bounds. An overwrite and a delete of an absent key never restructure.
   */
  leafFits(leaf: number, op: 'insert' | 'delete', k: bigint): boolean {
    const n = this.count(leaf);
    const p = this.lowerBound(leaf, k);
    const present = p < n && this.key(leaf, p) === k;
    if (op === 'insert') return present || n < this.order;
    return !present || leaf === this.root || n - 1 >= this.minKeys;
  }

  // ---- insert ---------------------------------------------------------------------------------------
  /** Insert or overwrite; true when the key was absent. Throws ERR_BTREE_FULL, changing nothing. */
  insert(k: bigint, v: bigint): boolean {
    const d = this.descend(k);
    const leaf = this.pathNode[d]!;
    const n = this.count(leaf);
    const p = this.lowerBound(leaf, k);
    const kb = this.keyAt(leaf);
    const vb = this.valAt(leaf);
    if (p < n && this.i64[kb + p] === k) {
      this.account(leaf, p, -1);
      this.i64[vb + p] = v;
      this.account(leaf, p, 1);
      return false;
    }
    if (n < this.order) {
      this.i64.copyWithin(kb + p + 1, kb + p, kb + n);
      this.i64.copyWithin(vb + p + 1, vb + p, vb + n);
      this.i64[kb + p] = k;
      this.i64[vb + p] = v;
      this.setCount(leaf, n + 1);
      this.account(leaf, p, 1);
      this.addCount(1);
      return true;
    }
    // A split: count the nodes it takes before changing anything.
    let need = 1;
    let dd = d - 1;
    while (dd >= 0 && this.count(this.pathNode[dd]!) === this.order) (need++, dd--);
    if (dd < 0) need++;
    if (this.freeNodes < need) throw full(`an insert needs ${need} free nodes, the pool has ${this.freeNodes}`);
    // The leaf's entries plus the new one, split in two halves.
    const keys: bigint[] = [];
    const vals: bigint[] = [];
    for (let j = 0; j < n; j++) (keys.push(this.i64[kb + j]!), vals.push(this.i64[vb + j]!));
    keys.splice(p, 0, k);
    vals.splice(p, 0, v);
    const right = this.alloc(true);
    const half = keys.length >> 1;
    this.writeLeaf(leaf, keys, vals, 0, half);
    this.writeLeaf(right, keys, vals, half, keys.length);
    this.setNext(right, this.next(leaf));
    this.setNext(leaf, right);
    const j = this.lowerBound(half > p ? leaf : right, k);
    this.account(half > p ? leaf : right, j, 1);
    this.addCount(1);
    this.pushUp(d - 1, keys[half]!, right);
    return true;
  }

  private writeLeaf(id: number, keys: bigint[], vals: bigint[], from: number, to: number): void {
    const kb = this.keyAt(id);
    const vb = this.valAt(id);
    for (let j = from; j < to; j++) {
      this.i64[kb + j - from] = keys[j]!;
      this.i64[vb + j - from] = vals[j]!;
    }
    this.setCount(id, to - from);
  }

  private writeInternal(id: number, keys: bigint[], kids: number[], from: number, to: number): void {
    const kb = this.keyAt(id);
    const cb = this.kidAt(id);
    for (let j = from; j < to; j++) this.i64[kb + j - from] = keys[j]!;
    for (let j = from; j <= to; j++) this.i32[cb + j - from] = kids[j]!;
    this.setCount(id, to - from);
  }

  /** Insert separator `sep` with its right child `right` into path node `d` (a new root when d < 0). */
  private pushUp(d: number, sep: bigint, right: number): void {
    for (; d >= 0; d--) {
      const id = this.pathNode[d]!;
      const c = this.pathIdx[d]!;
      const n = this.count(id);
      const kb = this.keyAt(id);
      const cb = this.kidAt(id);
      if (n < this.order) {
        this.i64.copyWithin(kb + c + 1, kb + c, kb + n);
        this.i32.copyWithin(cb + c + 2, cb + c + 1, cb + n + 1);
        this.i64[kb + c] = sep;
        this.i32[cb + c + 1] = right;
        this.setCount(id, n + 1);
        return;
      }
      const keys: bigint[] = [];
      const kids: number[] = [];
      for (let j = 0; j < n; j++) keys.push(this.i64[kb + j]!);
      for (let j = 0; j <= n; j++) kids.push(this.i32[cb + j]!);
      keys.splice(c, 0, sep);
      kids.splice(c + 1, 0, right);
      // order + 1 keys: the left node keeps m, key m goes up, the right node takes the rest.
      const m = this.order >> 1;
      const node = this.alloc(false);
      this.writeInternal(id, keys, kids, 0, m);
      this.writeInternal(node, keys, kids, m + 1, keys.length);
      sep = keys[m]!;
      right = node;
    }
    const root = this.alloc(false);
    this.writeInternal(root, [sep], [this.root, right], 0, 1);
    this.i32[H_ROOT] = root;
    this.i32[H_HEIGHT]!++;
  }

  // ---- delete ---------------------------------------------------------------------------------------
  /** Delete k; true when it was present. Never allocates. */
  delete(k: bigint): boolean {
    const d = this.descend(k);
    const leaf = this.pathNode[d]!;
    const n = this.count(leaf);
    const p = this.lowerBound(leaf, k);
    if (p >= n || this.key(leaf, p) !== k) return false;
    this.account(leaf, p, -1);
    this.addCount(-1);
    const kb = this.keyAt(leaf);
    const vb = this.valAt(leaf);
    this.i64.copyWithin(kb + p, kb + p + 1, kb + n);
    this.i64.copyWithin(vb + p, vb + p + 1, vb + n);
    this.setCount(leaf, n - 1);
    if (d > 0 && n - 1 < this.minKeys) this.fixUnderflow(d);
    return true;
  }

  /** Path node `d` (not the root) holds minKeys - 1 keys: borrow from a sibling or merge with one. */
  private fixUnderflow(d: number): void {
    for (; d > 0; d--) {
      const x = this.pathNode[d]!;
      const parent = this.pathNode[d - 1]!;
      const c = this.pathIdx[d - 1]!;
      const pn = this.count(parent);
      const left = c > 0 ? this.child(parent, c - 1) : NONE;
      const right = c < pn ? this.child(parent, c + 1) : NONE;
      const leaf = this.isLeaf(x);
      if (left !== NONE && this.count(left) > this.minKeys) return this.borrow(parent, c - 1, left, x, leaf);
      if (right !== NONE && this.count(right) > this.minKeys) return this.borrow(parent, c, x, right, leaf);
      if (left !== NONE) this.merge(parent, c - 1, left, x, leaf);
      else this.merge(parent, c, x, right, leaf);
      if (d - 1 === 0) {
        if (this.count(parent) === 0) {
          this.i32[H_ROOT] = this.child(parent, 0);
          this.i32[H_HEIGHT]!--;
          this.free(parent);
        }
        return;
      }
      if (this.count(parent) >= this.minKeys) return;
    }
  }

  /** Move one entry between adjacent siblings a (left) and b (right), children s and s+1 of `parent`. */
  private borrow(parent: number, s: number, a: number, b: number, leaf: boolean): void {
    const an = this.count(a);
    const bn = this.count(b);
    const ak = this.keyAt(a);
    const bk = this.keyAt(b);
    const sepAt = this.keyAt(parent) + s;
    const toRight = an > bn;
    if (leaf) {
      const av = this.valAt(a);
      const bv = this.valAt(b);
      if (toRight) {
        this.i64.copyWithin(bk + 1, bk, bk + bn);
        this.i64.copyWithin(bv + 1, bv, bv + bn);
        this.i64[bk] = this.i64[ak + an - 1]!;
        this.i64[bv] = this.i64[av + an - 1]!;
      } else {
        this.i64[ak + an] = this.i64[bk]!;
        this.i64[av + an] = this.i64[bv]!;
        this.i64.copyWithin(bk, bk + 1, bk + bn);
        this.i64.copyWithin(bv, bv + 1, bv + bn);
      }
      this.i64[sepAt] = this.i64[bk]!;
    } else {
      const ac = this.kidAt(a);
      const bc = this.kidAt(b);
      if (toRight) {
        this.i64.copyWithin(bk + 1, bk, bk + bn);
        this.i32.copyWithin(bc + 1, bc, bc + bn + 1);
        this.i64[bk] = this.i64[sepAt]!;
        this.i32[bc] = this.i32[ac + an]!;
        this.i64[sepAt] = this.i64[ak + an - 1]!;
      } else {
        this.i64[ak + an] = this.i64[sepAt]!;
        this.i32[ac + an + 1] = this.i32[bc]!;
        this.i64[sepAt] = this.i64[bk]!;
        this.i64.copyWithin(bk, bk + 1, bk + bn);
        this.i32.copyWithin(bc, bc + 1, bc + bn + 1);
      }
    }
    this.setCount(a, toRight ? an - 1 : an + 1);
    this.setCount(b, toRight ? bn + 1 : bn - 1);
  }

  /** Merge b into its left sibling a (children s and s+1 of `parent`), free b, drop separator s. */
  private merge(parent: number, s: number, a: number, b: number, leaf: boolean): void {
    const an = this.count(a);
    const bn = this.count(b);
    const ak = this.keyAt(a);
    const bk = this.keyAt(b);
    if (leaf) {
      this.i64.copyWithin(ak + an, bk, bk + bn);
      this.i64.copyWithin(this.valAt(a) + an, this.valAt(b), this.valAt(b) + bn);
      this.setNext(a, this.next(b));
      this.setCount(a, an + bn);
    } else {
      this.i64[ak + an] = this.key(parent, s);
      this.i64.copyWithin(ak + an + 1, bk, bk + bn);
      this.i32.copyWithin(this.kidAt(a) + an + 1, this.kidAt(b), this.kidAt(b) + bn + 1);
      this.setCount(a, an + 1 + bn);
    }
    this.free(b);
    const pn = this.count(parent);
    const pk = this.keyAt(parent);
    const pc = this.kidAt(parent);
    this.i64.copyWithin(pk + s, pk + s + 1, pk + pn);
    this.i32.copyWithin(pc + s + 1, pc + s + 2, pc + pn + 1);
    this.setCount(parent, pn - 1);
  }

  /**
   * Lay out `shared` and bulk-load `keys` entries, identically on every replica: entry i has key
   * floor(i * range / keys) and value i + 1; leaves hold floor(order * fill) entries and internal nodes
   * floor((order + 1) * fill) children (clamped to the node's bounds; the count is spread evenly over a level,
   * so no node falls below the minimum), built bottom-up, the leaves linked in key order. The whole bulk
   * load counts as worker 0's writes.
   */
  static bulkLoad(shared: SharedArrayBuffer, shape: TreeShape, keys: number, fill: number): BTree {
    const t = BTree.init(shared, shape);
    if (keys === 0) return t;
    const { order } = shape;
    const range = Number(shape.range);
    const i32 = t.i32;
    const clamp = (x: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, x));
    // Node count for `count` items at `per` each, none below `min`.
    const spread = (count: number, per: number, min: number): number => {
      let nodes = Math.ceil(count / per);
      while (nodes > 1 && Math.floor(count / nodes) < min) nodes--;
      return nodes;
    };
    // Leaves. The root leaf laid out by init is the first leaf.
    let level: number[] = [];
    let firstKeys: bigint[] = [];
    const leaves = spread(keys, clamp(Math.floor(order * fill), t.minKeys || 1, order), t.minKeys);
    for (let l = 0, i = 0; l < leaves; l++) {
      const id = l === 0 ? t.root : t.alloc(true);
      const end = Math.floor(((l + 1) * keys) / leaves);
      const kb = t.keyAt(id) << 1;
      const vb = kb + order * 2;
      for (let j = 0; i < end; i++, j++) {
        const k = Math.floor((i * range) / keys);
        i32[kb + 2 * j] = k % 0x1_0000_0000;
        i32[kb + 2 * j + 1] = Math.floor(k / 0x1_0000_0000);
        i32[vb + 2 * j] = i + 1;
        i32[vb + 2 * j + 1] = 0;
        t.account(id, j, 1);
      }
      t.setCount(id, end - Math.floor((l * keys) / leaves));
      if (l > 0) t.setNext(level[l - 1]!, id);
      level.push(id);
      firstKeys.push(t.key(id, 0));
    }
    t.addCount(keys);
    // Internal levels, bottom-up, until one node is left: the root.
    const per = clamp(Math.floor((order + 1) * fill), t.minKeys + 1, order + 1);
    let height = 1;
    while (level.length > 1) {
      const nodes = spread(level.length, per, t.minKeys + 1);
      const up: number[] = [];
      const upFirst: bigint[] = [];
      for (let u = 0; u < nodes; u++) {
        const from = Math.floor((u * level.length) / nodes);
        const to = Math.floor(((u + 1) * level.length) / nodes);
        const id = t.alloc(false);
        const kb = t.keyAt(id);
        const cb = t.kidAt(id);
        for (let c = from; c < to; c++) {
          i32[cb + c - from] = level[c]!;
          if (c > from) t.i64[kb + c - from - 1] = firstKeys[c]!;
        }
        t.setCount(id, to - from - 1);
        up.push(id);
        upFirst.push(firstKeys[from]!);
      }
      level = up;
      firstKeys = upFirst;
      height++;
    }
    i32[H_ROOT] = level[0]!;
    i32[H_HEIGHT] = height;
    return t;
  }
}

// ---- the tree's setup, copies and checks --------------------------------------------------------------


/**
 * The opt-PSMR safety check of the seed, for an insert or delete of k delivered optimistically to worker
 * `worker` of `workers` whose key ranges start at `bounds` (bounds[i] is the smallest key of range i,
 * bounds[workers] the range's end). With [β1, β2] the keys α's parent routes to α (the leaf k reaches):
 *   1. α stays within its fill bounds (`leafFits`);
 *   2. the largest key of worker i-1's range (bounds[i] - 1) is below β1;
 *   3. the smallest key of worker i+1's range (bounds[i+1]) is above β2.
 * Interpretations: "the largest key in the partition" is the largest key the partition may hold (its range
 * bound), not the largest present, since worker i-1 may insert any key of its range concurrently. [β1, β2]
 * is the interval [lo, hi - 1] of integer keys the tree routes to α: the parent's separators around α, and
 * on a side where α is the parent's first or last child, the nearest ancestor's separator (the parent alone
 * bounds nothing there; a leaf no separator bounds on a side fails that side's condition). Worker 0 has no
 * left neighbour and worker n-1 no right one: their missing condition holds.
 * Together 2 and 3 mean every key that reaches α is in worker i's range, so no other worker reads or
 * writes α; and the check reads only internal nodes (changed only at a barrier) and α itself.
 */
export function checkConditions(t: BTree, op: 'insert' | 'delete', k: bigint, worker: number, bounds: readonly bigint[]): Conditions {
  const { leaf, lo, hi } = t.routeOf(k);
  const last = bounds.length - 2;
  const c2 = worker === 0 || (lo !== null && bounds[worker]! - 1n < lo);
  const c3 = worker === last || (hi !== null && bounds[worker + 1]! > hi - 1n);
  return [t.leafFits(leaf, op, k), c2, c3];
}

/** The tree as bytes: the header and every node the pool ever handed out. */
export function snapshotTree(t: BTree): Uint8Array {
  return new Uint8Array(t.shared, 0, treeBytes(t.order, t.usedPrefix)).slice();
}

/** Lay a snapshot of a tree of this shape out in `shared`; a bad one, or one of another shape, is refused. */
export function restoreTree(shared: SharedArrayBuffer, bytes: Uint8Array, shape: TreeShape): void {
  const bad = (why: string): ServiceError => new ServiceError(ERR.PSMR_BAD_SNAPSHOT, `a B+-tree snapshot ${why}`);
  if (bytes.byteLength < HEADER_BYTES) throw bad(`has ${bytes.byteLength} bytes, less than a header`);
  const h = new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + HEADER_BYTES));
  if (h[H_MAGIC] !== MAGIC) throw bad('does not start with the tree header');
  const order = h[H_ORDER]!;
  const capacity = h[H_CAPACITY]!;
  const used = h[H_BUMP]!;
  const range = new BigInt64Array(h.buffer)[RANGE_I64]!;
  if (order !== shape.order || capacity !== shape.capacity || range !== shape.range) {
    throw bad(`is of a tree of order ${order}, ${capacity} nodes, key range ${range}; this service's is ${shape.order}, ${shape.capacity}, ${shape.range}`);
  }
  if (used < 1 || used > capacity) throw bad(`has a bad header (${used} of ${capacity} nodes used)`);
  if (bytes.byteLength !== treeBytes(order, used)) throw bad(`has ${bytes.byteLength} bytes, its header says ${treeBytes(order, used)}`);
  if (shared.byteLength < treeBytes(order, capacity)) throw bad(`needs ${treeBytes(order, capacity)} bytes of shared memory, the buffer has ${shared.byteLength}`);
  new Uint8Array(shared).set(bytes);
}

/**
 * Every structural problem of the tree (none: an empty list): key order and separator bounds, fill
 * bounds, every leaf at the same depth, the leaf links in key order, the allocator's accounting (each
 * node reachable or free, once), and the entry count. For tests; O(nodes).
 */
export function checkTree(t: BTree): string[] {
  const problems: string[] = [];
  const seen = new Uint8Array(t.capacity);
  const leaves: number[] = [];
  let entries = 0;
  const visit = (id: number, lo: bigint | null, hi: bigint | null, depth: number): void => {
    if (problems.length > 20) return;
    if (id < 0 || id >= t.usedPrefix || seen[id]) return void problems.push(`node ${id} out of the pool or reached twice`);
    seen[id] = 1;
    const n = t.count(id);
    const isRoot = id === t.root;
    const min = isRoot ? (t.isLeaf(id) ? 0 : 1) : t.minKeys;
    if (n < min || n > t.order) problems.push(`node ${id} holds ${n} keys, bounds ${min}..${t.order}`);
    for (let j = 0; j < n; j++) {
      const k = t.key(id, j);
      if (j > 0 && t.key(id, j - 1) >= k) problems.push(`node ${id}: keys out of order at ${j}`);
      if ((lo !== null && k < lo) || (hi !== null && k >= hi)) problems.push(`node ${id}: key ${k} outside [${lo}, ${hi})`);
      if (t.isLeaf(id) && (k < 0n || k >= t.range)) problems.push(`leaf ${id}: key ${k} outside the key range`);
    }
    if (t.isLeaf(id)) {
      if (depth !== t.height) problems.push(`leaf ${id} at depth ${depth}, the tree's height is ${t.height}`);
      leaves.push(id);
      entries += n;
      return;
    }
    for (let c = 0; c <= n; c++) visit(t.child(id, c), c > 0 ? t.key(id, c - 1) : lo, c < n ? t.key(id, c) : hi, depth + 1);
  };
  visit(t.root, null, null, 1);
  let leaf = t.firstLeaf;
  for (let i = 0; i < leaves.length; i++, leaf = t.next(leaf)) {
    if (leaf !== leaves[i]) {
      problems.push(`leaf link ${i} is ${leaf}, the tree's leaf ${i} is ${leaves[i]}`);
      break;
    }
  }
  if (problems.length === 0 && leaf !== NONE) problems.push(`the last leaf links to ${leaf}`);
  let free = 0;
  for (let id = t.i32[H_FREE]!; id !== NONE && free <= t.capacity; id = t.next(id), free++) {
    if (id < 0 || id >= t.usedPrefix || seen[id]) {
      problems.push(`free node ${id} out of the pool or in use`);
      break;
    }
    seen[id] = 2;
  }
  const reachable = seen.reduce((n, x) => n + (x === 1 ? 1 : 0), 0);
  if (reachable + free !== t.usedPrefix) problems.push(`${reachable} nodes in use and ${free} free, ${t.usedPrefix} handed out`);
  if (t.freeNodes !== t.capacity - reachable) problems.push(`free count ${t.freeNodes}, expected ${t.capacity - reachable}`);
  if (t.size() !== entries) problems.push(`size ${t.size()}, the leaves hold ${entries}`);
  return problems;
}
