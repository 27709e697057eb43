import { describe, expect, it } from 'vitest';
import { localCluster, type ClusterConfig, type InstanceRecord, type RingClient } from '@ringcast/ring-paxos';
import { startGroupLearnerWith } from '../src/group-client.js';

/**
 * A group learner over fake ring clients: the test hands each ring's records to the learner itself and
 * decides what a ring's driver does when the learner drains it (as a real driver can deliver records then).
 */
function fakeRings(cluster: ClusterConfig) {
  const hooks = new Map<number, (rs: InstanceRecord[]) => void>();
  const onDrain = new Map<number, () => void>();
  const skipAsks: Array<{ ring: number; pos: number }> = [];
  const connect = async (_c: ClusterConfig, opts: { ring?: number; hooks?: { onInstances?: (rs: InstanceRecord[]) => void } }): Promise<RingClient> => {
    const ring = opts.ring!;
    hooks.set(ring, opts.hooks!.onInstances!);
    const learner = { paused: false, resume() {}, requestSkip: (pos: number) => skipAsks.push({ ring, pos }) };
    return {
      id: 1,
      driver: { node: { learner, out: {} }, drain: () => onDrain.get(ring)?.() },
      stop: async () => {},
    } as unknown as RingClient;
  };
  void cluster;
  return { connect, hooks, onDrain, skipAsks };
}

const rec = (instance: number, pos: number, data?: string): InstanceRecord => ({
  instance,
  pos,
  deliveries: data === undefined ? [] : [{ instance, proposer: 1, seq: instance, data: Buffer.from(data) }],
});

describe('group learner', () => {
  it('records a ring delivers while the learner starts merging queue behind the ones it received before', async () => {
    const cluster = localCluster({ basePort: 40000, rings: 2, settings: { lambda: 1000 } });
    const f = fakeRings(cluster);
    const got: string[] = [];
    const errors: Error[] = [];
    const l = await startGroupLearnerWith(f.connect, cluster, {
      groups: ['g0', 'g1'],
      from: 'start',
      onDeliver: (ds) => got.push(...ds.map((d) => `${d.ring}:${d.pos}:${Buffer.from(d.delivery.data).toString()}`)),
      onError: (e) => errors.push(e),
    });
    // Ring 1 speaks first (held until every ring has); when the merge then waits on ring 1 it asks ring 1 for
    // a skip and drains it, and the drain delivers ring 1's next instance right away.
    f.hooks.get(1)!([rec(0, 10, 'b0'), rec(1, 20, 'b1')]);
    let drained = false;
    f.onDrain.set(1, () => {
      if (drained) return;
      drained = true;
      f.hooks.get(1)!([rec(2, 30, 'b2')]);
    });
    f.hooks.get(0)!([rec(0, 5, 'a0'), rec(1, 25, 'a1'), rec(2, 40, 'a2')]);
    expect(drained).toBe(true);
    expect(f.skipAsks.length).toBeGreaterThan(0);
    expect(errors).toEqual([]);
    // Rounds of M = 1 position, ring 0 before ring 1 in each: ordered by end position, ring 0 first on a tie.
    expect(got).toEqual(['0:5:a0', '1:10:b0', '1:20:b1', '0:25:a1', '1:30:b2']);
    expect(l.mergedRound()).toBeGreaterThanOrEqual(30);
    await l.stop();
  });
});
