import { MessageType, type Ack, type Redirect } from './messages.js';
import type { Outbox } from './outbox.js';
import { ENTRY_OVERHEAD, GROUP_OVERHEAD, type RingSettings } from './settings.js';

interface Outstanding {
  data: Uint8Array;
  sentAt: number;
  sends: number;
}

export interface ProposerStats {
  proposed: number;
  acked: number;
  resent: number;
  failed: number;
}

export interface ProposerConfig {
  ring: number;
  id: number;
  coordinator: number;
  /** Every acceptor of the ring: asked in turn when the coordinator stops acknowledging. */
  acceptors: readonly number[];
  settings: RingSettings;
}

/**
 * A Ring Paxos proposer (pure). Values get consecutive seqs; they are sent to the coordinator in Propose
 * datagrams at the end of a turn (or when a datagram fills), re-sent with the same seq until acknowledged,
 * and given up after `maxSends`. Its floor (lowest seq not yet settled) rides on every Propose so the
 * coordinator and learners can forget settled seqs.
 */
export class Proposer {
  readonly stats: ProposerStats = { proposed: 0, acked: 0, resent: 0, failed: 0 };
  /** Seqs acknowledged since the last drain. */
  acked: number[] = [];
  /** Seqs given up since the last drain. */
  failed: number[] = [];
  coordinator: number;

  private knownBallot = 0;
  /** When the acceptors were last asked which coordinator holds the highest ballot. */
  private lastProbeAt = -Infinity;
  private nextSeq = 0;
  private readonly outstanding = new Map<number, Outstanding>();
  private unsent: number[] = [];
  private unsentBytes = 0;
  private firstUnsentAt = 0;
  private readonly s: RingSettings;

  constructor(private readonly cfg: ProposerConfig) {
    this.s = cfg.settings;
    this.coordinator = cfg.coordinator;
  }

  /** Values outstanding (queued or sent, not yet acknowledged or failed). */
  get inflight(): number {
    return this.outstanding.size;
  }

  /** Largest value this proposer accepts. */
  get maxValueBytes(): number {
    return this.s.maxValueBytes - ENTRY_OVERHEAD - GROUP_OVERHEAD;
  }

  /**
   * No room for another value: maxOutstanding values are outstanding, or the span from the floor (the
   * oldest unsettled seq) to the next seq reached it. The span bound keeps every unsettled seq inside the
   * de-duplication tables of the coordinator and learners (maxOutstanding * 2 seqs per proposer), so a late
   * retry can never be ordered twice.
   */
  get full(): boolean {
    return this.outstanding.size >= this.s.maxOutstanding || this.nextSeq - this.floor() >= this.s.maxOutstanding;
  }

  /** Queue a value; returns its seq, or -1 when full (back-pressure). */
  propose(data: Uint8Array, now: number, out: Outbox): number {
    if (this.full) return -1;
    if (data.length > this.maxValueBytes) throw new RangeError(`value of ${data.length} bytes exceeds ${this.maxValueBytes}`);
    const seq = this.nextSeq++;
    this.outstanding.set(seq, { data, sentAt: now, sends: 0 });
    if (this.unsent.length === 0) this.firstUnsentAt = now;
    this.unsent.push(seq);
    this.unsentBytes += data.length + ENTRY_OVERHEAD;
    this.stats.proposed++;
    if (this.unsentBytes >= this.s.maxValueBytes) this.sendUnsent(now, out);
    return seq;
  }

  private floor(): number {
    for (const seq of this.outstanding.keys()) return seq;
    return this.nextSeq;
  }

  /** Send `seqs` in Propose datagrams of at most maxValueBytes of data each. */
  private sendSeqs(seqs: readonly number[], now: number, out: Outbox): void {
    const floor = this.floor();
    let batchSeqs: number[] = [];
    let batchDatas: Uint8Array[] = [];
    let bytes = GROUP_OVERHEAD;
    const emit = (): void => {
      out.send(this.coordinator, { t: MessageType.Propose, ring: this.cfg.ring, from: this.cfg.id, floor, seqs: batchSeqs, datas: batchDatas });
      batchSeqs = [];
      batchDatas = [];
      bytes = GROUP_OVERHEAD;
    };
    for (const seq of seqs) {
      const o = this.outstanding.get(seq);
      if (!o) continue;
      const cost = o.data.length + ENTRY_OVERHEAD;
      if (batchSeqs.length > 0 && bytes + cost > this.s.maxValueBytes) emit();
      o.sentAt = now;
      o.sends++;
      batchSeqs.push(seq);
      batchDatas.push(o.data);
      bytes += cost;
    }
    if (batchSeqs.length > 0) emit();
  }

  private sendUnsent(now: number, out: Outbox): void {
    const seqs = this.unsent;
    this.unsent = [];
    this.unsentBytes = 0;
    this.sendSeqs(seqs, now, out);
  }

  /**
   * An acceptor (or the coordinator itself) named the coordinator of the highest ballot it knows. A new one:
   * send it every value in flight at once, instead of when their retry timers run out (seqs keep it
   * exactly-once: a value the old coordinator ordered is acknowledged, not ordered again).
   */
  onRedirect(m: Redirect, now: number, out: Outbox): void {
    if (m.ballot < this.knownBallot) return;
    this.knownBallot = m.ballot;
    if (m.coordinator === this.coordinator) return;
    this.coordinator = m.coordinator;
    const sent: number[] = [];
    for (const [seq, o] of this.outstanding) if (o.sends > 0) sent.push(seq);
    if (sent.length === 0) return;
    this.stats.resent += sent.length;
    this.sendSeqs(sent, now, out);
  }

  /** Has a sent value waited longer than retryTimeoutMs? (The oldest sent one is first in seq order.) */
  private waiting(now: number): boolean {
    for (const o of this.outstanding.values()) {
      if (o.sends > 0) return now - o.sentAt >= this.s.retryTimeoutMs || o.sends > 1;
    }
    return false;
  }

  onAck(m: Ack): void {
    for (const seq of m.seqs) {
      if (this.outstanding.delete(seq)) {
        this.acked.push(seq);
        this.stats.acked++;
      }
    }
  }

  /** End of a turn: send what is queued once the linger time allows. */
  flush(now: number, out: Outbox): void {
    if (this.unsent.length > 0 && now - this.firstUnsentAt >= this.s.proposerLingerMs) this.sendUnsent(now, out);
  }

  /** Timers: re-send values unacknowledged for retryTimeoutMs; give up after maxSends. */
  tick(now: number, out: Outbox): void {
    this.flush(now, out);
    let resend: number[] | undefined;
    for (const [seq, o] of this.outstanding) {
      if (o.sends === 0 || now - o.sentAt < this.s.retryTimeoutMs) continue;
      if (o.sends >= this.s.maxSends) {
        this.outstanding.delete(seq);
        this.failed.push(seq);
        this.stats.failed++;
        continue;
      }
      (resend ??= []).push(seq);
    }
    if (resend) {
      this.stats.resent += resend.length;
      this.sendSeqs(resend, now, out);
    }
    // A value waits past its retry time: the coordinator may be gone. Ask every other acceptor, every
    // heartbeat until an acknowledgement comes, which coordinator holds the highest ballot (an empty Propose:
    // an acceptor answers with a Redirect, a coordinator with a Redirect naming itself); onRedirect re-sends
    // at once to a new one.
    if (this.waiting(now) && now - this.lastProbeAt >= this.s.heartbeatMs) {
      this.lastProbeAt = now;
      const to = this.cfg.acceptors.filter((a) => a !== this.coordinator);
      out.send(to, { t: MessageType.Propose, ring: this.cfg.ring, from: this.cfg.id, floor: this.floor(), seqs: [], datas: [] });
    }
  }
}
