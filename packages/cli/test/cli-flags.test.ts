import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseCluster } from '@ringcast/ring-paxos';
import { checkRedisUrl } from '@ringcast/multicast';
import { groupsFlag, intFlag, parse } from '../src/flags.js';
import { main } from '../src/cli.js';

// Every flag error names the flag and what it accepts (ERR_RINGCAST_CONFIG, `--flag: ...`).
function problem(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect((e as { code?: string }).code).toBe('ERR_RINGCAST_CONFIG');
    return (e as Error).message;
  }
  return 'accepted';
}

const FLAGS = { from: { type: 'string' }, seconds: { type: 'string' }, quiet: { type: 'boolean' }, groups: { type: 'string' } } as const;

describe('flag parsing', () => {
  it('a negative number is the value of the flag before it, so its range check can name the flag', () => {
    expect(parse(['--from', '-5'], FLAGS).from).toBe('-5');
    expect(parse(['--seconds=-1'], FLAGS).seconds).toBe('-1');
    expect(parse(['--seconds', '-0.5', '--quiet'], FLAGS)).toMatchObject({ seconds: '-0.5', quiet: true });
    expect(problem(() => intFlag(parse(['--seconds', '-1'], FLAGS).seconds, 'seconds', 10, 1, 3600))).toBe('--seconds: must be an integer between 1 and 3600, got "-1"');
  });

  it('unknown, valueless and stray arguments name the flag and what the command accepts', () => {
    expect(problem(() => parse(['--grups', 'g0'], FLAGS))).toBe('--grups: unknown flag; did you mean --groups?');
    expect(problem(() => parse(['--constructor', '1'], FLAGS))).toMatch(/^--constructor: unknown flag; known: --from, --seconds, --quiet, --groups, --help$/);
    expect(problem(() => parse(['--from'], FLAGS))).toMatch(/^--from: needs a value/);
    expect(problem(() => parse(['--from', '-x'], FLAGS))).toMatch(/^--from: needs a value .*--from=-VALUE/);
    expect(problem(() => parse(['--quiet=1'], FLAGS))).toBe('--quiet: takes no value');
    expect(problem(() => parse(['stray'], FLAGS))).toMatch(/^stray: unexpected argument; this command takes only flags \(--from, /);
  });

  it('group names are the cluster file\'s own: constructor or __proto__ is an unknown group naming the flag', () => {
    const cluster = parseCluster({ nodes: [{ id: 1, host: '127.0.0.1', port: 7001 }], rings: [{ id: 0, acceptors: [1] }, { id: 1, acceptors: [1] }] });
    expect(groupsFlag(cluster, 'g0,g1', '--groups')).toEqual(['g0', 'g1']);
    for (const g of ['constructor', 'toString', 'valueOf', 'hasOwnProperty', '__proto__']) {
      expect(problem(() => groupsFlag(cluster, `g0,${g}`, '--groups'))).toBe(`--groups: no group "${g}" in the cluster file; known: g0, g1`);
    }
    expect(problem(() => groupsFlag(cluster, 'g2', '--groups'))).toBe('--groups: no group "g2" in the cluster file; did you mean g0?');
  });

  it('a Redis URL names the flag and the form it accepts; a port out of range is not "Invalid URL"', () => {
    expect(checkRedisUrl('redis://127.0.0.1:6379', '--registry')).toBe('redis://127.0.0.1:6379');
    expect(checkRedisUrl('rediss://cache.example:6380', '--registry')).toBe('rediss://cache.example:6380');
    for (const bad of ['notaurl', 'redis://127.0.0.1:99999', 'redis://127.0.0.1:0', 'http://127.0.0.1:6379', 'redis://', 'redis://a b']) {
      expect(problem(() => checkRedisUrl(bad, '--registry'))).toBe(`--registry: must be a redis://HOST:PORT or rediss://HOST:PORT URL (port 1-65535), got ${JSON.stringify(bad)}`);
    }
  });
});

describe('command and benchmark names', () => {
  // What main() writes, captured in-process (no ringcast process started).
  function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    vi.spyOn(process.stdout, 'write').mockImplementation((c) => ((out += String(c)), true));
    vi.spyOn(process.stderr, 'write').mockImplementation((c) => ((err += String(c)), true));
    return main(argv).then((code) => ({ code, out, err }));
  }
  afterEach(() => vi.restoreAllMocks());

  const COMMANDS = ['demo', 'replica', 'checkpoint', 'kv-load', 'kv', 'node', 'learn', 'propose', 'bench', 'sim', 'fault-proxy', 'registry'];
  const BENCHES = ['ring', 'multiring', 'psmr', 'failover'];

  it('--help lists every command and every benchmark', async () => {
    const { code, out } = await run(['--help']);
    expect(code).toBe(0);
    for (const c of COMMANDS.filter((c) => c !== 'bench')) expect(out).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
    for (const b of BENCHES) expect(out).toMatch(new RegExp(`^  bench ${b}\\b`, 'm'));
    const bench = await run(['bench', '--help']);
    expect(bench.code).toBe(0);
    for (const b of BENCHES) expect(bench.out).toMatch(new RegExp(`^  ${b}\\b`, 'm'));
  });

  it('an unknown command or benchmark is refused naming it (exit 2), with the closest name', async () => {
    const cmd = await run(['benhc']);
    expect(cmd.code).toBe(2);
    expect(cmd.err).toMatch(/^ringcast: unknown command 'benhc'; did you mean bench\?/);
    const far = await run(['frobnicate']);
    expect(far.code).toBe(2);
    expect(far.err).toMatch(/^ringcast: unknown command 'frobnicate'; known: demo, replica, /);
    const bench = await run(['bench', 'fialover']);
    expect(bench.code).toBe(2);
    expect(bench.err).toMatch(/^ringcast bench: unknown benchmark 'fialover'; did you mean failover\?/);
    expect(bench.out).toBe('');
  });
});
