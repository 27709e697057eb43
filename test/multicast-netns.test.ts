import { execFileSync, execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { launchLocalRing, spawnRingcast, type LocalRing, type Spawned } from '@ringcast/cli';
import { delivered, requireRoot, stopAll, waitUntil } from './helpers.js';

// IP multicast for Phase 2A and decisions, exercised only inside a network namespace this test creates
// (loopback of the namespace, interface set explicitly); nothing is multicast on the host's network.
const NS = `rc-mcast-${process.pid}`;
const run = promisify(execFile);
const inNs = ['ip', 'netns', 'exec', NS];

async function scrapeInNs(port: number, name: string): Promise<number> {
  const script = `fetch('http://127.0.0.1:${port}/metrics').then(r=>r.text()).then(t=>{let s=0;for(const l of t.split('\\n')){if(l.startsWith('${name}')&&(l['${name}'.length]===' '||l['${name}'.length]==='{'))s+=Number(l.slice(l.lastIndexOf(' ')+1))}console.log(s)})`;
  const { stdout } = await run('ip', ['netns', 'exec', NS, process.execPath, '-e', script]);
  return Number(stdout.trim());
}

describe('IP multicast inside a network namespace', () => {
  let ring: LocalRing | undefined;
  const procs: Spawned[] = [];

  afterAll(async () => {
    await stopAll(procs);
    await ring?.stop();
    try {
      execFileSync('ip', ['netns', 'del', NS]);
    } catch {
      /* already gone */
    }
  });

  it('orders values with Phase 2A and decisions sent once to a multicast group', async () => {
    requireRoot('creating a network namespace (ip netns add)');
    execFileSync('ip', ['netns', 'add', NS]);
    execFileSync('ip', ['netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up']);
    execFileSync('ip', ['netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'multicast', 'on']);
    execFileSync('ip', ['netns', 'exec', NS, 'ip', 'route', 'add', '224.0.0.0/4', 'dev', 'lo']);

    ring = await launchLocalRing({
      acceptors: 3,
      metrics: true,
      prefix: inNs,
      ports: [7101, 7102, 7103],
      multicast: { group: '239.10.20.30', port: 7200, interface: '127.0.0.1' },
    });
    const learners = [0, 1].map(() => spawnRingcast(['learn', '--cluster', ring!.clusterPath, '--from', '0', '--metrics-port', '0'], { prefix: inNs }));
    procs.push(...learners);
    const ready = await Promise.all(learners.map((l) => l.waitFor('ready')));
    const proposer = spawnRingcast(['propose', '--cluster', ring.clusterPath, '--count', '2000', '--outstanding', '32', '--prefix', 'm'], { prefix: inNs });
    procs.push(proposer);
    expect(await proposer.waitFor('done', 60_000)).toMatchObject({ acked: 2000, failed: 0 });
    expect(await waitUntil(() => learners.every((l) => delivered(l).length >= 2000), 20_000)).toBe(true);
    expect(delivered(learners[1]!)).toEqual(delivered(learners[0]!));

    // The values reached the learners through the group, not through retransmission from acceptor logs.
    const coordPort = (await ring.nodes[1]!.waitFor('ready')).metricsPort as number;
    const decided = await scrapeInNs(coordPort, 'ringcast_instances_decided_total');
    expect(decided).toBeGreaterThan(0);
    for (const r of ready) {
      const asked = await scrapeInNs(r.metricsPort as number, 'ringcast_retransmit_requests');
      expect(asked).toBeLessThan(decided * 0.05 + 5);
    }
  });
});
