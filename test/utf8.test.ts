/**
 * UTF-8 validation (RFC 3629, as RFC 6455 8.1 requires of text messages) run
 * against every implementation: the pure-JS fallback, the addon called
 * directly (no size thresholds), and the exports of src/native.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as jsUtf8 from '../src/fallback/utf8.js';
import * as wrapped from '../src/native.js';

interface Utf8Impl {
  isValidUtf8: typeof jsUtf8.isValidUtf8;
  utf8Continue: typeof jsUtf8.utf8Continue;
  utf8InvalidAt: typeof jsUtf8.utf8InvalidAt;
}

const { UTF8_INVALID } = jsUtf8;

const NO_ADDON = `addon not loaded (${process.env.WAVECAST_NO_NATIVE ? 'WAVECAST_NO_NATIVE is set' : 'no build or prebuild'})`;

const impls: { name: string; impl: Utf8Impl | null }[] = [
  { name: 'js fallback', impl: jsUtf8 },
  { name: wrapped.addon ? 'native addon' : `native addon SKIPPED: ${NO_ADDON}`, impl: wrapped.addon },
  { name: `src/native.ts exports (backend ${wrapped.backend})`, impl: wrapped },
];

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/**
 * `bad` is the index of the byte at which a streaming check must fail, `null`
 * for valid input, `'end'` for input that is a valid prefix cut short.
 */
interface Vector {
  what: string;
  bytes: string;
  bad: number | null | 'end';
}

const vectors: Vector[] = [
  { what: 'empty', bytes: '', bad: null },
  { what: 'ASCII', bytes: '48656c6c6f', bad: null },
  { what: 'NUL and DEL', bytes: '00 7f', bad: null },
  { what: '2-byte U+0080 and U+07FF', bytes: 'c280 dfbf', bad: null },
  { what: '3-byte U+0800, U+FFFF, U+D7FF, U+E000', bytes: 'e0a080 efbfbf ed9fbf ee8080', bad: null },
  { what: '4-byte U+10000 and U+10FFFF', bytes: 'f0908080 f48fbfbf', bad: null },
  { what: 'U+FFFE and U+FFFF noncharacters (valid UTF-8)', bytes: 'efbfbe efbfbf', bad: null },
  { what: 'lone continuation byte', bytes: '41 80', bad: 1 },
  { what: 'continuation byte BF first', bytes: 'bf', bad: 0 },
  { what: 'two continuations after a 2-byte sequence', bytes: 'c3a9 a9', bad: 2 },
  { what: 'overlong C0 80 (NUL)', bytes: 'c0 80', bad: 0 },
  { what: 'overlong C1 BF', bytes: 'c1 bf', bad: 0 },
  { what: 'overlong 3-byte E0 80 80', bytes: 'e0 80 80', bad: 1 },
  { what: 'overlong 3-byte E0 9F BF', bytes: 'e0 9f bf', bad: 1 },
  { what: 'overlong 4-byte F0 80 80 80', bytes: 'f0 80 80 80', bad: 1 },
  { what: 'overlong 4-byte F0 8F BF BF', bytes: 'f0 8f bf bf', bad: 1 },
  { what: 'surrogate U+D800', bytes: 'ed a0 80', bad: 1 },
  { what: 'surrogate U+DBFF', bytes: 'ed af bf', bad: 1 },
  { what: 'surrogate U+DC00', bytes: 'ed b0 80', bad: 1 },
  { what: 'surrogate U+DFFF', bytes: 'ed bf bf', bad: 1 },
  { what: 'surrogate pair encoded as two 3-byte sequences (CESU-8)', bytes: 'eda0bd edb880', bad: 1 },
  { what: 'U+110000, above the Unicode range', bytes: 'f4 90 80 80', bad: 1 },
  { what: 'F4 BF BF BF', bytes: 'f4 bf bf bf', bad: 1 },
  { what: 'F5 lead byte', bytes: 'f5 80 80 80', bad: 0 },
  { what: 'F7 BF BF BF (U+1FFFFF)', bytes: 'f7 bf bf bf', bad: 0 },
  { what: '5-byte form F8 88 80 80 80', bytes: 'f8 88 80 80 80', bad: 0 },
  { what: '6-byte form FC 84 80 80 80 80', bytes: 'fc 84 80 80 80 80', bad: 0 },
  { what: 'FE', bytes: '41 fe', bad: 1 },
  { what: 'FF', bytes: 'ff', bad: 0 },
  { what: '2-byte sequence cut after its lead', bytes: '41 c3', bad: 'end' },
  { what: '3-byte sequence cut after 1 byte', bytes: 'e2', bad: 'end' },
  { what: '3-byte sequence cut after 2 bytes', bytes: 'e2 82', bad: 'end' },
  { what: '4-byte sequence cut after 1 byte', bytes: 'f0', bad: 'end' },
  { what: '4-byte sequence cut after 2 bytes', bytes: 'f0 9f', bad: 'end' },
  { what: '4-byte sequence cut after 3 bytes', bytes: 'f0 9f 98', bad: 'end' },
  { what: '2-byte sequence interrupted by ASCII', bytes: 'c3 41', bad: 1 },
  { what: '3-byte sequence interrupted after 2 bytes', bytes: 'e2 82 41', bad: 2 },
  { what: '4-byte sequence interrupted after 3 bytes', bytes: 'f0 9f 98 41', bad: 3 },
  { what: '4-byte sequence interrupted by a lead byte', bytes: 'f0 9f c3 a9', bad: 2 },
  { what: 'text with every length of sequence', bytes: Buffer.from('añ€😀 ok').toString('hex'), bad: null },
];

/** Feeds `bytes` to utf8Continue split at `cuts`; returns the final state. */
function feed(u: Utf8Impl, bytes: Buffer, cuts: number[]): number {
  let state = 0;
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    state = u.utf8Continue(state, bytes, from, cut);
    from = cut;
  }
  return state;
}

for (const { name, impl } of impls) {
  describe(`utf8: ${name}`, { skip: impl ? false : NO_ADDON }, () => {
    const u = impl as Utf8Impl;

    for (const v of vectors) {
      test(`${v.bad === null ? 'accepts' : 'rejects'} ${v.what}`, () => {
        const bytes = hex(v.bytes);
        assert.equal(u.isValidUtf8(bytes, 0, bytes.length), v.bad === null);
        // The same bytes in the middle of a long ASCII run, so the vector
        // paths see them and not only the short-input loop.
        const padded = Buffer.concat([Buffer.alloc(61, 0x61), bytes, Buffer.alloc(70, 0x62)]);
        const expectPadded = v.bad === null;
        assert.equal(u.isValidUtf8(padded, 0, padded.length), expectPadded, 'inside ASCII');
        assert.equal(u.isValidUtf8(padded, 61, 61 + bytes.length), v.bad === null, 'as a sub-range');
      });

      test(`fails a stream exactly at the bad byte, fed one byte at a time: ${v.what}`, () => {
        const bytes = hex(v.bytes);
        let state = 0;
        for (let i = 0; i < bytes.length; i++) {
          state = u.utf8Continue(state, bytes, i, i + 1);
          if (typeof v.bad === 'number' && i >= v.bad) assert.equal(state, UTF8_INVALID, `at byte ${i}`);
          else assert.notEqual(state, UTF8_INVALID, `at byte ${i}`);
        }
        if (v.bad === null) assert.equal(state, 0);
        if (v.bad === 'end') assert.ok(state > 0, 'a cut sequence leaves a held code point');
      });

      test(`gives the same verdict split at every pair of fragment boundaries: ${v.what}`, () => {
        const bytes = hex(v.bytes);
        const whole = u.utf8Continue(0, bytes, 0, bytes.length);
        if (v.bad === null) assert.equal(whole, 0);
        else if (v.bad === 'end') assert.ok(whole > 0);
        else assert.equal(whole, UTF8_INVALID);
        for (let a = 0; a <= bytes.length; a++) {
          for (let b = a; b <= bytes.length; b++) {
            assert.equal(feed(u, bytes, [a, b]), whole, `cut at ${a} and ${b}`);
          }
        }
      });
    }

    test('utf8InvalidAt says where the first bad byte is, whole and continued from the state of every prefix', () => {
      for (const v of vectors) {
        const bytes = hex(v.bytes);
        const expected = typeof v.bad === 'number' ? v.bad : -1;
        assert.equal(u.utf8InvalidAt(0, bytes, 0, bytes.length), expected, v.what);
        const padded = Buffer.concat([Buffer.alloc(61, 0x61), bytes, Buffer.alloc(70, 0x62)]);
        assert.equal(u.utf8InvalidAt(0, padded, 61, 61 + bytes.length), expected, `${v.what}, as a sub-range`);
        for (let cut = 0; cut <= bytes.length; cut++) {
          const state = u.utf8Continue(0, bytes, 0, cut);
          if (state === UTF8_INVALID) continue; // the bad byte lies before the cut
          const at = u.utf8InvalidAt(state, bytes, cut, bytes.length);
          assert.equal(at < 0 ? -1 : cut + at, expected, `${v.what}, cut at ${cut}`);
        }
      }
    });

    test('finds one bad byte at every position of a 64-byte block inside a long ASCII run', () => {
      const run = Buffer.alloc(64 * 4, 0x41);
      for (const bad of [0x80, 0xbf, 0xc0, 0xc1, 0xc3, 0xe2, 0xed, 0xf0, 0xf4, 0xf5, 0xf8, 0xfc, 0xfe, 0xff]) {
        for (let at = 0; at < run.length; at++) {
          const buf = Buffer.from(run);
          buf[at] = bad;
          // A lead byte followed by ASCII is cut short: invalid, except when
          // it is the last byte, where the stream may go on.
          assert.equal(u.isValidUtf8(buf, 0, buf.length), false, `0x${bad.toString(16)} at ${at}`);
          const state = u.utf8Continue(0, buf, 0, buf.length);
          const leadAtEnd = at === buf.length - 1 && bad >= 0xc2 && bad <= 0xf4;
          assert.equal(state === UTF8_INVALID, !leadAtEnd, `stream: 0x${bad.toString(16)} at ${at}`);
          // A bad lead is the bad byte; a good lead is cut short by the ASCII after it.
          const isLead = bad >= 0xc2 && bad <= 0xf4;
          assert.equal(u.utf8InvalidAt(0, buf, 0, buf.length), leadAtEnd ? -1 : isLead ? at + 1 : at, `where: 0x${bad.toString(16)} at ${at}`);
        }
      }
    });

    test('accepts a multi-byte character at every position of a long ASCII run', () => {
      for (const ch of ['é', '€', '😀']) {
        const enc = Buffer.from(ch);
        for (let at = 0; at + enc.length <= 200; at++) {
          const buf = Buffer.alloc(200, 0x7a);
          enc.copy(buf, at);
          assert.equal(u.isValidUtf8(buf, 0, buf.length), true, `${ch} at ${at}`);
          assert.equal(u.utf8Continue(0, buf, 0, buf.length), 0, `stream: ${ch} at ${at}`);
        }
      }
    });

    test('holds a partial code point across fragments with the documented state encoding', () => {
      const euro = hex('e282ac');
      assert.equal(u.utf8Continue(0, euro, 0, 1), (1 << 24) | (0xe2 << 16));
      assert.equal(u.utf8Continue(0, euro, 0, 2), (2 << 24) | (0xe2 << 16) | (0x82 << 8));
      assert.equal(u.utf8Continue((1 << 24) | (0xe2 << 16), euro, 1, 2), (2 << 24) | (0xe2 << 16) | (0x82 << 8));
      assert.equal(u.utf8Continue((2 << 24) | (0xe2 << 16) | (0x82 << 8), euro, 2, 3), 0);
      const grin = hex('f09f9880');
      assert.equal(u.utf8Continue(0, grin, 0, 3), (3 << 24) | (0xf0 << 16) | (0x9f << 8) | 0x98);
      assert.equal(u.utf8Continue(UTF8_INVALID, grin, 0, 4), UTF8_INVALID, 'invalid stays invalid');
      assert.equal(u.utf8Continue((1 << 24) | (0xe2 << 16), euro, 1, 1), (1 << 24) | (0xe2 << 16), 'empty fragment');
    });

    test('checks a long mixed text cut into fragments at every offset near a 64-byte boundary', () => {
      const text = Buffer.from('Grüße, 世界! 😀 '.repeat(40));
      for (let cut = 0; cut < 200; cut++) {
        assert.equal(feed(u, text, [cut]), 0, `cut at ${cut}`);
        assert.equal(feed(u, text, [cut, cut + 64, cut + 129]), 0, `cuts from ${cut}`);
      }
      const bad = Buffer.from(text);
      bad[333] = 0xff;
      for (let cut = 0; cut < bad.length; cut += 7) assert.equal(feed(u, bad, [cut]), UTF8_INVALID, `cut at ${cut}`);
    });
  });
}
