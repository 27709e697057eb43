import { describe, expect, it } from 'vitest';
import { Codec, DEFAULT_RING_SETTINGS, Driver, RingNode, RingcastError, clientTickMs, type Address, type Clock, type DriverHooks, type DurableLog, type PersistRecord } from '@ringcast/ring-paxos';

/**
 * One real Driver (the coordinator's) among plain cores, over an in-memory network, with a clock whose
 * timers and deferred turn ends the test fires by hand: the order of a process's event-loop phases
 * (timers, then the datagrams that are ready, then deferred work) is in the test's hands.
 */
function rig(opts: { log?: DurableLog; hooks?: DriverHooks } = {}) {
  const settings = { ...DEFAULT_RING_SETTINGS, lambda: 1000, skipIntervalMs: 10, epochMs: 0 };
  const ids = [1, 2, 3];
  const order = [1, 2]; // node 2 coordinates
  const codec = new Codec({ maxDatagramBytes: settings.maxDatagramBytes });
  let now = 0;
  let interval: (() => void) | undefined;
  const deferred: Array<() => void> = [];
  const clock: Clock = {
    now: () => now,
    setInterval: (fn) => ((interval = fn), 1),
    clearInterval: () => (interval = undefined),
    defer: (fn) => void deferred.push(fn),
  };
  const inbox: Array<{ buf: Uint8Array; to: Address; from: Address }> = [];
  let driverSends = 0;
  const cores = new Map<number, RingNode>();
  for (const id of [1, 3]) cores.set(id, new RingNode({ ring: 0, id, ringOrder: order, acceptors: ids, settings }));
  const proposer = new RingNode({ ring: 0, id: 90001, ringOrder: order, acceptors: ids, settings, proposer: true });
  cores.set(90001, proposer);
  const peers = new Map(ids.map((id) => [id, `n${id}`]));
  const coordNode = new RingNode({ ring: 0, id: 2, ringOrder: order, acceptors: ids, settings });
  // A learner that merges this ring with others: the coordinator keeps it in pace (rate-leveling skips).
  cores.set(90003, new RingNode({ ring: 0, id: 90003, ringOrder: order, acceptors: ids, settings, learnerStart: 0, paced: true }));
  const driver = new Driver({
    node: coordNode,
    codec,
    clock,
    peers,
    tickMs: 5,
    maxDynamicPeers: 4,
    log: opts.log,
    hooks: opts.hooks,
    transport: {
      send: (buf, to) => {
        driverSends++;
        inbox.push({ buf: Uint8Array.from(buf), to, from: 'n2' });
      },
      close: async () => {},
    },
  });
  const addr = (id: number): Address => (id === 90001 ? 'p' : id === 90003 ? 'l' : `n${id}`);
  /** Send what a plain core has queued. */
  const collect = (n: RingNode, from: Address): void => {
    for (const s of n.out.drain().sends) {
      for (const to of typeof s.to === 'number' ? [s.to] : s.to) inbox.push({ buf: codec.encode(s.msg), to: addr(to), from });
    }
  };
  /** Deliver every datagram in flight; datagrams for the coordinator only reach its driver (no turn end). */
  const network = (): void => {
    for (let k = 0; inbox.length > 0 && k < 10000; k++) {
      const { buf, to, from } = inbox.shift()!;
      if (to === 'n2') {
        driver.receive(buf, from);
        continue;
      }
      const d = codec.decode(buf);
      const n = [...cores.entries()].find(([id]) => addr(id) === to)?.[1];
      if (!d.ok || !n) continue;
      n.step(d.msg, now);
      n.flush(now);
      collect(n, to);
    }
  };
  /** Run deferred work (the driver's turn ends) and the network until both are quiet. */
  const settle = (): void => {
    for (let k = 0; (deferred.length > 0 || inbox.length > 0) && k < 1000; k++) {
      network();
      deferred.splice(0).forEach((f) => f());
    }
  };
  /** One event-loop round at time t: the timer phase, then `io` (datagrams read), then deferred work. */
  const loopRound = (t: number, io: () => void): void => {
    now = t;
    interval?.();
    io();
    settle();
  };
  for (const n of cores.values()) n.start(now);
  for (const [id, n] of cores) collect(n, addr(id));
  driver.start();
  for (let t = 5; t <= 50; t += 5) loopRound(t, () => {});
  return { driver, coordNode, proposer, collect, network, loopRound, settle, sends: () => driverSends };
}

describe('driver', () => {
  it('a tick that falls due runs after the datagrams already waiting, so a ring whose proposals sat in the socket does not skip', () => {
    const { coordNode, proposer, collect, network, loopRound } = rig();
    const c = coordNode.coordinator!;
    expect(c).toBeDefined();
    const skipsIdle = c.stats.skips;
    expect(skipsIdle).toBeGreaterThan(0); // idle for 50 ms with Δ = 10: rate leveling did skip
    // The process was not scheduled for a while: by the time its event loop runs again, its timer is due
    // (the last Δ check was long ago) and a proposal is waiting in its socket.
    proposer.proposer!.propose(new Uint8Array([1, 2, 3]), 60, proposer.out);
    proposer.flush(60);
    collect(proposer, 'p');
    const before = c.stats.skips;
    // The proposal datagram is read in the same loop round as the timer fires, after it.
    loopRound(80, network);
    expect(c.stats.skips).toBe(before);
    expect(proposer.proposer!.acked.length).toBe(1);
  });

  it('an idle ring still skips at the tick after Δ', () => {
    const { coordNode, loopRound } = rig();
    const c = coordNode.coordinator!;
    const before = c.stats.skips;
    loopRound(70, () => {});
    expect(c.stats.skips).toBe(before + 1);
  });

  it('acceptors tick at the cluster tick; learners and proposers at a third of the shortest wait their roles time', () => {
    const s = { ...DEFAULT_RING_SETTINGS }; // gap 30, progress 50, retry 200
    const intervalOf = (n: RingNode): number => {
      let ms = -1;
      const clock: Clock = { now: () => 0, setInterval: (_fn, m) => ((ms = m), 1), clearInterval: () => {}, defer: () => {} };
      const d = new Driver({ node: n, codec: new Codec({ maxDatagramBytes: s.maxDatagramBytes }), clock, peers: new Map(), tickMs: 5, maxDynamicPeers: 4, transport: { send: () => {}, close: async () => {} } });
      d.start();
      d.stop();
      return ms;
    };
    const base = { ring: 0, ringOrder: [1, 2], acceptors: [1, 2, 3] };
    expect(intervalOf(new RingNode({ ...base, id: 1, settings: s }))).toBe(5);
    expect(intervalOf(new RingNode({ ...base, id: 90001, settings: s, learnerStart: 0 }))).toBe(10);
    expect(intervalOf(new RingNode({ ...base, id: 90002, settings: s, proposer: true }))).toBe(66);
    expect(intervalOf(new RingNode({ ...base, id: 90003, settings: s, proposer: true, learnerStart: 0 }))).toBe(10);
    // A proposer linger sets the pace; the cluster tick is the floor.
    const proposer = { learner: false, proposer: true };
    expect(clientTickMs({ ...s, proposerLingerMs: 12 }, 2, proposer)).toBe(4);
    expect(clientTickMs({ ...s, proposerLingerMs: 1 }, 5, proposer)).toBe(5);
    expect(clientTickMs({ ...s, gapTimeoutMs: 300, progressIntervalMs: 300 }, 5, { learner: true, proposer: false })).toBe(100);
  });

  it('a stopped driver neither ticks nor sends, even with a turn end already scheduled', () => {
    const { driver, coordNode, loopRound, sends } = rig();
    const c = coordNode.coordinator!;
    const skips = c.stats.skips;
    const sent = sends();
    // The interval fires (a skip is due: idle since 50 ms, Δ = 10) and schedules a turn end; the driver
    // stops before the turn end runs.
    loopRound(70, () => driver.stop());
    loopRound(200, () => {});
    expect(c.stats.skips).toBe(skips);
    expect(sends()).toBe(sent);
  });

  it('a log append that fails (a full disk) stops the driver through onFatal; nothing of that turn is sent, no vote', () => {
    const logged: PersistRecord[][] = [];
    let full = false;
    const log: DurableLog = {
      append(rs) {
        if (full) throw new RingcastError('ERR_RINGCAST_LOG', 'acceptor log append to x.seg: ENOSPC: no space left on device, write');
        logged.push([...rs]);
      },
    };
    const fatal: Error[] = [];
    const { proposer, collect, network, loopRound, sends } = rig({ log, hooks: { onFatal: (e) => fatal.push(e) } });
    expect(logged.length).toBeGreaterThan(0); // its promise and skip votes were logged while the disk had room
    full = true;
    const sent = sends();
    proposer.proposer!.propose(new Uint8Array([1, 2, 3]), 60, proposer.out);
    proposer.flush(60);
    collect(proposer, 'p');
    loopRound(80, network);
    expect(fatal.map((e) => (e as RingcastError).code)).toEqual(['ERR_RINGCAST_LOG']);
    expect(sends()).toBe(sent); // no Phase 2A carrying its vote, no skip, nothing
    loopRound(200, network);
    loopRound(400, network);
    expect(sends()).toBe(sent);
    expect(fatal).toHaveLength(1);
    expect(proposer.proposer!.acked).toHaveLength(0);
  });
});
