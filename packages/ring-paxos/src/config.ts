import { readFileSync } from 'node:fs';
import { BALLOT_ID_SPACE } from './core/messages.js';
import { DATAGRAM_OVERHEAD, DEFAULT_RING_SETTINGS, type RingSettings } from './core/settings.js';
import { ConfigError } from './errors.js';
import { checkKeys, hasName, suggest } from './names.js';
import { MAX_UDP_PAYLOAD, TAG_BYTES } from './wire/codec.js';

/** A static node of the cluster: an acceptor process. */
export interface NodeSpec {
  id: number;
  host: string;
  port: number;
  /** Serve Prometheus /metrics on this port (0 or absent: none). */
  metricsPort?: number;
}

export interface RingSpec {
  id: number;
  /** All 2f+1 acceptors of the ring; the first f+1 form the ring, the rest are spares. */
  acceptors: number[];
  /** The ring members in order (default: the first f+1 acceptors); the last is the coordinator. */
  ring: number[];
  /** f: acceptor failures the ring tolerates. */
  f: number;
  /** "group:port" for IP multicast of Phase 2A and decisions; absent: unicast fan-out. */
  multicast?: { group: string; port: number; interface: string };
}

export interface ClusterConfig {
  /** Shared secret: every datagram carries an HMAC when set. */
  secret?: string;
  nodes: NodeSpec[];
  rings: RingSpec[];
  settings: RingSettings;
  /** Driver tick period in milliseconds. */
  tickMs: number;
  /** Multicast groups: name -> ring id (default: `g<id>` for every ring). */
  groups: Record<string, number>;
  /** Multi-Ring Paxos merge: positions taken from each ring per round (M). */
  mergeM: number;
  /**
   * Per-service parameters by service name (`services.btree = { keys, order, fill }`), the same for every
   * replica since they share the file. Opaque here: the service validates its own object.
   */
  services: Record<string, Record<string, unknown>>;
}

type Json = unknown;

function isObj(x: Json): x is Record<string, Json> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function int(v: Json, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new ConfigError(field, `must be an integer, got ${JSON.stringify(v)}`);
  if (v < min || v > max) throw new ConfigError(field, `must be between ${min} and ${max}, got ${v}`);
  return v;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

function host(v: Json, field: string): string {
  if (typeof v !== 'string' || !(IPV4.test(v) || v === 'localhost')) {
    throw new ConfigError(field, `must be an IPv4 address such as 127.0.0.1, got ${JSON.stringify(v)}`);
  }
  return v === 'localhost' ? '127.0.0.1' : v;
}

const SETTING_BOUNDS: Record<keyof RingSettings, [number, number]> = {
  window: [1, 65536],
  logCapacity: [16, 1 << 24],
  logRetain: [0, 1 << 23],
  logRetainBytes: [0, 2 ** 40],
  maxHolds: [0, 4096],
  maxValueBytes: [256, MAX_UDP_PAYLOAD],
  maxDatagramBytes: [1024, MAX_UDP_PAYLOAD],
  lingerMs: [0, 1000],
  proposerLingerMs: [0, 1000],
  phase2TimeoutMs: [1, 60000],
  phase1TimeoutMs: [1, 60000],
  phase1Range: [16, 1 << 24],
  progressIntervalMs: [1, 60000],
  learnerTimeoutMs: [10, 3600000],
  maxLearners: [1, 65536],
  gapTimeoutMs: [1, 60000],
  maxRetransmitInstances: [1, 65536],
  learnerBuffer: [16, 1 << 24],
  retryTimeoutMs: [1, 600000],
  maxSends: [1, 1000000],
  maxOutstanding: [1, 1 << 20],
  maxProposers: [1, 1 << 20],
  heartbeatMs: [1, 60000],
  coordinatorTimeoutMs: [1, 600000],
  acceptorTimeoutMs: [1, 600000],
  lambda: [0, 10_000_000],
  skipIntervalMs: [1, 60000],
  skipLeadMs: [0, 60000],
  epochMs: [0, 8_000_000_000_000],
};

/** Validate ring settings (partial, over the defaults); errors name `${prefix}.${key}`. */
export function parseSettings(raw: Json, prefix = 'settings'): RingSettings {
  const s: RingSettings = { ...DEFAULT_RING_SETTINGS };
  if (raw === undefined) return s;
  if (!isObj(raw)) throw new ConfigError(prefix, 'must be an object');
  for (const [k, v] of Object.entries(raw)) {
    if (!hasName(SETTING_BOUNDS, k)) throw new ConfigError(`${prefix}.${k}`, `unknown setting; ${suggest(k, Object.keys(SETTING_BOUNDS))}`);
    const bounds = SETTING_BOUNDS[k as keyof RingSettings];
    s[k as keyof RingSettings] = int(v, `${prefix}.${k}`, bounds[0], bounds[1]);
  }
  if (s.maxValueBytes + DATAGRAM_OVERHEAD + TAG_BYTES > s.maxDatagramBytes) {
    throw new ConfigError(
      `${prefix}.maxValueBytes`,
      `${s.maxValueBytes} plus ${DATAGRAM_OVERHEAD + TAG_BYTES} bytes of framing exceeds maxDatagramBytes ${s.maxDatagramBytes}`,
    );
  }
  if (s.logCapacity < s.window * 2) throw new ConfigError(`${prefix}.logCapacity`, `must be at least twice window (${s.window})`);
  if (s.logRetain * 2 > s.logCapacity) throw new ConfigError(`${prefix}.logRetain`, `must be at most half of logCapacity (${s.logCapacity})`);
  // A coordinator that takes over re-learns which proposals are ordered from the decided values its log
  // retains; keeping at least a window of them covers retries whose acknowledgement died with the old one.
  if (s.logRetain < s.window) throw new ConfigError(`${prefix}.logRetain`, `must be at least window (${s.window})`);
  if (s.coordinatorTimeoutMs < s.heartbeatMs * 2) throw new ConfigError(`${prefix}.coordinatorTimeoutMs`, `must be at least twice heartbeatMs (${s.heartbeatMs})`);
  // A coordinator that takes over without the last position restarts positions at the target: the silence
  // before a takeover must outlast how far ahead of the target a ring may run, or positions could go back.
  if (s.lambda > 0 && s.skipLeadMs + (s.window * 1000) / s.lambda >= s.coordinatorTimeoutMs - s.heartbeatMs) {
    throw new ConfigError(
      `${prefix}.${s.skipLeadMs > 0 ? 'skipLeadMs' : 'lambda'}`,
      `skipLeadMs + window / lambda (${s.skipLeadMs} + ${((s.window * 1000) / s.lambda).toFixed(1)} ms) must stay below coordinatorTimeoutMs - heartbeatMs (${s.coordinatorTimeoutMs - s.heartbeatMs} ms)`,
    );
  }
  if (s.acceptorTimeoutMs < s.heartbeatMs * 2) throw new ConfigError(`${prefix}.acceptorTimeoutMs`, `must be at least twice heartbeatMs (${s.heartbeatMs})`);
  if (s.phase1Range < s.window) throw new ConfigError(`${prefix}.phase1Range`, `must be at least window (${s.window})`);
  return s;
}

/** Validate a parsed cluster file. Every error names the field, as `rings[2].acceptors[1]`. */
export function parseCluster(raw: Json): ClusterConfig {
  if (!isObj(raw)) throw new ConfigError('(root)', 'the cluster file must be a JSON object');
  // Unknown keys at every level are refused by name: a misspelt key would otherwise read as a missing one.
  checkKeys(raw, ['secret', 'nodes', 'rings', 'settings', 'tickMs', 'groups', 'mergeM', 'services']);
  let secret: string | undefined;
  if (raw.secret !== undefined) {
    if (typeof raw.secret !== 'string' || raw.secret.length < 16) throw new ConfigError('secret', 'must be a string of at least 16 characters');
    secret = raw.secret;
  }
  if (!Array.isArray(raw.nodes) || raw.nodes.length === 0) throw new ConfigError('nodes', 'must be a non-empty array');
  const nodes: NodeSpec[] = [];
  const ids = new Set<number>();
  const endpoints = new Set<string>();
  raw.nodes.forEach((n: Json, i: number) => {
    const f = `nodes[${i}]`;
    if (!isObj(n)) throw new ConfigError(f, 'must be an object');
    checkKeys(n, ['id', 'host', 'port', 'metricsPort'], f);
    const id = int(n.id, `${f}.id`, 1, BALLOT_ID_SPACE - 1);
    if (ids.has(id)) throw new ConfigError(`${f}.id`, `duplicate node id ${id}`);
    ids.add(id);
    const h = host(n.host, `${f}.host`);
    const port = int(n.port, `${f}.port`, 1, 65535);
    if (endpoints.has(`${h}:${port}`)) throw new ConfigError(`${f}.port`, `${h}:${port} is used by another node`);
    endpoints.add(`${h}:${port}`);
    const spec: NodeSpec = { id, host: h, port };
    if (n.metricsPort !== undefined) spec.metricsPort = int(n.metricsPort, `${f}.metricsPort`, 0, 65535);
    nodes.push(spec);
  });
  if (!Array.isArray(raw.rings) || raw.rings.length === 0) throw new ConfigError('rings', 'must be a non-empty array');
  const ringIds = new Set<number>();
  const rings: RingSpec[] = raw.rings.map((r: Json, i: number) => {
    const f = `rings[${i}]`;
    if (!isObj(r)) throw new ConfigError(f, 'must be an object');
    checkKeys(r, ['id', 'acceptors', 'ring', 'multicast'], f);
    const id = int(r.id, `${f}.id`, 0, 0xffff);
    if (ringIds.has(id)) throw new ConfigError(`${f}.id`, `duplicate ring id ${id}`);
    ringIds.add(id);
    if (!Array.isArray(r.acceptors) || r.acceptors.length === 0) throw new ConfigError(`${f}.acceptors`, 'must be a non-empty array of node ids');
    const acceptors = r.acceptors.map((a: Json, k: number) => {
      const v = int(a, `${f}.acceptors[${k}]`, 1, BALLOT_ID_SPACE - 1);
      if (!ids.has(v)) throw new ConfigError(`${f}.acceptors[${k}]`, `node ${v} is not in nodes`);
      return v;
    });
    if (new Set(acceptors).size !== acceptors.length) throw new ConfigError(`${f}.acceptors`, 'lists a node twice');
    if (acceptors.length % 2 === 0) throw new ConfigError(`${f}.acceptors`, `needs 2f+1 acceptors (an odd count), got ${acceptors.length}`);
    const fTol = (acceptors.length - 1) / 2;
    let order: number[] = acceptors.slice(0, fTol + 1);
    if (r.ring !== undefined) {
      if (!Array.isArray(r.ring) || r.ring.length !== fTol + 1) throw new ConfigError(`${f}.ring`, `must list f+1 = ${fTol + 1} of the acceptors`);
      order = r.ring.map((a: Json, k: number) => {
        const v = int(a, `${f}.ring[${k}]`, 1, BALLOT_ID_SPACE - 1);
        if (!acceptors.includes(v)) throw new ConfigError(`${f}.ring[${k}]`, `node ${v} is not one of the ring's acceptors`);
        return v;
      });
      if (new Set(order).size !== order.length) throw new ConfigError(`${f}.ring`, 'lists a node twice');
    }
    const spec: RingSpec = { id, acceptors, ring: order, f: fTol };
    if (r.multicast !== undefined) {
      const m = r.multicast;
      if (!isObj(m)) throw new ConfigError(`${f}.multicast`, 'must be an object { group, port, interface }');
      checkKeys(m, ['group', 'port', 'interface'], `${f}.multicast`);
      const group = host(m.group, `${f}.multicast.group`);
      const first = Number(group.split('.')[0]);
      if (first < 224 || first > 239) throw new ConfigError(`${f}.multicast.group`, `must be an IPv4 multicast address (224.0.0.0/4), got ${group}`);
      spec.multicast = { group, port: int(m.port, `${f}.multicast.port`, 1, 65535), interface: host(m.interface, `${f}.multicast.interface`) };
    }
    return spec;
  });
  const settings = parseSettings(raw.settings);
  const tickMs = raw.tickMs === undefined ? 5 : int(raw.tickMs, 'tickMs', 1, 1000);
  // No prototype: a group named after an Object member (`constructor`, `__proto__`) is just a name.
  const groups: Record<string, number> = Object.create(null) as Record<string, number>;
  if (raw.groups === undefined) {
    for (const r of rings) groups[`g${r.id}`] = r.id;
  } else {
    if (!isObj(raw.groups)) throw new ConfigError('groups', 'must be an object of group name -> ring id');
    for (const [name, v] of Object.entries(raw.groups)) {
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name) || name === '__proto__') throw new ConfigError(`groups.${name}`, 'names are 1-64 letters, digits, _ . - (not __proto__)');
      const id = int(v, `groups.${name}`, 0, 0xffff);
      if (!ringIds.has(id)) throw new ConfigError(`groups.${name}`, `ring ${id} is not in rings`);
      groups[name] = id;
    }
  }
  const mergeM = raw.mergeM === undefined ? 1 : int(raw.mergeM, 'mergeM', 1, 1_000_000);
  const services: Record<string, Record<string, unknown>> = Object.create(null) as Record<string, Record<string, unknown>>;
  if (raw.services !== undefined) {
    if (!isObj(raw.services)) throw new ConfigError('services', 'must be an object of service name -> parameters object');
    for (const [name, params] of Object.entries(raw.services)) {
      if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name) || name === '__proto__') throw new ConfigError(`services.${name}`, 'names are 1-64 letters, digits, _ . - (not __proto__)');
      if (!isObj(params)) throw new ConfigError(`services.${name}`, 'must be an object of parameters');
      services[name] = params;
    }
  }
  return { secret, nodes, rings, settings, tickMs, groups, mergeM, services };
}

/** Read and validate a cluster file; a JSON syntax error names the file. */
export function loadCluster(path: string): ClusterConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(path, `cannot read the cluster file: ${(e as Error).message}`);
  }
  let raw: Json;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(path, `not valid JSON: ${(e as Error).message}`);
  }
  return parseCluster(raw);
}

/** A local cluster on 127.0.0.1: `acceptors` nodes from `basePort`, one ring over them. */
export function localCluster(opts: { acceptors?: number; basePort: number; rings?: number; settings?: Partial<RingSettings>; secret?: string }): ClusterConfig {
  const n = opts.acceptors ?? 3;
  const nodes: NodeSpec[] = [];
  for (let i = 0; i < n; i++) nodes.push({ id: i + 1, host: '127.0.0.1', port: opts.basePort + i });
  const rings = [];
  for (let r = 0; r < (opts.rings ?? 1); r++) rings.push({ id: r, acceptors: nodes.map((x) => x.id) });
  return parseCluster({ nodes, rings, settings: opts.settings, secret: opts.secret });
}
