// Linearizability checker for recorded histories (pure: no I/O, clocks or randomness).
//
// Algorithm: the Wing & Gong search for a linearization, with Lowe's two refinements:
//  * "just-in-time" linearization: the history is kept as a doubly linked list of call and return
//    events in time order; the candidates for the next linearization point are the call events that
//    come before the first return event still in the list (an op whose call follows the earliest
//    pending return cannot be linearized before that op);
//  * memoization: a cache of (set of linearized ops as a bitset, model state) configurations already
//    explored, so the search never explores the same configuration twice.
// The search is an explicit stack (no recursion), so histories of any length are fine.

/** Keys and values in the checker are strings (callers turn bytes into latin1 strings). */
export type KvCheckCommand =
  | { op: 'get'; key: string }
  | { op: 'put'; key: string; value: string }
  | { op: 'delete'; key: string }
  | { op: 'cas'; key: string; expected: string | null; value: string } // expected null = key must be absent
  | { op: 'mget'; keys: string[] }
  | { op: 'mput'; entries: Array<[string, string]> }
  | { op: 'scan'; prefix: string; limit: number } // entries with key starting with prefix, sorted by key (JS string compare), at most limit
  | { op: 'size' };

export type KvCheckReply =
  | { value: string | null } // get
  | { ok: true } // put, mput
  | { deleted: boolean } // delete
  | { swapped: boolean } // cas
  | { values: Array<string | null> } // mget
  | { entries: Array<[string, string]> } // scan
  | { size: number } // size
  | { error: string }; // a typed error reply: the command changed nothing (a no-op that matches any state)

export interface HistoryOp<C, R> {
  /** A client performs ops sequentially. */
  client: number;
  /** Invocation time (any monotonic number, e.g. ms). */
  call: number;
  /** Response time; Infinity when the op never got a reply (it may or may not have taken effect). */
  ret: number;
  command: C;
  /** undefined iff ret === Infinity. */
  reply: R | undefined;
}

export interface Model<S, C, R> {
  init(): S;
  /** Apply a command; return the new state (never mutate `state`) and the reply the model gives. */
  step(state: S, command: C): { state: S; reply: R };
  /** Does the recorded reply match the model's? */
  matches(command: C, model: R, recorded: R): boolean;
  /** A string that identifies a state (for the memo cache). */
  hash(state: S): string;
  /**
   * Optional: does this recorded reply say the command had no effect at all (e.g. a typed error)?
   * Such ops change nothing and match any state, so the checker leaves them out of the search
   * (a no-op can always be placed anywhere inside its own interval).
   */
  isNoop?(command: C, recorded: R): boolean;
}

export type CheckResult =
  | { ok: true; ops: number }
  /** reason: names the longest partial linearization found and the ops that could not be placed after it. */
  | { ok: false; ops: number; reason: string }
  /** The search budget (maxSteps) ran out before an answer. */
  | { ok: 'unknown'; ops: number; reason: string };

export const DEFAULT_MAX_STEPS = 5_000_000;

const MAX_LISTED_OPS = 8;

function describeValue(v: unknown): string {
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : s;
  } catch {
    return String(v);
  }
}

function describeOp<C, R>(index: number, op: HistoryOp<C, R>): string {
  const ret = op.ret === Infinity ? 'pending' : String(op.ret);
  const reply = op.reply === undefined ? '(no reply)' : describeValue(op.reply);
  return `#${index} client ${op.client} [${op.call}, ${ret}] ${describeValue(op.command)} -> ${reply}`;
}

function validate<C, R>(index: number, op: HistoryOp<C, R>): void {
  if (typeof op.call !== 'number' || !Number.isFinite(op.call)) {
    throw new RangeError(`history op #${index}: call time must be a finite number, got ${op.call}`);
  }
  if (typeof op.ret !== 'number' || Number.isNaN(op.ret) || op.ret === -Infinity || op.ret < op.call) {
    throw new RangeError(`history op #${index}: ret (${op.ret}) must be >= call (${op.call}) or Infinity`);
  }
  if ((op.ret === Infinity) !== (op.reply === undefined)) {
    throw new RangeError(`history op #${index}: reply must be undefined exactly when ret is Infinity`);
  }
}

/** The bitset words as a string, one UTF-16 unit per 16 bits (an identity, not for printing). */
function bitsetString(view: Uint16Array): string {
  const CHUNK = 8192;
  if (view.length <= CHUNK) return String.fromCharCode.apply(null, view as unknown as number[]);
  let s = '';
  for (let i = 0; i < view.length; i += CHUNK) {
    s += String.fromCharCode.apply(null, view.subarray(i, i + CHUNK) as unknown as number[]);
  }
  return s;
}

/**
 * Is `history` linearizable with respect to `model`?
 *
 * An op A must precede B in the linearization iff A.ret < B.call (ops whose intervals touch or overlap
 * are concurrent). An op without a reply (ret Infinity) may be linearized at any point after its call,
 * or not at all; its reply is unknown. Ops whose reply the model calls a no-op (`isNoop`) are left out.
 * `maxSteps` bounds the search (one step = one candidate tried or one backtrack); when it runs out the
 * answer is `ok: 'unknown'`. Throws RangeError on a malformed history (ret < call, reply/ret mismatch).
 */
export function checkLinearizable<S, C, R>(
  model: Model<S, C, R>,
  history: ReadonlyArray<HistoryOp<C, R>>,
  opts?: { maxSteps?: number },
): CheckResult {
  const maxSteps = opts?.maxSteps ?? DEFAULT_MAX_STEPS;
  const total = history.length;

  // Ops taking part in the search, with their index in `history`: completed ops first, then pending
  // ops (no reply), each group sorted by call time (stable). Completed ops are 0..completed-1.
  const order: number[] = [];
  for (let i = 0; i < total; i++) {
    const h = history[i]!;
    validate(i, h);
    if (h.reply !== undefined && model.isNoop !== undefined && model.isNoop(h.command, h.reply)) continue;
    order.push(i);
  }
  const isPending = (i: number): number => (history[i]!.ret === Infinity ? 1 : 0);
  order.sort((a, b) => isPending(a) - isPending(b) || history[a]!.call - history[b]!.call || a - b);
  const n = order.length;
  const ops: Array<HistoryOp<C, R>> = order.map((i) => history[i]!);
  let completed = 0;
  while (completed < n && ops[completed]!.ret !== Infinity) completed++;
  const pendCount = n - completed;

  // The history as a doubly linked list of events in time order: a call per op, a return per
  // completed op; at equal times calls come first, so ops whose intervals touch count as concurrent.
  // Event e < n is the call of op e; event n + j is the return of completed op j.
  const eventCount = n + completed;
  const eventOp = (e: number): number => (e < n ? e : e - n);
  const eventTime = (e: number): number => (e < n ? ops[e]!.call : ops[e - n]!.ret);
  const events = Array.from({ length: eventCount }, (_, e) => e);
  events.sort((a, b) => eventTime(a) - eventTime(b) || (a < n ? 0 : 1) - (b < n ? 0 : 1) || a - b);

  // List nodes 1..eventCount; node 0 is the head; -1 ends the list.
  const nodeOp = new Int32Array(eventCount + 1);
  const nodeIsCall = new Uint8Array(eventCount + 1);
  const next = new Int32Array(eventCount + 1);
  const prev = new Int32Array(eventCount + 1);
  const callNode = new Int32Array(n);
  const retNode = new Int32Array(n).fill(-1);
  prev[0] = -1;
  for (let k = 0; k < eventCount; k++) {
    const node = k + 1;
    const e = events[k]!;
    const i = eventOp(e);
    nodeOp[node] = i;
    prev[node] = node - 1;
    next[node - 1] = node;
    if (e < n) {
      nodeIsCall[node] = 1;
      callNode[i] = node;
    } else {
      retNode[i] = node;
    }
  }
  next[eventCount] = -1;

  const unlink = (node: number): void => {
    const p = prev[node]!;
    const q = next[node]!;
    next[p] = q;
    if (q !== -1) prev[q] = p;
  };
  const relink = (node: number): void => {
    const p = prev[node]!;
    const q = next[node]!;
    next[p] = node;
    if (q !== -1) prev[q] = node;
  };
  // Removal and restoration happen in strict stack order, so relinking (dancing links) is exact.
  const lift = (i: number): void => {
    unlink(callNode[i]!);
    if (i < completed) unlink(retNode[i]!);
  };
  const unlift = (i: number): void => {
    if (i < completed) relink(retNode[i]!);
    relink(callNode[i]!);
  };

  // The set of linearized ops, as bitsets: one over completed ops, one over pending ops. For completed
  // ops the memo key carries only the window of words that is neither all ones (below `lo`) nor all
  // zeros (above `hi`): with just-in-time linearization that window stays near the frontier, so keys
  // stay short on long histories; (lo, window) identifies the set exactly. Pending ops (usually few)
  // are keyed in full, as one of them may stay unlinearized for the whole search.
  const cWords = Math.max(1, Math.ceil(completed / 32));
  const cBits = new Uint32Array(cWords);
  const cView = new Uint16Array(cBits.buffer);
  const pBits = new Uint32Array(Math.max(1, Math.ceil(pendCount / 32)));
  const pView = new Uint16Array(pBits.buffer);
  let lo = 0; // first word of cBits that is not all ones
  let hi = -1; // last word of cBits that is not all zeros
  const setBit = (i: number): void => {
    if (i >= completed) {
      const j = i - completed;
      pBits[j >>> 5] = pBits[j >>> 5]! | (1 << (j & 31));
      return;
    }
    const w = i >>> 5;
    cBits[w] = cBits[w]! | (1 << (i & 31));
    if (w > hi) hi = w;
    while (lo < cWords && cBits[lo] === 0xffffffff) lo++;
  };
  const clearBit = (i: number): void => {
    if (i >= completed) {
      const j = i - completed;
      pBits[j >>> 5] = pBits[j >>> 5]! & ~(1 << (j & 31));
      return;
    }
    const w = i >>> 5;
    cBits[w] = cBits[w]! & ~(1 << (i & 31));
    if (w < lo) lo = w;
    while (hi >= 0 && cBits[hi] === 0) hi--;
  };
  // Model states are interned: the memo key carries a small id instead of a possibly long hash.
  const stateIds = new Map<string, number>();
  const cache = new Set<string>();
  const memoKey = (s: S): string => {
    const h = model.hash(s);
    let id = stateIds.get(h);
    if (id === undefined) {
      id = stateIds.size;
      stateIds.set(h, id);
    }
    const window = hi >= lo ? bitsetString(cView.subarray(2 * lo, 2 * hi + 2)) : '';
    const pending = pendCount > 0 ? bitsetString(pView) : '';
    return `${id}|${lo}|${pending}${window}`;
  };

  const stackOp = new Int32Array(n);
  const stackState: Array<S | undefined> = new Array<S | undefined>(n);
  let depth = 0;
  let state = model.init();
  let remaining = completed;
  let steps = 0;

  // Diagnostics: the deepest dead end seen.
  let bestDepth = -1;
  let bestBlocking = -1;
  let bestCandidates: number[] = [];
  let bestCandidateCount = 0;
  let bestStateHash = '';
  let bestTail: number[] = [];

  let node = next[0]!;
  while (remaining > 0) {
    if (++steps > maxSteps) {
      return {
        ok: 'unknown',
        ops: total,
        reason:
          `search budget exhausted after ${maxSteps} steps (${cache.size} configurations explored, ` +
          `deepest partial linearization so far: ${Math.max(bestDepth, depth)} of ${n} ops)`,
      };
    }
    // While a completed op remains, its return event is in the list, so node !== -1 here.
    if (nodeIsCall[node] === 1) {
      // A candidate: its call precedes every pending return.
      const i = nodeOp[node]!;
      const op = ops[i]!;
      const r = model.step(state, op.command);
      if (op.reply === undefined || model.matches(op.command, r.reply, op.reply)) {
        setBit(i);
        const key = memoKey(r.state);
        if (!cache.has(key)) {
          cache.add(key);
          stackOp[depth] = i;
          stackState[depth] = state;
          depth++;
          state = r.state;
          lift(i);
          if (i < completed) remaining--;
          node = next[0]!;
          continue;
        }
        clearBit(i);
      }
      node = next[node]!;
      continue;
    }

    // The earliest return still in the list: no candidate before it works. Backtrack.
    if (depth > bestDepth) {
      bestDepth = depth;
      bestBlocking = nodeOp[node]!;
      bestStateHash = model.hash(state);
      bestCandidates = [];
      bestCandidateCount = 0;
      for (let k = next[0]!; k !== -1 && nodeIsCall[k] === 1; k = next[k]!) {
        bestCandidateCount++;
        if (bestCandidates.length < MAX_LISTED_OPS) bestCandidates.push(nodeOp[k]!);
      }
      bestTail = Array.from(stackOp.subarray(Math.max(0, depth - 3), depth));
    }
    if (depth === 0) break;
    depth--;
    const j = stackOp[depth]!;
    state = stackState[depth]!;
    stackState[depth] = undefined;
    unlift(j);
    clearBit(j);
    if (j < completed) remaining++;
    node = next[callNode[j]!]!;
  }

  if (remaining === 0) return { ok: true, ops: total };

  const name = (i: number): string => describeOp(order[i]!, ops[i]!);
  const parts: string[] = [
    `not linearizable: the longest partial linearization found places ${bestDepth} of ${n} ops ` +
      `(${completed} completed, ${pendCount} pending; ${cache.size} configurations explored)`,
  ];
  if (bestTail.length > 0) parts.push(`it ends with: ${bestTail.map(name).join('; ')}`);
  parts.push(`model state there: ${bestStateHash.length > 200 ? bestStateHash.slice(0, 200) + '...' : bestStateHash}`);
  parts.push(`op that must be linearized next (earliest return): ${name(bestBlocking)}`);
  if (bestCandidateCount > 0) {
    const more = bestCandidateCount > bestCandidates.length ? ` (+${bestCandidateCount - bestCandidates.length} more)` : '';
    parts.push(`none of these candidates could be placed: ${bestCandidates.map(name).join('; ')}${more}`);
  }
  return { ok: false, ops: total, reason: parts.join('\n') };
}

// ---------------------------------------------------------------------------------------------------
// Key-value models

function sameValues(a: ReadonlyArray<string | null>, b: ReadonlyArray<string | null>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameEntries(a: ReadonlyArray<readonly [string, string]>, b: ReadonlyArray<readonly [string, string]>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x[0] !== y[0] || x[1] !== y[1]) return false;
  }
  return true;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function isErrorReply(reply: KvCheckReply): reply is { error: string } {
  return 'error' in reply;
}

/** Shared by both KV models: does the recorded reply equal the model's, for this command? */
function kvMatches(command: KvCheckCommand, model: KvCheckReply, recorded: KvCheckReply): boolean {
  if (isErrorReply(recorded)) return true;
  switch (command.op) {
    case 'get':
      return 'value' in recorded && 'value' in model && recorded.value === model.value;
    case 'put':
    case 'mput':
      return 'ok' in recorded && recorded.ok === true;
    case 'delete':
      return 'deleted' in recorded && 'deleted' in model && recorded.deleted === model.deleted;
    case 'cas':
      return 'swapped' in recorded && 'swapped' in model && recorded.swapped === model.swapped;
    case 'mget':
      return 'values' in recorded && 'values' in model && Array.isArray(recorded.values) && sameValues(recorded.values, model.values);
    case 'scan':
      return 'entries' in recorded && 'entries' in model && Array.isArray(recorded.entries) && sameEntries(recorded.entries, model.entries);
    case 'size':
      return 'size' in recorded && 'size' in model && recorded.size === model.size;
  }
}

function kvStep(
  state: ReadonlyMap<string, string>,
  command: KvCheckCommand,
): { state: ReadonlyMap<string, string>; reply: KvCheckReply } {
  switch (command.op) {
    case 'get':
      return { state, reply: { value: state.get(command.key) ?? null } };
    case 'put': {
      if (state.get(command.key) === command.value) return { state, reply: { ok: true } };
      const s = new Map(state);
      s.set(command.key, command.value);
      return { state: s, reply: { ok: true } };
    }
    case 'delete': {
      if (!state.has(command.key)) return { state, reply: { deleted: false } };
      const s = new Map(state);
      s.delete(command.key);
      return { state: s, reply: { deleted: true } };
    }
    case 'cas': {
      const cur = state.get(command.key) ?? null;
      if (cur !== command.expected) return { state, reply: { swapped: false } };
      if (cur === command.value) return { state, reply: { swapped: true } };
      const s = new Map(state);
      s.set(command.key, command.value);
      return { state: s, reply: { swapped: true } };
    }
    case 'mget':
      return { state, reply: { values: command.keys.map((k) => state.get(k) ?? null) } };
    case 'mput': {
      let s: Map<string, string> | undefined;
      for (const [k, v] of command.entries) {
        if ((s ?? state).get(k) === v) continue;
        s ??= new Map(state);
        s.set(k, v);
      }
      return { state: s ?? state, reply: { ok: true } };
    }
    case 'scan': {
      const keys: string[] = [];
      for (const k of state.keys()) if (k.startsWith(command.prefix)) keys.push(k);
      keys.sort(compareStrings);
      const entries: Array<[string, string]> = keys
        .slice(0, Math.max(0, command.limit))
        .map((k) => [k, state.get(k)!]);
      return { state, reply: { entries } };
    }
    case 'size':
      return { state, reply: { size: state.size } };
  }
}

const EMPTY_MAP: ReadonlyMap<string, string> = new Map();
/** States are immutable, so a state's hash is computed once (a pure cache, keyed by identity). */
const kvHashes = new WeakMap<ReadonlyMap<string, string>, string>();

/**
 * The whole key-value model: state is a Map of all keys, updated copy-on-write. It checks multi-key
 * atomicity (mget/mput/scan/size) exactly, but a search over the whole store only suits small histories
 * (a few keys, a few hundred ops, modest concurrency): a wrong guess on one key may only show up at
 * that key's next op, so the search backtracks over everything in between. Use `checkKvHistory` for
 * long histories over many keys.
 */
export const kvModel: Model<ReadonlyMap<string, string>, KvCheckCommand, KvCheckReply> = {
  init: () => EMPTY_MAP,
  step: kvStep,
  matches: kvMatches,
  hash(state) {
    let h = kvHashes.get(state);
    if (h === undefined) {
      const keys = Array.from(state.keys()).sort(compareStrings);
      h = JSON.stringify(keys.map((k) => [k, state.get(k)!]));
      kvHashes.set(state, h);
    }
    return h;
  },
  isNoop: (_command, recorded) => isErrorReply(recorded),
};

/**
 * Model of one key: state is the value or null. Supports get/put/delete/cas, and mget/mput whose keys
 * all name that one key; scan and size have no meaning for one key and throw.
 */
export const kvKeyModel: Model<string | null, KvCheckCommand, KvCheckReply> = {
  init: () => null,
  step(state, command) {
    switch (command.op) {
      case 'get':
        return { state, reply: { value: state } };
      case 'put':
        return { state: command.value, reply: { ok: true } };
      case 'delete':
        return { state: null, reply: { deleted: state !== null } };
      case 'cas':
        return state === command.expected
          ? { state: command.value, reply: { swapped: true } }
          : { state, reply: { swapped: false } };
      case 'mget':
        return { state, reply: { values: command.keys.map(() => state) } };
      case 'mput': {
        const last = command.entries[command.entries.length - 1];
        return { state: last === undefined ? state : last[1], reply: { ok: true } };
      }
      case 'scan':
      case 'size':
        throw new Error(`kvKeyModel cannot step a '${command.op}' command (project the history with checkKvHistory)`);
    }
  },
  matches: kvMatches,
  hash: (state) => (state === null ? '-' : '+' + state),
  isNoop: (_command, recorded) => isErrorReply(recorded),
};

/**
 * Check a KV history key by key: every op is projected onto each key it touches and each key's
 * sub-history is checked with `kvKeyModel` (keys in sorted order; `maxSteps` is a budget per key).
 *
 * Projection: get/put/delete/cas go to their key as they are; mget becomes a get per key with that
 * key's value from the reply; mput a put per key (the last entry wins for a key listed twice); scan a
 * get per returned entry (a key's absence from a scan result is not checked); size is not projected.
 * Ops with an error reply are no-ops and are not projected. Ops without a reply (ret Infinity) are
 * projected as pending writes (pending reads constrain nothing and are dropped).
 * Replies that are malformed for their command (an mget with the wrong number of values; a scan whose
 * entries are unsorted, repeat a key, miss the prefix or exceed the limit) fail the check outright.
 *
 * Linearizability is local (Herlihy & Wing): a history of single-key ops is linearizable iff every
 * key's sub-history is. For multi-key ops (mget, mput, scan, size) the projection only gives a
 * necessary condition: it does not check that an mget/scan saw one atomic snapshot across keys, that
 * an mput's writes became visible together, scan absences, or size. E.g. an mget concurrent with
 * mput {a:1,b:1} that returns [1, null] passes here but fails `checkLinearizable(kvModel, ...)`.
 *
 * Result: `keys` = number of keys with a sub-history; `failedKey` = the first key (in sorted order)
 * whose sub-history is not linearizable, else the first whose search ran out of budget.
 */
export function checkKvHistory(
  history: ReadonlyArray<HistoryOp<KvCheckCommand, KvCheckReply>>,
  opts?: { maxSteps?: number },
): CheckResult & { keys: number; failedKey?: string } {
  type Op = HistoryOp<KvCheckCommand, KvCheckReply>;
  const perKey = new Map<string, Op[]>();
  const total = history.length;
  const add = (key: string, op: Op): void => {
    let list = perKey.get(key);
    if (list === undefined) {
      list = [];
      perKey.set(key, list);
    }
    list.push(op);
  };
  const malformed = (index: number, op: Op, key: string, why: string) => ({
    ok: false as const,
    ops: total,
    keys: perKey.size,
    failedKey: key,
    reason: `malformed reply (${why}): ${describeOp(index, op)}`,
  });

  for (let index = 0; index < total; index++) {
    const h = history[index]!;
    validate(index, h);
    const { client, call, ret, command, reply } = h;
    if (reply !== undefined && isErrorReply(reply)) continue;
    const pending = reply === undefined;
    switch (command.op) {
      case 'get':
        if (!pending) add(command.key, h);
        break;
      case 'put':
      case 'delete':
      case 'cas':
        add(command.key, h);
        break;
      case 'mget': {
        if (reply === undefined) break;
        const values = 'values' in reply && Array.isArray(reply.values) ? reply.values : undefined;
        if (values === undefined || values.length !== command.keys.length) {
          return malformed(index, h, command.keys[0] ?? '', 'mget reply must have one value per key');
        }
        command.keys.forEach((key, k) => {
          add(key, { client, call, ret, command: { op: 'get', key }, reply: { value: values[k] ?? null } });
        });
        break;
      }
      case 'mput': {
        const last = new Map<string, string>();
        for (const [key, value] of command.entries) last.set(key, value);
        for (const [key, value] of last) {
          add(key, { client, call, ret, command: { op: 'put', key, value }, reply: pending ? undefined : { ok: true } });
        }
        break;
      }
      case 'scan': {
        if (reply === undefined) break;
        const entries = 'entries' in reply && Array.isArray(reply.entries) ? reply.entries : undefined;
        if (entries === undefined) return malformed(index, h, '', 'scan reply must have entries');
        if (entries.length > Math.max(0, command.limit)) {
          return malformed(index, h, entries[0]?.[0] ?? '', `scan returned ${entries.length} entries, limit ${command.limit}`);
        }
        for (let k = 0; k < entries.length; k++) {
          const [key, value] = entries[k]!;
          if (!key.startsWith(command.prefix)) return malformed(index, h, key, `scan entry key lacks the prefix`);
          if (k > 0 && !(entries[k - 1]![0] < key)) return malformed(index, h, key, `scan entries not sorted by key, or a key repeats`);
          add(key, { client, call, ret, command: { op: 'get', key }, reply: { value } });
        }
        break;
      }
      case 'size':
        break;
    }
  }

  const keys = Array.from(perKey.keys()).sort(compareStrings);
  let unknown: { key: string; reason: string } | undefined;
  for (const key of keys) {
    const r = checkLinearizable(kvKeyModel, perKey.get(key)!, opts);
    if (r.ok === false) {
      return { ok: false, ops: total, keys: keys.length, failedKey: key, reason: `key ${JSON.stringify(key)}: ${r.reason}` };
    }
    if (r.ok === 'unknown' && unknown === undefined) unknown = { key, reason: r.reason };
  }
  if (unknown !== undefined) {
    return {
      ok: 'unknown',
      ops: total,
      keys: keys.length,
      failedKey: unknown.key,
      reason: `key ${JSON.stringify(unknown.key)}: ${unknown.reason}`,
    };
  }
  return { ok: true, ops: total, keys: keys.length };
}
