/**
 * A replica worker thread: the thread, its sockets, the barrier memory and the metrics around its
 * worker-core. It has its own learner sockets for the groups its mode subscribes it to (psmr: g_i and
 * g_all; no thread reads a stream for another), feeds what the merge delivers to its `WorkerCore` (which
 * runs it through the mode's scheduler), and replies to clients from its own socket. Its metrics live in
 * its own registry; the replica's main thread asks for them on each scrape.
 */
import { createSocket } from 'node:dgram';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { Counter, Gauge } from 'prom-client';
import { ERR, RingMetrics, ipv4Lookup, type ClusterConfig } from '@ringcast/ring-paxos';
import { startGroupLearner, type GroupDelivery, type ResumePoint } from '@ringcast/multicast';
import { SharedBarrier } from './barrier.js';
import { WorkerCore, type Delivery } from './core/worker-core.js';
import { modeNamed, type ModeName } from './modes/index.js';
import { loadService } from './service-loader.js';

export interface WorkerInit {
  cluster: ClusterConfig;
  replica: string;
  worker: number;
  workers: number;
  mode: ModeName;
  service: string;
  host: string;
  /** The barrier's memory. */
  sab: SharedArrayBuffer;
  /** A 'shared' service's state (separate from the barrier's memory). */
  stateSab?: SharedArrayBuffer;
  slotBytes: number;
  maxClients: number;
  maxReplies: number;
  /** The replica's reply tag (1..255). */
  replyTag: number;
  /** Start from this worker's part of another replica's checkpoint instead of the rings' first instance. */
  resume?: WorkerCheckpoint;
}

/**
 * One worker's part of a replica checkpoint, taken between merge rounds: the state after every command of
 * the rounds before `resume.round` and none after, and where its learner picks up from there.
 */
export interface WorkerCheckpoint {
  worker: number;
  resume: ResumePoint;
  state: Uint8Array;
  sessions: Uint8Array;
}

export type ToWorker = { type: 'metrics'; id: number } | { type: 'state'; id: number } | { type: 'round'; id: number } | { type: 'checkpoint'; id: number; round: number } | { type: 'stop' };
export type FromWorker =
  | { type: 'ready'; replyPort: number }
  | { type: 'metrics'; id: number; json: unknown }
  | { type: 'state'; id: number; state: WorkerState }
  | { type: 'round'; id: number; round: number | null }
  | { type: 'checkpoint'; id: number; checkpoint?: WorkerCheckpoint; passed?: boolean; error?: string }
  | { type: 'fatal'; code: string; message: string }
  | { type: 'stopped' };

export interface WorkerState {
  worker: number;
  executed: number;
  digest: string;
  delivered: number;
}

function counterFrom(reg: RingMetrics['registry'], name: string, help: string, label: string | undefined, read: () => Record<string, number> | number): void {
  new Counter({
    name,
    help,
    labelNames: label ? [label] : [],
    registers: [reg],
    collect() {
      this.reset();
      const v = read();
      if (typeof v === 'number') this.inc(v);
      else for (const [k, n] of Object.entries(v)) this.inc({ [label!]: k }, n);
    },
  });
}

async function run(): Promise<void> {
  const init = workerData as WorkerInit;
  const port = parentPort!;
  const post = (m: FromWorker): void => port.postMessage(m);
  let shutdown: (() => Promise<void>) | undefined;
  const fatal = (e: Error): void => {
    post({ type: 'fatal', code: (e as { code?: string }).code ?? ERR.PSMR_WORKER, message: e.message });
    // This worker cannot go on (nor can its replica): release its sockets.
    void shutdown?.();
  };
  const service = await loadService(init.service);
  const mode = modeNamed(init.mode);
  const partitions = mode.partitions(init.workers);
  // The replica checked the service can be checkpointed before it handed out a checkpoint's parts.
  const state = init.resume ? service.restore!(init.resume.state, init.worker, partitions) : service.createPartition(init.worker, partitions, init.stateSab);
  const sock = createSocket({ type: 'udp4', sendBufferSize: 4 << 20, lookup: ipv4Lookup });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, init.host, () => resolve());
  });
  sock.on('error', () => {});
  let sendErrors = 0;
  const onSent = (e: Error | null): void => {
    if (e) sendErrors++;
  };
  const barrier = partitions > 1 ? new SharedBarrier(init.sab, init.workers, init.worker, init.slotBytes) : undefined;
  const exec = mode.scheduler({
    service,
    worker: init.worker,
    workers: partitions,
    state,
    barrier,
    maxClients: init.maxClients,
    maxReplies: init.maxReplies,
    replyTag: init.replyTag,
    // As many g_all commands per barrier round as the shared slot holds in the worst case.
    roundSize: Math.max(1, Math.min(1024, Math.floor(init.slotBytes / (service.maxPartBytes ?? 65536)))),
    // The scheduler reuses its buffer: copy before the asynchronous send.
    send: (host, p, d) => sock.send(Buffer.from(d), p, host, onSent),
  });
  if (init.resume) exec.restoreSessions(init.resume.sessions);
  const metrics = new RingMetrics({ replica: init.replica, worker: String(init.worker) });
  const reg = metrics.registry;
  counterFrom(reg, 'ringcast_psmr_commands_total', 'Commands executed by this worker, by kind', 'kind', () => exec.stats.executed);
  counterFrom(reg, 'ringcast_psmr_command_errors_total', 'Commands answered with a typed error, by code', 'code', () => exec.stats.errors);
  counterFrom(reg, 'ringcast_psmr_duplicate_commands_total', 'Retried commands seen again: replayed from the session table (sent if this replica answers the batch) or dropped as stale', 'action', () => ({
    replied: exec.stats.duplicatesReplied,
    dropped: exec.stats.duplicatesDropped,
  }));
  counterFrom(reg, 'ringcast_psmr_malformed_batches_total', 'Command batches dropped as malformed', undefined, () => exec.stats.malformedBatches);
  counterFrom(reg, 'ringcast_psmr_barrier_rounds_total', 'g_all rounds this worker took part in', undefined, () => exec.stats.barrierRounds);
  counterFrom(reg, 'ringcast_psmr_barrier_waits_total', 'Barrier arrivals that had to wait', undefined, () => barrier?.stats.waits ?? 0);
  counterFrom(reg, 'ringcast_psmr_barrier_wait_seconds_total', 'Time spent waiting at the g_all barrier', undefined, () => (barrier?.stats.waitMs ?? 0) / 1000);
  counterFrom(reg, 'ringcast_psmr_reply_batches_total', 'Reply datagrams sent to clients', undefined, () => exec.stats.replyBatches);
  counterFrom(reg, 'ringcast_psmr_replies_left_to_others_total', 'Replies not sent: the client asked another replica to answer', undefined, () => exec.stats.repliesLeftToOthers);
  counterFrom(reg, 'ringcast_psmr_reply_send_errors_total', 'Reply datagrams the socket refused', undefined, () => sendErrors + exec.stats.sendErrors);
  counterFrom(reg, 'ringcast_psmr_session_evictions_total', 'Session-table evictions (least recently active clients, oldest cached replies)', 'what', () => ({
    clients: exec.sessions.reduce((a, x) => a + x.table.evictedClients, 0),
    replies: exec.sessions.reduce((a, x) => a + x.table.evictedReplies, 0),
  }));
  // How long this worker's event loop was held up (GC, a long batch, the CPU taken by others): the usual
  // cause of latency spikes. Quantiles over the time since the previous scrape.
  const LOOP_SAMPLE_MS = 10;
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_SAMPLE_MS });
  loopDelay.enable();
  // The histogram holds the time between samples: the delay is what exceeds the sampling period.
  const lateBy = (ns: number): number => Math.max(0, ns / 1e9 - LOOP_SAMPLE_MS / 1000);
  new Gauge({
    name: 'ringcast_psmr_event_loop_delay_seconds',
    help: "Worker event-loop delay since the previous scrape (quantile 0.5, 0.99, 1 = max)",
    labelNames: ['quantile'],
    registers: [reg],
    collect() {
      if (loopDelay.count > 0) {
        this.set({ quantile: '0.5' }, lateBy(loopDelay.percentile(50)));
        this.set({ quantile: '0.99' }, lateBy(loopDelay.percentile(99)));
        this.set({ quantile: '1' }, lateBy(loopDelay.max));
      }
      loopDelay.reset();
    },
  });
  new Gauge({
    name: 'ringcast_psmr_sessions',
    help: 'Client sessions in the session tables (own group and g_all)',
    labelNames: ['stream'],
    registers: [reg],
    collect() {
      for (const x of exec.sessions) this.set({ stream: x.stream }, x.table.size);
    },
  });
  let stopping = false;
  const groups = mode.workerGroups(init.worker);
  const learner = await startGroupLearner(init.cluster, {
    groups,
    from: 'start',
    resume: init.resume?.resume,
    metrics,
    onError: (e) => fatal(e),
  });
  const groupOfRing = new Map(groups.map((g) => [init.cluster.groups[g]!, g]));
  // Checkpoints: the one asked for (at most one at a time), answered when the core says it is due.
  let asked: number | undefined;
  let idleCheck: NodeJS.Timeout | undefined;
  const answer = (reply: Omit<Extract<FromWorker, { type: 'checkpoint' }>, 'type' | 'id'>): void => {
    post({ type: 'checkpoint', id: asked!, ...reply });
    asked = undefined;
    core.cancelCheckpoint();
    if (idleCheck) clearInterval(idleCheck);
    idleCheck = undefined;
  };
  /** Take the checkpoint asked for now: every delivery before its round has run and none after. */
  const snapshotNow = (round: number): void => {
    try {
      const resume = learner.resumePoint(round);
      if (!resume) return answer({ error: `no resume point for round ${round} in what this worker's learner kept` });
      answer({ checkpoint: { worker: init.worker, resume, state: service.snapshot!(state), sessions: exec.sessionsSnapshot() } });
    } catch (e) {
      answer({ error: (e as Error).message });
    }
  };
  const core = new WorkerCore({
    scheduler: exec,
    groupOf: (ring) => groupOfRing.get(ring)!,
    mergeM: init.cluster.mergeM,
    startRound: init.resume?.resume.round,
    checkpointReady: snapshotNow,
  });
  /** Round -1: this worker's current merge round (a replica of one worker needs no common round). */
  const onCheckpoint = (id: number, asks: number): void => {
    if (asked !== undefined) answer({ error: 'superseded by a newer request' });
    const round = asks >= 0 ? asks : learner.mergedRound();
    asked = id;
    if (stopping) return answer({ error: 'the worker is stopping' });
    if (round === undefined) return answer({ error: 'the worker is not merging yet' });
    if (!core.askCheckpoint(round)) return answer({ passed: true });
    // No delivery of that round may ever come (an idle worker): the core takes it once the merge has passed
    // the round and everything it released has run.
    idleCheck = setInterval(() => core.idle(learner.mergedRound(), learner.peek() !== undefined), 2);
  };
  port.on('message', (m: ToWorker) => {
    if (m.type === 'metrics') {
      void reg.getMetricsAsJSON().then((json) => post({ type: 'metrics', id: m.id, json }));
    } else if (m.type === 'round') {
      post({ type: 'round', id: m.id, round: learner.mergedRound() ?? null });
    } else if (m.type === 'checkpoint') {
      onCheckpoint(m.id, m.round);
    } else if (m.type === 'state') {
      const digest = [service.digest(state), ...exec.sessions.map((x) => x.table.digest())].join('/');
      post({ type: 'state', id: m.id, state: { worker: init.worker, executed: exec.executedTotal, digest, delivered: core.delivered } });
    } else if (m.type === 'stop') {
      void shutdown!().then(() => {
        post({ type: 'stopped' });
        port.close();
      });
    }
  });
  let closed: Promise<void> | undefined;
  shutdown = () =>
    (closed ??= (async () => {
      stopping = true;
      if (idleCheck) clearInterval(idleCheck);
      await learner.stop();
      sock.close();
    })());
  post({ type: 'ready', replyPort: sock.address().port });
  // The rest of an instance, queued behind the delivery the iterator gave (the learner queues them together).
  const take = (d: GroupDelivery | undefined): Delivery | undefined => d && { ring: d.ring, pos: d.pos, data: d.delivery.data };
  const source = { peek: () => take(learner.peek()), poll: () => take(learner.poll()) };
  for await (const d of learner) {
    const p = core.run({ ring: d.ring, pos: d.pos, data: d.delivery.data }, source);
    if (p) await p;
    if (stopping) break;
  }
}

run().catch((e: Error) => {
  parentPort?.postMessage({ type: 'fatal', code: (e as { code?: string }).code ?? ERR.PSMR_WORKER, message: e.stack ?? e.message } satisfies FromWorker);
});
