/**
 * The psmr scheduler (smr runs it with one partition): one worker's execution of its merged stream, one
 * instance at a time as its worker-core hands them over (pure: the barrier and the datagram sender are
 * injected).
 *
 * - A batch from the worker's own group g_i: each command is checked against the session table, decoded,
 *   executed at once on this worker's state, and answered in one reply batch per client.
 * - A batch from g_all: every worker of the replica sees the same batch at the same point of its stream.
 *   Commands go in rounds of `roundSize` (fixed by position in the batch, so every worker cuts the same
 *   rounds). Per round: barrier; each worker runs its part (partitioned state) or worker 0 runs the command
 *   (shared state); barrier; worker 0 combines the parts from the shared slots and replies. Session-table
 *   and validation decisions are made before the barrier from the stream alone, so all workers agree.
 */
import { pack, unpack } from 'msgpackr';
import { ERR } from '@ringcast/ring-paxos';
import { CommandBatchReader, ReplyBatchWriter, STATUS_ERROR, STATUS_OK, type BatchHeader } from '../protocol/wire.js';
import { ALL_GROUP, ServiceError, type Service } from '../service.js';
import { SessionTable, type Session, type Verdict } from './session.js';
import type { Scheduler, SchedulerContext, SchedulerStats } from './worker-core.js';

/**
 * One batch's client session. It is opened (made the most recently active, the batch's floor applied) at the
 * batch's first new command only: a batch of nothing but retries changes no session. Every replica then
 * ends the same whether or not its ring learner let a retried proposal through (a replica started from a
 * checkpoint has not seen the first copy's proposal id).
 */
interface BatchSession<C, R> {
  clientId: number;
  floor: number;
  sess: Session<Outcome<C, R>> | undefined;
  opened: boolean;
}

const NEW_COMMAND: Verdict<never> = { kind: 'new' };

/** Where runAll is in the batches of one g_all instance. */
interface Cursor<C, R> {
  batches: readonly Uint8Array[];
  i: number;
  rd: CommandBatchReader | undefined;
  h: BatchHeader | undefined;
  b: BatchSession<C, R> | undefined;
}

/** A cached outcome: the command with its reply, or the error it got. */
interface Outcome<C, R> {
  c: C | undefined;
  r: R | undefined;
  code?: string;
  msg?: string;
}

/** The message of anything thrown (a service may throw null or a string). */
function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

const WRONG_GROUP = ERR.PSMR_WRONG_GROUP;
/** Written to a slot when a worker could not publish its parts (0xc1 is not a msgpack value; it does not unpack to an array). */
const FAILED_SLOT = Uint8Array.of(0xc1);
const SERVICE_FAILED = ERR.PSMR_SERVICE_FAILED;

export class PsmrScheduler<C, R, S> implements Scheduler {
  readonly stats: SchedulerStats = {
    executed: Object.create(null) as Record<string, number>,
    errors: Object.create(null) as Record<string, number>,
    duplicatesReplied: 0,
    duplicatesDropped: 0,
    malformedBatches: 0,
    barrierRounds: 0,
    replyBatches: 0,
    sendErrors: 0,
    repliesLeftToOthers: 0,
  };
  /** Commands run (new ones, errors included): equal on every replica at the same stream point. */
  executedTotal = 0;
  readonly own: SessionTable<Outcome<C, R>>;
  readonly all: SessionTable<Outcome<C, R>>;
  readonly sessions: Scheduler['sessions'];
  private readonly reply = new ReplyBatchWriter();
  private readonly service: Service<C, R, S>;
  private readonly roundSize: number;
  private readonly maxReplyBytes: number;
  private readonly tag: number;

  constructor(private readonly o: SchedulerContext<C, R, S>) {
    this.service = o.service;
    this.tag = o.replyTag ?? 0;
    this.own = new SessionTable(o.maxClients ?? 65536, o.maxReplies ?? 16384);
    this.all = new SessionTable(o.maxClients ?? 65536, o.maxReplies ?? 16384);
    this.sessions = [
      { stream: 'own', table: this.own },
      { stream: 'all', table: this.all },
    ];
    this.roundSize = o.roundSize ?? 32;
    this.maxReplyBytes = o.maxReplyBatchBytes ?? 40_000;
    if (o.workers > 1 && !o.barrier) throw new Error('a scheduler of several workers needs a barrier');
    if (o.service.state === 'partitioned' && (!o.service.executePart || !o.service.combine)) {
      throw new ServiceError(ERR.PSMR_SERVICE, `service '${o.service.name}' is partitioned but lacks executePart/combine`);
    }
  }

  /**
   * The session tables and the executed count as bytes (a checkpoint's part besides the service state).
   * Each cached outcome is [seq, command, reply] or [seq, null, null, error code, message], with the decoded
   * command and reply (undefined: not known on this worker, as for g_all on workers other than 0) as msgpack: a service's decoded commands and replies must be plain data (objects,
   * arrays, strings, numbers, booleans, null, byte arrays), as the key-value store's are.
   */
  sessionsSnapshot(): Uint8Array {
    const enc = (t: SessionTable<Outcome<C, R>>): unknown[] =>
      [...t.entries()].map(([c, floor, replies]) => [c, floor, replies.map(([seq, o]) => (o.code !== undefined ? [seq, null, null, o.code, o.msg ?? ''] : [seq, o.c, o.r]))]);
    return pack({ v: 1, executed: this.executedTotal, own: enc(this.own), all: enc(this.all) });
  }

  /** Load what `sessionsSnapshot` gave (before anything runs). Throws ServiceError on bytes it cannot read. */
  restoreSessions(bytes: Uint8Array): void {
    const bad = (why: string): ServiceError => new ServiceError(ERR.PSMR_BAD_SNAPSHOT, `session snapshot: ${why}`);
    let v: { v?: unknown; executed?: unknown; own?: unknown; all?: unknown };
    try {
      v = unpack(bytes) as typeof v;
    } catch (e) {
      throw bad(errorText(e));
    }
    if (!v || v.v !== 1 || typeof v.executed !== 'number' || !Array.isArray(v.own) || !Array.isArray(v.all)) throw bad('not a version 1 snapshot');
    const dec = (rows: unknown[]): Array<[number, number, Array<[number, Outcome<C, R>]>]> =>
      rows.map((row) => {
        if (!Array.isArray(row) || row.length !== 3 || typeof row[0] !== 'number' || typeof row[1] !== 'number' || !Array.isArray(row[2])) throw bad('a session is [client, floor, replies]');
        const replies = (row[2] as unknown[]).map((x): [number, Outcome<C, R>] => {
          if (!Array.isArray(x) || typeof x[0] !== 'number' || (x.length !== 3 && x.length !== 5)) throw bad('a cached outcome is [seq, command, reply] or [seq, null, null, code, message]');
          if (x.length === 5) return [x[0], { c: undefined, r: undefined, code: String(x[3]), msg: String(x[4]) }];
          if (x[1] === null || x[1] === undefined) throw bad('a cached outcome without an error has a command');
          return [x[0], { c: x[1] as C, r: x[2] as R | undefined }];
        });
        return [row[0], row[1], replies];
      });
    this.own.load(dec(v.own));
    this.all.load(dec(v.all));
    this.executedTotal = v.executed;
  }

  private header(data: Uint8Array): CommandBatchReader | undefined {
    try {
      return new CommandBatchReader(data);
    } catch {
      this.stats.malformedBatches++;
      return undefined;
    }
  }

  private next(rd: CommandBatchReader): boolean {
    if (rd.broken) return false;
    try {
      return rd.next();
    } catch {
      // A truncated batch: what came before ran; the rest is dropped (the same on every replica).
      rd.broken = true;
      this.stats.malformedBatches++;
      return false;
    }
  }

  /** C-G of a decoded command; a service that throws makes it a failed command, not a crashed worker. */
  private groupOf(c: C, n: number): number | 'all' | undefined {
    try {
      return this.service.group(c, n);
    } catch {
      return undefined;
    }
  }

  private kindOf(c: C): string {
    try {
      return String(this.service.kind(c));
    } catch {
      return 'unknown';
    }
  }

  private fail(code: string, msg: string): Outcome<C, R> {
    this.stats.errors[code] = (this.stats.errors[code] ?? 0) + 1;
    return { c: undefined, r: undefined, code, msg };
  }

  private decode(rd: CommandBatchReader): Outcome<C, R> {
    try {
      return { c: this.service.readCommand(rd.r), r: undefined };
    } catch (e) {
      const code = e instanceof ServiceError ? e.code : ERR.PSMR_MALFORMED_COMMAND;
      return this.fail(code, errorText(e));
    }
  }

  private count(c: C): void {
    const k = this.kindOf(c);
    this.stats.executed[k] = (this.stats.executed[k] ?? 0) + 1;
  }

  private write(seq: number, out: Outcome<C, R>, h: BatchHeader): void {
    if (h.replier && h.replier !== this.tag) {
      this.stats.repliesLeftToOthers++;
      return;
    }
    const w = this.reply;
    if (out.code !== undefined) {
      w.beginReply(seq, STATUS_ERROR);
      const code = out.code.slice(0, 200);
      const msg = (out.msg ?? '').slice(0, 1000);
      w.w.u16(code.length);
      w.w.latin1(code);
      const n = Buffer.byteLength(msg, 'utf8');
      w.w.u16(n);
      w.w.ensure(n);
      w.w.pos += w.w.buf.write(msg, w.w.pos, n, 'utf8');
    } else {
      const at = w.w.pos;
      w.beginReply(seq, STATUS_OK);
      try {
        this.service.writeReply(w.w, out.r as R, out.c as C);
      } catch (e) {
        // The service cannot encode its own reply: answer with an error instead (every replica that answers
        // gives the same one).
        w.w.pos = at;
        this.write(seq, this.fail(SERVICE_FAILED, `cannot encode the reply: ${errorText(e)}`), h);
        return;
      }
    }
    w.endReply();
    if (w.bytes >= this.maxReplyBytes) this.flush(h);
  }

  private flush(h: BatchHeader): void {
    if (this.reply.count === 0) return;
    try {
      this.o.send(h.replyHost, h.replyPort, this.reply.view());
      this.stats.replyBatches++;
    } catch {
      this.stats.sendErrors++;
    }
    this.reply.begin(h.clientId, this.tag);
  }

  /** The verdict on command `seq` of a batch; the batch's session is opened at its first new command. */
  private verdict(t: SessionTable<Outcome<C, R>>, b: BatchSession<C, R>, seq: number): Verdict<Outcome<C, R>> {
    if (!b.opened) {
      const v = b.sess ? t.check(b.sess, seq) : NEW_COMMAND;
      if (v.kind !== 'new') return v;
      b.sess = t.open(b.clientId, b.floor);
      b.opened = true;
    }
    return t.check(b.sess!, seq);
  }

  /** One instance of g_all, or of this worker's own group (smr: the only group), batch by batch. */
  deliver(group: string, batches: readonly Uint8Array[]): void | Promise<void> {
    if (group === ALL_GROUP) return this.runAll(batches);
    for (const b of batches) this.runOwn(b);
  }

  /** Run a batch delivered from this worker's own group (smr: the only group). */
  runOwn(data: Uint8Array): void {
    const rd = this.header(data);
    if (!rd) return;
    const h = rd.header;
    const t = this.own;
    const b: BatchSession<C, R> = { clientId: h.clientId, floor: h.floor, sess: t.peek(h.clientId), opened: false };
    const svc = this.service;
    const n = this.o.workers;
    this.reply.begin(h.clientId, this.tag);
    while (this.next(rd)) {
      const seq = rd.seq;
      const v = this.verdict(t, b, seq);
      if (v.kind === 'stale') {
        this.stats.duplicatesDropped++;
        continue;
      }
      if (v.kind === 'replay') {
        this.stats.duplicatesReplied++;
        this.write(seq, v.reply, h);
        continue;
      }
      const sess = b.sess!;
      this.executedTotal++;
      let out = this.decode(rd);
      if (out.c !== undefined) {
        const c = out.c;
        const g = n === 1 ? 0 : this.groupOf(c, n);
        if (g === undefined) out = this.fail(SERVICE_FAILED, `C-G failed on '${this.kindOf(c)}'`);
        else if (g !== this.o.worker && !(n === 1 && g === 'all')) {
          out = this.fail(WRONG_GROUP, `command '${this.kindOf(c)}' belongs to group ${g === 'all' ? 'gall' : `g${g}`}, not g${this.o.worker}`);
        } else {
          try {
            out.r = svc.execute(this.o.state, c);
            this.count(c);
          } catch (e) {
            out = this.fail(e instanceof ServiceError ? e.code : SERVICE_FAILED, errorText(e));
          }
        }
      }
      t.record(sess, seq, out);
      this.write(seq, out, h);
    }
    this.flush(h);
  }

  /**
   * Run what one g_all ring instance delivered: one command batch, or every batch of the instance (the
   * proposals of several clients that the coordinator put in one value). Every worker sees the same batches
   * of an instance together, so the rounds cut across them the same way everywhere, and an instance costs
   * one set of barrier rounds instead of one per batch. Returns a promise when it had to wait at the
   * barrier; the caller must not run anything else of this worker's stream until it settles.
   */
  runAll(data: Uint8Array | readonly Uint8Array[]): void | Promise<void> {
    const batches = data instanceof Uint8Array ? [data] : data;
    const cur: Cursor<C, R> = { batches, i: -1, rd: undefined, h: undefined, b: undefined };
    return this.rounds(cur);
  }

  /** The next command across the instance's batches (each batch's session looked up at its start, in order). */
  private nextAcross(cur: Cursor<C, R>): boolean {
    for (;;) {
      if (cur.rd && this.next(cur.rd)) return true;
      cur.i++;
      if (cur.i >= cur.batches.length) return false;
      cur.rd = this.header(cur.batches[cur.i]!);
      if (cur.rd) {
        cur.h = cur.rd.header;
        cur.b = { clientId: cur.h.clientId, floor: cur.h.floor, sess: this.all.peek(cur.h.clientId), opened: false };
      }
    }
  }

  private rounds(cur: Cursor<C, R>): void | Promise<void> {
    for (;;) {
      // Decide the next round from the stream alone.
      const seqs: number[] = [];
      const outs: Outcome<C, R>[] = [];
      const hs: BatchHeader[] = [];
      const run: Outcome<C, R>[] = [];
      let entries = 0;
      while (entries < this.roundSize && this.nextAcross(cur)) {
        entries++;
        const rd = cur.rd!;
        const seq = rd.seq;
        const v = this.verdict(this.all, cur.b!, seq);
        if (v.kind === 'stale') {
          this.stats.duplicatesDropped++;
          continue;
        }
        if (v.kind === 'replay') {
          this.stats.duplicatesReplied++;
          seqs.push(seq);
          outs.push(v.reply);
          hs.push(cur.h!);
          continue;
        }
        this.executedTotal++;
        let out = this.decode(rd);
        if (out.c !== undefined && this.o.workers > 1) {
          const g = this.groupOf(out.c, this.o.workers);
          if (g === undefined) out = this.fail(SERVICE_FAILED, `C-G failed on '${this.kindOf(out.c)}'`);
          else if (g !== 'all') out = this.fail(WRONG_GROUP, `command '${this.kindOf(out.c)}' belongs to group g${g}, not gall`);
        }
        if (out.c !== undefined) run.push(out);
        this.all.record(cur.b!.sess!, seq, out);
        seqs.push(seq);
        outs.push(out);
        hs.push(cur.h!);
      }
      if (entries === 0) {
        this.finishAll();
        return;
      }
      if (run.length === 0) {
        this.replyRound(seqs, outs, hs);
        continue;
      }
      const p = this.execRound(run);
      if (p) {
        return p.then(() => {
          this.replyRound(seqs, outs, hs);
          return this.rounds(cur);
        });
      }
      this.replyRound(seqs, outs, hs);
    }
  }

  /** Worker 0 answers g_all commands: one reply batch per client batch of the instance. */
  private replyTo: BatchHeader | undefined;

  private finishAll(): void {
    if (this.o.worker === 0 && this.replyTo) this.flush(this.replyTo);
    this.replyTo = undefined;
  }

  private replyRound(seqs: number[], outs: Outcome<C, R>[], hs: BatchHeader[]): void {
    if (this.o.worker !== 0) return;
    for (let i = 0; i < seqs.length; i++) {
      const h = hs[i]!;
      if (h !== this.replyTo) {
        if (this.replyTo) this.flush(this.replyTo);
        this.replyTo = h;
        this.reply.begin(h.clientId, this.tag);
      }
      this.write(seqs[i]!, outs[i]!, h);
    }
  }

  /** Execute one round of g_all commands across the workers; fills each outcome's reply (at worker 0). */
  private execRound(run: Outcome<C, R>[]): void | Promise<void> {
    const svc = this.service;
    const st = this.o.state;
    this.stats.barrierRounds++;
    for (const o of run) this.count(o.c as C);
    if (this.o.workers === 1) {
      for (const o of run) this.execAlone(o);
      return;
    }
    const b = this.o.barrier!;
    const afterFirst = (): void | Promise<void> => {
      if (svc.state === 'shared') {
        if (this.o.worker === 0) for (const o of run) this.execAlone(o);
        return b.arrive();
      }
      const parts = run.map((o) => this.part(o.c as C));
      // Whatever goes wrong here, this worker must still reach the second await, or the others wait forever.
      try {
        b.writeSlot(pack(parts));
      } catch {
        b.writeSlot(FAILED_SLOT);
      }
      const second = b.arrive();
      const combine = (): void => {
        if (this.o.worker !== 0) return;
        const all: unknown[][] = [parts];
        for (let w = 1; w < this.o.workers; w++) {
          let ps: unknown;
          try {
            // A copy: decoded binary values must not point into the slot the next round overwrites.
            ps = unpack(Buffer.from(b.readSlot(w)));
          } catch {
            ps = undefined;
          }
          all.push(Array.isArray(ps) && ps.length === run.length ? ps : run.map(() => PsmrScheduler.FAILED_PART));
        }
        run.forEach((o, i) => this.combineInto(o, all.map((ps) => ps[i])));
      };
      if (second) return second.then(combine);
      combine();
    };
    const first = b.arrive();
    if (first) return first.then(afterFirst);
    return afterFirst();
  }

  private static readonly FAILED_PART = { failedPart: true };

  private part(c: C): unknown {
    try {
      return this.service.executePart!(this.o.state, c);
    } catch {
      return PsmrScheduler.FAILED_PART;
    }
  }

  private combineInto(o: Outcome<C, R>, parts: unknown[]): void {
    if (parts.some((p) => p !== null && typeof p === 'object' && (p as { failedPart?: boolean }).failedPart === true)) {
      Object.assign(o, this.fail(SERVICE_FAILED, `a partition failed to run '${this.kindOf(o.c as C)}'`));
      return;
    }
    try {
      o.r = this.service.combine!(o.c as C, parts);
    } catch (e) {
      Object.assign(o, this.fail(SERVICE_FAILED, errorText(e)));
    }
  }

  /** A g_all command on a worker that holds the whole state (one worker, or worker 0 of a shared service). */
  private execAlone(o: Outcome<C, R>): void {
    const svc = this.service;
    try {
      o.r = svc.execute(this.o.state, o.c as C);
    } catch (e) {
      Object.assign(o, this.fail(e instanceof ServiceError ? e.code : SERVICE_FAILED, errorText(e)));
    }
  }
}
