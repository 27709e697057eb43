import {
  MessageType,
  type Heartbeat,
  type Learn,
  type Phase1A,
  type Phase1B,
  type Phase2A,
  type Phase2B,
  type RetransmitRequest,
} from './messages.js';
import type { Outbox } from './outbox.js';
import { DATAGRAM_OVERHEAD, type RingSettings } from './settings.js';

/** Retransmission requests a ring member filling its log sends per gapTimeoutMs (see fillRange). */
export const FILL_REQUESTS = 4;

/** One accepted value in the acceptor log. */
export interface LogEntry {
  ballot: number;
  vid: number;
  value: Uint8Array;
  decided: boolean;
  /** The ring the value was proposed over (from its Phase 2A); not persisted, re-learned on re-proposal. */
  layout?: readonly number[];
}

/** Counters the driver exports as metrics. */
export interface AcceptorStats {
  accepted: number;
  stale: number;
  logFull: number;
  retransmittedInstances: number;
  votesBuffered: number;
}

export interface AcceptorConfig {
  ring: number;
  id: number;
  settings: RingSettings;
}

/**
 * A Ring Paxos acceptor (pure). It promises ballots, accepts Phase 2A values, forwards its vote along the
 * ring in Phase 2B, keeps a bounded log of accepted values, marks decisions, serves decided values to
 * learners, and trims below the ring's safe instance.
 */
export class Acceptor {
  promised = 0;
  /** Instances below this are trimmed (no longer held). */
  trimmed = 0;
  /** One past the highest instance ever accepted (0: none). */
  top = 0;
  /**
   * Rejoining after losing its log: below this instance it may have accepted and forgotten values, so it
   * takes no part there (no Phase 1 answer, no vote, no heartbeat acknowledgement) until it holds the
   * decided value of every instance below it (or the ring trimmed past it). Infinity while the rejoin
   * query is unanswered; 0 once rejoined, and for an acceptor that never lost its log.
   */
  horizon = 0;
  /** While catching up: every instance below this is trimmed or held decided. */
  caughtUpTo = 0;
  readonly log = new Map<number, LogEntry>();
  readonly stats: AcceptorStats = { accepted: 0, stale: 0, logFull: 0, retransmittedInstances: 0, votesBuffered: 0 };

  private readonly ring: number;
  private readonly id: number;
  private readonly settings: RingSettings;
  /** Phase 2B votes that arrived before their Phase 2A, by instance (bounded by the window). */
  private readonly earlyVotes = new Map<number, Phase2B>();

  constructor(cfg: AcceptorConfig) {
    this.ring = cfg.ring;
    this.id = cfg.id;
    this.settings = cfg.settings;
  }

  /** Restore state from a durable log (records in the order they were persisted). */
  restore(promised: number, entries: Iterable<[number, LogEntry]>, trimmed: number): void {
    this.promised = promised;
    this.trimmed = trimmed;
    for (const [i, e] of entries) {
      if (i < trimmed) continue;
      this.log.set(i, e);
      if (i + 1 > this.top) this.top = i + 1;
      // A hole below a decided instance is a decided instance this node lacks (it fills it, see fillRange).
      if (e.decided && i + 1 > this.decidedTop) this.decidedTop = i + 1;
    }
    if (trimmed > this.top) this.top = trimmed;
  }

  /** Still inside the part of the log it may have forgotten? */
  get rejoining(): boolean {
    return this.horizon > 0;
  }

  onPhase1A(m: Phase1A, out: Outbox): void {
    if (this.rejoining) {
      this.stats.stale++; // cannot speak for instances it may have forgotten: stay silent
      return;
    }
    if (m.ballot < this.promised) {
      out.send(m.from, { t: MessageType.Nack, ring: this.ring, from: this.id, ballot: m.ballot, promised: this.promised });
      this.stats.stale++;
      return;
    }
    this.promise(m.ballot, out);
    // Answer at most two Phase 1 ranges at once (the coordinator asks for the rest when it sees `hi`),
    // so a request for billions of instances costs no more than a normal one.
    const hi = Math.min(m.hi, Math.max(m.lo, this.trimmed) + 2 * this.settings.phase1Range);
    if (hi <= m.lo) return;
    this.replyPhase1(m.ballot, m.from, Math.max(m.lo, this.trimmed), hi, m.lo, out);
  }

  /**
   * Report accepted values in [lo, hi) as one or more Phase 1B messages, each covering a contiguous
   * sub-range and fitting one datagram. The first covers from `coverFrom` so trimmed instances count.
   */
  private replyPhase1(ballot: number, to: number, lo: number, hi: number, coverFrom: number, out: Outbox): void {
    const budget = this.settings.maxDatagramBytes - DATAGRAM_OVERHEAD;
    let start = coverFrom;
    let msg = this.phase1B(ballot, start);
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.log.get(i);
      if (!e) continue;
      if (bytes + e.value.length + 33 > budget && msg.insts.length > 0) {
        msg.hi = i;
        out.send(to, msg);
        start = i;
        msg = this.phase1B(ballot, start);
        bytes = 0;
      }
      msg.insts.push(i);
      msg.vballots.push(e.ballot);
      msg.vids.push(e.vid);
      msg.values.push(e.value);
      msg.decided.push(e.decided ? 1 : 0);
      bytes += e.value.length + 33;
    }
    msg.hi = hi;
    out.send(to, msg);
  }

  private phase1B(ballot: number, lo: number): Phase1B {
    return {
      t: MessageType.Phase1B,
      ring: this.ring,
      from: this.id,
      ballot,
      lo,
      hi: lo,
      trimmed: this.trimmed,
      top: Math.max(this.top, this.trimmed),
      insts: [],
      vballots: [],
      vids: [],
      values: [],
      decided: [],
    };
  }

  private promise(ballot: number, out: Outbox): void {
    if (ballot > this.promised) {
      this.promised = ballot;
      out.persist.push({ kind: 'promise', ring: this.ring, ballot });
    }
  }

  /**
   * Accept a Phase 2A value. Returns true if accepted (the caller, acceptor or coordinator, then votes).
   * Decisions and the safe instance carried by the message are applied by the caller via applyDecisions.
   */
  accept(m: Phase2A, out: Outbox): boolean {
    if (m.ballot < this.promised) {
      out.send(m.from, { t: MessageType.Nack, ring: this.ring, from: this.id, ballot: m.ballot, promised: this.promised });
      this.stats.stale++;
      return false;
    }
    // A rejoining acceptor casts no vote at all (not even above its horizon): it must look silent, so the
    // coordinator lays the ring out without it and the instances below its horizon get decided.
    if (m.instance < this.trimmed || this.rejoining) {
      this.stats.stale++;
      return false;
    }
    if (m.instance >= this.trimmed + this.settings.logCapacity) {
      this.stats.logFull++;
      return false;
    }
    this.promise(m.ballot, out);
    const prev = this.log.get(m.instance);
    if (prev && prev.decided) {
      // A decided instance can only be re-proposed with its decided value; keep it, vote in the new ballot.
      if (prev.vid !== m.vid) return false;
      prev.ballot = m.ballot;
      prev.layout = m.layout;
      return true;
    }
    if (prev && prev.ballot === m.ballot && prev.vid === m.vid) {
      prev.layout = m.layout; // duplicate 2A (a retransmission may carry the layout a restart forgot)
      return true;
    }
    this.log.set(m.instance, { ballot: m.ballot, vid: m.vid, value: m.value, decided: false, layout: m.layout });
    if (m.instance + 1 > this.top) this.top = m.instance + 1;
    out.persist.push({ kind: 'accept', ring: this.ring, instance: m.instance, ballot: m.ballot, vid: m.vid, value: m.value });
    this.stats.accepted++;
    return true;
  }

  /** Phase 2A at an acceptor that is not the coordinator: accept, then vote along the instance's ring. */
  onPhase2A(m: Phase2A, out: Outbox): void {
    this.applyDecisions(m.decisions, m.safe, out); // trim first: the window counts on room past safe
    const ok = this.accept(m, out);
    const pos = m.layout.indexOf(this.id);
    if (!ok || pos < 0 || pos === m.layout.length - 1) return;
    if (pos === 0) {
      this.vote(m.layout, m.ballot, m.instance, m.vid, 1, out);
    } else {
      const early = this.earlyVotes.get(m.instance);
      if (early && early.ballot === m.ballot && early.vid === m.vid) {
        this.earlyVotes.delete(m.instance);
        this.vote(m.layout, m.ballot, m.instance, m.vid, early.votes + 1, out);
      }
    }
  }

  /** Phase 2B from the ring predecessor at an acceptor that is not the coordinator. */
  onPhase2B(m: Phase2B, out: Outbox): void {
    const e = this.log.get(m.instance);
    if (e && e.ballot === m.ballot && e.vid === m.vid) {
      if (e.layout) this.vote(e.layout, m.ballot, m.instance, m.vid, m.votes + 1, out);
      return;
    }
    if (m.ballot < this.promised || m.instance < this.trimmed) {
      this.stats.stale++;
      return;
    }
    // The vote overtook its value: hold it (bounded) until the Phase 2A arrives.
    if (this.earlyVotes.size >= this.settings.window * 2) {
      const oldest = this.earlyVotes.keys().next().value as number;
      this.earlyVotes.delete(oldest);
    }
    this.earlyVotes.set(m.instance, m);
    this.stats.votesBuffered++;
  }

  private vote(layout: readonly number[], ballot: number, instance: number, vid: number, votes: number, out: Outbox): void {
    const pos = layout.indexOf(this.id);
    if (pos < 0 || pos + 1 >= layout.length) return;
    out.send(layout[pos + 1]!, { t: MessageType.Phase2B, ring: this.ring, from: this.id, ballot, instance, vid, votes });
  }

  /** Answer a rejoining acceptor: what this one promised and how far it accepted. */
  onRejoinQuery(from: number, nonce: number, out: Outbox): void {
    out.send(from, { t: MessageType.RejoinReply, ring: this.ring, from: this.id, nonce, promised: this.promised, top: Math.max(this.top, this.trimmed) });
  }

  /**
   * Rejoin with the answers of EVERY other acceptor. A ballot this acceptor promised before losing its log
   * was promised first by that ballot's coordinator (its own acceptor), and an instance it voted on was
   * accepted first by that coordinator: so the highest promise and the highest top among all the others
   * bound what it forgot, even when the other ring members have not seen that ballot or value yet.
   * (f+1 answers are not enough for that: the coordinator may be the one missing.) Promise the highest
   * ballot; below the highest top, take no part until the decided values there are fetched.
   */
  completeRejoin(replies: ReadonlyArray<{ promised: number; top: number }>, out: Outbox): void {
    let promised = this.promised;
    let horizon = 0;
    for (const r of replies) {
      if (r.promised > promised) promised = r.promised;
      if (r.top > horizon) horizon = r.top;
    }
    this.promise(promised, out);
    this.caughtUpTo = this.trimmed;
    if (horizon === 0) {
      // Nothing was accepted anywhere: nothing to fetch, the rejoin is done (and must say so in the log).
      this.horizon = 0;
      out.persist.push({ kind: 'rejoined', ring: this.ring });
      return;
    }
    this.horizon = horizon;
    this.advanceCatchUp(out);
  }

  /**
   * Move the catch-up point over trimmed and held-decided instances; finish the rejoin at the horizon,
   * recording that in the log (after the records that made it whole) so a restart need not rejoin again.
   */
  private advanceCatchUp(out: Outbox): void {
    if (this.horizon === 0 || this.horizon === Infinity) return;
    if (this.caughtUpTo < this.trimmed) this.caughtUpTo = this.trimmed;
    while (this.caughtUpTo < this.horizon && this.log.get(this.caughtUpTo)?.decided) this.caughtUpTo++;
    if (this.caughtUpTo >= this.horizon) {
      this.horizon = 0;
      out.persist.push({ kind: 'rejoined', ring: this.ring });
    }
  }

  /**
   * Decided values fetched while rejoining, or by a ring member filling what it missed as a spare: held as
   * accepted at the current promise (any ballot above the deciding one proposes the same value, so
   * reporting it there in a later Phase 1 is sound) and decided.
   */
  onLearn(m: Learn, out: Outbox): void {
    if (this.horizon === Infinity) return;
    const top = this.horizon > 0 ? this.horizon : this.decidedTop;
    if (m.trimmed > this.trimmed) this.trim(m.trimmed, out);
    for (let k = 0; k < m.insts.length; k++) {
      if (m.insts[k]! < top) this.holdDecided(m.insts[k]!, m.vids[k]!, m.values[k]!, out);
    }
    this.advanceCatchUp(out);
    this.advanceFilled();
  }

  /**
   * Hold `value` as the decided value of instance i (known decided elsewhere: a Learn, or a Phase 1B flag),
   * at the current promise. False if i is trimmed or past the log's capacity (nothing held).
   */
  holdDecided(i: number, vid: number, value: Uint8Array, out: Outbox): boolean {
    if (i < this.trimmed || i >= this.trimmed + this.settings.logCapacity) return false;
    if (this.log.get(i)?.decided) return true;
    this.log.set(i, { ballot: this.promised, vid, value, decided: true });
    out.persist.push({ kind: 'accept', ring: this.ring, instance: i, ballot: this.promised, vid, value });
    out.persist.push({ kind: 'decide', ring: this.ring, decisions: [i, 1, vid] });
    if (i + 1 > this.top) this.top = i + 1;
    if (i + 1 > this.decidedTop) this.decidedTop = i + 1;
    return true;
  }

  /** Every instance in [trimmed, filled) is held decided (decidedTop: one past the highest decision heard). */
  filled = 0;
  private decidedTop = 0;
  private filledStuckAt = -1;
  private filledStuckSince = 0;

  /** Decided instances it knows of are missing from its log (it is filling them, see fillRange). */
  get behind(): boolean {
    this.advanceFilled();
    return this.filled < this.decidedTop;
  }

  private advanceFilled(): void {
    if (this.filled < this.trimmed) this.filled = this.trimmed;
    while (this.filled < this.decidedTop && this.log.get(this.filled)?.decided) this.filled++;
  }

  /**
   * A ring member that joined as a spare lacks the instances decided before it joined (a spare gets no Phase
   * 2A), and a lost decision leaves an entry undecided. Should it take over, its Phase 1 would re-propose
   * all of them while the ring waits. So it fetches them: [lo, hi) to ask the coordinator for, once the
   * first missing one has stayed missing for gapTimeoutMs (decisions may come out of order); else undefined.
   */
  fillRange(now: number): { lo: number; hi: number } | undefined {
    if (this.rejoining) return undefined;
    this.advanceFilled();
    if (this.filled >= this.decidedTop) return undefined;
    if (this.filledStuckAt !== this.filled) {
      this.filledStuckAt = this.filled;
      this.filledStuckSince = now;
    }
    if (now - this.filledStuckSince < this.settings.gapTimeoutMs) return undefined;
    return { lo: this.filled, hi: Math.min(this.decidedTop, this.filled + FILL_REQUESTS * this.settings.maxRetransmitInstances) };
  }

  /** Where a rejoining acceptor should ask next: [lo, hi), or undefined when it is not catching up. */
  catchUpRange(out: Outbox): { lo: number; hi: number } | undefined {
    if (this.horizon === 0 || this.horizon === Infinity) return undefined;
    this.advanceCatchUp(out);
    if (this.horizon === 0) return undefined;
    return { lo: this.caughtUpTo, hi: Math.min(this.horizon, this.caughtUpTo + this.settings.maxRetransmitInstances) };
  }

  /** The coordinator's heartbeat: acknowledge it, or tell a deposed coordinator it lost. */
  onHeartbeat(m: Heartbeat, out: Outbox): void {
    if (m.ballot < this.promised) {
      out.send(m.from, { t: MessageType.Nack, ring: this.ring, from: this.id, ballot: m.ballot, promised: this.promised });
      return;
    }
    // While rejoining it cannot vote on the instances in flight: stay silent so the coordinator lays the
    // ring out without it.
    if (!this.rejoining) out.send(m.from, { t: MessageType.HeartbeatAck, ring: this.ring, from: this.id, ballot: this.promised });
    // Spares get no Phase 2A: the heartbeat is how they learn what every learner has delivered.
    if (m.safe > this.trimmed) this.applyDecisions([], m.safe, out);
  }

  /** Mark decided instances and trim below the safe instance. */
  applyDecisions(decisions: readonly number[], safe: number, out: Outbox): void {
    if (decisions.length > 0) out.persist.push({ kind: 'decide', ring: this.ring, decisions });
    for (let k = 0; k + 2 < decisions.length; k += 3) {
      const start = decisions[k]!;
      const end = start + decisions[k + 1]!;
      const vid = decisions[k + 2]!;
      // Nothing at or past trimmed + logCapacity is ever held: an absurd count cannot make this loop long.
      const stop = Math.min(end, this.trimmed + this.settings.logCapacity);
      if (stop > this.decidedTop) this.decidedTop = stop;
      for (let i = Math.max(start, this.trimmed); i < stop; i++) {
        const e = this.log.get(i);
        if (e && e.vid === vid) e.decided = true;
      }
    }
    if (safe > this.trimmed) this.trim(safe, out);
  }

  private trim(below: number, out: Outbox): void {
    if (below - this.trimmed > this.log.size) {
      for (const i of this.log.keys()) if (i < below) this.log.delete(i);
    } else {
      for (let i = this.trimmed; i < below; i++) this.log.delete(i);
    }
    for (const i of this.earlyVotes.keys()) if (i < below) this.earlyVotes.delete(i);
    this.trimmed = below;
    out.persist.push({ kind: 'trim', ring: this.ring, below });
    this.advanceCatchUp(out);
  }

  /** Serve decided values of [lo, hi) to a learner, in datagram-sized Learn messages. */
  onRetransmitRequest(m: RetransmitRequest, out: Outbox): void {
    const hi = Math.min(m.hi, m.lo + this.settings.maxRetransmitInstances);
    const budget = this.settings.maxDatagramBytes - DATAGRAM_OVERHEAD;
    let msg = this.learnMsg();
    let bytes = 0;
    for (let i = Math.max(m.lo, this.trimmed); i < hi; i++) {
      const e = this.log.get(i);
      if (!e || !e.decided) continue;
      if (bytes + e.value.length + 24 > budget && msg.insts.length > 0) {
        out.send(m.from, msg);
        msg = this.learnMsg();
        bytes = 0;
      }
      msg.insts.push(i);
      msg.vids.push(e.vid);
      msg.values.push(e.value);
      bytes += e.value.length + 24;
      this.stats.retransmittedInstances++;
    }
    if (msg.insts.length > 0 || m.lo < this.trimmed) out.send(m.from, msg);
  }

  private learnMsg(): Learn {
    return { t: MessageType.Learn, ring: this.ring, from: this.id, trimmed: this.trimmed, insts: [], vids: [], values: [] };
  }
}
