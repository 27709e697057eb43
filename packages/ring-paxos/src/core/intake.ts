import { decodeBatch, type BatchGroup } from './batch.js';
import { FloorTable, type FloorEntry } from './floor-table.js';
import { MessageType, type Propose } from './messages.js';
import type { Outbox } from './outbox.js';
import { isHoldData, pushHold, type Hold } from './retention-hold.js';
import { ENTRY_OVERHEAD, GROUP_OVERHEAD, type RingSettings } from './settings.js';

/** Proposer seqs inside a value, acknowledged when it is decided. */
export type ValueAcks = Array<{ pid: number; seqs: number[] }>;

interface PendingEntry {
  pid: number;
  floor: number;
  seq: number;
  data: Uint8Array;
}

/** The counters the intake keeps (fields of the coordinator's stats). */
export interface IntakeStats {
  duplicateProposals: number;
  proposalsDropped: number;
}

/**
 * The proposals at a coordinator (pure), between their Propose and their acknowledgement: which
 * (proposer, seq) are ordered and in which instance (a FloorTable bounded by the proposers' floors and
 * maxProposers: a retry is acknowledged or ignored, not ordered again), the queue of new proposals waiting
 * for a value (bounded, with its byte count), and the acknowledgements owed to proposers until the end of
 * the turn. The coordinator decides when to cut a value and where it goes.
 */
export class Intake {
  private readonly ordered: FloorTable<number>;
  private readonly pending: PendingEntry[] = [];
  private head = 0;
  /** Bytes the pending proposals take in a value (data and entry overheads). */
  bytes = 0;
  /** When the oldest pending proposal arrived (linger counts from it). */
  firstAt = 0;
  private readonly acks = new Map<number, number[]>();

  constructor(
    private readonly s: RingSettings,
    private readonly stats: IntakeStats,
  ) {
    this.ordered = new FloorTable<number>({ maxClients: s.maxProposers, maxPerClient: s.maxOutstanding * 2 });
  }

  /** Proposals waiting for a value. */
  get count(): number {
    return this.pending.length - this.head;
  }

  /**
   * A Propose arrived: queue its new proposals; a retry of one ordered in a decided instance (`isDecided`)
   * is acknowledged again, other retries dropped; proposals past the queue bound or too large for a value
   * are dropped and counted (the proposer retries or gives up).
   */
  receive(m: Propose, now: number, isDecided: (instance: number) => boolean): void {
    const cur = this.ordered.open(m.from, m.floor);
    for (let k = 0; k < m.seqs.length; k++) {
      const seq = m.seqs[k]!;
      const seen = this.ordered.find(cur, seq);
      if (seen !== undefined) {
        this.stats.duplicateProposals++;
        if (typeof seen === 'number' && seen >= 0 && isDecided(seen)) this.ack(m.from, seq);
        continue;
      }
      if (this.pending.length - this.head >= this.s.maxOutstanding * 4) {
        this.stats.proposalsDropped++; // queue full: the proposer retries
        continue;
      }
      const data = m.datas[k]!;
      if (data.length + ENTRY_OVERHEAD + GROUP_OVERHEAD > this.s.maxValueBytes) {
        this.stats.proposalsDropped++;
        continue;
      }
      this.ordered.mark(cur, seq, -1);
      if (this.head === this.pending.length) this.firstAt = now;
      this.pending.push({ pid: m.from, floor: m.floor, seq, data });
      this.bytes += data.length + ENTRY_OVERHEAD;
    }
  }

  /**
   * Take the pending proposals, in order, that fit in one value of maxValueBytes (at least one), as that
   * value's groups (one per proposer, with its floor), marked ordered in `instance`; with the retention
   * holds among them and the acknowledgements the value owes when decided.
   */
  take(instance: number, now: number): { groups: BatchGroup[]; acks: ValueAcks; holds: Hold[] | undefined } {
    const groups: BatchGroup[] = [];
    const byPid = new Map<number, BatchGroup>();
    const cursors = new Map<number, FloorEntry<number>>();
    const acks: ValueAcks = [];
    let holds: Hold[] | undefined;
    let bytes = 0;
    while (this.head < this.pending.length) {
      const e = this.pending[this.head]!;
      const cost = e.data.length + ENTRY_OVERHEAD + (byPid.has(e.pid) ? 0 : GROUP_OVERHEAD);
      if (bytes > 0 && bytes + cost > this.s.maxValueBytes) break;
      this.pending[this.head++] = undefined as unknown as PendingEntry;
      this.bytes -= e.data.length + ENTRY_OVERHEAD;
      bytes += cost;
      let g = byPid.get(e.pid);
      if (!g) {
        g = { pid: e.pid, floor: e.floor, seqs: [], datas: [] };
        byPid.set(e.pid, g);
        groups.push(g);
        acks.push({ pid: e.pid, seqs: g.seqs });
      }
      if (e.floor > g.floor) g.floor = e.floor;
      g.seqs.push(e.seq);
      g.datas.push(e.data);
      if (isHoldData(e.data)) pushHold((holds ??= []), e.data);
      let cur = cursors.get(e.pid);
      if (!cur) {
        cur = this.ordered.open(e.pid, 0);
        cursors.set(e.pid, cur);
      }
      this.ordered.mark(cur, e.seq, instance);
    }
    if (this.head === this.pending.length) {
      this.pending.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.pending.length) {
      this.pending.splice(0, this.head);
      this.head = 0;
    }
    if (this.head < this.pending.length) this.firstAt = now;
    return { groups, acks, holds };
  }

  /**
   * Remember every (proposer, seq) inside an instance value as ordered in `instance`, and add the retention
   * holds among its proposals to `holds` (and the proposals to `acks`, when given); returns the value's
   * position (-1 when it cannot be read).
   */
  markOrdered(value: Uint8Array, instance: number, holds: Hold[], acks?: ValueAcks): number {
    const b = decodeBatch(value);
    if (!b) return -1;
    for (const g of b.groups) {
      const cur = this.ordered.open(g.pid, g.floor);
      for (const seq of g.seqs) this.ordered.mark(cur, seq, instance);
      if (acks && g.seqs.length > 0) acks.push({ pid: g.pid, seqs: g.seqs });
      // The retention holds among the proposals, from the same decode (see retention-hold.ts).
      for (const d of g.datas) if (isHoldData(d)) pushHold(holds, d);
    }
    return b.pos;
  }

  /** Owe proposer `pid` an acknowledgement of `seq` (sent at the end of the turn). */
  ack(pid: number, seq: number): void {
    let a = this.acks.get(pid);
    if (!a) {
      a = [];
      this.acks.set(pid, a);
    }
    a.push(seq);
  }

  /** Send the acknowledgements owed (at most 2048 seqs per Ack). */
  sendAcks(ring: number, from: number, out: Outbox): void {
    if (this.acks.size === 0) return;
    for (const [pid, seqs] of this.acks) {
      for (let k = 0; k < seqs.length; k += 2048) {
        out.send(pid, { t: MessageType.Ack, ring, from, seqs: seqs.slice(k, k + 2048) });
      }
    }
    this.acks.clear();
  }
}
