import { describe, expect, it } from 'vitest';
import { FloorTable } from '@ringcast/ring-paxos';

describe('floor table', () => {
  it("a floor forgets every seq below it ('all', the ring dedup), or those inserted before the first at or above it ('prefix', sessions)", () => {
    const seqs = (cut: 'all' | 'prefix'): number[] => {
      const t = new FloorTable<number>({ maxClients: 4, maxPerClient: 8, floorCut: cut });
      const e = t.open(1, 0);
      for (const s of [3, 4, 6, 5, 2]) t.mark(e, s, s * 10); // 5 and 2 are retries arriving late
      t.open(1, 5);
      expect(t.find(e, 4)).toBe('settled');
      expect(t.find(e, 6)).toBe(60);
      expect(t.find(e, 7)).toBeUndefined();
      return [...e.seen.keys()];
    };
    expect(seqs('all')).toEqual([6, 5]);
    expect(seqs('prefix')).toEqual([6, 5, 2]);
  });

  it('evicts the least recently opened client and the oldest inserted seq, and counts both', () => {
    const t = new FloorTable<number>({ maxClients: 2, maxPerClient: 2 });
    const a = t.open(1, 0);
    t.open(2, 0);
    t.open(1, 0); // 1 is the most recent now
    t.open(3, 0);
    expect([...t.entries()].map((x) => x[0])).toEqual([1, 3]);
    for (const s of [1, 2, 3]) t.mark(a, s, s);
    t.mark(a, 3, 33); // seen: keeps its place
    expect([...a.seen]).toEqual([[2, 2], [3, 33]]);
    expect([t.evictedClients, t.evictedSeqs]).toEqual([1, 1]);
    const back = new FloorTable<number>({ maxClients: 2, maxPerClient: 2 });
    back.load(t.entries());
    expect(back.digest()).toBe(t.digest());
  });
});
