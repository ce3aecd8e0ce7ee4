/**
 * Masking (RFC 6455 5.3) run against every implementation: the pure-JS
 * fallback, the addon called directly (no size thresholds), and the exports
 * of src/native.ts (thresholds included).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as jsMask from '../src/fallback/mask.js';
import { delivered, delivering } from '../src/lease.js';
import * as wrapped from '../src/native.js';

interface MaskImpl {
  unmask: typeof jsMask.unmask;
  maskInto: typeof jsMask.maskInto;
}

const NO_ADDON = `addon not loaded (${process.env.WAVECAST_NO_NATIVE ? 'WAVECAST_NO_NATIVE is set' : 'no build or prebuild'})`;

const impls: { name: string; impl: MaskImpl | null }[] = [
  { name: 'js fallback', impl: jsMask },
  { name: wrapped.addon ? 'native addon' : `native addon SKIPPED: ${NO_ADDON}`, impl: wrapped.addon },
  { name: `src/native.ts exports (backend ${wrapped.backend})`, impl: wrapped },
];

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** A buffer of `n` bytes that differ from each other and from their masked form. */
function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + 7) & 0xff;
  return b;
}

/** The reference: byte i XOR key byte (i & 3), written out the slow way. */
function reference(src: Uint8Array, mask: number): Buffer {
  const out = Buffer.alloc(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] ^ ((mask >>> (24 - 8 * (i & 3))) & 0xff);
  return out;
}

for (const { name, impl } of impls) {
  describe(`mask: ${name}`, { skip: impl ? false : NO_ADDON }, () => {
    const m = impl as MaskImpl;

    test('unmasks the RFC 6455 5.7 "Hello" example', () => {
      const frame = hex('81 85 37fa213d 7f9f4d5158');
      m.unmask(frame, 6, 11, frame.readUInt32BE(2));
      assert.equal(frame.subarray(6).toString(), 'Hello');
    });

    test('applies mask byte 0 at start whatever the alignment of start', () => {
      for (let start = 0; start < 16; start++) {
        for (const size of [1, 2, 3, 4, 5, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200, 700]) {
          const buf = pattern(start + size + 9);
          const before = Buffer.from(buf);
          m.unmask(buf, start, start + size, 0x01234567 + start);
          const want = Buffer.from(before);
          reference(before.subarray(start, start + size), 0x01234567 + start).copy(want, start);
          assert.deepEqual(buf, want, `start ${start} size ${size}`);
        }
      }
    });

    test('unmasking twice restores the input', () => {
      const buf = pattern(1000);
      m.unmask(buf, 3, 997, 0xdeadbeef);
      assert.notDeepEqual(buf, pattern(1000));
      m.unmask(buf, 3, 997, 0xdeadbeef);
      assert.deepEqual(buf, pattern(1000));
    });

    test('leaves an empty range and the bytes around it alone', () => {
      const buf = pattern(40);
      m.unmask(buf, 20, 20, 0xffffffff);
      assert.deepEqual(buf, pattern(40));
    });

    test('maskInto copies and masks into the target at an offset, touching nothing else', () => {
      for (const size of [0, 1, 3, 4, 7, 16, 33, 64, 100, 129, 1000]) {
        const src = pattern(size + 10);
        const target = Buffer.alloc(size + 20, 0xaa);
        m.maskInto(src, 5, 5 + size, target, 11, 0x11223344);
        const want = Buffer.alloc(size + 20, 0xaa);
        reference(src.subarray(5, 5 + size), 0x11223344).copy(want, 11);
        assert.deepEqual(target, want, `size ${size}`);
        assert.deepEqual(src, pattern(size + 10), 'source untouched');
      }
    });

    test('maskInto moves bytes towards the start of the same buffer like a memmove', () => {
      for (const [from, to, size] of [[10, 0, 300], [1, 0, 100], [64, 3, 64], [5, 5, 77]]) {
        const buf = pattern(400);
        const want = Buffer.from(buf);
        reference(pattern(400).subarray(from, from + size), 0xcafebabe).copy(want, to);
        m.maskInto(buf, from, from + size, buf, to, 0xcafebabe);
        assert.deepEqual(buf, want, `from ${from} to ${to} size ${size}`);
      }
    });

    test('takes any number as the mask, as mask >>> 0 would', () => {
      const a = pattern(100);
      const b = pattern(100);
      m.unmask(a, 0, 100, -1);
      m.unmask(b, 0, 100, 0xffffffff);
      assert.deepEqual(a, b);
    });
  });
}

/** `n` pattern bytes as a view that starts `offset` bytes into its ArrayBuffer (as a batch's views do). */
function offsetPattern(n: number, offset: number): Buffer {
  const whole = Buffer.alloc(n + offset + 5, 0x5a);
  pattern(n).copy(whole, offset);
  return whole.subarray(offset, offset + n);
}

describe('mask: js fallback a uint32 a step, over the batch being delivered (lease.ts)', () => {
  test('unmask matches the reference at every alignment of start and of the buffer', () => {
    try {
      for (const offset of [0, 1, 2, 3, 5]) {
        for (let start = 0; start < 8; start++) {
          for (const size of [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 111]) {
            const buf = offsetPattern(start + size + 6, offset);
            delivering(new Int32Array(1), buf);
            assert.ok(jsMask.wordsOf(buf) !== null, 'the words path is taken');
            const want = Buffer.from(buf);
            reference(buf.subarray(start, start + size), 0x9abcdef0 + start).copy(want, start);
            jsMask.unmask(buf, start, start + size, 0x9abcdef0 + start);
            assert.deepEqual(buf, want, `offset ${offset} start ${start} size ${size}`);
          }
        }
      }
      // Any number as the mask, as mask >>> 0 would.
      const a = offsetPattern(50, 1);
      const want = Buffer.from(a);
      reference(a.subarray(2, 47), 0xffffffff).copy(want, 2);
      delivering(new Int32Array(1), a);
      jsMask.unmask(a, 2, 47, -1);
      assert.deepEqual(a, want);
    } finally {
      delivered();
    }
  });

  test('copyInto copies the range, touching nothing else, with or without the words path', () => {
    try {
      for (const words of [true, false]) {
        for (const offset of [0, 3]) {
          for (const size of [0, 1, 3, 4, 5, 8, 31, 32, 33, 64]) {
            const src = offsetPattern(size + 9, offset);
            if (words) delivering(new Int32Array(1), src);
            else delivered();
            const whole = Buffer.alloc(size + 40, 0xaa);
            const target = whole.subarray(offset + 1);
            jsMask.copyInto(src, 4, 4 + size, target, new DataView(target.buffer, target.byteOffset, target.length), 7);
            const want = Buffer.alloc(size + 40, 0xaa);
            src.copy(want, offset + 1 + 7, 4, 4 + size);
            assert.deepEqual(whole, want, `words ${words} offset ${offset} size ${size}`);
            assert.deepEqual(src, offsetPattern(size + 9, offset), 'source untouched');
          }
        }
      }
    } finally {
      delivered();
    }
  });

  test('another buffer, or none after the delivery, keeps the byte loops', () => {
    const batch = pattern(64);
    delivering(new Int32Array(1), batch);
    assert.equal(jsMask.wordsOf(pattern(64)), null);
    assert.ok(jsMask.wordsOf(batch) instanceof DataView);
    delivered();
    assert.equal(jsMask.wordsOf(batch), null);
  });
});
