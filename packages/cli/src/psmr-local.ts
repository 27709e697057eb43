import type { ClusterConfig } from '@ringcast/ring-paxos';
import { modeNamed, type ModeName } from '@ringcast/psmr-proxy';
import { launchLocalRing, spawnRingcast, stopProcess, type LocalRing, type Spawned } from './local.js';

/**
 * Ring settings of a local P-SMR cluster: rate leveling on (workers merge two rings). Workers ask a ring for a
 * skip as soon as their merge waits on it, so Δ (the periodic skip check) can be long: an idle ring costs
 * little, and a busy ring next to an idle one waits about one round trip, not Δ.
 */
export const PSMR_SETTINGS: Record<string, number> = { lambda: 20000, skipIntervalMs: 20, skipLeadMs: 25, maxValueBytes: 32768, maxDatagramBytes: 34816 };
/** Driver tick (timers, retransmissions, the Δ check). */
export const PSMR_TICK_MS = 5;

export interface LocalPsmr {
  ring: LocalRing;
  cluster: ClusterConfig;
  clusterPath: string;
  mode: ModeName;
  workers: number;
  /** Replica i runs with id replica-i and reply tag i + 1. */
  replicas: Spawned[];
  /** /metrics and /state port of each replica. */
  metricsPorts: number[];
  /** kill -9 replica `i` by its PID. */
  killReplica(i: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Rings for g0..g{n-1} and gall over 3 acceptor processes (each node holds a role in every ring, and the
 * rings' coordinators are spread over the nodes), and
 * `replicas` replica processes (`ringcast replica`), all on 127.0.0.1.
 */
export async function launchLocalPsmr(opts: { mode: ModeName; workers: number; replicas?: number; settings?: Record<string, number>; ringArgs?: Parameters<typeof launchLocalRing>[0]; replicaEnv?: NodeJS.ProcessEnv }): Promise<LocalPsmr> {
  const workers = modeNamed(opts.mode).partitions(opts.workers);
  const groups: Record<string, number> = { gall: workers };
  for (let i = 0; i < workers; i++) groups[`g${i}`] = i;
  const ring = await launchLocalRing({ acceptors: 3, rings: workers + 1, groups, mergeM: 1, tickMs: PSMR_TICK_MS, rotateCoordinators: true, settings: { ...PSMR_SETTINGS, ...opts.settings }, ...opts.ringArgs });
  const replicas: Spawned[] = [];
  const metricsPorts: number[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(replicas.map((r) => stopProcess(r)));
    await ring.stop();
  };
  try {
    for (let i = 0; i < (opts.replicas ?? 2); i++) {
      replicas.push(spawnRingcast(['replica', '--cluster', ring.clusterPath, '--mode', opts.mode, '--workers', String(workers), '--id', `replica-${i}`, '--reply-tag', String(i + 1), '--metrics-port', '0'], { env: opts.replicaEnv }));
    }
    for (const r of replicas) metricsPorts.push(Number((await r.waitFor('ready', 30_000)).metricsPort));
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    ring,
    cluster: ring.cluster,
    clusterPath: ring.clusterPath,
    mode: opts.mode,
    workers,
    replicas,
    metricsPorts,
    async killReplica(i) {
      const r = replicas[i]!;
      if (r.child.exitCode === null && r.child.signalCode === null && r.child.pid !== undefined) {
        process.kill(r.child.pid, 'SIGKILL');
        await r.exited;
      }
    },
    stop,
  };
}
