/**
 * UTF-8 validation: the addon (whole buffer and incremental), the
 * src/native.ts export (thresholds included), utf-8-validate (the addon ws
 * uses), Node's buffer.isUtf8 and a fatal TextDecoder. Two inputs: ASCII, and
 * mixed text (Latin-1 letters, CJK, emoji). Run with `npm run bench:micro`.
 */
import { isUtf8 } from 'node:buffer';
import { createRequire } from 'node:module';
import * as wavecast from '../../src/native.js';
import { SIZES, measure, table, type Results } from './measure.js';

const require = createRequire(import.meta.url);
const utf8Validate = require('utf-8-validate') as (buf: Buffer) => boolean;
const validateNative = /\[native code\]/.test(utf8Validate.toString());
const decoder = new TextDecoder('utf-8', { fatal: true });

/** `size` bytes of valid UTF-8 cut from repeats of `sample` (ASCII-padded at the end). */
function text(sample: string, size: number): Buffer {
  const unit = Buffer.from(sample);
  const buf = Buffer.alloc(size, 0x20);
  let i = 0;
  // Copy whole units only, and fill the rest with whole characters of ASCII.
  while (i + unit.length <= size) i += unit.copy(buf, i);
  if (!isUtf8(buf)) throw new Error('bench input is not UTF-8');
  return buf;
}

const inputs: [string, string][] = [
  ['ASCII', 'The quick brown fox jumps over the lazy dog. '],
  ['mixed text', 'Grüße aus Köln, 世界你好, 😀👍 ok; '],
];

for (const [label, sample] of inputs) {
  const results: Results = new Map();
  for (const [column, size] of SIZES.entries()) {
    const buf = text(sample, size);
    const tasks: Record<string, () => unknown> = {
      'buffer.isUtf8 (Node built-in)': () => isUtf8(buf),
      [`utf-8-validate (${validateNative ? 'native' : 'its JS fallback'})`]: () => utf8Validate(buf),
      "TextDecoder('utf-8', { fatal: true })": () => decoder.decode(buf),
    };
    if (wavecast.addon) {
      const { addon } = wavecast;
      tasks[`wavecast addon.isValidUtf8 (${addon.simd.utf8})`] = () => addon.isValidUtf8(buf, 0, size);
      tasks[`wavecast addon.utf8Continue (incremental, ${addon.simd.utf8})`] = () => addon.utf8Continue(0, buf, 0, size);
    }
    tasks[`wavecast isValidUtf8, src/native.ts (backend ${wavecast.backend}, thresholds)`] = () =>
      wavecast.isValidUtf8(buf, 0, size);
    tasks[`wavecast utf8Continue, src/native.ts (backend ${wavecast.backend}, thresholds)`] = () =>
      wavecast.utf8Continue(0, buf, 0, size);
    await measure(results, column, size, tasks);
  }
  console.log(table(`UTF-8 validation, ${label}`, results));
  console.log('');
}
