import { Packr } from 'msgpackr';
import { mpEncode } from './mpack.js';

/**
 * The content of one instance value: its logical end position, then proposals from several proposers,
 * grouped by proposer. A group carries the proposer's settled floor so learners can bound their
 * de-duplication state deterministically. Encoded as msgpack [pos, [pid, floor, [seq...], [data...]], ...];
 * no groups is a no-op (or, when pos jumps, a skip). Multi-Ring Paxos merges rings by these positions.
 */
export interface BatchGroup {
  pid: number;
  floor: number;
  seqs: number[];
  datas: Uint8Array[];
}

const packr = new Packr({ useRecords: false, variableMapSize: true });

export interface Batch {
  pos: number;
  groups: BatchGroup[];
}

export function encodeBatch(pos: number, groups: readonly BatchGroup[]): Uint8Array {
  const arr: unknown[] = new Array(groups.length + 1);
  arr[0] = pos;
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    arr[i + 1] = [g.pid, g.floor, g.seqs, g.datas];
  }
  // Sized once and written once (msgpackr would grow and re-copy its buffer for large batches).
  return mpEncode(arr) ?? packr.pack(arr);
}

function isUint(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/** Decode and check a batch; returns undefined when it is malformed (the caller counts it). */
export function decodeBatch(value: Uint8Array): Batch | undefined {
  let raw: unknown;
  try {
    raw = packr.unpack(value);
  } catch {
    return undefined;
  }
  if (!Array.isArray(raw) || raw.length === 0 || !isUint(raw[0])) return undefined;
  const out: BatchGroup[] = new Array(raw.length - 1);
  for (let i = 1; i < raw.length; i++) {
    const g = raw[i];
    if (!Array.isArray(g) || g.length !== 4) return undefined;
    const [pid, floor, seqs, datas] = g as [unknown, unknown, unknown, unknown];
    if (!isUint(pid) || !isUint(floor) || !Array.isArray(seqs) || !Array.isArray(datas)) return undefined;
    if (seqs.length !== datas.length) return undefined;
    for (let j = 0; j < seqs.length; j++) {
      if (!isUint(seqs[j]) || !(datas[j] instanceof Uint8Array)) return undefined;
    }
    out[i - 1] = { pid, floor, seqs: seqs as number[], datas: datas as Uint8Array[] };
  }
  return { pos: raw[0] as number, groups: out };
}

/**
 * A filler: the no-op a coordinator puts in a hole below what an earlier ballot may have used. It carries
 * one empty group of proposer 0 (never a real proposer) so that later coordinators can tell it from values
 * placed above every instance the ballot's Phase 1 quorum had accepted (new batches and skips).
 */
export function encodeFiller(pos: number): Uint8Array {
  return encodeBatch(pos, [{ pid: 0, floor: 0, seqs: [], datas: [] }]);
}

export function isFillerValue(value: Uint8Array): boolean {
  const b = decodeBatch(value);
  return !!b && b.groups.length === 1 && b.groups[0]!.pid === 0 && b.groups[0]!.seqs.length === 0;
}
