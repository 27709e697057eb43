import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { parseCluster, ConfigError, type ClusterConfig } from '@ringcast/ring-paxos';
import { spawnRingcast, stopProcess } from '@ringcast/cli';
import { RedisRegistry, RegistryUnavailableError, StaticRegistry, registryKeys, type Registry, type RegistryEvent } from '../src/index.js';
import { startRedisServer, type RedisServer } from './redis-server.js';

const RAW = {
  nodes: [
    { id: 1, host: '127.0.0.1', port: 7001, metricsPort: 9101 },
    { id: 2, host: '127.0.0.1', port: 7002 },
    { id: 3, host: '127.0.0.1', port: 7003 },
  ],
  rings: [
    { id: 0, acceptors: [1, 2, 3] },
    { id: 1, acceptors: [3, 2, 1], ring: [1, 3] },
  ],
  secret: 'a secret that never goes to redis',
};
const CLUSTER: ClusterConfig = parseCluster(RAW);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `pred` until true or fail after `timeoutMs`. */
async function until(pred: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await pred()) return;
    await sleep(20);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

let server: RedisServer;
const open: Registry[] = [];
let prefixSeq = 0;
function registry(opts: { prefix?: string; timeoutMs?: number; sweepMs?: number; url?: string } = {}): RedisRegistry {
  const r = new RedisRegistry({ url: opts.url ?? server.url, prefix: opts.prefix ?? `t${prefixSeq}:`, timeoutMs: opts.timeoutMs ?? 1000, sweepMs: opts.sweepMs ?? 50 });
  open.push(r);
  return r;
}

beforeAll(async () => {
  server = await startRedisServer();
});
afterEach(async () => {
  prefixSeq++;
  await Promise.all(open.splice(0).map((r) => r.close()));
});
afterAll(async () => {
  await server?.stop();
});

describe('RedisRegistry against a real redis-server', () => {
  it('load and view round-trip the cluster facts; load is idempotent; the secret stays out of Redis', async () => {
    const reg = registry();
    const before = await reg.view();
    expect(before.loaded).toBe(false);
    expect(before.nodes).toEqual([]);
    expect(await reg.load(CLUSTER)).toEqual({ changed: true });
    expect(await reg.load(CLUSTER)).toEqual({ changed: false });
    const v = await reg.view();
    expect(v.loaded).toBe(true);
    expect(v.nodes).toEqual([
      { id: 1, host: '127.0.0.1', port: 7001, metricsPort: 9101, configured: true, live: false, expiresAt: null },
      { id: 2, host: '127.0.0.1', port: 7002, configured: true, live: false, expiresAt: null },
      { id: 3, host: '127.0.0.1', port: 7003, configured: true, live: false, expiresAt: null },
    ]);
    expect(v.rings).toEqual([
      { id: 0, acceptors: [1, 2, 3], ring: [1, 2], spares: [3], f: 1 },
      { id: 1, acceptors: [3, 2, 1], ring: [1, 3], spares: [2], f: 1 },
    ]);
    expect(v.groups).toEqual({ g0: 0, g1: 1 });
    expect(Math.abs(v.now - Date.now())).toBeLessThan(5000);
    // Another instance on the same prefix sees the same facts; a different prefix is another cluster.
    expect((await registry().view()).rings).toEqual(v.rings);
    expect((await registry({ prefix: `other${prefixSeq}:` }).view()).loaded).toBe(false);
    // Explicit groups replace the default ones; a changed load reports changed.
    expect(await reg.load(CLUSTER, { groups: { orders: 0, all: 1 } })).toEqual({ changed: true });
    expect((await reg.view()).groups).toEqual({ all: 1, orders: 0 });
    const raw = new Redis(server.url, { lazyConnect: true });
    try {
      await raw.connect();
      const keys = await raw.keys(`t${prefixSeq}:*`);
      expect(keys.length).toBeGreaterThan(0);
      for (const k of keys) {
        const type = await raw.type(k);
        const dump = type === 'hash' ? JSON.stringify(await raw.hgetall(k)) : type === 'string' ? String(await raw.get(k)) : '';
        expect(dump).not.toContain('secret that never');
      }
    } finally {
      raw.disconnect();
    }
  });

  it('validates inputs with ConfigError naming the field', async () => {
    const reg = registry();
    await expect(reg.acquireLease(0, 0, 1, 1000)).rejects.toMatchObject({ code: 'ERR_RINGCAST_CONFIG', field: 'node' });
    await expect(reg.acquireLease(0, 1, 1.5, 1000)).rejects.toMatchObject({ field: 'ballot' });
    await expect(reg.acquireLease(70000, 1, 1, 1000)).rejects.toMatchObject({ field: 'ring' });
    await expect(reg.renewLease(0, 1, 5)).rejects.toMatchObject({ field: 'ttlMs' });
    await expect(reg.registerNode(1, { host: 'a b', port: 1 }, 1000)).rejects.toMatchObject({ field: 'addr.host' });
    await expect(reg.registerNode(1, { host: '127.0.0.1', port: 70000 }, 1000)).rejects.toMatchObject({ field: 'addr.port' });
    await expect(reg.subscribe(1, [0, -1], 1000)).rejects.toMatchObject({ field: 'rings[1]' });
    await expect(reg.subscribe(0, [0], 1000)).rejects.toMatchObject({ field: 'learnerId' });
    await expect(reg.view({ timeoutMs: 0 })).rejects.toMatchObject({ field: 'timeoutMs' });
    await expect(reg.load(CLUSTER, { groups: { g: 9 } })).rejects.toMatchObject({ field: 'groups.g' });
    expect(() => new RedisRegistry({ url: 'http://x' })).toThrow(ConfigError);
    expect(() => new RedisRegistry({ url: server.url, prefix: 'has space' })).toThrow(/prefix/);
  });

  it('node registration shows the live address and expires after its TTL', async () => {
    const reg = registry();
    await reg.load(CLUSTER);
    await reg.registerNode(2, { host: '127.0.0.1', port: 7102, metricsPort: 9202 }, 200);
    await reg.registerNode(9, { host: '127.0.0.2', port: 7009 }, 200);
    let v = await reg.view();
    expect(v.nodes.find((n) => n.id === 2)).toMatchObject({ port: 7102, metricsPort: 9202, configured: true, live: true });
    expect(v.nodes.find((n) => n.id === 9)).toMatchObject({ host: '127.0.0.2', configured: false, live: true });
    expect(v.nodes.find((n) => n.id === 2)!.expiresAt! - v.now).toBeLessThanOrEqual(200);
    await sleep(300);
    v = await reg.view();
    expect(v.nodes.find((n) => n.id === 2)).toMatchObject({ port: 7002, configured: true, live: false, expiresAt: null });
    expect(v.nodes.find((n) => n.id === 9)).toBeUndefined();
    // Refreshing before the TTL keeps it alive.
    await reg.registerNode(3, { host: '127.0.0.1', port: 7003 }, 250);
    for (let i = 0; i < 4; i++) {
      await sleep(100);
      await reg.registerNode(3, { host: '127.0.0.1', port: 7003 }, 250);
    }
    expect((await reg.view()).nodes.find((n) => n.id === 3)!.live).toBe(true);
  });

  it('leases: only the holder renews an unexpired lease; another node takes over only after expiry', async () => {
    const reg = registry();
    const other = registry();
    await reg.load(CLUSTER);
    expect(await reg.leaseOf(0)).toBeNull();
    expect(await reg.acquireLease(0, 2, 65538, 300)).toBe(true);
    expect(await reg.leaseOf(0)).toMatchObject({ ring: 0, holder: 2, ballot: 65538 });
    // A higher ballot from another node does not take an unexpired lease.
    expect(await other.acquireLease(0, 3, 10 * 65536 + 3, 300)).toBe(false);
    expect(await other.renewLease(0, 3, 300)).toBe(false);
    // The holder renews; with acquire it may raise its ballot but not lower it.
    expect(await reg.renewLease(0, 2, 300)).toBe(true);
    expect(await reg.acquireLease(0, 2, 2 * 65536 + 2, 300)).toBe(true);
    expect(await reg.acquireLease(0, 2, 65538, 300)).toBe(false);
    expect((await reg.leaseOf(0))!.ballot).toBe(2 * 65536 + 2);
    // Large ballots survive exactly.
    expect(await reg.acquireLease(1, 1, Number.MAX_SAFE_INTEGER, 300)).toBe(true);
    expect((await other.leaseOf(1))!.ballot).toBe(Number.MAX_SAFE_INTEGER);
    // Only the holder sets the ring order, and only to f+1 of the ring's acceptors.
    expect(await other.setRingOrder(0, 3, [2, 3])).toBe(false);
    await expect(reg.setRingOrder(0, 2, [2, 9])).rejects.toMatchObject({ field: 'order' });
    expect(await reg.setRingOrder(0, 2, [3, 2])).toBe(true);
    expect((await other.view()).rings[0]).toMatchObject({ ring: [3, 2], spares: [1] });
    // Expiry: the holder can no longer renew; another node takes it.
    await sleep(400);
    expect(await reg.leaseOf(0)).toBeNull();
    expect(await reg.renewLease(0, 2, 300)).toBe(false);
    expect(await other.acquireLease(0, 3, 3 * 65536 + 3, 300)).toBe(true);
    expect(await reg.leaseOf(0)).toMatchObject({ holder: 3, ballot: 3 * 65536 + 3 });
    expect((await reg.view()).leases.map((l) => [l.ring, l.holder])).toEqual([[0, 3]]);
    // Release: only by the holder.
    expect(await reg.releaseLease(0, 2)).toBe(false);
    expect(await other.releaseLease(0, 3)).toBe(true);
    expect(await reg.leaseOf(0)).toBeNull();
    expect(await reg.acquireLease(0, 1, 4 * 65536 + 1, 300)).toBe(true);
  });

  it('subscriptions are refreshed by the learner and lapse after their TTL', async () => {
    const reg = registry();
    await reg.subscribe(0x10001, [2, 0, 2], 250);
    await reg.subscribe(0x10002, [1], 5000);
    let v = await reg.view();
    expect(v.subscriptions.map((s) => [s.learner, s.rings])).toEqual([
      [0x10001, [0, 2]],
      [0x10002, [1]],
    ]);
    await sleep(350);
    v = await reg.view();
    expect(v.subscriptions.map((s) => s.learner)).toEqual([0x10002]);
    expect(await reg.unsubscribe(0x10002)).toBe(true);
    expect(await reg.unsubscribe(0x10002)).toBe(false);
    expect((await reg.view()).subscriptions).toEqual([]);
  });

  it('a watcher in another instance receives change notifications, expiries included', async () => {
    const writer = registry();
    const watcher = registry({ sweepMs: 50 });
    const events: RegistryEvent[] = [];
    const stop = watcher.watch((e) => events.push(e));
    await until(() => events.some((e) => e.kind === 'registry-up'), 5000, 'registry-up');
    await writer.load(CLUSTER);
    await writer.registerNode(1, { host: '127.0.0.1', port: 7001 }, 150);
    await writer.acquireLease(0, 2, 65538, 150);
    await writer.subscribe(0x10005, [0, 1], 150);
    await writer.unsubscribe(0x10005);
    await writer.subscribe(0x10006, [1], 150);
    const has = (pred: (e: RegistryEvent) => boolean): boolean => events.some(pred);
    await until(
      () =>
        has((e) => e.kind === 'node-expired' && e.node === 1) &&
        has((e) => e.kind === 'lease-changed' && e.reason === 'expired' && e.ring === 0) &&
        has((e) => e.kind === 'subscription-changed' && e.reason === 'expired' && e.learner === 0x10006),
      5000,
      'expiry events',
    );
    expect(events).toContainEqual({ kind: 'cluster-loaded', nodes: 3, rings: 2 });
    expect(events).toContainEqual({ kind: 'node-registered', node: 1, host: '127.0.0.1', port: 7001 });
    expect(events).toContainEqual({ kind: 'lease-changed', ring: 0, holder: 2, ballot: 65538, reason: 'acquired' });
    expect(events).toContainEqual({ kind: 'subscription-changed', learner: 0x10005, rings: [0, 1], reason: 'subscribed' });
    expect(events).toContainEqual({ kind: 'subscription-changed', learner: 0x10005, rings: null, reason: 'unsubscribed' });
    // Each expiry is announced once although two registries could sweep.
    expect(events.filter((e) => e.kind === 'node-expired' && e.node === 1)).toHaveLength(1);
    // A listener that throws does not stop the others; after unsubscribing nothing more arrives.
    const second: RegistryEvent[] = [];
    const stopBad = watcher.watch(() => {
      throw new Error('listener bug');
    });
    const stop2 = watcher.watch((e) => second.push(e));
    await writer.registerNode(2, { host: '127.0.0.1', port: 7002 }, 5000);
    await until(() => second.some((e) => e.kind === 'node-registered'), 5000, 'node-registered on the second listener');
    stop();
    stopBad();
    const n = events.length;
    await writer.registerNode(3, { host: '127.0.0.1', port: 7003 }, 5000);
    await until(() => second.some((e) => e.kind === 'node-registered' && e.node === 3), 5000, 'second listener');
    expect(events.length).toBe(n);
    stop2();
  });
});

describe('RedisRegistry when Redis goes away', () => {
  let own: RedisServer | undefined;
  afterEach(async () => {
    await own?.stop();
    own = undefined;
  });

  it('rejects with ERR_RINGCAST_REGISTRY within the timeout, tells watchers, and recovers on restart', async () => {
    own = await startRedisServer();
    const reg = registry({ url: own.url, timeoutMs: 300 });
    const watcher = registry({ url: own.url, timeoutMs: 300, sweepMs: 50 });
    const events: RegistryEvent[] = [];
    watcher.watch((e) => events.push(e));
    await until(() => events.some((e) => e.kind === 'registry-up'), 5000, 'registry-up');
    await reg.load(CLUSTER);
    expect(await reg.acquireLease(0, 2, 65538, 60_000)).toBe(true);

    await own.stop();
    expect(own.pid()).toBeUndefined();
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['view', () => reg.view()],
      ['acquireLease', () => reg.acquireLease(0, 2, 65538, 1000)],
      ['renewLease', () => reg.renewLease(0, 2, 1000)],
      ['leaseOf', () => reg.leaseOf(0)],
      ['registerNode', () => reg.registerNode(1, { host: '127.0.0.1', port: 1 }, 1000)],
      ['subscribe', () => reg.subscribe(0x10001, [0], 1000)],
      ['load', () => reg.load(CLUSTER)],
    ];
    for (const [name, call] of calls) {
      const t0 = Date.now();
      const err = await call().then(
        () => null,
        (e: unknown) => e,
      );
      const took = Date.now() - t0;
      expect(err, name).toBeInstanceOf(RegistryUnavailableError);
      expect((err as RegistryUnavailableError).code).toBe('ERR_RINGCAST_REGISTRY');
      expect(took, `${name} took ${took} ms`).toBeLessThan(300 + 250);
    }
    // A per-call timeout overrides the default.
    const t0 = Date.now();
    await expect(reg.view({ timeoutMs: 50 })).rejects.toMatchObject({ code: 'ERR_RINGCAST_REGISTRY' });
    expect(Date.now() - t0).toBeLessThan(50 + 200);
    await until(() => events.some((e) => e.kind === 'registry-down'), 3000, 'registry-down');
    const down = events.findIndex((e) => e.kind === 'registry-down');
    expect((events[down] as { error: string }).error.length).toBeGreaterThan(0);

    await own.start();
    await until(() => events.slice(down).some((e) => e.kind === 'registry-up'), 10_000, 'registry-up after the restart');
    // The restarted server lost everything (no persistence): the view is empty, and calls work again.
    await until(async () => (await reg.view().then(() => true, () => false)), 5000, 'calls to work again');
    expect((await reg.view()).loaded).toBe(false);
    expect(await reg.load(CLUSTER)).toEqual({ changed: true });
    expect(await reg.acquireLease(0, 3, 65539, 1000)).toBe(true);
    await until(() => events.some((e) => e.kind === 'lease-changed' && e.holder === 3), 5000, 'events after the restart');
  });

  it('a registry pointed at nothing rejects in time and closes cleanly', async () => {
    const reg = registry({ url: 'redis://127.0.0.1:1', timeoutMs: 200 });
    const events: RegistryEvent[] = [];
    reg.watch((e) => events.push(e));
    const t0 = Date.now();
    await expect(reg.leaseOf(0)).rejects.toBeInstanceOf(RegistryUnavailableError);
    expect(Date.now() - t0).toBeLessThan(450);
    await until(() => events.some((e) => e.kind === 'registry-down'), 3000, 'registry-down');
    await reg.close();
    await expect(reg.view()).rejects.toThrow(/closed/);
  });
});

describe('StaticRegistry', () => {
  it('serves the cluster file; the configured coordinator always holds the lease', async () => {
    const reg = new StaticRegistry(CLUSTER, { sweepMs: 20 });
    open.push(reg);
    const v = await reg.view();
    expect(v.loaded).toBe(true);
    expect(v.rings.map((r) => [r.id, r.ring, r.spares])).toEqual([
      [0, [1, 2], [3]],
      [1, [1, 3], [2]],
    ]);
    expect(v.groups).toEqual({ g0: 0, g1: 1 });
    expect(v.leases).toEqual([
      { ring: 0, holder: 2, ballot: 0, expiresAt: null },
      { ring: 1, holder: 3, ballot: 0, expiresAt: null },
    ]);
    expect(await reg.acquireLease(0, 2, 5, 100)).toBe(true);
    expect(await reg.acquireLease(0, 3, 1e9, 100)).toBe(false);
    expect(await reg.renewLease(1, 3, 100)).toBe(true);
    expect(await reg.leaseOf(7)).toBeNull();
    expect(await reg.load(CLUSTER)).toEqual({ changed: false });
    const events: RegistryEvent[] = [];
    const stop = reg.watch((e) => events.push(e));
    await reg.registerNode(4, { host: '127.0.0.1', port: 7004 }, 50);
    await reg.subscribe(0x10001, [1], 50);
    expect((await reg.view()).nodes.find((n) => n.id === 4)).toMatchObject({ live: true, configured: false });
    await until(() => events.some((e) => e.kind === 'node-expired') && events.some((e) => e.kind === 'subscription-changed' && e.reason === 'expired'), 2000, 'static expiries');
    expect((await reg.view()).subscriptions).toEqual([]);
    await expect(reg.subscribe(0x10001, [1], 1)).rejects.toMatchObject({ field: 'ttlMs' });
    stop();
  });
});

describe('ringcast registry CLI', () => {
  it('load writes the cluster file to Redis and show prints the live view; errors name the flag', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ringcast-registry-'));
    const file = join(dir, 'cluster.json');
    writeFileSync(file, JSON.stringify(RAW));
    const prefix = `cli${prefixSeq}:`;
    try {
      const load = spawnRingcast(['registry', 'load', '--cluster', file, '--redis', server.url, '--prefix', prefix]);
      try {
        const line = await load.waitFor('loaded', 15_000);
        expect(line).toMatchObject({ event: 'loaded', changed: true, nodes: 3, rings: 2 });
        expect(await load.exited).toBe(0);
      } finally {
        await stopProcess(load);
      }
      const reg = registry({ prefix });
      await reg.registerNode(1, { host: '127.0.0.1', port: 7501 }, 60_000);
      const show = spawnRingcast(['registry', 'show', '--redis', server.url, '--prefix', prefix]);
      try {
        expect(await show.exited).toBe(0);
        expect(show.lines).toHaveLength(1);
        const view = show.lines[0] as { loaded: boolean; rings: unknown[]; nodes: Array<{ id: number; port: number; live: boolean }> };
        expect(view.loaded).toBe(true);
        expect(view.rings).toHaveLength(2);
        expect(view.nodes.find((n) => n.id === 1)).toMatchObject({ port: 7501, live: true });
      } finally {
        await stopProcess(show);
      }
      const noFlag = spawnRingcast(['registry', 'show']);
      try {
        expect(await noFlag.exited).toBe(1);
        expect(noFlag.stderr()).toContain('[ERR_RINGCAST_CONFIG] --redis');
      } finally {
        await stopProcess(noFlag);
      }
      const down = spawnRingcast(['registry', 'show', '--redis', 'redis://127.0.0.1:1', '--timeout', '300']);
      try {
        expect(await down.exited).toBe(1);
        expect(down.stderr()).toMatch(/\[ERR_RINGCAST_REGISTRY\] registry show \(--redis redis:\/\/127\.0\.0\.1:1\)/);
      } finally {
        await stopProcess(down);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
