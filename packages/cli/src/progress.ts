/** A live rate line on stderr: rewritten in place on a terminal, one line per update otherwise. */
export class RateDisplay {
  private readonly t0 = performance.now();
  private lastT = this.t0;
  private lastN = 0;
  private readonly tty = Boolean(process.stderr.isTTY);

  constructor(
    private readonly verb: string,
    private readonly unit: string,
  ) {}

  update(n: number, bytes: number): void {
    const t = performance.now();
    const rate = ((n - this.lastN) * 1000) / Math.max(1, t - this.lastT);
    this.lastT = t;
    this.lastN = n;
    const secs = (t - this.t0) / 1000;
    const mb = bytes > 0 ? `  ${(bytes / secs / 1e6).toFixed(1)} MB/s avg` : `  ${Math.round(n / Math.max(secs, 0.001)).toLocaleString('en-US')}/s avg`;
    const line = `${this.verb} ${n.toLocaleString('en-US')} ${this.unit}  ${Math.round(rate).toLocaleString('en-US')}/s${mb}  ${secs.toFixed(1)} s`;
    process.stderr.write(this.tty ? `\r${line}   ` : `${line}\n`);
  }

  done(n: number, bytes: number): void {
    this.update(n, bytes);
    if (this.tty) process.stderr.write('\n');
  }
}

/** The q-quantile of an ascending array (nearest rank); 0 for an empty one. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export interface LoopResult {
  proposed: number;
  acked: number;
  failed: number;
}

/**
 * Keep `workers` proposals in flight: each worker asks `make(k, worker)` for the k-th value (undefined
 * stops it), proposes it and waits for the acknowledgement; `onAck` gets each latency in milliseconds.
 */
export async function proposeLoop(
  propose: (data: Uint8Array, worker: number) => Promise<void>,
  workers: number,
  make: (k: number, worker: number) => Uint8Array | undefined,
  onAck?: (ms: number) => void,
  ratePerSec?: number,
): Promise<LoopResult> {
  const r: LoopResult = { proposed: 0, acked: 0, failed: 0 };
  const t0 = performance.now();
  const run = async (w: number): Promise<void> => {
    for (;;) {
      if (ratePerSec !== undefined) {
        // Paced: the k-th value leaves no earlier than k / rate seconds after the start.
        const due = t0 + (r.proposed * 1000) / ratePerSec - performance.now();
        if (due > 0) await new Promise((res) => setTimeout(res, due));
      }
      const data = make(r.proposed, w);
      if (data === undefined) return;
      r.proposed++;
      const t = performance.now();
      try {
        await propose(data, w);
        r.acked++;
        onAck?.(performance.now() - t);
      } catch {
        r.failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: workers }, (_, w) => run(w)));
  return r;
}
