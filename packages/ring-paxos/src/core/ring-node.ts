import { Acceptor } from './acceptor.js';
import { Coordinator } from './coordinator.js';
import { Learner, type LearnerConfig } from './learner.js';
import { MessageType, type Message } from './messages.js';
import { Outbox } from './outbox.js';
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
}

/** Message types any sender may send (the rest must come from an acceptor of the ring). */
const FROM_ANYONE: Readonly<Record<number, boolean>> = Object.freeze({
  [MessageType.Propose]: true,
  [MessageType.Progress]: true,
  [MessageType.RetransmitRequest]: true,
});

/**
 * All roles one identity holds in one ring, behind one step/tick/flush interface (pure). Acceptor and
 * coordinator roles follow from the ring layout; learner and proposer roles are asked for. Messages for a
 * role this identity lacks are counted in `unexpected` and ignored.
 */
export class RingNode {
  readonly out = new Outbox();
  readonly acceptor: Acceptor | undefined;
  readonly coordinator: Coordinator | undefined;
  readonly learner: Learner | undefined;
  readonly proposer: Proposer | undefined;
  unexpected = 0;
  private started = false;
  private readonly acceptorSet: ReadonlySet<number>;

  constructor(readonly cfg: RingNodeConfig) {
    const { ring, id, ringOrder, settings } = cfg;
    this.acceptorSet = new Set(cfg.acceptors);
    const coordId = ringOrder[ringOrder.length - 1]!;
    if (coordId === id) {
      this.coordinator = new Coordinator({ ring, id, ringOrder, settings, round: cfg.round });
      this.acceptor = this.coordinator.acceptor;
    } else if (cfg.acceptors.includes(id)) {
      this.acceptor = new Acceptor({ ring, id, ringOrder, settings });
    }
    if (cfg.learnerStart !== undefined) {
      const others = ringOrder.filter((a) => a !== coordId);
      const lc: LearnerConfig = {
        ring,
        id,
        coordinator: coordId,
        acceptors: others.length > 0 ? [...others, coordId] : [coordId],
        start: cfg.learnerStart,
        settings,
      };
      this.learner = new Learner(lc);
    }
    if (cfg.proposer) this.proposer = new Proposer({ ring, id, coordinator: coordId, settings });
  }

  /** Begin: the coordinator starts Phase 1; learners subscribe on their first tick. */
  start(now: number): void {
    if (this.started) return;
    this.started = true;
    this.coordinator?.start(now, this.out);
    this.learner?.tick(now, this.out);
  }

  step(m: Message, now: number): void {
    const out = this.out;
    // Only acceptors of this ring speak the protocol; anyone may propose, subscribe or ask for values.
    if (!FROM_ANYONE[m.t] && !this.acceptorSet.has(m.from)) {
      this.unexpected++;
      return;
    }
    switch (m.t) {
      case MessageType.Propose:
        if (this.coordinator) return this.coordinator.onPropose(m, now, out);
        break;
      case MessageType.Ack:
        if (this.proposer) return this.proposer.onAck(m);
        break;
      case MessageType.Phase1A:
        if (this.acceptor && !this.coordinator) return this.acceptor.onPhase1A(m, out);
        break;
      case MessageType.Phase1B:
        if (this.coordinator) return this.coordinator.onPhase1B(m, out);
        break;
      case MessageType.Phase2A: {
        let used = false;
        if (this.acceptor && !this.coordinator) {
          this.acceptor.onPhase2A(m, out);
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
        if (this.coordinator) return this.coordinator.onPhase2B(m, now, out);
        if (this.acceptor) return this.acceptor.onPhase2B(m, out);
        break;
      case MessageType.Decision: {
        let used = false;
        if (this.acceptor && !this.coordinator) {
          this.acceptor.applyDecisions(m.decisions, m.safe, out);
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
        if (this.coordinator) return this.coordinator.onProgress(m, now, out);
        break;
      case MessageType.Status:
        if (this.learner) return this.learner.onStatus(m);
        break;
      case MessageType.RetransmitRequest:
        if (this.acceptor) return this.acceptor.onRetransmitRequest(m, out);
        break;
      case MessageType.Learn:
        if (this.learner) return this.learner.onLearn(m);
        break;
      case MessageType.Nack:
        if (this.coordinator) return this.coordinator.onNack(m, out);
        break;
    }
    this.unexpected++;
  }

  /** End of a turn: let the roles send what they batched during it. */
  flush(now: number): void {
    this.coordinator?.flush(now, this.out);
    this.proposer?.flush(now, this.out);
  }

  tick(now: number): void {
    this.coordinator?.tick(now, this.out);
    this.learner?.tick(now, this.out);
    this.proposer?.tick(now, this.out);
  }
}
