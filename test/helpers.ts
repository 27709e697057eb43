import { stopProcess, type Spawned } from '@ringcast/cli';

export interface Delivered {
  i: number;
  p: number;
  s: number;
  d: string;
}

/** The deliver events a `ringcast learn` process printed so far. */
export function delivered(s: Spawned): Delivered[] {
  return (s.lines as Array<Record<string, unknown>>).filter((l) => l.event === 'deliver') as unknown as Delivered[];
}

/** Poll until `cond` holds or `timeoutMs` passes; returns whether it held. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return cond();
}

/** Sum of a Prometheus metric's samples (all label sets), optionally only those whose labels contain `match`. */
export async function scrape(port: number, name: string, match = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const l of text.split('\n')) {
    if (!l.startsWith(name)) continue;
    const c = l[name.length];
    if (c !== ' ' && c !== '{') continue;
    if (match && !l.includes(match)) continue;
    sum += Number(l.slice(l.lastIndexOf(' ') + 1));
  }
  return sum;
}

export async function stopAll(ps: Spawned[]): Promise<void> {
  await Promise.all(ps.map((p) => stopProcess(p)));
}

/** Fail (never skip) naming the missing privilege when the test is not run as root. */
export function requireRoot(what: string): void {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error(`${what} needs root (uid 0, running as uid ${process.getuid?.() ?? 'unknown'}): run the tests as root, as CI does`);
  }
}

/** Bytes of an acceptor log segment up to its last non-zero byte: what was written into it (segments are created at their full length, zeros after what was written). */
export function writtenBytes(b: Uint8Array): number {
  let n = b.length;
  while (n > 0 && b[n - 1] === 0) n--;
  return n;
}
