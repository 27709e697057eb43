// The registry: where rings, acceptors, coordinators and learners are. Liveness and discovery hints only.
export { RegistryUnavailableError } from './types.js';
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
} from './types.js';
export { StaticRegistry } from './static.js';
export type { StaticRegistryOptions } from './static.js';
export { RedisRegistry, registryKeys } from './redis.js';
export type { RedisRegistryOptions } from './redis.js';
export { REGISTRY_LIMITS, DEFAULT_PREFIX, DEFAULT_TIMEOUT_MS, checkRedisUrl } from './validate.js';
export { startAnnouncer } from './announce.js';
export type { Announcer, AnnouncerOptions } from './announce.js';
