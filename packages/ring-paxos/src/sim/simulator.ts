import { parseSettings } from '../config.js';
import { DYNAMIC_ID_BASE, MessageType, START_OLDEST } from '../core/messages.js';
import { RingNode } from '../core/ring-node.js';
import type { RingSettings } from '../core/settings.js';
import { Driver, type Address, type Clock, type DriverHooks, type DurableLog, type Transport } from '../driver.js';
import { COMMIT_BYTES, FRAME_HEADER_BYTES, FileLog, KIND_COMMIT, MemSegments } from '../storage/file-log.js';
import { encodeHold } from '../core/retention-hold.js';
import { Codec } from '../wire/codec.js';
import { Prng } from './prng.js';
import { VirtualTime } from './events.js';

/**
 * Deterministic simulation of one ring (TigerBeetle's VOPR in miniature): the same RingNode cores and the
 * same Driver and Codec that run on UDP, on a seeded network that drops, duplicates, reorders, delays and
 * partitions datagrams, under a virtual clock, with learners and proposers crashing and restarting. After
 * the fault period the network heals and the run must make progress; checkers look at every delivery.
 */

export interface SimOptions {
  seed: number;
  /** Virtual milliseconds of faults, then of healed network. */
  faultMs?: number;
  healMs?: number;
  /** Values each proposer proposes during faults and after healing. */
  valuesPerProposer?: number;
  /** Print a trace of faults to this function. */
  trace?: (line: string) => void;
}

export interface SimResult {
  seed: number;
  ok: boolean;
  violations: string[];
  acceptors: number;
  learners: number;
  proposers: number;
  decided: number;
  delivered: number;
  acked: number;
  datagrams: number;
  dropped: number;
  crashes: number;
  /** Acceptor restarts whose log recovery found damage (then rejoined), and restarts that cut a torn tail. */
  damaged: number;
  torn: number;
  /** Times an acceptor took the coordinator role over. */
  takeovers: number;
  virtualMs: number;
  /** Shell command that replays this seed. */
  replay: string;
}

interface SimLearner {
  id: number;
  driver: Driver;
  alive: boolean;
  /** Never crashed: must deliver every acknowledged value. */
  original: boolean;
  seq: Array<{ instance: number; key: string }>;
  seen: Set<string>;
}

interface SimProposer {
  id: number;
  driver: Driver;
  alive: boolean;
  nextSeq: number;
}

export function runSimulation(opts: SimOptions): SimResult {
  const rng = new Prng(opts.seed);
  // Draws added after the simulator's first sessions come from a second stream, so every seed keeps the
  // scenario the first stream gives it.
  const rng2 = new Prng(opts.seed ^ 0x5bd1e995);
  // Retention holds on half of the seeds, from a third stream (seeds without them keep their scenario): a
  // holder proposes holds at what the original learners delivered, under the same faults. Learners must
  // never deliver them, and the ring must stay live with holds held up to the log's bounds.
  const rng3 = new Prng(opts.seed ^ 0x27d4eb2f);
  const holdEveryMs = rng3.pick([0, 0, 0, 100, 300]);
  const holders = rng3.pick([1, 3]);
  const faultMs = opts.faultMs ?? 2000;
  const healMs = opts.healMs ?? 3000;
  const perProposer = opts.valuesPerProposer ?? 40;
  const trace = opts.trace ?? (() => {});
  const violations: string[] = [];
  const violate = (s: string): void => {
    if (violations.length < 20) violations.push(s);
  };

  // --- shape of this run, drawn from the seed
  const nAcceptors = rng.pick([1, 3, 3, 3, 5]);
  const f = (nAcceptors - 1) / 2;
  const acceptorIds = Array.from({ length: nAcceptors }, (_, i) => i + 1);
  const ringOrder = acceptorIds.slice(0, f + 1);
  const nLearners = rng.int(1, 4);
  const nProposers = rng.int(1, 4);
  const dropP = rng.pick([0, 0.01, 0.05, 0.1, 0.2]);
  const dupP = rng.pick([0, 0.01, 0.05, 0.1]);
  const baseDelay = rng.pick([0.05, 0.2, 1]);
  const jitter = rng.pick([0, 0.5, 2, 10]);
  const crashP = rng.pick([0, 0.0005, 0.002]);
  const partitionP = rng.pick([0, 0.0005, 0.002]);
  const settings: RingSettings = parseSettings({
    window: rng.pick([1, 4, 16, 64]),
    logCapacity: rng.pick([256, 1024, 16384]),
    logRetain: rng.pick([64, 100]),
    // A byte-bounded retention on some seeds: trims rise to it, down to a window kept.
    logRetainBytes: rng2.pick([0, 0, 2000, 40000]),
    maxHolds: holdEveryMs > 0 ? rng3.pick([1, 2, 16]) : 16,
    phase1Range: rng.pick([64, 256, 4096]),
    maxValueBytes: rng.pick([512, 4096, 32768]),
    maxDatagramBytes: 60 * 1024,
    lingerMs: rng.pick([0, 0, 2]),
    retryTimeoutMs: rng.pick([50, 200]),
    maxSends: 1000,
    learnerTimeoutMs: 1000,
    // Rate leveling on some seeds: positions and skips must stay strictly increasing through failovers.
    lambda: rng.pick([0, 0, 2000]),
    skipIntervalMs: 10,
    epochMs: 0,
  });
  const tickMs = 5;

  // --- virtual time
  const vt = new VirtualTime(() => rng.float());
  const q = vt.q;
  const clock = (): Clock => vt.clock();

  // --- network
  const secret = rng.chance(0.3) ? 'sim-secret-0123456789' : undefined;
  // One codec per process (a restart makes a new one): its own incarnation, counter and replay windows.
  let codecs = 0;
  const codecFor = (): Codec => new Codec({ maxDatagramBytes: settings.maxDatagramBytes, secret, incarnation: ++codecs, now: () => vt.now });
  // The checker reads every datagram as an observer: it checks tags but keeps no replay windows.
  const sniff = new Codec({ maxDatagramBytes: settings.maxDatagramBytes, secret, replay: false });
  const receivers = new Map<Address, (buf: Uint8Array, from: Address) => void>();
  const cut = new Set<Address>();
  let healed = false;
  let datagrams = 0;
  let dropped = 0;
  const decidedVid = new Map<number, number>();
  const checkDecisions = (buf: Uint8Array): void => {
    // Every decision any coordinator announces must agree with every earlier one: decided once.
    const d = sniff.decode(buf);
    if (!d.ok) return;
    const m = d.msg;
    if (m.t !== MessageType.Phase2A && m.t !== MessageType.Decision) return;
    for (let k = 0; k < m.decisions.length; k += 3) {
      for (let i = m.decisions[k]!; i < m.decisions[k]! + m.decisions[k + 1]!; i++) {
        const prev = decidedVid.get(i);
        if (prev === undefined) decidedVid.set(i, m.decisions[k + 2]!);
        else if (prev !== m.decisions[k + 2]) violate(`instance ${i} decided twice: vid ${prev} then ${m.decisions[k + 2]}`);
      }
    }
  };
  const transportFor = (self: Address): Transport => ({
    send(buf, to) {
      datagrams++;
      checkDecisions(buf);
      if (!healed && (cut.has(self) || cut.has(to) || rng.chance(dropP))) {
        dropped++;
        return;
      }
      const copies = !healed && rng.chance(dupP) ? 2 : 1;
      for (let c = 0; c < copies; c++) {
        const delay = baseDelay + (healed ? 0 : rng.float() * jitter);
        const bytes = buf;
        q.push(vt.now + delay, () => receivers.get(to)?.(bytes, self));
      }
    },
    close: async () => {},
  });
  const peers = new Map<number, Address>(acceptorIds.map((id) => [id, `a${id}`]));

  const makeDriver = (id: number, addr: Address, extra: { learnerStart?: number; proposer?: boolean; rejoin?: boolean; incarnation?: number; records?: boolean; paced?: boolean }, hooks: DriverHooks, log?: DurableLog): Driver => {
    const node = new RingNode({ ring: 0, id, ringOrder, acceptors: acceptorIds, settings, ...extra });
    const driver = new Driver({ node, codec: codecFor(), transport: transportFor(addr), clock: clock(), peers, tickMs, hooks, maxDynamicPeers: 64, log });
    receivers.set(addr, (buf, from) => driver.receive(buf, from));
    return driver;
  };

  // --- acceptors: each keeps its log (the same FileLog, on an in-memory disk) across crashes
  const segmentBytes = rng2.pick([256, 1024, 4096, 16384]);
  // Share of acceptor crashes after which the disk is damaged (see damageLog) before the restart.
  const damageP = rng2.pick([0, 0, 0.3, 1]);
  const stores = new Map<number, MemSegments>(acceptorIds.map((id) => [id, new MemSegments(`a${id}`)]));
  /** Damage injected into a stopped acceptor's log: what its recovery must find. */
  const injected = new Map<number, { want: 'damage' | 'torn' } | { want: 'last append'; bytes: number }>();
  /** Each acceptor's open log (kept after a crash, to tear the append it was in the middle of). */
  const logs = new Map<number, FileLog>();
  let incarnations = 0;
  let damaged = 0;
  let torn = 0;
  const startAcceptor = (id: number, amnesia = false, wasRejoining = false): Driver => {
    if (amnesia) stores.set(id, new MemSegments(`a${id}`)); // the log is gone
    const { log, recovered } = FileLog.openStore(stores.get(id)!, 0, 'sync', { segmentBytes, rejoin: amnesia });
    logs.set(id, log);
    // A rejoin that a crash interrupted is in the log: the acceptor must rejoin again.
    if (wasRejoining && !recovered.rejoin) violate(`acceptor ${id} crashed while rejoining, and its log let it vote again`);
    const d = makeDriver(id, `a${id}`, { rejoin: recovered.rejoin, incarnation: ++incarnations }, {}, log);
    d.node.acceptor!.restore(recovered.promised, recovered.entries, recovered.trimmed);
    const fault = injected.get(id);
    injected.delete(id);
    if (recovered.damage) damaged++;
    if (recovered.cutBytes > 0) torn++;
    if (fault?.want === 'damage' && !recovered.damage) violate(`acceptor ${id}: damage injected into its log was not detected`);
    if (fault?.want === 'torn' && recovered.damage) violate(`acceptor ${id}: a torn append was taken for damage (${recovered.damage.reason})`);
    // Bytes flipped in the log's final commit record (and maybe in the record of the same append before
    // it): damage, or a cut of at most the flipped records, which then look like an append torn before its
    // commit (see lastAppendFlip). Every record before them must survive.
    if (fault?.want === 'last append' && !recovered.damage && !(recovered.cutBytes > 0 && recovered.cutBytes <= fault.bytes)) violate(`acceptor ${id}: a damaged last commit record was neither damage nor a cut of the flipped records (${recovered.cutBytes} bytes cut, at most ${fault.bytes} allowed)`);
    if (recovered.damage) trace(`${vt.now.toFixed(1)} acceptor ${id} log damaged: ${recovered.damage.file} at ${recovered.damage.offset}: ${recovered.damage.reason}`);
    return d;
  };
  /** Bytes of segment `b` up to its last non-zero byte: what was written into it. */
  const usedBytes = (b: Buffer): number => {
    let n = b.length;
    while (n > 0 && b[n - 1] === 0) n--;
    return n;
  };
  /**
   * Bytes [at, at + n) about to be flipped in the last segment `b` (`used` bytes written, all of it whole
   * appends): do they reach into its final commit record while staying inside the last append (after the
   * commit before it)? Then the last append has no valid commit left, and from the record where the flip
   * starts on it looks exactly like an append torn by a crash before its commit was written: recovery may
   * cut those bytes silently (a documented limit, like synced records zeroed at the end of the last
   * segment), but no record before them, since those are whole and a torn write never reaches below its
   * own start. Returns how many bytes may be cut, or undefined (the flip must be detected as damage).
   */
  const lastAppendFlip = (b: Buffer, used: number, at: number, n: number): { want: 'last append'; bytes: number } | undefined => {
    let flipped = -1; // where the record holding byte `at` starts
    let final = -1; // the last commit record
    let appendStart = -1; // the end of the commit before it
    for (let pos = 0, len = 0; pos + FRAME_HEADER_BYTES < used && (len = b.readUInt32LE(pos)) > 0; pos += FRAME_HEADER_BYTES + len) {
      if (at >= pos && at < pos + FRAME_HEADER_BYTES + len) flipped = pos;
      if (b[pos + FRAME_HEADER_BYTES] !== KIND_COMMIT || FRAME_HEADER_BYTES + len !== COMMIT_BYTES) continue;
      if (final >= 0) appendStart = final + COMMIT_BYTES;
      final = pos;
    }
    if (final < 0 || final + COMMIT_BYTES !== used || at + n <= final) return undefined;
    // The first commit of a segment ends what its creation wrote (header and state, synced before the
    // segment was listed): only that commit itself may then look torn.
    return flipped >= (appendStart >= 0 ? appendStart : final) ? { want: 'last append', bytes: used - flipped } : undefined;
  };
  /**
   * Storage faults on a stopped acceptor's disk, as recovery sees them: bytes flipped anywhere in what
   * was written (all of it synced: the simulated log syncs every append), any segment (the last too) cut
   * anywhere, any segment (the first and the last too) deleted: all damage, except a flip that reaches
   * the final commit record from inside the last append (see lastAppendFlip). Or a torn append, the only
   * damage that may be cut silently: the crash came in the middle of a write, which reached the disk only
   * in part (the real log's own write, stopped part-way). Returns what was done, or undefined.
   */
  const damageLog = (id: number): string | undefined => {
    const st = stores.get(id)!;
    const seqs = st.list().sort((a, b) => a - b);
    if (seqs.length === 0) return undefined;
    const kind = rng2.pick(['flip', 'flip', 'truncate', 'delete', 'torn']);
    if (kind === 'truncate') {
      const seq = rng2.pick(seqs);
      const b = st.bytes(seq);
      st.put(seq, b.subarray(0, rng2.int(0, b.length - 1)));
      injected.set(id, { want: 'damage' });
      return `segment ${seq} cut to ${st.bytes(seq).length} of ${b.length} bytes`;
    }
    if (kind === 'delete' && seqs.length >= 2) {
      // (Deleting the only segment leaves an empty directory: a new node, which recovery cannot tell.)
      const seq = rng2.pick(seqs);
      st.remove(seq);
      injected.set(id, { want: 'damage' });
      return `segment ${seq} deleted`;
    }
    if (kind === 'torn') {
      const a = acceptors[acceptorIds.indexOf(id)]!.node.acceptor!;
      const records = Array.from({ length: rng2.int(1, 4) }, () => ({ kind: 'promise' as const, ring: 0, ballot: a.promised }));
      const keep = rng2.int(0, records.length * 17 + 17);
      st.tearNextWrite(keep, rng2.chance(0.5));
      try {
        logs.get(id)!.append(records); // the same records again: harmless if they survive whole
      } catch {
        // the write stopped part-way: the crash
      }
      injected.set(id, { want: 'torn' });
      return `an append torn after ${keep} bytes`;
    }
    const seq = rng2.pick(seqs);
    const b = Buffer.from(st.bytes(seq));
    const used = usedBytes(b);
    if (used === 0) return undefined;
    const at = rng2.int(0, used - 1);
    const n = Math.min(rng2.int(1, 5), used - at);
    const last = seq === seqs[seqs.length - 1] ? lastAppendFlip(b, used, at, n) : undefined;
    for (let k = 0; k < n; k++) b[at + k]! ^= rng2.int(1, 256);
    st.put(seq, b);
    injected.set(id, last ?? { want: 'damage' });
    return `${n} bytes flipped at ${at} of segment ${seq} (${used} bytes written)`;
  };
  const acceptors: Driver[] = acceptorIds.map((id) => startAcceptor(id));
  const acceptorUp = acceptorIds.map(() => true);
  const acceptorCrashP = rng.pick([0, 0, 0.0005, 0.002]);
  // Share of acceptor crashes that lose the log: the acceptor comes back empty and must rejoin.
  const amnesiaP = rng.pick([0, 0, 0.3, 1]);
  const unavailable = (k: number): boolean => !acceptorUp[k] || acceptors[k]!.node.acceptor!.rejoining;
  let takeovers = 0;

  // --- bookkeeping for the checkers
  const proposed = new Map<string, string>(); // key "pid:seq" -> data
  const acked = new Set<string>();
  const failed = new Set<string>();
  const postHeal = new Set<string>();
  let nextDynamic = DYNAMIC_ID_BASE + 1;
  let crashes = 0;

  const learners: SimLearner[] = [];
  const startLearner = (original: boolean): SimLearner => {
    const id = nextDynamic++;
    const l: SimLearner = { id, driver: undefined as unknown as Driver, alive: true, original, seq: [], seen: new Set() };
    let lastPos = -1;
    // With rate leveling on, every other learner needs the pace (the first one always does), so the skips
    // and their positions run through failovers while unpaced learners read the same stream.
    const paced = settings.lambda > 0 && id % 2 === 1;
    l.driver = makeDriver(id, `l${id}`, { learnerStart: original ? 0 : START_OLDEST, records: true, paced }, {
      onInstances: (rs) => {
        for (const r of rs) {
          if (r.pos <= lastPos) violate(`learner ${id}: instance ${r.instance} ends at position ${r.pos}, not after ${lastPos}`);
          lastPos = r.pos;
        }
      },
      onDeliver: (ds) => {
        for (const d of ds) {
          const key = `${d.proposer}:${d.seq}`;
          if (l.seen.has(key)) violate(`learner ${id} delivered ${key} twice`);
          l.seen.add(key);
          const want = proposed.get(key);
          if (want === undefined) violate(`learner ${id} delivered ${key}, which nobody proposed`);
          else if (want !== Buffer.from(d.data).toString()) violate(`learner ${id} delivered ${key} with altered data`);
          const last = l.seq[l.seq.length - 1];
          if (last && last.instance > d.instance) violate(`learner ${id} delivered instance ${d.instance} after ${last.instance}`);
          l.seq.push({ instance: d.instance, key });
        }
      },
      onGapTrimmed: (needed, oldest) => {
        // Legitimate for a late learner when the log was trimmed under it; not for an original one.
        if (original) violate(`learner ${id} hit a trimmed gap at ${needed} (oldest ${oldest})`);
      },
    });
    learners.push(l);
    l.driver.start();
    return l;
  };

  const proposers: SimProposer[] = [];
  const startProposer = (): SimProposer => {
    const id = nextDynamic++;
    const p: SimProposer = { id, driver: undefined as unknown as Driver, alive: true, nextSeq: 0 };
    p.driver = makeDriver(id, `p${id}`, { proposer: true }, {
      onAcked: (seqs) => {
        for (const s of seqs) acked.add(`${id}:${s}`);
      },
      onFailed: (seqs) => {
        for (const s of seqs) failed.add(`${id}:${s}`);
      },
    });
    proposers.push(p);
    p.driver.start();
    return p;
  };

  const proposeOne = (p: SimProposer, post: boolean): void => {
    if (!p.alive) return;
    const node = p.driver.node;
    const data = `v${p.id}-${p.nextSeq}-${rng.u32().toString(36)}`;
    const payload = Buffer.from(data.padEnd(rng.int(8, 200), '.'));
    const seq = node.proposer!.propose(payload, vt.now, node.out);
    if (seq < 0) return;
    p.nextSeq = seq + 1;
    const key = `${p.id}:${seq}`;
    proposed.set(key, payload.toString());
    if (post) postHeal.add(key);
    // Swallow the promise-less path: drive the outbox like the driver's propose() would.
    p.driver.drain();
  };

  for (const a of acceptors) a.start();
  for (let i = 0; i < nLearners; i++) startLearner(true);
  for (let i = 0; i < nProposers; i++) startProposer();

  // Load during the fault period.
  for (const p of proposers) {
    for (let k = 0; k < perProposer; k++) {
      const at = 200 + rng.float() * (faultMs - 200);
      q.push(at, () => proposeOne(p, false));
    }
  }

  // Faults: a fault step every 10 ms during the fault period.
  const faultStep = (): void => {
    if (vt.now >= faultMs) return;
    for (const l of learners) {
      if (l.alive && rng.chance(crashP * 10)) {
        l.alive = false;
        l.driver.stop();
        receivers.delete(`l${l.id}`);
        crashes++;
        trace(`${vt.now.toFixed(1)} crash learner ${l.id}`);
        const back = vt.now + rng.float() * 300;
        q.push(back, () => {
          const nl = startLearner(false);
          trace(`${vt.now.toFixed(1)} restart learner as ${nl.id}`);
        });
      }
    }
    for (const p of proposers) {
      if (p.alive && rng.chance(crashP * 10)) {
        p.alive = false;
        p.driver.stop();
        receivers.delete(`p${p.id}`);
        crashes++;
        trace(`${vt.now.toFixed(1)} crash proposer ${p.id}`);
        q.push(vt.now + rng.float() * 300, () => {
          const np = startProposer();
          for (let k = 0; k < perProposer / 4; k++) q.push(vt.now + rng.float() * Math.max(1, faultMs - vt.now), () => proposeOne(np, false));
        });
      }
    }
    for (let k = 0; k < acceptors.length; k++) {
      // At most f acceptors out at once: crashed, or back without their log and still rejoining.
      const down = acceptorIds.filter((_, j) => unavailable(j)).length;
      if (!acceptorUp[k] || down >= f || !rng.chance(acceptorCrashP * 10)) continue;
      const id = acceptorIds[k]!;
      const wasRejoining = acceptors[k]!.node.acceptor!.rejoining;
      // A rejoin needs every other acceptor's answer: lose a log only while all the others are available.
      const othersUp = acceptorIds.every((_, j) => j === k || !unavailable(j));
      const amnesia = rng.chance(amnesiaP) && othersUp;
      acceptorUp[k] = false;
      takeovers += acceptors[k]!.node.takeovers;
      acceptors[k]!.stop();
      receivers.delete(`a${id}`);
      crashes++;
      trace(`${vt.now.toFixed(1)} crash acceptor ${id}${acceptors[k]!.node.coordinator ? ' (coordinator)' : ''}`);
      // A damaged log makes the acceptor rejoin, which needs every other acceptor: only while they are up.
      if (!amnesia && othersUp && rng2.chance(damageP)) {
        const what = damageLog(id);
        if (what) trace(`${vt.now.toFixed(1)} damage the log of acceptor ${id}: ${what}`);
      }
      q.push(vt.now + 50 + rng.float() * 750, () => {
        acceptors[k] = startAcceptor(id, amnesia, wasRejoining && !amnesia);
        acceptors[k]!.start();
        acceptorUp[k] = true;
        trace(`${vt.now.toFixed(1)} restart acceptor ${id} ${amnesia ? 'WITHOUT its log (rejoins)' : 'from its log'}`);
      });
    }
    if (rng.chance(partitionP * 10)) {
      const all = [...peers.values(), ...learners.filter((l) => l.alive).map((l) => `l${l.id}`), ...proposers.filter((p) => p.alive).map((p) => `p${p.id}`)];
      const victim = rng.pick(all);
      cut.add(victim);
      trace(`${vt.now.toFixed(1)} partition ${victim}`);
      q.push(vt.now + rng.float() * 200, () => cut.delete(victim));
    }
    q.push(vt.now + 10, faultStep);
  };
  q.push(0, faultStep);

  let holdsProposed = 0;
  if (holdEveryMs > 0) {
    // Not among `proposers`: nothing it proposes is in `proposed`, so a learner delivering a hold is a violation.
    const holder = makeDriver(nextDynamic++, 'hold', { proposer: true }, {});
    holder.start();
    const holdStep = (): void => {
      const at = Math.min(...learners.filter((l) => l.alive && l.original).map((l) => l.driver.node.learner!.next));
      if (Number.isFinite(at)) {
        holder.node.proposer!.propose(encodeHold(`h${holdsProposed % holders}`, Math.max(0, at - rng3.int(0, 20))), vt.now, holder.node.out);
        holder.drain();
        holdsProposed++;
      }
      if (vt.now + holdEveryMs < faultMs + healMs / 2) q.push(vt.now + holdEveryMs, holdStep);
    };
    q.push(100, holdStep);
  }

  // Heal, then propose a fresh batch that must all get through.
  q.push(faultMs, () => {
    healed = true;
    cut.clear();
    trace(`${vt.now.toFixed(1)} heal`);
    for (const p of proposers) {
      if (!p.alive) continue;
      for (let k = 0; k < Math.max(1, perProposer / 4); k++) q.push(vt.now + rng.float() * 200, () => proposeOne(p, true));
    }
  });

  const end = faultMs + healMs;
  if (!vt.run(end)) violate('event budget exhausted (livelock?)');

  for (const l of learners) {
    const ln = l.driver.node.learner!;
    trace(`end learner ${l.id} alive=${l.alive} coord=${ln.coordinator} started=${ln.started} next=${ln.next} known=${ln.knownFrontier} delivered=${l.seq.length} ${JSON.stringify(ln.stats)}`);
  }
  for (const a of acceptors) {
    const ac = a.node.acceptor!;
    trace(`end acceptor ${a.node.cfg.id} promised=${ac.promised} trimmed=${ac.trimmed} top=${ac.top} horizon=${ac.horizon} caughtUpTo=${ac.caughtUpTo} log=${ac.log.size}`);
    const co = a.node.coordinator;
    if (co) trace(`end coordinator ${a.node.cfg.id} ballot=${co.ballot} layout=${co.ringLayout.join(',')} frontier=${co.frontier} next=${co.next} safe=${co.safe} inflight=${co.windowOccupancy} pending=${co.pendingCount} holds=${co.holds.size}/${holdsProposed} ${JSON.stringify({ ...co.stats, ...co.holds.stats })}`);
  }
  // --- checkers
  const alive = learners.filter((l) => l.alive);
  const originals = alive.filter((l) => l.original);
  for (const key of acked) {
    for (const l of originals) if (!l.seen.has(key)) violate(`acknowledged ${key} not delivered by learner ${l.id}`);
  }
  for (const key of postHeal) {
    if (!acked.has(key)) violate(`after healing, ${key} was not acknowledged within ${healMs} ms`);
    for (const l of alive) if (!l.seen.has(key)) violate(`after healing, ${key} not delivered by learner ${l.id}`);
  }
  // Agreement: on the instances two learners both covered, they delivered the same values in the same order.
  for (let i = 0; i < learners.length; i++) {
    for (let j = i + 1; j < learners.length; j++) {
      const a = learners[i]!.seq;
      const b = learners[j]!.seq;
      if (a.length === 0 || b.length === 0) continue;
      const lo = Math.max(a[0]!.instance, b[0]!.instance);
      const hi = Math.min(a[a.length - 1]!.instance, b[b.length - 1]!.instance);
      const fa = a.filter((x) => x.instance > lo && x.instance < hi).map((x) => `${x.instance}/${x.key}`);
      const fb = b.filter((x) => x.instance > lo && x.instance < hi).map((x) => `${x.instance}/${x.key}`);
      if (fa.length !== fb.length || fa.some((x, k) => x !== fb[k])) {
        const k = fa.findIndex((x, n) => x !== fb[n]);
        violate(`learners ${learners[i]!.id} and ${learners[j]!.id} disagree at position ${k}: ${fa[k]} vs ${fb[k]}`);
      }
    }
  }
  // Acceptor logs agree with the decisions announced.
  for (const a of acceptors) {
    for (const [i, e] of a.node.acceptor!.log) {
      if (e.decided && decidedVid.has(i) && decidedVid.get(i) !== e.vid) violate(`acceptor ${a.node.cfg.id} holds instance ${i} decided with another value`);
    }
  }

  let delivered = 0;
  for (const l of learners) delivered += l.seq.length;
  return {
    seed: opts.seed,
    ok: violations.length === 0,
    violations,
    acceptors: nAcceptors,
    learners: learners.length,
    proposers: proposers.length,
    decided: decidedVid.size,
    takeovers: takeovers + acceptors.reduce((n, a) => n + a.node.takeovers, 0),
    delivered,
    acked: acked.size,
    datagrams,
    dropped,
    crashes,
    damaged,
    torn,
    virtualMs: end,
    replay: `npx ringcast sim --seed ${opts.seed}`,
  };
}
