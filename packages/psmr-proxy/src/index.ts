// Public API of @ringcast/psmr-proxy. The P-SMR client and server proxies land with the P-SMR issue;
// until then this package hosts the `ringcast` CLI and the local-cluster launcher tests and benches use.
export { launchLocalRing, spawnRingcast, stopProcess, freeUdpPorts, freeUdpPortBlocks, RINGCAST_BIN } from './cli/local.js';
export type { LocalRing, Spawned } from './cli/local.js';
export { main } from './cli.js';
