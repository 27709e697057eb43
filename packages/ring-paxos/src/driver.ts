import { DYNAMIC_ID_BASE, MessageType, type Message } from './core/messages.js';
import type { PersistRecord } from './core/outbox.js';
import type { RingNode } from './core/ring-node.js';
import { clientTickMs } from './core/settings.js';
import type { Delivery, InstanceRecord } from './core/learner.js';
import type { DecidedInfo } from './core/coordinator.js';
import { CodecError, type Codec, type DropReason } from './wire/codec.js';
import { ERR, RingcastError } from './errors.js';
import { isHoldData } from './core/retention-hold.js';

/** A transport address: "host:port" for UDP, any opaque string in the simulator. */
export type Address = string;

export interface Transport {
  send(buf: Uint8Array, to: Address): void;
  close(): Promise<void>;
}

/** Time as the driver sees it: real timers in production, a virtual clock in the simulator. */
export interface Clock {
  now(): number;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
  /** Run fn once the current turn (every datagram already received) is handled. */
  defer(fn: () => void): void;
}

/** Where acceptor records go before votes leave the process (memory mode: nowhere). */
export interface DurableLog {
  append(records: readonly PersistRecord[]): void;
}

/** Why a datagram was dropped without reaching a core. */
export type DriverDropReason = DropReason | 'ring' | 'role';

export interface DriverHooks {
  onDeliver?(d: Delivery[]): void;
  /** Per-instance records with positions (learners created with `records`), after onDeliver. */
  onInstances?(r: InstanceRecord[]): void;
  onAcked?(seqs: number[]): void;
  onFailed?(seqs: number[]): void;
  onDecided?(d: DecidedInfo[]): void;
  onDrop?(reason: DriverDropReason): void;
  onSent?(bytes: number, copies: number): void;
  onReceived?(bytes: number): void;
  onGapTrimmed?(needed: number, oldest: number): void;
  /**
   * The log could not keep this turn's records (a full disk: ERR_RINGCAST_LOG): the driver stopped and sent
   * nothing of the turn, so no vote left for a record it could not write. Without this hook it throws.
   */
  onFatal?(e: Error): void;
}

export interface DriverOptions {
  node: RingNode;
  codec: Codec;
  transport: Transport;
  clock: Clock;
  /** Addresses of the static nodes (acceptors) by id. */
  peers: ReadonlyMap<number, Address>;
  tickMs: number;
  /** IP multicast group address for Phase 2A and decisions, when the ring uses it. */
  multicast?: Address;
  log?: DurableLog;
  hooks?: DriverHooks;
  /** Bound of the learned-address book for run-time learners and proposers. */
  maxDynamicPeers: number;
}

export class BackpressureError extends RingcastError {
  constructor(limit: number) {
    super(ERR.BACKPRESSURE, `more than ${limit} proposals are waiting for room; slow down`);
  }
}

export class ProposalFailedError extends RingcastError {
  constructor(seq: number) {
    super(ERR.PROPOSAL_FAILED, `proposal ${seq} was not acknowledged by the coordinator after every retry`);
  }
}

/**
 * The one driver: binds a pure RingNode to a transport, a clock and a log. Production gives it UDP sockets
 * and real timers, the simulator a simulated network and a virtual clock; the code path is the same.
 */
export class Driver {
  readonly node: RingNode;
  readonly drops = new Map<DriverDropReason, number>();
  private readonly codec: Codec;
  private readonly transport: Transport;
  private readonly clock: Clock;
  private readonly peers: ReadonlyMap<number, Address>;
  private readonly dynamic = new Map<number, Address>();
  private readonly hooks: DriverHooks;
  private readonly opts: DriverOptions;
  private turnScheduled = false;
  /** The interval fired: tick at the end of this turn. */
  private tickDue = false;
  private timer: unknown;
  private stopped = false;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private readonly blocked: Array<() => void> = [];
  // A turn ends after the datagrams read in this loop iteration are stepped (Clock.defer: setImmediate runs
  // after libuv's poll phase). The tick runs there too, after the flush: a process that was not scheduled for
  // a while finds its timer due and proposals waiting in its socket, and the coordinator's rate-leveling
  // check must see the value instance those open, not propose a skip the ring does not need. (A backlog
  // deeper than one read burst can still cost a skip: one instance, never safety.)
  private readonly endTurn = (): void => {
    this.turnScheduled = false;
    if (this.stopped) return;
    const now = this.clock.now();
    this.node.flush(now);
    if (this.tickDue) {
      this.tickDue = false;
      this.node.tick(now);
    }
    this.drain();
  };

  private scheduleTurnEnd(): void {
    if (!this.turnScheduled) {
      this.turnScheduled = true;
      this.clock.defer(this.endTurn);
    }
  }

  constructor(opts: DriverOptions) {
    this.opts = opts;
    this.node = opts.node;
    this.codec = opts.codec;
    this.transport = opts.transport;
    this.clock = opts.clock;
    this.peers = opts.peers;
    this.hooks = opts.hooks ?? {};
  }

  start(): void {
    this.node.start(this.clock.now());
    this.drain();
    const ms = this.node.acceptor ? this.opts.tickMs : clientTickMs(this.node.cfg.settings, this.opts.tickMs, { learner: this.node.learner !== undefined, proposer: this.node.proposer !== undefined });
    this.timer = this.clock.setInterval(() => {
      if (this.stopped) return;
      this.tickDue = true;
      this.scheduleTurnEnd();
    }, ms);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearInterval(this.timer);
    for (const w of this.waiting.values()) w.reject(new RingcastError(ERR.STOPPED, 'the ring driver stopped'));
    this.waiting.clear();
  }

  private drop(reason: DriverDropReason): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
    this.hooks.onDrop?.(reason);
  }

  /** A datagram arrived. Bad ones are dropped and counted; nothing here throws. */
  receive(buf: Uint8Array, from: Address): void {
    if (this.stopped) return;
    this.hooks.onReceived?.(buf.length);
    const d = this.codec.decode(buf);
    if (!d.ok) return this.drop(d.reason);
    if (d.msg.ring !== this.node.cfg.ring) return this.drop('ring');
    this.receiveMessage(d.msg, from);
  }

  /** A decoded message for this ring arrived (an Endpoint decodes once and routes by ring). */
  receiveMessage(m: Message, from: Address): void {
    if (this.stopped) return;
    if (m.from >= DYNAMIC_ID_BASE) this.learnAddress(m.from, from);
    const before = this.node.unexpected;
    this.node.step(m, this.clock.now());
    if (this.node.unexpected !== before) this.drop('role');
    this.scheduleTurnEnd();
  }

  private learnAddress(id: number, addr: Address): void {
    const cur = this.dynamic.get(id);
    if (cur === addr) return;
    if (cur !== undefined) this.dynamic.delete(id);
    else if (this.dynamic.size >= this.opts.maxDynamicPeers) this.dynamic.delete(this.dynamic.keys().next().value as number);
    this.dynamic.set(id, addr);
  }

  private address(id: number): Address | undefined {
    return this.peers.get(id) ?? this.dynamic.get(id);
  }

  /** Take the node's Ready: persist, then send, then hand the rest to the hooks. */
  drain(): void {
    const r = this.node.ready();
    if (r.persist.length > 0 && this.opts.log) {
      try {
        this.opts.log.append(r.persist);
      } catch (e) {
        this.stop(); // this turn's sends (votes, promises) are dropped with it
        if (!this.hooks.onFatal) throw e;
        return this.hooks.onFatal(e as Error);
      }
    }
    for (const s of r.sends) this.sendOne(s.msg, s.to);
    if (r.deliveries.length > 0) this.hooks.onDeliver?.(r.deliveries);
    if (r.records.length > 0) this.hooks.onInstances?.(r.records);
    if (r.gapTrimmed) this.hooks.onGapTrimmed?.(r.gapTrimmed.needed, r.gapTrimmed.oldest);
    if (r.acked.length > 0) {
      for (const seq of r.acked) this.settle(seq, undefined);
      this.hooks.onAcked?.(r.acked);
    }
    if (r.failed.length > 0) {
      for (const seq of r.failed) this.settle(seq, new ProposalFailedError(seq));
      this.hooks.onFailed?.(r.failed);
    }
    const p = this.node.proposer;
    if (p) while (this.blocked.length > 0 && !p.full) this.blocked.shift()!();
    if (r.decided.length > 0) this.hooks.onDecided?.(r.decided);
  }

  private sendOne(msg: Message, to: number | readonly number[]): void {
    let buf: Buffer;
    try {
      buf = this.codec.encode(msg);
    } catch (e) {
      if (e instanceof CodecError) return this.drop('oversize');
      throw e;
    }
    if (typeof to === 'number') {
      const a = this.address(to);
      if (a !== undefined) this.transport.send(buf, a);
      this.hooks.onSent?.(buf.length, 1);
      return;
    }
    if (this.opts.multicast !== undefined && (msg.t === MessageType.Phase2A || msg.t === MessageType.Decision)) {
      this.transport.send(buf, this.opts.multicast);
      this.hooks.onSent?.(buf.length, 1);
      return;
    }
    let copies = 0;
    for (const id of to) {
      const a = this.address(id);
      if (a === undefined) continue;
      this.transport.send(buf, a);
      copies++;
    }
    this.hooks.onSent?.(buf.length, copies);
  }

  private settle(seq: number, err: Error | undefined): void {
    const w = this.waiting.get(seq);
    if (!w) return;
    this.waiting.delete(seq);
    if (err) w.reject(err);
    else w.resolve();
  }

  /**
   * Propose a value; resolves once the coordinator acknowledges it decided. Waits for room when the
   * outstanding bound is reached; refuses with BackpressureError past a second bound of waiters. Data that
   * starts with the retention-hold prefix is refused unless `control` (a hold from encodeHold).
   */
  async propose(data: Uint8Array, control = false): Promise<void> {
    const p = this.node.proposer;
    if (!p) throw new RingcastError(ERR.ROLE, 'this node has no proposer role');
    if (isHoldData(data) !== control) {
      throw new RingcastError(ERR.RESERVED, control ? 'not a retention hold' : 'values starting with bytes c1 52 48 01 are reserved for retention holds');
    }
    if (this.stopped) throw new RingcastError(ERR.STOPPED, 'the ring driver stopped');
    if (data.length > p.maxValueBytes) {
      throw new RingcastError(ERR.VALUE_SIZE, `value of ${data.length} bytes exceeds the ${p.maxValueBytes}-byte bound`);
    }
    const limit = this.node.cfg.settings.maxOutstanding;
    while (p.full) {
      if (this.blocked.length >= limit) throw new BackpressureError(limit);
      await new Promise<void>((r) => this.blocked.push(r));
      if (this.stopped) throw new RingcastError(ERR.STOPPED, 'the ring driver stopped');
    }
    const seq = p.propose(data, this.clock.now(), this.node.out);
    const done = new Promise<void>((resolve, reject) => this.waiting.set(seq, { resolve, reject }));
    this.scheduleTurnEnd();
    return done;
  }
}
