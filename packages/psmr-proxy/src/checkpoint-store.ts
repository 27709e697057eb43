/**
 * Durable checkpoint files of one replica (--checkpoint-dir). Each file is a checkpoint exactly as
 * `GET /checkpoint` gives it, followed by an 8-byte trailer: the bytes 'RCK1' and a crc32 (big-endian) over
 * everything before it. A file is written to a temporary name, fsynced, renamed into place, and the
 * directory fsynced, so a crash leaves either the old set of files or the new one; the newest `keep` are
 * kept. A file whose trailer or crc does not match is refused with a CheckpointDamagedError, and the
 * reader falls back to the next older file.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ERR, ConfigError, crc32, RingcastError } from '@ringcast/ring-paxos';

const TRAILER = Buffer.from('RCK1');
const TRAILER_BYTES = 8;
const NAME = /^checkpoint-(\d{12})\.rckp$/;
/** A temporary file this store writes (and removes when a crash left it): no other file of the directory. */
const TMP_NAME = /^checkpoint-\d{12}\.rckp\.tmp$/;

/** A checkpoint file that cannot be trusted: cut short, or its bytes changed since they were written. */
export class CheckpointDamagedError extends RingcastError {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(ERR.PSMR_CHECKPOINT_DAMAGED, `checkpoint file ${file}: ${problem}`);
    this.name = 'CheckpointDamagedError';
  }
}

/** The checkpoint bytes with the trailer a checkpoint file ends with. */
export function frameCheckpoint(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(payload.length + TRAILER_BYTES);
  out.set(payload, 0);
  TRAILER.copy(out, payload.length);
  out.writeUInt32BE(crc32(out, 0, payload.length + 4), payload.length + 4);
  return out;
}

/** Whether bytes end with a checkpoint file's trailer (a file written here, not a bare GET /checkpoint). */
export function hasCheckpointTrailer(bytes: Uint8Array): boolean {
  return bytes.length >= TRAILER_BYTES && Buffer.from(bytes.buffer, bytes.byteOffset + bytes.length - TRAILER_BYTES, 4).equals(TRAILER);
}

/** The checkpoint inside a checkpoint file's bytes; throws CheckpointDamagedError when they do not check. */
export function unframeCheckpoint(bytes: Uint8Array, file: string): Uint8Array {
  if (bytes.length < TRAILER_BYTES) throw new CheckpointDamagedError(file, `${bytes.length} bytes, shorter than the trailer`);
  if (!hasCheckpointTrailer(bytes)) throw new CheckpointDamagedError(file, 'no RCK1 trailer (cut short, or not a checkpoint file)');
  const end = bytes.length - TRAILER_BYTES;
  const want = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).readUInt32BE(end + 4);
  const got = crc32(bytes, 0, end + 4);
  if (got !== want) throw new CheckpointDamagedError(file, `crc32 ${got.toString(16)} does not match the ${want.toString(16)} written`);
  return bytes.subarray(0, end);
}

export interface StoredCheckpoint {
  file: string;
  seq: number;
  /** The checkpoint (as GET /checkpoint gives it). */
  payload: Uint8Array;
}

export class CheckpointStore {
  private seq = 0;

  /** Opens (creates) the directory and removes temporary files a crash left behind. */
  constructor(
    readonly dir: string,
    readonly keep = 2,
  ) {
    mkdirSync(dir, { recursive: true });
    for (const f of readdirSync(dir)) if (TMP_NAME.test(f)) unlinkSync(join(dir, f));
    for (const { seq } of this.list()) this.seq = Math.max(this.seq, seq);
  }

  /** Checkpoint files, newest first. */
  list(): Array<{ file: string; seq: number }> {
    const out: Array<{ file: string; seq: number }> = [];
    for (const f of readdirSync(this.dir)) {
      const m = NAME.exec(f);
      if (m) out.push({ file: join(this.dir, f), seq: Number(m[1]) });
    }
    return out.sort((a, b) => b.seq - a.seq);
  }

  /**
   * The newest checkpoint file that checks. Each damaged one met on the way is given to `onDamaged` and
   * renamed `<name>.damaged` (kept for the operator, out of the rotation); undefined when the directory has
   * no checkpoint file. A file that cannot be read (EACCES, EIO, ...) is no damage: a ConfigError naming
   * the file and --checkpoint-dir, nothing renamed. Every file damaged: an ERR_PSMR_CHECKPOINT_DAMAGED error saying so
   * (starting fresh would orphan this replica's holds and could never resume from the rings it trimmed).
   */
  readNewest(onDamaged: (e: CheckpointDamagedError) => void): StoredCheckpoint | undefined {
    let damaged = 0;
    for (const { file, seq } of this.list()) {
      let bytes: Uint8Array;
      try {
        bytes = readFileSync(file);
      } catch (e) {
        throw new ConfigError('--checkpoint-dir', `cannot read ${file}: ${(e as Error).message}`);
      }
      try {
        return { file, seq, payload: unframeCheckpoint(bytes, file) };
      } catch (e) {
        if (!(e instanceof CheckpointDamagedError)) throw e;
        onDamaged(e);
        renameSync(file, `${file}.damaged`);
        damaged++;
      }
    }
    if (damaged > 0) {
      throw new RingcastError(
        ERR.PSMR_CHECKPOINT_DAMAGED,
        `--checkpoint-dir ${this.dir}: every checkpoint file is damaged (${damaged}, renamed *.damaged); not starting fresh, which would orphan this replica's retention holds: restore it from a live peer with --from-replica URL`,
      );
    }
    return undefined;
  }

  /**
   * Move every checkpoint file out of the rotation (renamed `<name>.replaced`): a replica started from
   * another replica's checkpoint is a new life, and its previous files (another id, no hold) must not be
   * kept as its older checkpoint. Returns the new names.
   */
  moveAside(): string[] {
    const moved: string[] = [];
    for (const { file } of this.list()) {
      renameSync(file, `${file}.replaced`);
      moved.push(`${file}.replaced`);
    }
    if (moved.length > 0) this.syncDir();
    return moved;
  }

  /** Write a checkpoint durably (temp file, fsync, rename, fsync the directory), then keep the newest `keep`. */
  async write(payload: Uint8Array): Promise<{ file: string; bytes: number }> {
    const seq = ++this.seq;
    const file = join(this.dir, `checkpoint-${String(seq).padStart(12, '0')}.rckp`);
    const tmp = `${file}.tmp`;
    const framed = frameCheckpoint(payload);
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(framed);
      await fh.sync();
    } catch (e) {
      await fh.close();
      await unlink(tmp).catch(() => {});
      throw e;
    }
    await fh.close();
    await rename(tmp, file);
    this.syncDir();
    for (const old of this.list().slice(this.keep)) unlinkSync(old.file);
    for (const f of readdirSync(this.dir)) if (f.endsWith('.damaged') && Number(/(\d{12})/.exec(f)?.[1] ?? Infinity) < seq - this.keep) unlinkSync(join(this.dir, f));
    return { file, bytes: framed.length };
  }

  private syncDir(): void {
    const fd = openSync(this.dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}
