// @ringcast/ring-paxos/testing: what tests, the simulator replay and the fault-injection relay need and a
// deployment does not (like nats.js's ./internal). Kept out of the main index on purpose; never `export *`.
export { runSimulation } from './sim/simulator.js';
export type { SimOptions, SimResult } from './sim/simulator.js';
export { EventQueue, VirtualTime } from './sim/events.js';
export { FaultProxy } from './fault-proxy.js';
export type { FaultProxyOptions } from './fault-proxy.js';
