/**
 * The client proxy applications embed. `submit(command)` runs the service's C-G function, gives the command
 * (clientId, seq), writes it into the pending batch of its group (one proposal per group per event-loop
 * turn, or sooner when the batch is full), and resolves with the first reply any replica sends; later replies
 * for the same seq are counted and dropped. With replyFrom 'one' a batch may name one replica (by reply
 * tag) to answer, and only that one sends replies for it. A command unanswered for `retryMs` is sent again with the
 * same id (replicas' session tables run it once); after `deadlineMs` it rejects with NoReplyError.
 * At most `maxOutstanding` commands are in flight; further submits wait (back-pressure), and past
 * `maxWaiting` waiting submits they reject with BackpressureError.
 */
import { randomInt } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { Counter, Gauge, type Registry } from 'prom-client';
import { createMulticaster, ringsOf, type Multicaster } from '@ringcast/multicast';
import { BackpressureError, ConfigError, RingcastError, ipv4Lookup, type ClusterConfig } from '@ringcast/ring-paxos';
import { WireError } from './protocol/bytes.js';
import { CommandBatchWriter, COMMAND_HEADER_BYTES, MAX_BATCH_COUNT, ReplyBatchReader, STATUS_OK } from './protocol/wire.js';
import { MAX_SPAN, SeqWindow } from './core/seq-window.js';
import { routeGroup, ServiceError, type Mode, type Service } from './service.js';
import { checkReplicaGroups } from './replica.js';

/** No replica answered a command within its deadline (it may or may not have run). */
export class NoReplyError extends RingcastError {
  constructor(
    readonly seq: number,
    deadlineMs: number,
  ) {
    super('ERR_RINGCAST_NO_REPLY', `no replica answered command ${seq} within ${deadlineMs} ms`);
    this.name = 'NoReplyError';
  }
}

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

export interface ClientProxyOptions<C, R> {
  service: Service<C, R, unknown>;
  mode: Mode;
  /** Partitions (worker threads per replica) in psmr mode; ignored in smr. */
  workers?: number;
  /** Address to receive replies on (IPv4; replicas send replies here). */
  host?: string;
  /** 48-bit client id; default random. Two live clients must not share one. */
  clientId?: number;
  maxOutstanding?: number;
  maxWaiting?: number;
  retryMs?: number;
  deadlineMs?: number;
  /** Most seqs between the oldest command still waiting and a new one (at most the replicas' maxReplies). */
  maxSpan?: number;
  /** Byte bound of one proposal (default: the ring's maxValueBytes less room for batching headers). */
  maxBatchBytes?: number;
  /** Register client metrics here (reply latency, retries, duplicate replies dropped, outstanding). */
  registry?: Registry;
  /**
   * 'all' (default): every replica answers every command and the client keeps the first reply, so each
   * command gets the faster replica's answer. 'one': ask one replica to answer, the first that answered
   * (picked again every second, and whenever a command needs a retry; a retry asks every replica): reply
   * traffic that does not grow with the replicas, but a command waits for that replica, and for a retry
   * when it dies. On the 2-core build machine 'all' had the lower latency (bench/README.md, session 3).
   */
  replyFrom?: 'one' | 'all';
}

export interface ClientStats {
  submitted: number;
  replied: number;
  errors: number;
  retries: number;
  duplicateReplies: number;
  noReply: number;
  batches: number;
  malformedReplies: number;
}

/** Called once with the reply, or with the error (a typed error reply, NoReplyError, a stop). */
export type ReplyCallback<R> = (err: Error | null, reply?: R, latencyMs?: number) => void;

interface Pending<C, R> {
  seq: number;
  cmd: C;
  group: string;
  first: number;
  sent: number;
  cb: ReplyCallback<R>;
  /** Last sent in a batch that asked every replica to answer: its first reply may pick the replier. */
  askedAll: boolean;
}

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
  const svc = opts.service;
  const mode = opts.mode;
  if (mode !== 'smr' && mode !== 'psmr') throw new ConfigError('mode', `must be 'smr' or 'psmr', got ${JSON.stringify(mode)}`);
  const partitions = mode === 'smr' ? 1 : (opts.workers ?? 2);
  checkReplicaGroups(cluster, mode, partitions);
  const num = (v: number | undefined, name: string, d: number, min: number, max: number): number => {
    const x = v ?? d;
    if (!Number.isInteger(x) || x < min || x > max) throw new ConfigError(name, `must be an integer in ${min}..${max}, got ${String(v)}`);
    return x;
  };
  const maxOutstanding = num(opts.maxOutstanding, 'maxOutstanding', 8192, 1, 16384);
  // Replicas cache the replies of every seq from the client's floor up (maxReplies, 16384 by default, per
  // stream). A retry must find its reply, so a new command is admitted only while its seq is less than
  // maxSpan past the oldest command still waiting.
  const maxSpan = num(opts.maxSpan, 'maxSpan', 16384, maxOutstanding, MAX_SPAN);
  const maxWaiting = num(opts.maxWaiting, 'maxWaiting', 65536, 0, 1 << 24);
  const retryMs = num(opts.retryMs, 'retryMs', 1000, 1, 600_000);
  const deadlineMs = num(opts.deadlineMs, 'deadlineMs', 10_000, retryMs, 3_600_000);
  const maxBatchBytes = num(opts.maxBatchBytes, 'maxBatchBytes', Math.min(cluster.settings.maxValueBytes - 1024, 24_576), COMMAND_HEADER_BYTES + 64, cluster.settings.maxValueBytes - 256);
  const clientId = num(opts.clientId, 'clientId', randomInt(1, 2 ** 47), 1, 2 ** 48 - 1);
  const replyFrom = opts.replyFrom ?? 'all';
  if (replyFrom !== 'one' && replyFrom !== 'all') throw new ConfigError('replyFrom', `must be 'one' or 'all', got ${JSON.stringify(replyFrom)}`);
  const one = replyFrom === 'one';
  const host = opts.host ?? '127.0.0.1';
  if (!/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(host) || host.split('.').some((x) => Number(x) > 255) || host === '0.0.0.0') {
    throw new ConfigError('host', `must be the IPv4 address replicas can reach this client at (not 0.0.0.0), got '${host}'`);
  }
  for (const g of mode === 'smr' ? ['g0'] : [...Array.from({ length: partitions }, (_, i) => `g${i}`), 'gall']) ringsOf(cluster, [g]);

  const sock: Socket = createSocket({ type: 'udp4', recvBufferSize: 8 << 20, lookup: ipv4Lookup });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, host, () => resolve());
  });
  sock.on('error', () => {});
  const replyPort = sock.address().port;
  const mc: Multicaster = createMulticaster(cluster);

  const stats: ClientStats = { submitted: 0, replied: 0, errors: 0, retries: 0, duplicateReplies: 0, noReply: 0, batches: 0, malformedReplies: 0 };
  // In flight by seq: a ring of maxSpan slots (room() keeps every new seq within maxSpan of the oldest).
  const outstanding = new SeqWindow<Pending<C, R>>(maxSpan);
  const waiting: Array<() => void> = [];
  let waitHead = 0;
  let nextSeq = 1;
  let stopped = false;
  const writers = new Map<string, CommandBatchWriter>();
  const dirty = new Set<string>();
  let flushScheduled = false;
  // The replica asked to answer (its reply tag; 0: every replica), and when it was picked.
  let replier = 0;
  let pickedAt = 0;
  /** Ask every replica again, the batches being written included; the next reply picks one. */
  const askEveryone = (): void => {
    replier = 0;
    for (const g of dirty) writers.get(g)!.setReplier(0);
  };

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
        this.set(outstanding.size);
      },
    });
  }

  /** Hand a result to the caller; an exception in the caller's callback must not stop the reply loop. */
  const settle = (p: Pending<C, R>, err: Error | null, reply?: R, ms?: number): void => {
    try {
      p.cb(err, reply, ms);
    } catch (e) {
      process.nextTick(() => {
        throw e;
      });
    }
  };

  const floor = (): number => outstanding.oldest() ?? nextSeq;

  const flushGroup = (group: string): void => {
    const w = writers.get(group)!;
    dirty.delete(group);
    if (w.count === 0) return;
    const data = w.finish();
    w.count = 0;
    stats.batches++;
    // Loss is covered by the command retry; the ring proposer retries on its own as well.
    mc.multicast(group, data).catch(() => {});
  };
  const flushAll = (): void => {
    flushScheduled = false;
    if (stopped) return;
    for (const g of [...dirty]) flushGroup(g);
  };

  const writerOf = (group: string): CommandBatchWriter => {
    let w = writers.get(group);
    if (!w) {
      w = new CommandBatchWriter();
      writers.set(group, w);
    }
    if (!dirty.has(group)) {
      w.begin({ clientId, replyHost: host, replyPort, floor: floor(), replier });
      dirty.add(group);
    }
    return w;
  };
  /** Append one command to `w`; on failure nothing of it stays in the batch. */
  const append = (w: CommandBatchWriter, p: Pending<C, R>): void => {
    w.beginCommand(p.seq);
    try {
      svc.writeCommand(w.w, p.cmd);
    } catch (e) {
      w.abortCommand();
      throw e;
    }
  };
  const tooLarge = (group: string): ServiceError => {
    if (writers.get(group)!.count === 0) dirty.delete(group);
    return new ServiceError('ERR_PSMR_COMMAND_TOO_LARGE', `the command does not fit in one proposal of ${maxBatchBytes} bytes (maxBatchBytes)`);
  };

  /** Write a command into its group's batch (new or retried); a batch never passes maxBatchBytes. */
  const enqueue = (p: Pending<C, R>): void => {
    p.askedAll = replier === 0;
    let w = writerOf(p.group);
    try {
      append(w, p);
    } catch (e) {
      if (w.count === 0) dirty.delete(p.group);
      throw e;
    }
    if (w.bytes > maxBatchBytes) {
      w.abortCommand();
      if (w.count === 0) throw tooLarge(p.group);
      // Send what the batch holds, and start the next one with this command.
      flushGroup(p.group);
      w = writerOf(p.group);
      append(w, p);
      if (w.bytes > maxBatchBytes) {
        w.abortCommand();
        throw tooLarge(p.group);
      }
    }
    w.endCommand();
    if (w.bytes >= maxBatchBytes || w.count >= MAX_BATCH_COUNT) flushGroup(p.group);
    else if (!flushScheduled) {
      flushScheduled = true;
      setImmediate(flushAll);
    }
  };

  // The oldest seq in flight is a slot lookup (amortized): no cached floor to keep in step.
  const room = (): boolean => outstanding.size < maxOutstanding && nextSeq - floor() < maxSpan;
  const admit = (): void => {
    while (waitHead < waiting.length && room()) waiting[waitHead++]!();
    if (waitHead > 1024 && waitHead * 2 > waiting.length) {
      waiting.splice(0, waitHead);
      waitHead = 0;
    }
  };

  sock.on('message', (buf: Buffer) => {
    let rd: ReplyBatchReader;
    try {
      rd = new ReplyBatchReader(buf);
      if (rd.clientId !== clientId) throw new WireError('reply for another client');
    } catch {
      stats.malformedReplies++;
      return;
    }
    const now = performance.now();
    try {
      while (rd.next()) {
        const p = outstanding.get(rd.seq);
        if (!p) {
          stats.duplicateReplies++;
          continue;
        }
        // Parse it all before settling: a reply that does not parse leaves the command to another
        // replica's reply or to the retry.
        let reply: R | undefined;
        let err: Error | null = null;
        try {
          if (rd.status === STATUS_OK) reply = svc.readReply(rd.r, p.cmd);
          else {
            const r = rd.r;
            const code = r.latin1(r.u16('code length'), 'code');
            const msg = r.utf8(r.u16('message length'), 'message');
            err = new ServiceError(code, msg);
          }
        } catch {
          stats.malformedReplies++;
          continue;
        }
        outstanding.delete(rd.seq);
        stats.replied++;
        // Pick only from a command every replica was asked to answer: a reply to a batch that named the
        // old replier would pick it again, whatever the others would have done.
        if (replier === 0 && one && p.askedAll && rd.replyByte !== 0) {
          replier = rd.replyByte;
          pickedAt = now;
        }
        const ms = now - p.first;
        latency?.observe(ms / 1000);
        if (err) stats.errors++;
        settle(p, err, reply, ms);
      }
    } catch {
      stats.malformedReplies++;
    }
    admit();
  });

  const timer = setInterval(
    () => {
      const now = performance.now();
      // Pick the replica to answer again now and then: the one picked may have become the slower one.
      if (replier !== 0 && now - pickedAt >= 1000) askEveryone();
      outstanding.forEach((p) => {
        // Oldest first: once an entry is younger than retryMs since its first send, so are the rest.
        if (now - p.first < retryMs) return false;
        if (now - p.first >= deadlineMs) {
          outstanding.delete(p.seq);
          stats.noReply++;
          settle(p, new NoReplyError(p.seq, deadlineMs));
          return true;
        }
        if (now - p.sent >= retryMs) {
          p.sent = now;
          stats.retries++;
          // The replica asked to answer may be gone: the retry, and what follows it, asks every replica.
          if (replier !== 0) askEveryone();
          try {
            enqueue(p);
          } catch (e) {
            // The command no longer encodes (the caller changed it after submitting): give up on it.
            outstanding.delete(p.seq);
            settle(p, e as Error);
          }
        }
        return true;
      });
      admit();
    },
    Math.max(5, Math.min(50, Math.floor(retryMs / 4))),
  );
  timer.unref();

  const start = (cmd: C, cb: ReplyCallback<R>): void => {
    if (stopped) return cb(new RingcastError('ERR_RINGCAST_STOPPED', 'the client proxy is stopped'));
    let group: string;
    try {
      const g = svc.group(cmd, partitions);
      if (g !== 'all' && !(Number.isInteger(g) && g >= 0 && g < partitions)) {
        return cb(new ServiceError('ERR_PSMR_BAD_GROUP', `C-G of service '${svc.name}' gave ${JSON.stringify(g)}: expected 'all' or an integer in 0..${partitions - 1}`));
      }
      group = routeGroup(mode, g);
    } catch (e) {
      return cb(e as Error);
    }
    const now = performance.now();
    const p: Pending<C, R> = { seq: nextSeq, cmd, group, first: now, sent: now, cb, askedAll: true };
    try {
      enqueue(p);
    } catch (e) {
      return cb(e as Error);
    }
    nextSeq++;
    stats.submitted++;
    outstanding.add(p);
  };

  const send = (cmd: C, cb: ReplyCallback<R>): void => {
    if (waitHead === waiting.length && room()) return start(cmd, cb);
    if (waiting.length - waitHead >= maxWaiting) return cb(new BackpressureError(maxWaiting));
    waiting.push(() => start(cmd, cb));
  };

  return {
    clientId,
    replyPort,
    stats,
    outstanding: () => outstanding.size,
    get replier() {
      return replier;
    },
    submit(cmd: C): Promise<R> {
      return new Promise<R>((resolve, reject) => send(cmd, (err, r) => (err ? reject(err) : resolve(r as R))));
    },
    send,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      dirty.clear();
      const err = new RingcastError('ERR_RINGCAST_STOPPED', 'the client proxy stopped before a reply');
      for (const p of outstanding.clear()) settle(p, err);
      for (let i = waitHead; i < waiting.length; i++) waiting[i]!();
      waiting.length = 0;
      await mc.stop();
      await new Promise<void>((r) => sock.close(() => r()));
    },
  };
}
