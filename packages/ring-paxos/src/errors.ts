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
