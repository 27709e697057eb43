/** `smr`: the baseline. One worker reads one ring (g0) and runs every command in delivery order. */
import { groupName } from '../service.js';
import type { Mode } from './mode.js';

export const smr: Mode = {
  name: 'smr',
  partitions: () => 1,
  replicaGroups: () => [groupName(0)],
  workerGroups: () => [groupName(0)],
  route: () => groupName(0),
  checkCluster: () => {},
};
