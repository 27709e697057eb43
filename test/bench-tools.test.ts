import { afterAll, describe, expect, it } from 'vitest';
import { spawnRingcast, type Spawned } from '@ringcast/cli';
import { stopAll } from './helpers.js';

// The baselines the benchmarks print next to their own numbers, with real processes on 127.0.0.1.
describe('benchmark baselines', () => {
  const procs: Spawned[] = [];
  afterAll(() => stopAll(procs));

  it('udp-ping times round trips through a udp-echo process at the asked rate', async () => {
    const echo = spawnRingcast(['bench', 'udp-echo']);
    procs.push(echo);
    const port = (await echo.waitFor('ready')).port as number;
    const ping = spawnRingcast(['bench', 'udp-ping', '--to', String(port), '--rate', '500', '--seconds', '1']);
    procs.push(ping);
    const r = await ping.waitFor('result', 20_000);
    // About 500 sent in 1 s (timer granularity loses a few at the end), nearly all answered on loopback.
    expect(r.sent as number).toBeGreaterThan(400);
    expect(r.sent as number).toBeLessThanOrEqual(500);
    expect(r.received as number).toBeGreaterThan((r.sent as number) * 0.9);
    expect(r.received as number).toBeLessThanOrEqual(r.sent as number);
    expect(r.p50 as number).toBeGreaterThan(0);
    expect(r.p99 as number).toBeGreaterThanOrEqual(r.p50 as number);
    expect(r.max as number).toBeGreaterThanOrEqual(r.p99 as number);
  });

  it('bench ring prints its line with the raw one-hop and the no-protocol skeleton baselines of the same run', async () => {
    const bench = spawnRingcast(['bench', 'ring', '--sizes', '2048', '--seconds', '1', '--warmup', '0']);
    procs.push(bench);
    expect(await bench.exited).toBe(0);
    const r = bench.lines.find((l) => (l as Record<string, unknown>).bench === 'ring') as Record<string, unknown>;
    expect(r).toBeDefined();
    expect(r.valueBytes).toBe(2048);
    expect(r.valuesPerSec as number).toBeGreaterThan(0);
    expect(r.rawUdpMBps as number).toBeGreaterThan(0);
    expect(r.skeletonMBps as number).toBeGreaterThan(0);
    // Both ratios are computed from the printed figures (not constants).
    expect(r.skeletonEfficiency).toBeCloseTo(((r.skeletonMBps as number) * (r.copies as number)) / (r.rawUdpMBps as number), 2);
    expect(r.ofSkeleton).toBeCloseTo((r.payloadMBps as number) / (r.skeletonMBps as number), 2);
  });

  it('bench multiring measures each layout after the acceptor logs reach their retention, ratios from its own points', async () => {
    const bench = spawnRingcast(['bench', 'multiring', '--rings', '2', '--seconds', '1', '--warmup', '0']);
    procs.push(bench);
    expect(await bench.exited).toBe(0);
    const rows = bench.lines.filter((l) => (l as Record<string, unknown>).bench === 'multiring') as Array<Record<string, number | string>>;
    expect(rows.map((r) => `${r.rings}/${r.learners}`)).toEqual(['1/all', '2/all', '2/disjoint']);
    const one = rows[0]!;
    for (const r of rows) {
      expect(r.payloadMBps as number).toBeGreaterThan(0);
      expect(r.oneRingMBps).toBe(one.payloadMBps);
      // The cost ratio is the one-ring CPU per MB over this line's (printed rounded to 4 digits).
      expect(r.costRatioToOneRing as number).toBeCloseTo((one.cpuSecondsPerMB as number) / (r.cpuSecondsPerMB as number), 1);
    }
    // Every point waited for the steady state: each diagnostics line says so and counts the window's faults.
    const diag = bench.stderr().split('\n').filter((l) => l.includes('diagnostics'));
    expect(diag).toHaveLength(4); // three layouts and the idle-ring point
    for (const d of diag) {
      const o = JSON.parse(d.slice(d.indexOf('{'))) as { steady: boolean; warmupSeconds: number; nodes: { acceptorPageFaults: number; trimmedAtWindow: number } };
      expect(o.steady).toBe(true);
      expect(o.nodes.trimmedAtWindow).toBeGreaterThan(0); // every loaded ring's log, on every node
      expect(o.warmupSeconds).toBeGreaterThan(1); // at least the 1 s settling time after the logs filled
      expect(o.nodes.acceptorPageFaults).toBeGreaterThanOrEqual(0);
    }
    expect(bench.lines.some((l) => (l as Record<string, unknown>).bench === 'multiring-idle')).toBe(true);
  }, 180_000);

  it('udp-ping with no echo behind the port reports nothing received, not a crash', async () => {
    const echo = spawnRingcast(['bench', 'udp-echo']);
    procs.push(echo);
    const port = (await echo.waitFor('ready')).port as number;
    echo.child.kill('SIGTERM');
    await echo.exited;
    const ping = spawnRingcast(['bench', 'udp-ping', '--to', String(port), '--rate', '200', '--seconds', '1']);
    procs.push(ping);
    const r = await ping.waitFor('result', 20_000);
    expect(r.sent as number).toBeGreaterThan(100);
    expect(r.received).toBe(0);
    expect(r.p99).toBeNull();
  });
});
