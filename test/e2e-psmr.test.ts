import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadCluster } from '@ringcast/ring-paxos';
import {
  checkKvHistory,
  createClientProxy,
  createKvClient,
  kvService,
  type KvCommand,
  type KvReply,
  type Service,
} from '@ringcast/psmr-proxy';
import {
  launchLocalPsmr,
  runKvLoad,
  spawnRingcast,
  stopProcess,
  type LocalPsmr,
  type Spawned,
} from '@ringcast/cli';
import { scrape, waitUntil } from './helpers.js';

// P-SMR with real processes on 127.0.0.1: rings g0, g1 and gall over three acceptor processes, two
// replica processes with two worker threads each, and key-value clients in this process.

interface WorkerState {
  worker: number;
  executed: number;
  digest: string;
}
async function states(port: number): Promise<WorkerState[]> {
  return ((await (await fetch(`http://127.0.0.1:${port}/state`)).json()) as { workers: WorkerState[] }).workers;
}
/** Wait until both replicas report the same per-worker state (they have executed the same commands). */
async function converged(ports: number[], timeoutMs = 15000): Promise<WorkerState[][]> {
  let last: WorkerState[][] = [];
  await waitUntil(async () => {
    last = await Promise.all(ports.map(states));
    return last.every((s) => JSON.stringify(s) === JSON.stringify(last[0]));
  }, timeoutMs, 100);
  return last;
}

describe('P-SMR key-value store, real processes', () => {
  let local: LocalPsmr | undefined;
  afterAll(async () => {
    await local?.stop();
  });

  it('concurrent clients, a random mix of single- and multi-key commands: replicas end equal and the history is linearizable', async () => {
    local = await launchLocalPsmr({ mode: 'psmr', workers: 2 });
    const r = await runKvLoad({
      cluster: local.cluster,
      mode: 'psmr',
      workers: 2,
      clients: 4,
      window: 6,
      seconds: 4,
      maxCommands: 12_000,
      gallShare: 0.25,
      keys: 40,
      ops: 'all',
      history: true,
      seed: 7,
      replyFrom: 'one',
    });
    expect(r.noReply).toBe(0);
    expect(r.errors).toBe(0);
    expect(r.commands).toBeGreaterThan(500);
    expect(r.gallCommands).toBeGreaterThan(50);
    // replyFrom 'one': each client asks one replica to answer (the first that answered; picked again every
    // second, so a few batches go to both): most commands get one reply, the other replica withholds its own.
    expect(r.duplicateReplies).toBeLessThan(r.commands * 0.3);
    // The load reports how late its own event loop ran, in order.
    expect(r.eventLoopDelayMs.p50).toBeGreaterThan(0);
    expect(r.eventLoopDelayMs.p99).toBeGreaterThanOrEqual(r.eventLoopDelayMs.p50);
    expect(r.eventLoopDelayMs.max).toBeGreaterThanOrEqual(r.eventLoopDelayMs.p99);
    const [a, b] = await converged(local.metricsPorts);
    expect(a).toEqual(b);
    expect(a!.map((w) => w.executed).reduce((x, y) => x + y, 0)).toBeGreaterThanOrEqual(r.commands);
    const check = checkKvHistory(r.history!);
    expect(check.ok, (check as { reason?: string }).reason).toBe(true);
    expect(check.keys).toBeGreaterThan(10);
    // Metrics: every worker's command counts and the barrier, through one /metrics per replica.
    const port = local.metricsPorts[0]!;
    expect(await scrape(port, 'ringcast_psmr_commands_total', 'worker="0"')).toBeGreaterThan(0);
    expect(await scrape(port, 'ringcast_psmr_commands_total', 'worker="1"')).toBeGreaterThan(0);
    expect(await scrape(port, 'ringcast_psmr_barrier_rounds_total', 'worker="1"')).toBeGreaterThan(0);
    expect(await scrape(port, 'ringcast_merge_stall_seconds_total')).toBeGreaterThanOrEqual(0);
    // Merge hold: every instance with commands that worker 1 delivered went through the histogram.
    expect(await scrape(port, 'ringcast_merge_hold_seconds_count', 'worker="1"')).toBeGreaterThan(0);
    const withheld = await Promise.all(local.metricsPorts.map((p) => scrape(p, 'ringcast_psmr_replies_left_to_others_total')));
    expect(withheld[0]! + withheld[1]!).toBeGreaterThan(r.commands * 0.5);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(text.includes('ringcast_psmr_barrier_wait_seconds_total')).toBe(true);
    expect(text).toMatch(/ringcast_psmr_event_loop_delay_seconds\{quantile="0.99",replica="replica-0",worker="1"\} [0-9.e-]+/);
  });

  it('a malformed or oversized command gets a typed error reply from the replicas and changes nothing', async () => {
    // A client whose encoder bypasses the client-side checks, so the replicas see the bad bytes.
    const raw: Service<KvCommand, KvReply, unknown> = {
      ...(kvService as unknown as Service<KvCommand, KvReply, unknown>),
      writeCommand(w, c) {
        const x = c as unknown as { raw?: number[] };
        if (x.raw) w.bytes(Uint8Array.from(x.raw));
        else kvService.writeCommand(w, c);
      },
    };
    const client = await createClientProxy(local!.cluster, { service: raw, mode: 'psmr', workers: 2, replyFrom: 'all' });
    const kv = await createKvClient(local!.cluster, { mode: 'psmr', workers: 2 });
    try {
      const before = ((await kv.proxy.submit({ op: 'size' })) as { size: number }).size;
      const bad = async (bytes: number[], route: KvCommand): Promise<string> => {
        try {
          await client.submit({ ...route, raw: bytes } as unknown as KvCommand);
          return 'no error';
        } catch (e) {
          return (e as { code: string }).code;
        }
      };
      // 'size' routes to gall, so every worker sees these; the bytes say otherwise.
      expect(await bad([99], { op: 'size' })).toBe('ERR_KV_UNKNOWN_OP');
      expect(await bad([6, 1, 0, 1, 0, 0x61, 0xff, 0xff, 0, 0, 0], { op: 'size' })).toBe('ERR_KV_VALUE_TOO_LARGE');
      expect(await bad([6, 1, 0], { op: 'size' })).toBe('ERR_PSMR_MALFORMED_COMMAND');
      // A single-key command sent to gall is refused: C-G decides where a command runs.
      expect(await bad([2, 1, 0, 0x61, 1, 0, 0, 0, 0, 0x62], { op: 'size' })).toBe('ERR_PSMR_WRONG_GROUP');
      await expect(kv.put('k'.repeat(500), 'v')).rejects.toMatchObject({ code: 'ERR_KV_KEY_TOO_LARGE' });
      expect(((await kv.proxy.submit({ op: 'size' })) as { size: number }).size).toBe(before);
      // replyFrom 'all': both replicas answered every one of those commands (the second reply is dropped).
      expect(client.replier).toBe(0);
      expect(await waitUntil(() => client.stats.duplicateReplies >= 4, 5000)).toBe(true);
    } finally {
      await client.stop();
      await kv.stop();
    }
  });

  it('ringcast kv runs one command from the shell and prints the reply', async () => {
    const run = async (...args: string[]): Promise<{ code: number | null; out: Record<string, unknown> | undefined; err: string }> => {
      const p = spawnRingcast(['kv', '--cluster', local!.clusterPath, '--mode', 'psmr', '--workers', '2', ...args]);
      const code = await p.exited;
      return { code, out: p.lines[0] as Record<string, unknown> | undefined, err: p.stderr() };
    };
    expect((await run('put', 'shell-key', 'héllo')).out).toEqual({ ok: true });
    expect((await run('get', 'shell-key')).out).toEqual({ value: 'héllo' });
    expect((await run('cas', 'shell-key', 'héllo', 'x')).out).toEqual({ swapped: true });
    expect((await run('mget', 'shell-key', 'nope')).out).toEqual({ values: ['x', null] });
    const bad = await run('frob', 'a');
    expect(bad.code).not.toBe(0);
    expect(bad.err).toMatch(/unknown operation 'frob'/);
    const big = await run('put', 'k'.repeat(200), 'v');
    expect(big.code).not.toBe(0);
    expect(big.err).toMatch(/ERR_KV_KEY_TOO_LARGE/);
  });

  it('kill one replica mid-load: clients keep getting replies from the other and nothing acknowledged is lost', async () => {
    // Two clients: one with replyFrom 'one', the harder case (it asks one replica to answer, and this test
    // kills that one), and one with the default 'all'.
    const kv = await createKvClient(local!.cluster, { mode: 'psmr', workers: 2, retryMs: 500, deadlineMs: 10_000, replyFrom: 'one' });
    const kvAll = await createKvClient(local!.cluster, { mode: 'psmr', workers: 2, retryMs: 500, deadlineMs: 10_000 });
    const acked = new Map<string, string>();
    let n = 0;
    let failed = 0;
    const t0 = Date.now();
    let killedAt = 0;
    const lane = async (l: number): Promise<void> => {
      while (Date.now() - t0 < 4000 && n < 40_000) {
        const k = `u${l}.${n++}`;
        const v = `v${k}`;
        try {
          await (l % 2 === 0 ? kv : kvAll).put(k, v);
          acked.set(k, v);
        } catch {
          failed++;
        }
      }
    };
    let victim = -1;
    const killer = (async () => {
      await new Promise((r) => setTimeout(r, 1500));
      // Kill the replica this client asks to answer (replica i has reply tag i + 1): its commands in flight
      // get no reply, and only the retry, which asks every replica, brings their answers.
      await waitUntil(() => kv.proxy.replier !== 0, 3000, 1);
      victim = kv.proxy.replier - 1;
      const before = acked.size;
      await local!.killReplica(victim);
      killedAt = before;
    })();
    await Promise.all([...Array.from({ length: 32 }, (_, l) => lane(l)), killer]);
    expect(victim === 0 || victim === 1).toBe(true);
    expect(local!.replicas[victim]!.child.signalCode).toBe('SIGKILL');
    expect(kv.proxy.stats.retries).toBeGreaterThan(0);
    // The survivor answers now (or, right after a retry, everyone is asked until it answers).
    expect([0, 2 - victim]).toContain(kv.proxy.replier);
    expect(failed).toBe(0);
    expect(killedAt).toBeGreaterThan(100);
    expect(acked.size).toBeGreaterThan(killedAt + 100); // replies kept coming after the kill
    // Every acknowledged put is there, read back through the surviving replica.
    const keys = [...acked.keys()];
    const missing: string[] = [];
    for (let i = 0; i < keys.length; i += 32) {
      const part = keys.slice(i, i + 32);
      const vals = await kv.mget(part);
      part.forEach((k, j) => {
        if (vals[j] !== acked.get(k)) missing.push(k);
      });
    }
    expect(missing).toEqual([]);
    expect(kvAll.proxy.replier).toBe(0);
    await kv.stop();
    await kvAll.stop();
  });

  it('a replica that replaces the killed one starts from the survivor\'s checkpoint under load and ends equal to it', async () => {
    const dead = local!.replicas.findIndex((r) => r.child.signalCode === 'SIGKILL');
    expect(dead).toBeGreaterThanOrEqual(0);
    const survivor = local!.metricsPorts[1 - dead]!;
    const load = runKvLoad({ cluster: local!.cluster, mode: 'psmr', workers: 2, clients: 4, window: 6, seconds: 4, maxCommands: 12_000, gallShare: 0.25, seed: 5 });
    await new Promise((r) => setTimeout(r, 1000));
    const fresh = spawnRingcast(['replica', '--cluster', local!.clusterPath, '--mode', 'psmr', '--workers', '2', '--id', 'replica-new', '--reply-tag', '9', '--metrics-port', '0', '--from-replica', `http://127.0.0.1:${survivor}`]);
    local!.replicas.push(fresh); // stopped with the others
    const ready = await fresh.waitFor('ready', 30_000);
    expect(ready.resumedRound as number).toBeGreaterThan(0);
    const r = await load;
    expect(r.errors).toBe(0);
    expect(r.noReply).toBe(0);
    const port = Number(ready.metricsPort);
    // Executed counts and state digests (service, own and g_all session tables) agree per worker.
    const view = async (p: number): Promise<string> => JSON.stringify((await states(p)).map((w) => [w.worker, w.executed, w.digest]));
    expect(await waitUntil(async () => (await view(port)) === (await view(survivor)), 15_000, 100)).toBe(true);
    // It did not replay the rings from their first instance: it delivered less than the survivor did.
    const delivered = async (p: number): Promise<number> => ((await (await fetch(`http://127.0.0.1:${p}/state`)).json()) as { workers: Array<{ delivered: number }> }).workers.reduce((a, w) => a + w.delivered, 0);
    expect(await delivered(port)).toBeLessThan(await delivered(survivor));
    // A checkpoint from the newcomer itself works too (it can be the survivor next time).
    const again = await fetch(`http://127.0.0.1:${port}/checkpoint`);
    expect(again.status).toBe(200);
    expect((await again.arrayBuffer()).byteLength).toBeGreaterThan(100);
  });

  it('a replica refuses a checkpoint of another shape, naming the flag', async () => {
    const survivor = local!.metricsPorts[local!.replicas.findIndex((r) => r.child.signalCode === null && r.child.exitCode === null)]!;
    const wrong = spawnRingcast(['replica', '--cluster', local!.clusterPath, '--mode', 'smr', '--id', 'replica-wrong', '--from-replica', `http://127.0.0.1:${survivor}`]);
    local!.replicas.push(wrong);
    expect(await wrong.exited).not.toBe(0);
    expect(wrong.stderr()).toMatch(/resume.*psmr replica with 2 worker/);
    const nobody = spawnRingcast(['replica', '--cluster', local!.clusterPath, '--mode', 'psmr', '--workers', '2', '--from-replica', 'http://127.0.0.1:1']);
    local!.replicas.push(nobody);
    expect(await nobody.exited).not.toBe(0);
    expect(nobody.stderr()).toMatch(/--from-replica.*cannot reach/);
  });
});

describe('P-SMR retries', () => {
  let local: LocalPsmr | undefined;
  let late: Spawned[] = [];
  afterAll(async () => {
    await Promise.all(late.map((s) => stopProcess(s)));
    await local?.stop();
  });

  it('a command retried with the same id runs once; with no replica at all a command ends in NoReplyError', async () => {
    local = await launchLocalPsmr({ mode: 'psmr', workers: 2, replicas: 0 });
    const cluster = loadCluster(local.clusterPath);
    const lonely = await createKvClient(cluster, { mode: 'psmr', workers: 2, retryMs: 100, deadlineMs: 500 });
    await expect(lonely.get('x')).rejects.toMatchObject({ code: 'ERR_RINGCAST_NO_REPLY' });
    expect(lonely.proxy.stats.retries).toBeGreaterThanOrEqual(3);
    await lonely.stop();

    // Commands sent (and retried) before any replica runs are ordered several times; replicas run each once.
    const kv = await createKvClient(cluster, { mode: 'psmr', workers: 2, retryMs: 150, deadlineMs: 60_000 }); // past the 30 s the late replicas may take to start
    const puts = Array.from({ length: 40 }, (_, i) => kv.put(`r${i}`, `once-${i}`));
    const mputs = Array.from({ length: 10 }, (_, i) => kv.mput([[`m${i}`, 'a'], [`n${i}`, 'b']]));
    await new Promise((r) => setTimeout(r, 600));
    late = [0, 1].map((i) => spawnRingcast(['replica', '--cluster', local!.clusterPath, '--mode', 'psmr', '--workers', '2', '--id', `late-${i}`, '--metrics-port', '0']));
    const ports = (await Promise.all(late.map((s) => s.waitFor('ready', 30_000)))).map((l) => Number(l.metricsPort));
    await Promise.all([...puts, ...mputs]);
    expect(kv.proxy.stats.retries).toBeGreaterThan(0);
    const [a, b] = await converged(ports);
    expect(a).toEqual(b);
    // The lonely get (sent 5 times before its deadline), 40 puts (g0 or g1) and 10 mputs (gall, counted by
    // both workers): each executed once.
    const own = a!.reduce((s, w) => s + w.executed, 0);
    expect(own).toBe(1 + 40 + 10 * 2);
    expect(await scrape(ports[0]!, 'ringcast_psmr_duplicate_commands_total')).toBeGreaterThan(0);
    expect(await kv.get('r7')).toBe('once-7');
    await kv.stop();
  });
});

describe('P-SMR checkpoints of a one-worker replica', () => {
  let local: LocalPsmr | undefined;
  afterAll(async () => {
    await local?.stop();
  });

  it('an smr replica on a quiet ring serves a checkpoint (to holders of the cluster secret), and a replica started from it answers the same', async () => {
    local = await launchLocalPsmr({ mode: 'smr', workers: 1, replicas: 1, ringArgs: { secret: 'checkpoint-test-secret-0123' } });
    const kv = await createKvClient(local.cluster, { mode: 'smr', workers: 1, deadlineMs: 10_000 });
    try {
      for (let i = 0; i < 30; i++) await kv.put(`q${i}`, `v${i}`);
      // Nothing more is proposed: the ring is quiet, its learner unpaced (no skips), and the checkpoint is
      // taken at the worker's own round.
      await new Promise((r) => setTimeout(r, 300));
      // The cluster has a secret: no token, no checkpoint.
      const anon = await fetch(`http://127.0.0.1:${local.metricsPorts[0]}/checkpoint`);
      expect(anon.status).toBe(401);
      // How long a ringcast process takes to start and exit on this machine now (seconds when it is busy).
      const s0 = Date.now();
      expect(await spawnRingcast(['checkpoint', '--help']).exited).toBe(0);
      const startMs = Date.now() - s0;
      const t0 = Date.now();
      const dir = mkdtempSync(join(tmpdir(), 'ringcast-ckpt-'));
      const file = join(dir, 'ckpt.bin');
      const save = spawnRingcast(['checkpoint', '--cluster', local.clusterPath, '--from', `http://127.0.0.1:${local.metricsPorts[0]}`, '--out', file]);
      local.replicas.push(save);
      const saved = await save.waitFor('checkpoint', 30_000);
      expect(await save.exited).toBe(0);
      expect(Date.now() - t0).toBeLessThan(startMs + 7000); // a quiet ring's checkpoint does not wait for traffic
      expect(saved.bytes as number).toBeGreaterThan(100);
      expect(saved.mode).toBe('smr');
      const next = spawnRingcast(['replica', '--cluster', local.clusterPath, '--mode', 'smr', '--id', 'replica-from-file', '--reply-tag', '7', '--metrics-port', '0', '--from-replica', file]);
      local.replicas.push(next);
      const ready = await next.waitFor('ready', 30_000);
      expect(ready.resumedRound as number).toBeGreaterThanOrEqual(0);
      const port = Number(ready.metricsPort);
      for (let i = 30; i < 40; i++) await kv.put(`q${i}`, `v${i}`);
      const view = async (p: number): Promise<string> => JSON.stringify((await states(p)).map((w) => [w.worker, w.executed, w.digest]));
      expect(await waitUntil(async () => (await view(port)) === (await view(local!.metricsPorts[0]!)), 15_000, 100)).toBe(true);
      expect((await states(port))[0]!.executed).toBe(40);
      rmSync(dir, { recursive: true, force: true });
    } finally {
      await kv.stop();
    }
  });
});
