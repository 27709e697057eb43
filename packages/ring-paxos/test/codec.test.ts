import { describe, expect, it } from 'vitest';
import { Codec, DEFAULT_REPLAY_GUARD, MessageType, MESSAGE_SHAPES, Prng, ReplayGuard, WIRE_VERSION, type Message } from '@ringcast/ring-paxos';

const b = (s: string): Uint8Array => new Uint8Array(Buffer.from(s));

/** Bytes as hex, recursively, so Buffers and Uint8Arrays compare by content. */
function norm(x: unknown): unknown {
  if (x instanceof Uint8Array) return Buffer.from(x).toString('hex');
  if (Array.isArray(x)) return x.map(norm);
  if (x && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, norm(v)]));
  return x;
}

const samples: Message[] = [
  { t: MessageType.Propose, ring: 1, from: 70000, floor: 3, seqs: [3, 4], datas: [b('a'), b('bb')] },
  { t: MessageType.Ack, ring: 1, from: 2, seqs: [3, 4, 5] },
  { t: MessageType.Phase1A, ring: 1, from: 2, ballot: 65538, lo: 0, hi: 4096 },
  { t: MessageType.Phase1B, ring: 1, from: 1, ballot: 65538, lo: 0, hi: 4096, trimmed: 0, top: 8, insts: [7], vballots: [65537], vids: [65537], values: [b('x')], decided: [1] },
  { t: MessageType.Phase2A, ring: 1, from: 2, ballot: 65538, instance: 9, vid: 65538, value: b('value'), decisions: [5, 3, 65538], safe: 2, layout: [1, 2] },
  { t: MessageType.Phase2B, ring: 1, from: 1, ballot: 65538, instance: 9, vid: 65538, votes: 1 },
  { t: MessageType.Decision, ring: 1, from: 2, ballot: 65538, decisions: [], safe: 0 },
  { t: MessageType.Progress, ring: 1, from: 70001, delivered: -1, start: -2, paced: 1 },
  { t: MessageType.Status, ring: 1, from: 2, oldest: 0, next: 10, ballot: 65538 },
  { t: MessageType.RetransmitRequest, ring: 1, from: 70001, lo: 3, hi: 9 },
  { t: MessageType.Learn, ring: 1, from: 1, trimmed: 0, insts: [3], vids: [65538], values: [b('v3')] },
  { t: MessageType.Nack, ring: 1, from: 1, ballot: 65538, promised: 131073 },
  { t: MessageType.Heartbeat, ring: 1, from: 2, ballot: 65538, safe: 3 },
  { t: MessageType.HeartbeatAck, ring: 1, from: 1, ballot: 65538 },
  { t: MessageType.Redirect, ring: 1, from: 1, coordinator: 2, ballot: 65538 },
  { t: MessageType.RejoinQuery, ring: 1, from: 3, nonce: 5 },
  { t: MessageType.RejoinReply, ring: 1, from: 1, nonce: 5, promised: 65538, top: 40 },
  { t: MessageType.SkipRequest, ring: 1, from: 70001, pos: 123456789 },
];

describe('wire codec', () => {
  it('has a sample for every message shape', () => {
    expect(new Set(samples.map((m) => m.t)).size).toBe(Object.keys(MESSAGE_SHAPES).length);
  });

  for (const secret of [undefined, 'a-cluster-secret-of-some-length']) {
    it(`round-trips every message type ${secret ? 'with' : 'without'} an HMAC`, () => {
      const c = new Codec({ maxDatagramBytes: 60000, secret });
      for (const m of samples) {
        const d = c.decode(c.encode(m));
        expect(d.ok).toBe(true);
        if (!d.ok) continue;
        expect(norm(d.msg)).toEqual(norm(m));
      }
    });
  }

  it('drops bad datagrams with a reason and never throws', () => {
    const c = new Codec({ maxDatagramBytes: 2000 });
    const good = c.encode(samples[1]!);
    expect(c.decode(Buffer.alloc(2))).toEqual({ ok: false, reason: 'short' });
    expect(c.decode(Buffer.alloc(3000, 1))).toEqual({ ok: false, reason: 'oversize' });
    const v = Buffer.from(good);
    v[0] = 99;
    expect(c.decode(v)).toEqual({ ok: false, reason: 'version' });
    const t = Buffer.from(good);
    t[1] = 200;
    expect(c.decode(t)).toEqual({ ok: false, reason: 'type' });
    const junk = Buffer.concat([good.subarray(0, 3), Buffer.from([0xc1, 0xc1, 0xc1])]);
    expect(c.decode(junk)).toEqual({ ok: false, reason: 'malformed' });
    // A well-formed msgpack body of the wrong shape: Ack with a string where seqs belong.
    const wrong = c.encode({ ...samples[1]!, seqs: 'nope' } as unknown as Message);
    expect(c.decode(wrong)).toEqual({ ok: false, reason: 'shape' });
    const neg = c.encode({ ...samples[1]!, seqs: [-1] } as unknown as Message);
    expect(c.decode(neg)).toEqual({ ok: false, reason: 'shape' });
    const uneven = c.encode({ ...samples[0]!, seqs: [1] } as Message);
    expect(c.decode(uneven)).toEqual({ ok: false, reason: 'shape' });
    const badStart = c.encode({ ...samples[7]!, start: -5 } as Message);
    expect(c.decode(badStart)).toEqual({ ok: false, reason: 'shape' });
    const badDelivered = c.encode({ ...samples[7]!, delivered: -2 } as Message);
    expect(c.decode(badDelivered)).toEqual({ ok: false, reason: 'shape' });
    const badPaced = c.encode({ ...samples[7]!, paced: 2 } as Message);
    expect(c.decode(badPaced)).toEqual({ ok: false, reason: 'shape' });
    // Phase 1B: one decided flag (0 or 1) per reported value.
    const p1b = samples.find((m) => m.t === MessageType.Phase1B)!;
    expect(c.decode(c.encode({ ...p1b, decided: [2] } as Message))).toEqual({ ok: false, reason: 'shape' });
    expect(c.decode(c.encode({ ...p1b, decided: [] } as Message))).toEqual({ ok: false, reason: 'shape' });
  });

  it('refuses untagged, mistagged and tampered datagrams when a secret is set', () => {
    const plain = new Codec({ maxDatagramBytes: 60000 });
    const a = new Codec({ maxDatagramBytes: 60000, secret: 'secret-number-one-0000' });
    const other = new Codec({ maxDatagramBytes: 60000, secret: 'secret-number-two-0000' });
    const m = samples[4]!;
    expect(a.decode(plain.encode(m))).toEqual({ ok: false, reason: 'auth' });
    expect(a.decode(other.encode(m))).toEqual({ ok: false, reason: 'auth' });
    const tampered = Buffer.from(a.encode(m));
    tampered[10] ^= 0x40;
    expect(a.decode(tampered)).toEqual({ ok: false, reason: 'auth' });
    expect(a.decode(a.encode(m)).ok).toBe(true);
  });

  it('refuses to encode a message above the datagram bound', () => {
    const c = new Codec({ maxDatagramBytes: 1024 });
    expect(() => c.encode({ ...samples[4]!, value: new Uint8Array(2000) } as Message)).toThrow(/datagram bound/);
  });

  it('round-trips random sizes across every msgpack width (ints to 2^53, bytes to 64 KB, long arrays)', () => {
    const c = new Codec({ maxDatagramBytes: 65507 });
    const rng = new Prng(7);
    const int = (): number => rng.pick([0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, rng.int(0, 2 ** 31)]);
    for (let k = 0; k < 2000; k++) {
      const n = rng.pick([0, 1, 15, 16, 17, 300]);
      const len = rng.pick([0, 1, 255, 256, 65535 - 600, rng.int(0, 3000)]);
      const m: Message = {
        t: MessageType.Learn,
        ring: int() % 65536,
        from: int(),
        trimmed: int(),
        insts: Array.from({ length: n }, int),
        vids: Array.from({ length: n }, int),
        values: Array.from({ length: n }, (_, i) => new Uint8Array(i === 0 ? len : rng.int(0, 8)).fill(i & 255)),
      };
      let buf: Buffer;
      try {
        buf = c.encode(m);
      } catch {
        continue; // above the datagram bound: refused, as tested above
      }
      const d = c.decode(buf);
      expect(d.ok).toBe(true);
      if (d.ok) expect(norm(d.msg)).toEqual(norm(m));
    }
  });
});

describe('anti-replay window (ReplayGuard)', () => {
  const W = 64;
  const F = DEFAULT_REPLAY_GUARD.freshnessMs;

  it('passes datagrams reordered within the window once each, and drops duplicates', () => {
    const g = new ReplayGuard(0, { windowBits: W });
    const rng = new Prng(3);
    const order = Array.from({ length: 50 }, (_, i) => i + 1);
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.int(0, i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (const c of order) expect(g.check(1, c, 10, 10)).toBe('ok');
    for (const c of order) expect(g.check(1, c, 10, 10)).toBe('replay');
  });

  it('drops a counter older than the window, even unseen', () => {
    const g = new ReplayGuard(0, { windowBits: W });
    expect(g.check(1, 1000, 5, 5)).toBe('ok');
    expect(g.check(1, 1000 - W, 5, 5)).toBe('replay');
    expect(g.check(1, 1000 - W + 1, 5, 5)).toBe('ok');
    expect(g.check(1, 1000 - W + 1, 5, 5)).toBe('replay');
    // A jump past a whole window clears it: what was below is now too old.
    expect(g.check(1, 1000 + 10 * W, 5, 5)).toBe('ok');
    expect(g.check(1, 1000, 5, 5)).toBe('replay');
    expect(g.check(1, 1000 + 10 * W - 1, 5, 5)).toBe('ok');
  });

  it('agrees with a set-based model on random counters (the word-wise window slide)', () => {
    for (const windowBits of [32, 64, 2048]) {
      const g = new ReplayGuard(0, { windowBits });
      const rng = new Prng(windowBits);
      const seen = new Set<number>();
      let top = -1;
      for (let k = 0; k < 20000; k++) {
        const c = Math.max(0, top + rng.int(-windowBits - 8, rng.pick([2, 40, 3 * windowBits])));
        const want = c > top ? 'ok' : top - c >= windowBits || seen.has(c) ? 'replay' : 'ok';
        expect(g.check(9, c, 1, 1)).toBe(want);
        if (want === 'ok') seen.add(c);
        if (c > top) top = c;
      }
    }
  });

  it('drops a timestamp outside the freshness window as stale', () => {
    const g = new ReplayGuard(0);
    const now = 100_000;
    expect(g.check(1, 1, now - F - 1, now)).toBe('stale');
    expect(g.check(1, 2, now + F + 1, now)).toBe('stale');
    expect(g.check(1, 3, now - F, now)).toBe('ok');
  });

  it("takes a sender's new incarnation from counter 1 and still refuses the old one's datagrams", () => {
    const g = new ReplayGuard(0);
    for (let c = 1; c <= 10; c++) expect(g.check(111, c, 1000 + c, 1000 + c)).toBe('ok');
    // The sender restarts with a new incarnation: its counter starts over.
    for (let c = 1; c <= 10; c++) expect(g.check(222, c, 2000 + c, 2000 + c)).toBe('ok');
    expect(g.check(111, 5, 1005, 2020)).toBe('replay');
    // Once older than the freshness window the old incarnation's datagrams are stale wherever they go.
    expect(g.check(111, 5, 1005, 1005 + F + 1)).toBe('stale');
    expect(new ReplayGuard(1000).check(111, 5, 1005, 1005 + F + 1)).toBe('stale');
  });

  it("refuses a datagram captured before the receiver started (the new process's floor)", () => {
    const g = new ReplayGuard(1000);
    expect(g.check(5, 1, 999, 1001)).toBe('replay');
    expect(g.check(5, 2, 1000, 1001)).toBe('ok');
  });

  it('bounds the table: evicting a fresh sender raises the floor, so its datagrams are not accepted again', () => {
    const g = new ReplayGuard(0, { maxSenders: 2 });
    expect(g.check(1, 1, 100, 100)).toBe('ok');
    expect(g.check(1, 2, 101, 101)).toBe('ok');
    expect(g.check(2, 1, 102, 102)).toBe('ok');
    expect(g.check(3, 1, 103, 103)).toBe('ok'); // evicts sender 1, last heard at 101
    expect(g.size).toBe(2);
    expect(g.evictedFresh).toBe(1);
    expect(g.floor).toBe(102);
    expect(g.check(1, 2, 101, 104)).toBe('replay');
    expect(g.check(1, 1, 100, 104)).toBe('replay');
    // Sender 1 itself goes on: a later datagram opens a new entry (evicting sender 2, heard at 102); what
    // it sent before stays refused.
    expect(g.check(1, 3, 104, 104)).toBe('ok');
    expect(g.floor).toBe(103);
    expect(g.check(1, 2, 101, 105)).toBe('replay');
    // A sender silent for longer than the freshness window goes without raising the floor.
    expect(g.check(4, 1, 104 + F + 10, 104 + F + 10)).toBe('ok');
    expect(g.floor).toBe(103);
    expect(g.evictedFresh).toBe(2);
  });
});

describe('wire envelope with a cluster secret', () => {
  const secret = 'envelope-cluster-secret-0000';
  const m = samples[5]!;

  it('is accepted once per receiver, carries the sender incarnation, and goes stale after the freshness window', () => {
    let t = 50_000;
    const now = (): number => t;
    const a = new Codec({ maxDatagramBytes: 60000, secret, incarnation: 0xabcdef123456, now });
    const b = new Codec({ maxDatagramBytes: 60000, secret, now });
    const c = new Codec({ maxDatagramBytes: 60000, secret, now });
    const buf = a.encode(m);
    expect(buf[0]).toBe(WIRE_VERSION);
    expect(buf.readUIntBE(3, 6)).toBe(0xabcdef123456);
    expect(buf.readUIntBE(9, 6)).toBe(1);
    expect(buf.readUIntBE(15, 6)).toBe(t);
    expect(norm(b.decode(buf))).toEqual(norm({ ok: true, msg: m }));
    expect(b.decode(buf)).toEqual({ ok: false, reason: 'replay' });
    expect(c.decode(buf).ok).toBe(true);
    // An observer without the secret reads past envelope and tag.
    expect(new Codec({ maxDatagramBytes: 60000 }).decode(buf).ok).toBe(true);
    const late = a.encode(m);
    t += DEFAULT_REPLAY_GUARD.freshnessMs + 1;
    expect(b.decode(late)).toEqual({ ok: false, reason: 'stale' });
    expect(b.decode(a.encode(m)).ok).toBe(true);
  });

  it('without a secret carries no envelope and keeps no replay state (anyone could forge a datagram)', () => {
    const plain = new Codec({ maxDatagramBytes: 60000 });
    const buf = plain.encode(m);
    expect(plain.decode(buf).ok).toBe(true);
    expect(plain.decode(buf).ok).toBe(true);
    expect(plain.replay).toBeUndefined();
  });
});
