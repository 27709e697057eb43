/**
 * The client proxy's protocol (pure): everything between `submit(command)` and its reply, fed commands,
 * reply datagrams and ticks, and returning the batches to multicast and the commands it settles. The
 * driver (`client-proxy.ts`) owns the socket, the timer, the metrics and the promises.
 *
 * A command is routed by the mode from the service's C-G answer, given (clientId, seq) and written into the
 * pending batch of its group: one proposal per group per `flush()` (the driver flushes once per event-loop
 * turn), or sooner when the batch is full (`maxBatchBytes`, `MAX_BATCH_COUNT`). The first reply any replica
 * sends settles it; later ones are counted (`duplicateReplies`) and dropped. With replyFrom 'one' a batch
 * names one replica (by reply tag) to answer. A command unanswered for `retryMs` is written again with the
 * same id (replicas' session tables run it once); after `deadlineMs` it settles with NoReplyError. At most
 * `maxOutstanding` commands are in flight, all within `maxSpan` seqs of the oldest; further submits wait,
 * and past `maxWaiting` waiting submits they settle with BackpressureError.
 */
import { ERR, BackpressureError, ConfigError, RingcastError } from '@ringcast/ring-paxos';
import { WireError, type ByteReader } from '../protocol/bytes.js';
import { CommandBatchWriter, COMMAND_HEADER_BYTES, MAX_BATCH_COUNT, ReplyBatchReader, STATUS_ERROR, STATUS_OK } from '../protocol/wire.js';
import type { Mode } from '../modes/mode.js';
import { ServiceError, type Service } from '../service.js';
import { MAX_SPAN, SeqWindow } from './seq-window.js';

/** No replica answered a command within its deadline (it may or may not have run). */
export class NoReplyError extends RingcastError {
  constructor(
    readonly seq: number,
    deadlineMs: number,
  ) {
    super(ERR.NO_REPLY, `no replica answered command ${seq} within ${deadlineMs} ms`);
    this.name = 'NoReplyError';
  }
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

/** The client's bounds and identity (options given to `clientSettings` may leave any out: the default). */
export interface ClientSettings {
  /** 48-bit client id; default random. Two live clients must not share one. */
  clientId: number;
  /** Address to receive replies on (IPv4; replicas send replies here). */
  host: string;
  maxOutstanding: number;
  maxWaiting: number;
  retryMs: number;
  deadlineMs: number;
  /** Most seqs between the oldest command still waiting and a new one (at most the replicas' maxReplies). */
  maxSpan: number;
  /** Byte bound of one proposal (default: the ring's maxValueBytes less room for batching headers). */
  maxBatchBytes: number;
  /**
   * 'all' (default): every replica answers every command and the client keeps the first reply, so each
   * command gets the faster replica's answer. 'one': ask one replica to answer, the first that answered
   * (picked again every second, and whenever a command needs a retry; a retry asks every replica): reply
   * traffic that does not grow with the replicas, but a command waits for that replica, and for a retry
   * when it dies. On the 2-core build machine 'all' had the lower latency (bench/README.md).
   */
  replyFrom: 'one' | 'all';
}

/**
 * Check the client's options (a ConfigError naming the field) and fill in the defaults. `maxValueBytes` is
 * the rings' proposal bound; `randomClientId` is the id to take when none is given.
 */
export function clientSettings(o: Partial<ClientSettings>, maxValueBytes: number, randomClientId: number): ClientSettings {
  const num = (v: number | undefined, name: string, d: number, min: number, max: number): number => {
    const x = v ?? d;
    if (!Number.isInteger(x) || x < min || x > max) throw new ConfigError(name, `must be an integer in ${min}..${max}, got ${String(v)}`);
    return x;
  };
  const maxOutstanding = num(o.maxOutstanding, 'maxOutstanding', 8192, 1, 16384);
  // Replicas cache the replies of every seq from the client's floor up (maxReplies, 16384 by default, per
  // stream). A retry must find its reply, so a new command is admitted only while its seq is less than
  // maxSpan past the oldest command still waiting.
  const maxSpan = num(o.maxSpan, 'maxSpan', 16384, maxOutstanding, MAX_SPAN);
  const maxWaiting = num(o.maxWaiting, 'maxWaiting', 65536, 0, 1 << 24);
  const retryMs = num(o.retryMs, 'retryMs', 1000, 1, 600_000);
  const deadlineMs = num(o.deadlineMs, 'deadlineMs', 10_000, retryMs, 3_600_000);
  const maxBatchBytes = num(o.maxBatchBytes, 'maxBatchBytes', Math.min(maxValueBytes - 1024, 24_576), COMMAND_HEADER_BYTES + 64, maxValueBytes - 256);
  const clientId = num(o.clientId, 'clientId', randomClientId, 1, 2 ** 48 - 1);
  const replyFrom = o.replyFrom ?? 'all';
  if (replyFrom !== 'one' && replyFrom !== 'all') throw new ConfigError('replyFrom', `must be 'one' or 'all', got ${JSON.stringify(replyFrom)}`);
  const host = o.host ?? '127.0.0.1';
  if (!/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(host) || host.split('.').some((x) => Number(x) > 255) || host === '0.0.0.0') {
    throw new ConfigError('host', `must be the IPv4 address replicas can reach this client at (not 0.0.0.0), got '${host}'`);
  }
  return { clientId, host, maxOutstanding, maxWaiting, retryMs, deadlineMs, maxSpan, maxBatchBytes, replyFrom };
}

export interface ClientCoreConfig<C, R> extends ClientSettings {
  service: Service<C, R, unknown>;
  mode: Mode;
  /** Worker threads per replica (the C-G function's partitions). */
  partitions: number;
  /** The UDP port replies come to. */
  replyPort: number;
}

/** One proposal to multicast to `group`: a command batch (its own copy of the bytes). */
export interface ClientBatch {
  readonly group: string;
  readonly data: Uint8Array;
}

/**
 * A command's outcome, for the caller who submitted it with `tag`: the reply, or the error (a typed error
 * reply, NoReplyError, BackpressureError, a stop), and for an answered command the milliseconds from its
 * admission to the reply.
 */
export interface Settled<R, T> {
  readonly tag: T;
  readonly err: Error | null;
  readonly reply: R | undefined;
  readonly ms: number | undefined;
}

/** What one call gives the driver: batches to multicast now, then outcomes to hand to callers, in order. */
export interface ClientStep<R, T> {
  readonly batches: readonly ClientBatch[];
  readonly settled: ReadonlyArray<Settled<R, T>>;
}

const NONE: readonly never[] = [];
/** The step of a call that sent and settled nothing (most submits: the command joined a pending batch). */
const NOTHING: ClientStep<never, never> = { batches: NONE, settled: NONE };

/** A command in flight; it becomes its own Settled record when it settles. */
interface Pending<C, R, T> extends Settled<R, T> {
  readonly seq: number;
  readonly cmd: C;
  group: string;
  /** When it was admitted (latency and the deadline count from here). */
  readonly first: number;
  /** When it was last written into a batch. */
  sent: number;
  /** Last sent in a batch that asked every replica to answer: its first reply may pick the replier. */
  askedAll: boolean;
  err: Error | null;
  reply: R | undefined;
  ms: number | undefined;
}

interface Waiting<C, T> {
  readonly cmd: C;
  readonly tag: T;
}

/** How often the replica asked to answer is picked again (replyFrom 'one'). */
const REPICK_MS = 1000;

export class ClientCore<C, R, T> {
  readonly stats: ClientStats = { submitted: 0, replied: 0, errors: 0, retries: 0, duplicateReplies: 0, noReply: 0, batches: 0, malformedReplies: 0 };
  /** In flight by seq: a ring of maxSpan slots (room() keeps every new seq within maxSpan of the oldest). */
  private readonly inflight: SeqWindow<Pending<C, R, T>>;
  private readonly waiting: Array<Waiting<C, T>> = [];
  private waitHead = 0;
  private nextSeq = 1;
  private halted = false;
  private readonly writers = new Map<string, CommandBatchWriter>();
  /** Groups whose batch has been begun and not yet sent. */
  private readonly dirty = new Set<string>();
  private replierTag = 0;
  private pickedAt = 0;
  private readonly one: boolean;
  /** Output of the call under way; allocated only when it has something. */
  private batches: ClientBatch[] | undefined;
  private settled: Array<Settled<R, T>> | undefined;

  constructor(private readonly cfg: ClientCoreConfig<C, R>) {
    this.one = cfg.replyFrom === 'one';
    this.inflight = new SeqWindow(cfg.maxSpan);
  }

  get clientId(): number {
    return this.cfg.clientId;
  }

  /** `stop()` was called: every submit now settles with a stop error. */
  get stopped(): boolean {
    return this.halted;
  }

  /** Commands in flight. */
  get outstanding(): number {
    return this.inflight.size;
  }

  /** The reply tag of the replica asked to answer (0: every replica). */
  get replier(): number {
    return this.replierTag;
  }

  /** A batch is being written: the driver should `flush()` before the event loop turns again. */
  get unsent(): boolean {
    return this.dirty.size > 0;
  }

  /**
   * A new command for the caller `tag`: written into its group's batch (the step carries the batches that
   * filled), or waiting for room, or settled at once with an error (a bad C-G answer, a command that does
   * not fit in a proposal, BackpressureError past maxWaiting, a stopped client).
   */
  submit(cmd: C, tag: T, now: number): ClientStep<R, T> {
    if (this.halted || (this.waitHead === this.waiting.length && this.room())) this.start(cmd, tag, now);
    else if (this.waiting.length - this.waitHead >= this.cfg.maxWaiting) this.fail(tag, new BackpressureError(this.cfg.maxWaiting));
    else this.waiting.push({ cmd, tag });
    return this.step();
  }

  /**
   * A reply datagram. Each reply settles its command if it is still in flight (the first reply wins); one
   * for a command no longer in flight counts as a duplicate. A datagram that does not decode, or is for
   * another client, counts as malformed; so does a reply that does not parse, which leaves its command to
   * another replica's reply or to the retry. Settled commands make room for waiting ones.
   */
  onReply(bytes: Uint8Array, now: number): ClientStep<R, T> {
    let rd: ReplyBatchReader;
    try {
      rd = new ReplyBatchReader(bytes);
      if (rd.clientId !== this.clientId) throw new WireError('reply for another client');
    } catch {
      this.stats.malformedReplies++;
      return NOTHING;
    }
    try {
      while (rd.next()) {
        const p = this.inflight.get(rd.seq);
        if (!p) {
          this.stats.duplicateReplies++;
          continue;
        }
        // Parse it all before settling: a reply that does not parse leaves the command to another
        // replica's reply or to the retry.
        let settles: boolean;
        try {
          settles = this.readReply(p, rd.status, rd.r);
        } catch {
          this.stats.malformedReplies++;
          continue;
        }
        if (!settles) continue;
        this.inflight.delete(rd.seq);
        this.stats.replied++;
        // Pick only from a command every replica was asked to answer: a reply to a batch that named the
        // old replier would pick it again, whatever the others would have done.
        if (this.replierTag === 0 && this.one && p.askedAll && rd.replyByte !== 0) {
          this.replierTag = rd.replyByte;
          this.pickedAt = now;
        }
        p.ms = now - p.first;
        if (p.err) this.stats.errors++;
        (this.settled ??= []).push(p);
      }
    } catch {
      this.stats.malformedReplies++;
    }
    this.admit(now);
    return this.step();
  }

  /**
   * What a reply of each status does to its command: true when it settles it (its outcome set), false when
   * the command stays in flight; a reply that does not parse throws. A status the client reacts to other
   * than by settling (opt-PSMR: a worker's failed safety check, after which the command goes again, same
   * seq, to the group `mode.route('all')` names) is one more case here that sets `p.group`, calls
   * `this.enqueue(p)` as a retry does, and returns false.
   */
  private readReply(p: Pending<C, R, T>, status: number, r: ByteReader): boolean {
    switch (status) {
      case STATUS_OK:
        p.reply = this.cfg.service.readReply(r, p.cmd);
        return true;
      case STATUS_ERROR:
        p.err = new ServiceError(r.latin1(r.u16('code length'), 'code'), r.utf8(r.u16('message length'), 'message'));
        return true;
      default:
        throw new WireError(`bad status ${status}`);
    }
  }

  /**
   * Timers: pick the replica to answer again once a second; write again, with the same id, every command
   * unanswered for retryMs since it was last written; settle with NoReplyError every command past deadlineMs.
   */
  tick(now: number): ClientStep<R, T> {
    // Pick the replica to answer again now and then: the one picked may have become the slower one.
    if (this.replierTag !== 0 && now - this.pickedAt >= REPICK_MS) this.askEveryone();
    const { retryMs, deadlineMs } = this.cfg;
    this.inflight.forEach((p) => {
      // Oldest first: once an entry is younger than retryMs since its first send, so are the rest.
      if (now - p.first < retryMs) return false;
      if (now - p.first >= deadlineMs) {
        this.inflight.delete(p.seq);
        this.stats.noReply++;
        p.err = new NoReplyError(p.seq, deadlineMs);
        (this.settled ??= []).push(p);
        return true;
      }
      if (now - p.sent >= retryMs) {
        p.sent = now;
        this.stats.retries++;
        // The replica asked to answer may be gone: the retry, and what follows it, asks every replica.
        if (this.replierTag !== 0) this.askEveryone();
        try {
          this.enqueue(p);
        } catch (e) {
          // The command no longer encodes (the caller changed it after submitting): give up on it.
          this.inflight.delete(p.seq);
          p.err = e as Error;
          (this.settled ??= []).push(p);
        }
      }
      return true;
    });
    this.admit(now);
    return this.step();
  }

  /** The batches being written, to multicast now (the end of an event-loop turn). */
  flush(): readonly ClientBatch[] {
    if (this.halted) return NONE;
    for (const g of [...this.dirty]) this.flushGroup(g);
    return this.step().batches;
  }

  /** Stop: drop the batches being written; every command in flight, then every waiting one, settles with a stop error. */
  stop(): ClientStep<R, T> {
    if (this.halted) return NOTHING;
    this.halted = true;
    this.dirty.clear();
    const err = new RingcastError(ERR.STOPPED, 'the client proxy stopped before a reply');
    for (const p of this.inflight.clear()) {
      p.err = err;
      (this.settled ??= []).push(p);
    }
    for (let i = this.waitHead; i < this.waiting.length; i++) this.start(this.waiting[i]!.cmd, this.waiting[i]!.tag, 0);
    this.waiting.length = 0;
    this.waitHead = 0;
    return this.step();
  }

  /** Take the output of the call under way. */
  private step(): ClientStep<R, T> {
    if (this.batches === undefined && this.settled === undefined) return NOTHING;
    const s: ClientStep<R, T> = { batches: this.batches ?? NONE, settled: this.settled ?? NONE };
    this.batches = undefined;
    this.settled = undefined;
    return s;
  }

  private fail(tag: T, err: Error): void {
    (this.settled ??= []).push({ tag, err, reply: undefined, ms: undefined });
  }

  /** Route a command, give it the next seq and write it into its group's batch; or settle it with the error. */
  private start(cmd: C, tag: T, now: number): void {
    if (this.halted) return this.fail(tag, new RingcastError(ERR.STOPPED, 'the client proxy is stopped'));
    const { service: svc, partitions } = this.cfg;
    let group: string;
    try {
      const g = svc.group(cmd, partitions);
      if (g !== 'all' && !(Number.isInteger(g) && g >= 0 && g < partitions)) {
        return this.fail(tag, new ServiceError(ERR.PSMR_BAD_GROUP, `C-G of service '${svc.name}' gave ${JSON.stringify(g)}: expected 'all' or an integer in 0..${partitions - 1}`));
      }
      group = this.cfg.mode.route(g);
    } catch (e) {
      return this.fail(tag, e as Error);
    }
    const p: Pending<C, R, T> = { seq: this.nextSeq, cmd, group, first: now, sent: now, tag, askedAll: true, err: null, reply: undefined, ms: undefined };
    try {
      this.enqueue(p);
    } catch (e) {
      return this.fail(tag, e as Error);
    }
    this.nextSeq++;
    this.stats.submitted++;
    this.inflight.add(p);
  }

  // The oldest seq in flight is a slot lookup (amortized): no cached floor to keep in step.
  private floor(): number {
    return this.inflight.oldest() ?? this.nextSeq;
  }

  private room(): boolean {
    return this.inflight.size < this.cfg.maxOutstanding && this.nextSeq - this.floor() < this.cfg.maxSpan;
  }

  /** Start waiting commands while there is room. */
  private admit(now: number): void {
    const waiting = this.waiting;
    while (this.waitHead < waiting.length && this.room()) {
      const w = waiting[this.waitHead++]!;
      this.start(w.cmd, w.tag, now);
    }
    if (this.waitHead > 1024 && this.waitHead * 2 > waiting.length) {
      waiting.splice(0, this.waitHead);
      this.waitHead = 0;
    }
  }

  /** Ask every replica again, the batches being written included; the next reply picks one. */
  private askEveryone(): void {
    this.replierTag = 0;
    for (const g of this.dirty) this.writers.get(g)!.setReplier(0);
  }

  private flushGroup(group: string): void {
    const w = this.writers.get(group)!;
    this.dirty.delete(group);
    if (w.count === 0) return;
    const data = w.finish();
    w.count = 0;
    this.stats.batches++;
    (this.batches ??= []).push({ group, data });
  }

  private writerOf(group: string): CommandBatchWriter {
    let w = this.writers.get(group);
    if (!w) {
      w = new CommandBatchWriter();
      this.writers.set(group, w);
    }
    if (!this.dirty.has(group)) {
      w.begin({ clientId: this.clientId, replyHost: this.cfg.host, replyPort: this.cfg.replyPort, floor: this.floor(), replier: this.replierTag });
      this.dirty.add(group);
    }
    return w;
  }

  /** Append one command to `w`; on failure nothing of it stays in the batch. */
  private append(w: CommandBatchWriter, p: Pending<C, R, T>): void {
    w.beginCommand(p.seq);
    try {
      this.cfg.service.writeCommand(w.w, p.cmd);
    } catch (e) {
      w.abortCommand();
      throw e;
    }
  }

  private tooLarge(group: string): ServiceError {
    if (this.writers.get(group)!.count === 0) this.dirty.delete(group);
    return new ServiceError(ERR.PSMR_COMMAND_TOO_LARGE, `the command does not fit in one proposal of ${this.cfg.maxBatchBytes} bytes (maxBatchBytes)`);
  }

  /** Write a command into its group's batch (new or retried); a batch never passes maxBatchBytes. */
  private enqueue(p: Pending<C, R, T>): void {
    const max = this.cfg.maxBatchBytes;
    p.askedAll = this.replierTag === 0;
    let w = this.writerOf(p.group);
    try {
      this.append(w, p);
    } catch (e) {
      if (w.count === 0) this.dirty.delete(p.group);
      throw e;
    }
    if (w.bytes > max) {
      w.abortCommand();
      if (w.count === 0) throw this.tooLarge(p.group);
      // Send what the batch holds, and start the next one with this command.
      this.flushGroup(p.group);
      w = this.writerOf(p.group);
      this.append(w, p);
      if (w.bytes > max) {
        w.abortCommand();
        throw this.tooLarge(p.group);
      }
    }
    w.endCommand();
    if (w.bytes >= max || w.count >= MAX_BATCH_COUNT) this.flushGroup(p.group);
  }
}
