import { createSocket } from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Codec, MESSAGE_SHAPES, MessageType, Prng, WIRE_VERSION, type Message } from '@ringcast/ring-paxos';
import { FaultProxy } from '@ringcast/ring-paxos/testing';
import { launchLocalRing, spawnRingcast, type LocalRing, type Spawned } from '@ringcast/cli';
import { delivered, scrape, stopAll, waitUntil } from './helpers.js';

// Throws 100,000 bad datagrams (random, structurally wrong, truncated, oversized, foreign-ring, and - with a
// cluster secret - tampered and mis-keyed ones, and replays of real ring datagrams captured on their way to
// the coordinator) at running acceptor processes while they order values.
// Every bad datagram must be dropped and counted, no process may crash, and ordering must go on.
const TOTAL = 100_000;
const ROUND = 600; // datagrams per round, spread over the three nodes; then wait until all are counted

const SECRET = 'fuzz-cluster-secret-000000';

function validSamples(ring: number): Message[] {
  const v = (n: number): Uint8Array => new Uint8Array(n).fill(7);
  return [
    { t: MessageType.Propose, ring, from: 70000, floor: 0, seqs: [1, 2], datas: [v(10), v(20)] },
    { t: MessageType.Phase2A, ring, from: 2, ballot: 1, instance: 5, vid: 1, value: v(100), decisions: [1, 2, 1], safe: 0 },
    { t: MessageType.Phase2B, ring, from: 1, ballot: 1, instance: 5, vid: 1, votes: 1 },
    { t: MessageType.Progress, ring, from: 70001, delivered: 3, start: -1, paced: 0 },
    { t: MessageType.RetransmitRequest, ring, from: 70001, lo: 0, hi: 5 },
    { t: MessageType.Learn, ring, from: 1, trimmed: 0, insts: [1], vids: [1], values: [v(5)] },
    { t: MessageType.SkipRequest, ring, from: 70001, pos: 12345 },
  ];
}

/** One datagram that must be refused, of a kind drawn from `rng`. */
function badDatagram(rng: Prng, codec: Codec, secret: boolean): Buffer {
  const samples = validSamples(0);
  const kind = rng.int(0, secret ? 9 : 7);
  switch (kind) {
    case 0: {
      // Random bytes with a wrong version byte.
      const b = Buffer.alloc(rng.int(4, 1500));
      for (let i = 0; i < b.length; i++) b[i] = rng.int(0, 256);
      if (b[0] === WIRE_VERSION) b[0] = WIRE_VERSION + 1;
      return b;
    }
    case 1: {
      // Right version, unknown type.
      const b = Buffer.alloc(rng.int(4, 200));
      for (let i = 0; i < b.length; i++) b[i] = rng.int(0, 256);
      b[0] = WIRE_VERSION;
      b[1] = rng.int(Object.keys(MESSAGE_SHAPES).length + 1, 256);
      return b;
    }
    case 2: {
      // A valid datagram cut short (the msgpack body ends early; with a secret the tag no longer matches).
      const good = codec.encode(rng.pick(samples));
      return good.subarray(0, rng.int(0, good.length - (secret ? 1 : 17)));
    }
    case 3:
      return Buffer.alloc(rng.int(0, 4), 1); // too short
    case 4:
      return Buffer.alloc(rng.int(61 * 1024, 65000), 2); // above the datagram bound
    case 5: {
      // Well-formed msgpack of the wrong shape: fields of the wrong kind.
      const m = { ...rng.pick(samples) } as Record<string, unknown>;
      const keys = Object.keys(m).filter((k) => k !== 't');
      m[rng.pick(keys)] = rng.pick(['str', -5, 1.5, { a: 1 }, [-1], null, true]);
      if (secret) return Buffer.from(new Codec({ maxDatagramBytes: 60000 }).encode(m as unknown as Message));
      return codec.encode(m as unknown as Message);
    }
    case 6: {
      // A valid message for a ring this cluster does not have.
      return codec.encode(validSamples(99)[rng.int(0, 6)]!);
    }
    case 7: {
      // With a secret: a valid datagram with one bit flipped.
      const b = Buffer.from(codec.encode(rng.pick(samples)));
      const i = rng.int(3, b.length);
      b[i]! ^= 1 << rng.int(0, 8);
      return b;
    }
    default: {
      // With a secret: tagged with another key, or not tagged at all.
      const other = new Codec({ maxDatagramBytes: 60000, secret: rng.chance(0.5) ? 'another-secret-0000000000' : undefined });
      return other.encode(rng.pick(samples));
    }
  }
}

/**
 * Datagrams each node dropped before any role saw them (every reason but 'role'). A bad datagram never gets
 * that far; 'role' counts real ring traffic a node's roles had no use for (e.g. a learner that found the
 * coordinator slow on a loaded machine and reported to every acceptor), which is not the fuzzer's.
 */
async function badDrops(ports: number[]): Promise<number[]> {
  return Promise.all(ports.map(async (p) => (await scrape(p, 'ringcast_datagrams_dropped_total')) - (await scrape(p, 'ringcast_datagrams_dropped_total', 'reason="role"'))));
}

async function fuzzRing(secret: boolean, count: number, seed: number): Promise<{ dropped: number; delivered: number }> {
  const ring: LocalRing = await launchLocalRing({ acceptors: 3, metrics: true, secret: secret ? SECRET : undefined });
  const procs: Spawned[] = [];
  const sock = createSocket('udp4');
  // The second learner reaches the coordinator through a relay that keeps (up to 500 of) the datagrams it
  // sends there: the coordinator received each of them, so each replayed copy must be dropped.
  const coordIdx = ring.cluster.rings[0]!.ring.at(-1)! - 1;
  const captured: Buffer[] = [];
  const relay = new FaultProxy({
    listenHost: '127.0.0.1',
    listenPort: 0,
    targetHost: '127.0.0.1',
    targetPort: ring.cluster.nodes[coordIdx]!.port,
    tap: (d, toTarget) => void (toTarget && captured.length < 500 && captured.push(Buffer.from(d))),
  });
  try {
    await relay.start();
    const raw = JSON.parse(readFileSync(ring.clusterPath, 'utf8')) as { nodes: Array<{ port: number }> };
    raw.nodes[coordIdx]!.port = relay.port;
    const viaRelay = join(ring.dir, 'via-relay.json');
    writeFileSync(viaRelay, JSON.stringify(raw));
    const ports = await Promise.all(ring.nodes.map(async (n) => (await n.waitFor('ready')).metricsPort as number));
    const learners = [ring.clusterPath, viaRelay].map((c) => spawnRingcast(['learn', '--cluster', c, '--from', '0']));
    procs.push(...learners);
    await Promise.all(learners.map((l) => l.waitFor('ready')));
    if (secret) expect(await waitUntil(() => captured.length >= 10, 10_000), 'datagrams captured on their way to the coordinator').toBe(true);
    const proposer = spawnRingcast(['propose', '--cluster', ring.clusterPath, '--count', '3000', '--outstanding', '16', '--prefix', 'f']);
    procs.push(proposer);

    const codec = new Codec({ maxDatagramBytes: ring.cluster.settings.maxDatagramBytes, secret: secret ? SECRET : undefined });
    const rng = new Prng(seed);
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const targets = ring.cluster.nodes.map((n) => n.port);
    const sent = [0, 0, 0];
    for (let done = 0; done < count; ) {
      const n = Math.min(ROUND, count - done);
      for (let k = 0; k < n; k++) {
        const t = (done + k) % 3;
        // With a secret, a fifth of what goes to the coordinator replays a captured datagram.
        const b = secret && t === coordIdx && rng.chance(0.2) ? rng.pick(captured) : badDatagram(rng, codec, secret);
        sock.send(b, targets[t]!, '127.0.0.1');
        sent[t]!++;
      }
      done += n;
      // Wait until every node counted all it was sent: the count must match exactly.
      const counted = await waitUntil(async () => (await badDrops(ports)).every((g, i) => g >= sent[i]!), 10_000, 10);
      if (!counted) throw new Error(`after ${done} datagrams the nodes counted ${(await badDrops(ports)).join(', ')} of ${sent.join(', ')}`);
    }
    expect(await badDrops(ports)).toEqual(sent);
    if (secret) {
      expect(await scrape(ports[0]!, 'ringcast_datagrams_dropped_total', 'reason="auth"')).toBeGreaterThan(0);
      // Refused as seen before, or (on a machine slow enough that a capture is 5 s old) as stale.
      const refused = (await scrape(ports[coordIdx]!, 'ringcast_datagrams_dropped_total', 'reason="replay"')) + (await scrape(ports[coordIdx]!, 'ringcast_datagrams_dropped_total', 'reason="stale"'));
      expect(refused).toBeGreaterThan(0);
    }
    else expect(await scrape(ports[0]!, 'ringcast_datagrams_dropped_total', 'reason="shape"')).toBeGreaterThan(0);

    const d = await proposer.waitFor('done', 120_000);
    expect(d).toMatchObject({ acked: 3000, failed: 0 });
    expect(await waitUntil(() => learners.every((l) => delivered(l).length >= 3000), 30_000)).toBe(true);
    expect(delivered(learners[1]!)).toEqual(delivered(learners[0]!));
    // No process crashed.
    for (const n of ring.nodes) expect(n.child.exitCode).toBeNull();
    return { dropped: (await badDrops(ports)).reduce((a, b) => a + b, 0), delivered: delivered(learners[0]!).length };
  } finally {
    sock.close();
    await stopAll(procs);
    await relay.stop();
    await ring.stop();
  }
}

describe('fuzzing running nodes with bad datagrams', () => {
  const procs: Spawned[] = [];
  afterAll(() => stopAll(procs));

  it(`drops and counts ${TOTAL / 2} bad datagrams without a secret while ordering goes on`, async () => {
    const r = await fuzzRing(false, TOTAL / 2, 1);
    expect(r.dropped).toBe(TOTAL / 2);
  });

  it(`drops and counts ${TOTAL / 2} bad datagrams with a cluster secret (HMAC) while ordering goes on`, async () => {
    const r = await fuzzRing(true, TOTAL / 2, 2);
    expect(r.dropped).toBe(TOTAL / 2);
  });
});
