/**
 * A key-value load: closed loop (each client keeps `window` commands in flight) or open loop (a fixed rate),
 * a share of g_all commands (mget/mput of keys in different partitions), bounded in time and count, with
 * latency percentiles and, optionally, the full history for the linearizability checker.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { ERR, Prng, type ClusterConfig } from '@ringcast/ring-paxos';
import type { Registry } from 'prom-client';
import { createKvClient, type HistoryOp, type KvCheckCommand, type KvCheckReply, type KvClient, type KvCommand, type KvReply, type ModeName as Mode } from '@ringcast/psmr-proxy';

export interface KvLoadOptions {
  cluster: ClusterConfig;
  mode: Mode;
  workers: number;
  /** Client proxies (each with its own reply socket and client id). */
  clients?: number;
  /** Closed loop: commands in flight per client. */
  window?: number;
  seconds: number;
  maxCommands?: number;
  /** Issue no new command once this is aborted (the load ends as if `seconds` had passed). */
  signal?: AbortSignal;
  /** Share of commands that go to g_all (0..1). */
  gallShare?: number;
  /** Distinct keys; keys and values are 8 bytes. */
  keys?: number;
  /** First letter of every key (default 'k'): loads with different ones touch different keys. */
  keyPrefix?: string;
  /** Open loop: commands per second over all clients (absent: closed loop). */
  rate?: number;
  /** Record every command for the linearizability checker (at most maxHistory). */
  history?: boolean;
  /** Who answers (the client proxy's replyFrom): all replicas (default) or one. */
  replyFrom?: 'one' | 'all';
  maxHistory?: number;
  /** Operations in the mix: 'simple' (get/put, mget/mput) or 'all' (adds delete, cas, scan, size). */
  ops?: 'simple' | 'all';
  seed?: number;
  /** Seconds at the start whose latencies and count are left out of the result (JIT, first contacts). */
  warmupSeconds?: number;
  retryMs?: number;
  deadlineMs?: number;
  registry?: Registry;
  onTick?: (done: number, elapsedMs: number) => void;
  /** Every answered command (an error reply too) as its answer arrives. */
  onReply?: (command: KvCommand, err: Error | null) => void;
}

export interface KvLoadResult {
  commands: number;
  errors: number;
  noReply: number;
  seconds: number;
  perSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  gallCommands: number;
  gallShare: number;
  retries: number;
  duplicateReplies: number;
  /** Proposals the clients sent (commands per proposal = commands / batches). */
  batches: number;
  /**
   * How late this process's own event loop ran (after the warm-up): replies wait in the socket while it is
   * held up, so a high p99 here means the load generator itself added to the latencies it measured.
   */
  eventLoopDelayMs: { p50: number; p99: number; max: number };
  history?: Array<HistoryOp<KvCheckCommand, KvCheckReply>>;
}

const pad = (n: number): string => String(n).padStart(7, '0');

/** The command mix draws from the project's seeded generator. */
function mixFrom(seed: number): { next(): number; int(n: number): number } {
  const g = new Prng(seed);
  return { next: () => g.float(), int: (n) => g.int(0, n) };
}

function toCheck(c: KvCommand): KvCheckCommand {
  const s = (b: unknown): string => (typeof b === 'string' ? b : Buffer.from(b as Uint8Array).toString('latin1'));
  switch (c.op) {
    case 'get':
    case 'delete':
      return { op: c.op, key: s(c.key) };
    case 'put':
      return { op: 'put', key: s(c.key), value: s(c.value) };
    case 'cas':
      return { op: 'cas', key: s(c.key), expected: c.expected === null ? null : s(c.expected), value: s(c.value) };
    case 'mget':
      return { op: 'mget', keys: c.keys.map(s) };
    case 'mput':
      return { op: 'mput', entries: c.entries.map(([k, v]) => [s(k), s(v)]) };
    case 'scan':
      return { op: 'scan', prefix: s(c.prefix), limit: c.limit };
    case 'size':
      return { op: 'size' };
  }
}

function replyToCheck(r: KvReply): KvCheckReply {
  const s = (b: unknown): string | null => (b === null ? null : typeof b === 'string' ? b : Buffer.from(b as Uint8Array).toString('latin1'));
  const x = r as Record<string, unknown>;
  if ('value' in x) return { value: s(x.value) };
  if ('values' in x) return { values: (x.values as unknown[]).map(s) };
  if ('entries' in x) return { entries: (x.entries as Array<[unknown, unknown]>).map(([k, v]) => [s(k)!, s(v)!]) };
  return r as KvCheckReply;
}

export async function runKvLoad(o: KvLoadOptions): Promise<KvLoadResult> {
  const nClients = o.clients ?? 1;
  const window = o.window ?? 512;
  const keys = o.keys ?? 100_000;
  const share = o.gallShare ?? 0;
  const maxCommands = o.maxCommands ?? Number.MAX_SAFE_INTEGER;
  const maxHistory = o.maxHistory ?? 200_000;
  const mix = mixFrom(o.seed ?? 1);
  const clients: KvClient[] = [];
  for (let i = 0; i < nClients; i++) {
    clients.push(
      await createKvClient(o.cluster, {
        mode: o.mode,
        workers: o.workers,
        maxOutstanding: Math.min(16384, Math.max(window, 1) * 2),
        retryMs: o.retryMs,
        deadlineMs: o.deadlineMs,
        registry: i === 0 ? o.registry : undefined,
        replyFrom: o.replyFrom,
      }),
    );
  }
  let valueN = 0;
  // Keys and values made once: the load should cost as little per command as the clients allow.
  const kp = o.keyPrefix ?? 'k';
  const keyTable = Array.from({ length: keys }, (_, i) => `${kp}${pad(i)}`);
  const valueTable = Array.from({ length: 4096 }, (_, i) => `v${pad(i)}`);
  const key = (): string => keyTable[mix.int(keys)]!;
  const value = (): string => (o.history ? `v${pad(valueN++ % 10_000_000)}` : valueTable[valueN++ & 4095]!);
  const make = (): KvCommand => {
    const all = share > 0 && mix.next() < share;
    const r = mix.next();
    if (all) {
      if (o.ops === 'all' && r < 0.1) return { op: 'size' };
      if (o.ops === 'all' && r < 0.2) return { op: 'scan', prefix: `${kp}${pad(mix.int(keys)).slice(0, 5)}`, limit: 8 };
      return r < 0.6 ? { op: 'mget', keys: [key(), key()] } : { op: 'mput', entries: [[key(), value()], [key(), value()]] };
    }
    if (o.ops === 'all' && r < 0.15) return { op: 'delete', key: key() };
    if (o.ops === 'all' && r < 0.35) {
      const k = key();
      return { op: 'cas', key: k, expected: mix.next() < 0.3 ? null : `v${pad(mix.int(Math.max(1, valueN)))}`, value: value() };
    }
    return r < 0.5 ? { op: 'get', key: key() } : { op: 'put', key: key(), value: value() };
  };

  const cap = 1 << 20;
  const lat = new Float64Array(cap);
  let latN = 0;
  let seen = 0;
  const sample = (ms: number): void => {
    if (warm) return;
    seen++;
    if (latN < cap) lat[latN++] = ms;
    else {
      const j = mix.int(seen);
      if (j < cap) lat[j] = ms;
    }
  };
  const history: Array<HistoryOp<KvCheckCommand, KvCheckReply>> | undefined = o.history ? [] : undefined;
  let issued = 0;
  let done = 0;
  let errors = 0;
  let gall = 0;
  const start = performance.now();
  const warmupMs = (o.warmupSeconds ?? 0) * 1000;
  let warm = warmupMs > 0;
  let t0 = start;
  let doneAtWarmup = 0;
  let errorsAtWarmup = 0;
  const loopDelay = monitorEventLoopDelay({ resolution: 1 });
  loopDelay.enable();
  const warmTimer = warm
    ? setTimeout(() => {
        warm = false;
        t0 = performance.now();
        doneAtWarmup = done;
        errorsAtWarmup = errors;
        loopDelay.reset();
      }, warmupMs)
    : undefined;
  const deadline = start + warmupMs + o.seconds * 1000;
  const more = (): boolean => issued < maxCommands && performance.now() < deadline && !o.signal?.aborted;

  /** Send one command; `next` runs once it is answered (never synchronously). */
  const issue = (client: KvClient, lane: number, next: () => void): void => {
    const c = make();
    issued++;
    if (c.op === 'mget' || c.op === 'mput' || c.op === 'scan' || c.op === 'size') gall++;
    const t = history ? performance.now() : 0;
    let sync = true;
    client.proxy.send(c, (err, r, ms) => {
      done++;
      o.onReply?.(c, err);
      if (err) {
        errors++;
        if (history && history.length < maxHistory) {
          // A typed error reply changed nothing; a missing reply may or may not have taken effect.
          const e = err as Error & { code?: string };
          const noReply = e.code === ERR.NO_REPLY || e.code === ERR.STOPPED;
          history.push({ client: lane, call: t, ret: noReply ? Infinity : performance.now(), command: toCheck(c), reply: noReply ? undefined : { error: e.code ?? 'error' } });
        }
      } else {
        sample(ms!);
        if (history && history.length < maxHistory) history.push({ client: lane, call: t, ret: performance.now(), command: toCheck(c), reply: replyToCheck(r!) });
      }
      if (sync) setImmediate(next);
      else next();
    });
    sync = false;
  };

  const tick = o.onTick ? setInterval(() => o.onTick!(done, performance.now() - t0), 500) : undefined;
  try {
    if (o.rate === undefined) {
      // Closed loop: each lane sends its next command when the previous one is answered.
      let running = 0;
      await new Promise<void>((resolve) => {
        clients.forEach((c, ci) => {
          for (let l = 0; l < window; l++) {
            const lane = ci * window + l;
            running++;
            const step = (): void => {
              if (more()) issue(c, lane, step);
              else if (--running === 0) resolve();
            };
            step();
          }
        });
      });
    } else {
      // Open loop: every millisecond, issue what the rate says is due (bounded by the clients' windows).
      const rate = o.rate;
      let inflight = 0;
      let drained: (() => void) | undefined;
      let lane = 0;
      let late = 0;
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          if (!more()) {
            clearInterval(timer);
            resolve();
            return;
          }
          const due = Math.floor(((performance.now() - start) * rate) / 1000) - issued - late;
          for (let k = 0; k < due && issued < maxCommands; k++) {
            const c = clients[lane % clients.length]!;
            // The clients are full: this command is skipped (the rate was more than the system takes).
            if (c.proxy.outstanding() >= Math.min(16384, window * 2)) {
              late += due - k;
              break;
            }
            inflight++;
            issue(c, lane++ % 1_000_000, () => {
              if (--inflight === 0) drained?.();
            });
          }
        }, 1);
      });
      if (inflight > 0) await new Promise<void>((r) => (drained = r));
    }
  } finally {
    if (tick) clearInterval(tick);
    if (warmTimer) clearTimeout(warmTimer);
  }
  const seconds = (performance.now() - t0) / 1000;
  loopDelay.disable();
  const ms = (ns: number): number => (loopDelay.count === 0 ? 0 : Number((ns / 1e6).toFixed(3)));
  const eventLoopDelayMs = { p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) };
  done -= doneAtWarmup;
  errors -= errorsAtWarmup;
  const stats = clients.map((c) => c.proxy.stats);
  await Promise.all(clients.map((c) => c.stop()));
  const sorted = lat.subarray(0, latN).sort();
  const q = (p: number): number => (latN === 0 ? 0 : Number(sorted[Math.min(latN - 1, Math.max(0, Math.ceil(p * latN) - 1))]!.toFixed(3)));
  return {
    commands: done - errors,
    errors,
    noReply: stats.reduce((a, s) => a + s.noReply, 0),
    seconds: Number(seconds.toFixed(3)),
    perSecond: Math.round((done - errors) / seconds),
    latencyMs: { p50: q(0.5), p99: q(0.99), max: latN === 0 ? 0 : Number(sorted[latN - 1]!.toFixed(3)) },
    gallCommands: gall,
    gallShare: issued === 0 ? 0 : Number((gall / issued).toFixed(4)),
    retries: stats.reduce((a, s) => a + s.retries, 0),
    duplicateReplies: stats.reduce((a, s) => a + s.duplicateReplies, 0),
    batches: stats.reduce((a, s) => a + s.batches, 0),
    eventLoopDelayMs,
    history,
  };
}
