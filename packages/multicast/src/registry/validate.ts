import { ConfigError, type ClusterConfig } from '@ringcast/ring-paxos';
import type { NodeAddress, RegistryRing } from './types.js';

/** Bounds of registry inputs; every violation is a ConfigError naming the field. */
export const REGISTRY_LIMITS = {
  nodeId: [1, 0xffff],
  ringId: [0, 0xffff],
  learnerId: [1, 0xffffffff],
  ballot: [0, Number.MAX_SAFE_INTEGER],
  ttlMs: [10, 86_400_000],
  timeoutMs: [1, 60_000],
  maxRingsPerSubscription: 4096,
} as const;

export const DEFAULT_TIMEOUT_MS = 500;
export const DEFAULT_PREFIX = 'ringcast:';

export function checkInt(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new ConfigError(field, `must be an integer, got ${JSON.stringify(v)}`);
  if (v < min || v > max) throw new ConfigError(field, `must be between ${min} and ${max}, got ${v}`);
  return v;
}

export const checkNode = (v: unknown, field = 'node'): number => checkInt(v, field, ...REGISTRY_LIMITS.nodeId);
export const checkRing = (v: unknown, field = 'ring'): number => checkInt(v, field, ...REGISTRY_LIMITS.ringId);
export const checkLearner = (v: unknown, field = 'learnerId'): number => checkInt(v, field, ...REGISTRY_LIMITS.learnerId);
export const checkBallot = (v: unknown, field = 'ballot'): number => checkInt(v, field, ...REGISTRY_LIMITS.ballot);
export const checkTtl = (v: unknown, field = 'ttlMs'): number => checkInt(v, field, ...REGISTRY_LIMITS.ttlMs);
export const checkTimeout = (v: unknown, field = 'timeoutMs'): number => checkInt(v, field, ...REGISTRY_LIMITS.timeoutMs);

const HOST = /^[A-Za-z0-9.:\-[\]]{1,253}$/;

export function checkAddress(a: unknown, field = 'addr'): NodeAddress {
  if (typeof a !== 'object' || a === null) throw new ConfigError(field, 'must be an object { host, port, metricsPort? }');
  const r = a as Record<string, unknown>;
  if (typeof r.host !== 'string' || !HOST.test(r.host)) throw new ConfigError(`${field}.host`, `must be a host name or address, got ${JSON.stringify(r.host)}`);
  const out: NodeAddress = { host: r.host, port: checkInt(r.port, `${field}.port`, 1, 65535) };
  if (r.metricsPort !== undefined) out.metricsPort = checkInt(r.metricsPort, `${field}.metricsPort`, 0, 65535);
  return out;
}

export function checkRings(v: unknown, field = 'rings'): number[] {
  if (!Array.isArray(v)) throw new ConfigError(field, 'must be an array of ring ids');
  if (v.length > REGISTRY_LIMITS.maxRingsPerSubscription) throw new ConfigError(field, `at most ${REGISTRY_LIMITS.maxRingsPerSubscription} rings`);
  const rings = v.map((x, i) => checkRing(x, `${field}[${i}]`));
  return [...new Set(rings)].sort((a, b) => a - b);
}

/** A Redis URL, redis://HOST:PORT or rediss://; errors name `field` and what it accepts. */
export function checkRedisUrl(v: unknown, field = 'url'): string {
  const bad = (): ConfigError => new ConfigError(field, `must be a redis://HOST:PORT or rediss://HOST:PORT URL (port 1-65535), got ${JSON.stringify(v)}`);
  if (typeof v !== 'string' || v.length > 2048 || /\s/.test(v)) throw bad();
  let u: URL;
  try {
    u = new URL(v); // refuses a port above 65535 ("Invalid URL")
  } catch {
    throw bad();
  }
  if ((u.protocol !== 'redis:' && u.protocol !== 'rediss:') || u.hostname === '' || u.port === '0') throw bad();
  return v;
}

/** A key prefix: 1..64 printable characters without spaces; one cluster per prefix. */
export function checkPrefix(v: unknown, field = 'prefix'): string {
  if (typeof v !== 'string' || !/^[\x21-\x7e]{1,64}$/.test(v)) throw new ConfigError(field, `must be 1..64 printable characters without spaces, got ${JSON.stringify(v)}`);
  return v;
}

/** The facts of a cluster file a registry keeps (never the secret or the settings). */
export interface ClusterFacts {
  nodes: Array<{ id: number; host: string; port: number; metricsPort?: number }>;
  rings: RegistryRing[];
  groups: Record<string, number>;
}

export function clusterFacts(cluster: ClusterConfig, groups?: Record<string, number>): ClusterFacts {
  if (typeof cluster !== 'object' || cluster === null || !Array.isArray(cluster.nodes) || !Array.isArray(cluster.rings)) {
    throw new ConfigError('cluster', 'must be a ClusterConfig (from parseCluster or loadCluster)');
  }
  const nodes = cluster.nodes
    .map((n) => {
      const spec: ClusterFacts['nodes'][number] = { id: n.id, host: n.host, port: n.port };
      if (n.metricsPort !== undefined) spec.metricsPort = n.metricsPort;
      return spec;
    })
    .sort((a, b) => a.id - b.id);
  const rings = cluster.rings
    .map((r) => ({ id: r.id, acceptors: [...r.acceptors], ring: [...r.ring], spares: r.acceptors.filter((a) => !r.ring.includes(a)), f: r.f }))
    .sort((a, b) => a.id - b.id);
  const ringIds = new Set(rings.map((r) => r.id));
  let g: Record<string, number> = {};
  if (groups === undefined) {
    for (const r of rings) g[`g${r.id}`] = r.id;
  } else {
    if (typeof groups !== 'object' || groups === null || Array.isArray(groups)) throw new ConfigError('groups', 'must be an object { name: ringId }');
    for (const [name, ring] of Object.entries(groups)) {
      // Not __proto__: a registry view keeps groups in plain objects, where that name would set the prototype.
      if (!/^[\w.-]{1,64}$/.test(name) || name === '__proto__') throw new ConfigError(`groups.${name}`, 'a group name is 1..64 letters, digits, _ . - (not __proto__)');
      checkRing(ring, `groups.${name}`);
      if (!ringIds.has(ring)) throw new ConfigError(`groups.${name}`, `ring ${ring} is not in the cluster`);
    }
    g = Object.fromEntries(Object.entries(groups).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }
  return { nodes, rings, groups: g };
}

/** Check a ring order against the ring's acceptors: distinct members, f+1 of them. */
export function checkOrder(order: unknown, ring: RegistryRing | undefined, field = 'order'): number[] {
  if (!Array.isArray(order) || order.length === 0) throw new ConfigError(field, 'must be a non-empty array of node ids');
  const o = order.map((x, i) => checkNode(x, `${field}[${i}]`));
  if (new Set(o).size !== o.length) throw new ConfigError(field, 'lists a node twice');
  if (ring) {
    if (o.length !== ring.f + 1) throw new ConfigError(field, `must list f+1 = ${ring.f + 1} acceptors of ring ${ring.id}`);
    o.forEach((a, i) => {
      if (!ring.acceptors.includes(a)) throw new ConfigError(`${field}[${i}]`, `node ${a} is not an acceptor of ring ${ring.id}`);
    });
  }
  return o;
}
