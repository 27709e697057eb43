import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pack } from 'msgpackr';
import { CheckpointDamagedError, CheckpointStore, clusterFingerprint, frameCheckpoint, startReplica, unframeCheckpoint, type ReplicaCheckpoint } from '@ringcast/psmr-proxy';
import { checkpointEveryFlag } from '../../cli/src/replica.js';
import { localCluster, type ClusterConfig, type RingcastError } from '@ringcast/ring-paxos';

const dirs: string[] = [];
const scratch = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'ringcast-ckpt-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const payload = (n: number): Uint8Array => new Uint8Array(Buffer.from(`checkpoint ${n} ${'x'.repeat(1000)}`));
const text = (u: Uint8Array): string => Buffer.from(u).toString().split(' ').slice(0, 2).join(' ');

describe('durable checkpoint files', () => {
  it('keeps the newest two and reads the newest back', async () => {
    const dir = scratch();
    writeFileSync(join(dir, 'checkpoint-000000000009.rckp.tmp'), 'left by a crash');
    const store = new CheckpointStore(dir);
    expect(readdirSync(dir)).toEqual([]);
    for (let n = 1; n <= 3; n++) await store.write(payload(n));
    expect(readdirSync(dir).sort()).toEqual(['checkpoint-000000000002.rckp', 'checkpoint-000000000003.rckp']);
    const got = new CheckpointStore(dir).readNewest(() => expect.fail('nothing is damaged'));
    expect(text(got!.payload)).toBe('checkpoint 3');
    expect(got!.seq).toBe(3);
    // A file of the directory is the /checkpoint bytes plus the trailer.
    expect(Buffer.from(unframeCheckpoint(frameCheckpoint(payload(7)), 'x')).equals(payload(7))).toBe(true);
  });

  it('refuses a damaged file with a typed error and uses the one before it', async () => {
    const dir = scratch();
    const store = new CheckpointStore(dir);
    await store.write(payload(1));
    const { file } = await store.write(payload(2));
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x10; // one bit flipped in the middle
    writeFileSync(file, bytes);
    const refused: CheckpointDamagedError[] = [];
    const got = new CheckpointStore(dir).readNewest((e) => refused.push(e));
    expect(text(got!.payload)).toBe('checkpoint 1');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toBeInstanceOf(CheckpointDamagedError);
    expect(refused[0]!.code).toBe('ERR_PSMR_CHECKPOINT_DAMAGED');
    expect(refused[0]!.message).toContain(file);
    expect(refused[0]!.message).toMatch(/crc32/);
    // The damaged file leaves the rotation (kept for the operator), so the next writes keep good ones.
    expect(readdirSync(dir).sort()).toEqual(['checkpoint-000000000001.rckp', 'checkpoint-000000000002.rckp.damaged']);
    // Cut short (a file that lost its end): refused too; with nothing left, the start is refused.
    truncateSync(got!.file, 100);
    const again: CheckpointDamagedError[] = [];
    expect(() => new CheckpointStore(dir).readNewest((e) => again.push(e))).toThrow(/every checkpoint file is damaged \(1,/);
    expect(again.map((e) => e.code)).toEqual(['ERR_PSMR_CHECKPOINT_DAMAGED']);
    expect(again[0]!.message).toMatch(/trailer/);
  });

  it('removes only its own stale temp files; an I/O error is no damage; every file damaged refuses to start', async () => {
    const dir = scratch();
    writeFileSync(join(dir, 'notes.tmp'), 'not ours');
    writeFileSync(join(dir, 'checkpoint-000000000001.rckp.tmp'), 'left by a crash');
    const store = new CheckpointStore(dir);
    expect(readdirSync(dir)).toEqual(['notes.tmp']);
    await store.write(payload(1));
    // A name the store reads that is a directory (EISDIR, as EACCES or EIO would be): an error naming the
    // file and the flag, and nothing renamed or counted as damaged.
    mkdirSync(join(dir, 'checkpoint-000000000005.rckp'));
    const none: CheckpointDamagedError[] = [];
    expect(() => new CheckpointStore(dir).readNewest((e) => none.push(e))).toThrow(/--checkpoint-dir: cannot read .*checkpoint-000000000005\.rckp/);
    expect(none).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual(['checkpoint-000000000001.rckp', 'checkpoint-000000000005.rckp', 'notes.tmp']);
    rmSync(join(dir, 'checkpoint-000000000005.rckp'), { recursive: true });
    // Both kept files damaged: no silent fresh start (a new id, an orphaned hold), a typed error saying so.
    await store.write(payload(2));
    for (const f of ['checkpoint-000000000001.rckp', 'checkpoint-000000000002.rckp']) truncateSync(join(dir, f), 50);
    let err: unknown;
    try {
      new CheckpointStore(dir).readNewest(() => {});
    } catch (e) {
      err = e;
    }
    expect((err as RingcastError).code).toBe('ERR_PSMR_CHECKPOINT_DAMAGED');
    expect((err as RingcastError).message).toBe(`--checkpoint-dir ${dir}: every checkpoint file is damaged (2, renamed *.damaged); not starting fresh, which would orphan this replica's retention holds: restore it from a live peer with --from-replica URL`);
  });

  it('moves the files of a previous life aside (a start from another replica\'s checkpoint)', async () => {
    const dir = scratch();
    const store = new CheckpointStore(dir);
    await store.write(payload(1));
    await store.write(payload(2));
    const moved = new CheckpointStore(dir).moveAside();
    expect(moved).toHaveLength(2);
    expect(readdirSync(dir).filter((f) => /\.rckp$/.test(f))).toEqual([]);
    expect(new CheckpointStore(dir).readNewest(() => expect.fail('nothing is damaged'))).toBeUndefined();
    const again = new CheckpointStore(dir);
    await again.write(payload(3));
    expect(text(again.readNewest(() => {})!.payload)).toBe('checkpoint 3');
  });

  it('--checkpoint-every takes seconds with an s or a count of commands, and names itself otherwise', () => {
    expect(checkpointEveryFlag('30s')).toEqual({ seconds: 30 });
    expect(checkpointEveryFlag('0.5s')).toEqual({ seconds: 0.5 });
    expect(checkpointEveryFlag('100000')).toEqual({ commands: 100000 });
    expect(checkpointEveryFlag(undefined)).toBeUndefined();
    for (const bad of ['0s', '-1', '30m', 'x', '', '1.5', true]) {
      expect(() => checkpointEveryFlag(bad)).toThrow(/--checkpoint-every: must be seconds with an 's'/);
    }
  });
});

describe('a replica resuming from its checkpoint directory', () => {
  const base = (cluster: ClusterConfig, over: Partial<ReplicaCheckpoint>): ReplicaCheckpoint => ({
    format: 'ringcast-psmr-checkpoint',
    version: 1,
    replica: 'replica-1',
    service: 'kv',
    mode: 'smr',
    workers: 1,
    mergeM: cluster.mergeM,
    maxClients: 65536,
    maxReplies: 16384,
    round: 5,
    parts: [{ worker: 0 } as ReplicaCheckpoint['parts'][number]],
    cluster: clusterFingerprint(cluster),
    ...over,
  });
  const startFrom = async (cluster: ClusterConfig, c: ReplicaCheckpoint): Promise<{ err: unknown; file: string }> => {
    const dir = scratch();
    const { file } = await new CheckpointStore(dir).write(pack(c));
    const r = await startReplica(cluster, { mode: 'smr', checkpointDir: dir, metricsPort: undefined }).catch((e: unknown) => e);
    if (r && typeof (r as { stop?: unknown }).stop === 'function') {
      await (r as { stop(): Promise<void> }).stop();
      return { err: undefined, file };
    }
    return { err: r, file };
  };

  it('refuses a checkpoint of another cluster, and names the file and --checkpoint-dir in every refusal', async () => {
    const a = localCluster({ basePort: 47100, rings: 1 });
    const b = localCluster({ basePort: 47100, acceptors: 5, rings: 1 });
    expect(clusterFingerprint(a)).not.toBe(clusterFingerprint(b));
    const other = await startFrom(b, base(a, {}));
    expect((other.err as RingcastError | undefined)?.message).toBe(
      `--checkpoint-dir: ${other.file}: the checkpoint was taken against another cluster (rings, acceptors and groups fingerprint ${clusterFingerprint(a)}; this cluster's is ${clusterFingerprint(b)}): start this replica with an empty --checkpoint-dir, or from a live peer with --from-replica URL`,
    );
    const mode = await startFrom(a, base(a, { mode: 'psmr', workers: 2 }));
    expect((mode.err as RingcastError | undefined)?.message).toBe(`--checkpoint-dir: ${mode.file}: the checkpoint is of a psmr replica with 2 worker(s); this one is smr with 1`);
  });
});
