import { describe, expect, it } from 'vitest';
import { runSimulation } from '@ringcast/ring-paxos/testing';

/**
 * The CI swarm: RINGCAST_SIM_SEEDS seeds in all (default 500) from RINGCAST_SIM_BASE (default 0), split
 * over two test files so both cores work. A failure prints the command that replays its seed.
 */
export function swarmPart(part: 0 | 1): void {
  const total = Number(process.env.RINGCAST_SIM_SEEDS ?? 500);
  const base = Number(process.env.RINGCAST_SIM_BASE ?? 0);
  const half = Math.ceil(total / 2);
  const from = base + part * half;
  const to = Math.min(base + total, from + half);

  describe(`simulator swarm, part ${part + 1} of 2`, () => {
    it(`seeds ${from}..${to - 1}: decided once, learners agree, nothing acknowledged lost, no duplicates, progress after healing`, () => {
      const failures: string[] = [];
      let delivered = 0;
      let dropped = 0;
      let crashes = 0;
      let damaged = 0;
      let torn = 0;
      for (let seed = from; seed < to; seed++) {
        const r = runSimulation({ seed });
        delivered += r.delivered;
        dropped += r.dropped;
        crashes += r.crashes;
        damaged += r.damaged;
        torn += r.torn;
        if (!r.ok) failures.push(`seed ${seed} failed; replay with: ${r.replay}\n  ${r.violations.slice(0, 5).join('\n  ')}`);
      }
      if (failures.length > 0) console.error(failures.join('\n'));
      expect(failures).toEqual([]);
      // The swarm really exercised faults and deliveries (guards against a simulator that does nothing).
      expect(delivered).toBeGreaterThan((to - from) * 20);
      expect(dropped).toBeGreaterThan(0);
      expect(crashes).toBeGreaterThan(0);
      // Storage faults were injected and recovery saw them: damage set aside, torn appends zeroed.
      expect(damaged).toBeGreaterThan(0);
      expect(torn).toBeGreaterThan(0);
    });
  });
}
