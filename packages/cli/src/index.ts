// Public API of @ringcast/cli: the `ringcast` command and the launchers the end-to-end tests share.
// Curated: add names here on purpose, never `export *`. The libraries export none of this.
export { main } from './cli.js';
export { launchLocalRing, spawnRingcast, stopProcess, freeUdpPorts, RINGCAST_BIN, NODE_FLAGS } from './local.js';
export type { LocalRing, Spawned } from './local.js';
export { launchLocalPsmr } from './psmr-local.js';
export type { LocalPsmr } from './psmr-local.js';
export { runKvLoad } from './kv-load.js';
export type { KvLoadOptions, KvLoadResult } from './kv-load.js';
