import { ConfigError, loadCluster } from '@ringcast/ring-paxos';
import { Registry } from 'prom-client';
import { readFileSync, writeFileSync } from 'node:fs';
import { unpack } from 'msgpackr';
import { createServer } from 'node:http';
import { intFlag, listenHttp, need, parse } from './flags.js';
import { runKvLoad } from './kv-load.js';
import { checkpointToken, createKvClient, hasCheckpointTrailer, modeNamed, startReplica, unframeCheckpoint, type ModeName, type ReplicaCheckpoint } from '@ringcast/psmr-proxy';
import { RateDisplay } from './progress.js';

/** `--mode`: the name of a registered mode (default psmr). */
export function modeFlag(v: string | boolean | undefined): ModeName {
  return modeNamed(v ?? 'psmr', '--mode').name;
}

function replyFromFlag(v: string | boolean | undefined): 'one' | 'all' {
  if (v === undefined || v === 'one' || v === 'all') return v ?? 'all';
  throw new ConfigError('--reply-from', `must be one or all, got ${JSON.stringify(v)}`);
}

/** A share flag: a number in [0, 1] or a percentage like 25%. */
export function shareFlag(v: string | boolean | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const s = String(v);
  const n = s.endsWith('%') ? Number(s.slice(0, -1)) / 100 : Number(s);
  if (typeof v !== 'string' || !Number.isFinite(n) || n < 0 || n > 1) throw new ConfigError(`--${name}`, `must be a share in 0..1 or 0%..100%, got ${JSON.stringify(v)}`);
  return n;
}

const HELP_REPLICA = `ringcast replica --cluster FILE [--mode psmr|smr] [--workers N] [--service kv|MODULE] [--id NAME]
                 [--reply-tag T] [--host H] [--metrics-port P] [--from-replica URL|FILE]
                 [--checkpoint-dir DIR [--checkpoint-every 30s|N]]
  Runs a P-SMR server proxy: N worker threads (psmr; smr runs one), each with its own learner sockets for
  its group g<i> and for gall, executing the service and replying straight to clients. The cluster file
  needs groups g0..g<N-1> and gall, each on its own ring, and lambda > 0 (rate leveling) for psmr.
  --service: 'kv' (built in) or a module whose default export is a Service.
  --reply-tag: 1..255, how clients name this replica when they ask one replica to answer (default: a hash
  of --id); give each replica of a cluster its own.
  --metrics-port: serve /metrics (every worker's metrics), /state (per-worker executed count and state
  digest) and /checkpoint (GET: a checkpoint of this replica, for another to start from) on this port (0:
  any free port).
  --from-replica URL|FILE: start from a checkpoint instead of the rings' first instance (a replica that
  replaces a crashed one after the acceptors trimmed their logs): URL is another replica's metrics address
  (http://host:port; its /checkpoint is fetched, with the token of the cluster secret if the cluster file
  has one), FILE a checkpoint saved from there (or a file of a --checkpoint-dir). Same --mode,
  --workers and --service as that replica.
  --checkpoint-dir DIR: write a checkpoint to DIR periodically (the /checkpoint bytes with a crc32; written
  to a temporary file, fsynced, renamed; the newest 2 kept) and after each ask the acceptors of every ring
  of this replica to keep what a restart from the older of the two needs (a retention hold, bounded by the
  rings' logCapacity and logRetainBytes). Started again with the same DIR (and --id, or none: the id is
  taken from the checkpoint), the replica resumes from the newest checkpoint there that checks; a damaged
  file is refused (stderr, ringcast_psmr_checkpoint_files_refused_total) and the one before it used; with
  every file damaged, or a file of another cluster (its rings, acceptors and groups), or of another
  --mode/--workers/--service, the replica refuses to start with an error naming the file. Only the
  checkpoint-*.rckp files (and their .tmp) of DIR are the replica's. --from-replica wins over DIR's
  checkpoints and moves them aside (renamed *.replaced: a previous life's files, another id, unheld).
  --checkpoint-every: seconds with an 's' (30s, 0.5s; at least 0.1s) or a count of commands executed
  (100000, summed over workers); default 30s. Needs --checkpoint-dir.
  Prints {"event":"ready",...}; stops cleanly on SIGINT/SIGTERM; exits 1 if a worker fails.
`;

const HELP_CHECKPOINT = `ringcast checkpoint --cluster FILE --from URL --out FILE
  Fetches a checkpoint from a live replica's metrics address (http://host:port; GET /checkpoint, with the
  token of the cluster secret if the cluster file has one) and writes it to --out, for
  'ringcast replica --from-replica FILE'. Prints {"event":"checkpoint","bytes":N,"round":R,...}.
`;

export async function runCheckpoint(args: string[]): Promise<number> {
  const o = parse(args, { cluster: { type: 'string' }, from: { type: 'string' }, out: { type: 'string' } });
  if (o.help) return void process.stdout.write(HELP_CHECKPOINT), 0;
  const cluster = loadCluster(need(o.cluster, '--cluster'));
  const from = need(o.from, '--from');
  if (!/^https?:\/\//.test(from)) throw new ConfigError('--from', `must be a replica's http://host:port, got ${JSON.stringify(from)}`);
  const out = need(o.out, '--out');
  const bytes = await fetchCheckpoint(from, cluster.secret);
  const c = unpack(bytes) as ReplicaCheckpoint;
  writeFileSync(out, bytes);
  process.stdout.write(`${JSON.stringify({ event: 'checkpoint', bytes: bytes.length, round: c.round, replica: c.replica, mode: c.mode, workers: c.workers, service: c.service, out })}\n`);
  return 0;
}

/** A checkpoint from another replica's HTTP address (its /checkpoint) or from a file. */
export async function fetchCheckpoint(from: string, secret?: string): Promise<Uint8Array> {
  if (/^https?:\/\//.test(from)) {
    const url = from.endsWith('/checkpoint') ? from : `${from.replace(/\/+$/, '')}/checkpoint`;
    let res: Response;
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(60_000), headers: secret ? { 'x-ringcast-token': checkpointToken(secret) } : {} });
    } catch (e) {
      throw new ConfigError('--from-replica', `cannot reach ${url}: ${(e as Error).message}`);
    }
    if (!res.ok) throw new ConfigError('--from-replica', `${url} answered ${res.status}: ${(await res.text()).trim()}`);
    return new Uint8Array(await res.arrayBuffer());
  }
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(from);
  } catch (e) {
    throw new ConfigError('--from-replica', `cannot read ${from}: ${(e as Error).message}`);
  }
  // A file of a --checkpoint-dir ends with a crc trailer: check it and take what it covers.
  return hasCheckpointTrailer(bytes) ? unframeCheckpoint(bytes, from) : bytes;
}

/** --checkpoint-every: '30s' / '0.5s' (seconds, at least 0.1) or '100000' (commands). */
export function checkpointEveryFlag(v: string | boolean | undefined): { seconds: number } | { commands: number } | undefined {
  if (v === undefined) return undefined;
  const s = String(v);
  const secs = /^(\d+(?:\.\d+)?)s$/.exec(s);
  if (typeof v === 'string' && secs && Number(secs[1]) >= 0.1 && Number(secs[1]) <= 86400) return { seconds: Number(secs[1]) };
  if (typeof v === 'string' && /^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 1e12) return { commands: Number(s) };
  throw new ConfigError('--checkpoint-every', `must be seconds with an 's' (0.1s..86400s, e.g. 30s) or a count of commands (1..1e12, e.g. 100000), got ${JSON.stringify(v)}`);
}

export async function runReplica(args: string[]): Promise<number> {
  const o = parse(args, {
    cluster: { type: 'string' },
    mode: { type: 'string' },
    workers: { type: 'string' },
    service: { type: 'string' },
    id: { type: 'string' },
    'reply-tag': { type: 'string' },
    host: { type: 'string' },
    'metrics-port': { type: 'string' },
    'from-replica': { type: 'string' },
    'checkpoint-dir': { type: 'string' },
    'checkpoint-every': { type: 'string' },
  });
  if (o.help) return void process.stdout.write(HELP_REPLICA), 0;
  const checkpointEvery = checkpointEveryFlag(o['checkpoint-every']);
  const checkpointDir = o['checkpoint-dir'];
  if (checkpointEvery && checkpointDir === undefined) throw new ConfigError('--checkpoint-every', 'needs --checkpoint-dir');
  if (checkpointDir !== undefined && (typeof checkpointDir !== 'string' || checkpointDir === '')) throw new ConfigError('--checkpoint-dir', 'must be a directory path');
  const cluster = loadCluster(need(o.cluster, '--cluster'));
  const mode = modeFlag(o.mode);
  const workers = intFlag(o.workers, 'workers', 2, 1, 64);
  const metricsPort = o['metrics-port'] === undefined ? undefined : intFlag(o['metrics-port'], 'metrics-port', 0, 0, 65535);
  const resume = typeof o['from-replica'] === 'string' ? await fetchCheckpoint(o['from-replica'], cluster.secret) : undefined;
  let fatal: Error | undefined;
  let wake: (() => void) | undefined;
  const replica = await startReplica(cluster, {
    resume,
    mode,
    workers,
    service: typeof o.service === 'string' ? o.service : 'kv',
    id: typeof o.id === 'string' ? o.id : undefined,
    replyTag: o['reply-tag'] === undefined ? undefined : intFlag(o['reply-tag'], 'reply-tag', 1, 1, 255),
    host: typeof o.host === 'string' ? o.host : undefined,
    metricsPort,
    metricsPortName: '--metrics-port',
    checkpointDir,
    checkpointEvery,
    onWarning: (e) => process.stderr.write(`ringcast replica: [${e.code}] ${e.message}\n`),
    onFatal: (e) => {
      fatal = e;
      wake?.();
    },
  });
  process.stdout.write(`${JSON.stringify({ event: 'ready', id: replica.id, pid: process.pid, mode, workers: replica.workers, metricsPort: replica.metricsPort ?? null, ...(replica.resumedRound !== undefined ? { resumedRound: replica.resumedRound } : {}), ...(replica.resumedFile ? { resumedFile: replica.resumedFile } : {}) })}\n`);
  await new Promise<void>((resolve) => {
    if (fatal) return resolve(); // a worker failed before this line
    wake = resolve;
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  if (fatal) {
    process.stderr.write(`ringcast replica: [${(fatal as { code?: string }).code}] ${fatal.message}\n`);
    await replica.stop();
    return 1;
  }
  await replica.stop();
  return 0;
}

const HELP_LOAD = `ringcast kv-load --cluster FILE [--mode psmr|smr] [--workers N] [--seconds S] [--commands N]
                 [--clients C] [--window W] [--gall-share X] [--rate R] [--keys K] [--warmup S] [--metrics-port P]
                 [--reply-from one|all]
  Runs a key-value command load against the replicas of a cluster and prints a JSON summary.
  --reply-from: 'all' (default) has every replica answer (the client keeps the first); 'one' asks one.
  --gall-share: share of g_all commands (mget/mput across partitions), 0..1 or a percentage (default 0).
  --rate: open loop at R commands/s (default: closed loop with W commands in flight per client).
  --warmup: run S seconds more at the start and leave them out of the counts and latencies.
  Shows the live rate on stderr.
`;

export async function runKvLoadCommand(args: string[]): Promise<number> {
  const o = parse(args, {
    cluster: { type: 'string' },
    mode: { type: 'string' },
    workers: { type: 'string' },
    seconds: { type: 'string' },
    commands: { type: 'string' },
    clients: { type: 'string' },
    window: { type: 'string' },
    'gall-share': { type: 'string' },
    rate: { type: 'string' },
    keys: { type: 'string' },
    'metrics-port': { type: 'string' },
    warmup: { type: 'string' },
    quiet: { type: 'boolean' },
    'reply-from': { type: 'string' },
  });
  if (o.help) return void process.stdout.write(HELP_LOAD), 0;
  const cluster = loadCluster(need(o.cluster, '--cluster'));
  const registry = new Registry();
  const mport = o['metrics-port'] === undefined ? undefined : intFlag(o['metrics-port'], 'metrics-port', 0, 0, 65535);
  const server = mport === undefined ? undefined : createServer((_req, res) => void registry.metrics().then((t) => res.writeHead(200, { 'content-type': registry.contentType }).end(t)));
  if (server) await listenHttp(server, mport!, '--metrics-port');
  const display = o.quiet ? undefined : new RateDisplay('replied', 'commands');
  const cpu0 = process.cpuUsage();
  const r = await runKvLoad({
    cluster,
    mode: modeFlag(o.mode),
    workers: intFlag(o.workers, 'workers', 2, 1, 64),
    seconds: intFlag(o.seconds, 'seconds', 10, 1, 3600),
    maxCommands: intFlag(o.commands, 'commands', Number.MAX_SAFE_INTEGER, 1, Number.MAX_SAFE_INTEGER),
    clients: intFlag(o.clients, 'clients', 1, 1, 256),
    window: intFlag(o.window, 'window', 512, 1, 65536),
    gallShare: shareFlag(o['gall-share'], 'gall-share', 0),
    rate: o.rate === undefined ? undefined : intFlag(o.rate, 'rate', 0, 1, 10_000_000),
    keys: intFlag(o.keys, 'keys', 100_000, 1, 10_000_000),
    warmupSeconds: intFlag(o.warmup, 'warmup', 0, 0, 600),
    replyFrom: replyFromFlag(o['reply-from']),
    registry,
    onTick: display ? (n) => display.update(n, 0) : undefined,
  });
  display?.done(r.commands + r.errors, 0);
  server?.close();
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(`${JSON.stringify({ event: 'summary', ...r, history: undefined, cpuSeconds: Number(((cpu.user + cpu.system) / 1e6).toFixed(3)) })}\n`);
  return r.noReply === 0 ? 0 : 1;
}

const HELP_KV = `ringcast kv --cluster FILE [--mode psmr|smr] [--workers N] <op> [args...]
  One key-value command against the replicas; prints the reply as JSON (exit 1 with the typed error).
    get KEY | put KEY VALUE | delete KEY | cas KEY EXPECTED|- VALUE | mget KEY... | mput KEY VALUE [KEY VALUE...]
    scan PREFIX [LIMIT] | size
  Keys and values are strings; '-' as EXPECTED means the key must be absent.
`;

/** `ringcast kv`: one command from the shell (for operators poking a running store). */
export async function runKvCommand(args: string[]): Promise<number> {
  // Flags first, then the operation and its arguments.
  const split = args.findIndex((a, i) => !a.startsWith('--') && (i === 0 || !['--cluster', '--mode', '--workers'].includes(args[i - 1]!)));
  const flags = split < 0 ? args : args.slice(0, split);
  const [op, ...rest] = split < 0 ? [] : args.slice(split);
  const o = parse(flags, { cluster: { type: 'string' }, mode: { type: 'string' }, workers: { type: 'string' } });
  if (o.help || op === undefined) return void process.stdout.write(HELP_KV), o.help ? 0 : 2;
  const cluster = loadCluster(need(o.cluster, '--cluster'));
  const want = (n: number, usage: string): void => {
    if (rest.length < n) throw new ConfigError(op, `usage: ${op} ${usage}`);
  };
  const kv = await createKvClient(cluster, { mode: modeFlag(o.mode), workers: intFlag(o.workers, 'workers', 2, 1, 64), retryMs: 500, deadlineMs: 5000 });
  try {
    let out: unknown;
    switch (op) {
      case 'get':
        want(1, 'KEY');
        out = { value: await kv.get(rest[0]!) };
        break;
      case 'put':
        want(2, 'KEY VALUE');
        await kv.put(rest[0]!, rest[1]!);
        out = { ok: true };
        break;
      case 'delete':
        want(1, 'KEY');
        out = { deleted: await kv.delete(rest[0]!) };
        break;
      case 'cas':
        want(3, 'KEY EXPECTED|- VALUE');
        out = { swapped: await kv.cas(rest[0]!, rest[1] === '-' ? null : rest[1]!, rest[2]!) };
        break;
      case 'mget':
        want(1, 'KEY...');
        out = { values: await kv.mget(rest) };
        break;
      case 'mput': {
        if (rest.length < 2 || rest.length % 2 !== 0) throw new ConfigError(op, 'usage: mput KEY VALUE [KEY VALUE...]');
        const entries: Array<[string, string]> = [];
        for (let i = 0; i < rest.length; i += 2) entries.push([rest[i]!, rest[i + 1]!]);
        await kv.mput(entries);
        out = { ok: true };
        break;
      }
      case 'scan':
        want(1, 'PREFIX [LIMIT]');
        out = { entries: await kv.scan(rest[0]!, rest[1] === undefined ? 32 : intFlag(rest[1], 'limit', 32, 1, 32)) };
        break;
      case 'size':
        out = { size: await kv.size() };
        break;
      default:
        throw new ConfigError('op', `unknown operation '${op}' (get, put, delete, cas, mget, mput, scan, size)`);
    }
    const show = (x: unknown): unknown => (x instanceof Uint8Array ? { bytes: Buffer.from(x).toString('hex') } : Array.isArray(x) ? x.map(show) : x);
    process.stdout.write(`${JSON.stringify(out, (_k, v: unknown) => show(v))}\n`);
    return 0;
  } finally {
    await kv.stop();
  }
}
