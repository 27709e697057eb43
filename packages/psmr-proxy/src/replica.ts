/**
 * The server proxy: a replica process hosting n worker threads. The main thread only starts the workers,
 * serves one /metrics (the workers' registries, gathered on each scrape) and /state, and stops them. It is
 * not on the command path: each worker receives, merges, executes and replies by itself.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { Worker } from 'node:worker_threads';
import { pack, unpack } from 'msgpackr';
import { AggregatorRegistry, Gauge, Registry } from 'prom-client';
import { ConfigError, hasName, listenError, RingcastError, type ClusterConfig } from '@ringcast/ring-paxos';
import { SharedBarrier } from './barrier.js';
import { MAX_REPLY_TAG } from './protocol/wire.js';
import { kvKeyHash } from './services/kv.js';
import { ALL_GROUP, groupName, type Mode } from './service.js';
import { loadService } from './service-loader.js';
import type { FromWorker, ToWorker, WorkerCheckpoint, WorkerInit, WorkerState } from './worker.js';

export interface ReplicaOptions {
  mode: Mode;
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
}

/** What a replica checkpoint holds (msgpack): every worker's part, taken at the same merge round. */
export interface ReplicaCheckpoint {
  format: 'ringcast-psmr-checkpoint';
  version: 1;
  replica: string;
  service: string;
  mode: Mode;
  workers: number;
  /** Replicated-state parameters the state was built with: a replica resuming from it must use the same. */
  mergeM: number;
  maxClients: number;
  maxReplies: number;
  round: number;
  parts: WorkerCheckpoint[];
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
export function readCheckpoint(bytes: Uint8Array, want: { mode: Mode; workers: number; service: string; mergeM: number; maxClients: number; maxReplies: number }): ReplicaCheckpoint {
  let c: ReplicaCheckpoint;
  try {
    c = unpack(bytes) as ReplicaCheckpoint;
  } catch (e) {
    throw new ConfigError('resume', `not a checkpoint: ${(e as Error).message}`);
  }
  if (!c || c.format !== 'ringcast-psmr-checkpoint' || c.version !== 1 || !Array.isArray(c.parts)) throw new ConfigError('resume', 'not a version 1 ringcast checkpoint');
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
  mode: Mode;
  workers: number;
  metricsPort?: number;
  /** The merge round of the checkpoint this replica started from (ReplicaOptions.resume). */
  resumedRound?: number;
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

/** Check that the cluster has the groups a replica of this mode and width needs, each on its own ring. */
export function checkReplicaGroups(cluster: ClusterConfig, mode: Mode, workers: number): void {
  const names = mode === 'smr' ? [groupName(0)] : [...Array.from({ length: workers }, (_, i) => groupName(i)), ALL_GROUP];
  const seen = new Map<number, string>();
  for (const g of names) {
    const r = hasName(cluster.groups, g) ? cluster.groups[g] : undefined;
    if (r === undefined) throw new ConfigError(`groups.${g}`, `a ${mode} replica with ${workers} worker(s) needs group '${g}' in the cluster file`);
    const other = seen.get(r);
    if (other !== undefined) throw new ConfigError(`groups.${g}`, `shares ring ${r} with group '${other}'; P-SMR needs one ring per group`);
    seen.set(r, g);
  }
  if (mode === 'psmr' && workers > 1 && cluster.settings.lambda <= 0) {
    throw new ConfigError('settings.lambda', 'psmr workers merge two rings: set rate leveling (lambda > 0)');
  }
}

export async function startReplica(cluster: ClusterConfig, opts: ReplicaOptions): Promise<Replica> {
  const mode = opts.mode;
  if (mode !== 'smr' && mode !== 'psmr') throw new ConfigError('mode', `must be 'smr' or 'psmr', got ${JSON.stringify(mode)}`);
  const workers = mode === 'smr' ? 1 : (opts.workers ?? 2);
  if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new ConfigError('workers', `must be an integer in 1..64, got ${String(opts.workers)}`);
  checkReplicaGroups(cluster, mode, workers);
  const service = opts.service ?? 'kv';
  const svc = await loadService(service); // fail here, on the main thread, with a clear error
  const maxClients = opts.maxClients ?? 65536;
  const maxReplies = opts.maxReplies ?? 16384;
  const resume = opts.resume ? readCheckpoint(opts.resume, { mode, workers, service, mergeM: cluster.mergeM, maxClients, maxReplies }) : undefined;
  if (resume && !checkpointable(svc)) throw new ConfigError('resume', `service '${service}' cannot be checkpointed (${whyNot(svc)})`);
  const slotBytes = opts.slotBytes ?? 8 << 20;
  const sab = SharedBarrier.allocate(workers, slotBytes);
  // A shared-state service gets memory of its own, laid out once here before any worker runs.
  const stateSab = svc.state === 'shared' ? new SharedArrayBuffer(svc.sharedBytes ?? 0) : undefined;
  if (stateSab) svc.initShared?.(stateSab);
  const id = opts.id ?? `replica-${process.pid}`;
  const replyTag = opts.replyTag ?? replyTagOf(id);
  if (!Number.isInteger(replyTag) || replyTag < 1 || replyTag > MAX_REPLY_TAG) throw new ConfigError('replyTag', `must be an integer in 1..${MAX_REPLY_TAG}, got ${String(opts.replyTag)}`);
  const threads: Worker[] = [];
  const pending = new Map<number, (m: FromWorker) => void>();
  let nextId = 1;
  let failed: RingcastError | undefined;
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
            const e = new RingcastError(m.code, `worker ${w}: ${m.message}`);
            reject(e);
            fail(e);
          } else if (m.type === 'metrics' || m.type === 'state' || m.type === 'round' || m.type === 'checkpoint') pending.get(m.id)?.(m);
        });
        t.on('error', (e) => {
          const err = new RingcastError('ERR_PSMR_WORKER', `worker ${w}: ${e.message}`);
          reject(err);
          fail(err);
        });
        t.once('exit', () => {
          exited.add(t);
          // A worker terminated before it was ready (another one failed): never wait for it.
          reject(failed ?? new RingcastError('ERR_PSMR_WORKER', `worker ${w} exited before it was ready`));
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
  let inFlight: Promise<Uint8Array> | undefined;
  const takeCheckpoint = async (): Promise<Uint8Array> => {
    if (!checkpointable(svc)) throw new RingcastError('ERR_PSMR_CHECKPOINT', `service '${service}' cannot be checkpointed (${whyNot(svc)})`);
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
        };
        return pack(c);
      }
      const p = parts[missing];
      why = `worker ${missing}: ${p === undefined ? 'no answer within 10 s' : p.passed ? `already past round ${round}` : p.error}`;
      if (p?.error && !p.passed) await new Promise((r) => setTimeout(r, 100));
    }
    throw new RingcastError('ERR_PSMR_CHECKPOINT', `no checkpoint after 6 tries (${why})`);
  };
  const checkpoint = (): Promise<Uint8Array> => {
    inFlight ??= takeCheckpoint().finally(() => (inFlight = undefined));
    return inFlight;
  };
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
      throw listenError(e, 'metricsPort', host, opts.metricsPort!);
    });
    const a = server.address();
    metricsPort = typeof a === 'object' && a ? a.port : undefined;
  }
  return {
    id,
    mode,
    workers,
    metricsPort,
    resumedRound: resume?.round,
    state,
    metricsText,
    checkpoint,
    async stop() {
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
