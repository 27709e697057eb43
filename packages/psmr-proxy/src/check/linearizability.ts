// Linearizability checker for recorded histories (pure: no I/O, clocks or randomness): the generic search
// over any Model. The key-value models are in kv-model.ts.
//
// Algorithm: the Wing & Gong search for a linearization, with Lowe's two refinements:
//  * "just-in-time" linearization: the history is kept as a doubly linked list of call and return
//    events in time order; the candidates for the next linearization point are the call events that
//    come before the first return event still in the list (an op whose call follows the earliest
//    pending return cannot be linearized before that op);
//  * memoization: a cache of (set of linearized ops as a bitset, model state) configurations already
//    explored, so the search never explores the same configuration twice.
// The search is an explicit stack (no recursion), so histories of any length are fine.

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

/** One op of a history, for a failure reason: its index, client, interval, command and reply. */
export function describeOp<C, R>(index: number, op: HistoryOp<C, R>): string {
  const ret = op.ret === Infinity ? 'pending' : String(op.ret);
  const reply = op.reply === undefined ? '(no reply)' : describeValue(op.reply);
  return `#${index} client ${op.client} [${op.call}, ${ret}] ${describeValue(op.command)} -> ${reply}`;
}

/** Throws RangeError on a malformed op (ret < call, a reply exactly when ret is finite). */
export function validateOp<C, R>(index: number, op: HistoryOp<C, R>): void {
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
    validateOp(i, h);
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
