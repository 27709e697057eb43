import type { ClusterConfig, RunningNode } from '@ringcast/ring-paxos';
import type { Registry } from './types.js';

export interface AnnouncerOptions {
  /** How often to refresh (registration and leases live 3x this long). */
  periodMs?: number;
  /** Told once each time the registry becomes unreachable or reachable again. */
  onState?: (up: boolean, err?: Error) => void;
}

export interface Announcer {
  /** Calls that failed (the registry was down or slow); the node went on regardless. */
  readonly failures: number;
  stop(): Promise<void>;
}

/**
 * Keep a running node's facts in the registry: its address (registration with a TTL), and for every ring it
 * coordinates, the coordinator lease with its ballot. Registry failures are counted and reported once per
 * state change; they never stop or slow the node, whose safety rests on ballots, not on the registry.
 */
export function startAnnouncer(registry: Registry, cluster: ClusterConfig, node: RunningNode, opts: AnnouncerOptions = {}): Announcer {
  const period = opts.periodMs ?? 1000;
  const ttl = period * 3;
  const spec = cluster.nodes.find((n) => n.id === node.id)!;
  let failures = 0;
  let up: boolean | undefined;
  let busy = false;
  const state = (ok: boolean, err?: Error): void => {
    if (up === ok) return;
    up = ok;
    opts.onState?.(ok, err);
  };
  const once = async (): Promise<void> => {
    if (busy) return; // never pile calls up behind a slow registry
    busy = true;
    try {
      await registry.registerNode(node.id, { host: spec.host, port: spec.port, metricsPort: node.metricsPort }, ttl, { timeoutMs: period });
      for (const r of node.rings) {
        const c = r.driver.node.coordinator;
        if (!c) continue;
        const ring = r.driver.node.cfg.ring;
        if (!(await registry.renewLease(ring, node.id, ttl, { timeoutMs: period }))) {
          await registry.acquireLease(ring, node.id, c.ballot, ttl, { timeoutMs: period });
        }
      }
      state(true);
    } catch (e) {
      failures++;
      state(false, e as Error);
    } finally {
      busy = false;
    }
  };
  void once();
  const timer = setInterval(() => void once(), period);
  timer.unref();
  return {
    get failures() {
      return failures;
    },
    async stop() {
      clearInterval(timer);
    },
  };
}
