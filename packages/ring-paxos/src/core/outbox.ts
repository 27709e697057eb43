import type { Message } from './messages.js';

/** One datagram to send: to one node, or the same bytes to several (fan-out, or IP multicast if enabled). */
export interface Send {
  to: number | readonly number[];
  msg: Message;
}

/** What an acceptor must make durable before any send produced in the same step leaves the process. */
export type PersistRecord =
  | { kind: 'promise'; ring: number; ballot: number }
  | { kind: 'accept'; ring: number; instance: number; ballot: number; vid: number; value: Uint8Array }
  | { kind: 'decide'; ring: number; decisions: readonly number[] }
  | { kind: 'trim'; ring: number; below: number }
  /** This acceptor lost (part of) its log and is rejoining: a restart before `rejoined` must rejoin again. */
  | { kind: 'rejoin'; ring: number }
  /** The rejoin finished: the log from here on is whole again. */
  | { kind: 'rejoined'; ring: number };

/**
 * The one output channel of the cores: roles push what to send and what to persist; `RingNode.ready()`
 * drains it with the roles' other results into one Ready, which the driver persists first.
 */
export class Outbox {
  sends: Send[] = [];
  persist: PersistRecord[] = [];

  send(to: number | readonly number[], msg: Message): void {
    if (Array.isArray(to) && to.length === 0) return;
    this.sends.push({ to, msg });
  }

  /** Take everything queued so far and leave the outbox empty. */
  drain(): { sends: Send[]; persist: PersistRecord[] } {
    const r = { sends: this.sends, persist: this.persist };
    this.sends = [];
    this.persist = [];
    return r;
  }
}
