// Public API of @ringcast/multicast: Multi-Ring Paxos (groups, deterministic merge, skips, registry).
// Empty until the Multi-Ring Paxos issue lands; see ../README.md for the planned module boundaries.
export const MULTICAST_API_VERSION = 0;
