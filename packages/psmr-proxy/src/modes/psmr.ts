/**
 * `psmr` (P-SMR, ICDCS'14): worker i reads g_i and g_all and merges them itself. The client's C-G sends a
 * command that touches one partition to that partition's group and any other to g_all, where every worker
 * meets at a barrier.
 */
import { ConfigError } from '@ringcast/ring-paxos';
import { PsmrScheduler } from '../core/psmr-scheduler.js';
import { ALL_GROUP, groupName } from '../service.js';
import type { Mode } from './mode.js';

export const psmr: Mode = {
  name: 'psmr',
  partitions: (workers) => workers,
  replicaGroups: (workers) => [...Array.from({ length: workers }, (_, i) => groupName(i)), ALL_GROUP],
  workerGroups: (index) => [groupName(index), ALL_GROUP],
  route: (choice) => (choice === 'all' ? ALL_GROUP : groupName(choice)),
  checkCluster: (cluster, workers) => {
    if (workers > 1 && cluster.settings.lambda <= 0) {
      throw new ConfigError('settings.lambda', 'psmr workers merge two rings: set rate leveling (lambda > 0)');
    }
  },
  scheduler: (ctx) => new PsmrScheduler(ctx),
};
