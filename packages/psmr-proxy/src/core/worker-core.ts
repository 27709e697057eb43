/**
 * One worker's stream, without its thread or sockets (pure): fed the merged deliveries of its group learner
 * (or, in the simulator, of a real Merger), it cuts them into instances (every delivery of one ring
 * instance: the proposals of several clients that a coordinator put in one value), hands each instance to
 * the mode's `Scheduler`, and says when the checkpoint asked for can be taken: at the merge round asked for,
 * once every delivery before that round has run and none after.
 *
 * The scheduler executes, meets the other workers at the barrier and sends the replies; this core decides
 * only what goes to it together and in which order, which must be the same on every worker of a replica
 * and on every replica, whatever the timing of arrivals.
 */
import type { Service } from '../service.js';

/** The synchronisation a worker needs for g_all commands (SharedArrayBuffer + Atomics in a replica). */
export interface BarrierPort {
  /** Resolve once every worker has arrived (may return undefined when it did not have to wait). */
  arrive(): void | Promise<void>;
  /** Publish this worker's partial results for the current round. */
  writeSlot(data: Uint8Array): void;
  /** Read worker `w`'s partial results of the current round (valid between the round's second await and the next round). */
  readSlot(w: number): Uint8Array;
}

/** What a mode's scheduler is built from: one worker's service state, barrier and reply sender. */
export interface SchedulerContext<C, R, S> {
  service: Service<C, R, S>;
  worker: number;
  /** The replica's partitions (`Mode.partitions` of its workers). */
  workers: number;
  state: S;
  barrier?: BarrierPort;
  /** Send one reply datagram to a client (the buffer is the scheduler's: copy it if sending later). */
  send(host: string, port: number, datagram: Uint8Array): void;
  maxClients?: number;
  maxReplies?: number;
  /** g_all commands per barrier round (the same on every worker of a replica). */
  roundSize?: number;
  /** A reply batch is sent once it passes this many bytes. */
  maxReplyBatchBytes?: number;
  /**
   * This replica's reply tag (1..255; 0: none). A command batch that names another replica as its replier
   * is executed and remembered in the session table like any other, but only that replica answers it.
   */
  replyTag?: number;
}

export interface SchedulerStats {
  executed: Record<string, number>;
  errors: Record<string, number>;
  duplicatesReplied: number;
  duplicatesDropped: number;
  malformedBatches: number;
  barrierRounds: number;
  replyBatches: number;
  /** Reply datagrams the sender refused (counted, never thrown). */
  sendErrors: number;
  /** Replies not sent because the client asked another replica to answer (the outcome is still kept). */
  repliesLeftToOthers: number;
}

/** What metrics and /state read of a session table. */
export interface SessionView {
  readonly size: number;
  readonly evictedClients: number;
  readonly evictedReplies: number;
  digest(): string;
}

/** How a worker runs what it delivers: one implementation per mode (or shared by several). */
export interface Scheduler {
  /**
   * Run one instance of `group`: its command batches in delivery order. Returns a promise while it waits
   * (at a barrier, for a full queue); nothing else of the worker's stream runs until it settles.
   */
  deliver(group: string, batches: readonly Uint8Array[]): void | Promise<void>;
  /**
   * A scheduler that hands commands on to other threads: a promise that settles once everything delivered
   * so far has run (undefined when nothing is pending). The core calls it before it takes a checkpoint.
   */
  drain?(): void | Promise<void>;
  /** Commands run (new ones, errors included): equal on every replica at the same stream point. */
  readonly executedTotal: number;
  readonly stats: SchedulerStats;
  /** The session tables by stream, in a fixed order (metrics label and /state digest). */
  readonly sessions: ReadonlyArray<{ stream: string; table: SessionView }>;
  /** The scheduler's replicated state besides the service's (session tables, executed count), as bytes. */
  sessionsSnapshot(): Uint8Array;
  /** Load what `sessionsSnapshot` gave, before anything runs. */
  restoreSessions(bytes: Uint8Array): void;
}

/** One delivery of the merged stream (a command batch), as a group learner or a Merger gives it. */
export interface Delivery {
  ring: number;
  /** The logical end position of its ring instance. */
  pos: number;
  data: Uint8Array;
}

/** Where the rest of an instance is: the deliveries already queued behind the one being run. */
export interface DeliverySource {
  peek(): Delivery | undefined;
  poll(): Delivery | undefined;
}

/**
 * A wrong worker loop the simulator must catch (never used by a replica). 'group-by-ring': consecutive
 * deliveries of one ring go to the scheduler together even across instances, so the g_all rounds a worker
 * cuts depend on what happened to be queued when it looked.
 */
export type BrokenWorkerLoop = 'group-by-ring';

export interface WorkerCoreOptions {
  scheduler: Scheduler;
  /** The group of each ring this worker reads. */
  groupOf(ring: number): string;
  /** Positions per merge round (the cluster's M). */
  mergeM: number;
  /** The merge round this worker starts at (a checkpoint's resume round; default 0). */
  startRound?: number;
  /** The checkpoint asked for can be taken now: every delivery before `round` has run and none after. */
  checkpointReady(round: number): void;
  broken?: BrokenWorkerLoop;
}

export class WorkerCore {
  /** Deliveries run (command batches). */
  delivered = 0;
  /** The merge round of the last delivery run. */
  private lastRound: number;
  private busy = false;
  /** The round of the checkpoint asked for (at most one at a time). */
  private due: number | undefined;
  private readonly s: Scheduler;
  private readonly m: number;

  constructor(private readonly o: WorkerCoreOptions) {
    this.s = o.scheduler;
    this.m = o.mergeM;
    this.lastRound = (o.startRound ?? 0) - 1;
  }

  get scheduler(): Scheduler {
    return this.s;
  }

  /** The merge round of the end position `pos`. */
  roundOf(pos: number): number {
    return Math.floor((pos - 1) / this.m);
  }

  /**
   * Ask for the checkpoint of merge round `round` (replacing any asked before). False when this worker has
   * already run a delivery of that round or later (it cannot be taken); true when `checkpointReady` will be
   * called for it, at the delivery that starts the round or from `idle`.
   */
  askCheckpoint(round: number): boolean {
    this.due = undefined;
    if (this.lastRound >= round) return false;
    this.due = round;
    return true;
  }

  cancelCheckpoint(): void {
    this.due = undefined;
  }

  /**
   * The worker's stream has nothing queued: `mergedRound` is the learner's merge round (every delivery
   * before it released). The checkpoint asked for is taken when the merge has passed its round and
   * everything it released has run (an idle worker may never see a delivery of that round).
   */
  idle(mergedRound: number | undefined, queued: boolean): void {
    if (this.due !== undefined && !this.busy && !queued && (mergedRound ?? -1) >= this.due) this.ready();
  }

  /**
   * Run delivery `d` (just taken from the stream) and the rest of its instance, taken from `more` (every
   * delivery of one instance is queued together). A promise while the scheduler waits; the caller runs
   * nothing else until it settles.
   */
  run(d: Delivery, more: DeliverySource): void | Promise<void> {
    const round = this.roundOf(d.pos);
    if (this.due !== undefined && round >= this.due) {
      const p = this.ready();
      if (p) return p.then(() => this.runInstance(d, round, more));
    }
    return this.runInstance(d, round, more);
  }

  private runInstance(d: Delivery, round: number, more: DeliverySource): void | Promise<void> {
    this.busy = true;
    this.lastRound = round;
    const batches = [d.data];
    const anyPos = this.o.broken === 'group-by-ring';
    for (let n = more.peek(); n && n.ring === d.ring && (n.pos === d.pos || anyPos); n = more.peek()) {
      batches.push(more.poll()!.data);
      if (anyPos) this.lastRound = this.roundOf(n.pos);
    }
    this.delivered += batches.length;
    const p = this.s.deliver(this.o.groupOf(d.ring), batches);
    if (!p) {
      this.busy = false;
      return;
    }
    return p.then(() => {
      this.busy = false;
    });
  }

  /** The checkpoint is due: once the scheduler has nothing pending, say so (once). */
  private ready(): void | Promise<void> {
    const round = this.due!;
    this.due = undefined;
    const p = this.s.drain?.();
    if (!p) {
      this.o.checkpointReady(round);
      return;
    }
    this.busy = true;
    return p.then(() => {
      this.busy = false;
      this.o.checkpointReady(round);
    });
  }
}
