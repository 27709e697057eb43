/**
 * The barrier g_all commands meet at, on SharedArrayBuffer + Atomics (no message passing), and the shared
 * slots where the workers' partial results of a round meet.
 *
 * Layout: Int32 [0] arrivals in the current generation, Int32 [1] generation; then one slot per worker:
 * a u32 length and `slotBytes` bytes.
 *
 * arrive(): the last worker to arrive resets the count, bumps the generation and wakes the others. The
 * others spin briefly (a g_all round is usually short) and then wait with Atomics.waitAsync, so a waiting
 * worker's event loop keeps draining its sockets and answering metrics requests.
 */
import type { BarrierPort } from './core/worker-core.js';

const COUNT = 0;
const GEN = 1;
const HEADER_BYTES = 64;

type WaitAsync = (a: Int32Array, index: number, value: number, timeout?: number) => { async: boolean; value: Promise<string> | string };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

export interface BarrierStats {
  /** Arrivals that had to wait, and the time spent waiting (ms). */
  waits: number;
  waitMs: number;
}

export class SharedBarrier implements BarrierPort {
  readonly ctl: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly view: DataView;
  readonly stats: BarrierStats = { waits: 0, waitMs: 0 };

  /** Memory for `workers` workers with slots of `slotBytes`. */
  static allocate(workers: number, slotBytes: number): SharedArrayBuffer {
    return new SharedArrayBuffer(HEADER_BYTES + workers * (4 + slotBytes));
  }

  constructor(
    readonly sab: SharedArrayBuffer,
    readonly workers: number,
    readonly worker: number,
    readonly slotBytes: number,
    private readonly now: () => number = () => performance.now(),
    private readonly spins = 2000,
  ) {
    if (sab.byteLength < HEADER_BYTES + workers * (4 + slotBytes)) throw new RangeError('barrier memory too small for its slots');
    this.ctl = new Int32Array(sab, 0, 2);
    this.bytes = new Uint8Array(sab);
    this.view = new DataView(sab);
  }

  arrive(): void | Promise<void> {
    const ctl = this.ctl;
    const gen = Atomics.load(ctl, GEN);
    if (Atomics.add(ctl, COUNT, 1) + 1 === this.workers) {
      Atomics.store(ctl, COUNT, 0);
      Atomics.add(ctl, GEN, 1);
      Atomics.notify(ctl, GEN);
      return;
    }
    for (let i = 0; i < this.spins; i++) if (Atomics.load(ctl, GEN) !== gen) return;
    const t0 = this.now();
    this.stats.waits++;
    const loop = async (): Promise<void> => {
      // A pending waitAsync does not keep a thread's event loop alive: hold it open with a timer.
      const keepAlive = setInterval(() => {}, 1 << 30);
      try {
        while (Atomics.load(ctl, GEN) === gen) {
          const r = waitAsync(ctl, GEN, gen, 1000);
          if (r.async) await r.value;
        }
      } finally {
        clearInterval(keepAlive);
      }
      this.stats.waitMs += this.now() - t0;
    };
    return loop();
  }

  private slotAt(w: number): number {
    return HEADER_BYTES + w * (4 + this.slotBytes);
  }

  writeSlot(data: Uint8Array): void {
    if (data.length > this.slotBytes) throw new RangeError(`partial results of ${data.length} bytes exceed the ${this.slotBytes}-byte slot`);
    const at = this.slotAt(this.worker);
    this.view.setUint32(at, data.length, true);
    this.bytes.set(data, at + 4);
  }

  readSlot(w: number): Uint8Array {
    const at = this.slotAt(w);
    const n = this.view.getUint32(at, true);
    return this.bytes.subarray(at + 4, at + 4 + n);
  }
}
