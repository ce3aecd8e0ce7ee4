/**
 * Unmasking in place: the addon called directly, the pure-JS loop, the
 * src/native.ts export (thresholds included) and bufferutil, the addon ws
 * uses. Run with `npm run bench:micro` (pinned to CPU 1).
 */
import { createRequire } from 'node:module';
import * as jsMask from '../../src/fallback/mask.js';
import * as wavecast from '../../src/native.js';
import { SIZES, measure, table, type Results } from './measure.js';

const require = createRequire(import.meta.url);
const bufferutil = require('bufferutil') as { unmask(buffer: Buffer, mask: Buffer): void };
// bufferutil falls back to JS when its prebuild does not load: say which ran.
const bufferutilNative = !/^function\s*\w*\s*\(buffer, mask\)/.test(bufferutil.unmask.toString());

const MASK = 0x37fa213d;
const maskBuffer = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);

const results: Results = new Map();
for (const [column, size] of SIZES.entries()) {
  const buf = Buffer.alloc(size, 0x61);
  const tasks: Record<string, () => unknown> = {
    'JS loop (src/fallback/mask.ts)': () => jsMask.unmask(buf, 0, size, MASK),
    [`bufferutil.unmask (${bufferutilNative ? 'native' : 'its JS fallback'})`]: () => bufferutil.unmask(buf, maskBuffer),
  };
  if (wavecast.addon) {
    const { addon } = wavecast;
    tasks[`wavecast addon.unmask (${addon.simd.mask})`] = () => addon.unmask(buf, 0, size, MASK);
  }
  tasks[`wavecast unmask, src/native.ts (backend ${wavecast.backend}, thresholds)`] = () =>
    wavecast.unmask(buf, 0, size, MASK);
  await measure(results, column, size, tasks);
}
console.log(table('unmask (in place)', results));
console.log('');
