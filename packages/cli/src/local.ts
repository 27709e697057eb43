import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseCluster, type ClusterConfig } from '@ringcast/ring-paxos';

/** Path of the ringcast executable script, for spawning real processes. */
/**
 * V8 flags every ringcast process runs with (the bin's shebang line carries the same ones).
 * `--initial-old-space-size=64`: a ring process keeps a small heap (about 8 MB) while datagrams churn
 * through it; with V8's default, small old-generation limit it ran a full mark-compact every ~150 ms, which
 * took half of a learner's CPU at 3,000 instances/s and stalled its event loop for 5-15 ms each time. With
 * 64 MB of initial room the young-generation scavenges free the churn and mark-compacts become rare.
 */
export const NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64'];

/** The `ringcast` executable of this package (dist/local.js -> ../bin/ringcast.js). */
export const RINGCAST_BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'ringcast.js');

/** Ask the kernel for `n` distinct free UDP ports on 127.0.0.1. */
export async function freeUdpPorts(n: number): Promise<number[]> {
  const socks = await Promise.all(
    Array.from({ length: n }, () =>
      new Promise<ReturnType<typeof createSocket>>((resolve, reject) => {
        const s = createSocket('udp4');
        s.once('error', reject);
        s.bind(0, '127.0.0.1', () => resolve(s));
      }),
    ),
  );
  const ports = socks.map((s) => s.address().port);
  await Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** `n` blocks of `width` consecutive free UDP ports on 127.0.0.1 (a node in several rings uses one per ring). */
export async function freeUdpPortBlocks(n: number, width: number): Promise<number[]> {
  if (width === 1) return freeUdpPorts(n);
  const bases: number[] = [];
  for (let tries = 0; bases.length < n && tries < 1000; tries++) {
    const base = 20000 + Math.floor(Math.random() * 4000) * 10;
    if (bases.some((b) => Math.abs(b - base) < width)) continue;
    const socks: Array<ReturnType<typeof createSocket>> = [];
    let ok = true;
    for (let k = 0; k < width && ok; k++) {
      const s = createSocket('udp4');
      ok = await new Promise<boolean>((resolve) => {
        s.once('error', () => resolve(false));
        s.bind(base + k, '127.0.0.1', () => resolve(true));
      });
      socks.push(s);
    }
    await Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r())).catch(() => {})));
    if (ok) bases.push(base);
  }
  if (bases.length < n) throw new Error(`could not find ${n} blocks of ${width} free UDP ports`);
  return bases;
}

export interface Spawned {
  child: ChildProcess;
  /** Every JSON line the child printed on stdout, in order. */
  lines: unknown[];
  /**
   * Resolves with the first line whose event is `event`; rejects at once if the process exits first, and
   * after `timeoutMs` (default 60 s) if it is still running. The default is generous: a process start takes
   * a second alone, but over 15 s on a 2-core machine shared with other builds (load average 20), and the
   * bound only matters for a process that hangs.
   */
  waitFor(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
  stderr(): string;
}

/** Spawn `ringcast <args>` as a real process and collect its JSON lines. */
export function spawnRingcast(args: string[], opts: { env?: NodeJS.ProcessEnv; prefix?: string[] } = {}): Spawned {
  // With a prefix (e.g. ['ip', 'netns', 'exec', 'ns1']) the prefix program execs node in place, so the
  // child's PID is still node's PID.
  // RINGCAST_NODE_FLAGS (a developer aid): extra node flags for every spawned process, for the flags that
  // NODE_OPTIONS refuses (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
  const flags = (opts.env ?? process.env).RINGCAST_NODE_FLAGS?.split(' ').filter((f) => f !== '') ?? [];
  const argv = [process.execPath, ...NODE_FLAGS, ...flags, RINGCAST_BIN, ...args];
  const [cmd, ...rest] = opts.prefix && opts.prefix.length > 0 ? [...opts.prefix, ...argv] : argv;
  const child = spawn(cmd!, rest, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
  const lines: unknown[] = [];
  const waiters: Array<{ event: string; resolve: (v: Record<string, unknown>) => void }> = [];
  let err = '';
  child.stderr!.on('data', (b: Buffer) => {
    if (err.length < 64 * 1024) err += b.toString();
  });
  createInterface({ input: child.stdout! }).on('line', (l) => {
    let v: Record<string, unknown>;
    try {
      v = JSON.parse(l) as Record<string, unknown>;
    } catch {
      return;
    }
    lines.push(v);
    for (let k = waiters.length - 1; k >= 0; k--) {
      if (waiters[k]!.event === v.event) {
        waiters[k]!.resolve(v);
        waiters.splice(k, 1);
      }
    }
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return {
    child,
    lines,
    exited,
    stderr: () => err,
    waitFor(event, timeoutMs = 60_000) {
      const seen = lines.find((l) => (l as Record<string, unknown>).event === event);
      if (seen) return Promise.resolve(seen as Record<string, unknown>);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for '${event}' from ringcast ${args.join(' ')}\n${err}`)), timeoutMs);
        waiters.push({ event, resolve: (v) => (clearTimeout(t), resolve(v)) });
        void exited.then((code) => {
          clearTimeout(t);
          reject(new Error(`ringcast ${args.join(' ')} exited with ${code} before '${event}'\n${err}`));
        });
      });
    },
  };
}

/** Stop a spawned process by its PID: SIGTERM, then SIGKILL after a grace period. */
export async function stopProcess(s: Spawned, graceMs = 3000): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  const pid = s.child.pid;
  if (pid === undefined) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const t = setTimeout(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, graceMs);
  await s.exited;
  clearTimeout(t);
}

export interface LocalRing {
  dir: string;
  clusterPath: string;
  cluster: ClusterConfig;
  /** The node processes by position (node id - 1); `restart` replaces an entry. */
  nodes: Spawned[];
  /** The fault proxies in front of each node, when `faults` was given. */
  proxies: Spawned[];
  /** kill -9 node `id` (by its PID) and wait until it is gone. */
  kill(id: number): Promise<void>;
  /** Start node `id` again with the same arguments (its log directory, if durable) plus `extra`. */
  restart(id: number, extra?: string[]): Promise<Spawned>;
  /** Acceptor log directory of node `id` (durable rings only). */
  logDir(id: number): string;
  stop(): Promise<void>;
}

/**
 * Write a cluster file for `acceptors` nodes on free loopback ports and start each node as a real
 * `ringcast node` process; resolves when all are ready.
 */
export async function launchLocalRing(
  opts: {
    acceptors?: number;
    settings?: Record<string, number>;
    secret?: string;
    metrics?: boolean;
    tickMs?: number;
    /** IP multicast for Phase 2A and decisions (only inside a network namespace; see `prefix`). */
    multicast?: { group: string; port: number; interface: string };
    /** Command prefix for every node process, e.g. ['ip', 'netns', 'exec', 'ns1']. */
    prefix?: string[];
    /** Ports to use instead of asking the kernel for free ones (inside a namespace). */
    ports?: number[];
    /** Acceptor logs: 'sync' or 'async' in a directory per node under the ring's temp dir. */
    durable?: 'sync' | 'async' | 'memory';
    /** Put a `ringcast fault-proxy` process in front of every node with these rates. */
    faults?: { drop: number; dup: number; delay: string; seed?: number };
    /** Rings over the same nodes (ids 0..rings-1, groups g0..); every node is an acceptor of each. */
    rings?: number;
    /** Rotate ring membership so ring r is coordinated by node ((r + 1) mod n) + 1: spreads coordinators. */
    rotateCoordinators?: boolean;
    /** Extra arguments for every `ringcast node` process (e.g. ['--registry', url]). */
    nodeArgs?: string[];
    /** Cluster-level extras for several rings. */
    mergeM?: number;
    groups?: Record<string, number>;
  } = {},
): Promise<LocalRing> {
  const n = opts.acceptors ?? 3;
  const nRings = opts.rings ?? 1;
  if (nRings > 1 && opts.faults) throw new Error('fault proxies front one ring per node');
  const ports = opts.ports ?? (await freeUdpPortBlocks(n, nRings));
  const bindPorts = opts.faults ? await freeUdpPorts(n) : ports;
  const nodes = Array.from({ length: n }, (_, i) => ({
    id: i + 1,
    host: '127.0.0.1',
    port: ports[i]!,
  }));
  const rings: Array<Record<string, unknown>> = [];
  for (let r = 0; r < nRings; r++) {
    const ring: Record<string, unknown> = { id: r, acceptors: nodes.map((x) => x.id) };
    if (opts.rotateCoordinators) {
      // f+1 members in order, the last coordinates: ring r -> [node r, node r+1] (mod n, 1-based ids).
      const f = Math.floor((n - 1) / 2);
      ring.ring = Array.from({ length: f + 1 }, (_, k) => nodes[(r + k) % n]!.id);
    }
    if (opts.multicast) ring.multicast = opts.multicast;
    rings.push(ring);
  }
  const raw: Record<string, unknown> = { nodes, rings };
  if (opts.mergeM) raw.mergeM = opts.mergeM;
  if (opts.groups) raw.groups = opts.groups;
  if (opts.settings) raw.settings = opts.settings;
  if (opts.secret) raw.secret = opts.secret;
  if (opts.tickMs) raw.tickMs = opts.tickMs;
  const cluster = parseCluster(raw);
  const dir = mkdtempSync(join(tmpdir(), 'ringcast-'));
  const clusterPath = join(dir, 'cluster.json');
  writeFileSync(clusterPath, JSON.stringify(raw, null, 2));
  const spawned: Spawned[] = [];
  const proxies: Spawned[] = [];
  const all = new Set<Spawned>();
  const stop = async (): Promise<void> => {
    await Promise.all([...all].map((s) => stopProcess(s)));
    rmSync(dir, { recursive: true, force: true });
  };
  const logDir = (id: number): string => join(dir, `node-${id}`);
  const argsOf = (id: number): string[] => {
    const args = ['node', '--cluster', clusterPath, '--id', String(id)];
    if (opts.metrics) args.push('--metrics-port', '0');
    if (opts.faults) args.push('--bind-port', String(bindPorts[id - 1]));
    if (opts.durable && opts.durable !== 'memory') args.push('--durable', opts.durable, '--log-dir', logDir(id));
    if (opts.nodeArgs) args.push(...opts.nodeArgs);
    return args;
  };
  const startNodeProcess = (id: number, extra: string[] = []): Spawned => {
    const s = spawnRingcast([...argsOf(id), ...extra], { prefix: opts.prefix });
    all.add(s);
    spawned[id - 1] = s;
    return s;
  };
  try {
    if (opts.faults) {
      const f = opts.faults;
      for (let i = 0; i < n; i++) {
        const p = spawnRingcast([
          'fault-proxy',
          '--listen',
          `127.0.0.1:${ports[i]}`,
          '--to',
          `127.0.0.1:${bindPorts[i]}`,
          '--drop',
          String(f.drop),
          '--dup',
          String(f.dup),
          '--delay',
          f.delay,
          '--seed',
          String((f.seed ?? 1) + i),
        ]);
        all.add(p);
        proxies.push(p);
      }
      await Promise.all(proxies.map((p) => p.waitFor('ready')));
    }
    for (const node of nodes) startNodeProcess(node.id);
    await Promise.all(spawned.map((s) => s.waitFor('ready')));
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    dir,
    clusterPath,
    cluster,
    nodes: spawned,
    proxies,
    logDir,
    async kill(id) {
      const s = spawned[id - 1]!;
      if (s.child.exitCode === null && s.child.signalCode === null && s.child.pid !== undefined) {
        process.kill(s.child.pid, 'SIGKILL');
        await s.exited;
      }
    },
    async restart(id, extra) {
      const s = startNodeProcess(id, extra);
      await s.waitFor('ready');
      return s;
    },
    stop,
  };
}
