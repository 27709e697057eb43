import { describe, expect, it } from 'vitest';
import { parseCluster } from '@ringcast/ring-paxos';
import { checkRedisUrl } from '@ringcast/multicast';
import { groupsFlag, intFlag, parse } from '../src/flags.js';

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
