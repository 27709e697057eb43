/** Virtual time for simulations: a binary min-heap of events by (time, insertion order). */
interface Event {
  at: number;
  seq: number;
  fn: () => void;
}

export class EventQueue {
  private readonly h: Event[] = [];
  private seq = 0;

  get size(): number {
    return this.h.length;
  }

  push(at: number, fn: () => void): void {
    const e = { at, seq: this.seq++, fn };
    const h = this.h;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p]!, e)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
  }

  pop(): Event | undefined {
    const h = this.h;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= h.length) break;
        const r = l + 1;
        const c = r < h.length && less(h[r]!, h[l]!) ? r : l;
        if (less(last, h[c]!)) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

function less(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}


/**
 * Virtual time for a simulation: the event queue, the current time, driver clocks that run on it (timers
 * start at a random offset drawn from `rand`, so nodes do not tick in lockstep) and the run loop.
 */
export class VirtualTime {
  readonly q = new EventQueue();
  now = 0;

  constructor(private readonly rand: () => number) {}

  /** Run `fn` at virtual time `t`. */
  at(t: number, fn: () => void): void {
    this.q.push(t, fn);
  }

  /** A driver clock on this virtual time. */
  clock(): { now: () => number; setInterval: (fn: () => void, ms: number) => unknown; clearInterval: (h: unknown) => void; defer: (fn: () => void) => void } {
    return {
      now: () => this.now,
      setInterval: (fn, ms) => {
        const h = { live: true };
        const loop = (): void => {
          if (!h.live) return;
          fn();
          this.q.push(this.now + ms, loop);
        };
        this.q.push(this.now + this.rand() * ms, loop);
        return h;
      },
      clearInterval: (h) => {
        (h as { live: boolean }).live = false;
      },
      defer: (fn) => this.q.push(this.now, fn),
    };
  }

  /** Run events up to time `end`; false when the event budget ran out first (a livelock). */
  run(end: number, budget = 5_000_000): boolean {
    for (let events = 0; ; events++) {
      const e = this.q.pop();
      if (!e || e.at > end) return true;
      this.now = e.at;
      e.fn();
      if (events > budget) return false;
    }
  }
}
