import {
  Codec,
  Driver,
  parseSettings,
  Prng,
  RingNode,
  START_NEXT,
  type Address,
  type Clock,
  type Delivery,
  type DriverHooks,
  type Transport,
} from '@ringcast/ring-paxos';
import { VirtualTime } from '@ringcast/ring-paxos/testing';
import { Merger, joinRound } from './merge.js';

/**
 * Deterministic simulation of Multi-Ring Paxos: several rings over the same acceptors on one seeded lossy
 * network (drops, duplicates, reordering, delays, partitions) under a virtual clock, rate leveling on,
 * proposers multicasting to each ring, and learners with overlapping subscriptions merging their rings
 * with the same Merger production uses; on some seeds a learner crashes and another joins mid-stream.
 * Checkers: no value delivered twice by a learner; every value acknowledged after a live learner started
 * is delivered by it when it subscribes to that ring; a learner that joined delivers exactly what one of
 * the same groups there from the start delivers from that point on; the union of all
 * learners' delivery orders has no cycle (so common messages come in the same relative order); the merge
 * never had to refuse an instance (bounded backlog with idle rings).
 */

export interface MultiRingSimOptions {
  seed: number;
  faultMs?: number;
  healMs?: number;
  trace?: (line: string) => void;
}

export interface MultiRingSimResult {
  seed: number;
  ok: boolean;
  violations: string[];
  rings: number;
  learners: number;
  delivered: number;
  acked: number;
  maxBacklog: number;
  /** Skips coordinators proposed because a learner asked (even seeds only). */
  demandSkips: number;
  /** Learners that crashed, and that joined mid-stream, in this run. */
  crashed: number;
  joined: number;
  replay: string;
}

export function runMultiRingSimulation(opts: MultiRingSimOptions): MultiRingSimResult {
  const rng = new Prng(opts.seed ^ 0x5bd1e995);
  const faultMs = opts.faultMs ?? 1500;
  const healMs = opts.healMs ?? 2500;
  const trace = opts.trace ?? (() => {});
  const violations: string[] = [];
  const violate = (s: string): void => {
    if (violations.length < 20) violations.push(s);
  };

  const nRings = rng.pick([2, 3, 3, 4]);
  const ringIds = Array.from({ length: nRings }, (_, i) => i);
  const acceptorIds = [1, 2, 3];
  const M = rng.pick([1, 2, 4]);
  const dropP = rng.pick([0, 0.01, 0.05]);
  const dupP = rng.pick([0, 0.02]);
  const jitter = rng.pick([0, 1, 5]);
  const partitionP = rng.pick([0, 0.001]);
  const settings = parseSettings({
    lambda: rng.pick([1000, 5000]),
    skipIntervalMs: rng.pick([5, 10]),
    skipLeadMs: rng.pick([0, 0, 5, 20]),
    epochMs: 0,
    window: 16,
    logCapacity: 4096,
    logRetain: 64,
    retryTimeoutMs: 50,
    maxSends: 1000,
    learnerTimeoutMs: 1000,
  });
  const maxBuffered = 4096;
  const tickMs = 5;

  const vt = new VirtualTime(() => rng.float());
  const q = vt.q;
  const clock = (): Clock => vt.clock();
  const codec = new Codec({ maxDatagramBytes: settings.maxDatagramBytes });
  const receivers = new Map<Address, (buf: Uint8Array, from: Address) => void>();
  const cut = new Set<number>();
  let healed = false;
  const transportFor = (self: Address, node: number): Transport => ({
    send(buf, to) {
      const dest = Number(to.split(':')[1] ?? -1);
      if (!healed && (cut.has(node) || cut.has(dest) || rng.chance(dropP))) return;
      const copies = !healed && rng.chance(dupP) ? 2 : 1;
      for (let c = 0; c < copies; c++) q.push(vt.now + 0.1 + (healed ? 0 : rng.float() * jitter), () => receivers.get(to)?.(buf, self));
    },
    close: async () => {},
  });
  // Addresses "r<ring>:<node>": one socket per node per ring, as in production.
  const addr = (ring: number, node: number): Address => `r${ring}:${node}`;
  const makeDriver = (ring: number, id: number, extra: { learnerStart?: number; proposer?: boolean; records?: boolean; paced?: boolean }, hooks: DriverHooks): Driver => {
    const node = new RingNode({ ring, id, ringOrder: [1, 2], acceptors: acceptorIds, settings, ...extra });
    const peers = new Map(acceptorIds.map((a) => [a, addr(ring, a)]));
    const driver = new Driver({ node, codec, transport: transportFor(addr(ring, id), id), clock: clock(), peers, tickMs, hooks, maxDynamicPeers: 64 });
    receivers.set(addr(ring, id), (buf, from) => driver.receive(buf, from));
    return driver;
  };

  const acceptorDrivers: Driver[] = [];
  for (const r of ringIds) {
    for (const a of acceptorIds) {
      const d = makeDriver(r, a, {}, {});
      acceptorDrivers.push(d);
      d.start();
    }
  }

  // Learners: overlapping subscriptions (the P-SMR shape: ring i plus the last ring as gall).
  const gall = nRings - 1;
  const subs: number[][] = [];
  for (let i = 0; i < nRings - 1; i++) subs.push([i, gall]);
  subs.push([...ringIds]);
  let nextId = 70000;
  const proposedAt = new Map<string, number>();
  const acked = new Map<string, number>(); // key -> ring
  interface SimLearner {
    rings: number[];
    order: string[];
    seen: Set<string>;
    merger?: Merger<Delivery>;
    startedAt: number;
    maxBacklog: number;
    /** Crashed at this virtual time (its drivers stopped, its sockets gone); Infinity while alive. */
    crashedAt: number;
    /** Joined mid-stream (not one of the learners started with the rings). */
    joined: boolean;
    /** End position of each delivery in `order`. */
    orderPos: number[];
    /** Its merge delivers positions above this (start round x M). */
    floor: number;
    drivers: Map<number, Driver>;
  }
  // Even seeds: learners ask for skips on demand when their merge holds a value back (as group learners do);
  // odd seeds: only the periodic Δ skips.
  const skipRequests = opts.seed % 2 === 0;
  const startLearner = (rings: number[], joined = false): SimLearner => {
    const l: SimLearner = { rings, order: [], seen: new Set(), startedAt: -1, maxBacklog: 0, crashedAt: Infinity, joined, drivers: new Map(), orderPos: [], floor: 0 };
    const drivers = l.drivers;
    let lastAskAt = -Infinity;
    const askForSkip = (): void => {
      const st = l.merger?.stall;
      if (!skipRequests || !st || vt.now - lastAskAt < 1) return;
      lastAskAt = vt.now;
      const d = drivers.get(st.ring);
      if (!d?.node.learner) return;
      d.node.learner.requestSkip(st.pos, d.node.out);
      d.drain();
    };
    const early = new Map<number, Array<{ pos: number; deliveries: Delivery[] }>>(rings.map((r) => [r, []]));
    const overflow = new Map<number, Array<{ pos: number; deliveries: Delivery[] }>>(rings.map((r) => [r, []]));
    const take = (): void => {
      for (const x of l.merger!.take()) {
        const key = `${x.item.proposer}:${x.item.seq}`;
        if (l.seen.has(key)) violate(`learner [${rings}] delivered ${key} twice`);
        l.seen.add(key);
        l.order.push(key);
        l.orderPos.push(x.pos);
      }
    };
    const feed = (ring: number): void => {
      const over = overflow.get(ring)!;
      let k = 0;
      while (k < over.length && l.merger!.push(ring, { pos: over[k]!.pos, items: over[k]!.deliveries })) k++;
      over.splice(0, k);
      if (over.length > 0) violate(`learner [${rings}]: the merge refused instances of ring ${ring} (backlog ${l.merger!.backlog(ring)})`);
      for (const r of rings) l.maxBacklog = Math.max(l.maxBacklog, l.merger!.backlog(r));
      take();
      askForSkip();
    };
    for (const r of rings) {
      const d = makeDriver(r, nextId++, { learnerStart: START_NEXT, records: true, paced: rings.length > 1 }, {
        onInstances: (rs) => {
          if (!l.merger) {
            early.get(r)!.push(...rs);
            if ([...early.values()].some((x) => x.length === 0)) return;
            const startRound = joinRound([...early.values()].map((xs) => xs[0]!.pos), M);
            l.merger = new Merger<Delivery>({ rings, m: M, startRound, maxBuffered });
            l.floor = startRound * M;
            l.startedAt = vt.now;
            for (const [rr, xs] of early) {
              overflow.get(rr)!.push(...xs);
              feed(rr);
            }
            return;
          }
          overflow.get(r)!.push(...rs);
          feed(r);
        },
      });
      drivers.set(r, d);
      d.start();
    }
    return l;
  };
  const learners: SimLearner[] = subs.map((rings) => startLearner(rings));
  // Learners come and go while faults run: one crashes (its drivers stop, its sockets go away) and a new
  // learner of a random subscription joins mid-stream, where the rings are then.
  const crashAt = rng.chance(0.5) ? 300 + rng.float() * (faultMs - 300) : Infinity;
  const victim = rng.int(0, learners.length - 1);
  if (crashAt < Infinity) {
    q.push(crashAt, () => {
      const l = learners[victim]!;
      l.crashedAt = vt.now;
      for (const [r, d] of l.drivers) {
        d.stop();
        receivers.delete(addr(r, d.node.cfg.id));
      }
      trace(`${vt.now.toFixed(1)} learner [${l.rings}] crashed`);
    });
  }
  if (rng.chance(0.5)) {
    const rings = rng.pick(subs);
    q.push(300 + rng.float() * (faultMs - 300), () => {
      learners.push(startLearner(rings, true));
      trace(`${vt.now.toFixed(1)} learner [${rings}] joined`);
    });
  }

  // Proposers, one per ring; load starts once every learner has started merging.
  const proposers = ringIds.map((r) => {
    const id = nextId++;
    const d = makeDriver(r, id, { proposer: true }, {
      onAcked: (seqs) => {
        for (const s of seqs) acked.set(`${id}:${s}`, r);
      },
    });
    d.start();
    return { ring: r, id, d };
  });
  const busy = ringIds.filter(() => rng.chance(0.7));
  const propose = (p: (typeof proposers)[number]): void => {
    const node = p.d.node;
    const seq = node.proposer!.propose(new Uint8Array(8), vt.now, node.out);
    if (seq >= 0) proposedAt.set(`${p.id}:${seq}`, vt.now);
    p.d.drain();
  };
  const loadStart = 300;
  for (const p of proposers) {
    if (!busy.includes(p.ring)) continue; // idle rings: only skips
    const n = rng.int(20, 80);
    for (let k = 0; k < n; k++) q.push(loadStart + rng.float() * (faultMs + healMs / 3 - loadStart), () => propose(p));
  }
  const faultStep = (): void => {
    if (vt.now >= faultMs) return;
    if (rng.chance(partitionP * 10)) {
      const victim = rng.pick(acceptorIds);
      cut.add(victim);
      trace(`${vt.now.toFixed(1)} partition acceptor ${victim}`);
      q.push(vt.now + rng.float() * 300, () => cut.delete(victim));
    }
    q.push(vt.now + 10, faultStep);
  };
  q.push(0, faultStep);
  q.push(faultMs, () => {
    healed = true;
    cut.clear();
  });

  const end = faultMs + healMs;
  if (!vt.run(end)) violate('event budget exhausted');

  // No loss: every value acknowledged, proposed once a learner had started merging, is delivered by that
  // learner if it is still alive (its start round may lie up to a window of positions ahead of the slowest
  // ring's target, and idle rings skip up to skipLeadMs ahead: a margin of that many ms).
  const margin = (settings.window * 1000) / settings.lambda + settings.skipLeadMs + 5;
  const alive = learners.filter((l) => l.crashedAt === Infinity);
  if (alive.some((l) => l.startedAt < 0)) violate('a learner never started merging (an idle ring without skips?)');
  for (const [key, ring] of acked) {
    const at = proposedAt.get(key) ?? 0;
    for (const l of alive) {
      if (l.rings.includes(ring) && at > l.startedAt + margin && !l.seen.has(key)) violate(`acknowledged ${key} (ring ${ring}) not delivered by learner [${l.rings}]`);
    }
  }
  // A learner that joined mid-stream delivers exactly what a learner of the same groups that was there from
  // the start delivers past the joiner's start round: no partial round at its start, nothing skipped or
  // reordered after it.
  for (const j of learners) {
    if (!j.joined || j.startedAt < 0) continue;
    for (const o of alive) {
      if (o.joined || o.rings.join() !== j.rings.join()) continue;
      let i = 0;
      while (i < o.orderPos.length && o.orderPos[i]! <= j.floor) i++;
      const n = Math.min(j.order.length, o.order.length - i);
      for (let k = 0; k < n; k++) {
        if (o.order[i + k] !== j.order[k]) {
          violate(`learner [${j.rings}] that joined delivered ${j.order[k]} where a learner there from the start delivered ${o.order[i + k]}`);
          break;
        }
      }
    }
  }
  // Acyclic: the union of all delivery orders (edges between consecutive deliveries) has no cycle.
  const edges = new Map<string, Set<string>>();
  for (const l of learners) {
    for (let k = 1; k < l.order.length; k++) {
      let s = edges.get(l.order[k - 1]!);
      if (!s) edges.set(l.order[k - 1]!, (s = new Set()));
      s.add(l.order[k]!);
    }
  }
  const state = new Map<string, 1 | 2>();
  const hasCycle = (start: string): boolean => {
    const stack: Array<[string, Iterator<string>]> = [[start, (edges.get(start) ?? new Set<string>()).values()]];
    state.set(start, 1);
    while (stack.length > 0) {
      const [v, it] = stack[stack.length - 1]!;
      const n = it.next();
      if (n.done) {
        state.set(v, 2);
        stack.pop();
        continue;
      }
      const w = n.value;
      const st = state.get(w);
      if (st === 1) return true;
      if (st === undefined) {
        state.set(w, 1);
        stack.push([w, (edges.get(w) ?? new Set<string>()).values()]);
      }
    }
    return false;
  };
  for (const v of edges.keys()) {
    if (!state.has(v) && hasCycle(v)) {
      violate('the learners delivery orders form a cycle: two learners ordered common messages differently');
      break;
    }
  }

  return {
    seed: opts.seed,
    ok: violations.length === 0,
    violations,
    rings: nRings,
    learners: learners.length,
    delivered: learners.reduce((n, l) => n + l.order.length, 0),
    acked: acked.size,
    maxBacklog: Math.max(...learners.map((l) => l.maxBacklog)),
    demandSkips: acceptorDrivers.reduce((n, d) => n + (d.node.coordinator?.stats.demandSkips ?? 0), 0),
    crashed: learners.filter((l) => l.crashedAt < Infinity).length,
    joined: learners.filter((l) => l.joined).length,
    replay: `npx ringcast sim --multiring --seed ${opts.seed}`,
  };
}
