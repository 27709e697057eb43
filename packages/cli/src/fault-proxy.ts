import { fstatSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { ConfigError, hasName } from '@ringcast/ring-paxos';
import { FaultProxy, type FaultProxyOptions } from '@ringcast/ring-paxos/testing';
import { intFlag, parse, untilSignal } from './flags.js';

const HELP = `ringcast fault-proxy --listen 127.0.0.1:P --to 127.0.0.1:Q [--drop R] [--dup R] [--delay A-B]
                    [--seed N] [--max-queue N] [--max-clients N]
  Relays UDP datagrams between clients of 127.0.0.1:P and the target 127.0.0.1:Q (and back: each client
  gets its own upstream socket), dropping each with probability --drop, sending a second copy with
  probability --dup, and delaying each copy by a uniform A..B ms (which reorders them). Rates are 0..1;
  --delay takes "A-B" or "A" (ms); --max-queue bounds copies held for delay (default 10000; beyond it
  copies are dropped and counted as overflow). Listen port 0 picks a free port. Loopback addresses only.
  Prints {"event":"ready",...} once bound, {"event":"stats",...} every second, and a final
  {"event":"stopped",...}; stops on SIGINT/SIGTERM. A line "heal" on stdin (a pipe) sets every rate to 0.
`;

function line(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

function hostPort(v: string | boolean | undefined, flag: string, minPort: number): { host: string; port: number } {
  if (typeof v !== 'string' || v.length === 0) throw new ConfigError(flag, 'is required (HOST:PORT)');
  const m = /^(.+):(\d+)$/.exec(v);
  if (!m) throw new ConfigError(flag, `must be HOST:PORT, got ${JSON.stringify(v)}`);
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < minPort || port > 65535) throw new ConfigError(flag, `port must be between ${minPort} and 65535, got ${m[2]}`);
  return { host: m[1]!, port };
}

function rateFlag(v: string | boolean | undefined, flag: string): number {
  if (v === undefined) return 0;
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new ConfigError(flag, `must be a number between 0 and 1, got ${JSON.stringify(v)}`);
  return n;
}

function delayFlag(v: string | boolean | undefined): [number, number] {
  if (v === undefined) return [0, 0];
  const m = typeof v === 'string' ? /^(\d+)(?:-(\d+))?$/.exec(v) : null;
  const lo = m ? Number(m[1]) : NaN;
  const hi = m ? Number(m[2] ?? m[1]) : NaN;
  if (!m || lo > hi || hi > 60_000) throw new ConfigError('--delay', `must be MIN-MAX or MS in milliseconds with MIN <= MAX <= 60000, got ${JSON.stringify(v)}`);
  return [lo, hi];
}

/** Option names of FaultProxy mapped to the flags that set them, so errors name the flag. */
const FLAG_OF: Record<string, string> = {
  listenHost: '--listen',
  listenPort: '--listen',
  targetHost: '--to',
  targetPort: '--to',
  drop: '--drop',
  duplicate: '--dup',
  delayMinMs: '--delay',
  delayMaxMs: '--delay',
  seed: '--seed',
  maxQueue: '--max-queue',
  maxClients: '--max-clients',
};

function stdinIsPipe(): boolean {
  try {
    const st = fstatSync(0);
    return st.isFIFO() || st.isSocket();
  } catch {
    return false;
  }
}

export async function runFaultProxy(args: string[]): Promise<number> {
  const o = parse(args, {
    listen: { type: 'string' },
    to: { type: 'string' },
    drop: { type: 'string' },
    dup: { type: 'string' },
    delay: { type: 'string' },
    seed: { type: 'string' },
    'max-queue': { type: 'string' },
    'max-clients': { type: 'string' },
  });
  if (o.help) return void process.stdout.write(HELP), 0;
  const listen = hostPort(o.listen, '--listen', 0);
  const to = hostPort(o.to, '--to', 1);
  const [delayMinMs, delayMaxMs] = delayFlag(o.delay);
  const opts: FaultProxyOptions = {
    listenHost: listen.host,
    listenPort: listen.port,
    targetHost: to.host,
    targetPort: to.port,
    drop: rateFlag(o.drop, '--drop'),
    duplicate: rateFlag(o.dup, '--dup'),
    delayMinMs,
    delayMaxMs,
    seed: intFlag(o.seed, 'seed', 1, 0, 0xffffffff),
    maxQueue: intFlag(o['max-queue'], 'max-queue', 10_000, 0, 10_000_000),
    maxClients: intFlag(o['max-clients'], 'max-clients', 256, 1, 65536),
  };
  let proxy: FaultProxy;
  try {
    proxy = new FaultProxy(opts);
  } catch (e) {
    if (e instanceof ConfigError && hasName(FLAG_OF, e.field)) throw new ConfigError(FLAG_OF[e.field]!, e.message.slice(e.field.length + 2));
    throw e;
  }
  await proxy.start();
  line({
    event: 'ready',
    pid: process.pid,
    listen: `${proxy.listenHost}:${proxy.port}`,
    listenPort: proxy.port,
    to: `${proxy.targetHost}:${proxy.targetPort}`,
    ...proxy.getRates(),
    seed: proxy.seed,
    maxQueue: proxy.maxQueue,
    maxClients: proxy.maxClients,
  });
  const stats = setInterval(() => line({ event: 'stats', ...proxy.stats }), 1000);
  const rl = stdinIsPipe() ? createInterface({ input: process.stdin }) : undefined;
  rl?.on('line', (l) => {
    if (l.trim() === 'heal') {
      proxy.setRates({ drop: 0, duplicate: 0, delayMinMs: 0, delayMaxMs: 0 });
      line({ event: 'healed', ...proxy.getRates() });
    }
  });
  const sig = await untilSignal();
  clearInterval(stats);
  if (rl) {
    rl.close();
    process.stdin.destroy();
  }
  const final = proxy.stats;
  await proxy.stop();
  line({ event: 'stopped', signal: sig, ...final });
  return 0;
}
