import { describe, expect, it } from 'vitest';
import { Merger, MergeError, joinRound, type PositionedInstance } from '@ringcast/multicast';
import { Prng } from '@ringcast/ring-paxos';

type Inst = PositionedInstance<string>;
const inst = (pos: number, ...items: string[]): Inst => ({ pos, items });

describe('Multi-Ring Paxos merge', () => {
  it('gives each ring M positions per round, rings in id order', () => {
    const m = new Merger<string>({ rings: [2, 1], m: 2, maxBuffered: 100 });
    for (let p = 1; p <= 4; p++) m.push(1, inst(p, `a${p}`));
    for (let p = 1; p <= 4; p++) m.push(2, inst(p, `b${p}`));
    expect(m.take().map((x) => x.item)).toEqual(['a1', 'a2', 'b1', 'b2', 'a3', 'a4', 'b3', 'b4']);
  });

  it('waits for the ring whose window is open, and says which one', () => {
    const m = new Merger<string>({ rings: [1, 2], m: 1, maxBuffered: 100 });
    m.push(2, inst(1, 'b1'));
    m.push(2, inst(2, 'b2'));
    expect(m.take()).toEqual([]);
    expect(m.waitingOn).toBe(1);
    m.push(1, inst(1, 'a1'));
    expect(m.take().map((x) => x.item)).toEqual(['a1', 'b1']);
    expect(m.waitingOn).toBe(1);
    expect(m.backlog(2)).toBe(1);
  });

  it('lets a skip close many windows at once, so a busy ring is not held by an idle one', () => {
    const m = new Merger<string>({ rings: [1, 2], m: 1, maxBuffered: 1000 });
    m.push(2, inst(1000)); // idle ring 2: one skip standing for 1000 positions
    for (let p = 1; p <= 500; p++) m.push(1, inst(p, `a${p}`));
    const out = m.take().map((x) => x.item);
    expect(out).toHaveLength(500);
    expect(out[499]).toBe('a500');
    expect(m.waitingOn).toBe(1);
  });

  it('starts at an agreed round: nothing ending at or before it is delivered', () => {
    const m = new Merger<string>({ rings: [1, 2], m: 1, startRound: 3, maxBuffered: 100 });
    for (let p = 1; p <= 5; p++) expect(m.push(1, inst(p, `a${p}`))).toBe(true);
    for (let p = 1; p <= 5; p++) m.push(2, inst(p, `b${p}`));
    expect(m.take().map((x) => x.item)).toEqual(['a4', 'b4', 'a5', 'b5']);
  });

  it('refuses past its bound (back-pressure) and rejects positions that do not increase', () => {
    const m = new Merger<string>({ rings: [1, 2], m: 1, maxBuffered: 3 });
    for (let p = 1; p <= 3; p++) expect(m.push(2, inst(p, `b${p}`))).toBe(true);
    expect(m.push(2, inst(4, 'b4'))).toBe(false);
    expect(m.refused).toBe(1);
    expect(() => m.push(2, inst(3, 'again'))).toThrow(MergeError);
    expect(() => m.push(7, inst(1))).toThrow(/not subscribed/);
    expect(() => new Merger({ rings: [], m: 1, maxBuffered: 1 })).toThrow(MergeError);
  });

  it('any two learners deliver their common messages in the same order, whatever the arrival timing', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const rng = new Prng(seed);
      const M = rng.pick([1, 2, 5]);
      // Three rings; each instance carries one message named after its ring and position; some are skips.
      const streams = new Map<number, Inst[]>();
      for (const ring of [0, 1, 2]) {
        const xs: Inst[] = [];
        let pos = 0;
        const n = rng.int(5, 60);
        for (let k = 0; k < n; k++) {
          if (rng.chance(0.2)) pos += rng.int(2, 30);
          else pos += 1;
          xs.push(inst(pos, `r${ring}@${pos}`));
        }
        streams.set(ring, xs);
      }
      const learn = (rings: number[], shuffleSeed: number): string[] => {
        const m = new Merger<string>({ rings, m: M, maxBuffered: 10_000 });
        const r2 = new Prng(shuffleSeed);
        const next = new Map(rings.map((r) => [r, 0]));
        const out: string[] = [];
        // Feed the rings in a random interleaving, taking deliveries at random moments.
        for (;;) {
          const open = rings.filter((r) => next.get(r)! < streams.get(r)!.length);
          if (open.length === 0) break;
          const r = r2.pick(open);
          m.push(r, streams.get(r)![next.get(r)!]!);
          next.set(r, next.get(r)! + 1);
          if (r2.chance(0.3)) out.push(...m.take().map((x) => x.item));
        }
        out.push(...m.take().map((x) => x.item));
        return out;
      };
      const subs = [[0, 2], [1, 2], [0, 1, 2], [2, 0, 1]];
      const results = subs.map((s, i) => learn(s, seed * 10 + i));
      // Same subscription, different timing: identical sequences.
      expect(results[3]).toEqual(results[2]);
      // Pairwise: common messages in the same relative order (so the union of orders has no cycle).
      for (let i = 0; i < results.length; i++) {
        for (let j = i + 1; j < results.length; j++) {
          const a = results[i]!;
          const b = new Set(results[j]!);
          const common = a.filter((x) => b.has(x));
          const inB = results[j]!.filter((x) => common.includes(x));
          expect(inB).toEqual(common);
        }
      }
    }
  });
});

describe('agreed subscription points', () => {
  it('learners given the same start and stop rounds deliver the same sequence, whenever they joined', () => {
    const streams = new Map<number, Inst[]>([
      [0, [1, 2, 3, 9, 10, 11, 12, 30].map((p) => inst(p, `a${p}`))],
      [1, [2, 4, 6, 8, 10, 12, 14, 40].map((p) => inst(p, `b${p}`))],
    ]);
    const run = (skipFirst: number): string[] => {
      const m = new Merger<string>({ rings: [0, 1], m: 2, startRound: 2, stopRound: 6, maxBuffered: 100 });
      for (const [r, xs] of streams) for (const x of xs.slice(r === 0 ? skipFirst : 0)) m.push(r, x);
      const out = m.take().map((x) => x.item);
      expect(m.done).toBe(true);
      return out;
    };
    // One learner saw everything; the other joined ring 0 late (after position 3), before the start point.
    const a = run(0);
    expect(a).toEqual(['b6', 'b8', 'a9', 'a10', 'b10', 'a11', 'a12', 'b12']);
    expect(run(3)).toEqual(a);
    expect(() => new Merger({ rings: [0], m: 1, startRound: 5, stopRound: 2, maxBuffered: 1 })).toThrow(MergeError);
  });

  it('reports a stall a skip would end only while another ring holds deliveries back', () => {
    const m = new Merger<string>({ rings: [0, 1], m: 1, maxBuffered: 16 });
    expect(m.stall).toBeUndefined(); // nothing held: both idle
    m.push(1, { pos: 3, items: [] }); // a skip of ring 1 held back by ring 0 is nobody's wait
    m.take();
    expect(m.stall).toBeUndefined();
    m.push(1, { pos: 5, items: ['b5'] });
    m.take();
    // Ring 0 has not passed position 1, and ring 1 holds b5: ask ring 0 to pass b5's round, not just the
    // current window (one skip then frees it).
    expect(m.stall).toEqual({ ring: 0, pos: 5 });
    m.push(0, { pos: 6, items: [] }); // a skip of ring 0
    expect(m.take().map((x) => x.item)).toEqual(['b5']);
    expect(m.stall).toBeUndefined();
    // M = 4: the first value held back ends at 10, in the round (8, 12]; a later one does not matter.
    const m4 = new Merger<string>({ rings: [0, 1, 2], m: 4, maxBuffered: 16 });
    m4.push(1, { pos: 10, items: ['b10'] });
    m4.push(2, { pos: 30, items: ['c30'] });
    m4.take();
    expect(m4.stall).toEqual({ ring: 0, pos: 12 });
  });

  it('a learner joining where the rings are: one ring starts at its first instance, several at the first round all reached', () => {
    // One ring, M = 4: the first instance ends at 6, the round (4, 8] is delivered from it.
    expect(joinRound([6], 4)).toBe(1);
    const one = new Merger<string>({ rings: [0], m: 4, startRound: joinRound([6], 4), maxBuffered: 16 });
    one.push(0, { pos: 6, items: ['first'] });
    one.push(0, { pos: 9, items: ['second'] });
    expect(one.take().map((x) => x.item)).toEqual(['first', 'second']);
    // Several rings: ring 1 first ended at 6, maybe skipping over positions 5-6 another learner saw
    // other rings' items beside; start after round (4, 8] rather than deliver it partly.
    expect(joinRound([3, 6], 4)).toBe(2);
    expect(joinRound([9, 5], 4)).toBe(2);
    expect(joinRound([1], 1)).toBe(0);
  });
});
