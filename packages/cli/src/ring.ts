import { ConfigError, loadCluster, RingcastError, TrimmedGapError, RingMetrics, START_NEXT, START_OLDEST, startClient, startNode } from '@ringcast/ring-paxos';
import { checkRedisUrl, RedisRegistry, startAnnouncer, startGroupLearner, ringsOf } from '@ringcast/multicast';
import { groupsFlag, intFlag, need, parse, untilSignal } from './flags.js';
import { proposeLoop } from './progress.js';

function line(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

const HELP_NODE = `ringcast node --cluster FILE --id N [--metrics-port P] [--bind-port P] [--durable MODE --log-dir DIR] [--rejoin]
  Runs the acceptor roles of node N (and the coordinator role where N is last in a ring).
  --bind-port binds another UDP port than the cluster file's (put a fault proxy on the file's port).
  --durable sync|async|memory and --log-dir DIR: the acceptor log. sync: votes leave only after fdatasync
  (survives power loss); async: written, not synced (survives a process crash); memory (default): nothing
  survives a restart.
  --registry redis://HOST:PORT: keep this node's address and its coordinator leases in a Redis registry
  (a hint for discovery; the ring keeps ordering when Redis is gone).
  --rejoin: this node lost its log (memory mode restarted, or its log directory is gone). It asks f+1 other
  acceptors what they promised and accepted and takes no part in instances it may have forgotten. A node
  whose durable log is found damaged at start (lost synced records) does this by itself; see the README.
  Prints {"event":"ready",...} once its sockets are bound; stops cleanly on SIGINT/SIGTERM.
`;

export async function runNode(args: string[]): Promise<number> {
  const o = parse(args, { cluster: { type: 'string' }, id: { type: 'string' }, 'metrics-port': { type: 'string' }, 'bind-port': { type: 'string' }, durable: { type: 'string' }, 'log-dir': { type: 'string' }, rejoin: { type: 'boolean' }, registry: { type: 'string' } });
  if (o.help) return void process.stdout.write(HELP_NODE), 0;
  const bindPort = o['bind-port'] === undefined ? undefined : intFlag(o['bind-port'], 'bind-port', 0, 1, 65535);
  const cluster = loadCluster(need(o.cluster, '--cluster'));
  const id = intFlag(need(o.id, '--id'), 'id', 0, 1, 65535);
  const metricsPort = o['metrics-port'] === undefined ? undefined : intFlag(o['metrics-port'], 'metrics-port', 0, 0, 65535);
  const durable = o.durable ?? 'memory';
  if (durable !== 'sync' && durable !== 'async' && durable !== 'memory') throw new ConfigError('--durable', `must be sync, async or memory, got ${JSON.stringify(durable)}`);
  const logDir = typeof o['log-dir'] === 'string' ? o['log-dir'] : undefined;
  if (durable !== 'memory' && !logDir) throw new ConfigError('--log-dir', `is required with --durable ${durable}`);
  // Every flag is checked before a socket is bound; startNode closes what it opened if it fails.
  const registryUrl = o.registry === undefined ? undefined : checkRedisUrl(o.registry, '--registry');
  // A fatal error while running (a full disk: ERR_RINGCAST_LOG) stops the node and exits non-zero.
  let fatal: (e: Error) => void = () => {};
  const failed = new Promise<Error>((r) => (fatal = r));
  const node = await startNode(cluster, id, { metricsPort, metricsPortName: '--metrics-port', bindPort, durable, logDir, rejoin: o.rejoin === true, hooks: { onFatal: (e) => fatal(e) } });
  // The registry is a hint: announce this node and its coordinator leases; failures never stop the node.
  const registry = registryUrl === undefined ? undefined : new RedisRegistry({ url: registryUrl });
  const announcer = registry
    ? startAnnouncer(registry, cluster, node, {
        onState: (up, err) => process.stderr.write(`ringcast node ${id}: registry ${up ? 'reachable' : `unreachable (${err?.message ?? 'error'})`}\n`),
      })
    : undefined;
  line({ event: 'ready', id, pid: process.pid, rings: node.rings.map((r) => r.driver.node.cfg.ring), metricsPort: node.metricsPort ?? null });
  const end = await Promise.race([untilSignal(), failed]);
  await announcer?.stop();
  await registry?.close();
  if (end instanceof Error) {
    await node.stop().catch(() => {}); // the log that failed may fail to close too: report the first error
    throw end;
  }
  await node.stop();
  process.stderr.write(`ringcast node ${id}: stopped on ${end}\n`);
  return 0;
}

function startFlag(v: string | boolean | undefined): number {
  if (v === undefined || v === 'next') return START_NEXT;
  if (v === 'oldest') return START_OLDEST;
  if (typeof v !== 'string' || !/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) {
    throw new ConfigError('--from', `must be next, oldest or an instance number (an integer, 0 or more), got ${JSON.stringify(v)}`);
  }
  return Number(v);
}

const HELP_LEARN = `ringcast learn --cluster FILE [--ring R | --groups G1,G2,...] [--from next|oldest|N] [--count N] [--metrics-port P] [--quiet]
  --groups: subscribe to several multicast groups and print one merged stream (lines carry "g" = ring and
  "pos" = logical position); every learner of those groups delivers common messages in the same order.
  --start-round R / --stop-round S (with --groups): deliver exactly the merge rounds R..S-1, the same for
  every learner given them (R must still be ahead; exit 4 otherwise; exit 0 after S).
  Joins ring R as a learner and prints one JSON line per delivered value:
  {"event":"deliver","i":instance,"p":proposer,"s":seq,"d":"utf-8 data"}.
  --count N exits after N values; --quiet prints only a summary line.
`;

export async function runLearn(args: string[]): Promise<number> {
  const o = parse(args, {
    cluster: { type: 'string' },
    ring: { type: 'string' },
    from: { type: 'string' },
    count: { type: 'string' },
    'metrics-port': { type: 'string' },
    quiet: { type: 'boolean' },
    groups: { type: 'string' },
    'start-round': { type: 'string' },
    'stop-round': { type: 'string' },
  });
  if (o.help) return void process.stdout.write(HELP_LEARN), 0;
  const cluster = loadCluster(need(o.cluster, '--cluster'));
  const ring = o.ring === undefined ? undefined : intFlag(o.ring, 'ring', 0, 0, 65535);
  const count = intFlag(o.count, 'count', Number.MAX_SAFE_INTEGER, 1, Number.MAX_SAFE_INTEGER);
  const mport = o['metrics-port'] === undefined ? undefined : intFlag(o['metrics-port'], 'metrics-port', 0, 0, 65535);
  const metrics = new RingMetrics({ role: 'learner' });
  let delivered = 0;
  let finish: (code: number) => void = () => {};
  const done = new Promise<number>((r) => (finish = r));
  if (typeof o.groups === 'string') {
    // Several groups: one merged stream (Multi-Ring Paxos).
    if (o.ring !== undefined || o.from !== undefined) throw new ConfigError('--groups', 'cannot be combined with --ring or --from');
    const startRound = o['start-round'] === undefined ? undefined : intFlag(o['start-round'], 'start-round', 0, 0, Number.MAX_SAFE_INTEGER);
    const stopRound = o['stop-round'] === undefined ? undefined : intFlag(o['stop-round'], 'stop-round', 0, 0, Number.MAX_SAFE_INTEGER);
    const gl = await startGroupLearner(cluster, {
      groups: groupsFlag(cluster, o.groups, '--groups'),
      metrics,
      startRound,
      stopRound,
      onDone: () => finish(0),
      onError: (e) => {
        process.stderr.write(`ringcast learn: [${(e as RingcastError).code}] ${e.message}\n`);
        finish(4);
      },
      onDeliver(ds) {
        for (const x of ds) {
          if (delivered >= count) break;
          delivered++;
          const d = x.delivery;
          if (!o.quiet) line({ event: 'deliver', g: x.ring, pos: x.pos, i: d.instance, p: d.proposer, s: d.seq, d: Buffer.from(d.data).toString('utf8') });
        }
        if (delivered >= count) finish(0);
      },
    });
    const server = mport === undefined ? undefined : await metrics.serve(mport, '127.0.0.1', '--metrics-port').catch(async (e: Error) => {
      await gl.stop();
      throw e;
    });
    line({ event: 'ready', rings: gl.rings, pid: process.pid, metricsPort: server?.port ?? null });
    const code = await Promise.race([done, untilSignal().then(() => 0)]);
    await gl.stop();
    await server?.close();
    line({ event: 'summary', delivered });
    return code;
  }
  const client = await startClient(cluster, {
    ring,
    learnFrom: startFlag(o.from),
    metrics,
    hooks: {
      onDeliver(ds) {
        for (const d of ds) {
          if (delivered >= count) break;
          delivered++;
          if (!o.quiet) line({ event: 'deliver', i: d.instance, p: d.proposer, s: d.seq, d: Buffer.from(d.data).toString('utf8') });
        }
        if (delivered >= count) finish(0);
      },
      onGapTrimmed(needed, oldest) {
        const e = new TrimmedGapError(needed, oldest);
        process.stderr.write(`ringcast learn: [${e.code}] ${e.message}\n`);
        finish(3);
      },
    },
  });
  const server = mport === undefined ? undefined : await metrics.serve(mport, '127.0.0.1', '--metrics-port').catch(async (e: Error) => {
    await client.stop();
    throw e;
  });
  line({ event: 'ready', id: client.id, pid: process.pid, metricsPort: server?.port ?? null });
  const code = await Promise.race([done, untilSignal().then(() => 0)]);
  await client.stop();
  await server?.close();
  line({ event: 'summary', delivered });
  return code;
}

const HELP_PROPOSE = `ringcast propose --cluster FILE [--ring R | --group G] [--count N] [--size B] [--outstanding K] [--prefix S] [--rate R]
  Proposes N values of B bytes (each starts with "S-k") with at most K outstanding (and at most R per
  second with --rate), then prints
  {"event":"done","acked":..,"failed":..,"seconds":..,"rate":..}.
`;

export async function runPropose(args: string[]): Promise<number> {
  const o = parse(args, {
    cluster: { type: 'string' },
    ring: { type: 'string' },
    count: { type: 'string' },
    size: { type: 'string' },
    outstanding: { type: 'string' },
    prefix: { type: 'string' },
    rate: { type: 'string' },
    group: { type: 'string' },
  });
  if (o.help) return void process.stdout.write(HELP_PROPOSE), 0;
  const rate = o.rate === undefined ? undefined : intFlag(o.rate, 'rate', 0, 1, 10_000_000);
  const cluster = loadCluster(need(o.cluster, '--cluster'));
  if (typeof o.group === 'string' && o.group.includes(',')) throw new ConfigError('--group', `takes one group name, got ${JSON.stringify(o.group)}`);
  const ring = typeof o.group === 'string' ? ringsOf(cluster, groupsFlag(cluster, o.group, '--group'))[0] : o.ring === undefined ? undefined : intFlag(o.ring, 'ring', 0, 0, 65535);
  const count = intFlag(o.count, 'count', 1000, 1, 100_000_000);
  const size = intFlag(o.size, 'size', 0, 0, cluster.settings.maxValueBytes);
  const outstanding = intFlag(o.outstanding, 'outstanding', 256, 1, cluster.settings.maxOutstanding);
  const prefix = typeof o.prefix === 'string' ? o.prefix : `p${process.pid}`;
  const client = await startClient(cluster, { ring, propose: true });
  line({ event: 'ready', id: client.id, pid: process.pid });
  const t0 = performance.now();
  const { acked, failed } = await proposeLoop(
    (d) => client.propose(d),
    Math.min(outstanding, count),
    (k) => {
      if (k >= count) return undefined;
      const head = `${prefix}-${k}`;
      return Buffer.from(size > head.length ? head.padEnd(size, '.') : head);
    },
    undefined,
    rate,
  );
  const seconds = (performance.now() - t0) / 1000;
  await client.stop();
  line({ event: 'done', acked, failed, seconds, rate: acked / seconds });
  return failed === 0 ? 0 : 1;
}
