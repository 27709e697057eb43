import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { lowestTrimmed, metricSamples, metricValue, minorFaultsOf } from '../src/bench-multiring.js';

// The /metrics readers the multiring bench waits on, against prom-client-shaped text from a local server.
describe('bench metric readers', () => {
  const servers: Server[] = [];
  afterAll(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

  const serve = async (text: string): Promise<number> => {
    const s = createServer((_req, res) => res.end(text));
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return (s.address() as AddressInfo).port;
  };

  const nodeText = (node: number, trimmed: Record<number, number>): string =>
    [
      '# HELP ringcast_acceptor_trimmed_below Acceptor log trimmed below this instance',
      '# TYPE ringcast_acceptor_trimmed_below gauge',
      ...Object.entries(trimmed).map(([r, v]) => `ringcast_acceptor_trimmed_below{ring="${r}",node="${node}"} ${v}`),
      `ringcast_acceptor_trimmed_below_other{ring="0",node="${node}"} 99`,
      `ringcast_sent_datagrams_total{node="${node}"} 7`,
      '',
    ].join('\n');

  it('lowestTrimmed takes the minimum over every node and every asked ring, 0 for a ring a node lacks', async () => {
    const a = await serve(nodeText(1, { 0: 5000, 1: 0, 10: 7 }));
    const b = await serve(nodeText(2, { 0: 4000, 1: 300 }));
    expect(await lowestTrimmed([a, b], [0])).toBe(4000);
    expect(await lowestTrimmed([a, b], [0, 1])).toBe(0); // node 1 has not trimmed ring 1
    expect(await lowestTrimmed([b], [0, 1])).toBe(300);
    expect(await lowestTrimmed([a, b], [10])).toBe(0); // ring="1" is not ring="10": node 2 has no ring 10
    expect(await lowestTrimmed([a], [10])).toBe(7);
  });

  it('metricSamples keeps label sets apart and ignores metrics that only share a prefix', async () => {
    const a = await serve(nodeText(3, { 0: 12, 2: 34 }));
    expect(await metricSamples(a, 'ringcast_acceptor_trimmed_below')).toEqual([
      { labels: 'ring="0",node="3"', value: 12 },
      { labels: 'ring="2",node="3"', value: 34 },
    ]);
    expect(await metricValue(a, 'ringcast_acceptor_trimmed_below')).toBe(46);
    expect(await metricValue(a, 'ringcast_sent_datagrams_total')).toBe(7);
  });

  it('minorFaultsOf reads the minor page faults of a process (here: this one), 0 for none', () => {
    expect(process.platform, 'minorFaultsOf reads /proc/<pid>/stat: this test needs Linux').toBe('linux');
    // getrusage and /proc/<pid>/stat count the same faults of every thread, and the count only grows:
    // the /proc reading lies between a getrusage reading before it and one after it, however many pages
    // other threads (GC, the pool) fault in meanwhile.
    const low = process.resourceUsage().minorPageFault;
    const read = minorFaultsOf(process.pid);
    const high = process.resourceUsage().minorPageFault;
    expect(read).toBeGreaterThan(0);
    expect(read).toBeGreaterThanOrEqual(low);
    expect(read).toBeLessThanOrEqual(high);
    expect(minorFaultsOf(undefined)).toBe(0);
    expect(minorFaultsOf(2 ** 22 + 12345)).toBe(0); // above pid_max: no such process
  });
});
