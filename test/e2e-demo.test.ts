import { afterAll, describe, expect, it } from 'vitest';
import { spawnRingcast, stopProcess, type Spawned } from '@ringcast/cli';
import { scrape, waitUntil } from './helpers.js';

// The README's first command: `npx ringcast demo` on the embedded default.
describe('ringcast demo (the main job)', () => {
  let demo: Spawned | undefined;
  afterAll(async () => {
    if (demo) await stopProcess(demo);
  });

  it('starts rings and two replicas, runs a key-value load with /metrics reachable, and ends with a summary', async () => {
    demo = spawnRingcast(['demo', '--seconds', '8']);
    const ready = await demo.waitFor('ready', 60_000);
    // While it runs: client metrics from the demo process, worker metrics from each replica (polled: on a
    // busy machine the first replies can take a while after the ready line).
    const port = Number(ready.metricsPort);
    const running = async (p: number, name: string): Promise<boolean> => waitUntil(async () => (await scrape(p, name)) > 0, 8000, 100);
    expect(await running(port, 'ringcast_client_commands_total')).toBe(true);
    expect(await running(port, 'ringcast_client_reply_latency_seconds_count')).toBe(true);
    for (const p of ready.replicaMetricsPorts as number[]) expect(await running(p, 'ringcast_psmr_commands_total')).toBe(true);
    const s = await demo.waitFor('summary', 60_000);
    expect(await demo.exited).toBe(0);
    expect(s.mode).toBe('psmr');
    expect(s.commands as number).toBeGreaterThan(1000);
    expect(s.commandsPerSecond as number).toBeGreaterThan(0);
    expect((s.latencyMs as { p99: number }).p99).toBeGreaterThan(0);
    expect(s.gallShare as number).toBeGreaterThan(0.05);
    expect(s.gallShare as number).toBeLessThan(0.15);
    expect(s.replicasEqual).toBe(true);
    expect(demo.stderr()).toMatch(/replied [\d,]+ commands/);
  });
});
