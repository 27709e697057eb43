/**
 * The client proxy applications embed: the driver of `core/client-core.ts`, which holds the protocol (C-G
 * routing through the mode, (clientId, seq), per-group batching, first reply wins, retries with the same id,
 * deadlines, the outstanding and waiting bounds). This file owns the reply socket, the multicaster, the
 * timer that ticks the core, the flush once per event-loop turn, the metrics, and the callbacks and promises
 * the core's outcomes are handed to.
 */
import { randomInt } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { Counter, Gauge, type Registry } from 'prom-client';
import { createMulticaster, ringsOf, type Multicaster } from '@ringcast/multicast';
import { ipv4Lookup, type ClusterConfig } from '@ringcast/ring-paxos';
import { ClientCore, clientSettings, type ClientBatch, type ClientSettings, type ClientStats, type ClientStep, type Settled } from './core/client-core.js';
import { modeNamed } from './modes/index.js';
import type { Service } from './service.js';
import type { ModeName } from './modes/index.js';
import { checkReplicaGroups } from './replica.js';

export { NoReplyError } from './core/client-core.js';
export type { ClientStats } from './core/client-core.js';

/**
 * A Prometheus histogram that costs a few comparisons per observation (prom-client's observe hashes labels
 * each time, which showed up at several percent of a load generator's CPU). Exported in prom-client's format.
 */
class FastHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly buckets: number[],
  ) {
    this.counts = new Float64Array(buckets.length);
  }
  observe(v: number): void {
    const b = this.buckets;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    if (i < b.length) this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
  get(): { name: string; help: string; type: string; aggregator: string; values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> } {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
    let acc = 0;
    this.buckets.forEach((le, i) => {
      acc += this.counts[i]!;
      values.push({ labels: { le }, value: acc, metricName: `${this.name}_bucket` });
    });
    values.push({ labels: { le: '+Inf' }, value: this.count, metricName: `${this.name}_bucket` });
    values.push({ labels: {}, value: this.sum, metricName: `${this.name}_sum` });
    values.push({ labels: {}, value: this.count, metricName: `${this.name}_count` });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

export interface ClientProxyOptions<C, R> extends Partial<ClientSettings> {
  service: Service<C, R, unknown>;
  mode: ModeName;
  /** Partitions (worker threads per replica) in psmr mode; ignored in smr. */
  workers?: number;
  /** Register client metrics here (reply latency, retries, duplicate replies dropped, outstanding). */
  registry?: Registry;
}

/** Called once with the reply, or with the error (a typed error reply, NoReplyError, a stop). */
export type ReplyCallback<R> = (err: Error | null, reply?: R, latencyMs?: number) => void;

export interface ClientProxy<C, R> {
  readonly clientId: number;
  /** The UDP port replies come to. */
  readonly replyPort: number;
  readonly stats: ClientStats;
  submit(command: C): Promise<R>;
  /**
   * The same without a promise per command (for load generators and hot loops): `cb` gets the reply, or
   * the error, and the latency in milliseconds. Past the outstanding bound the command waits like submit's.
   */
  send(command: C, cb: ReplyCallback<R>): void;
  /** Commands in flight. */
  outstanding(): number;
  /** The reply tag of the replica asked to answer (0: every replica). */
  readonly replier: number;
  stop(): Promise<void>;
}

export async function createClientProxy<C, R>(cluster: ClusterConfig, opts: ClientProxyOptions<C, R>): Promise<ClientProxy<C, R>> {
  const mode = modeNamed(opts.mode);
  const partitions = mode.partitions(opts.workers ?? 2);
  checkReplicaGroups(cluster, opts.mode, partitions);
  const settings = clientSettings(opts, cluster.settings.maxValueBytes, randomInt(1, 2 ** 47));
  for (const g of mode.replicaGroups(partitions)) ringsOf(cluster, [g]);

  const sock: Socket = createSocket({ type: 'udp4', recvBufferSize: 8 << 20, lookup: ipv4Lookup });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, settings.host, () => resolve());
  });
  sock.on('error', () => {});
  const replyPort = sock.address().port;
  const mc: Multicaster = createMulticaster(cluster);
  const core = new ClientCore<C, R, ReplyCallback<R>>({ ...settings, service: opts.service, mode, partitions, replyPort });
  const stats = core.stats;

  const reg = opts.registry;
  const latency = reg ? new FastHistogram('ringcast_client_reply_latency_seconds', 'Time from submit to the first reply', [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5]) : undefined;
  if (latency) reg!.registerMetric(latency as unknown as Parameters<Registry['registerMetric']>[0]);
  if (reg) {
    const c = (name: string, help: string, read: () => number): void =>
      void new Counter({
        name,
        help,
        registers: [reg],
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    c('ringcast_client_commands_total', 'Commands submitted', () => stats.submitted);
    c('ringcast_client_retries_total', 'Commands sent again after retryMs without a reply', () => stats.retries);
    c('ringcast_client_duplicate_replies_total', 'Replies dropped because another replica answered first', () => stats.duplicateReplies);
    c('ringcast_client_no_reply_total', 'Commands that reached their deadline without a reply', () => stats.noReply);
    c('ringcast_client_error_replies_total', 'Commands answered with a typed error', () => stats.errors);
    new Gauge({
      name: 'ringcast_client_outstanding',
      help: 'Commands in flight',
      registers: [reg],
      collect() {
        this.set(core.outstanding);
      },
    });
  }

  /** Hand a result to the caller; an exception in the caller's callback must not stop the reply loop. */
  const settle = (s: Settled<R, ReplyCallback<R>>): void => {
    try {
      s.tag(s.err, s.reply, s.ms);
    } catch (e) {
      process.nextTick(() => {
        throw e;
      });
    }
  };
  const multicast = (batches: readonly ClientBatch[]): void => {
    // Loss is covered by the command retry; the ring proposer retries on its own as well.
    for (const b of batches) mc.multicast(b.group, b.data).catch(() => {});
  };
  // One proposal per group per event-loop turn: what the core is writing goes out once the turn ends.
  let flushScheduled = false;
  const flush = (): void => {
    flushScheduled = false;
    multicast(core.flush());
  };
  /** Carry out a step of the core: send its batches, then hand its outcomes to the callers. */
  const apply = (step: ClientStep<R, ReplyCallback<R>>): void => {
    if (step.batches.length > 0) multicast(step.batches);
    if (!flushScheduled && core.unsent) {
      flushScheduled = true;
      setImmediate(flush);
    }
    for (const s of step.settled) {
      if (s.ms !== undefined) latency?.observe(s.ms / 1000);
      settle(s);
    }
  };

  sock.on('message', (buf: Buffer) => apply(core.onReply(buf, performance.now())));
  const timer = setInterval(() => apply(core.tick(performance.now())), Math.max(5, Math.min(50, Math.floor(settings.retryMs / 4))));
  timer.unref();

  const send = (cmd: C, cb: ReplyCallback<R>): void => apply(core.submit(cmd, cb, performance.now()));

  return {
    clientId: core.clientId,
    replyPort,
    stats,
    outstanding: () => core.outstanding,
    get replier() {
      return core.replier;
    },
    submit(cmd: C): Promise<R> {
      return new Promise<R>((resolve, reject) => send(cmd, (err, r) => (err ? reject(err) : resolve(r as R))));
    },
    send,
    async stop() {
      if (core.stopped) return;
      clearInterval(timer);
      apply(core.stop());
      await mc.stop();
      await new Promise<void>((r) => sock.close(() => r()));
    },
  };
}
