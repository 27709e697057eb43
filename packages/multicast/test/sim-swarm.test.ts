import { describe, expect, it } from 'vitest';
import { runMultiRingSimulation } from '@ringcast/multicast';

// The Multi-Ring Paxos swarm: RINGCAST_MULTIRING_SEEDS seeds (default 150). A failure prints the command
// that replays its seed.
const total = Number(process.env.RINGCAST_MULTIRING_SEEDS ?? 150);

describe('Multi-Ring Paxos simulator swarm', () => {
  it(`seeds 0..${total - 1}: no duplicates, nothing acknowledged lost, acyclic merged orders, bounded backlog (skips on demand on even seeds)`, () => {
    const failures: string[] = [];
    let delivered = 0;
    let demandSkips = 0;
    for (let seed = 0; seed < total; seed++) {
      const r = runMultiRingSimulation({ seed });
      delivered += r.delivered;
      demandSkips += r.demandSkips;
      if (!r.ok) failures.push(`seed ${seed} failed; replay with: ${r.replay}\n  ${r.violations.slice(0, 5).join('\n  ')}`);
    }
    if (failures.length > 0) console.error(failures.join('\n'));
    expect(failures).toEqual([]);
    expect(delivered).toBeGreaterThan(total * 50);
    // Even seeds ask for skips on demand: the swarm exercised that path under its faults.
    expect(demandSkips).toBeGreaterThan(total);
  });
});
