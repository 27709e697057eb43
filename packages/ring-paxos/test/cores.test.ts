import { describe, expect, it } from 'vitest';
import { DEFAULT_RING_SETTINGS, MessageType, RetentionHolds, RingNode, START_NEXT, START_OLDEST, decodeHold, encodeHold, isHoldData, type Hold, type Message, type RingSettings } from '@ringcast/ring-paxos';

/** A synchronous, fault-free harness around the pure cores: FIFO delivery, a filter to lose messages. */
class Harness {
  readonly nodes = new Map<number, RingNode>();
  readonly queue: Array<{ to: number; msg: Message }> = [];
  now = 0;
  lose: (to: number, msg: Message) => boolean = () => false;
  sent: Array<{ to: number; msg: Message }> = [];

  constructor(acceptors: number, readonly settings: RingSettings = { ...DEFAULT_RING_SETTINGS }) {
    const ids = Array.from({ length: acceptors }, (_, i) => i + 1);
    const order = ids.slice(0, (acceptors - 1) / 2 + 1);
    for (const id of ids) this.nodes.set(id, new RingNode({ ring: 0, id, ringOrder: order, acceptors: ids, settings }));
    this.ringOrder = order;
    this.acceptorIds = ids;
  }
  ringOrder: number[];
  acceptorIds: number[];

  add(id: number, extra: { learnerStart?: number; proposer?: boolean; records?: boolean; paced?: boolean }): RingNode {
    const n = new RingNode({ ring: 0, id, ringOrder: this.ringOrder, acceptors: this.acceptorIds, settings: this.settings, ...extra });
    this.nodes.set(id, n);
    return n;
  }

  collect(n: RingNode): void {
    for (const s of n.out.drain().sends) {
      for (const to of typeof s.to === 'number' ? [s.to] : s.to) {
        this.sent.push({ to, msg: s.msg });
        if (!this.lose(to, s.msg)) this.queue.push({ to, msg: s.msg });
      }
    }
  }

  start(): void {
    for (const n of this.nodes.values()) {
      n.start(this.now);
      this.collect(n);
    }
  }

  /** Propose one value from proposer node `p` and send it at once (end of the proposer's turn). */
  submit(p: RingNode, value: string): void {
    p.proposer!.propose(enc(value), this.now, p.out);
    p.flush(this.now);
    this.collect(p);
    this.run();
  }

  /** Deliver until quiet; flush every node after each message (one message per turn). */
  run(limit = 100000): void {
    let k = 0;
    while (this.queue.length > 0 && k++ < limit) {
      const { to, msg } = this.queue.shift()!;
      const n = this.nodes.get(to);
      if (!n) continue;
      n.step(msg, this.now);
      n.flush(this.now);
      this.collect(n);
    }
  }

  /**
   * Nodes that can be paused: a paused node neither ticks nor sends nor receives (`lose` is replaced: what
   * it loses, plus `alsoLose`).
   */
  pausable(alsoLose: (to: number, msg: Message) => boolean = () => false): { pause: (id: number) => void; resume: (id: number) => void } {
    const paused = new Map<number, RingNode>();
    this.lose = (to, msg) => paused.has(to) || paused.has(msg.from) || alsoLose(to, msg);
    const tickAll = this.advance.bind(this);
    this.advance = (ms: number) => {
      for (const id of paused.keys()) this.nodes.delete(id);
      tickAll(ms);
      for (const [id, n] of paused) this.nodes.set(id, n);
    };
    return { pause: (id) => void paused.set(id, this.nodes.get(id)!), resume: (id) => void paused.delete(id) };
  }

  /** Advance virtual time in 5 ms ticks, running to quiet after each. */
  advance(ms: number): void {
    for (let t = 0; t < ms; t += 5) {
      this.now += 5;
      for (const n of this.nodes.values()) {
        n.tick(this.now);
        this.collect(n);
      }
      this.run();
    }
  }
}

const enc = (s: string): Uint8Array => new Uint8Array(Buffer.from(s));
const dec = (u: Uint8Array): string => Buffer.from(u).toString();

function deliveries(n: RingNode): string[] {
  return n.learner!.takeDeliveries().map((d) => dec(d.data));
}

describe('ring cores (fault-free harness)', () => {
  for (const acceptors of [1, 3, 5]) {
    it(`orders values from two proposers identically at two learners (${acceptors} acceptors)`, () => {
      const h = new Harness(acceptors);
      const l1 = h.add(100001, { learnerStart: 0 });
      const l2 = h.add(100002, { learnerStart: 0 });
      const p1 = h.add(100003, { proposer: true });
      const p2 = h.add(100004, { proposer: true });
      h.start();
      h.advance(20);
      for (let i = 0; i < 50; i++) {
        p1.proposer!.propose(enc(`a${i}`), h.now, p1.out);
        p2.proposer!.propose(enc(`b${i}`), h.now, p2.out);
        if (i % 7 === 0) {
          p1.flush(h.now);
          h.collect(p1);
          p2.flush(h.now);
          h.collect(p2);
          h.run();
        }
      }
      h.advance(100);
      const d1 = deliveries(l1);
      const d2 = deliveries(l2);
      expect(d1).toHaveLength(100);
      expect(d2).toEqual(d1);
      expect(d1.filter((x) => x.startsWith('a'))).toEqual(Array.from({ length: 50 }, (_, i) => `a${i}`));
      expect(p1.proposer!.inflight).toBe(0);
      expect(p2.proposer!.inflight).toBe(0);
    });
  }

  it('does not order a retried proposal twice and still acknowledges it', () => {
    const h = new Harness(3);
    const l = h.add(100001, { learnerStart: 0 });
    const p = h.add(100003, { proposer: true });
    h.start();
    h.advance(20);
    // Lose every Ack: the proposer re-sends until it gives up waiting, the coordinator must not re-order.
    h.lose = (_to, m) => m.t === MessageType.Ack;
    p.proposer!.propose(enc('once'), h.now, p.out);
    h.advance(h.settings.retryTimeoutMs * 3 + 50);
    expect(p.proposer!.stats.resent).toBeGreaterThanOrEqual(2);
    h.lose = () => false;
    h.advance(h.settings.retryTimeoutMs + 50);
    expect(deliveries(l)).toEqual(['once']);
    expect(p.proposer!.inflight).toBe(0);
    const coord = h.nodes.get(2)!.coordinator!;
    expect(coord.stats.duplicateProposals).toBeGreaterThanOrEqual(2);
    expect(coord.stats.decided).toBe(1);
  });

  it('a value a new coordinator recovers and decides is acknowledged to its proposer, with no retry needed', () => {
    // The acknowledgement of a value is queued only by the coordinator that proposed it. When a coordinator
    // dies (or restarts its ballot) before deciding it, the value is re-proposed from Phase 1, and nobody
    // acknowledged it: the proposer kept retrying, and once the instance was trimmed a coordinator that took
    // over ordered the retry a second time (ring simulator seed 778: 65540:13 at instances 23 and 140, which
    // a learner started after 23 delivered again).
    const h = new Harness(3);
    const l = h.add(100001, { learnerStart: 0 });
    const p = h.add(100003, { proposer: true });
    h.start();
    h.advance(20);
    // Coordinator 2 proposes the value and accepts it, node 1 accepts it, but its vote never comes back.
    h.lose = (_to, m) => m.t === MessageType.Phase2B;
    h.submit(p, 'recovered');
    expect(h.nodes.get(1)!.acceptor!.log.size).toBeGreaterThan(0);
    // The coordinator dies; every retry of the proposer is lost: only the new coordinator's decision can
    // acknowledge the value.
    h.nodes.delete(2);
    h.lose = (_to, m) => m.t === MessageType.Propose;
    h.advance(h.settings.learnerTimeoutMs * 3);
    expect(h.nodes.get(1)!.coordinator ?? h.nodes.get(3)!.coordinator, 'a new coordinator').toBeDefined();
    expect(deliveries(l)).toEqual(['recovered']);
    expect(p.proposer!.stats.resent, 'the proposer retried meanwhile').toBeGreaterThan(0);
    expect(p.proposer!.stats.acked).toBe(1);
    expect(p.proposer!.inflight).toBe(0);
  });

  it('keeps at most `window` instances undecided', () => {
    const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, window: 4, maxValueBytes: 256 });
    const p = h.add(100003, { proposer: true });
    h.start();
    h.advance(20);
    // Votes never reach the coordinator: nothing is decided and the window fills.
    h.lose = (_to, m) => m.t === MessageType.Phase2B;
    for (let i = 0; i < 40; i++) p.proposer!.propose(enc(`v${i}`.padEnd(150, '.')), h.now, p.out);
    p.flush(h.now);
    h.collect(p);
    h.run();
    h.advance(50);
    const coord = h.nodes.get(2)!.coordinator!;
    expect(coord.windowOccupancy).toBe(4);
    expect(coord.next).toBe(4);
    h.lose = () => false;
    h.advance(300);
    expect(coord.stats.decided).toBe(40);
  });

  it('fills a learner gap from an acceptor log, never by deciding again', () => {
    const h = new Harness(3);
    const l = h.add(100001, { learnerStart: 0 });
    const p = h.add(100003, { proposer: true });
    h.start();
    h.advance(20);
    let lost = 0;
    h.lose = (to, m) => to === 100001 && m.t === MessageType.Phase2A && m.instance === 1 && ++lost > 0;
    for (let i = 0; i < 3; i++) {
      h.submit(p, `g${i}`);
    }
    h.lose = () => false;
    h.advance(200);
    expect(lost).toBeGreaterThan(0);
    expect(deliveries(l)).toEqual(['g0', 'g1', 'g2']);
    expect(l.learner!.stats.retransmitRequests).toBeGreaterThan(0);
    expect(h.nodes.get(2)!.coordinator!.stats.decided).toBe(3);
  });

  it('trims acceptor logs below what every learner delivered, keeping logRetain instances', () => {
    const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, logRetain: 5 });
    h.add(100001, { learnerStart: 0 });
    const p = h.add(100003, { proposer: true });
    h.start();
    h.advance(20);
    for (let i = 0; i < 20; i++) {
      h.submit(p, `t${i}`);
    }
    h.advance(400);
    const acc = h.nodes.get(1)!.acceptor!;
    expect(acc.trimmed).toBe(15);
    expect(acc.log.size).toBe(5);
    expect([...acc.log.keys()].sort((a, b) => a - b)).toEqual([15, 16, 17, 18, 19]);
  });

  it('with logRetainBytes, keeps at most that many value bytes below what every learner delivered, never fewer than a window', () => {
    const kept = (budget: number): { n: number; bytes: number; each: number; trimmed: number } => {
      const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, window: 4, logRetain: 50, logRetainBytes: budget });
      h.add(100001, { learnerStart: 0 });
      const p = h.add(100003, { proposer: true });
      h.start();
      h.advance(20);
      // One value per instance, all of one size: each batch the same length.
      for (let i = 0; i < 40; i++) {
        h.submit(p, `v${String(i).padStart(2, '0')}${'x'.repeat(200)}`);
        h.advance(5);
      }
      h.advance(400);
      const acc = h.nodes.get(1)!.acceptor!;
      const sizes = [...acc.log.values()].map((e) => e.value.length);
      expect(new Set(sizes).size).toBe(1);
      return { n: acc.log.size, bytes: sizes.reduce((a, b) => a + b, 0), each: sizes[0]!, trimmed: acc.trimmed };
    };
    const loose = kept(0); // no byte bound: logRetain (50) keeps all 40
    expect(loose.n).toBe(40);
    expect(loose.trimmed).toBe(0);
    const each = loose.each;
    const bound = kept(Math.floor(each * 7.5));
    expect(bound.n).toBe(7); // the most whole values within 7.5 of them
    expect(bound.bytes).toBeLessThanOrEqual(Math.floor(each * 7.5));
    expect(bound.trimmed).toBe(33);
    const tiny = kept(1); // the window (4) is kept whatever the budget
    expect(tiny.n).toBe(4);
    expect(tiny.trimmed).toBe(36);
  });

  it('answers a stale ballot with a Nack and re-runs Phase 1 above it', () => {
    const h = new Harness(3);
    h.start();
    h.advance(20);
    const a1 = h.nodes.get(1)!;
    const coord = h.nodes.get(2)!.coordinator!;
    const before = coord.ballot;
    // Someone promised a higher ballot at acceptor 1 (a former coordinator, say).
    a1.step({ t: MessageType.Phase1A, ring: 0, from: 3, ballot: before + 5 * 65536, lo: 0, hi: 10 }, h.now);
    a1.out.drain();
    const p = h.add(100003, { proposer: true });
    const l = h.add(100001, { learnerStart: 0 });
    h.submit(p, 'after-nack');
    h.advance(300);
    expect(coord.stats.nacks).toBeGreaterThan(0);
    expect(coord.ballot).toBeGreaterThan(before + 5 * 65536);
    expect(deliveries(l)).toEqual(['after-nack']);
  });

  it('answers absurd ranges in bounded time (Decision and Phase 1A spanning 2^50 instances)', () => {
    const h = new Harness(3);
    h.start();
    h.advance(20);
    const a1 = h.nodes.get(1)!;
    const t0 = performance.now();
    a1.step({ t: MessageType.Decision, ring: 0, from: 2, ballot: 65538, decisions: [0, 2 ** 50, 65538], safe: 0 }, h.now);
    a1.step({ t: MessageType.Phase1A, ring: 0, from: 2, ballot: 10 * 65536 + 2, lo: 0, hi: 2 ** 50 }, h.now);
    a1.step({ t: MessageType.RetransmitRequest, ring: 0, from: 100001, lo: 0, hi: 2 ** 50 }, h.now);
    expect(performance.now() - t0).toBeLessThan(1000);
    const replies = a1.out.drain().sends.filter((x) => x.msg.t === MessageType.Phase1B);
    expect(replies).toHaveLength(1);
    const r = replies[0]!.msg as { hi: number };
    expect(r.hi).toBe(2 * h.settings.phase1Range);
  });

  it('never decides an instance its own acceptor refused when the log is full behind a slow learner', () => {
    for (const acceptors of [1, 3]) {
      const h = new Harness(acceptors, { ...DEFAULT_RING_SETTINGS, window: 4, logCapacity: 32, logRetain: 0, phase1Range: 64 });
      const l = h.add(100001, { learnerStart: 0 });
      const p = h.add(100003, { proposer: true });
      h.start();
      h.advance(20);
      // The learner's reports stop: the safe instance stays put and the ring must stop at safe + logCapacity.
      h.lose = (_to, m) => m.t === MessageType.Progress;
      for (let i = 0; i < 60; i++) h.submit(p, `s${i}`);
      h.advance(100);
      const coord = h.nodes.get(acceptors === 1 ? 1 : 2)!.coordinator!;
      expect(coord.next).toBeLessThanOrEqual(coord.safe + 32);
      h.lose = () => false;
      h.advance(1000);
      expect(deliveries(l)).toEqual(Array.from({ length: 60 }, (_, i) => `s${i}`));
      for (const n of h.nodes.values()) if (n.acceptor) expect(n.acceptor.stats.logFull).toBe(0);
    }
  });

  it('leaves a learner out of trimming once it has not advanced for learnerTimeoutMs while the logs filled (stuck-learner rule)', () => {
    const s: RingSettings = { ...DEFAULT_RING_SETTINGS, window: 4, logCapacity: 64, logRetain: 8, phase1Range: 64, learnerTimeoutMs: 200 };
    const h = new Harness(3, s);
    const live = h.add(100001, { learnerStart: 0 });
    h.add(100002, { learnerStart: 0 });
    const p = h.add(100003, { proposer: true });
    h.start();
    h.advance(20);
    for (let i = 0; i < 5; i++) h.submit(p, `a${i}`);
    h.advance(100);
    // From here on the second learner's reports say the same thing (a hung learner, or a replayed report).
    const frozen = h.sent.filter((x) => x.msg.t === MessageType.Progress && x.msg.from === 100002).at(-1)!;
    expect(frozen.msg).toMatchObject({ delivered: 4 });
    h.lose = (_to, m) => m.t === MessageType.Progress && m.from === 100002;
    const coord = h.nodes.get(2)!.coordinator!;
    for (let i = 5; i < 200; i++) h.submit(p, `a${i}`);
    // Not yet: the logs are full but the learner stopped less than learnerTimeoutMs ago.
    expect(coord.next).toBe(coord.safe + s.logCapacity);
    expect(coord.stats.learnersLeftBehind).toBe(0);
    for (let t = 0; t < 3000; t += 50) {
      h.queue.push({ to: frozen.to, msg: frozen.msg });
      h.advance(50);
    }
    expect(coord.stats.learnersLeftBehind).toBe(1);
    expect(coord.learnerCount).toBe(2);
    expect(coord.safe).toBeGreaterThan(5);
    expect(deliveries(live)).toEqual(Array.from({ length: 200 }, (_, i) => `a${i}`));
  });

  it('a proposer is full when its unsettled span reaches maxOutstanding, so retries stay inside dedup tables', () => {
    const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, maxOutstanding: 8 });
    const p = h.add(100003, { proposer: true });
    h.start();
    h.advance(20);
    // Lose only the acknowledgement of seq 0: every later seq is acknowledged, seq 0 stays unsettled.
    h.lose = (_to, m) => m.t === MessageType.Ack && m.seqs.includes(0);
    h.submit(p, 'x0');
    for (let i = 1; i < 8; i++) {
      h.lose = (_to, m) => m.t === MessageType.Ack && m.seqs.includes(0);
      h.submit(p, `x${i}`);
    }
    expect(p.proposer!.inflight).toBe(1);
    expect(p.proposer!.full).toBe(true);
    expect(p.proposer!.propose(enc('refused'), h.now, p.out)).toBe(-1);
    h.lose = () => false;
    h.advance(h.settings.retryTimeoutMs + 50);
    expect(p.proposer!.full).toBe(false);
  });

  it('ignores protocol messages from senders that are not acceptors of the ring', () => {
    const h = new Harness(3);
    h.start();
    h.advance(20);
    const a1 = h.nodes.get(1)!;
    const before = a1.acceptor!.trimmed;
    a1.step({ t: MessageType.Decision, ring: 0, from: 100099, ballot: 65538, decisions: [], safe: 2 ** 40 }, h.now);
    a1.step({ t: MessageType.Phase1A, ring: 0, from: 100099, ballot: 2 ** 50, lo: 0, hi: 10 }, h.now);
    expect(a1.unexpected).toBe(2);
    expect(a1.acceptor!.trimmed).toBe(before);
    expect(a1.acceptor!.promised).toBeLessThan(2 ** 50);
  });

  it('bounds what a learner buffers before the coordinator has answered it', () => {
    const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, learnerBuffer: 16 });
    const l = h.add(100001, { learnerStart: 0 });
    // Never started (no Status): feed it 1000 values and decisions directly.
    for (let i = 0; i < 1000; i++) {
      l.step({ t: MessageType.Phase2A, ring: 0, from: 2, ballot: 65538, instance: i, vid: 65538, value: new Uint8Array(4), decisions: [i, 1, 65538], safe: 0, layout: [1, 2] }, h.now);
    }
    const internals = l.learner as unknown as { values: Map<number, unknown>; decided: Map<number, unknown> };
    expect(internals.values.size).toBeLessThanOrEqual(16);
    expect(internals.decided.size).toBeLessThanOrEqual(16);
    expect(l.learner!.stats.bufferFull).toBeGreaterThan(0);
  });

  it('a learner back from a long absence reports the trimmed gap only when every acceptor trimmed it', () => {
    const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, logRetain: 0, learnerTimeoutMs: 100 });
    const l1 = h.add(100001, { learnerStart: 0 });
    const p = h.add(100003, { proposer: true });
    h.start();
    h.advance(20);
    // A second learner starts, then goes silent while the first keeps up and acceptors trim.
    const l2 = h.add(100002, { learnerStart: 0 });
    l2.start(h.now);
    h.collect(l2);
    h.run();
    h.advance(20);
    const away = (to: number, m: { from: number }): boolean => to === 100002 || m.from === 100002;
    h.lose = away;
    for (let i = 0; i < 30; i++) h.submit(p, `g${i}`);
    h.advance(500);
    expect(deliveries(l1)).toHaveLength(30);
    expect([1, 2, 3].map((id) => h.nodes.get(id)!.acceptor!.trimmed)).toEqual([30, 30, 30]);
    expect(l2.learner!.gapTrimmed).toBeUndefined();
    h.lose = () => false;
    h.advance(300);
    expect(l2.learner!.gapTrimmed).toMatchObject({ needed: 0 });
    expect(l2.learner!.gapTrimmed!.oldest).toBeGreaterThan(0);
  });

  it('an acceptor back without its log rejoins: promises what f+1 others promised and stays out below their top', () => {
    const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, logRetain: 2 });
    const l = h.add(100001, { learnerStart: 0 });
    const p = h.add(100003, { proposer: true });
    h.start();
    h.advance(20);
    for (let i = 0; i < 10; i++) h.submit(p, `r${i}`);
    h.advance(50);
    const before = h.nodes.get(1)!.acceptor!;
    const promisedBefore = before.promised;
    const topBefore = before.top;
    expect(topBefore).toBeGreaterThan(0);
    // Acceptor 1 comes back empty and rejoining.
    const fresh = new RingNode({ ...h.nodes.get(1)!.cfg, rejoin: true });
    h.nodes.set(1, fresh);
    fresh.start(h.now);
    h.collect(fresh);
    expect(fresh.acceptor!.horizon).toBe(Infinity);
    h.run();
    h.advance(20);
    const acc = fresh.acceptor!;
    expect(acc.promised).toBeGreaterThanOrEqual(promisedBefore);
    expect(acc.horizon).toBeGreaterThanOrEqual(topBefore);
    // It refuses to vote below its horizon and answers no Phase 1 that starts there.
    expect(acc.accept({ t: MessageType.Phase2A, ring: 0, from: 2, ballot: acc.promised, instance: 0, vid: acc.promised, value: enc('x'), decisions: [], safe: 0, layout: [1, 2] }, fresh.out)).toBe(false);
    fresh.out.drain();
    fresh.step({ t: MessageType.Phase1A, ring: 0, from: 2, ballot: acc.promised + 65536, lo: 0, hi: 100 }, h.now);
    expect(fresh.out.drain().sends.filter((x) => x.msg.t === MessageType.Phase1B)).toHaveLength(0);
    // The ring goes on without it, and once everything below the horizon is trimmed it is a full acceptor.
    for (let i = 10; i < 20; i++) h.submit(p, `r${i}`);
    h.advance(2000);
    expect(deliveries(l)).toEqual(Array.from({ length: 20 }, (_, i) => `r${i}`));
    expect(acc.rejoining).toBe(false);
  });

  it('a rejoin waits for every other acceptor (the coordinator may be the only one that saw the ballot)', () => {
    const h = new Harness(5);
    h.start();
    h.advance(20);
    const node = new RingNode({ ...h.nodes.get(1)!.cfg, rejoin: true, incarnation: 7 });
    node.start(h.now);
    node.tick(h.now + 1);
    const q = node.out.drain().sends.find((x) => x.msg.t === MessageType.RejoinQuery)!;
    expect(q.to).toEqual([2, 3, 4, 5]);
    const reply = (from: number, top: number, nonce = 7): void =>
      node.step({ t: MessageType.RejoinReply, ring: 0, from, nonce, promised: 65538, top }, h.now);
    reply(2, 0);
    reply(4, 0);
    reply(5, 0);
    reply(3, 9, 6); // an answer to an earlier life: ignored
    expect(node.acceptor!.horizon).toBe(Infinity);
    reply(3, 9);
    expect(node.acceptor!.horizon).toBe(9);
    expect(node.acceptor!.promised).toBe(65538);
    // It fetches the decided values below the horizon, then takes part again.
    node.tick(h.now + 100);
    const ask = node.out.drain().sends.find((x) => x.msg.t === MessageType.RetransmitRequest)!;
    expect(ask.msg).toMatchObject({ lo: 0, hi: 9 });
    const values = Array.from({ length: 9 }, (_, i) => enc(`d${i}`));
    node.step({ t: MessageType.Learn, ring: 0, from: 2, trimmed: 0, insts: values.map((_, i) => i), vids: values.map(() => 65538), values }, h.now);
    expect(node.acceptor!.rejoining).toBe(false);
    expect(node.acceptor!.log.get(8)).toMatchObject({ decided: true, vid: 65538 });
  });

  it('a learner asking for the oldest instance moves up when every acceptor says it trimmed past the one it was told', () => {
    const h = new Harness(3);
    const l = h.add(100001, { learnerStart: START_OLDEST });
    l.step({ t: MessageType.Status, ring: 0, from: 2, oldest: 0, next: 10, ballot: 65538 }, h.now);
    for (const from of [1, 2, 3]) l.step({ t: MessageType.Learn, ring: 0, from, trimmed: from === 2 ? 5 : 7, insts: [], vids: [], values: [] }, h.now);
    expect(l.learner!.next).toBe(5);
    expect(l.learner!.gapTrimmed).toBeUndefined();
    // A learner that asked for instance 0 itself gets the typed gap instead.
    const l0 = h.add(100002, { learnerStart: 0 });
    l0.step({ t: MessageType.Status, ring: 0, from: 2, oldest: 0, next: 10, ballot: 65538 }, h.now);
    for (const from of [1, 2, 3]) l0.step({ t: MessageType.Learn, ring: 0, from, trimmed: 5, insts: [], vids: [], values: [] }, h.now);
    expect(l0.learner!.gapTrimmed).toEqual({ needed: 0, oldest: 5 });
  });

  /** A ring with λ = 1000/s from epoch 0 (a position is a time in ms), Δ never, and a learner with records. */
  function skipRing(): { h: Harness; l: RingNode; coordNode: RingNode; c: NonNullable<RingNode['coordinator']>; ask: (pos: number) => void } {
    const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, lambda: 1000, skipIntervalMs: 1_000_000, epochMs: 0 });
    const l = h.add(90001, { learnerStart: START_OLDEST, records: true, paced: true });
    h.start();
    h.advance(50);
    const coordNode = [...h.nodes.values()].find((n) => n.coordinator)!;
    const ask = (pos: number): void => {
      l.learner!.requestSkip(pos, l.out);
      h.collect(l);
      h.run();
    };
    return { h, l, coordNode, c: coordNode.coordinator!, ask };
  }

  it('an idle coordinator answers a skip request at once (Multi-Ring Paxos skips on demand), and only when behind', () => {
    const { h, l, c, ask } = skipRing();
    const before = c.stats.skips;
    h.now += 40;
    ask(h.now);
    expect(c.stats.skips).toBe(before + 1);
    expect(c.stats.demandSkips).toBe(1);
    const recs = l.learner!.records;
    // The skip ends at the target position (λ = 1000/s, epoch 0: the time in ms).
    expect(recs.at(-1)!.pos).toBe(h.now);
    expect(recs.at(-1)!.deliveries).toEqual([]);
    // A request for a position the ring has passed changes nothing.
    h.now += 5;
    ask(h.now - 10);
    expect(c.stats.skips).toBe(before + 1);
  });

  it('rate leveling skips a ring only once it has been idle for Δ: a busy ring keeps pace through its values', () => {
    // λ = 1000/s from epoch 0, Δ = 10 ms; a value every 2 ms for 100 ms, then 50 ms idle.
    const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, lambda: 1000, skipIntervalMs: 10, epochMs: 0 });
    const l = h.add(90001, { learnerStart: START_OLDEST, records: true, paced: true });
    const p = h.add(90002, { proposer: true });
    h.start();
    h.advance(20);
    const c = [...h.nodes.values()].find((n) => n.coordinator)!.coordinator!;
    const tickAll = (): void => {
      for (const n of h.nodes.values()) {
        n.tick(h.now);
        h.collect(n);
      }
      h.run();
    };
    const busyFrom = c.stats.skips;
    for (let t = 0; t < 100; t += 2) {
      h.now += 1;
      h.submit(p, `v${t}`);
      // Timers fire between values, as they do on a real event loop.
      h.now += 1;
      tickAll();
    }
    // Every value was raised to the target when its instance opened: no skip was needed while busy.
    expect(c.stats.skips).toBe(busyFrom);
    const busy = l.learner!.records.filter((r) => r.deliveries.length > 0);
    expect(busy.length).toBe(50);
    expect(busy.at(-1)!.pos).toBeGreaterThanOrEqual(h.now - 2);
    // Idle: the first skip Δ after the last value (not up to 2Δ), then one per Δ.
    const lastValueAt = h.now - 1;
    h.advance(10);
    expect(c.stats.skips - busyFrom).toBe(1);
    expect(l.learner!.records.at(-1)!.pos).toBeGreaterThanOrEqual(lastValueAt + 10);
    h.advance(40);
    expect(c.stats.skips - busyFrom).toBeGreaterThanOrEqual(4);
    expect(c.stats.skips - busyFrom).toBeLessThanOrEqual(5);
    expect(l.learner!.records.at(-1)!.deliveries).toEqual([]);
    expect(l.learner!.records.at(-1)!.pos).toBeGreaterThanOrEqual(h.now - 10);
  });

  it('an idle ring skips only while a registered learner needs the pace (merges it, or waits for a stop position)', () => {
    const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, lambda: 1000, skipIntervalMs: 10, epochMs: 0 });
    const alone = h.add(90001, { learnerStart: START_OLDEST, records: true });
    h.start();
    h.advance(200);
    const c = [...h.nodes.values()].find((n) => n.coordinator)!.coordinator!;
    // Only a learner that reads this ring alone: 200 ms idle, no skip at all.
    expect(c.stats.skips).toBe(0);
    expect(alone.learner!.records.length).toBe(0);
    // A learner that merges this ring registers (its first Progress): skips every Δ from then on.
    const merging = h.add(90002, { learnerStart: START_NEXT, records: true, paced: true });
    merging.start(h.now);
    h.collect(merging);
    h.run();
    h.advance(100);
    expect(c.stats.skips).toBeGreaterThanOrEqual(8);
    expect(c.stats.skips).toBeLessThanOrEqual(11);
    // Both learners deliver the same skips (positions at the target), whatever they asked for.
    expect(alone.learner!.records.at(-1)!.pos).toBeGreaterThanOrEqual(h.now - 10);
    // It goes away (silent past learnerTimeoutMs): the coordinator drops it and the skips stop.
    h.nodes.delete(90002);
    h.advance(DEFAULT_RING_SETTINGS.learnerTimeoutMs + 100);
    const after = c.stats.skips;
    h.advance(200);
    expect(c.stats.skips).toBe(after);
  });

  it('skipLeadMs: a ring quiet for Δ skips that far past the target, a busy one to it; on demand up to the lead', () => {
    // λ = 1000/s from epoch 0 (a position per ms), Δ = 10 ms, lead 25 ms.
    const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, lambda: 1000, skipIntervalMs: 10, skipLeadMs: 25, epochMs: 0 });
    const l = h.add(90001, { learnerStart: START_OLDEST, records: true, paced: true });
    const p = h.add(90002, { proposer: true });
    h.start();
    h.advance(60);
    const c = [...h.nodes.values()].find((n) => n.coordinator)!.coordinator!;
    const last = (): { pos: number; values: number } => ({ pos: l.learner!.records.at(-1)!.pos, values: l.learner!.records.at(-1)!.deliveries.length });
    // Quiet from the start: every periodic skip ends 25 positions past the target.
    expect(c.stats.skips).toBeGreaterThan(0);
    expect(last().pos).toBeGreaterThan(h.now + 10);
    expect(last().pos).toBeLessThanOrEqual(h.now + 25);
    // A value now lands after the lead (it waits for the other rings to catch up, at most the lead).
    h.submit(p, 'late');
    expect(last()).toEqual({ pos: expect.any(Number) as number, values: 1 });
    const valuePos = last().pos;
    expect(valuePos).toBeGreaterThan(h.now);
    // Within Δ of a value the ring is not quiet: its periodic skip would end at the target, but a skip on
    // demand goes to the position asked for, up to the lead past the target.
    h.now += 5;
    expect(valuePos).toBeGreaterThan(h.now + 12);
    l.learner!.requestSkip(valuePos + 12, l.out);
    h.collect(l);
    h.run();
    expect(c.stats.demandSkips).toBe(1);
    expect(last()).toEqual({ pos: h.now + 25, values: 0 });
    // A position further than the lead reaches gets the lead (target + 25), no more.
    h.now += 6;
    l.learner!.requestSkip(h.now + 500, l.out);
    h.collect(l);
    h.run();
    expect(last().pos).toBe(h.now + 25);
    // A busy ring (a value 2 ms ago, at the target) asked for 10 positions past the target: exactly there.
    const h2 = new Harness(3, { ...DEFAULT_RING_SETTINGS, lambda: 1000, skipIntervalMs: 10, skipLeadMs: 25, epochMs: 0 });
    const l2 = h2.add(90001, { learnerStart: START_OLDEST, records: true, paced: true });
    const p2 = h2.add(90002, { proposer: true });
    h2.start();
    h2.now = 5;
    h2.submit(p2, 'busy');
    expect(l2.learner!.records.at(-1)!.pos).toBe(5);
    h2.now = 7;
    l2.learner!.requestSkip(17, l2.out);
    h2.collect(l2);
    h2.run();
    expect(l2.learner!.records.at(-1)!.pos).toBe(17);
    // A busy ring cannot skip (a value waits for the window), but that value, once it opens, ends at the
    // position asked for: window 1, the first value's vote held back so the second stays pending.
    const h3 = new Harness(3, { ...DEFAULT_RING_SETTINGS, window: 1, lambda: 1000, skipIntervalMs: 10, skipLeadMs: 25, epochMs: 0 });
    const l3 = h3.add(90001, { learnerStart: START_OLDEST, records: true, paced: true });
    const p3 = h3.add(90002, { proposer: true });
    h3.start();
    h3.now = 5;
    let hold = true;
    const held: Array<{ to: number; msg: Message }> = [];
    h3.lose = (to, msg) => {
      if (!hold || msg.t !== MessageType.Phase2B) return false;
      held.push({ to, msg });
      return true;
    };
    h3.submit(p3, 'first');
    h3.now = 6;
    h3.submit(p3, 'second');
    l3.learner!.requestSkip(20, l3.out);
    h3.collect(l3);
    h3.run();
    const c3 = [...h3.nodes.values()].find((n) => n.coordinator)!.coordinator!;
    expect(c3.stats.demandSkips).toBe(0); // busy: no skip
    hold = false;
    h3.now = 8; // the vote arrives: the first value is decided, the second opens (target 8, asked 20)
    h3.queue.push(...held);
    h3.run();
    h3.advance(10);
    const vals = l3.learner!.records.filter((r) => r.deliveries.length > 0);
    expect(vals.map((r) => r.pos)).toEqual([5, 20]);
    // Lead 0 (the default): exactly the target, as before.
    const h0 = new Harness(3, { ...DEFAULT_RING_SETTINGS, lambda: 1000, skipIntervalMs: 10, epochMs: 0 });
    const l0 = h0.add(90001, { learnerStart: START_OLDEST, records: true, paced: true });
    h0.start();
    h0.advance(60);
    expect(l0.learner!.records.at(-1)!.pos).toBeLessThanOrEqual(h0.now);
  });

  it('a skip request is kept until the ring passed the position, and only registered learners may ask', () => {
    const { h, l, c, coordNode, ask } = skipRing();
    // A stranger cannot make the ring skip.
    const skips0 = c.stats.skips;
    h.now += 20;
    coordNode.step({ t: MessageType.SkipRequest, ring: 0, from: 99999, pos: h.now }, h.now);
    coordNode.flush(h.now);
    h.collect(coordNode);
    h.run();
    expect(c.stats.skips).toBe(skips0);
    // A learner asks for a position 30 ms ahead of the target: the first skip falls short, later turns go on.
    const want = h.now + 30;
    ask(want);
    expect(c.stats.demandSkips).toBe(1);
    expect(l.learner!.records.at(-1)!.pos).toBe(h.now);
    h.advance(40);
    expect(c.stats.demandSkips).toBeGreaterThan(1);
    expect(l.learner!.records.at(-1)!.pos).toBeGreaterThanOrEqual(want);
    // Passed: no more skips on demand.
    const after = c.stats.demandSkips;
    h.advance(20);
    expect(c.stats.demandSkips).toBe(after);
  });

  it('failover: a ring member fills what it missed as a spare, takes over first, and values in flight reach it at once', () => {
    // Ring [1, 2] (2 coordinates), spare 3. Member 1 pauses: 2 swaps 3 in. 1 comes back (a spare now); then
    // the coordinator pauses: member 3 (holding every decided instance, fetched what it lacked) takes over,
    // the proposer's in-flight values and the learner follow it within a heartbeat or two of its Phase 1,
    // and once 2 resumes it steps down on the higher ballot.
    const h = new Harness(3);
    const s = h.settings;
    const l = h.add(100001, { learnerStart: 0 });
    const p = h.add(100003, { proposer: true });
    const { pause, resume } = h.pausable();
    h.start();
    h.advance(20);
    for (let i = 0; i < 200; i++) h.submit(p, `a${i}`);
    pause(1);
    h.advance(s.acceptorTimeoutMs + 2 * s.phase1TimeoutMs);
    for (let i = 0; i < 50; i++) h.submit(p, `b${i}`);
    h.advance(200);
    const a3 = h.nodes.get(3)!.acceptor!;
    expect(h.nodes.get(2)!.coordinator!.ringLayout).toEqual([3, 2]);
    // 3 holds every decided instance, those decided before it joined included.
    expect(a3.filled).toBe(h.nodes.get(2)!.coordinator!.frontier);
    resume(1);
    h.advance(200);
    expect(deliveries(l)).toHaveLength(250);
    // Values in flight when the coordinator stops.
    for (let i = 0; i < 5; i++) p.proposer!.propose(enc(`c${i}`), h.now, p.out);
    pause(2);
    p.flush(h.now);
    h.collect(p);
    h.run();
    const stoppedAt = h.now;
    let deliveredAt = -1;
    while (h.now - stoppedAt < 5 * s.coordinatorTimeoutMs && deliveredAt < 0) {
      h.advance(5);
      if (l.learner!.deliveries.length >= 5) deliveredAt = h.now;
    }
    expect(h.nodes.get(3)!.takeovers).toBe(1);
    expect(h.nodes.get(1)!.takeovers).toBe(0);
    expect(deliveries(l)).toEqual(Array.from({ length: 5 }, (_, i) => `c${i}`));
    // Detection, then at most two heartbeats for the proposer's probe and the learner's report to find it.
    expect(deliveredAt - stoppedAt).toBeLessThanOrEqual(s.coordinatorTimeoutMs + 2 * s.heartbeatMs + 10);
    // The member re-proposed only what was in flight, not the log it had missed as a spare.
    expect(h.nodes.get(3)!.coordinator!.stats.decided).toBeLessThan(s.window);
    // The old coordinator resumes: it hears the higher ballot and steps down; the ring goes on.
    resume(2);
    h.advance(3 * s.heartbeatMs);
    expect(h.nodes.get(2)!.coordinator).toBeUndefined();
    h.submit(p, 'd0');
    h.advance(50);
    expect(deliveries(l)).toEqual(['d0']);
  });

  /**
   * Ring [1, 2] (2 coordinates), spare 3, a learner and a proposer. 200 values; member 1 pauses and 2 swaps
   * spare 3 in; `later` more values; 1 comes back as a spare. Member 3 never gets the instances decided
   * before it joined (its fill requests are lost): its log is behind.
   */
  function behindMember(later: number): {
    h: Harness;
    l: RingNode;
    p: RingNode;
    resume: (id: number) => void;
    /** Values c0..c2 in flight as `ids` pause. */
    stopWithInFlight: (ids: number[]) => void;
  } {
    const h = new Harness(3);
    const s = h.settings;
    const l = h.add(100001, { learnerStart: 0 });
    const p = h.add(100003, { proposer: true });
    // Member 3's fill requests are lost.
    const { pause, resume } = h.pausable((_to, msg) => msg.t === MessageType.RetransmitRequest && msg.from === 3);
    h.start();
    h.advance(20);
    for (let i = 0; i < 200; i++) h.submit(p, `a${i}`);
    pause(1);
    h.advance(s.acceptorTimeoutMs + 2 * s.phase1TimeoutMs);
    for (let i = 0; i < later; i++) h.submit(p, `b${i}`);
    h.advance(100);
    resume(1);
    h.advance(200);
    expect(h.nodes.get(2)!.coordinator!.ringLayout).toEqual([3, 2]);
    expect(deliveries(l)).toHaveLength(200 + later);
    const a3 = h.nodes.get(3)!.acceptor!;
    a3.fillRange(h.now);
    expect(a3.filled).toBe(0); // nothing decided before it joined
    const stopWithInFlight = (ids: number[]): void => {
      for (let i = 0; i < 3; i++) p.proposer!.propose(enc(`c${i}`), h.now, p.out);
      for (const id of ids) pause(id);
      p.flush(h.now);
      h.collect(p);
      h.run();
    };
    return { h, l, p, resume, stopWithInFlight };
  }

  it('failover: a member whose log is behind (filling) waits for one that holds the log', () => {
    const { h, l, stopWithInFlight } = behindMember(5);
    const s = h.settings;
    stopWithInFlight([2]);
    h.advance(4 * s.coordinatorTimeoutMs);
    // Before: member 3 (rank 0) took over and re-proposed, a window at a time, all it had not filled.
    expect(h.nodes.get(3)!.takeovers).toBe(0);
    expect(h.nodes.get(1)!.takeovers).toBe(1);
    expect(h.nodes.get(1)!.coordinator!.stats.decided).toBeLessThan(s.window);
    expect(deliveries(l)).toEqual(['c0', 'c1', 'c2']);
  });

  it('failover: a node reads the datagrams waiting in its socket before its own takeover tick', () => {
    // Coordinator 2 stops. Member 1 takes over (rank 0). Spare 3 (rank 2) ticks on, but reads nothing from
    // shortly before that (a backlog in its socket: the Phase 1A and heartbeats of 1 wait there) until its
    // own deadline has passed at a tick. Before: that tick took over with the same round as 1 and the
    // higher node id, a duel that deposed 1. Now the deadline must hold at a second tick, with the waiting
    // datagrams read in between.
    const h = new Harness(3);
    const s = h.settings;
    const l = h.add(100001, { learnerStart: 0 });
    const p = h.add(100003, { proposer: true });
    let holding = false;
    let lastHeard3 = 0;
    const held: Message[] = [];
    h.lose = (to, msg) => {
      if (to !== 3) return false;
      if (holding) return held.push(msg) > 0;
      if (msg.t === MessageType.Heartbeat) lastHeard3 = h.now;
      return false;
    };
    h.start();
    h.advance(20);
    for (let i = 0; i < 20; i++) h.submit(p, `a${i}`);
    h.advance(100);
    expect(deliveries(l)).toHaveLength(20);
    const n3 = h.nodes.get(3)!;
    const stopped = h.now;
    h.nodes.delete(2);
    const deadline3 = s.coordinatorTimeoutMs * (1 + 2 / 3); // rank 2: after member 1, and after f ranks
    while (h.now - lastHeard3 < deadline3) {
      if (h.now >= stopped + s.coordinatorTimeoutMs - 2 * s.heartbeatMs) holding = true;
      h.advance(5);
    }
    expect(h.nodes.get(1)!.takeovers).toBe(1);
    expect(held.some((m) => m.t === MessageType.Phase1A)).toBe(true);
    holding = false;
    for (const m of held.splice(0)) h.queue.push({ to: 3, msg: m });
    h.run();
    h.advance(3 * s.coordinatorTimeoutMs);
    expect(n3.takeovers).toBe(0);
    expect(h.nodes.get(1)!.coordinator).toBeDefined();
    // The proposer was idle through the failover: it finds the new coordinator when its retry times out.
    h.submit(p, 'd0');
    h.advance(s.retryTimeoutMs + 50);
    expect(deliveries(l)).toEqual(['d0']);
  });

  it('failover: a new coordinator whose log lacks instances its Phase 1 quorum holds decided takes them as decided, without re-proposing', () => {
    const { h, l, p, resume, stopWithInFlight } = behindMember(50);
    const s = h.settings;
    // Coordinator 2 stops and 1 is away meanwhile: only 3 (behind) can take over.
    stopWithInFlight([2, 1]);
    h.advance(3 * s.coordinatorTimeoutMs);
    expect(h.nodes.get(3)!.takeovers).toBe(1);
    resume(1);
    h.advance(2 * s.coordinatorTimeoutMs);
    expect(h.nodes.get(1)!.takeovers).toBe(0);
    const c3 = h.nodes.get(3)!.coordinator!;
    expect(deliveries(l)).toEqual(['c0', 'c1', 'c2']);
    // Before: it re-proposed a0..a199 (its log lacked them decided), a window at a time.
    expect(c3.stats.decided).toBeLessThan(s.window);
    // It holds them now (decided), as 1 does, and serves them.
    expect(c3.stats.takenDecided).toBeGreaterThanOrEqual(200);
    for (let i = 0; i < 250; i++) expect(c3.acceptor.log.get(i)?.decided, `instance ${i}`).toBe(true);
    expect(c3.acceptor.behind).toBe(false);
    expect(dec(c3.acceptor.log.get(7)!.value)).toContain('a7');
    h.submit(p, 'd0');
    h.advance(50);
    expect(deliveries(l)).toEqual(['d0']);
  });
});

/** The lowest instance held (undefined: none): the trim point the holds allow, breaking none. */
const lowest = (h: RetentionHolds): number | undefined => {
  const lo = h.cap(Infinity, -Infinity);
  return lo === Infinity ? undefined : lo;
};

describe('retention holds', () => {
  it('one hold per holder (the newest), the most recently renewed maxHolds whatever the order, yields below the bound', () => {
    const seq: Array<[Hold, number]> = [
      [{ holder: 'r1', instance: 10 }, 20],
      [{ holder: 'r2', instance: 5 }, 21],
      [{ holder: 'r1', instance: 30 }, 40],
      [{ holder: 'r3', instance: 35 }, 45],
    ];
    const a = new RetentionHolds(2);
    const b = new RetentionHolds(2);
    for (const [h, at] of seq) a.apply(h, at);
    for (const [h, at] of [...seq].reverse()) b.apply(h, at);
    // r2, renewed least recently, yields to r3 in either order; r1's older hold never comes back.
    expect([a.size, a.stats.evicted]).toEqual([2, 1]);
    expect([a.size, lowest(a)]).toEqual([2, 30]);
    expect([b.size, lowest(b)]).toEqual([2, 30]);
    a.apply({ holder: 'r1', instance: 12 }, 22);
    expect(lowest(a)).toBe(30);
    expect(a.cap(100, 0)).toBe(30);
    expect(a.cap(20, 0)).toBe(20);
    // Keeping r1's hold would pass the bound: it yields, r3's holds the trim point.
    expect(a.cap(100, 32)).toBe(35);
    expect([a.stats.broken, a.size]).toEqual([1, 1]);
    // A hold never holds above its own instance; maxHolds 0 refuses every hold.
    const c = new RetentionHolds(1);
    c.apply({ holder: 'x', instance: 99 }, 50);
    expect(lowest(c)).toBe(50);
    const none = new RetentionHolds(0);
    none.apply({ holder: 'x', instance: 1 }, 2);
    expect([none.size, none.stats.evicted, none.stats.refused]).toEqual([0, 0, 1]);
  });

  it('hold values round-trip and are told apart from application data', () => {
    const v = encodeHold('replica-ä', 2 ** 40 + 7);
    expect(decodeHold(v)).toEqual({ holder: 'replica-ä', instance: 2 ** 40 + 7 });
    expect(isHoldData(enc('hello'))).toBe(false);
    expect(isHoldData(new Uint8Array([0xc5, 1, 1, 0]))).toBe(false); // a P-SMR command batch
    expect(decodeHold(v.subarray(0, 12))).toBeUndefined(); // no holder
    expect(() => encodeHold('x'.repeat(65), 1)).toThrow(RangeError);
  });

  it('the trim point stops at a hold; learners never deliver it; a new coordinator re-learns it; it yields at logCapacity', () => {
    const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, window: 4, logCapacity: 64, logRetain: 4, phase1Range: 64, maxHolds: 4 });
    const l = h.add(100001, { learnerStart: 0 });
    const p = h.add(100003, { proposer: true });
    h.start();
    h.advance(20);
    const want: string[] = [];
    const put = (from: number, to: number): void => {
      for (let i = from; i < to; i++) {
        h.submit(p, `a${i}`);
        want.push(`a${i}`);
      }
      h.advance(200);
    };
    put(0, 10);
    // Delivered 0..9 with logRetain 4: trimmed below 6 already. Hold 8 (a replica's checkpoint resume point).
    p.proposer!.propose(encodeHold('replica-1', 8), h.now, p.out);
    p.flush(h.now);
    h.collect(p);
    h.run();
    put(10, 40);
    expect(deliveries(l)).toEqual(want.splice(0));
    expect(l.learner!.stats.holdValues).toBe(1);
    const first = h.nodes.get(2)!.coordinator!;
    expect(lowest(first.holds)).toBe(8);
    // Without the hold the ring members would have trimmed to about 40 - logRetain.
    for (const id of [1, 2]) expect(h.nodes.get(id)!.acceptor!.trimmed).toBe(8);
    // The coordinator dies: the one that takes over learns the hold again from its log.
    h.nodes.delete(2);
    h.advance(2000);
    const next = (h.nodes.get(1)!.coordinator ?? h.nodes.get(3)!.coordinator)!;
    expect(next).toBeDefined();
    expect(lowest(next.holds)).toBe(8);
    put(40, 50);
    h.advance(3000);
    expect(deliveries(l)).toEqual(want.splice(0));
    expect(h.nodes.get(1)!.acceptor!.trimmed).toBe(8);
    expect(next.holds.stats.broken).toBe(0);
    // Keeping instance 8 past logCapacity - 2 x window (56) instances would stop the ring: the hold yields.
    put(50, 80);
    expect(deliveries(l)).toEqual(want.splice(0));
    expect(next.holds.stats.broken).toBe(1);
    expect(next.holds.size).toBe(0);
    expect(h.nodes.get(1)!.acceptor!.trimmed).toBeGreaterThan(60);
  });
  it('a coordinator that takes over keeps the trim point at the bounds until its Phase 1 is answered, learner progress or not', () => {
    const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, window: 4, logCapacity: 64, logRetain: 4, phase1Range: 64, maxHolds: 4 });
    const p = h.add(100003, { proposer: true });
    h.start();
    h.advance(20);
    const put = (from: number, to: number): void => {
      for (let i = from; i < to; i++) h.submit(p, `a${i}`);
      h.advance(200);
    };
    // No learner (every replica down): the log trims only as logCapacity forces.
    put(0, 30);
    // Node 1 goes away; the coordinator (2) replaces it with the spare 3. Node 1 knows up to about 30.
    const n1 = h.nodes.get(1)!;
    h.nodes.delete(1);
    h.advance(1500);
    const f1 = n1.acceptor!.top;
    expect(f1).toBeGreaterThanOrEqual(25);
    // A holder holds instance 10: decided above f1, at instances node 1 never saw.
    p.proposer!.propose(encodeHold('replica-1', 10), h.now, p.out);
    p.flush(h.now);
    h.collect(p);
    h.run();
    put(30, 40);
    expect(lowest(h.nodes.get(2)!.coordinator!.holds)).toBe(10);
    // Node 1 comes back as a spare, the coordinator dies and node 3 is cut off (members take over before
    // spares, so node 3 would otherwise); node 1 takes over; its Phase 1 with node 3 is lost while a learner
    // that delivered up to node 1's frontier reports progress to it.
    h.nodes.set(1, n1);
    h.nodes.delete(2);
    const n3 = h.nodes.get(3)!;
    h.nodes.delete(3);
    h.lose = (_to, m) => m.t === MessageType.Phase1A || m.t === MessageType.Phase1B;
    let c1 = undefined as ReturnType<typeof n1.coordinator> | undefined;
    for (let t = 0; t < 5000; t += 100) {
      h.advance(100);
      c1 ??= n1.coordinator;
      if (!c1) continue;
      n1.step({ t: MessageType.Progress, ring: 0, from: 100009, delivered: f1 - 1, start: 0, paced: 0 }, h.now);
      n1.flush(h.now);
      h.collect(n1);
      h.run();
      // f1 - logRetain lies above the hold: without its Phase 1 answered the new coordinator cannot know it.
      expect(c1.safe, `trim point at ${h.now} ms`).toBeLessThanOrEqual(10);
    }
    expect(c1).toBeDefined();
    // Node 3 is back, its Phase 1 messages still lost for a while: the heartbeats it hears carry the bound.
    h.nodes.set(3, n3);
    for (let t = 0; t < 1000; t += 100) {
      h.advance(100);
      expect(c1.safe, `trim point at ${h.now} ms`).toBeLessThanOrEqual(10);
    }
    expect(n3.acceptor!.trimmed).toBeLessThanOrEqual(10);
    // Phase 1 answered: the hold is re-learned from the values it recovers, and the trim point stays there.
    h.lose = () => false;
    h.advance(1000);
    const c = (n1.coordinator ?? h.nodes.get(3)!.coordinator)!;
    expect(lowest(c.holds)).toBe(10);
    expect(c.holds.stats.broken).toBe(0);
    for (const id of [1, 3]) expect(h.nodes.get(id)!.acceptor!.trimmed).toBeLessThanOrEqual(10);
  });
  for (const maxHolds of [0, 4]) {
    it(`a coordinator that takes over honours logRetainBytes before its Phase 1 is answered (maxHolds ${maxHolds})`, () => {
      const budget = 2000;
      const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, window: 4, logCapacity: 1024, logRetain: 4, logRetainBytes: budget, phase1Range: 256, maxHolds });
      const p = h.add(100003, { proposer: true });
      h.start();
      h.advance(20);
      // A learner registered from 0 that has delivered nothing yet: the log keeps everything.
      const progress = (n: RingNode, delivered: number): void => {
        n.step({ t: MessageType.Progress, ring: 0, from: 100009, delivered, start: 0, paced: 0 }, h.now);
        n.flush(h.now);
        h.collect(n);
        h.run();
      };
      const n2 = h.nodes.get(2)!;
      for (let i = 0; i < 60; i++) {
        h.submit(p, `v${i}-${'x'.repeat(100)}`);
        if (i % 10 === 0) progress(n2, -1);
      }
      h.advance(100);
      progress(n2, -1);
      const n1 = h.nodes.get(1)!;
      expect(n1.acceptor!.trimmed).toBe(0);
      // The coordinator dies; node 1 takes over with its Phase 1 lost, and the learner reports it delivered all.
      h.nodes.delete(2);
      h.lose = (_to, m) => m.t === MessageType.Phase1A || m.t === MessageType.Phase1B;
      for (let t = 0; t < 5000; t += 100) {
        h.advance(100);
        if (n1.coordinator) progress(n1, n1.acceptor!.top - 1);
      }
      expect(n1.coordinator).toBeDefined();
      let kept = 0;
      for (const [i, e] of n1.acceptor!.log) if (i >= n1.acceptor!.trimmed) kept += e.value.length;
      // The byte budget (plus the min(window, logRetain) instances always kept) holds during the recovery too.
      expect(kept, `bytes kept from instance ${n1.acceptor!.trimmed}`).toBeLessThanOrEqual(budget + 4 * 200);
    });
  }
  it('a new coordinator does not count as broken a hold it re-learns that a newer one replaced', () => {
    const h = new Harness(3, { ...DEFAULT_RING_SETTINGS, window: 4, logCapacity: 128, logRetain: 4, phase1Range: 64, maxHolds: 4 });
    h.add(100001, { learnerStart: 0 });
    const p = h.add(100003, { proposer: true });
    h.start();
    h.advance(20);
    const hold = (x: number): void => {
      p.proposer!.propose(encodeHold('replica-1', x), h.now, p.out);
      p.flush(h.now);
      h.collect(p);
      h.run();
    };
    const put = (from: number, to: number): void => {
      for (let i = from; i < to; i++) h.submit(p, `a${i}`);
      h.advance(200);
    };
    put(0, 10);
    hold(8);
    put(10, 40);
    hold(8); // renewed (the holder's older checkpoint has not moved): this value lies above 35
    put(40, 50);
    // The holder moves on to 35; node 1 votes for that hold and trims to 35, but never learns it decided.
    h.lose = (to, m) => to === 1 && m.t === MessageType.Decision;
    hold(35);
    h.advance(300);
    const n1 = h.nodes.get(1)!;
    expect(lowest(h.nodes.get(2)!.coordinator!.holds)).toBe(35);
    expect(n1.acceptor!.trimmed).toBe(35);
    // The coordinator dies; node 1 takes over, its Phase 1 lost past learnerTimeoutMs. Its log has the
    // superseded hold of 8 decided, the hold of 35 only accepted.
    h.nodes.delete(2);
    h.lose = (_to, m) => m.t === MessageType.Phase1A || m.t === MessageType.Phase1B;
    h.advance(4000);
    h.lose = () => false;
    h.advance(1000);
    const c = n1.coordinator!;
    expect(c).toBeDefined();
    expect(lowest(c.holds)).toBe(35);
    expect(c.holds.stats.broken).toBe(0);
  });
});

describe('RingNode.ready()', () => {
  it("takes each role's output once: deliveries and records, acks, decisions (a second call is empty)", () => {
    const h = new Harness(3);
    const l = h.add(100001, { learnerStart: 0, records: true });
    const p = h.add(100002, { proposer: true });
    h.start();
    h.advance(20);
    h.submit(p, 'x');
    h.advance(20);
    const coord = [...h.nodes.values()].find((n) => n.coordinator)!;
    const c = coord.ready();
    expect(c.decided.map((d) => d.entries)).toContain(1);
    const r = l.ready();
    expect(r.deliveries.map((d) => dec(d.data))).toEqual(['x']);
    expect(r.records.flatMap((x) => x.deliveries).map((d) => dec(d.data))).toEqual(['x']);
    expect(p.ready().acked).toEqual([0]);
    for (const n of [coord, l, p]) {
      const again = n.ready();
      expect([again.sends, again.persist, again.deliveries, again.records, again.acked, again.failed, again.decided].map((a) => a.length)).toEqual([0, 0, 0, 0, 0, 0, 0]);
      expect(again.gapTrimmed).toBeUndefined();
    }
  });
});
