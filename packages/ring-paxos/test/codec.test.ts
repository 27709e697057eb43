import { describe, expect, it } from 'vitest';
import { Codec, MessageType, MESSAGE_SHAPES, Prng, type Message } from '@ringcast/ring-paxos';

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
  { t: MessageType.Phase1B, ring: 1, from: 1, ballot: 65538, lo: 0, hi: 4096, trimmed: 0, top: 8, insts: [7], vballots: [65537], vids: [65537], values: [b('x')] },
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
