// The key-value models for the linearizability checker (pure): the whole store, one key, and the check of a
// long history key by key.
import { checkLinearizable, describeOp, validateOp, type CheckResult, type HistoryOp, type Model } from './linearizability.js';

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
    validateOp(index, h);
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
