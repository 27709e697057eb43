import { createSocket, type Socket } from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MessageType } from '@ringcast/ring-paxos';
import { FaultProxy } from '@ringcast/ring-paxos/testing';
import { launchLocalRing, spawnRingcast, stopProcess, type LocalRing, type Spawned } from '@ringcast/cli';
import { delivered, scrape, stopAll, waitUntil } from './helpers.js';

// Replays of captured datagrams against real `ringcast node` processes. A fault proxy (no faults) sits in
// front of the coordinator for the clients whose datagrams are captured: they use a copy of the cluster
// file that names the proxy's port for the coordinator.
// On the code before the anti-replay envelope and the stuck-learner rule all three fail: the replayed
// Propose is delivered a second time (its proposer's de-duplication entries were evicted), and in both
// Progress cases the ring stops at logCapacity, so the proposer of 768 values never finishes.
const SECRET = 'replay-cluster-secret-000000';
// A small log so that it fills quickly: the ring stops at safe + logCapacity. Long failure-detection
// timeouts: the replays go to the first coordinator, and a busy machine must not make another node take over.
const SETTINGS = { maxProposers: 2, logCapacity: 256, logRetain: 64, window: 16, learnerTimeoutMs: 1000, coordinatorTimeoutMs: 10_000, acceptorTimeoutMs: 10_000 };

interface Rig {
  ring: LocalRing;
  coordPort: number;
  coordMetrics: number;
  /** Cluster file whose coordinator entry is the capturing proxy. */
  viaProxy: string;
  captured: Buffer[];
  proxy: FaultProxy;
  sock: Socket;
  procs: Spawned[];
}

async function rig(secret: string | undefined): Promise<Rig> {
  const ring = await launchLocalRing({ acceptors: 3, metrics: true, secret, settings: SETTINGS });
  const procs: Spawned[] = [];
  const ports = await Promise.all(ring.nodes.map(async (n) => (await n.waitFor('ready')).metricsPort as number));
  const coord = ring.cluster.rings[0]!.ring.at(-1)!;
  const coordPort = ring.cluster.nodes.find((n) => n.id === coord)!.port;
  const captured: Buffer[] = [];
  const proxy = new FaultProxy({ listenHost: '127.0.0.1', listenPort: 0, targetHost: '127.0.0.1', targetPort: coordPort, tap: (d, toTarget) => toTarget && captured.push(Buffer.from(d)) });
  await proxy.start();
  const raw = JSON.parse(readFileSync(ring.clusterPath, 'utf8')) as { nodes: Array<{ id: number; port: number }> };
  raw.nodes.find((n) => n.id === coord)!.port = proxy.port;
  const viaProxy = join(ring.dir, 'via-proxy.json');
  writeFileSync(viaProxy, JSON.stringify(raw));
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return { ring, coordPort, coordMetrics: ports[coord - 1]!, viaProxy, captured, proxy, sock, procs };
}

async function unrig(r: Rig | undefined): Promise<void> {
  if (!r) return;
  r.sock.close();
  await stopAll(r.procs);
  await r.proxy.stop();
  await r.ring.stop();
}

function spawn(r: Rig, args: string[]): Spawned {
  const p = spawnRingcast(args);
  r.procs.push(p);
  return p;
}

const lastOfType = (r: Rig, t: MessageType): Buffer | undefined => r.captured.filter((b) => b[1] === t).at(-1);

/** Datagrams the coordinator refused as replays: seen before ('replay'), or older than the freshness window. */
async function refused(r: Rig): Promise<number> {
  const drops = (reason: string): Promise<number> => scrape(r.coordMetrics, 'ringcast_datagrams_dropped_total', `reason="${reason}"`);
  return (await drops('replay')) + (await drops('stale'));
}

/**
 * A learner through the proxy delivers, its last Progress is kept, and it is killed. The Progress is then
 * sent to the coordinator every 300 ms while a proposer orders 3 x logCapacity values one at a time (one
 * instance each). The dead learner must not stop the ring: every value is acknowledged.
 */
async function deadLearnerReplayed(r: Rig): Promise<{ acked: number; failed: number; replayed: number }> {
  const n = 3 * SETTINGS.logCapacity;
  const dead = spawn(r, ['learn', '--cluster', r.viaProxy, '--from', 'next']);
  await dead.waitFor('ready');
  const warm = spawn(r, ['propose', '--cluster', r.ring.clusterPath, '--count', '20', '--outstanding', '1', '--prefix', 'warm']);
  await warm.waitFor('done', 20_000);
  expect(await waitUntil(() => delivered(dead).length >= 20, 10_000)).toBe(true);
  // Its last report says it delivered the 20 values.
  await new Promise((res) => setTimeout(res, 3 * 50));
  const progress = lastOfType(r, MessageType.Progress);
  expect(progress, 'a captured Progress datagram').toBeDefined();
  await stopProcess(dead);
  let replayed = 0;
  const timer = setInterval(() => {
    r.sock.send(progress!, r.coordPort, '127.0.0.1');
    replayed++;
  }, 300);
  try {
    const p = spawn(r, ['propose', '--cluster', r.ring.clusterPath, '--count', String(n), '--outstanding', '1', '--prefix', 'fill']);
    // Without the fix the ring stops at logCapacity and the proposer gives each value up after maxSends
    // retries (5 s); with it every value is acknowledged well within this bound.
    const d = await p.waitFor('done', 60_000);
    return { acked: d.acked as number, failed: d.failed as number, replayed };
  } finally {
    clearInterval(timer);
  }
}

describe('replayed datagrams with a cluster secret', () => {
  let r: Rig | undefined;
  let live: Spawned;
  beforeAll(async () => {
    r = await rig(SECRET);
    live = spawn(r, ['learn', '--cluster', r.ring.clusterPath, '--from', '0']);
    await live.waitFor('ready');
  }, 30_000);
  afterAll(() => unrig(r));

  it('a captured Propose replayed after more proposers than maxProposers came and went is not delivered twice', async () => {
    const rg = r!;
    const first = spawn(rg, ['propose', '--cluster', rg.viaProxy, '--count', '1', '--prefix', 'captured']);
    expect(await first.waitFor('done', 20_000)).toMatchObject({ acked: 1, failed: 0 });
    const propose = lastOfType(rg, MessageType.Propose);
    expect(propose, 'a captured Propose datagram').toBeDefined();
    // Three more proposers (maxProposers is 2): the first one's de-duplication entries are evicted.
    const others = [0, 1, 2].map((k) => spawn(rg, ['propose', '--cluster', rg.ring.clusterPath, '--count', '1', '--prefix', `other${k}`]));
    for (const o of others) expect(await o.waitFor('done', 20_000)).toMatchObject({ acked: 1, failed: 0 });
    expect(await waitUntil(() => delivered(live).length >= 4, 10_000)).toBe(true);
    const before = await refused(rg);
    rg.sock.send(propose!, rg.coordPort, '127.0.0.1');
    const count = (): number => delivered(live).filter((d) => d.d === 'captured-0').length;
    // Either the coordinator drops the replay (and counts it), or the value comes out a second time.
    // (Here, 'replay' when it came within 5 s of the capture; 'stale' on a machine slow enough to take longer.)
    await waitUntil(async () => count() > 1 || (await refused(rg)) > before, 10_000);
    await new Promise((res) => setTimeout(res, 200));
    expect(count()).toBe(1);
    expect(await refused(rg)).toBe(before + 1);
  }, 60_000);

  it("a dead learner's captured Progress replayed every 300 ms neither keeps it registered nor stops the ring", async () => {
    const rg = r!;
    const before = await refused(rg);
    const res = await deadLearnerReplayed(rg);
    expect(res).toMatchObject({ acked: 3 * SETTINGS.logCapacity, failed: 0 });
    expect(res.replayed).toBeGreaterThan(0);
    // Every replay was dropped and counted; only the live learner is registered.
    expect(await waitUntil(async () => (await refused(rg)) - before >= res.replayed, 5000)).toBe(true);
    expect((await refused(rg)) - before).toBe(res.replayed);
    expect(await scrape(rg.coordMetrics, 'ringcast_datagrams_dropped_total', 'reason="replay"')).toBeGreaterThan(0);
    expect(await scrape(rg.coordMetrics, 'ringcast_learners')).toBe(1);
    expect(await waitUntil(() => delivered(live).length >= 4 + 20 + 3 * SETTINGS.logCapacity, 10_000)).toBe(true);
  }, 90_000);
});

describe('without a cluster secret', () => {
  let r: Rig | undefined;
  afterAll(() => unrig(r));

  it('a learner that reports but never advances is left out of trimming once the logs fill, and the ring goes on', async () => {
    r = await rig(undefined);
    // Without a secret a replay cannot be told from the learner itself: it stays registered, stuck.
    const res = await deadLearnerReplayed(r);
    expect(res).toMatchObject({ acked: 3 * SETTINGS.logCapacity, failed: 0 });
    expect(await scrape(r.coordMetrics, 'ringcast_learners')).toBe(1);
    expect(await scrape(r.coordMetrics, 'ringcast_learners_left_behind')).toBe(1);
    // Trimming went far past the 20 instances the dead learner delivered.
    expect(await scrape(r.coordMetrics, 'ringcast_acceptor_trimmed_below')).toBeGreaterThan(SETTINGS.logCapacity);
  }, 90_000);
});
