/**
 * A small msgpack writer for the only things the ring puts on the wire: integers, byte strings and arrays
 * of them. It writes the same bytes msgpackr does for these types (so either decodes the other), but sizes
 * the output first and writes it into one exact buffer: no growing, no second copy of large values, and
 * room left in front for a datagram header. Pure: Uint8Array and DataView only.
 */
export type MpValue = number | Uint8Array | readonly MpValue[];

/** Encoded size of `v`, or -1 when `v` holds something this writer does not handle (the caller falls back). */
export function mpSize(v: unknown): number {
  if (typeof v === 'number') {
    if (v >>> 0 === v) return v < 0x80 ? 1 : v < 0x100 ? 2 : v < 0x10000 ? 3 : 5;
    if (v >> 0 === v) return v >= -0x20 ? 1 : v >= -0x80 ? 2 : v >= -0x8000 ? 3 : 5;
    return Number.isSafeInteger(v) ? 9 : -1;
  }
  if (v instanceof Uint8Array) {
    const n = v.byteLength;
    return n + (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5);
  }
  if (Array.isArray(v)) {
    const n = v.length;
    let size = n < 16 ? 1 : n < 0x10000 ? 3 : 5;
    for (let k = 0; k < n; k++) {
      const s = mpSize(v[k]);
      if (s < 0) return -1;
      size += s;
    }
    return size;
  }
  return -1;
}

/** Write `v` (already sized by mpSize) at `pos`; returns the position after it. */
export function mpWrite(v: MpValue, buf: Uint8Array, view: DataView, pos: number): number {
  if (typeof v === 'number') {
    if (v >>> 0 === v) {
      if (v < 0x80) {
        buf[pos] = v;
        return pos + 1;
      }
      if (v < 0x100) {
        buf[pos] = 0xcc;
        buf[pos + 1] = v;
        return pos + 2;
      }
      if (v < 0x10000) {
        buf[pos] = 0xcd;
        view.setUint16(pos + 1, v);
        return pos + 3;
      }
      buf[pos] = 0xce;
      view.setUint32(pos + 1, v);
      return pos + 5;
    }
    if (v >> 0 === v) {
      if (v >= -0x20) {
        buf[pos] = v & 0xff;
        return pos + 1;
      }
      if (v >= -0x80) {
        buf[pos] = 0xd0;
        view.setInt8(pos + 1, v);
        return pos + 2;
      }
      if (v >= -0x8000) {
        buf[pos] = 0xd1;
        view.setInt16(pos + 1, v);
        return pos + 3;
      }
      buf[pos] = 0xd2;
      view.setInt32(pos + 1, v);
      return pos + 5;
    }
    buf[pos] = 0xcb;
    view.setFloat64(pos + 1, v);
    return pos + 9;
  }
  if (v instanceof Uint8Array) {
    const n = v.byteLength;
    if (n < 0x100) {
      buf[pos] = 0xc4;
      buf[pos + 1] = n;
      pos += 2;
    } else if (n < 0x10000) {
      buf[pos] = 0xc5;
      view.setUint16(pos + 1, n);
      pos += 3;
    } else {
      buf[pos] = 0xc6;
      view.setUint32(pos + 1, n);
      pos += 5;
    }
    buf.set(v, pos);
    return pos + n;
  }
  const n = v.length;
  if (n < 16) {
    buf[pos++] = 0x90 | n;
  } else if (n < 0x10000) {
    buf[pos] = 0xdc;
    view.setUint16(pos + 1, n);
    pos += 3;
  } else {
    buf[pos] = 0xdd;
    view.setUint32(pos + 1, n);
    pos += 5;
  }
  for (let k = 0; k < n; k++) pos = mpWrite(v[k]!, buf, view, pos);
  return pos;
}

/**
 * Encode `v` into a new buffer with `front` bytes left free before it and `back` after it; undefined when
 * `v` holds something this writer does not handle.
 */
export function mpEncode(
  v: unknown,
  front = 0,
  back = 0,
  alloc: (n: number) => Uint8Array = (n) => new Uint8Array(n),
): Uint8Array | undefined {
  const size = mpSize(v);
  if (size < 0) return undefined;
  const buf = alloc(front + size + back);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  mpWrite(v as MpValue, buf, view, front);
  return buf;
}
