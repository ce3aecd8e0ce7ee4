/**
 * The one place that loads the native addon. The backend is chosen once, at
 * load: the addon when it is built (or prebuilt) and `WAVECAST_NO_NATIVE` is
 * not set to a true value, the pure-JS fallback otherwise. Both expose the
 * same functions with the same signatures, and every caller goes through the
 * exports below, so the rest of the library never knows which one runs.
 *
 * Small inputs stay in JS even with the addon, where crossing into C++ costs
 * more than it saves; the thresholds come from `npm run bench:micro`.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as jsMask from './fallback/mask.js';
import * as jsUtf8 from './fallback/utf8.js';

/** Which implementation of the hot functions this process runs. */
export type Backend = 'native' | 'js';

/** The functions the addon exports (see `native/addon.cc`). */
interface Addon {
  unmask(buf: Uint8Array, start: number, end: number, mask: number): void;
  maskInto(
    source: Uint8Array,
    sourceStart: number,
    sourceEnd: number,
    target: Uint8Array,
    targetStart: number,
    mask: number,
  ): void;
  isValidUtf8(buf: Uint8Array, start: number, end: number): boolean;
  utf8Continue(state: number, buf: Uint8Array, start: number, end: number): number;
}

function disabledByEnv(): boolean {
  const v = process.env.WAVECAST_NO_NATIVE;
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

function loadAddon(): Addon | null {
  if (disabledByEnv()) return null;
  try {
    const require = createRequire(import.meta.url);
    const load = require('node-gyp-build') as (dir: string) => Addon;
    // dist/src/native.js -> the package root, where binding.gyp and prebuilds/ are.
    return load(fileURLToPath(new URL('../..', import.meta.url)));
  } catch {
    return null;
  }
}

const addon = loadAddon();

/** `'native'` when the addon is loaded, `'js'` otherwise. */
export const backend: Backend = addon ? 'native' : 'js';

/** Below these sizes (bytes) the JS path is used even with the addon. */
const UNMASK_NATIVE_MIN = 64;
const UTF8_NATIVE_MIN = 64;

export { rotateMask } from './fallback/mask.js';
export { UTF8_INVALID } from './fallback/utf8.js';

/** XORs `buf[start, end)` in place with a mask read as a big-endian uint32. */
export const unmask: Addon['unmask'] = addon
  ? (buf, start, end, mask) =>
      end - start < UNMASK_NATIVE_MIN ? jsMask.unmask(buf, start, end, mask) : addon.unmask(buf, start, end, mask)
  : jsMask.unmask;

/** Copies `source[sourceStart, sourceEnd)` into `target` at `targetStart`, XOR the mask. */
export const maskInto: Addon['maskInto'] = addon
  ? (source, sourceStart, sourceEnd, target, targetStart, mask) =>
      sourceEnd - sourceStart < UNMASK_NATIVE_MIN
        ? jsMask.maskInto(source, sourceStart, sourceEnd, target, targetStart, mask)
        : addon.maskInto(source, sourceStart, sourceEnd, target, targetStart, mask)
  : jsMask.maskInto;

/** Whether `buf[start, end)` is well-formed UTF-8. */
export const isValidUtf8: Addon['isValidUtf8'] = addon
  ? (buf, start, end) =>
      end - start < UTF8_NATIVE_MIN ? jsUtf8.isValidUtf8(buf, start, end) : addon.isValidUtf8(buf, start, end)
  : jsUtf8.isValidUtf8;

/**
 * Continues an incremental UTF-8 check (state 0 at a message start; see
 * `fallback/utf8.ts` for the state encoding shared with the addon).
 */
export const utf8Continue: Addon['utf8Continue'] = addon
  ? (state, buf, start, end) =>
      end - start < UTF8_NATIVE_MIN
        ? jsUtf8.utf8Continue(state, buf, start, end)
        : addon.utf8Continue(state, buf, start, end)
  : jsUtf8.utf8Continue;
