import { Packr } from 'msgpackr';
import { mpEncode } from './mpack.js';

/**
 * The content of one instance value: proposals from several proposers, grouped by proposer. A group carries
 * the proposer's settled floor so learners can bound their de-duplication state deterministically.
 * Encoded as msgpack [[pid, floor, [seq...], [data...]], ...]; an empty list is a no-op value.
 */
export interface BatchGroup {
  pid: number;
  floor: number;
  seqs: number[];
  datas: Uint8Array[];
}

const packr = new Packr({ useRecords: false, variableMapSize: true });

export function encodeBatch(groups: readonly BatchGroup[]): Uint8Array {
  const arr: unknown[] = new Array(groups.length);
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    arr[i] = [g.pid, g.floor, g.seqs, g.datas];
  }
  // Sized once and written once (msgpackr would grow and re-copy its buffer for large batches).
  return mpEncode(arr) ?? packr.pack(arr);
}

export const NOOP_VALUE: Uint8Array = encodeBatch([]);

function isUint(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/** Decode and check a batch; returns undefined when it is malformed (the caller counts it). */
export function decodeBatch(value: Uint8Array): BatchGroup[] | undefined {
  let raw: unknown;
  try {
    raw = packr.unpack(value);
  } catch {
    return undefined;
  }
  if (!Array.isArray(raw)) return undefined;
  const out: BatchGroup[] = new Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    const g = raw[i];
    if (!Array.isArray(g) || g.length !== 4) return undefined;
    const [pid, floor, seqs, datas] = g as [unknown, unknown, unknown, unknown];
    if (!isUint(pid) || !isUint(floor) || !Array.isArray(seqs) || !Array.isArray(datas)) return undefined;
    if (seqs.length !== datas.length) return undefined;
    for (let j = 0; j < seqs.length; j++) {
      if (!isUint(seqs[j]) || !(datas[j] instanceof Uint8Array)) return undefined;
    }
    out[i] = { pid, floor, seqs: seqs as number[], datas: datas as Uint8Array[] };
  }
  return out;
}
