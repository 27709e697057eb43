// Names that config and user input are looked up by: own properties only (a cluster file or a flag naming
// `constructor`, `toString` or `__proto__` must not find Object.prototype's members), and a suggestion
// for a misspelt one.
import { ConfigError } from './errors.js';

/** Whether `name` is an own property of `obj` (never one inherited from Object.prototype). */
export function hasName(obj: object, name: string): boolean {
  return Object.prototype.hasOwnProperty.call(obj, name);
}

/** Levenshtein distance, bounded by the (short) names compared here. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** `did you mean X?` for the closest known name within a third of its length (at least 2 edits), else the known list. */
export function suggest(name: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestD = Infinity;
  if (name.length <= 64) {
    for (const k of known) {
      const d = editDistance(name.toLowerCase(), k.toLowerCase());
      if (d < bestD) [best, bestD] = [k, d];
    }
  }
  if (best !== undefined && bestD <= Math.max(2, Math.floor(best.length / 3))) return `did you mean ${best}?`;
  return `known: ${known.join(', ')}`;
}

/** Refuse any key of `obj` not in `known`: `${field}.${key}: unknown key; did you mean ...?`. */
export function checkKeys(obj: object, known: readonly string[], field?: string): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) throw new ConfigError(field ? `${field}.${k}` : k, `unknown key; ${suggest(k, known)}`);
  }
}
