import { describe, expect, it } from 'vitest';
import { pack, unpack } from 'msgpackr';
import { SessionTable } from '../src/core/session.js';

/**
 * A checkpoint holds each session table as its entries() (least recently active first, replies in insertion
 * order) packed with msgpack. These bytes were made by the SessionTable as it stood before it became a
 * FloorTable: any change in eviction order, floor cut or reply bound changes them.
 */
const GOLDEN =
  '94930302939202920302920392030392049203049304069292069204069205920405930708929209de0001a172a4646f6e659208de0001a1630893090a929209de0001a17802920c920bde0001a1630d';

/** Replicated operations touching every rule: client eviction (LRU by open), reply eviction, floors cut
 *  as a prefix of insertion order (a retried seq inserted after a higher one stays), re-opening. */
function build(): SessionTable<unknown> {
  const t = new SessionTable<unknown>(4, 3);
  for (let c = 1; c <= 6; c++) {
    const s = t.open(c, 0);
    for (let q = 1; q <= c; q++) t.record(s, q, [c, q]);
  }
  let s = t.open(3, 2); // replies 2..3 stay
  t.record(s, 4, [3, 4]);
  s = t.open(4, 0);
  t.record(s, 6, [4, 6]); // evicts the oldest reply of client 4
  t.record(s, 5, [4, 5]); // out of seq order, after 6
  s = t.open(4, 6); // the cut stops at 6 (inserted before 5): 5 stays
  s = t.open(7, 8);
  t.record(s, 9, { r: 'done' });
  t.record(s, 8, { c: 8 });
  s = t.open(9, 10);
  t.record(s, 9, { x: 2 }); // below the floor: recorded as given (the caller checks first)
  t.record(s, 12, [11, { c: 13 }]);
  return t;
}

describe('session table checkpoint bytes', () => {
  it('encode as they did before the table was shared with the ring dedup (golden vector), and decode back', () => {
    const t = build();
    const bytes = Buffer.from(pack([...t.entries()]));
    expect(bytes.toString('hex')).toBe(GOLDEN);
    const back = new SessionTable<unknown>(4, 3);
    back.load(unpack(Buffer.from(GOLDEN, 'hex')) as Array<[number, number, Array<[number, unknown]>]>);
    expect(back.digest()).toBe(t.digest());
    expect(Buffer.from(pack([...back.entries()])).toString('hex')).toBe(GOLDEN);
    expect([t.evictedClients, t.evictedReplies]).toEqual([4, 8]);
  });
});
