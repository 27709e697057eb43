import { ConfigError } from '@ringcast/ring-paxos';
import { runSimulation } from '@ringcast/ring-paxos/testing';
import { runMultiRingSimulation } from '@ringcast/multicast';
import { intFlag, parse } from './flags.js';
import { runPsmrSimulation } from '@ringcast/psmr-proxy';

const HELP = `ringcast sim [--multiring] --seed N [--trace]        replay one seed and print its result as JSON
ringcast sim [--multiring] --seeds A..B [--stop-on-failure]   run seeds A..B-1, with a live count, and report failures
  --multiring: the Multi-Ring Paxos simulator (several rings, learners with overlapping subscriptions).
  --psmr: the P-SMR simulator (replica workers merging g_i and g_all, barrier, key-value store), checked
  against a sequential execution of the whole order.
`;

export async function runSim(args: string[]): Promise<number> {
  const o = parse(args, { seed: { type: 'string' }, seeds: { type: 'string' }, trace: { type: 'boolean' }, 'stop-on-failure': { type: 'boolean' }, multiring: { type: 'boolean' }, psmr: { type: 'boolean' } });
  if (o.help) return void process.stdout.write(HELP), 0;
  const run = async (seed: number, trace?: (l: string) => void): Promise<{ ok: boolean; replay: string; violations: string[] }> => {
    if (o.psmr) {
      const r = await runPsmrSimulation({ seed });
      return { ...r, replay: `npx ringcast sim --psmr --seed ${seed}`, violations: r.failures };
    }
    return o.multiring ? runMultiRingSimulation({ seed, trace }) : runSimulation({ seed, trace });
  };
  if (o.seed !== undefined) {
    const seed = intFlag(o.seed, 'seed', 0, 0, 2 ** 32 - 1);
    const r = await run(seed, o.trace ? (l) => process.stderr.write(`${l}\n`) : undefined);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return r.ok ? 0 : 1;
  }
  const m = typeof o.seeds === 'string' ? /^(\d+)\.\.(\d+)$/.exec(o.seeds) : null;
  if (!m) throw new ConfigError('--seeds', 'must be A..B, or give --seed N');
  const a = Number(m[1]);
  const b = Number(m[2]);
  if (b <= a) throw new ConfigError('--seeds', 'B must be greater than A');
  const t0 = performance.now();
  let failed = 0;
  let last = 0;
  const tty = process.stderr.isTTY;
  for (let s = a; s < b; s++) {
    const r = await run(s);
    if (!r.ok) {
      failed++;
      process.stdout.write(`${JSON.stringify({ event: 'failure', seed: s, replay: r.replay, violations: r.violations.slice(0, 5) })}\n`);
      if (o['stop-on-failure']) break;
    }
    const t = performance.now();
    if (t - last > 1000 || s === b - 1) {
      last = t;
      const done = s - a + 1;
      const rate = done / ((t - t0) / 1000);
      const msg = `sim: ${done}/${b - a} seeds, ${failed} failed, ${rate.toFixed(0)} seeds/s, eta ${((b - s - 1) / rate).toFixed(0)} s`;
      process.stderr.write(tty ? `\r${msg}   ` : `${msg}\n`);
    }
  }
  if (tty) process.stderr.write('\n');
  process.stdout.write(`${JSON.stringify({ event: 'summary', seeds: b - a, failed, seconds: (performance.now() - t0) / 1000 })}\n`);
  return failed === 0 ? 0 : 1;
}
