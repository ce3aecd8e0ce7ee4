/**
 * Pure-JS UTF-8 validation, whole-buffer and incremental.
 *
 * The incremental form carries a partial code point from one fragment to the
 * next in a small integer, so a text message split anywhere is checked as it
 * arrives and a bad fragment fails at once (RFC 6455 8.1). The native addon
 * uses the same state encoding, so the two can take turns within a message:
 *
 * - `0`: at a code point boundary (a message may end here);
 * - `(n << 24) | bytes`: `n` (1..3) bytes of an unfinished code point are
 *   held, the first in bits 16..23, the second in 8..15, the third in 0..7;
 * - `UTF8_INVALID` (-1): the stream is not UTF-8.
 */
import { isUtf8 } from 'node:buffer';

/** State returned once a stream is known to be invalid. */
export const UTF8_INVALID = -1;

/** Below this many bytes a JS loop beats a call into `buffer.isUtf8`. */
const SCALAR_MAX = 24;

/** Length of the sequence a lead byte starts, or 0 if it cannot lead one. */
function sequenceLength(lead: number): number {
  if (lead < 0x80) return 1;
  if (lead < 0xc2) return 0; // continuation bytes, and C0 / C1 (always overlong)
  if (lead < 0xe0) return 2;
  if (lead < 0xf0) return 3;
  if (lead < 0xf5) return 4;
  return 0; // F5..FF would encode above U+10FFFF or 5- and 6-byte forms
}

/**
 * Whether `byte` may stand at position `index` (1..3) after `lead`. The second
 * byte carries the rules against overlongs (E0, F0), surrogates (ED) and
 * values above U+10FFFF (F4).
 */
function continues(lead: number, index: number, byte: number): boolean {
  if (index === 1) {
    if (lead === 0xe0) return byte >= 0xa0 && byte <= 0xbf;
    if (lead === 0xed) return byte >= 0x80 && byte <= 0x9f;
    if (lead === 0xf0) return byte >= 0x90 && byte <= 0xbf;
    if (lead === 0xf4) return byte >= 0x80 && byte <= 0x8f;
  }
  return byte >= 0x80 && byte <= 0xbf;
}

/** Scalar check of `buf[start, end)`, for short ranges. */
function validScalar(buf: Uint8Array, start: number, end: number): boolean {
  let i = start;
  while (i < end) {
    const lead = buf[i];
    if (lead < 0x80) {
      i++;
      continue;
    }
    const len = sequenceLength(lead);
    if (len === 0 || i + len > end) return false;
    for (let k = 1; k < len; k++) if (!continues(lead, k, buf[i + k])) return false;
    i += len;
  }
  return true;
}

/** Whether `buf[start, end)` is well-formed UTF-8 in its entirety. */
export function isValidUtf8(buf: Uint8Array, start: number, end: number): boolean {
  if (end - start <= SCALAR_MAX) return validScalar(buf, start, end);
  // A whole-buffer check needs no view: subarray() costs as much as checking 1 KiB.
  return isUtf8(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
}

/**
 * Continues validating a UTF-8 stream with `buf[start, end)`. `state` is 0 at
 * the start of a message; the result is the state to pass with the next
 * fragment, which must be 0 when the message ends.
 */
export function utf8Continue(state: number, buf: Uint8Array, start: number, end: number): number {
  if (state < 0) return UTF8_INVALID;
  let i = start;
  if (state !== 0) {
    // Finish the code point held over from the previous fragment.
    let held = state >>> 24;
    let packed = state & 0xffffff;
    const lead = packed >>> 16;
    const len = sequenceLength(lead);
    while (held < len && i < end) {
      const byte = buf[i];
      if (!continues(lead, held, byte)) return UTF8_INVALID;
      packed |= byte << (16 - 8 * held);
      held++;
      i++;
    }
    if (held < len) return (held << 24) | packed;
  }
  // Find where an unfinished code point begins in the last three bytes.
  let tail = end;
  for (let k = end - 1; k >= i && k >= end - 3; k--) {
    const byte = buf[k];
    if (byte < 0x80) break;
    if (byte >= 0xc0) {
      const len = sequenceLength(byte);
      if (len !== 0 && k + len > end) tail = k;
      break;
    }
  }
  if (!isValidUtf8(buf, i, tail)) return UTF8_INVALID;
  if (tail === end) return 0;
  // The held bytes must be a valid prefix, so a bad fragment fails now.
  const lead = buf[tail];
  let packed = lead << 16;
  for (let k = 1; tail + k < end; k++) {
    const byte = buf[tail + k];
    if (!continues(lead, k, byte)) return UTF8_INVALID;
    packed |= byte << (16 - 8 * k);
  }
  return ((end - tail) << 24) | packed;
}

/**
 * Where a stream continued from `state` with `buf[start, end)` first stops
 * being UTF-8: the offset from `start` of the first byte that cannot follow
 * what came before it, or -1 when the range is valid (an unfinished code
 * point at the end is valid). Scalar: it runs once, to report a failure
 * `utf8Continue` found.
 */
export function utf8InvalidAt(state: number, buf: Uint8Array, start: number, end: number): number {
  let i = start;
  if (state > 0) {
    const lead = (state >>> 16) & 0xff;
    const len = sequenceLength(lead);
    for (let held = state >>> 24; held < len && i < end; held++, i++) {
      if (!continues(lead, held, buf[i])) return i - start;
    }
  }
  while (i < end) {
    const lead = buf[i];
    if (lead < 0x80) {
      i++;
      continue;
    }
    const len = sequenceLength(lead);
    if (len === 0) return i - start;
    for (let k = 1; k < len; k++) {
      if (i + k >= end) return -1;
      if (!continues(lead, k, buf[i + k])) return i + k - start;
    }
    i += len;
  }
  return -1;
}
