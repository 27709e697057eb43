import { ConfigError, hasName, loadCluster } from '@ringcast/ring-paxos';
import { RedisRegistry, RegistryUnavailableError } from '@ringcast/multicast';
import { intFlag, parse } from './flags.js';

const HELP = `ringcast registry load --cluster FILE --redis URL [--prefix P] [--timeout MS]
ringcast registry show --redis URL [--prefix P] [--timeout MS]
  load: write the cluster file's nodes, rings and groups (g<ringId>) to Redis under prefix P
  (default ringcast:); idempotent. Prints {"event":"loaded","changed":...}. The secret is never written.
  show: print the live view (nodes, rings, groups, leases, subscriptions) as one JSON object.
  --timeout: how long the call may take (default 2000 ms); an unreachable Redis fails with
  [ERR_RINGCAST_REGISTRY] within it.
`;

const FLAG_OF: Record<string, string> = { url: '--redis', prefix: '--prefix' };

function open(o: Record<string, string | boolean | undefined>): { reg: RedisRegistry; timeoutMs: number } {
  if (typeof o.redis !== 'string' || o.redis.length === 0) throw new ConfigError('--redis', 'is required (e.g. redis://127.0.0.1:6379)');
  const timeoutMs = intFlag(o.timeout, 'timeout', 2000, 1, 60_000);
  try {
    return { reg: new RedisRegistry({ url: o.redis, prefix: typeof o.prefix === 'string' ? o.prefix : undefined, timeoutMs }), timeoutMs };
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigError(hasName(FLAG_OF, e.field) ? FLAG_OF[e.field]! : e.field, e.message.slice(e.field.length + 2));
    throw e;
  }
}

async function withRegistry<T>(o: Record<string, string | boolean | undefined>, op: string, fn: (r: RedisRegistry) => Promise<T>): Promise<T> {
  const { reg } = open(o);
  try {
    return await fn(reg);
  } catch (e) {
    if (e instanceof RegistryUnavailableError) throw new RegistryUnavailableError(`${op} (--redis ${String(o.redis)})`, e.message.replace(/^registry \w+: /, ''));
    throw e;
  } finally {
    await reg.close();
  }
}

export async function runRegistry(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const flags = { cluster: { type: 'string' as const }, redis: { type: 'string' as const }, prefix: { type: 'string' as const }, timeout: { type: 'string' as const } };
  switch (sub) {
    case 'load': {
      const o = parse(rest, flags);
      if (o.help) return void process.stdout.write(HELP), 0;
      if (typeof o.cluster !== 'string' || o.cluster.length === 0) throw new ConfigError('--cluster', 'is required');
      const cluster = loadCluster(o.cluster);
      const r = await withRegistry(o, 'load', (reg) => reg.load(cluster));
      process.stdout.write(`${JSON.stringify({ event: 'loaded', changed: r.changed, nodes: cluster.nodes.length, rings: cluster.rings.length })}\n`);
      return 0;
    }
    case 'show': {
      const o = parse(rest, { redis: flags.redis, prefix: flags.prefix, timeout: flags.timeout });
      if (o.help) return void process.stdout.write(HELP), 0;
      const view = await withRegistry(o, 'show', (reg) => reg.view());
      process.stdout.write(`${JSON.stringify(view)}\n`);
      return 0;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP);
      return sub === undefined ? 2 : 0;
    default:
      process.stderr.write(`ringcast registry: unknown subcommand '${sub}'\n\n${HELP}`);
      return 2;
  }
}
