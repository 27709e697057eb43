/** `smr`: the baseline. One worker reads one ring (g0) and runs every command in delivery order (the psmr scheduler with one partition). */
import { PsmrScheduler } from '../core/psmr-scheduler.js';
import { groupName } from '../service.js';
import type { Mode } from './mode.js';

export const smr: Mode = {
  name: 'smr',
  partitions: () => 1,
  replicaGroups: () => [groupName(0)],
  workerGroups: () => [groupName(0)],
  route: () => groupName(0),
  checkCluster: () => {},
  scheduler: (ctx) => new PsmrScheduler(ctx),
};
