import { createSocket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { localCluster } from '@ringcast/ring-paxos';
import { createClientProxy } from '../src/client-proxy.js';
import { ReplyBatchWriter, STATUS_ERROR, STATUS_OK } from '../src/protocol/wire.js';
import { kvService, type KvCommand, type KvReply } from '../src/services/kv.js';
import type { Service } from '../src/service.js';

// The client proxy against rings nobody serves (ports with no acceptor): what it does on its own.
const cluster = localCluster({ basePort: 1, rings: 3, settings: { lambda: 1000 } });
cluster.groups = { g0: 0, g1: 1, gall: 2 };

async function sendTo(port: number, d: Uint8Array): Promise<void> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.send(d, port, '127.0.0.1', () => r()));
  s.close();
}

/** A reply batch from the replica with reply tag `tag`: seq answered 'deleted: true'. */
function deleted(clientId: number, seq: number, tag: number): Buffer {
  const w = new ReplyBatchWriter();
  w.begin(clientId, tag);
  w.beginReply(seq, STATUS_OK);
  w.w.u8(1);
  w.endReply();
  return Buffer.from(w.view());
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
  return cond();
}

describe('client proxy', () => {
  it('refuses a bad host and a C-G answer outside the partitions, naming them', async () => {
    await expect(createClientProxy(cluster, { service: kvService, mode: 'psmr', workers: 2, host: 'localhost' })).rejects.toMatchObject({ field: 'host' });
    await expect(createClientProxy(cluster, { service: kvService, mode: 'fast' as never, workers: 2 })).rejects.toMatchObject({ code: 'ERR_RINGCAST_CONFIG', field: 'mode' });
    await expect(createClientProxy(cluster, { service: kvService, mode: 'psmr', workers: 2, maxOutstanding: 1 << 20 })).rejects.toMatchObject({ field: 'maxOutstanding' });
    await expect(createClientProxy(cluster, { service: kvService, mode: 'psmr', workers: 2, maxSpan: 2 ** 21 })).rejects.toMatchObject({ field: 'maxSpan' });
    const odd: Service<KvCommand, KvReply, unknown> = { ...(kvService as unknown as Service<KvCommand, KvReply, unknown>), group: () => 1.5 };
    const c = await createClientProxy(cluster, { service: odd, mode: 'psmr', workers: 2 });
    await expect(c.submit({ op: 'get', key: 'a' })).rejects.toMatchObject({ code: 'ERR_PSMR_BAD_GROUP' });
    expect(c.outstanding()).toBe(0);
    await c.stop();
  });

  it('never builds a proposal past maxBatchBytes, and refuses a command that cannot fit', async () => {
    const c = await createClientProxy(cluster, { service: kvService, mode: 'psmr', workers: 2, maxBatchBytes: 1200, deadlineMs: 60_000, retryMs: 60_000 });
    const v = 'v'.repeat(400);
    // 10 puts of ~420 bytes into one group: two fit in a 1200-byte proposal, so at least 5 proposals.
    const ps = Array.from({ length: 10 }, () => c.submit({ op: 'put', key: 'same-key', value: v }).catch(() => undefined));
    await new Promise((r) => setImmediate(r));
    expect(c.stats.batches).toBeGreaterThanOrEqual(5);
    await expect(c.submit({ op: 'mput', entries: [['a', v], ['b', v], ['c', v]] })).rejects.toMatchObject({ code: 'ERR_PSMR_COMMAND_TOO_LARGE' });
    await c.stop();
    await Promise.all(ps);
  });

  it('takes the first reply, drops the duplicate, and leaves a command whose reply does not parse to a later reply', async () => {
    const c = await createClientProxy(cluster, { service: kvService, mode: 'psmr', workers: 2, deadlineMs: 60_000, retryMs: 60_000 });
    const p = c.submit({ op: 'delete', key: 'x' });
    const bad = new ReplyBatchWriter();
    bad.begin(c.clientId);
    bad.beginReply(1, STATUS_ERROR);
    bad.w.u16(50); // a code length past the end
    bad.endReply();
    await sendTo(c.replyPort, Buffer.from(bad.view()));
    await new Promise((r) => setTimeout(r, 50));
    expect(c.stats.malformedReplies).toBe(1);
    expect(c.outstanding()).toBe(1);
    const good = new ReplyBatchWriter();
    good.begin(c.clientId);
    good.beginReply(1, STATUS_OK);
    good.w.u8(1);
    good.endReply();
    const d = Buffer.from(good.view());
    await sendTo(c.replyPort, d);
    expect(await p).toEqual({ deleted: true });
    await sendTo(c.replyPort, d);
    await new Promise((r) => setTimeout(r, 50));
    expect(c.stats.duplicateReplies).toBe(1);
    await c.stop();
  });

  it('asks the replica that answered first to answer alone, and everyone again once a command needs a retry', async () => {
    const c = await createClientProxy(cluster, { service: kvService, mode: 'psmr', workers: 2, deadlineMs: 60_000, retryMs: 100, replyFrom: 'one' });
    expect(c.replier).toBe(0);
    const reply = (seq: number, tag: number): Buffer => deleted(c.clientId, seq, tag);
    const a = c.submit({ op: 'delete', key: 'a' });
    await sendTo(c.replyPort, reply(1, 5));
    await a;
    expect(c.replier).toBe(5);
    // A duplicate from another replica changes nothing.
    await sendTo(c.replyPort, reply(1, 6));
    await new Promise((r) => setTimeout(r, 20));
    expect(c.replier).toBe(5);
    // Replica 5 goes quiet: the retry asks everyone; the next reply, from replica 6, picks it.
    const b = c.submit({ op: 'delete', key: 'b' });
    expect(await waitFor(() => c.stats.retries > 0, 3000)).toBe(true);
    expect(c.replier).toBe(0);
    await sendTo(c.replyPort, reply(2, 6));
    await b;
    expect(c.replier).toBe(6);
    await c.stop();
    // Every second the client asks everyone again. A late reply to a batch that named the old replica must
    // not pick it again: only a reply to a command every replica was asked to answer picks.
    const c2 = await createClientProxy(cluster, { service: kvService, mode: 'psmr', workers: 2, deadlineMs: 60_000, retryMs: 60_000, replyFrom: 'one' });
    const first = c2.submit({ op: 'delete', key: 'a' });
    await sendTo(c2.replyPort, deleted(c2.clientId, 1, 6));
    await first;
    expect(c2.replier).toBe(6);
    const named = c2.submit({ op: 'delete', key: 'b' }); // sent naming replica 6
    expect(await waitFor(() => c2.replier === 0, 3000)).toBe(true);
    await sendTo(c2.replyPort, deleted(c2.clientId, 2, 6));
    await named;
    expect(c2.replier).toBe(0);
    const open = c2.submit({ op: 'delete', key: 'c' }); // sent asking everyone
    await sendTo(c2.replyPort, deleted(c2.clientId, 3, 7));
    await open;
    expect(c2.replier).toBe(7);
    await c2.stop();
    // 'all' (the default) never picks one.
    const all = await createClientProxy(cluster, { service: kvService, mode: 'psmr', workers: 2, deadlineMs: 60_000, retryMs: 60_000 });
    const p = all.submit({ op: 'delete', key: 'a' });
    await sendTo(all.replyPort, deleted(all.clientId, 1, 5));
    await p;
    expect(all.replier).toBe(0);
    await all.stop();
    await expect(createClientProxy(cluster, { service: kvService, mode: 'psmr', workers: 2, replyFrom: 'some' as never })).rejects.toMatchObject({ field: 'replyFrom' });
  });

  it('waits past maxOutstanding (back-pressure) and rejects past maxWaiting; stop rejects what is in flight', async () => {
    const c = await createClientProxy(cluster, { service: kvService, mode: 'smr', maxOutstanding: 2, maxWaiting: 1, deadlineMs: 60_000, retryMs: 60_000 });
    const a = c.submit({ op: 'get', key: 'a' });
    const b = c.submit({ op: 'get', key: 'b' });
    const waiting = c.submit({ op: 'get', key: 'c' });
    expect(c.outstanding()).toBe(2);
    await expect(c.submit({ op: 'get', key: 'd' })).rejects.toMatchObject({ code: 'ERR_RINGCAST_BACKPRESSURE' });
    await c.stop();
    for (const p of [a, b, waiting]) await expect(p).rejects.toMatchObject({ code: 'ERR_RINGCAST_STOPPED' });
  });

  it('rejects a submit after stop even when commands have waited for room before', async () => {
    const c = await createClientProxy(cluster, { service: kvService, mode: 'smr', maxOutstanding: 1, deadlineMs: 60_000, retryMs: 60_000 });
    const a = c.submit({ op: 'delete', key: 'a' });
    const b = c.submit({ op: 'delete', key: 'b' }); // waits for room
    await sendTo(c.replyPort, deleted(c.clientId, 1, 1));
    expect(await a).toEqual({ deleted: true });
    expect(c.outstanding()).toBe(1); // b got in
    await c.stop();
    await expect(b).rejects.toMatchObject({ code: 'ERR_RINGCAST_STOPPED' });
    const late = c.submit({ op: 'delete', key: 'c' });
    const settled = await Promise.race([late.then(() => 'resolved', (e: { code?: string }) => e.code), new Promise((r) => setTimeout(() => r('still pending after 500 ms'), 500))]);
    expect(settled).toBe('ERR_RINGCAST_STOPPED');
  });

  it('admits a new command only within maxSpan seqs of the oldest one still waiting (replicas cache that many replies)', async () => {
    const c = await createClientProxy(cluster, { service: kvService, mode: 'smr', maxOutstanding: 2, maxSpan: 3, deadlineMs: 60_000, retryMs: 60_000 });
    const reply = async (seq: number): Promise<void> => {
      const w = new ReplyBatchWriter();
      w.begin(c.clientId);
      w.beginReply(seq, STATUS_OK);
      w.w.u8(0);
      w.endReply();
      await sendTo(c.replyPort, Buffer.from(w.view()));
    };
    const first = c.submit({ op: 'get', key: 'stuck' }); // seq 1: its reply is "lost"
    const done: number[] = [];
    for (let k = 2; k <= 4; k++) void c.submit({ op: 'get', key: `k${k}` }).then(() => done.push(k), () => {});
    await reply(2);
    await new Promise((r) => setTimeout(r, 50));
    // seq 3 got in when 2 was answered; seq 4 waits: 4 - 1 = 3 = maxSpan.
    expect(done).toEqual([2]);
    expect(c.outstanding()).toBe(2);
    await reply(3);
    await new Promise((r) => setTimeout(r, 50));
    expect(c.outstanding()).toBe(1); // only seq 1: seq 4 still waits outside
    await reply(1);
    await new Promise((r) => setTimeout(r, 50));
    expect(await first).toEqual({ value: null });
    expect(c.outstanding()).toBe(1); // now seq 4 is in flight
    await c.stop();
  });
});
