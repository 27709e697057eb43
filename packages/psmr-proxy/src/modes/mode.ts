/**
 * A mode: how a replica of n workers gets and runs its commands, and how a client routes them. Each mode is
 * one file in this folder and one line in `index.ts`; nothing else tests a mode's name. Configuration and
 * the messages to worker threads carry the mode's name (`ModeName`); code looks the object up once with
 * `modeNamed`.
 */
import type { ClusterConfig } from '@ringcast/ring-paxos';
import type { Scheduler, SchedulerContext } from '../core/worker-core.js';
import type { GroupChoice } from '../service.js';

/** The name of a registered mode, as flags, options, checkpoints and worker init messages carry it. */
export type ModeName = string;

export interface Mode {
  /** The name in flags, options, checkpoints and metrics. */
  readonly name: ModeName;
  /** Worker threads a replica runs when asked for `workers` (smr: always 1). */
  partitions(workers: number): number;
  /** The groups a replica of `workers` workers needs in the cluster file, each on its own ring. */
  replicaGroups(workers: number): string[];
  /** The groups worker `index` subscribes to and merges itself. */
  workerGroups(index: number): string[];
  /** Client: the group a command is multicast to, from the service's C-G answer. */
  route(choice: GroupChoice): string;
  /** What a replica refuses beyond its groups: throws ConfigError naming the field. */
  checkCluster(cluster: ClusterConfig, workers: number): void;
  /**
   * Worker side: how worker `ctx.worker` runs what its merged stream delivers (the `Scheduler` its
   * worker-core feeds one instance at a time). Called once per worker thread, and by the simulator.
   */
  scheduler<C, R, S>(ctx: SchedulerContext<C, R, S>): Scheduler;
}
