import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkKvHistory } from '@ringcast/psmr-proxy';
import { launchLocalPsmr, runKvLoad, spawnRingcast, stopProcess, type LocalPsmr, type Spawned } from '@ringcast/cli';
import { lowestTrimmed } from '../packages/cli/src/bench-multiring.js';
import { scrape, waitUntil } from './helpers.js';

// The replicated state survives losing every replica: two psmr replicas write durable checkpoints and hold
// the acceptor logs at them; under key-value load both are killed with SIGKILL, the acceptors trim past
// instance 0 (a small logRetain), and both come back from their own checkpoint directories.

// RINGCAST_TEST_MAX_HOLDS=0 runs the scenario with every hold refused (the behaviour before holds): the
// restart then fails with ERR_RINGCAST_TRIMMED.
const HOLDS = process.env.RINGCAST_TEST_MAX_HOLDS ? { maxHolds: Number(process.env.RINGCAST_TEST_MAX_HOLDS) } : {};

async function digests(port: number): Promise<string> {
  const s = (await (await fetch(`http://127.0.0.1:${port}/state`)).json()) as { workers: Array<{ worker: number; executed: number; digest: string }> };
  return JSON.stringify(s.workers.map((w) => [w.worker, w.executed, w.digest]));
}

describe('durable replica checkpoints, real processes', () => {
  let local: LocalPsmr | undefined;
  const replicas: Spawned[] = [];
  const dirs: string[] = [];
  afterAll(async () => {
    await Promise.all(replicas.map((r) => stopProcess(r)));
    await local?.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('every replica killed with SIGKILL after the acceptors trimmed: both resume from their directories, converge, and the history is linearizable', async () => {
    // logRetain 64: without holds the acceptors keep only 64 instances below what the replicas delivered,
    // fewer than the instances since their older checkpoint under this load (with maxHolds 0 the restart
    // fails with ERR_RINGCAST_TRIMMED); enough for two fresh replicas to start a little apart. A dead
    // replica's registration expires after learnerTimeoutMs (600 ms here).
    local = await launchLocalPsmr({ mode: 'psmr', workers: 2, replicas: 0, settings: { logRetain: 64, skipIntervalMs: 1000, learnerTimeoutMs: 600, ...HOLDS }, ringArgs: { metrics: true } });
    const nodePorts = await Promise.all(local.ring.nodes.map(async (n) => Number((await n.waitFor('ready')).metricsPort)));
    const rings = [0, 1, 2];
    for (let i = 0; i < 2; i++) dirs.push(mkdtempSync(join(tmpdir(), `ringcast-ckpt-${i}-`)));
    const start = (i: number): Spawned => {
      const r = spawnRingcast(['replica', '--cluster', local!.clusterPath, '--mode', 'psmr', '--workers', '2', '--id', `replica-${i}`, '--reply-tag', String(i + 1), '--metrics-port', '0', '--checkpoint-dir', dirs[i]!, '--checkpoint-every', '0.5s']);
      replicas.push(r);
      return r;
    };
    const first = [start(0), start(1)];
    const firstPorts = await Promise.all(first.map(async (r) => Number((await r.waitFor('ready', 30_000)).metricsPort)));
    // A warm-up load (its own keys) drives the rings until both replicas wrote three checkpoints each (their
    // holds are at the older of the two kept) and every acceptor of every ring trimmed past instance 0. Waits
    // are generous: on a loaded 2-core machine every step takes several times as long as unloaded (17 s).
    const common = { cluster: local.cluster, mode: 'psmr' as const, workers: 2, clients: 2, window: 4, seconds: 90, maxCommands: 1_000_000, gallShare: 0.2, keys: 30, retryMs: 300, deadlineMs: 60_000 };
    const stopWarm = new AbortController();
    const warm = runKvLoad({ ...common, keyPrefix: 'w', signal: stopWarm.signal, seed: 3 });
    const written = async (): Promise<boolean> => (await Promise.all(firstPorts.map((p) => scrape(p, 'ringcast_psmr_checkpoints_written_total')))).every((n) => n >= 3);
    expect(await waitUntil(async () => (await written()) && (await lowestTrimmed(nodePorts, rings)) > 0, 30_000, 100), 'three checkpoints each and every log trimmed past 0').toBe(true);
    expect(await scrape(firstPorts[0]!, 'ringcast_psmr_retention_hold_failures_total'), 'hold failures').toBe(0);
    // One client history across the whole outage: commands wait for the replicas to come back. It ends once
    // the restarted replicas have executed a few hundred more commands.
    const stopLoad = new AbortController();
    const load = runKvLoad({ ...common, ops: 'all', history: true, signal: stopLoad.signal, seed: 11 });
    stopWarm.abort();
    const w = await warm;
    expect([w.errors, w.noReply]).toEqual([0, 0]);
    const executedBy = async (ports: number[]): Promise<number> => (await Promise.all(ports.map((p) => scrape(p, 'ringcast_psmr_commands_total')))).reduce((a, b) => a + b, 0);
    const before = await executedBy(firstPorts);
    expect(await waitUntil(async () => (await executedBy(firstPorts)) >= before + 600, 30_000, 20), 'the history load runs').toBe(true);
    const killedAt = performance.now();
    for (const r of first) process.kill(r.child.pid!, 'SIGKILL');
    await Promise.all(first.map((r) => r.exited));
    // The replicas' registrations expire; the holds stay.
    expect(await waitUntil(async () => (await Promise.all(nodePorts.map((p) => scrape(p, 'ringcast_learners')))).every((n) => n === 0), 15_000, 50), 'learner registrations expired').toBe(true);
    const holdsBefore = (await Promise.all(nodePorts.map((p) => scrape(p, 'ringcast_retention_holds')))).reduce((a, b) => a + b, 0);
    expect(holdsBefore, 'holds in force').toBe(6); // each of 3 rings holds for each of 2 replicas
    // Two kept (three if the kill came between a rename and the removal of the oldest).
    for (const d of dirs) expect(readdirSync(d).filter((f) => f.endsWith('.rckp')).length).toBeGreaterThanOrEqual(2);
    const restartAt = performance.now();
    const second = [start(0), start(1)];
    const ready = await Promise.all(second.map((r) => r.waitFor('ready', 30_000)));
    for (let i = 0; i < 2; i++) {
      expect(String(ready[i]!.resumedFile)).toContain(dirs[i]!);
      expect(ready[i]!.resumedRound as number).toBeGreaterThan(0);
    }
    const backAt = performance.now();
    const ports = ready.map((x) => Number(x.metricsPort));
    const atReady = await executedBy(ports);
    expect(await waitUntil(async () => (await executedBy(ports)) >= atReady + 400, 30_000, 100), 'restarted replicas execute').toBe(true);
    stopLoad.abort();
    const r = await load;
    expect(r.errors, 'error replies').toBe(0);
    expect(r.noReply, 'commands without a reply').toBe(0);
    // The history spans the outage: answered before the kill, issued while no replica was up and answered
    // once they were back, and issued after.
    const h = r.history!;
    expect(h.filter((op) => op.ret < killedAt).length).toBeGreaterThan(50);
    expect(h.filter((op) => op.call < restartAt && op.ret > restartAt && op.ret < Infinity).length).toBeGreaterThan(0);
    expect(h.filter((op) => op.call > backAt).length).toBeGreaterThan(20);
    expect(await waitUntil(async () => (await digests(ports[0]!)) === (await digests(ports[1]!)), 30_000, 100), 'equal digests').toBe(true);
    const check = checkKvHistory(h);
    expect(check.ok, (check as { reason?: string }).reason).toBe(true);
    const broken = await Promise.all(nodePorts.map((p) => scrape(p, 'ringcast_retention_holds_broken')));
    expect(broken.reduce((a, b) => a + b, 0), 'holds broken').toBe(0);
    for (const s of second) expect(s.stderr()).not.toMatch(/ERR_/);
  });
});
