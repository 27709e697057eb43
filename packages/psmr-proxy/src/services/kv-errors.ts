/**
 * The key-value store's own error codes (ServiceError), each defined once: an error reply carries one and
 * changes nothing. The root README documents them; test/code-rules.test.ts checks the two agree.
 */
export const KV_ERR = Object.freeze({
  KEY_TOO_LARGE: 'ERR_KV_KEY_TOO_LARGE',
  VALUE_TOO_LARGE: 'ERR_KV_VALUE_TOO_LARGE',
  /** A key that is neither a string nor a Uint8Array (client side). */
  BAD_KEY: 'ERR_KV_BAD_KEY',
  /** A value that is neither a string nor a Uint8Array (client side). */
  BAD_VALUE: 'ERR_KV_BAD_VALUE',
  TOO_MANY_KEYS: 'ERR_KV_TOO_MANY_KEYS',
  BAD_LIMIT: 'ERR_KV_BAD_LIMIT',
  UNKNOWN_OP: 'ERR_KV_UNKNOWN_OP',
  /** A stored value's type byte or a cas flag out of range. */
  MALFORMED: 'ERR_KV_MALFORMED',
} as const);
