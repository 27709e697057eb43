/**
 * A deterministic simulation of P-SMR replicas (no sockets, no threads): rings are generated as positioned
 * instance streams (batches of key-value commands, skips, retried duplicates); each replica's workers merge
 * the rings their mode subscribes them to (g_i and g_all) with the real Merger and run what it delivers
 * through the same `WorkerCore` and psmr scheduler a replica worker runs, meeting at an in-memory barrier
 * with the same interface as the SharedArrayBuffer one, under a seeded random schedule.
 *
 * Checks: every reply equals the reply of a sequential execution of the whole merged order (classic SMR);
 * every worker of a replica takes part in the same g_all rounds; the replicas end in the same state, and
 * the union of the partitions equals the sequential state.
 */
import { Merger } from '@ringcast/multicast';
import { Prng } from '@ringcast/ring-paxos';
import { WorkerCore, type BarrierPort, type BrokenWorkerLoop, type Delivery } from './core/worker-core.js';
import { modeNamed } from './modes/index.js';
import { CommandBatchWriter, ReplyBatchReader } from './protocol/wire.js';
import { ALL_GROUP, groupName } from './service.js';
import { kvService, type KvCommand, type KvReply, type KvState } from './services/kv.js';

export interface PsmrSimOptions {
  seed: number;
  /** Logical time steps (each ring may decide one instance per step). */
  steps?: number;
  replicas?: number;
  /** 'none' lets workers pass g_all commands without waiting (a broken replica, to test the checkers). */
  barrier?: 'memory' | 'none';
  /** A broken worker loop in every worker-core (to test the checkers). */
  loop?: BrokenWorkerLoop;
}

export interface PsmrSimResult {
  seed: number;
  ok: boolean;
  failures: string[];
  workers: number;
  commands: number;
  gallRounds: number;
}

interface Inst {
  pos: number;
  items: Uint8Array[];
}

/** A barrier for workers that share one thread (the simulation). */
class MemoryBarrier {
  private arrived = 0;
  private waiters: Array<() => void> = [];
  private readonly slots: Uint8Array[] = [];
  constructor(private readonly n: number) {}
  port(w: number, broken = false): BarrierPort {
    return {
      arrive: () => {
        if (broken) return;
        this.arrived++;
        if (this.arrived === this.n) {
          this.arrived = 0;
          const ws = this.waiters;
          this.waiters = [];
          for (const r of ws) r();
          return;
        }
        return new Promise<void>((r) => this.waiters.push(r));
      },
      writeSlot: (d) => void (this.slots[w] = Uint8Array.from(d)),
      readSlot: (x) => this.slots[x]!,
    };
  }
}

/** Turns of the event loop with every unfinished worker waiting at the barrier before the run counts as stuck. */
const STUCK_TURNS = 100;

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function collect(into: Map<string, string>, failures: string[], who: string): (h: string, p: number, d: Uint8Array) => void {
  return (_h, _p, d) => {
    const rd = new ReplyBatchReader(Buffer.from(d));
    while (rd.next()) {
      const k = `${rd.clientId}:${rd.seq}`;
      const v = `${rd.status}:${hex(rd.r.buf.subarray(rd.start, rd.end))}`;
      const prev = into.get(k);
      if (prev !== undefined && prev !== v && failures.length < 20) failures.push(`${who}: two different replies to ${k}`);
      into.set(k, v);
    }
  };
}

export async function runPsmrSimulation(o: PsmrSimOptions): Promise<PsmrSimResult> {
  try {
    return await simulate(o);
  } catch (e) {
    return { seed: o.seed, ok: false, failures: [`crashed: ${(e as Error).stack ?? String(e)}`], workers: -1, commands: 0, gallRounds: 0 };
  }
}

async function simulate(o: PsmrSimOptions): Promise<PsmrSimResult> {
  const prng = new Prng(o.seed);
  const rnd = { next: (): number => prng.float(), int: (k: number): number => prng.int(0, k) };
  const n = 1 + rnd.int(3);
  const steps = o.steps ?? 300;
  const all = n;
  const failures: string[] = [];
  const keyOf = (part: number): string => {
    for (;;) {
      const k = `k${rnd.int(60)}`;
      if (n === 1 || kvService.group({ op: 'get', key: k }, n) === part) return k;
    }
  };
  // Generate the rings' decided instances with positions (a step is one position).
  const rings: Inst[][] = Array.from({ length: n + 1 }, () => []);
  const seqs = [0, 0, 0, 0];
  const sentBefore: Array<Array<{ client: number; seq: number; c: KvCommand }>> = Array.from({ length: n + 1 }, () => []);
  let commands = 0;
  for (let t = 1; t <= steps; t++) {
    for (let r = 0; r <= n; r++) {
      const x = rnd.next();
      if (x < 0.45) continue;
      if (x < 0.6) {
        rings[r]!.push({ pos: t, items: [] }); // a skip
        continue;
      }
      // One instance may carry the batches of several clients (the coordinator batches proposals).
      const items: Uint8Array[] = [];
      for (let b = 1 + rnd.int(r === all ? 3 : 2); b > 0; b--) {
        const client = 1 + rnd.int(3);
        const w = new CommandBatchWriter();
        w.begin({ clientId: client, replyHost: '127.0.0.1', replyPort: 1, floor: 0 });
        const k = 1 + rnd.int(4);
        for (let i = 0; i < k; i++) {
          const prev = sentBefore[r]!.filter((s) => s.client === client);
          let e: { client: number; seq: number; c: KvCommand };
          if (prev.length > 0 && rnd.next() < 0.1) e = prev[rnd.int(prev.length)]!; // a retry: same id, same group
          else {
            const c: KvCommand =
              r === all && n > 1
                ? [
                    (): KvCommand => ({ op: 'mget', keys: [keyOf(rnd.int(n)), keyOf(rnd.int(n))] }),
                    (): KvCommand => ({ op: 'mput', entries: [[keyOf(rnd.int(n)), `m${t}`], [keyOf(rnd.int(n)), `m${t}.${i}`]] }),
                    (): KvCommand => ({ op: 'scan', prefix: `k${rnd.int(6)}`, limit: 1 + rnd.int(5) }),
                    (): KvCommand => ({ op: 'size' }),
                  ][rnd.int(4)]!()
                : [
                    (): KvCommand => ({ op: 'get', key: keyOf(r === all ? 0 : r) }),
                    (): KvCommand => ({ op: 'put', key: keyOf(r === all ? 0 : r), value: `v${t}.${i}` }),
                    (): KvCommand => ({ op: 'delete', key: keyOf(r === all ? 0 : r) }),
                    (): KvCommand => ({ op: 'cas', key: keyOf(r === all ? 0 : r), expected: rnd.next() < 0.5 ? null : `v${t - 1}.0`, value: `c${t}` }),
                  ][rnd.int(4)]!();
            e = { client, seq: ++seqs[client]!, c };
            sentBefore[r]!.push(e);
            commands++;
          }
          w.beginCommand(e.seq);
          kvService.writeCommand(w.w, e.c);
          w.endCommand();
        }
        items.push(w.finish());
      }
      rings[r]!.push({ pos: t, items });
    }
  }
  // Reference: the whole merged order, executed sequentially.
  const ringIds = rings.map((_, i) => i);
  const ref = new Merger<Uint8Array>({ rings: ringIds, m: 1, startRound: 0, maxBuffered: 1 << 20 });
  for (const r of ringIds) for (const inst of rings[r]!) ref.push(r, inst);
  for (const r of ringIds) ref.push(r, { pos: steps + 1, items: [] });
  const refReplies = new Map<string, string>();
  const refState = kvService.createPartition(0, 1);
  const reference = modeNamed('smr').scheduler<KvCommand, KvReply, KvState>({ service: kvService, worker: 0, workers: 1, state: refState, send: collect(refReplies, failures, 'reference') });
  for (const m of ref.take()) void reference.deliver(groupName(0), [m.item]);

  // The simulated cluster: ring i carries g_i, ring n carries g_all.
  const psmr = modeNamed('psmr');
  const ringOf = new Map<string, number>([...ringIds.slice(0, n).map((i): [string, number] => [groupName(i), i]), [ALL_GROUP, all]]);
  const groupOf = new Map([...ringOf].map(([g, r]) => [r, g]));
  let gallRounds = -1;
  const digests: string[] = [];
  for (let rep = 0; rep < (o.replicas ?? 2); rep++) {
    const replies = new Map<string, string>();
    const barrier = new MemoryBarrier(n);
    const states = Array.from({ length: n }, (_, w) => kvService.createPartition(w, n));
    // The round size must be the same on every worker of a replica (it cuts g_all batches into rounds).
    const roundSize = 1 + rnd.int(4);
    const workers = Array.from({ length: n }, (_, w) => {
      const subscribed = psmr.workerGroups(w).map((g) => ringOf.get(g)!);
      const sched = psmr.scheduler<KvCommand, KvReply, KvState>({
        service: kvService,
        worker: w,
        workers: n,
        state: states[w]!,
        barrier: n > 1 ? barrier.port(w, o.barrier === 'none') : undefined,
        send: collect(replies, failures, `replica ${rep} worker ${w}`),
        roundSize,
      });
      const ready: Delivery[] = [];
      return {
        sched,
        core: new WorkerCore({ scheduler: sched, groupOf: (r) => groupOf.get(r)!, mergeM: 1, checkpointReady: () => {}, broken: o.loop }),
        subscribed,
        streams: subscribed.map((r) => rings[r]!),
        merger: new Merger<Uint8Array>({ rings: subscribed, m: 1, startRound: 0, maxBuffered: 1 << 20 }),
        fed: subscribed.map(() => 0),
        ready,
        source: { peek: () => ready[0], poll: () => ready.shift() },
        blocked: false,
      };
    });
    const done = (x: (typeof workers)[number]): boolean => !x.blocked && x.ready.length === 0 && x.streams.every((st, k) => x.fed[k] === st.length);
    let stuck = 0;
    for (let guard = 0; guard < 1_000_000; guard++) {
      const live = workers.filter((x) => !done(x));
      if (live.length === 0) break;
      const runnable = live.filter((x) => !x.blocked);
      stuck = runnable.length > 0 ? 0 : stuck + 1;
      if (stuck > STUCK_TURNS) {
        failures.push(`replica ${rep}: workers ${live.map((x) => workers.indexOf(x)).join(', ')} wait at the barrier forever`);
        break;
      }
      if (runnable.length === 0 || rnd.next() < 0.05) {
        await new Promise((r) => setImmediate(r));
        continue;
      }
      const x = runnable[rnd.int(runnable.length)]!;
      const canFeed = x.streams.map((_, k) => k).filter((k) => x.fed[k]! < x.streams[k]!.length);
      if (x.ready.length > 0 && (canFeed.length === 0 || rnd.next() < 0.5)) {
        // The worker-core takes the rest of the instance from what the merge released (all of it, together).
        const p = x.core.run(x.ready.shift()!, x.source);
        if (p) {
          x.blocked = true;
          void p.then(() => (x.blocked = false));
        }
        continue;
      }
      if (canFeed.length === 0) continue;
      const k = canFeed[rnd.int(canFeed.length)]!;
      const inst = x.streams[k]![x.fed[k]!++]!;
      x.merger.push(x.subscribed[k]!, inst);
      if (x.fed[k] === x.streams[k]!.length) x.merger.push(x.subscribed[k]!, { pos: steps + 1, items: [] });
      for (const m of x.merger.take()) x.ready.push({ ring: m.ring, pos: m.pos, data: m.item });
    }
    for (const [k, v] of refReplies) {
      const got = replies.get(k);
      if (got !== v && failures.length < 20) failures.push(`replica ${rep}: command ${k} replied ${got ?? 'nothing'}, sequential SMR replied ${v}`);
    }
    if (replies.size !== refReplies.size && failures.length < 20) failures.push(`replica ${rep}: ${replies.size} commands answered, sequential SMR answered ${refReplies.size}`);
    const rounds = workers.map((x) => x.sched.stats.barrierRounds);
    if (new Set(rounds).size !== 1) failures.push(`replica ${rep}: workers took part in different numbers of g_all rounds: ${rounds.join(', ')}`);
    gallRounds = rounds[0]!;
    const union = new Map<string, string>();
    for (const s of states) for (const [k, v] of s.map) union.set(k, v);
    const same = union.size === refState.map.size && [...refState.map].every(([k, v]) => union.get(k) === v);
    if (!same) failures.push(`replica ${rep}: the union of the partitions differs from the sequential state`);
    digests.push(states.map((s) => kvService.digest(s)).join('|'));
  }
  if (new Set(digests).size > 1) failures.push(`replicas ended in different states: ${digests.join(' vs ')}`);
  return { seed: o.seed, ok: failures.length === 0, failures, workers: n, commands, gallRounds };
}
