/**
 * The Service API application developers implement. A service is a deterministic state machine: its
 * commands, its replies, the C-G function that sends each command to one partition's group g_i or to g_all,
 * and how its state is held. The same service runs in `smr` mode (one worker, one group) and in `psmr` mode
 * (n workers, groups g0..g{n-1} plus gall), so the two are compared like with like.
 */
import { RingcastError } from '@ringcast/ring-paxos';
import type { ByteReader, ByteWriter } from './protocol/bytes.js';

/** C-G's answer: a partition index in [0, partitions) or 'all' (may conflict across partitions). */
export type GroupChoice = number | 'all';

/**
 * A command was refused by the service (too large, malformed, not allowed). At the client the `submit`
 * promise rejects with it; at a replica it becomes an error reply and the command changes nothing.
 */
export class ServiceError extends RingcastError {
  constructor(code: string, message: string) {
    super(code, message);
    this.name = 'ServiceError';
  }
}

export interface Service<C, R, S, P = unknown> {
  /** Name shown in metrics and /state. */
  readonly name: string;
  /**
   * How state is held.
   * - 'partitioned': each worker owns one partition (plain JS objects, created by `createPartition`). A g_all
   *   command runs `executePart` on every partition between the barrier's two awaits; worker 0 then
   *   `combine`s the parts and replies.
   * - 'shared': the state lives in the SharedArrayBuffer given to `createPartition`; at the barrier worker 0
   *   runs `execute` while the others wait.
   */
  readonly state: 'partitioned' | 'shared';
  /**
   * 'partitioned' services: the most bytes one command's part can take once encoded (msgpack). A replica
   * sizes its g_all rounds from it: round = slot bytes / maxPartBytes commands (default 64 KiB).
   */
  readonly maxPartBytes?: number;
  /** Bytes of shared memory a 'shared' service needs (ignored for 'partitioned'). */
  readonly sharedBytes?: number;
  /** 'shared' services: lay out the initial state, once, on the replica's main thread before any worker starts. */
  initShared?(shared: SharedArrayBuffer): void;
  /** C-G: the partition a command can only conflict inside, or 'all'. `partitions` is 1 in smr mode. */
  group(command: C, partitions: number): GroupChoice;
  /**
   * opt-PSMR (optional, with `check`): where a command goes optimistically. A command `group` sends to
   * g_all may go to one partition here (the B+-tree: an insert or delete to its key's range); the worker
   * that delivers it runs `check` first. Absent: opt-PSMR routes as `group` does.
   */
  optimisticGroup?(command: C, partitions: number): GroupChoice;
  /**
   * opt-PSMR's safety check, run by worker `worker` of `workers` on a command `optimisticGroup` sent to its
   * partition, before anything runs: true when executing it at once, while the other workers run their
   * own partitions' commands, touches only state no other worker reads or writes (it then writes only
   * that); false when it must run at a barrier of all workers instead (the command changed nothing; the
   * client resubmits it to g_all). Reads only replicated state, so every replica decides alike at the same
   * point of the stream. Must not throw.
   */
  check?(state: S, command: C, worker: number, workers: number): boolean;
  /**
   * Service parameters (optional): the service configured with `params`, the cluster file's
   * `services.<name>` object (the same on every replica); throws a ConfigError naming the bad field.
   * Without `configure` a service takes no parameters.
   */
  configure?(params: unknown): Service<C, R, S, P>;
  /** A short label for metrics (for example the operation name). */
  kind(command: C): string;
  /** Encode a command at the client; throw ServiceError for a command the service refuses. */
  writeCommand(w: ByteWriter, command: C): void;
  /** Decode a command at a replica from r.pos to r.end; throw ServiceError (or WireError) when malformed. */
  readCommand(r: ByteReader): C;
  writeReply(w: ByteWriter, reply: R, command: C): void;
  /** Decode a reply at the client; `command` is the command it answers. */
  readReply(r: ByteReader, command: C): R;
  /**
   * Create the state of worker `index` of `partitions`. For 'shared', a view over `shared` (its own memory,
   * separate from the barrier's): it must not reset what initShared laid out or other workers wrote.
   */
  createPartition(index: number, partitions: number, shared?: SharedArrayBuffer): S;
  /**
   * Run a command on this worker's state: a single-partition command; any command when the state is one
   * partition (smr, or psmr with one worker: g_all commands included); any command of a 'shared' service.
   */
  execute(state: S, command: C): R;
  /** 'partitioned' services: the part of a g_all command that touches this partition. Must not throw. */
  executePart?(state: S, command: C): P;
  /** 'partitioned' services: the reply of a g_all command from the parts of every partition, in order. */
  combine?(command: C, parts: P[]): R;
  /** A digest of this worker's state, equal on every replica that executed the same commands. */
  digest(state: S): string;
  /**
   * Checkpoints (optional; a replica can start from another's checkpoint only when both are given): this
   * worker's state as bytes, and the state of worker `index` of `partitions` rebuilt from them. Restoring
   * what `snapshot` returned must give a state with the same digest that behaves the same.
   */
  snapshot?(state: S): Uint8Array;
  restore?(bytes: Uint8Array, index: number, partitions: number): S;
  /**
   * 'shared' services with checkpoints: lay out the state from `snapshot`'s bytes in `shared` instead of
   * `initShared` (main thread, before any worker starts; workers then `createPartition` over it). For a
   * 'shared' service `snapshot` of any worker's state is the whole shared state: take it at a barrier of
   * all workers, once. Throws ServiceError (ERR_PSMR_BAD_SNAPSHOT) for bytes it cannot use.
   */
  restoreShared?(shared: SharedArrayBuffer, bytes: Uint8Array): void;
}

/** The group name of partition `i`, and of g_all. */
export const groupName = (i: number): string => `g${i}`;
export const ALL_GROUP = 'gall';
