/**
 * A growable byte writer reused across batches and a bounds-checked reader: the P-SMR hot path writes
 * every command and reply straight into one buffer instead of allocating one per command.
 */

import { ERR, RingcastError } from '@ringcast/ring-paxos';

/** A P-SMR batch (or a command or reply in it) is malformed or out of bounds. */
export class WireError extends RingcastError {
  constructor(message: string) {
    super(ERR.WIRE, message);
    this.name = 'WireError';
  }
}

/**
 * A short latin1 (or ASCII) string from bytes, built in JS: for keys and values of a few bytes this is
 * several times cheaper than a native Buffer decode, which dominates the per-command cost otherwise.
 */
export function shortLatin1(b: Buffer, a: number, n: number): string {
  switch (n) {
    case 0: return '';
    case 1: return String.fromCharCode(b[a]!);
    case 2: return String.fromCharCode(b[a]!, b[a + 1]!);
    case 3: return String.fromCharCode(b[a]!, b[a + 1]!, b[a + 2]!);
    case 4: return String.fromCharCode(b[a]!, b[a + 1]!, b[a + 2]!, b[a + 3]!);
    case 5: return String.fromCharCode(b[a]!, b[a + 1]!, b[a + 2]!, b[a + 3]!, b[a + 4]!);
    case 6: return String.fromCharCode(b[a]!, b[a + 1]!, b[a + 2]!, b[a + 3]!, b[a + 4]!, b[a + 5]!);
    case 7: return String.fromCharCode(b[a]!, b[a + 1]!, b[a + 2]!, b[a + 3]!, b[a + 4]!, b[a + 5]!, b[a + 6]!);
    case 8: return String.fromCharCode(b[a]!, b[a + 1]!, b[a + 2]!, b[a + 3]!, b[a + 4]!, b[a + 5]!, b[a + 6]!, b[a + 7]!);
    case 9: return String.fromCharCode(b[a]!, b[a + 1]!, b[a + 2]!, b[a + 3]!, b[a + 4]!, b[a + 5]!, b[a + 6]!, b[a + 7]!, b[a + 8]!);
    case 10: return String.fromCharCode(b[a]!, b[a + 1]!, b[a + 2]!, b[a + 3]!, b[a + 4]!, b[a + 5]!, b[a + 6]!, b[a + 7]!, b[a + 8]!, b[a + 9]!);
    case 11: return String.fromCharCode(b[a]!, b[a + 1]!, b[a + 2]!, b[a + 3]!, b[a + 4]!, b[a + 5]!, b[a + 6]!, b[a + 7]!, b[a + 8]!, b[a + 9]!, b[a + 10]!);
    case 12: return String.fromCharCode(b[a]!, b[a + 1]!, b[a + 2]!, b[a + 3]!, b[a + 4]!, b[a + 5]!, b[a + 6]!, b[a + 7]!, b[a + 8]!, b[a + 9]!, b[a + 10]!, b[a + 11]!);
    case 13: return String.fromCharCode(b[a]!, b[a + 1]!, b[a + 2]!, b[a + 3]!, b[a + 4]!, b[a + 5]!, b[a + 6]!, b[a + 7]!, b[a + 8]!, b[a + 9]!, b[a + 10]!, b[a + 11]!, b[a + 12]!);
    case 14: return String.fromCharCode(b[a]!, b[a + 1]!, b[a + 2]!, b[a + 3]!, b[a + 4]!, b[a + 5]!, b[a + 6]!, b[a + 7]!, b[a + 8]!, b[a + 9]!, b[a + 10]!, b[a + 11]!, b[a + 12]!, b[a + 13]!);
    case 15: return String.fromCharCode(b[a]!, b[a + 1]!, b[a + 2]!, b[a + 3]!, b[a + 4]!, b[a + 5]!, b[a + 6]!, b[a + 7]!, b[a + 8]!, b[a + 9]!, b[a + 10]!, b[a + 11]!, b[a + 12]!, b[a + 13]!, b[a + 14]!);
    case 16: return String.fromCharCode(b[a]!, b[a + 1]!, b[a + 2]!, b[a + 3]!, b[a + 4]!, b[a + 5]!, b[a + 6]!, b[a + 7]!, b[a + 8]!, b[a + 9]!, b[a + 10]!, b[a + 11]!, b[a + 12]!, b[a + 13]!, b[a + 14]!, b[a + 15]!);
    default: return b.toString('latin1', a, a + n);
  }
}

/** True if bytes [a, a+n) are all ASCII. */
export function isAscii(b: Uint8Array, a: number, n: number): boolean {
  for (let i = a; i < a + n; i++) if (b[i]! >= 0x80) return false;
  return true;
}

export class ByteWriter {
  buf: Buffer;
  pos = 0;
  constructor(initial = 4096) {
    this.buf = Buffer.allocUnsafe(initial);
  }
  reset(): void {
    this.pos = 0;
  }
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }
  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16LE(v, this.pos);
    this.pos += 2;
  }
  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
  }
  f64(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  /** A latin1 string (one byte per char: binary-safe for strings made by ByteReader.latin1). */
  latin1(s: string): void {
    const n = s.length;
    this.ensure(n);
    if (n <= 32) {
      const b = this.buf;
      let p = this.pos;
      for (let i = 0; i < n; i++) b[p++] = s.charCodeAt(i);
      this.pos = p;
    } else this.pos += this.buf.write(s, this.pos, n, 'latin1');
  }
  /** A string as UTF-8; returns the byte count. ASCII is written in JS (cheap for short strings). */
  utf8(s: string): number {
    const n = s.length;
    if (n <= 64) {
      this.ensure(n);
      const b = this.buf;
      const start = this.pos;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[start + i] = c;
      }
      if (i === n) {
        this.pos += n;
        return n;
      }
    }
    const len = Buffer.byteLength(s, 'utf8');
    this.ensure(len);
    this.pos += this.buf.write(s, this.pos, len, 'utf8');
    return len;
  }
  /** Reserve `n` bytes and return their offset (patched later, e.g. a count or a length). */
  reserve(n: number): number {
    this.ensure(n);
    const at = this.pos;
    this.pos += n;
    return at;
  }
  /** A copy of what was written (the writer is reused). */
  take(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}

export class ByteReader {
  readonly buf: Buffer;
  pos: number;
  end: number;
  constructor(data: Uint8Array, start = 0, end = data.length) {
    this.buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.pos = start;
    this.end = end;
  }
  need(n: number, what: string): void {
    if (this.pos + n > this.end) throw new WireError(`truncated ${what}: needs ${n} bytes at offset ${this.pos}, ${this.end - this.pos} left`);
  }
  u8(what = 'u8'): number {
    this.need(1, what);
    return this.buf[this.pos++]!;
  }
  u16(what = 'u16'): number {
    this.need(2, what);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(what = 'u32'): number {
    this.need(4, what);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  f64(what = 'f64'): number {
    this.need(8, what);
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }
  latin1(n: number, what = 'bytes'): string {
    this.need(n, what);
    const s = shortLatin1(this.buf, this.pos, n);
    this.pos += n;
    return s;
  }
  /** n bytes of UTF-8 as a string (ASCII decoded in JS). */
  utf8(n: number, what = 'bytes'): string {
    this.need(n, what);
    const a = this.pos;
    this.pos += n;
    return n <= 16 && isAscii(this.buf, a, n) ? shortLatin1(this.buf, a, n) : this.buf.toString('utf8', a, a + n);
  }
  skip(n: number, what = 'bytes'): void {
    this.need(n, what);
    this.pos += n;
  }
}
