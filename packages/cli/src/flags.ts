/** Flag parsing and the small helpers every command shares (the commands import this, never cli.ts). */
import type { Server } from 'node:http';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, hasName, listenError, suggest, type ClusterConfig } from '@ringcast/ring-paxos';

export type Options = ParseArgsConfig['options'];

/** A negative number (`-5`, `-0.5`): the value of the flag before it, not a flag. */
const NEGATIVE = /^-(\d|\.\d)/;

/**
 * Parse a command's flags; an unknown or malformed flag is a ConfigError naming it and what the command
 * accepts. `--flag -5` is read as `--flag=-5` (node's parseArgs calls it ambiguous), so a range check can
 * say what the flag accepts.
 */
export function parse(args: string[], options: NonNullable<Options>): Record<string, string | boolean | undefined> {
  const all: NonNullable<Options> = { ...options, help: { type: 'boolean' } };
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const name = a.startsWith('--') && !a.includes('=') ? a.slice(2) : undefined;
    if (name !== undefined && hasName(all, name) && all[name]!.type === 'string' && NEGATIVE.test(args[i + 1] ?? '')) joined.push(`${a}=${args[++i]}`);
    else joined.push(a);
  }
  try {
    const { values } = parseArgs({ args: joined, options: all, strict: true, allowPositionals: false });
    return values as Record<string, string | boolean | undefined>;
  } catch (e) {
    throw flagError(e as Error & { code?: string }, all);
  }
}

function flagError(e: Error & { code?: string }, options: NonNullable<Options>): ConfigError {
  const flags = Object.keys(options).map((k) => `--${k}`);
  const flag = /'(-[^' ]*)/.exec(e.message)?.[1];
  const name = flag?.replace(/^--?/, '') ?? '';
  if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag) return new ConfigError(flag, `unknown flag; ${suggest(flag, flags)}`);
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag && hasName(options, name)) {
    if (options[name]!.type === 'boolean') return new ConfigError(flag, 'takes no value');
    return new ConfigError(flag, `needs a value (${flag} VALUE; a value that starts with '-' as ${flag}=-VALUE)`);
  }
  if (e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const arg = /'([^']*)'/.exec(e.message)?.[1] ?? '';
    return new ConfigError(arg, `unexpected argument; this command takes only flags (${flags.join(', ')})`);
  }
  return new ConfigError(flag ?? 'arguments', e.message);
}

/** A required string flag; missing, it is a ConfigError naming the flag. */
export function need(v: string | boolean | undefined, flag: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new ConfigError(flag, 'is required');
  return v;
}

/** Listen on 127.0.0.1:port; resolves with the bound port, a port in use is a ConfigError naming `flag`. */
export function listenHttp(server: Server, port: number, flag: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', (e) => reject(listenError(e, flag, '127.0.0.1', port)));
    server.listen(port, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
  });
}

/** Group names (comma-separated) of the cluster file; an unknown one is a ConfigError naming `flag` and the known groups. */
export function groupsFlag(cluster: ClusterConfig, v: string, flag: string): string[] {
  const known = Object.keys(cluster.groups);
  return v.split(',').map((g) => {
    if (!hasName(cluster.groups, g)) throw new ConfigError(flag, `no group ${JSON.stringify(g)} in the cluster file; ${suggest(g, known)}`);
    return g;
  });
}

/** Resolve when the process is asked to stop (SIGINT / SIGTERM). */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const on = (sig: string): void => resolve(sig);
    process.once('SIGINT', on);
    process.once('SIGTERM', on);
  });
}

/** An integer flag with bounds; errors name the flag. */
export function intFlag(v: string | boolean | undefined, name: string, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(`--${name}`, `must be an integer between ${min} and ${max}, got ${JSON.stringify(v)}`);
  }
  return n;
}
