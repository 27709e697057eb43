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
    super('ERR_RINGCAST_CONFIG', `${field}: ${problem}`);
    this.name = 'ConfigError';
  }
}

/** A learner needs instances every acceptor has already trimmed: it needs a state transfer to go on. */
export class TrimmedGapError extends RingcastError {
  constructor(
    readonly needed: number,
    readonly oldest: number,
  ) {
    super('ERR_RINGCAST_TRIMMED', `instances ${needed}..${oldest - 1} were trimmed from every acceptor log; this learner needs a state transfer`);
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
