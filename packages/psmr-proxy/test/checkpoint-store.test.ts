import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CheckpointDamagedError, CheckpointStore, frameCheckpoint, unframeCheckpoint } from '@ringcast/psmr-proxy';
import { checkpointEveryFlag } from '../src/cli/replica.js';

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
    // Cut short (a file that lost its end): refused too; with nothing left, none.
    truncateSync(got!.file, 100);
    const again: CheckpointDamagedError[] = [];
    expect(new CheckpointStore(dir).readNewest((e) => again.push(e))).toBeUndefined();
    expect(again.map((e) => e.code)).toEqual(['ERR_PSMR_CHECKPOINT_DAMAGED']);
    expect(again[0]!.message).toMatch(/trailer/);
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
