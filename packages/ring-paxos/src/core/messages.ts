/**
 * Message shapes of one Ring Paxos ring. This file is the single frozen list both ends share: the wire
 * codec encodes each message as the fields listed in MESSAGE_SHAPES, in that order, and refuses anything
 * else. Cores see plain objects; only the codec sees bytes.
 *
 * Conventions:
 * - `ring` is the ring id, `from` the sender's node id (static nodes from the cluster file, run-time
 *   learners and proposers pick their own ids in the dynamic range).
 * - A value is identified within its instance by `vid`: the ballot in which that value was first proposed.
 *   A coordinator proposes at most one value per instance per ballot, so (instance, vid) names one value.
 * - Decisions travel as flat triples `[start, count, vid, ...]`: instances start..start+count-1 are decided
 *   with the value whose vid is `vid`.
 */

export const MessageType = {
  Propose: 1,
  Ack: 2,
  Phase1A: 3,
  Phase1B: 4,
  Phase2A: 5,
  Phase2B: 6,
  Decision: 7,
  Progress: 8,
  Status: 9,
  RetransmitRequest: 10,
  Learn: 11,
  Nack: 12,
  Heartbeat: 13,
  HeartbeatAck: 14,
  Redirect: 15,
  RejoinQuery: 16,
  RejoinReply: 17,
  SkipRequest: 18,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/** Proposer -> coordinator: values to order. `floor`: every seq below it is settled (never retried). */
export interface Propose {
  t: typeof MessageType.Propose;
  ring: number;
  from: number;
  floor: number;
  seqs: number[];
  datas: Uint8Array[];
}

/** Coordinator -> proposer: these seqs are decided. */
export interface Ack {
  t: typeof MessageType.Ack;
  ring: number;
  from: number;
  seqs: number[];
}

/** Coordinator -> ring acceptors: promise `ballot` and report what you accepted in [lo, hi). */
export interface Phase1A {
  t: typeof MessageType.Phase1A;
  ring: number;
  from: number;
  ballot: number;
  lo: number;
  hi: number;
}

/** Acceptor -> coordinator: promised; accepted values in [lo, hi) as parallel arrays. */
export interface Phase1B {
  t: typeof MessageType.Phase1B;
  ring: number;
  from: number;
  ballot: number;
  lo: number;
  hi: number;
  /** The acceptor holds nothing below this (decided and delivered everywhere). */
  trimmed: number;
  /** One past the highest instance the acceptor ever accepted (0: none): where re-proposals end. */
  top: number;
  insts: number[];
  vballots: number[];
  vids: number[];
  values: Uint8Array[];
  /** Per value: 1 if the acceptor holds it decided (it is the ring's chosen value there), else 0. */
  decided: number[];
}

/** Coordinator -> ring acceptors and learners: accept `value` for `instance`; piggybacked decisions. */
export interface Phase2A {
  t: typeof MessageType.Phase2A;
  ring: number;
  from: number;
  ballot: number;
  instance: number;
  vid: number;
  value: Uint8Array;
  decisions: number[];
  safe: number;
  /** The ring for this instance in order, coordinator last: who votes and who forwards to whom. */
  layout: number[];
}

/** Acceptor -> ring successor: `votes` acceptors so far accepted (ballot, instance, vid). */
export interface Phase2B {
  t: typeof MessageType.Phase2B;
  ring: number;
  from: number;
  ballot: number;
  instance: number;
  vid: number;
  votes: number;
}

/** Coordinator -> ring acceptors and learners: decisions, sent alone when no Phase 2A carries them. */
export interface Decision {
  t: typeof MessageType.Decision;
  ring: number;
  from: number;
  ballot: number;
  decisions: number[];
  safe: number;
}

/**
 * Learner -> coordinator: subscribe / keep-alive / safe-instance report. `delivered` is the highest
 * instance delivered in order (-1 for none). `start` is only read on the first report: -1 next, -2 oldest,
 * otherwise an instance number. `paced` is 1 when the learner needs the ring's position to keep pace with
 * λ (it merges this ring with others, or starts or stops at an agreed position): only then does an idle ring
 * propose rate-leveling skips.
 */
export interface Progress {
  t: typeof MessageType.Progress;
  ring: number;
  from: number;
  delivered: number;
  start: number;
  paced: number;
}

/** Coordinator -> learner: the ring's oldest retained instance and its contiguous decided frontier. */
export interface Status {
  t: typeof MessageType.Status;
  ring: number;
  from: number;
  oldest: number;
  next: number;
  ballot: number;
}

/** Learner -> acceptor: send me the decided values of instances [lo, hi). */
export interface RetransmitRequest {
  t: typeof MessageType.RetransmitRequest;
  ring: number;
  from: number;
  lo: number;
  hi: number;
}

/** Acceptor -> learner: decided values; `trimmed` = the acceptor no longer holds instances below it. */
export interface Learn {
  t: typeof MessageType.Learn;
  ring: number;
  from: number;
  trimmed: number;
  insts: number[];
  vids: number[];
  values: Uint8Array[];
}

/** Acceptor -> coordinator: refused `ballot`, having promised `promised`. */
export interface Nack {
  t: typeof MessageType.Nack;
  ring: number;
  from: number;
  ballot: number;
  promised: number;
}

/** Coordinator -> every other acceptor, every heartbeatMs: I lead `ballot`; trim below `safe`. */
export interface Heartbeat {
  t: typeof MessageType.Heartbeat;
  ring: number;
  from: number;
  ballot: number;
  safe: number;
}

/** Acceptor -> coordinator: alive, and what it promised. */
export interface HeartbeatAck {
  t: typeof MessageType.HeartbeatAck;
  ring: number;
  from: number;
  ballot: number;
}

/** Acceptor -> proposer or learner that addressed a non-coordinator: the coordinator as far as I know. */
export interface Redirect {
  t: typeof MessageType.Redirect;
  ring: number;
  from: number;
  coordinator: number;
  ballot: number;
}

/** An acceptor restarted without its log -> every other acceptor: what have you promised and accepted? */
export interface RejoinQuery {
  t: typeof MessageType.RejoinQuery;
  ring: number;
  from: number;
  /** This incarnation of the asker; replies echo it so a reply to an earlier life is not counted. */
  nonce: number;
}

/** Acceptor -> rejoining acceptor: the highest ballot it promised, one past its highest accepted instance. */
export interface RejoinReply {
  t: typeof MessageType.RejoinReply;
  ring: number;
  from: number;
  nonce: number;
  promised: number;
  top: number;
}

/**
 * Learner -> coordinator: my multi-ring merge waits for this ring to pass position `pos`. An idle coordinator
 * answers with a skip at once instead of at its next Δ check (Multi-Ring Paxos rate leveling on demand).
 */
export interface SkipRequest {
  t: typeof MessageType.SkipRequest;
  ring: number;
  from: number;
  pos: number;
}

export type Message =
  | Propose
  | Ack
  | Phase1A
  | Phase1B
  | Phase2A
  | Phase2B
  | Decision
  | Progress
  | Status
  | RetransmitRequest
  | Learn
  | Nack
  | Heartbeat
  | HeartbeatAck
  | Redirect
  | RejoinQuery
  | RejoinReply
  | SkipRequest;

/** Field kinds the codec checks: unsigned safe integer, signed safe integer, bytes, and arrays of them. */
export type FieldKind = 'u' | 'i' | 'b' | 'u[]' | 'b[]';

export interface FieldShape {
  readonly name: string;
  readonly kind: FieldKind;
}

function shape(spec: string): readonly FieldShape[] {
  return Object.freeze(
    spec.split(' ').map((f) => {
      const [name, kind] = f.split(':') as [string, FieldKind];
      return Object.freeze({ name, kind });
    }),
  );
}

/** The frozen list of message shapes, by type. Never reorder: append new types and bump WIRE_VERSION. */
export const MESSAGE_SHAPES: Readonly<Record<MessageType, readonly FieldShape[]>> = Object.freeze({
  [MessageType.Propose]: shape('ring:u from:u floor:u seqs:u[] datas:b[]'),
  [MessageType.Ack]: shape('ring:u from:u seqs:u[]'),
  [MessageType.Phase1A]: shape('ring:u from:u ballot:u lo:u hi:u'),
  [MessageType.Phase1B]: shape('ring:u from:u ballot:u lo:u hi:u trimmed:u top:u insts:u[] vballots:u[] vids:u[] values:b[] decided:u[]'),
  [MessageType.Phase2A]: shape('ring:u from:u ballot:u instance:u vid:u value:b decisions:u[] safe:u layout:u[]'),
  [MessageType.Phase2B]: shape('ring:u from:u ballot:u instance:u vid:u votes:u'),
  [MessageType.Decision]: shape('ring:u from:u ballot:u decisions:u[] safe:u'),
  [MessageType.Progress]: shape('ring:u from:u delivered:i start:i paced:u'),
  [MessageType.Status]: shape('ring:u from:u oldest:u next:u ballot:u'),
  [MessageType.RetransmitRequest]: shape('ring:u from:u lo:u hi:u'),
  [MessageType.Learn]: shape('ring:u from:u trimmed:u insts:u[] vids:u[] values:b[]'),
  [MessageType.Nack]: shape('ring:u from:u ballot:u promised:u'),
  [MessageType.Heartbeat]: shape('ring:u from:u ballot:u safe:u'),
  [MessageType.HeartbeatAck]: shape('ring:u from:u ballot:u'),
  [MessageType.Redirect]: shape('ring:u from:u coordinator:u ballot:u'),
  [MessageType.RejoinQuery]: shape('ring:u from:u nonce:u'),
  [MessageType.RejoinReply]: shape('ring:u from:u nonce:u promised:u top:u'),
  [MessageType.SkipRequest]: shape('ring:u from:u pos:u'),
});

/** Start positions a learner may ask for. */
export const START_NEXT = -1;
export const START_OLDEST = -2;

/** Static node ids are below this; run-time learners and proposers pick ids at or above it. */
export const DYNAMIC_ID_BASE = 0x10000;

/** Ballot layout: round * BALLOT_ID_SPACE + node id, so ballots of different nodes never tie. */
export const BALLOT_ID_SPACE = 0x10000;
export function makeBallot(round: number, nodeId: number): number {
  return round * BALLOT_ID_SPACE + nodeId;
}
export function ballotRound(ballot: number): number {
  return Math.floor(ballot / BALLOT_ID_SPACE);
}
/** The node that owns (coordinates) a ballot. */
export function ballotNode(ballot: number): number {
  return ballot % BALLOT_ID_SPACE;
}
