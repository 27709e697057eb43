import { ERR, ConfigError, hasName, RingcastError, START_NEXT, TrimmedGapError, startClient, type ClusterConfig, type Delivery, type InstanceRecord, type RingClient, type RingMetrics } from '@ringcast/ring-paxos';
import { Counter, Gauge, Histogram } from 'prom-client';
import { Merger, joinRound, type Merged } from './merge.js';

/** Resolve group names to ring ids; an unknown group is a ConfigError naming it. */
export function ringsOf(cluster: ClusterConfig, groups: readonly string[]): number[] {
  if (groups.length === 0) throw new ConfigError('groups', 'subscribe to at least one group');
  const rings = groups.map((g) => {
    if (!hasName(cluster.groups, g)) throw new ConfigError(`groups.${g}`, `no such group (known: ${Object.keys(cluster.groups).join(', ')})`);
    return cluster.groups[g]!;
  });
  return [...new Set(rings)];
}

export interface GroupDelivery {
  ring: number;
  pos: number;
  delivery: Delivery;
}

export interface GroupLearnerOptions {
  groups: readonly string[];
  /** Called with merged deliveries, in the order every learner of these groups agrees on. */
  onDeliver?: (d: GroupDelivery[]) => void;
  /** Most instances buffered per ring before that ring's learner is paused. */
  maxBuffered?: number;
  /**
   * Start at this merge round (positions after startRound * mergeM): learners given the same round deliver
   * the same sequence from there. It must not have passed yet (onError gets ERR_RINGCAST_START_PASSED).
   * Default: the first round after the first instance of every ring.
   */
  startRound?: number;
  /** Stop after this round (an agreed unsubscription point); onDone is called then. */
  stopRound?: number;
  /**
   * 'start': deliver every ring from its first instance (instance 0) and merge from round 0, so every
   * learner started this way delivers the whole agreed order (a replica's workers). A ring already trimmed
   * past instance 0 gives onError a TrimmedGapError (ERR_RINGCAST_TRIMMED): that learner needs a state
   * transfer. Default 'next': join where the rings are now.
   */
  from?: 'next' | 'start';
  /**
   * Resume where a checkpoint was taken (`resumePoint` of a learner of the same groups): merge from its
   * round, each ring's learner starting at the instance given (the acceptors must still hold it, else
   * onError gets a TrimmedGapError). Overrides `from` and `startRound`.
   */
  resume?: ResumePoint;
  /**
   * Ask a ring's coordinator for a skip as soon as the merge holds deliveries back for that ring (default
   * true). The ring then catches up in about one round trip instead of at its next Δ check, so Δ can be
   * long (an idle ring costs less) while a busy ring next to it waits less.
   */
  skipRequests?: boolean;
  onDone?: () => void;
  onError?: (e: Error) => void;
  metrics?: RingMetrics;
}

/**
 * Where a learner of some groups can start so that it delivers exactly what another one delivers from merge
 * round `round` on: per ring, the first instance ending after `round * M`, and the position the instance
 * before it ended at (null: none, the ring's first instance).
 */
export interface ResumePoint {
  round: number;
  rings: Array<{ ring: number; instance: number; prevPos: number | null }>;
}

/** Instances (number and end position) remembered per ring for resumePoint: far more than the merge buffers. */
const HISTORY = 1 << 15;

export interface GroupLearner {
  rings: number[];
  /** Every delivery of a round before this one has been released (undefined: not merging yet). */
  mergedRound(): number | undefined;
  /**
   * The resume point of merge round `round` from the instances this learner received, or undefined when
   * they do not tell it (a ring has not reached that round's start yet, or the round is too far back).
   */
  resumePoint(round: number): ResumePoint | undefined;
  /** The ring the merge waits on now, if any (a merge stall). */
  waitingOn(): number | undefined;
  /** Instances buffered for a ring (learner backlog). */
  backlog(ring: number): number;
  /** Merged deliveries as an async iterator (bounded: the rings are paused while it is not read). */
  [Symbol.asyncIterator](): AsyncIterator<GroupDelivery>;
  /**
   * The next delivery the iterator would yield, if one is already queued (no waiting). All deliveries of one
   * instance are queued together, so a reader can take an instance's deliveries as a group.
   */
  peek(): GroupDelivery | undefined;
  /** Take the delivery `peek` showed (the same as the iterator's next one). */
  poll(): GroupDelivery | undefined;
  stop(): Promise<void>;
}

/**
 * A learner subscribed to several groups: one ring learner (its own socket) per ring, their instances merged
 * by position (Multi-Ring Paxos). It starts at the first round after the first instance it receives from
 * every ring, so what it delivers is a contiguous part of the agreed order.
 */
export async function startGroupLearner(cluster: ClusterConfig, options: GroupLearnerOptions): Promise<GroupLearner> {
  return startGroupLearnerWith(startClient, cluster, options);
}

/** startGroupLearner with the ring clients from `connect` (tests give fakes; not in the package API). */
export async function startGroupLearnerWith(
  connect: (cluster: ClusterConfig, opts: Parameters<typeof startClient>[1]) => Promise<RingClient>,
  cluster: ClusterConfig,
  options: GroupLearnerOptions,
): Promise<GroupLearner> {
  const opts = { skipRequests: true, ...options };
  const rings = ringsOf(cluster, opts.groups);
  if (rings.length > 1 && cluster.settings.lambda <= 0) {
    throw new ConfigError('settings.lambda', 'a learner of several rings needs rate leveling (lambda > 0) on them');
  }
  const m = cluster.mergeM;
  const maxBuffered = opts.maxBuffered ?? 4096;
  // Records that arrive before every ring has spoken, and those the merger refused.
  const early = new Map<number, InstanceRecord[]>(rings.map((r) => [r, []]));
  const overflow = new Map<number, InstanceRecord[]>(rings.map((r) => [r, []]));
  let merger: Merger<Delivery> | undefined;
  const queue: GroupDelivery[] = [];
  let wake: (() => void) | undefined;
  const clients: RingClient[] = [];

  const emit = (ms: Merged<Delivery>[]): void => {
    if (ms.length === 0) return;
    if (holdSeconds) {
      const t = performance.now();
      let prevRing = -1;
      let prevPos = -1;
      for (const x of ms) {
        // The values of one instance come together: one observation per instance.
        if (x.ring === prevRing && x.pos === prevPos) continue;
        prevRing = x.ring;
        prevPos = x.pos;
        const a = arrived.get(x.ring)!;
        // Positions arrive in order: those below this one (before a start round) will never be released.
        for (const k of a.keys()) {
          if (k >= x.pos) break;
          a.delete(k);
        }
        const at = a.get(x.pos);
        if (at !== undefined) {
          a.delete(x.pos);
          holdSeconds.observe({ ring: String(x.ring) }, (t - at) / 1000);
        }
      }
    }
    const ds = ms.map((x) => ({ ring: x.ring, pos: x.pos, delivery: x.item }));
    opts.onDeliver?.(ds);
    if (!opts.onDeliver) {
      queue.push(...ds);
      wake?.();
      // Nobody reading the iterator: stop every ring until the queue drains (bounded).
      if (queueFull()) for (const r of rings) setPaused(r, true);
    }
  };
  const clientOf = new Map<number, RingClient>();
  const queueFull = (): boolean => !opts.onDeliver && queue.length >= maxBuffered;
  const setPaused = (ring: number, paused: boolean): void => {
    const c = clientOf.get(ring);
    const l = c?.driver.node.learner;
    if (!c || !l || l.paused === paused) return;
    if (paused) l.paused = true;
    else {
      l.resume();
      c.driver.drain();
    }
  };
  // Merge stalls: time the merge waited on a ring (it had to deliver that ring's window before any other).
  let stallRing: number | undefined;
  let stallSince = 0;
  const stallSeconds = opts.metrics
    ? new Counter({ name: 'ringcast_merge_stall_seconds_total', help: 'Time the multi-ring merge waited on a ring', labelNames: ['ring'], registers: [opts.metrics.registry] })
    : undefined;
  if (opts.metrics) {
    new Gauge({
      name: 'ringcast_merge_backlog',
      help: 'Instances of a ring waiting in the multi-ring merge',
      labelNames: ['ring'],
      registers: [opts.metrics.registry],
      collect() {
        for (const r of rings) this.set({ ring: String(r) }, (merger?.backlog(r) ?? 0) + (overflow.get(r)?.length ?? 0));
      },
    });
  }
  // Merge hold: from an instance's arrival (decided, in order on its ring) to its release by the merge.
  const holdSeconds = opts.metrics
    ? new Histogram({
        name: 'ringcast_merge_hold_seconds',
        help: 'Time a decided instance with deliveries waited in the multi-ring merge for the other rings',
        labelNames: ['ring'],
        buckets: [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1],
        registers: [opts.metrics.registry],
      })
    : undefined;
  const arrived = new Map<number, Map<number, number>>(rings.map((r) => [r, new Map()]));
  // Skips on demand: when the merge holds deliveries back for a ring, ask that ring's coordinator for a skip
  // now instead of waiting for its next Δ check (at most one request per ring per millisecond).
  const lastAsk = new Map<number, { at: number; pos: number }>();
  const askForSkip = (): void => {
    if (!opts.skipRequests) return;
    const st = merger?.stall;
    if (!st) return;
    const t = performance.now();
    const last = lastAsk.get(st.ring);
    // The same position again after 2 ms (the coordinator remembers it), a new one after 1 ms.
    if (last && t - last.at < (last.pos === st.pos ? 2 : 1)) return;
    lastAsk.set(st.ring, { at: t, pos: st.pos });
    const c = clientOf.get(st.ring);
    const l = c?.driver.node.learner;
    if (!c || !l) return;
    l.requestSkip(st.pos, c.driver.node.out);
    c.driver.drain();
  };
  const noteStall = (): void => {
    askForSkip();
    const w = merger?.waitingOn;
    if (w === stallRing) return;
    const t = performance.now();
    if (stallRing !== undefined) stallSeconds?.inc({ ring: String(stallRing) }, (t - stallSince) / 1000);
    stallRing = w;
    stallSince = t;
  };

  /** Push what each ring has waiting into the merge until nothing moves; deliver what it releases. */
  const feed = (ring: number, rs: InstanceRecord[]): void => {
    const mg = merger!;
    overflow.get(ring)!.push(...rs);
    for (let moved = true; moved; ) {
      moved = false;
      for (const r of rings) {
        const over = overflow.get(r)!;
        let k = 0;
        while (k < over.length && mg.push(r, { pos: over[k]!.pos, items: over[k]!.deliveries })) k++;
        if (k > 0) {
          over.splice(0, k);
          moved = true;
        }
        // A ring the merge cannot take more of waits (paused) until the merge moves on.
        setPaused(r, over.length > 0 || queueFull());
      }
      const out = mg.take();
      if (out.length > 0) moved = true;
      emit(out);
    }
    noteStall();
    if (mg.done && !doneSignalled) {
      doneSignalled = true;
      opts.onDone?.();
    }
  };
  let doneSignalled = false;
  // Positions of a ring should strictly increase; after some coordinator failovers a re-proposed old value
  // can carry a lower one (see the multicast README). Clamp deterministically instead of failing: every
  // learner that saw the same instances since the same start computes the same positions.
  const lastPos = new Map<number, number>();
  const clamp = (ring: number, rs: InstanceRecord[]): InstanceRecord[] =>
    rs.map((r) => {
      const prev = lastPos.get(ring);
      const pos = prev !== undefined && r.pos <= prev ? prev + 1 : r.pos;
      lastPos.set(ring, pos);
      return pos === r.pos ? r : { ...r, pos };
    });
  // The last HISTORY instances of each ring (number, end position), for resumePoint.
  const history = new Map(rings.map((r) => [r, { inst: new Float64Array(HISTORY), pos: new Float64Array(HISTORY), n: 0, first: -1 }]));
  const remember = (ring: number, rs: InstanceRecord[]): void => {
    const h = history.get(ring)!;
    for (const r of rs) {
      if (h.n === 0) h.first = r.instance;
      h.inst[h.n % HISTORY] = r.instance;
      h.pos[h.n % HISTORY] = r.pos;
      h.n++;
    }
  };
  const resumePoint = (round: number): ResumePoint | undefined => {
    const edge = round * m;
    const out: ResumePoint['rings'] = [];
    for (const ring of rings) {
      const h = history.get(ring)!;
      if (h.n === 0) return undefined;
      // The ring must have passed the edge (its instance there decided), or the start instance is a guess.
      if (h.pos[(h.n - 1) % HISTORY]! < edge) return undefined;
      const oldest = Math.max(0, h.n - HISTORY);
      let k = h.n - 1;
      while (k >= oldest && h.pos[k % HISTORY]! > edge) k--;
      if (k >= oldest) out.push({ ring, instance: h.inst[k % HISTORY]! + 1, prevPos: h.pos[k % HISTORY]! });
      // Nothing at or before the edge: fine only if this learner saw the ring from its very first instance.
      else if (oldest === 0 && h.first === 0 && opts.from === 'start' && !opts.resume) out.push({ ring, instance: 0, prevPos: null });
      else return undefined;
    }
    return { round, rings: out };
  };
  const onRecords = (ring: number, raw: InstanceRecord[]): void => {
    const rs = clamp(ring, raw);
    remember(ring, rs);
    if (holdSeconds) {
      const a = arrived.get(ring)!;
      const t = performance.now();
      for (const r of rs) if (r.deliveries.length > 0 && a.size < 2 * maxBuffered) a.set(r.pos, t);
    }
    if (!merger) {
      if (!early.has(ring)) return; // gave up (start round passed)
      early.get(ring)!.push(...rs);
      if ([...early.values()].some((x) => x.length === 0)) return;
      const earliest = joinRound([...early.values()].map((xs) => xs[0]!.pos), m);
      if (opts.from === 'start') {
        // Every ring is delivered from instance 0: nothing before round 0 is missing.
      } else if (opts.startRound !== undefined && opts.startRound < earliest) {
        opts.onError?.(
          new RingcastError(ERR.START_PASSED, `start round ${opts.startRound} has passed: the rings are at round ${earliest}; choose a later one`),
        );
        early.clear();
        return;
      }
      const startRound = opts.from === 'start' ? 0 : (opts.startRound ?? earliest);
      merger = new Merger<Delivery>({ rings, m, startRound, stopRound: opts.stopRound, maxBuffered });
      // Every ring's early records go to its queue before anything is fed: feeding can ask a ring for a skip
      // and drain its learner, which delivers newer records of a ring at once (they must queue behind).
      for (const [r, xs] of early) overflow.get(r)!.push(...xs);
      early.clear();
      feed(ring, []);
      return;
    }
    feed(ring, rs);
  };

  if (opts.resume) {
    const rp = opts.resume;
    const given = new Set(rp.rings.map((x) => x.ring));
    if (rp.rings.length !== rings.length || rings.some((r) => !given.has(r))) {
      throw new ConfigError('resume.rings', `a resume point for rings ${[...given].join(',')} does not fit a learner of rings ${rings.join(',')}`);
    }
    for (const x of rp.rings) {
      if (x.prevPos === null) continue;
      lastPos.set(x.ring, x.prevPos);
      // So that this learner can give the same resume point again before its rings move on.
      remember(x.ring, [{ instance: x.instance - 1, pos: x.prevPos, deliveries: [] }]);
    }
    merger = new Merger<Delivery>({ rings, m, startRound: rp.round, stopRound: opts.stopRound, maxBuffered });
  }
  const learnFromOf = (ring: number): number => {
    if (opts.resume) return opts.resume.rings.find((x) => x.ring === ring)!.instance;
    return opts.from === 'start' ? 0 : START_NEXT;
  };
  for (const ring of rings) {
    const c = await connect(cluster, {
      ring,
      learnFrom: learnFromOf(ring),
      records: true,
      // Merging several rings, or an agreed start or stop round, needs idle rings to skip: a ring whose
      // position stood still would make a start round look passed at its next value, or never reach a stop.
      paced: rings.length > 1 || opts.startRound !== undefined || opts.stopRound !== undefined || opts.resume !== undefined,
      metrics: opts.metrics,
      hooks: { onInstances: (rs) => onRecords(ring, rs), onGapTrimmed: (needed, oldest) => opts.onError?.(new TrimmedGapError(needed, oldest)) },
    });
    clients.push(c);
    clientOf.set(ring, c);
  }
  let stopped = false;
  const shift = (): GroupDelivery => {
    const v = queue.shift()!;
    if (queue.length === Math.floor(maxBuffered / 2)) for (const r of rings) if (overflow.get(r)!.length === 0) setPaused(r, false);
    return v;
  };
  return {
    rings,
    mergedRound: () => merger?.currentRound,
    resumePoint,
    peek: () => queue[0],
    poll: () => (queue.length > 0 ? shift() : undefined),
    waitingOn: () => merger?.waitingOn,
    backlog: (ring) => (merger?.backlog(ring) ?? early.get(ring)?.length ?? 0) + (overflow.get(ring)?.length ?? 0),
    [Symbol.asyncIterator]() {
      return {
        next: async (): Promise<IteratorResult<GroupDelivery>> => {
          while (queue.length === 0 && !stopped) await new Promise<void>((r) => (wake = r));
          if (queue.length === 0) return { value: undefined, done: true };
          return { value: shift(), done: false };
        },
      };
    },
    async stop() {
      stopped = true;
      wake?.();
      await Promise.all(clients.map((c) => c.stop()));
    },
  };
}

export interface Multicaster {
  /** Multicast `payload` to `group`: resolves once it is ordered in the group's ring. */
  multicast(group: string, payload: Uint8Array): Promise<void>;
  stop(): Promise<void>;
}

/** A client that multicasts to groups: one proposer per ring, started on first use. */
export function createMulticaster(cluster: ClusterConfig): Multicaster {
  const proposers = new Map<number, Promise<RingClient>>();
  return {
    async multicast(group, payload) {
      const [ring] = ringsOf(cluster, [group]);
      let p = proposers.get(ring!);
      if (!p) {
        p = startClient(cluster, { ring, propose: true });
        proposers.set(ring!, p);
      }
      await (await p).propose(payload);
    },
    async stop() {
      await Promise.all([...proposers.values()].map(async (p) => (await p).stop()));
    },
  };
}
