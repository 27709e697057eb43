/**
 * The B+-tree service's own error codes (ServiceError), each defined once: an error reply carries one and
 * changes nothing. The root README documents them; test/code-rules.test.ts checks the two agree.
 */
export const BTREE_ERR = Object.freeze({
  /** A key that is not an integer in the tree's key range [0, range). */
  BAD_KEY: 'ERR_BTREE_BAD_KEY',
  /** A value that is not a signed 64-bit integer (client side). */
  BAD_VALUE: 'ERR_BTREE_BAD_VALUE',
  /** The node pool has too few free nodes for the splits an insert needs: the tree is unchanged. */
  FULL: 'ERR_BTREE_FULL',
  /** A scan limit outside 1..maxScan. */
  BAD_LIMIT: 'ERR_BTREE_BAD_LIMIT',
  UNKNOWN_OP: 'ERR_BTREE_UNKNOWN_OP',
} as const);
