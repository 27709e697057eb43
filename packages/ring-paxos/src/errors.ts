/**
 * Every error code ringcast gives, defined once: throw sites, tests and callers that switch on `code` use
 * these constants, never the strings. The root README's "Error codes" section documents each, and
 * test/code-rules.test.ts checks the two against each other both ways. One catalogue for the three
 * packages (multicast and psmr-proxy import it from here, as they import RingcastError): a code is then
 * unique across the project by construction, and one file answers "what can ringcast throw?".
 * Services give their own codes (ServiceError); the key-value store's are `KV_ERR` in psmr-proxy
 * (src/services/kv-errors.ts).
 */
export const ERR = Object.freeze({
  // ring-paxos
  /** A bad cluster file, flag or option (ConfigError; `field` names where). */
  CONFIG: 'ERR_RINGCAST_CONFIG',
  /** The acceptor log could not be written or read back (a full disk, a closed or broken log). */
  LOG: 'ERR_RINGCAST_LOG',
  /** A learner needs instances every acceptor already trimmed (TrimmedGapError). */
  TRIMMED: 'ERR_RINGCAST_TRIMMED',
  /** A message does not fit in one datagram (CodecError). */
  ENCODE: 'ERR_RINGCAST_ENCODE',
  /** `propose` on a node without a proposer role. */
  ROLE: 'ERR_RINGCAST_ROLE',
  /** A proposed value starts with the bytes reserved for retention holds. */
  RESERVED: 'ERR_RINGCAST_RESERVED',
  /** A proposed value exceeds `maxValueBytes`. */
  VALUE_SIZE: 'ERR_RINGCAST_VALUE_SIZE',
  /** More proposals (or commands) wait for room than the bound allows (BackpressureError). */
  BACKPRESSURE: 'ERR_RINGCAST_BACKPRESSURE',
  /** The coordinator acknowledged no copy of a proposal after every retry (ProposalFailedError). */
  PROPOSAL_FAILED: 'ERR_RINGCAST_PROPOSAL_FAILED',
  /** The driver or client proxy stopped before the call could finish. */
  STOPPED: 'ERR_RINGCAST_STOPPED',
  // multicast
  /** A learner's `startRound` has already passed on the rings. */
  START_PASSED: 'ERR_RINGCAST_START_PASSED',
  /** The Redis registry did not answer in time (RegistryUnavailableError). */
  REGISTRY: 'ERR_RINGCAST_REGISTRY',
  /** A merge was misconfigured or fed a position that does not increase (MergeError). */
  MERGE: 'ERR_RINGCAST_MERGE',
  // psmr-proxy
  /** A P-SMR command or reply batch is malformed (WireError). */
  WIRE: 'ERR_RINGCAST_WIRE',
  /** No replica answered a command before its deadline (NoReplyError). */
  NO_REPLY: 'ERR_RINGCAST_NO_REPLY',
  /** C-G gave neither 'all' nor a partition index. */
  PSMR_BAD_GROUP: 'ERR_PSMR_BAD_GROUP',
  /** One command does not fit in one proposal (`maxBatchBytes`). */
  PSMR_COMMAND_TOO_LARGE: 'ERR_PSMR_COMMAND_TOO_LARGE',
  /** Reply: a command the service could not decode. */
  PSMR_MALFORMED_COMMAND: 'ERR_PSMR_MALFORMED_COMMAND',
  /** Reply: a single-partition command delivered on a partition C-G did not choose. */
  PSMR_WRONG_GROUP: 'ERR_PSMR_WRONG_GROUP',
  /** Reply: the service threw while executing a command. */
  PSMR_SERVICE_FAILED: 'ERR_PSMR_SERVICE_FAILED',
  /** A service unfit for its mode (partitioned without executePart/combine). */
  PSMR_SERVICE: 'ERR_PSMR_SERVICE',
  /** A snapshot (service state or session table) that cannot be restored. */
  PSMR_BAD_SNAPSHOT: 'ERR_PSMR_BAD_SNAPSHOT',
  /** A worker thread failed or exited before it was ready. */
  PSMR_WORKER: 'ERR_PSMR_WORKER',
  /** A checkpoint could not be taken or written, or the start moved older files aside (a warning). */
  PSMR_CHECKPOINT: 'ERR_PSMR_CHECKPOINT',
  /** A checkpoint file fails its check (CheckpointDamagedError), or every one does. */
  PSMR_CHECKPOINT_DAMAGED: 'ERR_PSMR_CHECKPOINT_DAMAGED',
  /** A retention hold could not be placed or is not in force. */
  PSMR_HOLD: 'ERR_PSMR_HOLD',
} as const);

/** One of ringcast's own error codes. */
export type ErrorCode = (typeof ERR)[keyof typeof ERR];

/** Errors at the boundary of ringcast: typed, with a stable `code` callers can switch on. */
export class RingcastError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'RingcastError';
  }
}

/** A cluster file or option is invalid; `field` names where (`rings[2].acceptors`). */
export class ConfigError extends RingcastError {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(ERR.CONFIG, `${field}: ${problem}`);
    this.name = 'ConfigError';
  }
}

/** A learner needs instances every acceptor has already trimmed: it needs a state transfer to go on. */
export class TrimmedGapError extends RingcastError {
  constructor(
    readonly needed: number,
    readonly oldest: number,
  ) {
    super(ERR.TRIMMED, `instances ${needed}..${oldest - 1} were trimmed from every acceptor log; this learner needs a state transfer`);
    this.name = 'TrimmedGapError';
  }
}

/**
 * A server could not listen on `host:port` (in use, no permission), or a node could not bind its UDP port:
 * a ConfigError naming `field` and what to do.
 */
export function listenError(e: Error & { code?: string }, field: string, host: string, port: number, udp = false): ConfigError {
  const why = e.code === 'EADDRINUSE' ? 'the port is in use' : e.code === 'EACCES' ? 'no permission to bind it' : e.message;
  const todo = udp ? 'is another process (this node, still running?) holding it?' : 'choose another port, or 0 for any free one';
  return new ConfigError(field, `cannot ${udp ? 'bind UDP' : 'listen on'} ${host}:${port}: ${why} (${e.code ?? 'error'}); ${todo}`);
}
