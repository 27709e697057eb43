/**
 * The server proxy: a replica process hosting n worker threads. The main thread only starts the workers,
 * serves one /metrics (the workers' registries, gathered on each scrape) and /state, and stops them. It is
 * not on the command path: each worker receives, merges, executes and replies by itself.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { Worker } from 'node:worker_threads';
import { pack, unpack } from 'msgpackr';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import { ERR, ConfigError, hasName, listenError, RingcastError, startClient, type ClusterConfig, type RingClient } from '@ringcast/ring-paxos';
import { CheckpointStore } from './checkpoint-store.js';
import { SharedBarrier } from './barrier.js';
import { MAX_REPLY_TAG } from './protocol/wire.js';
import { kvKeyHash } from './services/kv.js';
import { modeNamed, type Mode, type ModeName } from './modes/index.js';
import { loadService } from './service-loader.js';
import type { FromWorker, ToWorker, WorkerCheckpoint, WorkerInit, WorkerState } from './worker.js';

export interface ReplicaOptions {
  /** A registered mode's name (`MODES`): smr or psmr. */
  mode: ModeName;
  /** Worker threads (psmr); smr always runs one. */
  workers?: number;
  /** Service: 'kv' or a module path whose default export is a Service. */
  service?: string;
  /** Name in metrics labels and /state. */
  id?: string;
  /**
   * This replica's reply tag, 1..255: a client that asks one replica to answer names it by this tag. Give
   * every replica of a cluster its own; the default is a hash of the id (two replicas that share a tag just
   * both answer the clients that pick it).
   */
  replyTag?: number;
  /** Address the workers bind their sockets to. */
  host?: string;
  /** Serve /metrics and /state here (0: any free port; absent: no HTTP server). */
  metricsPort?: number;
  /** What a metrics-port error names (a CLI passes its flag); default 'metricsPort'. */
  metricsPortName?: string;
  /** Bytes of shared memory per worker for g_all partial results (default 8 MiB; it sets the round size). */
  slotBytes?: number;
  /** Session table bounds (replicated state: give every replica the same values). */
  maxClients?: number;
  maxReplies?: number;
  /** Called when a worker fails (the replica cannot go on without it). */
  onFatal?: (e: RingcastError) => void;
  /**
   * Start from another replica's checkpoint (the bytes its `checkpoint()` or `GET /checkpoint` gave) instead
   * of replaying the rings from their first instance: for a replica that replaces one that crashed once the
   * acceptors have trimmed their logs. Same mode, workers and service as the replica it came from.
   */
  resume?: Uint8Array;
  /**
   * Write a checkpoint to this directory periodically (CheckpointStore: the GET /checkpoint bytes with a
   * crc32, fsynced and renamed into place; the newest 2 kept) and, after each, place a retention hold on
   * every ring of the replica at the older of the two, so the acceptors keep what a restart from either
   * needs. A replica started with a directory that holds checkpoints resumes from the newest that checks
   * (`resume`, when given, wins); a damaged file is refused (onWarning) and the one before it used.
   */
  checkpointDir?: string;
  /** How often to write one: every `seconds`, or once `commands` more were executed (summed over workers); default 30 s. */
  checkpointEvery?: { seconds: number } | { commands: number };
  /** Something an operator should see that does not stop the replica (a damaged checkpoint file, a failed write). */
  onWarning?: (e: RingcastError) => void;
}

/** What a replica checkpoint holds (msgpack): every worker's part, taken at the same merge round. */
export interface ReplicaCheckpoint {
  format: 'ringcast-psmr-checkpoint';
  version: 1;
  replica: string;
  service: string;
  mode: ModeName;
  workers: number;
  /** Replicated-state parameters the state was built with: a replica resuming from it must use the same. */
  mergeM: number;
  maxClients: number;
  maxReplies: number;
  round: number;
  parts: WorkerCheckpoint[];
  /** clusterFingerprint of the cluster the checkpoint was taken in (absent in files written before it was). */
  cluster?: string;
}

/**
 * What identifies the rings a checkpoint's resume instances refer to: ring ids with their acceptors and the
 * groups on them (not addresses or settings, which an operator may change). 16 hex digits of a sha256.
 */
export function clusterFingerprint(cluster: ClusterConfig): string {
  const rings = [...cluster.rings].sort((a, b) => a.id - b.id).map((r) => [r.id, [...r.acceptors].sort((x, y) => x - y)]);
  const groups = Object.entries(cluster.groups).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash('sha256').update(JSON.stringify({ rings, groups })).digest('hex').slice(0, 16);
}

/**
 * The token a checkpoint request must carry (header `x-ringcast-token`) when the cluster has a secret: a
 * checkpoint is the whole replicated state, so it goes only to whoever holds the cluster file.
 */
export function checkpointToken(secret: string): string {
  return createHmac('sha256', secret).update('ringcast-psmr-checkpoint-v1').digest('hex');
}

/** Whether a request's token (header value) lets it have a checkpoint (always, with no cluster secret). */
export function checkpointAllowed(secret: string | undefined, token: string | string[] | undefined): boolean {
  if (!secret) return true;
  if (typeof token !== 'string') return false;
  const want = Buffer.from(checkpointToken(secret));
  const got = Buffer.from(token);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** Checkpoints need snapshot/restore, and partitioned state (a shared one is written by every worker at once). */
function checkpointable(svc: { state: string; snapshot?: unknown; restore?: unknown }): boolean {
  return svc.state === 'partitioned' && svc.snapshot !== undefined && svc.restore !== undefined;
}
function whyNot(svc: { state: string }): string {
  return svc.state !== 'partitioned' ? `its state is ${svc.state}: only partitioned state can be checkpointed` : 'it has no snapshot/restore';
}

/** Decode and check a checkpoint against the replica that would start from it (errors name `resume`). */
export function readCheckpoint(bytes: Uint8Array, want: { cluster: string; mode: ModeName; workers: number; service: string; mergeM: number; maxClients: number; maxReplies: number }): ReplicaCheckpoint {
  let c: ReplicaCheckpoint;
  try {
    c = unpack(bytes) as ReplicaCheckpoint;
  } catch (e) {
    throw new ConfigError('resume', `not a checkpoint: ${(e as Error).message}`);
  }
  if (!c || c.format !== 'ringcast-psmr-checkpoint' || c.version !== 1 || !Array.isArray(c.parts)) throw new ConfigError('resume', 'not a version 1 ringcast checkpoint');
  if (c.cluster !== undefined && c.cluster !== want.cluster) {
    throw new ConfigError(
      'resume',
      `the checkpoint was taken against another cluster (rings, acceptors and groups fingerprint ${String(c.cluster)}; this cluster's is ${want.cluster}): start this replica with an empty --checkpoint-dir, or from a live peer with --from-replica URL`,
    );
  }
  if (c.mode !== want.mode || c.workers !== want.workers) {
    throw new ConfigError('resume', `the checkpoint is of a ${c.mode} replica with ${c.workers} worker(s); this one is ${want.mode} with ${want.workers}`);
  }
  if (c.service !== want.service) throw new ConfigError('resume', `the checkpoint is of service '${c.service}', this replica runs '${want.service}'`);
  for (const k of ['mergeM', 'maxClients', 'maxReplies'] as const) {
    if (c[k] !== want[k]) throw new ConfigError('resume', `the checkpoint was taken with ${k} ${String(c[k])}, this replica has ${want[k]}`);
  }
  if (c.parts.length !== c.workers || c.parts.some((p, w) => !p || p.worker !== w)) throw new ConfigError('resume', 'the checkpoint lacks a worker\'s part');
  return c;
}

export interface Replica {
  id: string;
  mode: ModeName;
  workers: number;
  metricsPort?: number;
  /** The merge round of the checkpoint this replica started from (ReplicaOptions.resume, or checkpointDir). */
  resumedRound?: number;
  /** The checkpoint file of checkpointDir it started from. */
  resumedFile?: string;
  /** Per-worker executed count and state digest (equal across replicas at the same stream point). */
  state(): Promise<WorkerState[]>;
  /** The Prometheus text of every worker plus the main thread. */
  metricsText(): Promise<string>;
  /**
   * A checkpoint of this replica (ReplicaCheckpoint, msgpack): each worker's state and sessions at one merge
   * round just ahead of where the workers are, and where their learners resume. The replica keeps running.
   */
  checkpoint(): Promise<Uint8Array>;
  stop(): Promise<void>;
}

/** The default reply tag of a replica id: FNV-1a of its UTF-8 bytes (kv's key hash), folded into 1..255. */
export function replyTagOf(id: string): number {
  return (kvKeyHash(id) % MAX_REPLY_TAG) + 1;
}

/**
 * Check that the cluster has the groups a replica of this mode and width needs, each on its own ring, and
 * what else the mode refuses. `mode` is a mode or a registered mode's name (ConfigError on `mode` if none).
 */
export function checkReplicaGroups(cluster: ClusterConfig, mode: Mode | ModeName, workers: number): void {
  const m = typeof mode === 'string' ? modeNamed(mode) : mode;
  const seen = new Map<number, string>();
  for (const g of m.replicaGroups(workers)) {
    const r = hasName(cluster.groups, g) ? cluster.groups[g] : undefined;
    if (r === undefined) throw new ConfigError(`groups.${g}`, `a ${m.name} replica with ${workers} worker(s) needs group '${g}' in the cluster file`);
    const other = seen.get(r);
    if (other !== undefined) throw new ConfigError(`groups.${g}`, `shares ring ${r} with group '${other}'; P-SMR needs one ring per group`);
    seen.set(r, g);
  }
  m.checkCluster(cluster, workers);
}

export async function startReplica(cluster: ClusterConfig, opts: ReplicaOptions): Promise<Replica> {
  const m = modeNamed(opts.mode);
  const mode = m.name;
  const workers = m.partitions(opts.workers ?? 2);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new ConfigError('workers', `must be an integer in 1..64, got ${String(opts.workers)}`);
  checkReplicaGroups(cluster, m, workers);
  const service = opts.service ?? 'kv';
  const svc = await loadService(service); // fail here, on the main thread, with a clear error
  const maxClients = opts.maxClients ?? 65536;
  const maxReplies = opts.maxReplies ?? 16384;
  if (opts.checkpointDir !== undefined && !checkpointable(svc)) throw new ConfigError('checkpointDir', `service '${service}' cannot be checkpointed (${whyNot(svc)})`);
  const store = opts.checkpointDir !== undefined ? new CheckpointStore(opts.checkpointDir) : undefined;
  let refusedFiles = 0;
  const own = !opts.resume && store ? store.readNewest((e) => (refusedFiles++, opts.onWarning?.(e))) : undefined;
  const fingerprint = clusterFingerprint(cluster);
  const want = { cluster: fingerprint, mode, workers, service, mergeM: cluster.mergeM, maxClients, maxReplies };
  let resume: ReplicaCheckpoint | undefined;
  try {
    resume = opts.resume ? readCheckpoint(opts.resume, want) : own ? readCheckpoint(own.payload, want) : undefined;
  } catch (e) {
    // A file of the directory that checks but does not fit: say which file and which flag.
    if (own && e instanceof ConfigError) throw new ConfigError('--checkpoint-dir', `${own.file}: ${e.message.replace(/^resume: /, '')}`);
    throw e;
  }
  if (opts.resume && store) {
    // Another replica's checkpoint starts a new life: the previous life's files (another id, unheld) leave the rotation.
    const moved = store.moveAside();
    if (moved.length > 0) opts.onWarning?.(new RingcastError(ERR.PSMR_CHECKPOINT, `started from another checkpoint: the previous files of ${store.dir} were moved aside (${moved.join(', ')})`));
  }
  if (resume && !checkpointable(svc)) throw new ConfigError('resume', `service '${service}' cannot be checkpointed (${whyNot(svc)})`);
  const slotBytes = opts.slotBytes ?? 8 << 20;
  const sab = SharedBarrier.allocate(workers, slotBytes);
  // A shared-state service gets memory of its own, laid out once here before any worker runs.
  const stateSab = svc.state === 'shared' ? new SharedArrayBuffer(svc.sharedBytes ?? 0) : undefined;
  if (stateSab) svc.initShared?.(stateSab);
  // A replica back from its own checkpoint directory is the same replica: same id (its holds name it).
  const id = opts.id ?? (own ? resume!.replica : `replica-${process.pid}`);
  const replyTag = opts.replyTag ?? replyTagOf(id);
  if (!Number.isInteger(replyTag) || replyTag < 1 || replyTag > MAX_REPLY_TAG) throw new ConfigError('replyTag', `must be an integer in 1..${MAX_REPLY_TAG}, got ${String(opts.replyTag)}`);
  const threads: Worker[] = [];
  const pending = new Map<number, (m: FromWorker) => void>();
  let nextId = 1;
  let failed: RingcastError | undefined;
  const workerError = (w: number, code: string, message: string): RingcastError =>
    new RingcastError(
      code,
      code === ERR.TRIMMED && own
        ? `worker ${w}: ${message}. The checkpoint ${own.file} is older than what the acceptors keep (its retention hold was broken past the log's bounds, or never placed): restore this replica from a live peer with --from-replica URL`
        : `worker ${w}: ${message}`,
    );
  const fail = (e: RingcastError): void => {
    if (failed) return;
    failed = e;
    // The other workers would wait for this one at the next g_all barrier: stop them all.
    for (const t of threads) void t.terminate();
    opts.onFatal?.(e);
  };
  const readies: Promise<void>[] = [];
  const exited = new Set<Worker>();
  for (let w = 0; w < workers; w++) {
    const init: WorkerInit = {
      cluster,
      replica: id,
      worker: w,
      workers,
      mode,
      service,
      host: opts.host ?? '127.0.0.1',
      sab,
      stateSab,
      slotBytes,
      maxClients,
      maxReplies,
      replyTag,
      resume: resume?.parts[w],
    };
    const t = new Worker(new URL('./worker.js', import.meta.url), { workerData: init });
    threads.push(t);
    readies.push(
      new Promise<void>((resolve, reject) => {
        t.on('message', (m: FromWorker) => {
          if (m.type === 'ready') resolve();
          else if (m.type === 'fatal') {
            const e = workerError(w, m.code, m.message);
            reject(e);
            fail(e);
          } else if (m.type === 'metrics' || m.type === 'state' || m.type === 'round' || m.type === 'checkpoint') pending.get(m.id)?.(m);
        });
        t.on('error', (e) => {
          const err = new RingcastError(ERR.PSMR_WORKER, `worker ${w}: ${e.message}`);
          reject(err);
          fail(err);
        });
        t.once('exit', () => {
          exited.add(t);
          // A worker terminated before it was ready (another one failed): never wait for it.
          reject(failed ?? new RingcastError(ERR.PSMR_WORKER, `worker ${w} exited before it was ready`));
        });
      }),
    );
  }
  const terminate = (): Promise<unknown> => Promise.all(threads.map((t) => t.terminate()));
  try {
    await Promise.all(readies);
    if (failed) throw failed;
  } catch (e) {
    await terminate();
    throw e;
  }
  const ask = <T extends FromWorker>(t: Worker, msg: (id: number) => ToWorker, timeoutMs = 2000): Promise<T | undefined> =>
    new Promise((resolve) => {
      const rid = nextId++;
      const timer = setTimeout(() => {
        pending.delete(rid);
        resolve(undefined);
      }, timeoutMs);
      pending.set(rid, (m) => {
        clearTimeout(timer);
        pending.delete(rid);
        resolve(m as T);
      });
      t.postMessage(msg(rid));
    });
  const main = new Registry();
  main.setDefaultLabels({ replica: id });
  new Gauge({
    name: 'ringcast_psmr_workers',
    help: 'Worker threads of this replica',
    registers: [main],
    collect() {
      this.set(workers);
    },
  });
  const metricsText = async (): Promise<string> => {
    const parts = await Promise.all(threads.filter((t) => !exited.has(t)).map((t) => ask<Extract<FromWorker, { type: 'metrics' }>>(t, (rid) => ({ type: 'metrics', id: rid }))));
    type Jsons = Parameters<typeof AggregatorRegistry.aggregate>[0];
    const jsons = parts.filter((p) => p !== undefined).map((p) => p.json) as Jsons;
    jsons.push((await main.getMetricsAsJSON()) as Jsons[number]);
    return AggregatorRegistry.aggregate(jsons).metrics();
  };
  const state = async (): Promise<WorkerState[]> => {
    const parts = await Promise.all(threads.map((t) => (exited.has(t) ? undefined : ask<Extract<FromWorker, { type: 'state' }>>(t, (rid) => ({ type: 'state', id: rid })))));
    return parts.map((p, w) => p?.state ?? { worker: w, executed: -1, digest: 'unavailable', delivered: -1 });
  };
  // One checkpoint at a time: a request while one is being taken gets that one. The round asked for is a
  // little ahead of the furthest worker, so no worker has passed it; a worker that did anyway makes the next
  // try look further ahead. A replica of one worker takes it at that worker's own current round.
  let inFlight: Promise<{ c: ReplicaCheckpoint; bytes: Uint8Array }> | undefined;
  const takeCheckpoint = async (): Promise<{ c: ReplicaCheckpoint; bytes: Uint8Array }> => {
    if (!checkpointable(svc)) throw new RingcastError(ERR.PSMR_CHECKPOINT, `service '${service}' cannot be checkpointed (${whyNot(svc)})`);
    const ahead = Math.max(1, Math.ceil((cluster.settings.lambda * 0.02) / cluster.mergeM));
    let why = '';
    for (let attempt = 0; attempt < 6; attempt++) {
      if (failed) throw failed;
      let round = -1;
      if (workers > 1) {
        const rounds = await Promise.all(threads.map((t) => ask<Extract<FromWorker, { type: 'round' }>>(t, (rid) => ({ type: 'round', id: rid }))));
        if (rounds.some((r) => r === undefined || r.round === null)) {
          why = 'a worker is not merging yet';
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
        round = Math.max(...rounds.map((r) => r!.round!)) + ahead * 2 ** attempt;
      }
      const parts = await Promise.all(threads.map((t) => ask<Extract<FromWorker, { type: 'checkpoint' }>>(t, (rid) => ({ type: 'checkpoint', id: rid, round }), 10_000)));
      const missing = parts.findIndex((p) => !p?.checkpoint);
      if (missing < 0) {
        const c: ReplicaCheckpoint = {
          format: 'ringcast-psmr-checkpoint',
          version: 1,
          replica: id,
          service,
          mode,
          workers,
          mergeM: cluster.mergeM,
          maxClients,
          maxReplies,
          round: parts[0]!.checkpoint!.resume.round,
          parts: parts.map((p) => p!.checkpoint!),
          cluster: fingerprint,
        };
        return { c, bytes: pack(c) };
      }
      const p = parts[missing];
      why = `worker ${missing}: ${p === undefined ? 'no answer within 10 s' : p.passed ? `already past round ${round}` : p.error}`;
      if (p?.error && !p.passed) await new Promise((r) => setTimeout(r, 100));
    }
    throw new RingcastError(ERR.PSMR_CHECKPOINT, `no checkpoint after 6 tries (${why})`);
  };
  const checkpointWith = (): Promise<{ c: ReplicaCheckpoint; bytes: Uint8Array }> => {
    inFlight ??= takeCheckpoint().finally(() => (inFlight = undefined));
    return inFlight;
  };
  const checkpoint = (): Promise<Uint8Array> => checkpointWith().then((x) => x.bytes);
  let server: Server | undefined;
  let metricsPort: number | undefined;
  if (opts.metricsPort !== undefined) {
    server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics') {
        metricsText().then(
          (text) => res.writeHead(200, { 'content-type': main.contentType }).end(text),
          (e: Error) => res.writeHead(500).end(e.message),
        );
      } else if (path === '/checkpoint' && req.method === 'GET') {
        if (!checkpointAllowed(cluster.secret, req.headers['x-ringcast-token'])) {
          res.writeHead(401, { 'content-type': 'text/plain' }).end('a checkpoint needs the x-ringcast-token header of the cluster secret\n');
          return;
        }
        checkpoint().then(
          (bytes) => res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length }).end(bytes),
          (e: Error) => res.writeHead(503, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
        );
      } else if (path === '/state') {
        state().then((s) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ replica: id, mode, workers: s })));
      } else res.writeHead(404).end('try /metrics, /state or /checkpoint\n');
    });
    const host = opts.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(opts.metricsPort, host, () => resolve());
    }).catch(async (e: Error) => {
      // The workers already hold their UDP sockets: a replica that cannot serve stops them before it throws.
      await Promise.all(threads.map((t) => t.terminate()));
      throw listenError(e, opts.metricsPortName ?? 'metricsPort', host, opts.metricsPort!);
    });
    const a = server.address();
    metricsPort = typeof a === 'object' && a ? a.port : undefined;
  }
  // Started last, once nothing else can fail: a replica that does not start leaves no timer or socket behind.
  const durable = store ? durableCheckpoints(cluster, store, { id, mode: m, workers, host: opts.host ?? '127.0.0.1', every: opts.checkpointEvery ?? { seconds: 30 }, registry: main, refusedFiles, resumedFrom: own ? resume : undefined, take: checkpointWith, state, warn: (e) => opts.onWarning?.(e) }) : undefined;
  return {
    id,
    mode,
    workers,
    metricsPort,
    resumedRound: resume?.round,
    resumedFile: own?.file,
    state,
    metricsText,
    checkpoint,
    async stop() {
      await durable?.stop();
      await Promise.all(
        threads.filter((t) => !exited.has(t)).map(
          (t) =>
            new Promise<void>((resolve) => {
              const timer = setTimeout(() => void t.terminate().then(() => resolve()), 1500);
              t.once('exit', () => {
                clearTimeout(timer);
                resolve();
              });
              t.postMessage({ type: 'stop' } satisfies ToWorker);
            }),
        ),
      );
      await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    },
  };
}

/** A retention hold's holder id: the replica id, or a digest of it when longer than a hold allows (64 bytes). */
function holderOf(id: string): string {
  return Buffer.byteLength(id) <= 64 ? id : `sha256:${createHash('sha256').update(id).digest('hex').slice(0, 40)}`;
}

/** Per ring, the first instance a restart from the checkpoint needs (the lowest over its workers). */
function instancesOf(c: ReplicaCheckpoint): Map<number, number> {
  const out = new Map<number, number>();
  for (const p of c.parts) for (const r of p.resume.rings) out.set(r.ring, Math.min(out.get(r.ring) ?? Infinity, r.instance));
  return out;
}

/** Per ring, the lower of two checkpoints' resume instances (the older of the two kept files, or the newest alone). */
function holdPoint(older: Map<number, number> | undefined, now: Map<number, number>): Map<number, number> {
  const at = new Map(now);
  if (older) for (const [ring, i] of older) at.set(ring, Math.min(i, at.get(ring) ?? i));
  return at;
}

/**
 * The oldest instance ring `ring` still keeps, as its coordinator reports it to a learner asking from
 * `from` (one Progress / Status exchange of a short-lived learner; undefined: no answer within `ms`).
 */
async function oldestKept(cluster: ClusterConfig, ring: number, from: number, host: string, ms: number): Promise<number | undefined> {
  let oldest: number | undefined;
  const probe = await startClient(cluster, { ring, learnFrom: from, host, hooks: { onGapTrimmed: (_n, o) => (oldest = o) } });
  try {
    const learner = probe.driver.node.learner!;
    for (const end = Date.now() + ms; Date.now() < end && oldest === undefined && !learner.started; ) await new Promise((r) => setTimeout(r, 10));
    // Let a trimmed start reach the hook (the driver reports it on its next turn).
    if (learner.started && oldest === undefined) await new Promise((r) => setTimeout(r, 2 * cluster.tickMs));
    return oldest ?? (learner.started ? from : undefined);
  } finally {
    await probe.stop();
  }
}

/** How long a replica waits for a ring to say how far it keeps its log after a hold. */
const HOLD_CHECK_MS = 3000;

interface DurableOptions {
  id: string;
  mode: Mode;
  workers: number;
  host: string;
  every: { seconds: number } | { commands: number };
  registry: Registry;
  refusedFiles: number;
  /** The checkpoint of this directory the replica started from: the older of the two kept until the next. */
  resumedFrom?: ReplicaCheckpoint;
  take: () => Promise<{ c: ReplicaCheckpoint; bytes: Uint8Array }>;
  state: () => Promise<WorkerState[]>;
  warn: (e: RingcastError) => void;
}

/**
 * The periodic durable checkpoints of a replica and the retention holds that go with them. After each
 * checkpoint file is durable, a hold is proposed on every ring of the replica at the older of the two
 * checkpoints kept (so the previous file stays usable if the newest is found damaged), through a proposer
 * of this replica's own; a newer hold of the same holder releases the older one.
 */
function durableCheckpoints(cluster: ClusterConfig, store: CheckpointStore, o: DurableOptions): { stop(): Promise<void> } {
  const holder = holderOf(o.id);
  const groups = Array.from({ length: o.workers }, (_, w) => o.mode.workerGroups(w)).flat();
  const rings = [...new Set(groups.map((g) => cluster.groups[g]!))];
  const st = { written: 0, failures: 0, lastTime: 0, lastBytes: 0, lastRound: -1, holds: 0, holdFailures: 0, holdsBroken: 0 };
  const reg = o.registry;
  const gauge = (name: string, help: string, read: () => number): void =>
    void new Gauge({ name, help, registers: [reg], collect() { this.set(read()); } });
  const counter = (name: string, help: string, read: () => number): void =>
    void new Counter({ name, help, registers: [reg], collect() { this.reset(); this.inc(read()); } });
  gauge('ringcast_psmr_checkpoint_last_time_seconds', 'When the last durable checkpoint was written (Unix time; 0: none yet)', () => st.lastTime);
  gauge('ringcast_psmr_checkpoint_last_bytes', 'Size of the last durable checkpoint file', () => st.lastBytes);
  gauge('ringcast_psmr_checkpoint_last_round', 'Merge round of the last durable checkpoint (-1: none yet)', () => st.lastRound);
  counter('ringcast_psmr_checkpoints_written_total', 'Durable checkpoint files written', () => st.written);
  counter('ringcast_psmr_checkpoint_failures_total', 'Durable checkpoints that could not be taken or written', () => st.failures);
  counter('ringcast_psmr_checkpoint_files_refused_total', 'Checkpoint files refused at start as damaged (crc or trailer)', () => o.refusedFiles);
  counter('ringcast_psmr_retention_holds_total', 'Retention holds placed on the rings after a durable checkpoint', () => st.holds);
  counter('ringcast_psmr_retention_hold_failures_total', 'Retention holds not in force (not acknowledged, or broken when placed)', () => st.holdFailures);
  counter('ringcast_psmr_retention_holds_broken_total', 'Acknowledged retention holds found broken at once (the ring had trimmed past the instance)', () => st.holdsBroken);
  let older = o.resumedFrom ? instancesOf(o.resumedFrom) : undefined;
  let clients: RingClient[] | undefined;
  /** Every ring acknowledged this process's last hold: the trim point is pinned at or below it. */
  let pinned = false;
  /** Place a hold on every ring at `at`; true when one was found broken at once. */
  const placeHolds = async (at: Map<number, number>): Promise<boolean> => {
    clients ??= await Promise.all(rings.map((ring) => startClient(cluster, { ring, propose: true, host: o.host })));
    const point = (ring: number): number => {
      const x = at.get(ring);
      if (x === undefined) throw new RingcastError(ERR.PSMR_HOLD, `no resume instance for ring ${ring} in the checkpoint`);
      return x;
    };
    const brokenBefore = st.holdsBroken;
    // An acknowledged hold is decided, not necessarily in force: if the trim point had already passed the
    // instance it names, it was broken at once. Ask the ring how far it keeps before counting on it.
    const results = await Promise.allSettled(
      rings.map(async (ring, k) => {
        const x = point(ring);
        await clients![k]!.hold(holder, x);
        const oldest = await oldestKept(cluster, ring, x, o.host, HOLD_CHECK_MS);
        if (oldest === undefined) throw new Error(`ring ${ring} did not say how far it keeps its log within ${HOLD_CHECK_MS} ms`);
        if (oldest > x) {
          st.holdsBroken++;
          throw new Error(`the hold of ring ${ring} at instance ${x} was broken: the ring keeps from instance ${oldest} on`);
        }
      }),
    );
    pinned = results.every((r) => r.status === 'fulfilled');
    for (const r of results) {
      if (r.status === 'fulfilled') st.holds++;
      else {
        st.holdFailures++;
        o.warn(new RingcastError(ERR.PSMR_HOLD, `retention hold not in force: ${(r.reason as Error).message}`));
      }
    }
    return st.holdsBroken > brokenBefore;
  };
  let baseline: number | undefined;
  const due = async (): Promise<boolean> => {
    if ('seconds' in o.every) return true;
    const executed = (await o.state()).reduce((a, w) => a + Math.max(0, w.executed), 0);
    baseline ??= executed;
    if (executed - baseline < o.every.commands) return false;
    baseline = executed;
    return true;
  };
  const once = async (): Promise<void> => {
    if (!(await due())) return;
    let written: { file: string; bytes: number };
    let c: ReplicaCheckpoint;
    let placedFirst: Map<number, number> | undefined;
    try {
      const taken = await o.take();
      c = taken.c;
      // With no hold of ours in force yet (first checkpoint, or the last hold failed), hold right away, before
      // the write: the hold must be decided while the acceptors still keep the instances it names, and they
      // may trim up to logRetain behind the slowest learner meanwhile. Later holds name instances at or above
      // the one in force, which pins the trim point below them.
      // A hold found broken names a checkpoint no restart can use (the ring trimmed past it): the next names
      // the newest alone rather than the same instance again.
      if (!pinned) {
        placedFirst = holdPoint(older, instancesOf(c));
        if (await placeHolds(placedFirst)) older = undefined;
      }
      written = await store.write(taken.bytes);
    } catch (e) {
      st.failures++;
      o.warn(new RingcastError(ERR.PSMR_CHECKPOINT, `durable checkpoint failed: ${(e as Error).message}`));
      return;
    }
    st.written++;
    st.lastTime = Date.now() / 1000;
    st.lastBytes = written.bytes;
    st.lastRound = c.round;
    const now = instancesOf(c);
    const at = holdPoint(older, now);
    older = now;
    // The hold just placed before the write names these instances already.
    if (pinned && placedFirst && [...at].every(([ring, x]) => placedFirst!.get(ring) === x)) return;
    await placeHolds(at);
  };
  const periodMs = 'seconds' in o.every ? o.every.seconds * 1000 : 250;
  let stopped = false;
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  const loop = (): void => {
    timer = setTimeout(() => {
      running = once().finally(() => {
        running = undefined;
        if (!stopped) loop();
      });
    }, periodMs);
  };
  loop();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      // Stopping the proposers first fails a hold still waiting for its acknowledgement at once.
      await Promise.all((clients ?? []).map((c) => c.stop()));
      await running;
    },
  };
}
