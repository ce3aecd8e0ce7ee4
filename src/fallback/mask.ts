/**
 * Pure-JS masking, the reference the native addon must match byte for byte.
 *
 * A mask is the frame's four masking-key bytes read as one big-endian uint32
 * (`buf.readUInt32BE(pos)`), so no Buffer is allocated per frame for it. Mask
 * byte 0 (the most significant) applies to the first byte of the range.
 */

/** Rotates a mask so that it starts `phase` bytes into the masking key (0..3). */
export function rotateMask(mask: number, phase: number): number {
  const shift = (phase & 3) * 8;
  return shift === 0 ? mask >>> 0 : ((mask << shift) | (mask >>> (32 - shift))) >>> 0;
}

/** XORs `buf[start, end)` in place with the mask (RFC 6455 5.3). */
export function unmask(buf: Uint8Array, start: number, end: number, mask: number): void {
  const m0 = mask >>> 24;
  const m1 = (mask >>> 16) & 0xff;
  const m2 = (mask >>> 8) & 0xff;
  const m3 = mask & 0xff;
  let i = start;
  const end4 = start + ((end - start) & ~3);
  for (; i < end4; i += 4) {
    buf[i] ^= m0;
    buf[i + 1] ^= m1;
    buf[i + 2] ^= m2;
    buf[i + 3] ^= m3;
  }
  if (i < end) buf[i++] ^= m0;
  if (i < end) buf[i++] ^= m1;
  if (i < end) buf[i] ^= m2;
}

/**
 * Writes `source[sourceStart, sourceEnd)` XOR the mask into `target` at
 * `targetStart`: one pass that copies and unmasks (or masks) together.
 */
export function maskInto(
  source: Uint8Array,
  sourceStart: number,
  sourceEnd: number,
  target: Uint8Array,
  targetStart: number,
  mask: number,
): void {
  const m0 = mask >>> 24;
  const m1 = (mask >>> 16) & 0xff;
  const m2 = (mask >>> 8) & 0xff;
  const m3 = mask & 0xff;
  let i = sourceStart;
  let j = targetStart;
  const end4 = sourceStart + ((sourceEnd - sourceStart) & ~3);
  for (; i < end4; i += 4, j += 4) {
    target[j] = source[i] ^ m0;
    target[j + 1] = source[i + 1] ^ m1;
    target[j + 2] = source[i + 2] ^ m2;
    target[j + 3] = source[i + 3] ^ m3;
  }
  if (i < sourceEnd) target[j++] = source[i++] ^ m0;
  if (i < sourceEnd) target[j++] = source[i++] ^ m1;
  if (i < sourceEnd) target[j] = source[i] ^ m2;
}
