import { Acceptor } from './acceptor.js';
import { Coordinator, type DecidedInfo } from './coordinator.js';
import { Learner, type Delivery, type GapTrimmed, type InstanceRecord, type LearnerConfig } from './learner.js';
import { ballotNode, ballotRound, MessageType, type Message } from './messages.js';
import { Outbox, type PersistRecord, type Send } from './outbox.js';
import { Proposer } from './proposer.js';
import type { RingSettings } from './settings.js';

export interface RingNodeConfig {
  ring: number;
  /** This identity: a static acceptor id, or a dynamic id for a learner / proposer. */
  id: number;
  /** The ring in order; the last member is the coordinator. */
  ringOrder: readonly number[];
  /** Every acceptor of the ring (ring members and spares). */
  acceptors: readonly number[];
  settings: RingSettings;
  /** Where a learner on this identity starts; absent: no learner role. */
  learnerStart?: number;
  /** True for a proposer role on this identity. */
  proposer?: boolean;
  /** Ballot round for a coordinator (a restart passes one above the last it used). */
  round?: number;
  /**
   * This acceptor lost its log (memory mode restarted, or the log directory is gone): it rejoins by asking
   * f+1 others what they promised and accepted, and stays out of every instance it may have forgotten.
   */
  rejoin?: boolean;
  /** Distinguishes this life of the node from earlier ones (rejoin replies echo it). */
  incarnation?: number;
  /** The learner also keeps per-instance records with positions (Multi-Ring Paxos merging). */
  records?: boolean;
  /** The learner needs the ring's position to keep pace with λ (it merges rings, or starts or stops at an agreed position). */
  paced?: boolean;
}

/** Message types any sender may send (the rest must come from an acceptor of the ring). */
const FROM_ANYONE: Readonly<Record<number, boolean>> = Object.freeze({
  [MessageType.Propose]: true,
  [MessageType.Progress]: true,
  [MessageType.RetransmitRequest]: true,
  [MessageType.SkipRequest]: true,
});

/**
 * What a node produced since its last `ready()` (etcd-io/raft's Ready): the driver makes `persist` durable
 * first, then sends `sends`, then hands the rest to the application. An empty part may be an array the node
 * reuses: read a Ready at once, do not keep or fill it.
 */
export interface Ready {
  persist: PersistRecord[];
  sends: Send[];
  /** Learner: values delivered in order, the instance records (`records` on), a gap the acceptors trimmed. */
  deliveries: Delivery[];
  records: InstanceRecord[];
  gapTrimmed: GapTrimmed | undefined;
  /** Proposer: seqs acknowledged (decided), seqs given up after maxSends. */
  acked: number[];
  failed: number[];
  /** Coordinator: instances decided by its Phase 2, for metrics. */
  decided: DecidedInfo[];
}

const NONE: never[] = [];

/**
 * All roles one identity holds in one ring, behind one step/tick/flush interface (pure). An acceptor of the
 * ring holds the acceptor role; the configured coordinator (last of `ringOrder`) starts as coordinator, and
 * any other acceptor takes the role over when the coordinator falls silent (after a stagger by rank, so
 * one candidate usually goes first; ballots settle the rest) and gives it up when it sees a higher ballot
 * of another node. Learner and proposer roles are asked for. Messages for a role this identity lacks are
 * counted in `unexpected` and ignored.
 */
export class RingNode {
  readonly out = new Outbox();
  readonly acceptor: Acceptor | undefined;
  coordinator: Coordinator | undefined;
  readonly learner: Learner | undefined;
  readonly proposer: Proposer | undefined;
  unexpected = 0;
  /** Times this node took the coordinator role over from a silent one. */
  takeovers = 0;
  private started = false;
  private readonly acceptorSet: ReadonlySet<number>;
  private readonly initialCoordinator: number;
  private lastLeaderContact = 0;
  private lastTickAt = 0;
  private readonly rejoinReplies = new Map<number, { promised: number; top: number }>();
  private lastRejoinQueryAt = -Infinity;
  private catchUpTurn = 0;

  constructor(readonly cfg: RingNodeConfig) {
    const { ring, id, ringOrder, settings } = cfg;
    this.acceptorSet = new Set(cfg.acceptors);
    this.initialCoordinator = ringOrder[ringOrder.length - 1]!;
    if (cfg.acceptors.includes(id)) this.acceptor = new Acceptor({ ring, id, settings });
    if (cfg.learnerStart !== undefined) {
      const lc: LearnerConfig = {
        ring,
        id,
        coordinator: this.initialCoordinator,
        acceptors: cfg.acceptors,
        start: cfg.learnerStart,
        settings,
        records: cfg.records,
        paced: cfg.paced,
      };
      this.learner = new Learner(lc);
    }
    if (cfg.proposer) this.proposer = new Proposer({ ring, id, coordinator: this.initialCoordinator, acceptors: cfg.acceptors, settings });
  }

  private makeCoordinator(round: number | undefined, holdSafe: boolean): Coordinator {
    const { ring, id, settings, acceptors, ringOrder } = this.cfg;
    return new Coordinator({ ring, id, acceptors, preferred: ringOrder, acceptor: this.acceptor!, settings, round, holdSafe });
  }

  /** Highest ballot a live coordinator was heard with (heartbeats do not raise the promise). */
  private leaderBallot = 0;

  /** The coordinator as far as this acceptor knows: the owner of the highest ballot promised or heard. */
  private believedCoordinator(): number {
    const p = Math.max(this.acceptor?.promised ?? 0, this.leaderBallot);
    return p > 0 ? ballotNode(p) : this.initialCoordinator;
  }

  /** Begin: the configured coordinator starts Phase 1; learners subscribe on their first tick. */
  start(now: number): void {
    if (this.started) return;
    this.started = true;
    this.lastLeaderContact = now;
    this.lastTickAt = now;
    if (this.acceptor && this.cfg.rejoin) this.acceptor.horizon = Infinity;
    if (this.acceptor && this.cfg.id === this.initialCoordinator && this.acceptor.promised === 0 && !this.cfg.rejoin) {
      // First boot of the configured coordinator. A node that restarts with a log (promised > 0) comes back
      // as an acceptor and takes the role only if the coordinator it knows stays silent, so a restart
      // does not pre-empt a coordinator that took over meanwhile.
      this.coordinator = this.makeCoordinator(this.cfg.round ?? 1, false);
      this.coordinator.start(now, this.out);
    }
    this.learner?.tick(now, this.out);
  }

  step(m: Message, now: number): void {
    const out = this.out;
    // Only acceptors of this ring speak the protocol; anyone may propose, subscribe or ask for values.
    if (!FROM_ANYONE[m.t] && !this.acceptorSet.has(m.from)) {
      this.unexpected++;
      return;
    }
    const c = this.coordinator;
    switch (m.t) {
      case MessageType.Propose:
        // An empty Propose is a proposer asking who coordinates: the coordinator names itself.
        if (c && m.seqs.length === 0) return out.send(m.from, { t: MessageType.Redirect, ring: this.cfg.ring, from: this.cfg.id, coordinator: this.cfg.id, ballot: c.ballot });
        if (c) return c.onPropose(m, now, out);
        if (this.acceptor) return this.redirect(m.from);
        break;
      case MessageType.Ack:
        if (this.proposer) return this.proposer.onAck(m);
        break;
      case MessageType.Phase1A:
        if (this.acceptor && m.from !== this.cfg.id) {
          c?.seeBallot(m.ballot, out);
          this.afterCoordinatorStep();
          this.acceptor.onPhase1A(m, out);
          this.leaderContact(m.ballot, now);
          return;
        }
        break;
      case MessageType.Phase1B:
        if (c) return c.onPhase1B(m, out), this.afterCoordinatorStep();
        break;
      case MessageType.Phase2A: {
        let used = false;
        if (this.acceptor && m.from !== this.cfg.id) {
          c?.seeBallot(m.ballot, out);
          this.afterCoordinatorStep();
          // As a coordinator still, a lower ballot: the acceptor answers it with a Nack.
          this.acceptor.onPhase2A(m, out);
          if (!this.coordinator) this.leaderContact(m.ballot, now);
          if (m.ballot >= this.acceptor.promised) {
            this.layoutBallot = m.ballot;
            this.layout = m.layout;
          }
          used = true;
        }
        if (this.learner) {
          this.learner.onPhase2A(m);
          used = true;
        }
        if (used) return;
        break;
      }
      case MessageType.Phase2B:
        if (c) return c.onPhase2B(m, now, out);
        if (this.acceptor) return this.acceptor.onPhase2B(m, out);
        break;
      case MessageType.Decision: {
        let used = false;
        if (this.acceptor && m.from !== this.cfg.id) {
          c?.seeBallot(m.ballot, out);
          this.afterCoordinatorStep();
          if (!this.coordinator && m.ballot >= this.acceptor.promised) {
            this.acceptor.applyDecisions(m.decisions, m.safe, out);
            this.leaderContact(m.ballot, now);
          }
          used = true;
        }
        if (this.learner) {
          this.learner.onDecision(m);
          used = true;
        }
        if (used) return;
        break;
      }
      case MessageType.Progress:
        if (c) return c.onProgress(m, now, out);
        if (this.acceptor) return this.redirect(m.from);
        break;
      case MessageType.SkipRequest:
        if (c) return c.onSkipRequest(m, now);
        if (this.acceptor) return this.redirect(m.from);
        break;
      case MessageType.Status:
        if (this.learner) return this.learner.onStatus(m);
        break;
      case MessageType.RetransmitRequest:
        if (this.acceptor) return this.acceptor.onRetransmitRequest(m, out);
        break;
      case MessageType.Learn: {
        let used = false;
        if (this.acceptor && m.from !== this.cfg.id) {
          this.acceptor.onLearn(m, out);
          used = true;
        }
        if (this.learner) {
          this.learner.onLearn(m);
          used = true;
        }
        if (used) return;
        break;
      }
      case MessageType.Nack:
        if (c) return c.onNack(m, out), this.afterCoordinatorStep();
        break;
      case MessageType.Heartbeat:
        if (this.acceptor && m.from !== this.cfg.id) {
          c?.seeBallot(m.ballot, out);
          this.afterCoordinatorStep();
          this.acceptor.onHeartbeat(m, out);
          this.leaderContact(m.ballot, now);
          return;
        }
        break;
      case MessageType.HeartbeatAck:
        if (c) return c.onHeartbeatAck(m, out), this.afterCoordinatorStep();
        if (this.acceptor) return; // a late answer to a coordinator role given up
        break;
      case MessageType.RejoinQuery:
        if (this.acceptor && !this.acceptor.rejoining) return this.acceptor.onRejoinQuery(m.from, m.nonce, out);
        if (this.acceptor) return; // cannot vouch for anything while rejoining itself
        break;
      case MessageType.RejoinReply:
        if (this.acceptor && this.acceptor.horizon === Infinity && m.from !== this.cfg.id && m.nonce === (this.cfg.incarnation ?? 0)) {
          this.rejoinReplies.set(m.from, { promised: m.promised, top: m.top });
          // Every other acceptor must answer (see Acceptor.completeRejoin).
          if (this.rejoinReplies.size >= this.cfg.acceptors.length - 1) this.acceptor.completeRejoin([...this.rejoinReplies.values()], out);
          return;
        }
        if (this.acceptor) return; // a late answer, or one to an earlier life
        break;
      case MessageType.Redirect: {
        let used = false;
        if (this.learner) {
          this.learner.onRedirect(m);
          used = true;
        }
        if (this.proposer) {
          this.proposer.onRedirect(m, now, out);
          used = true;
        }
        if (used) return;
        break;
      }
    }
    this.unexpected++;
  }

  private redirect(to: number): void {
    const a = this.acceptor!;
    this.out.send(to, { t: MessageType.Redirect, ring: this.cfg.ring, from: this.cfg.id, coordinator: this.believedCoordinator(), ballot: Math.max(a.promised, this.leaderBallot) });
  }

  /** A message of the current (or a newer) coordinator arrived: it is alive. */
  private leaderContact(ballot: number, now: number): void {
    if (ballot >= (this.acceptor?.promised ?? 0)) {
      this.lastLeaderContact = now;
      this.takeoverArmed = false;
      if (ballot > this.leaderBallot) this.leaderBallot = ballot;
    }
  }

  /** Drop the coordinator role once it saw a higher ballot of another node. */
  private afterCoordinatorStep(): void {
    if (this.coordinator?.deposed) {
      this.coordinator = undefined;
    }
  }

  /** Take everything produced since the last call, leaving the node's output empty. */
  ready(): Ready {
    const { sends, persist } = this.out.drain();
    const l = this.learner;
    const p = this.proposer;
    const c = this.coordinator;
    let gapTrimmed: GapTrimmed | undefined;
    if (l?.gapTrimmed) {
      gapTrimmed = l.gapTrimmed;
      l.gapTrimmed = undefined;
    }
    let acked = NONE as number[];
    let failed = NONE as number[];
    if (p && p.acked.length > 0) (acked = p.acked), (p.acked = []);
    if (p && p.failed.length > 0) (failed = p.failed), (p.failed = []);
    let decided = NONE as DecidedInfo[];
    if (c && c.decidedLog.length > 0) (decided = c.decidedLog), (c.decidedLog = []);
    return { persist, sends, deliveries: l ? l.takeDeliveries() : NONE, records: l ? l.takeRecords() : NONE, gapTrimmed, acked, failed, decided };
  }

  /** End of a turn: let the roles send what they batched during it. */
  flush(now: number): void {
    this.coordinator?.flush(now, this.out);
    this.proposer?.flush(now, this.out);
  }

  tick(now: number): void {
    // A long gap between ticks (over half the timeout: the process was stopped, or its event loop stalled)
    // is left out of the coordinator's silence, all but a heartbeat of it: the coordinator's messages from
    // that time may still wait unread. Shorter gaps (a busy machine ticking late) count in full, so a real
    // takeover is not slowed down by load.
    const gap = now - this.lastTickAt;
    const s = this.cfg.settings;
    if (gap > s.coordinatorTimeoutMs / 2) this.lastLeaderContact = Math.min(now, this.lastLeaderContact + gap - s.heartbeatMs);
    this.lastTickAt = now;
    if (this.coordinator?.deposed) this.coordinator = undefined;
    if (this.coordinator) {
      this.coordinator.tick(now, this.out);
      this.afterCoordinatorStep();
      if (!this.coordinator) this.lastLeaderContact = now;
    } else if (this.acceptor && this.started) {
      if (this.acceptor.horizon === Infinity) {
        if (now - this.lastRejoinQueryAt >= this.cfg.settings.heartbeatMs) {
          this.lastRejoinQueryAt = now;
          const others = this.cfg.acceptors.filter((a) => a !== this.cfg.id);
          this.out.send(others, { t: MessageType.RejoinQuery, ring: this.cfg.ring, from: this.cfg.id, nonce: this.cfg.incarnation ?? 0 });
        }
      } else if (this.acceptor.rejoining) {
        // Fetch the decided values below the horizon from the others, in turn.
        const r = this.acceptor.catchUpRange(this.out);
        if (r && now - this.lastRejoinQueryAt >= this.cfg.settings.gapTimeoutMs) {
          this.lastRejoinQueryAt = now;
          const others = this.cfg.acceptors.filter((a) => a !== this.cfg.id);
          const to = others[this.catchUpTurn++ % others.length]!;
          this.out.send(to, { t: MessageType.RetransmitRequest, ring: this.cfg.ring, from: this.cfg.id, lo: r.lo, hi: r.hi });
        }
      } else {
        this.fill(now);
        this.maybeTakeOver(now);
      }
    }
    this.learner?.tick(now, this.out);
    this.proposer?.tick(now, this.out);
  }

  private lastFillAt = -Infinity;

  /** A ring member fetches, from the coordinator, decided instances its log lacks (Acceptor.fillRange). */
  private fill(now: number): void {
    if (now - this.lastFillAt < this.cfg.settings.gapTimeoutMs) return;
    const r = this.acceptor!.fillRange(now);
    if (!r) return;
    this.lastFillAt = now;
    const step = this.cfg.settings.maxRetransmitInstances;
    for (let lo = r.lo; lo < r.hi; lo += step) {
      this.out.send(this.believedCoordinator(), { t: MessageType.RetransmitRequest, ring: this.cfg.ring, from: this.cfg.id, lo, hi: Math.min(r.hi, lo + step) });
    }
  }

  /** The ring of the highest ballot this acceptor voted in, from its Phase 2A (coordinator last). */
  private layout: readonly number[] = [];
  private layoutBallot = 0;

  /** The takeover deadline passed at the last tick (see maybeTakeOver). */
  private takeoverArmed = false;

  /**
   * Take the coordinator role when the believed coordinator has been silent for coordinatorTimeoutMs plus
   * a third of it per rank. Rank: the members of the coordinator's ring go first, in ring order (they hold
   * every instance the ring decided and take over with one window to re-propose); then the rest in
   * configuration order, after f ranks. A spare, whose log lacks what it was not sent, takes over only when
   * no member does: its Phase 1 would re-propose the whole retained log. A node that has seen no Phase 2A
   * of the current ballot counts itself among the rest. A node whose log is behind (decided instances it
   * knows of but does not hold: it is still filling, e.g. after a restart) comes after every node that is
   * not (3f ranks later: no rank above reaches that), so a node holding the log goes first and this one
   * reads its Phase 1A before its own deadline.
   * The deadline must hold at two ticks in a row: the datagrams that waited in the socket meanwhile (a
   * backlog deeper than one read burst, e.g. a node filling its log) are read in between, and a new
   * coordinator's Phase 1A or heartbeat among them resets the silence instead of starting a duel.
   */
  private maybeTakeOver(now: number): void {
    const leader = this.believedCoordinator();
    const s = this.cfg.settings;
    const { id, acceptors } = this.cfg;
    const ballot = Math.max(this.acceptor!.promised, this.leaderBallot);
    const members = this.layoutBallot === ballot ? this.layout.filter((a) => a !== leader) : [];
    let rank = members.indexOf(id);
    if (rank < 0) {
      const rest = acceptors.filter((a) => a !== leader && !members.includes(a));
      rank = Math.max(members.length, (acceptors.length - 1) / 2) + Math.max(0, rest.indexOf(id));
    }
    if (this.acceptor!.behind) rank += (3 * (acceptors.length - 1)) / 2;
    if (now - this.lastLeaderContact < s.coordinatorTimeoutMs * (1 + rank / 3)) {
      this.takeoverArmed = false;
      return;
    }
    if (!this.takeoverArmed) {
      this.takeoverArmed = true;
      return;
    }
    this.takeoverArmed = false;
    this.lastLeaderContact = now;
    this.takeovers++;
    this.coordinator = this.makeCoordinator(ballotRound(ballot) + 1, true);
    this.coordinator.start(now, this.out);
  }
}
