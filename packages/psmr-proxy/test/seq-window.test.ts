import { describe, expect, it } from 'vitest';
import { Prng } from '@ringcast/ring-paxos';
import { MAX_SPAN, SeqWindow } from '../src/core/seq-window.js';

describe('SeqWindow (a client’s commands in flight)', () => {
  it('agrees with a Map over random adds, deletes and visits within the span', () => {
    for (const span of [1, 3, 8, 100]) {
      const g = new Prng(span);
      const w = new SeqWindow<{ seq: number; v: number }>(span);
      const model = new Map<number, { seq: number; v: number }>();
      let next = 1;
      for (let step = 0; step < 20_000; step++) {
        const r = g.int(0, 10);
        const oldest = model.size === 0 ? next : Math.min(...model.keys());
        if (r < 5 && next - oldest < span) {
          const p = { seq: next++, v: g.int(0, 1000) };
          w.add(p);
          model.set(p.seq, p);
        } else if (r < 9 && model.size > 0) {
          // Delete a random one, or a seq not in flight (nothing happens).
          const keys = [...model.keys()];
          const seq = g.int(0, 4) === 0 ? next + g.int(0, 5) : keys[g.int(0, keys.length)]!;
          expect(w.delete(seq)).toBe(model.get(seq));
          model.delete(seq);
        } else {
          // Visit oldest first, stopping part way, deleting some on the way (as the retry timer does).
          const stopAt = g.int(0, model.size + 1);
          const seen: number[] = [];
          w.forEach((p) => {
            if (seen.length === stopAt) return false;
            seen.push(p.seq);
            if (p.v % 3 === 0) {
              w.delete(p.seq);
              model.delete(p.seq);
            }
            return true;
          });
          const want = [...new Set([...seen, ...model.keys()])].sort((a, b) => a - b).slice(0, stopAt);
          expect(seen).toEqual(want);
        }
        expect(w.size).toBe(model.size);
        expect(w.oldest()).toBe(model.size === 0 ? undefined : Math.min(...model.keys()));
        const probe = next - g.int(0, span + 3);
        expect(w.get(probe)).toBe(model.get(probe));
      }
      expect(w.clear().map((p) => p.seq)).toEqual([...model.keys()].sort((a, b) => a - b));
      expect(w.size).toBe(0);
    }
  });

  it('refuses a seq a span past the oldest or not above the last, and a bad span', () => {
    const w = new SeqWindow<{ seq: number }>(3); // a ring of 4 slots, a span of 3
    w.add({ seq: 10 });
    expect(() => w.add({ seq: 13 })).toThrow(RangeError);
    w.add({ seq: 12 });
    expect(() => w.add({ seq: 12 })).toThrow(RangeError);
    expect(() => w.add({ seq: 11 })).toThrow(RangeError);
    expect(w.get(9)).toBeUndefined();
    expect(() => new SeqWindow(0)).toThrow(RangeError);
    expect(() => new SeqWindow(MAX_SPAN + 1)).toThrow(RangeError);
  });

  it('a visit survives its callback clearing the window or adding newer entries', () => {
    const w = new SeqWindow<{ seq: number }>(8);
    for (let s = 1; s <= 5; s++) w.add({ seq: s });
    const seen: number[] = [];
    w.forEach((p) => {
      seen.push(p.seq);
      if (p.seq === 2) w.add({ seq: 6 }); // newer: not visited
      if (p.seq === 3) w.clear(); // e.g. a settled caller stops the client
      return true;
    });
    expect(seen).toEqual([1, 2, 3]);
    expect(w.size).toBe(0);
    expect(w.oldest()).toBeUndefined();
  });
});
