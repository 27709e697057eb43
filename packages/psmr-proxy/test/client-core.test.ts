import { describe, expect, it } from 'vitest';
import { ClientCore, clientSettings, NoReplyError, type ClientBatch, type ClientSettings, type ClientStep } from '../src/core/client-core.js';
import { modeNamed } from '../src/modes/index.js';
import { CommandBatchReader, ReplyBatchWriter, STATUS_ERROR, STATUS_OK } from '../src/protocol/wire.js';
import type { Service } from '../src/service.js';

// The client core driven by hand: no socket, no timer; time is whatever the test says it is.

/** A command: the partition C-G names (or 'all'), a number, and padding to make it large. */
interface Cmd {
  g: number | 'all';
  n: number;
  pad?: number;
}
const svc = {
  name: 'test',
  group: (c: Cmd) => c.g,
  writeCommand: (w, c) => {
    w.u32(c.n);
    if (c.pad) w.bytes(new Uint8Array(c.pad));
  },
  readReply: (r) => r.u32('reply'),
} as Pick<Service<Cmd, number, unknown>, 'name' | 'group' | 'writeCommand' | 'readReply'> as Service<Cmd, number, unknown>;

const CLIENT = 77;
function core(mode: 'smr' | 'psmr', o: Partial<ClientSettings> = {}): ClientCore<Cmd, number, string> {
  const m = modeNamed(mode);
  return new ClientCore({ ...clientSettings({ clientId: CLIENT, ...o }, 65_536, 1), service: svc, mode: m, partitions: m.partitions(2), replyPort: 4000 });
}

/** A batch's group, floor, replier and its commands' seqs and numbers. */
function read(b: ClientBatch): { group: string; floor: number; replier: number; seqs: number[]; ns: number[] } {
  const rd = new CommandBatchReader(b.data);
  const seqs: number[] = [];
  const ns: number[] = [];
  while (rd.next()) {
    seqs.push(rd.seq);
    ns.push(rd.r.u32());
  }
  expect(rd.header.clientId).toBe(CLIENT);
  expect(rd.header.replyPort).toBe(4000);
  return { group: b.group, floor: rd.header.floor, replier: rd.header.replier ?? 0, seqs, ns };
}

/** A reply datagram from replica `tag`: each [seq, value] answered ok. */
function replies(tag: number, ...rs: Array<[number, number]>): Uint8Array {
  const w = new ReplyBatchWriter();
  w.begin(CLIENT, tag);
  for (const [seq, v] of rs) {
    w.beginReply(seq, STATUS_OK);
    w.w.u32(v);
    w.endReply();
  }
  return Uint8Array.from(w.view());
}

const tags = (s: ClientStep<number, string>): string[] => s.settled.map((x) => x.tag);

describe('client core', () => {
  it('batches commands per group until flush, routing them with the mode, and sends a batch at once when it is full', () => {
    const c = core('psmr', { maxBatchBytes: 26 + 64 + 60 });
    for (const [i, g] of ([0, 1, 'all', 0, 'all'] as const).entries()) expect(c.submit({ g, n: 10 + i }, `c${i}`, 0)).toEqual({ batches: [], settled: [] });
    expect(c.unsent).toBe(true);
    const sent = c.flush().map(read);
    expect(sent.map((b) => [b.group, b.seqs, b.ns])).toEqual([
      ['g0', [1, 4], [10, 13]],
      ['g1', [2], [11]],
      ['gall', [3, 5], [12, 14]],
    ]);
    expect(sent.every((b) => b.floor === 1 && b.replier === 0)).toBe(true);
    expect(c.unsent).toBe(false);
    expect(c.flush()).toEqual([]);
    expect(c.stats).toMatchObject({ submitted: 5, batches: 3 });
    // smr: every command, whatever C-G says, goes to g0.
    const s = core('smr');
    s.submit({ g: 'all', n: 1 }, 'a', 0);
    s.submit({ g: 0, n: 2 }, 'b', 0);
    expect(s.flush().map((b) => read(b).group)).toEqual(['g0']);
    // 46 bytes with its framing (f64 seq, u32 length): two fit in 150 bytes after the 26 of the header, a third does not.
    const big = { g: 0, n: 0, pad: 30 };
    expect(c.submit(big, 'b1', 1).batches).toEqual([]);
    expect(c.submit(big, 'b2', 1).batches).toEqual([]);
    const full = c.submit(big, 'b3', 1);
    expect(full.batches.map((b) => read(b).seqs)).toEqual([[6, 7]]);
    expect(c.flush().map((b) => read(b).seqs)).toEqual([[8]]);
    // A command that cannot fit in any proposal settles with a typed error, and takes no seq.
    const huge = c.submit({ g: 1, n: 0, pad: 200 }, 'huge', 1);
    expect(huge.settled.map((x) => [x.tag, (x.err as { code?: string } | null)?.code])).toEqual([['huge', 'ERR_PSMR_COMMAND_TOO_LARGE']]);
    expect(c.outstanding).toBe(8);
    const bad = c.submit({ g: 2, n: 0 }, 'bad', 1);
    expect((bad.settled[0]!.err as { code?: string }).code).toBe('ERR_PSMR_BAD_GROUP');
  });

  it('settles a command with the first reply, counts the later ones as duplicates, and counts a datagram for another client as malformed', () => {
    const c = core('psmr', { replyFrom: 'one' });
    c.submit({ g: 0, n: 1 }, 'a', 10);
    c.submit({ g: 1, n: 2 }, 'b', 10);
    c.flush();
    const first = c.onReply(replies(3, [1, 100]), 14.5);
    expect(first.settled.map((x) => [x.tag, x.err, x.reply, x.ms])).toEqual([['a', null, 100, 4.5]]);
    expect(c.replier).toBe(3); // replyFrom 'one': the replica that answered first is asked to answer alone
    const again = c.onReply(replies(4, [1, 999], [2, 200]), 20);
    expect(again.settled.map((x) => [x.tag, x.reply])).toEqual([['b', 200]]);
    expect(c.stats).toMatchObject({ replied: 2, duplicateReplies: 1, malformedReplies: 0, errors: 0 });
    expect(c.replier).toBe(3);
    const w = new ReplyBatchWriter();
    w.begin(CLIENT + 1, 3);
    w.beginReply(3, STATUS_OK);
    w.w.u32(1);
    w.endReply();
    expect(c.onReply(Uint8Array.from(w.view()), 21).settled).toEqual([]);
    expect(c.onReply(new Uint8Array([1, 2, 3]), 21).settled).toEqual([]);
    expect(c.stats.malformedReplies).toBe(2);
    // An error reply settles with a ServiceError carrying the replica's code.
    c.submit({ g: 0, n: 3 }, 'e', 30);
    const e = new ReplyBatchWriter();
    e.begin(CLIENT, 3);
    e.beginReply(3, STATUS_ERROR);
    e.w.u16(8);
    e.w.latin1('ERR_TEST');
    e.w.u16(2);
    e.w.latin1('no');
    e.endReply();
    const err = c.onReply(Uint8Array.from(e.view()), 31).settled[0]!;
    expect([err.tag, (err.err as { code?: string }).code, err.err?.message]).toEqual(['e', 'ERR_TEST', 'no']);
    expect(c.stats.errors).toBe(1);
  });

  it('writes an unanswered command again with the same seq after retryMs, and settles it with NoReplyError at the deadline', () => {
    const c = core('psmr', { retryMs: 100, deadlineMs: 350 });
    c.submit({ g: 1, n: 7 }, 'x', 0);
    c.submit({ g: 0, n: 8 }, 'y', 50);
    expect(c.flush().length).toBe(2);
    expect(c.tick(99)).toEqual({ batches: [], settled: [] });
    expect(c.unsent).toBe(false);
    c.tick(100); // x is due, y (sent at 50) is not
    expect(c.flush().map(read)).toEqual([{ group: 'g1', floor: 1, replier: 0, seqs: [1], ns: [7] }]);
    expect(c.stats.retries).toBe(1);
    // y is answered; x is retried again, then reaches its deadline.
    expect(tags(c.onReply(replies(1, [2, 0]), 120))).toEqual(['y']);
    c.tick(200);
    expect(c.flush().map((b) => [b.group, read(b).seqs, read(b).floor])).toEqual([['g1', [1], 1]]);
    expect(c.stats.retries).toBe(2);
    const late = c.tick(350);
    expect(late.settled.length).toBe(1);
    expect(late.settled[0]!.tag).toBe('x');
    expect(late.settled[0]!.err).toBeInstanceOf(NoReplyError);
    expect(late.settled[0]!.err).toMatchObject({ code: 'ERR_RINGCAST_NO_REPLY', seq: 1 });
    expect(c.stats.noReply).toBe(1);
    expect(c.outstanding).toBe(0);
    // A reply after the deadline is a duplicate, not a second settlement.
    expect(c.onReply(replies(1, [1, 5]), 360).settled).toEqual([]);
    expect(c.stats.duplicateReplies).toBe(1);
  });

  it('holds submits past maxOutstanding, refuses them past maxWaiting with BackpressureError, and settles everything at stop', () => {
    const c = core('smr', { maxOutstanding: 2, maxSpan: 3, maxWaiting: 2 });
    for (const t of ['a', 'b', 'c', 'd']) expect(c.submit({ g: 0, n: 0 }, t, 0).settled).toEqual([]);
    expect(c.outstanding).toBe(2);
    const refused = c.submit({ g: 0, n: 0 }, 'e', 0);
    expect(refused.settled.map((x) => [x.tag, (x.err as { code?: string }).code])).toEqual([['e', 'ERR_RINGCAST_BACKPRESSURE']]);
    c.flush();
    // b (seq 2) answered: c gets seq 3 (3 - 1 < maxSpan), d still waits (4 - 1 = maxSpan) though only 2 are in flight.
    const r = c.onReply(replies(1, [2, 0]), 5);
    expect(tags(r)).toEqual(['b']);
    expect(c.flush().map((b) => read(b).seqs)).toEqual([[3]]);
    expect(c.outstanding).toBe(2);
    c.onReply(replies(1, [3, 0]), 6);
    expect(c.outstanding).toBe(1);
    c.onReply(replies(1, [1, 0]), 7); // the oldest answered: d (seq 4) gets in, with the floor at 4
    expect(c.flush().map((b) => [read(b).seqs, read(b).floor])).toEqual([[[4], 4]]);
    c.submit({ g: 0, n: 0 }, 'f', 8);
    c.submit({ g: 0, n: 0 }, 'g', 8);
    c.submit({ g: 0, n: 0 }, 'h', 8); // g and h wait
    expect(c.outstanding).toBe(2);
    const stop = c.stop();
    expect(stop.settled.map((x) => [x.tag, (x.err as { code?: string }).code])).toEqual(['d', 'f', 'g', 'h'].map((t) => [t, 'ERR_RINGCAST_STOPPED']));
    expect(c.flush()).toEqual([]);
    expect(tags(c.submit({ g: 0, n: 0 }, 'late', 9))).toEqual(['late']);
    expect(c.stopped).toBe(true);
  });
});
