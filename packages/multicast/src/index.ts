// Public API of @ringcast/multicast: Multi-Ring Paxos (groups, deterministic merge, skips, registry).
// Curated: add names here on purpose, never `export *`.
export {
  RegistryUnavailableError,
  StaticRegistry,
  RedisRegistry,
  registryKeys,
  REGISTRY_LIMITS,
  DEFAULT_PREFIX,
  DEFAULT_TIMEOUT_MS,
  checkRedisUrl,
  startAnnouncer,
} from './registry/index.js';
export type {
  Registry,
  RegistryView,
  RegistryNode,
  RegistryRing,
  RegistryEvent,
  RegistryListener,
  Lease,
  Subscription,
  NodeAddress,
  CallOptions,
  LoadOptions,
  LoadResult,
  StaticRegistryOptions,
  RedisRegistryOptions,
  Announcer,
  AnnouncerOptions,
} from './registry/index.js';
export { Merger, MergeError, joinRound } from './merge.js';
export type { MergerOptions, Merged, PositionedInstance } from './merge.js';
export { startGroupLearner, createMulticaster, ringsOf } from './group-client.js';
export type { GroupLearner, GroupLearnerOptions, GroupDelivery, Multicaster, ResumePoint } from './group-client.js';
export { runMultiRingSimulation } from './sim.js';
export type { MultiRingSimOptions, MultiRingSimResult } from './sim.js';
