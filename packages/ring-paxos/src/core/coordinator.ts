import { Acceptor } from './acceptor.js';
import { decodeBatch, encodeBatch, encodeFiller, isFillerValue } from './batch.js';
import { Intake, type IntakeStats, type ValueAcks } from './intake.js';
import {
  makeBallot,
  ballotNode,
  ballotRound,
  MessageType,
  type HeartbeatAck,
  type Nack,
  type Phase1B,
  type Phase2A,
  type Phase2B,
  type Progress,
  type SkipRequest,
  type Propose,
} from './messages.js';
import type { Outbox } from './outbox.js';
import { RateLeveler, type RateLevelerStats } from './rate-leveler.js';
import { Retention, type RetentionStats } from './retention.js';
import { relearnable, type Hold, type RetentionHolds } from './retention-hold.js';
import { MAX_DECISION_TRIPLES, type RingSettings } from './settings.js';

interface Inflight {
  vid: number;
  value: Uint8Array;
  sentAt: number;
  firstSentAt: number;
  /** Proposer seqs inside this value, acknowledged when it is decided. */
  acks: ValueAcks;
  /** Retention holds inside this value, applied when it is decided. */
  holds?: Hold[];
}

/** Something the driver records as a metric when an instance is decided. */
export interface DecidedInfo {
  instance: number;
  bytes: number;
  entries: number;
  latencyMs: number;
}

export interface CoordinatorStats extends IntakeStats, RateLevelerStats, RetentionStats {
  decided: number;
  decidedBytes: number;
  phase2Retransmits: number;
  phase1Retransmits: number;
  nacks: number;
  stale: number;
  /** Instances taken as decided from Phase 1 (an acceptor held them decided), with no Phase 2. */
  takenDecided: number;
}

export interface CoordinatorConfig {
  ring: number;
  id: number;
  /** Every acceptor of the ring (2f+1), this one included. */
  acceptors: readonly number[];
  /** Ring members to prefer, in order, when laying out the ring (the configured ring, or the last one). */
  preferred: readonly number[];
  /** This node's acceptor role: the coordinator is the last member of its ring and votes through it. */
  acceptor: Acceptor;
  settings: RingSettings;
  /** Ballot round to start with (a restarted coordinator passes one above the last it used). */
  round?: number;
  /** Taking over (or restarting): hold the safe instance for learnerTimeoutMs while learners re-register. */
  holdSafe?: boolean;
}

/**
 * The coordinator of a ring (pure): the last ring acceptor. It runs Phase 1 ahead over ranges of
 * instances, batches proposals into values, sends Phase 2A to the other ring acceptors and the learners,
 * decides when its predecessor's Phase 2B carries the votes of the rest of the ring, and announces
 * decisions on the next Phase 2A or alone at the end of a turn, keeping the window of undecided instances.
 * Three parts of its state live in their own classes: the proposals (intake.ts: de-duplication, the
 * pending queue, acknowledgements), rate leveling (rate-leveler.ts: positions, skips) and retention
 * (retention.ts: learners, the trim point below which acceptors trim).
 */
export class Coordinator {
  readonly acceptor: Acceptor;
  readonly stats: CoordinatorStats = {
    decided: 0,
    decidedBytes: 0,
    phase2Retransmits: 0,
    phase1Retransmits: 0,
    duplicateProposals: 0,
    proposalsDropped: 0,
    nacks: 0,
    stale: 0,
    skips: 0,
    demandSkips: 0,
    learnersLeftBehind: 0,
    takenDecided: 0,
  };
  /** Decided instances since the last drain, for metrics. */
  decidedLog: DecidedInfo[] = [];
  /** Rate leveling: positions, skips (rate-leveler.ts). */
  private readonly level: RateLeveler;
  /** Learners and the trim point (retention.ts). */
  private readonly retention: Retention;
  /** Proposals: de-duplication, the pending queue, acknowledgements (intake.ts). */
  private readonly intake: Intake;

  ballot: number;
  /** All instances below this are decided. */
  frontier = 0;
  /** Next instance to open. */
  next = 0;

  /** Set once a higher ballot of another node is seen: the RingNode then drops this role. */
  deposed = false;

  private readonly ring: number;
  private readonly id: number;
  private readonly s: RingSettings;
  /** Every other acceptor: Phase 1 of a new ballot goes to all of them; the first f to promise form the ring. */
  private readonly allOthers: number[];
  private readonly f: number;
  /** The ring of this ballot without the coordinator, in order; undefined until f acceptors promised. */
  private others: number[] | undefined;
  private layout: number[] = [];
  private predecessor = -1;
  private preferred: number[];
  private readonly lastHeard = new Map<number, number>();
  private lastHeartbeatAt = -Infinity;
  private startedAt = 0;
  private lastStepUpAt = -Infinity;
  /** Taking over: hold the trim point while learners re-register (Retention.holdFor). */
  private holdSafeOnStart: boolean;

  // Phase 1: instances below `open` are promised by the whole ring in this ballot.
  private open = 0;
  private p1Lo = 0;
  private p1Hi = 0;
  private p1SentAt = 0;
  private readonly covered = new Map<number, number>();
  /** What Phase 1 found per instance; `decided`: some acceptor holds it decided (see openInstances). */
  private readonly recovered = new Map<number, { vballot: number; vid: number; value: Uint8Array; decided: boolean }>();
  /**
   * One past the highest instance any Phase 1 answer (ours included) accepted: up to here instances are
   * re-proposed or filled with no-ops, never given new batches, so no proposal of a proposer can be
   * ordered before one of its own that an earlier coordinator already decided.
   */
  private recoverTop = 0;
  /** Highest vid of a non-filler value at an instance below next (new batches and skips are placed only
   *  above what their ballot's Phase 1 quorum had accepted). */
  private maxNewVid = 0;

  private readonly inflight = new Map<number, Inflight>();
  private readonly decidedAhead = new Set<number>();
  private decisions: number[] = [];
  private lastSentAt = 0;
  private now = 0;

  constructor(cfg: CoordinatorConfig) {
    this.ring = cfg.ring;
    this.id = cfg.id;
    this.s = cfg.settings;
    if (cfg.acceptors.length % 2 !== 1 || !cfg.acceptors.includes(cfg.id)) throw new Error(`coordinator ${cfg.id}: bad acceptor set ${cfg.acceptors.join(',')}`);
    this.allOthers = cfg.acceptors.filter((x) => x !== cfg.id);
    this.f = (cfg.acceptors.length - 1) / 2;
    this.preferred = cfg.preferred.filter((x) => x !== cfg.id);
    this.acceptor = cfg.acceptor;
    this.ballot = makeBallot(cfg.round ?? 1, cfg.id);
    this.holdSafeOnStart = cfg.holdSafe ?? false;
    this.level = new RateLeveler(cfg.settings, this.stats);
    this.retention = new Retention(cfg.settings, this.stats);
    this.intake = new Intake(cfg.settings, this.stats);
  }

  /** Acceptors may trim below this. */
  get safe(): number {
    return this.retention.safe;
  }

  /** Retention holds in force (see retention-hold.ts): the trim point never passes the lowest. */
  get holds(): RetentionHolds {
    return this.retention.holds;
  }

  /** The ring of the current ballot in order, coordinator last (empty until Phase 1 chose it). */
  get ringLayout(): readonly number[] {
    return this.layout;
  }

  /**
   * Start a ballot: run Phase 1 from the lowest instance this node does not know decided, with every other
   * acceptor; the first f to promise (the configured or previous ring preferred) form the ring with this
   * node last. Used at first start, on takeover, on a Nack of our own older ballot, and to replace a
   * silent ring member.
   */
  start(now: number, out: Outbox): void {
    this.now = now;
    this.startedAt = now;
    this.level.started(now);
    if (this.holdSafeOnStart) {
      this.holdSafeOnStart = false;
      this.retention.holdFor(now + this.s.learnerTimeoutMs);
      // A new coordinator knows no proposer yet: learn which (proposer, seq) its log already holds
      // decided, so a retry whose acknowledgement died with the old coordinator is acknowledged, not
      // ordered again.
      // Holds too: a hold in force lies above the instance it holds, so the log still has it.
      const holds: Hold[] = [];
      for (const [i, e] of this.acceptor.log) {
        if (!e.decided) continue;
        this.intake.markOrdered(e.value, i, holds);
        for (const h of holds.splice(0)) if (relearnable(h, this.acceptor.trimmed)) this.holds.apply(h, i);
      }
    }
    const acc = this.acceptor;
    if (this.frontier < acc.trimmed) this.frontier = acc.trimmed;
    while (acc.log.get(this.frontier)?.decided) this.frontier++;
    for (const i of this.decidedAhead) if (i < this.frontier) this.decidedAhead.delete(i);
    this.retention.atLeast(acc.trimmed);
    this.open = this.frontier;
    this.next = this.frontier;
    this.p1Lo = this.frontier;
    this.p1Hi = this.frontier;
    this.covered.clear();
    this.recovered.clear();
    this.recoverTop = Math.max(acc.top, this.frontier);
    const prev = acc.log.get(this.frontier - 1);
    const prevBatch = prev ? decodeBatch(prev.value) : undefined;
    this.level.lastPos = prevBatch ? prevBatch.pos : -1;
    for (const [i, e] of acc.log) if (i < this.frontier && e.decided && e.vid > this.maxNewVid && !isFillerValue(e.value)) this.maxNewVid = e.vid;
    if (this.others) this.preferred = this.others;
    this.others = undefined;
    this.layout = [];
    this.predecessor = -1;
    // Values in flight in an older ballot must be re-proposed through Phase 1 like any other.
    for (const [i, f] of this.inflight) {
      if (i >= this.frontier) this.recovered.set(i, { vballot: 0, vid: f.vid, value: f.value, decided: false });
    }
    this.inflight.clear();
    if (this.f === 0) this.setLayout([]);
    this.extendPhase1(out);
  }

  private setLayout(others: number[]): void {
    this.others = others;
    this.layout = [...others, this.id];
    this.predecessor = others.length > 0 ? others[others.length - 1]! : -1;
    for (const a of [...this.covered.keys()]) if (!others.includes(a)) this.covered.delete(a);
  }

  /**
   * Choose the ring once f acceptors have promised the first range: the preferred members (configured or
   * previous ring) when they all answer; after phase1TimeoutMs, whichever f answered, preferred first.
   */
  private maybeChooseLayout(): void {
    if (this.others) return;
    const ready = this.allOthers.filter((a) => (this.covered.get(a) ?? -1) >= this.p1Hi);
    if (ready.length < this.f) return;
    const want = this.preferred.slice(0, this.f);
    const allPreferred = want.length === this.f && want.every((a) => ready.includes(a));
    if (!allPreferred && this.now - this.startedAt < this.s.phase1TimeoutMs) return;
    const chosen = this.preferred.filter((a) => ready.includes(a)).slice(0, this.f);
    for (const a of ready) if (chosen.length < this.f && !chosen.includes(a)) chosen.push(a);
    this.setLayout(chosen);
  }

  get windowOccupancy(): number {
    return this.inflight.size;
  }

  get learnerCount(): number {
    return this.retention.learnerCount;
  }

  get pendingCount(): number {
    return this.intake.count;
  }

  private extendPhase1(out: Outbox): void {
    const lo = this.p1Hi;
    const hi = lo + this.s.phase1Range;
    this.p1Hi = hi;
    this.p1SentAt = this.now;
    // The coordinator's own acceptor promises locally; its accepted values join the recovered set.
    this.selfPhase1(lo, hi, out);
    if (this.others && this.others.length === 0) {
      this.recomputeOpen();
      return;
    }
    for (const a of this.others ?? this.allOthers) {
      if (!this.covered.has(a)) this.covered.set(a, lo);
      out.send(a, { t: MessageType.Phase1A, ring: this.ring, from: this.id, ballot: this.ballot, lo, hi });
    }
  }

  private selfPhase1(lo: number, hi: number, out: Outbox): void {
    const acc = this.acceptor;
    if (this.ballot > acc.promised) {
      acc.promised = this.ballot;
      out.persist.push({ kind: 'promise', ring: this.ring, ballot: this.ballot });
    }
    for (let i = Math.max(lo, acc.trimmed); i < hi; i++) {
      const e = acc.log.get(i);
      if (e) this.noteRecovered(i, e.ballot, e.vid, e.value, e.decided, out);
    }
  }

  /**
   * A value Phase 1 found at instance i. One an acceptor holds decided is the ring's chosen value there:
   * it wins over every other report, and this node's acceptor holds it decided at once (openInstances then
   * takes it as decided instead of re-proposing it).
   */
  private noteRecovered(i: number, vballot: number, vid: number, value: Uint8Array, decided: boolean, out: Outbox): void {
    if (i < this.next) return;
    const r = this.recovered.get(i);
    if (r?.decided) return;
    if (decided && this.acceptor.holdDecided(i, vid, value, out)) this.recovered.set(i, { vballot, vid, value, decided: true });
    else if (!r || vballot > r.vballot) this.recovered.set(i, { vballot, vid, value, decided: false });
  }

  onPhase1B(m: Phase1B, out: Outbox): void {
    if (m.ballot !== this.ballot) {
      this.stats.stale++;
      return;
    }
    this.lastHeard.set(m.from, this.now);
    if (m.trimmed > this.frontier) {
      // Everything below is decided and delivered by every learner: start Phase 1 over from there (keeping
      // how far this acceptor accepted: values there may hold retention holds, see updateSafe).
      this.jumpTo(m.trimmed, out, m.top);
      return;
    }
    const c = this.covered.get(m.from);
    if (c === undefined || m.lo !== c || m.hi <= c) return; // out of order or duplicate: re-asked on timeout
    if (m.hi > this.p1Hi) return; // covers more than was asked: not an answer to us
    if (m.top > this.recoverTop) this.recoverTop = m.top;
    for (let k = 0; k < m.insts.length; k++) {
      const i = m.insts[k]!;
      if (i >= m.lo && i < m.hi) this.noteRecovered(i, m.vballots[k]!, m.vids[k]!, m.values[k]!, m.decided[k] === 1, out);
    }
    this.covered.set(m.from, m.hi);
    this.maybeChooseLayout();
    this.recomputeOpen();
    this.openInstances(out);
  }

  /** Acceptors trimmed up to `t`: nothing below can be needed; run Phase 1 from there. */
  private jumpTo(t: number, out: Outbox, top: number): void {
    // Below t everything was delivered by every learner the old coordinator knew and trimmed at some
    // acceptor; this node cannot serve it either (it never learned those decisions), so trim here too.
    this.acceptor.applyDecisions([], t, out);
    this.frontier = t;
    this.retention.atLeast(t);
    for (const i of this.inflight.keys()) if (i < t) this.inflight.delete(i);
    this.start(this.now, out);
    if (top > this.recoverTop) this.recoverTop = top;
  }

  private recomputeOpen(): void {
    if (!this.others) return;
    let open = this.p1Hi;
    for (const c of this.covered.values()) if (c < open) open = c;
    if (open > this.open) {
      this.open = open;
      this.p1SentAt = this.now;
    }
  }

  onNack(m: Nack, out: Outbox): void {
    this.stats.nacks++;
    this.seeBallot(m.promised, out);
  }

  /**
   * A ballot seen at another acceptor or in another coordinator's message. Higher and another node's:
   * step down (the RingNode drops this role). Higher and our own (an earlier life of this node): step up.
   */
  seeBallot(ballot: number, out: Outbox): void {
    if (ballot <= this.ballot) return;
    if (ballotNode(ballot) !== this.id) this.deposed = true;
    else this.stepUp(ballot, out);
  }

  onHeartbeatAck(m: HeartbeatAck, out: Outbox): void {
    this.lastHeard.set(m.from, this.now);
    this.seeBallot(m.ballot, out);
  }

  /** Someone holds a higher ballot: take a round above it and run Phase 1 again from the frontier. */
  private stepUp(promised: number, out: Outbox): void {
    this.ballot = makeBallot(ballotRound(promised) + 1, this.id);
    this.lastStepUpAt = this.now;
    this.start(this.now, out);
  }

  onPropose(m: Propose, now: number, out: Outbox): void {
    this.now = now;
    this.intake.receive(m, now, this.isDecided);
    if (this.intake.bytes >= this.s.maxValueBytes) this.openInstances(out);
  }

  private readonly isDecided = (i: number): boolean => i < this.frontier || this.decidedAhead.has(i);

  private canOpen(): boolean {
    return (
      this.others !== undefined &&
      this.next < this.open &&
      this.inflight.size < this.s.window &&
      this.next < this.safe + this.s.logCapacity &&
      this.level.allowsOpen(this.now)
    );
  }

  /**
   * Open instances while the window allows. Below recoverTop: the recovered value, or a no-op in a hole.
   * Above it: batches of new proposals.
   */
  private openInstances(out: Outbox, lingerDone = false): void {
    while (this.canOpen()) {
      const r = this.recovered.get(this.next);
      if (r) {
        this.recovered.delete(this.next);
        if (r.decided) {
          this.takeDecided(r.vid, r.value);
          continue;
        }
        if (r.vballot > 0 && r.vballot < this.maxNewVid) {
          // A lower instance holds new proposals of ballot maxNewVid, which were placed only above every
          // instance its Phase 1 quorum had accepted; that quorum promised maxNewVid, so this value, accepted
          // at a lower ballot, was never chosen and never can be. Fill the instance instead: re-proposing it
          // would put its old position after later ones.
          this.proposeEmpty(this.level.nextPos(this.next, false, this.now, this.recovered), true, out);
          continue;
        }
        const found: Hold[] = [];
        // Acknowledge its proposals once decided: the coordinator that proposed it first may be gone (or
        // restarted its ballot) with the acknowledgements, and a proposer still retrying when the instance
        // is trimmed would have its value ordered a second time by a coordinator that takes over later.
        const acks: ValueAcks = [];
        const pos = this.intake.markOrdered(r.value, this.next, found, acks);
        if (pos >= 0) this.level.lastPos = pos;
        if (r.vid > this.maxNewVid && !isFillerValue(r.value)) this.maxNewVid = r.vid;
        const holds = found.filter((h) => relearnable(h, this.acceptor.trimmed));
        this.propose(this.next++, r.vid, r.value, acks, out, holds.length > 0 ? holds : undefined);
        continue;
      }
      if (this.next < this.recoverTop) {
        // Below what an earlier ballot may have used: never new proposals there, which must all come
        // after anything an earlier coordinator decided (a proposer's floor depends on it).
        this.proposeEmpty(this.level.nextPos(this.next, false, this.now, this.recovered), true, out);
        continue;
      }
      if (this.intake.count > 0 && (lingerDone || this.intake.bytes >= this.s.maxValueBytes)) {
        this.cutBatch(out);
        continue;
      }
      break;
    }
    if (this.next + this.s.phase1Range / 2 > this.p1Hi) this.extendPhase1(out);
  }

  /**
   * Instance `next`, which an acceptor of this ballot's Phase 1 holds decided (its value, now held decided
   * here too): take it as decided as it is, with no Phase 2: the decision goes out with the others (learners
   * that lack the value fetch it from an acceptor), its proposals are acknowledged, its holds applied, its
   * position and vid count as a re-proposed value's would. A lagging new coordinator so skips, in one Phase 1
   * round trip, what its log lacks instead of re-deciding it a window at a time.
   */
  private takeDecided(vid: number, value: Uint8Array): void {
    const holds: Hold[] = [];
    const acks: ValueAcks = [];
    const pos = this.intake.markOrdered(value, this.next, holds, acks);
    if (pos >= 0) this.level.lastPos = pos;
    if (vid > this.maxNewVid && !isFillerValue(value)) this.maxNewVid = vid;
    const kept = holds.filter((h) => relearnable(h, this.acceptor.trimmed));
    this.stats.takenDecided++;
    this.decide(this.next++, { vid, value, sentAt: this.now, firstSentAt: this.now, acks, holds: kept.length > 0 ? kept : undefined }, false);
  }

  private cutBatch(out: Outbox): void {
    const instance = this.next++;
    const { groups, acks, holds } = this.intake.take(instance, this.now);
    const pos = this.level.nextPos(instance, true, this.now, this.recovered);
    this.level.lastPos = pos;
    this.level.valueOpened(this.now);
    if (this.ballot > this.maxNewVid) this.maxNewVid = this.ballot;
    this.propose(instance, this.ballot, encodeBatch(pos, groups), acks, out, holds);
  }

  /** A value with no proposals ending at `pos`: a filler below recoverTop, or a skip above it. */
  private proposeEmpty(pos: number, filler: boolean, out: Outbox): void {
    this.level.lastPos = pos;
    if (!filler && this.ballot > this.maxNewVid) this.maxNewVid = this.ballot;
    this.propose(this.next++, this.ballot, filler ? encodeFiller(pos) : encodeBatch(pos, []), [], out);
  }

  private propose(instance: number, vid: number, value: Uint8Array, acks: ValueAcks, out: Outbox, holds?: Hold[]): void {
    const m: Phase2A = {
      t: MessageType.Phase2A,
      ring: this.ring,
      from: this.id,
      ballot: this.ballot,
      instance,
      vid,
      value,
      decisions: this.takeDecisions(),
      safe: this.safe,
      layout: this.layout,
    };
    const f: Inflight = { vid, value, sentAt: this.now, firstSentAt: this.now, acks, holds };
    this.inflight.set(instance, f);
    // Trim first (canOpen counted on it), then accept: the coordinator's own vote is part of every decision,
    // so an instance its acceptor refused must never be decided.
    this.acceptor.applyDecisions(m.decisions, m.safe, out);
    if (!this.acceptor.accept(m, out)) {
      if (this.acceptor.promised > this.ballot) {
        // Our own acceptor promised a higher ballot: step above it; Phase 1 re-proposes this value.
        this.stepUp(this.acceptor.promised, out);
        return;
      }
      throw new Error(`invariant: coordinator ${this.id} ring ${this.ring} could not accept its own instance ${instance} (trimmed ${this.acceptor.trimmed})`);
    }
    this.send2A(m, out, true);
    if (this.layout.length === 1) this.decide(instance, f);
  }

  private send2A(m: Phase2A, out: Outbox, toLearners: boolean): void {
    const others = this.others ?? [];
    const to = toLearners ? [...others, ...this.retention.learnerIds()] : others;
    out.send(to, m);
    this.lastSentAt = this.now;
  }

  private takeDecisions(): number[] {
    const d = this.decisions;
    if (d.length > 0) this.decisions = [];
    return d;
  }

  onPhase2B(m: Phase2B, now: number, out: Outbox): void {
    this.now = now;
    if (m.ballot !== this.ballot || m.from !== this.predecessor) {
      this.stats.stale++;
      return;
    }
    this.lastHeard.set(m.from, now);
    const f = this.inflight.get(m.instance);
    if (!f || f.vid !== m.vid) return; // already decided, or not ours
    if (m.votes + 1 < this.layout.length) return;
    this.decide(m.instance, f);
    this.openInstances(out);
  }

  /** Instance decided (`voted`: by this ballot's Phase 2; else taken as decided from Phase 1, see takeDecided). */
  private decide(instance: number, f: Inflight, voted = true): void {
    this.inflight.delete(instance);
    let entries = 0;
    for (const a of f.acks) {
      entries += a.seqs.length;
      for (const s of a.seqs) this.intake.ack(a.pid, s);
    }
    if (voted) {
      this.stats.decided++;
      this.stats.decidedBytes += f.value.length;
      this.decidedLog.push({ instance, bytes: f.value.length, entries, latencyMs: this.now - f.firstSentAt });
    }
    if (f.holds) for (const h of f.holds) this.holds.apply(h, instance);
    const e = this.acceptor.log.get(instance);
    if (e && e.vid === f.vid) e.decided = true;
    if (instance === this.frontier) {
      this.frontier++;
      while (this.decidedAhead.delete(this.frontier)) this.frontier++;
    } else {
      this.decidedAhead.add(instance);
    }
    const d = this.decisions;
    const n = d.length;
    if (n >= 3 && d[n - 3]! + d[n - 2]! === instance && d[n - 1] === f.vid) d[n - 2]!++;
    else d.push(instance, 1, f.vid);
  }

  /**
   * End of a turn (the driver calls it once it has handled every datagram that was ready): cut a batch
   * from what is pending when the linger time allows, send the decisions no Phase 2A carried, and the
   * acknowledgements.
   */
  flush(now: number, out: Outbox): void {
    this.now = now;
    const lingerDone = now - this.intake.firstAt >= this.s.lingerMs;
    this.openInstances(out, lingerDone);
    // A learner waits for a position this ring has not reached: skip as soon as the ring is idle (its last
    // values may have ended short of it), at most once per ms.
    if (this.level.demandSkipDue(now)) this.skipIfIdle(now, out, true);
    if (this.decisions.length > 0) this.sendDecisions(out);
    this.intake.sendAcks(this.ring, this.id, out);
  }

  private sendDecisions(out: Outbox): void {
    const d = this.takeDecisions();
    const to = [...(this.others ?? []), ...this.retention.learnerIds()];
    const step = MAX_DECISION_TRIPLES * 3;
    for (let k = 0; k < d.length || k === 0; k += step) {
      out.send(to, { t: MessageType.Decision, ring: this.ring, from: this.id, ballot: this.ballot, decisions: d.slice(k, k + step), safe: this.safe });
    }
    this.lastSentAt = this.now;
  }

  /** One skip ending where rate leveling says (rate-leveler.ts), if this ring is idle and behind it. */
  private skipIfIdle(now: number, out: Outbox, onDemand = false): void {
    const t = this.level.skipEnd(now, onDemand);
    if (t !== undefined && this.pendingCount === 0 && this.next >= this.recoverTop && this.recovered.size === 0 && this.canOpen()) {
      this.level.skipped(t, now, onDemand);
      this.proposeEmpty(t, false, out);
    }
  }

  /**
   * A learner's merge waits for this ring to pass `pos`: skip at the end of this turn (flush) rather than at
   * the next Δ check. Only learners of this ring may ask (they registered with Progress).
   */
  onSkipRequest(m: SkipRequest, now: number): void {
    this.now = now;
    if (this.retention.isLearner(m.from)) this.level.onSkipRequest(m.pos, now);
  }

  onProgress(m: Progress, now: number, out: Outbox): void {
    this.now = now;
    const oldest = this.retention.progress(m.from, m.start, m.delivered, m.paced === 1, now, this.frontier, this.acceptor.trimmed);
    if (oldest === undefined) {
      this.stats.stale++;
      return;
    }
    this.updateSafe();
    out.send(m.from, { t: MessageType.Status, ring: this.ring, from: this.id, oldest, next: this.frontier, ballot: this.ballot });
  }

  /** The trim point (retention.ts); recovering (ring not chosen yet, or re-proposing what earlier ballots accepted), the holds are not all known. */
  private updateSafe(): void {
    const recovering = this.others === undefined || this.frontier < this.recoverTop;
    this.retention.update({ now: this.now, frontier: this.frontier, trimmed: this.acceptor.trimmed, log: this.acceptor.log, recovering });
  }

  /** Timers: retransmit stuck Phase 2A and Phase 1A, expire silent learners, heartbeat when idle. */
  tick(now: number, out: Outbox): void {
    this.now = now;
    for (const [instance, f] of this.inflight) {
      if (now - f.sentAt < this.s.phase2TimeoutMs) continue;
      f.sentAt = now;
      this.stats.phase2Retransmits++;
      const m: Phase2A = {
        t: MessageType.Phase2A,
        ring: this.ring,
        from: this.id,
        ballot: this.ballot,
        instance,
        vid: f.vid,
        value: f.value,
        decisions: [],
        safe: this.safe,
        layout: this.layout,
      };
      this.send2A(m, out, false);
    }
    if (this.others === undefined) {
      this.maybeChooseLayout();
      if (this.others) {
        this.recomputeOpen();
        this.openInstances(out);
      }
    }
    if ((this.others === undefined || this.open < this.p1Hi) && now - this.p1SentAt >= this.s.phase1TimeoutMs) {
      this.p1SentAt = now;
      for (const [a, c] of this.covered) {
        if (c >= this.p1Hi) continue;
        this.stats.phase1Retransmits++;
        out.send(a, { t: MessageType.Phase1A, ring: this.ring, from: this.id, ballot: this.ballot, lo: c, hi: this.p1Hi });
      }
    }
    // Rate leveling: an idle ring behind the target skips to it, Δ after its last check or value, while some
    // registered learner needs the pace (merges this ring with others, or starts or stops at an agreed
    // position); learners that read this ring alone only ever wait for values.
    if (this.level.checkDue(now) && this.retention.paced()) this.skipIfIdle(now, out);
    if (now - this.lastHeartbeatAt >= this.s.heartbeatMs) {
      this.lastHeartbeatAt = now;
      out.send(this.allOthers, { t: MessageType.Heartbeat, ring: this.ring, from: this.id, ballot: this.ballot, safe: this.safe });
    }
    // A ring member silent too long is replaced: a new ballot whose Phase 1 picks live acceptors.
    if (this.others && this.others.length > 0 && now - this.lastStepUpAt >= this.s.acceptorTimeoutMs) {
      const heard = (a: number): boolean => now - (this.lastHeard.get(a) ?? this.startedAt) < this.s.acceptorTimeoutMs;
      const silent = this.others.filter((a) => !heard(a));
      if (silent.length > 0 && this.allOthers.filter(heard).length >= this.f) {
        this.preferred = this.others.filter(heard);
        this.others = undefined;
        this.stepUp(this.ballot, out);
      }
    }
    this.retention.expire(now);
    // Also when no learner went: the stuck-learner rule depends on time.
    this.updateSafe();
    // The coordinator's own acceptor trims here too when no Phase 2A has carried the safe instance.
    if (this.safe > this.acceptor.trimmed) this.acceptor.applyDecisions([], this.safe, out);
    this.flush(now, out);
    if (now - this.lastSentAt >= this.s.heartbeatMs) this.sendDecisions(out);
  }
}
