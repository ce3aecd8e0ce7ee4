/**
 * The one place that loads the native addon. The backend is chosen once, at
 * load: the addon when it is built (or prebuilt) and `WAVECAST_NO_NATIVE` is
 * not set to a true value, the pure-JS fallback otherwise; {@link nativeStatus}
 * says why (`WAVECAST_DEBUG=1` prints it). Both expose the
 * same functions with the same signatures, and every caller goes through the
 * exports below, so the rest of the library never knows which one runs.
 *
 * Small inputs stay in JS even with the addon, where crossing into C++ costs
 * more than it saves; the thresholds come from `npm run bench:micro`.
 */
import { Buffer } from 'node:buffer';
import { closeSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import * as jsMask from './fallback/mask.js';
import * as jsUtf8 from './fallback/utf8.js';

/** Which implementation of the hot functions this process runs. */
export type Backend = 'native' | 'js';

/**
 * Writes `head` then `body` (when given) to each of `fds[0, count)` with one
 * non-blocking `sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL)` per descriptor.
 * `results[i]` receives the bytes the kernel took for `fds[i]` (may be fewer
 * than offered: the rest is the caller's to queue, after them) or `-errno`:
 * `-EAGAIN` when the send buffer is full, `-EPIPE` / `-ECONNRESET` when the
 * peer is gone (never a SIGPIPE), `-EBADF` for a negative descriptor.
 */
export type WriteBatch = (
  fds: Int32Array,
  count: number,
  head: Uint8Array,
  results: Int32Array,
  body?: Uint8Array | null,
) => void;

/**
 * The native transport's handle (see `native/transport-*.cc` and
 * `transport.ts`, its only user). A connection is named by a handle: its
 * slot and the slot's generation (`generation * 2^24 + slot`), so a handle
 * kept after the connection closed names nothing, even once the slot serves
 * a newer connection. Every method is a no-op (or returns -1 / false) for a
 * handle that does not name a connection in a state the method applies to.
 */
export interface TransportBinding {
  /** Events of the current batch: type, slot, generation, a, b (int32 each). */
  readonly events: Int32Array;
  listen(host: string, port: number, backlog: number, ipv6Only: boolean): number;
  /** Listens on an inherited listening socket other processes share; the port it is bound to. */
  listenFd(fd: number): number;
  /** TCP_DEFER_ACCEPT on the listener, in seconds (0: off); heads are then read right after each accept. */
  deferAccept(seconds: number): void;
  closeListener(): void;
  /** Bytes queued for the connection afterwards, or -1 when it is not open. */
  write(handle: number, head: Uint8Array, body: Uint8Array | null): number;
  /** Several buffers in as few system calls as the kernel allows; bytes queued afterwards, or -1. */
  writev(handle: number, buffers: readonly Uint8Array[]): number;
  writeBatch(handles: Float64Array, count: number, head: Uint8Array, results: Int32Array, body?: Uint8Array | null): void;
  /**
   * Connection i gets `bytes[ends[i - 1], ends[i])` (from 0 for the first);
   * results as `writeBatch`'s. Splice k (`splices[4k .. 4k + 3]`: run, at,
   * start, end) puts `batch[start, end)` into run `run` at `at` of bytes,
   * uncopied; in order of run, then at; at most 32 a run.
   */
  writeEach(
    handles: Float64Array,
    ends: Uint32Array,
    count: number,
    bytes: Uint8Array,
    results: Int32Array,
    batch?: Uint8Array | null,
    splices?: Uint32Array | null,
    spliceCount?: number,
  ): void;
  accept(handle: number, response: Uint8Array): boolean;
  setFastOpen(budget: number, path: string, maxHead: number): void;
  /** The most one read takes from a connection (clamped to 64 .. 256 KiB by the transport). */
  setReadSize(bytes: number): void;
  /** Whether a large batch nobody kept is taken back once its call returns (`borrowFrames`; src/lease.ts). */
  lendBatches(on: boolean): void;
  reject(handle: number, response: Uint8Array): boolean;
  release(handle: number): number;
  end(handle: number): void;
  destroySoon(handle: number): void;
  destroy(handle: number): void;
  pause(handle: number): void;
  resume(handle: number): void;
  bytesOut(handle: number): number;
  peer(handle: number): [string, number] | undefined;
  /** Closes connections in their handshake after `age` ms, and heads not complete after `headCap` ms whatever `age` (0: no limit but that). */
  sweep(age: number, headCap: number): number;
  /** Connections accepted and not yet upgraded, refused or released. */
  handshaking(): number;
  close(): void;
}

/** What the native transport calls with each batch. */
export type TransportCallback = (count: number, data: Buffer | undefined, heads: Buffer | undefined) => void;

/** The functions the addon exports (see `native/addon.cc`). */
export interface Addon {
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
  utf8InvalidAt(state: number, buf: Uint8Array, start: number, end: number): number;
  /** Absent where the platform has no socket descriptors to write to (not Linux). */
  writeBatch?: WriteBatch;
  /**
   * Absent where there is no epoll (not Linux). `callback(count, data,
   * heads)` gets each batch of events, the bytes they carry and, apart, the
   * request heads.
   */
  createTransport?: (callback: TransportCallback) => TransportBinding;
  /**
   * With `createTransport`: a listening, non-blocking, close-on-exec socket
   * no transport polls, as `[fd, port]`, for workers to inherit.
   */
  listenSocket?: (host: string, port: number, backlog: number, ipv6Only: boolean) => [number, number];
  /**
   * With `createTransport`: the 101 the transport writes itself for a
   * complete request head (native/handshake-fast.h), or null where the JS
   * decision answers. For tests.
   */
  fastUpgrade?: (head: Uint8Array, path: string, maxHead: number) => string | null;
  /**
   * With `createTransport`: the transport's data blocks in this process, as
   * `[made, live, spare]` (ever allocated; allocated now, lent or spare;
   * spare). For tests.
   */
  transportBlocks?: () => [number, number, number];
  /** The SIMD code paths the addon picked for this CPU. */
  simd: { mask: string; utf8: string };
}

function envFlag(name: string): boolean {
  const v = process.env[name];
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

/**
 * Why the addon is or is not in use:
 * - `'loaded'`: the addon runs (`path` says which file);
 * - `'disabled'`: `WAVECAST_NO_NATIVE` forced the JS fallback;
 * - `'no-build'`: no prebuild for this platform and no local build
 *   (`npm run build:native` compiles one);
 * - `'load-error'`: a build was found (`path`) but failed to load; `reason`
 *   carries the loader's message (a binary for another CPU or an old glibc,
 *   say).
 */
export type NativeState = 'loaded' | 'disabled' | 'no-build' | 'load-error';

/** How the backend was chosen at load; also in `server.stats().native`. */
export interface NativeStatus {
  /** Loaded, or which of the three reasons it is not (see {@link NativeState}). */
  readonly state: NativeState;
  /** `process.platform-process.arch`, the prebuilds/ folder this process looks for. */
  readonly platform: string;
  /** The addon file that loaded or failed to, or null when none was found or tried. */
  readonly path: string | null;
  /** One line for a person: what loaded, or why nothing did. */
  readonly reason: string;
}

interface Loaded {
  addon: Addon | null;
  status: NativeStatus;
}

function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0].trim();
}

/** ELF e_machine values of the CPUs Node runs on, named as `process.arch` names them. */
const ELF_MACHINES: Record<number, string> = { 0x03: 'ia32', 0x28: 'arm', 0x3e: 'x64', 0xb7: 'arm64', 0xf3: 'riscv64' };

/**
 * The CPU an ELF file was built for when it is not this process's, else null.
 * glibc reports a library for another CPU as "cannot open shared object
 * file: No such file or directory", which sends people looking for a file
 * that is there.
 */
function foreignCpu(file: string): string | null {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const head = Buffer.alloc(20);
    if (readSync(fd, head, 0, 20, 0) < 20 || head.readUInt32BE(0) !== 0x7f454c46) return null;
    const machine = head[5] === 2 ? head.readUInt16BE(18) : head.readUInt16LE(18);
    const arch = ELF_MACHINES[machine] ?? `ELF machine 0x${machine.toString(16)}`;
    return arch === process.arch ? null : arch;
  } catch {
    return null;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function loadAddon(): Loaded {
  const platform = `${process.platform}-${process.arch}`;
  const fail = (state: NativeState, path: string | null, reason: string): Loaded => ({
    addon: null,
    status: { state, platform, path, reason },
  });
  if (envFlag('WAVECAST_NO_NATIVE')) return fail('disabled', null, 'WAVECAST_NO_NATIVE is set: the pure-JS fallback runs');
  const require = createRequire(import.meta.url);
  let gypBuild: { path(dir: string): string };
  try {
    gypBuild = require('node-gyp-build') as typeof gypBuild;
  } catch (error) {
    return fail('load-error', null, `node-gyp-build, which finds the addon, did not load: ${firstLine(error)}`);
  }
  // dist/src/native.js -> the package root, where binding.gyp and prebuilds/ are.
  const root = fileURLToPath(new URL('../..', import.meta.url));
  let file: string;
  try {
    // build/Release first, then prebuilds/<platform>-<arch>/ (WAVECAST_PREBUILD
    // names another folder to look in, as node-gyp-build documents).
    file = gypBuild.path(root);
  } catch (error) {
    return fail(
      'no-build',
      null,
      `no prebuild for ${platform} and no local build (npm run build:native compiles one): ${firstLine(error)}`,
    );
  }
  try {
    const addon = require(file) as Addon;
    return { addon, status: { state: 'loaded', platform, path: file, reason: `loaded ${file}` } };
  } catch (error) {
    const cpu = foreignCpu(file);
    const why = cpu === null ? '' : ` (it is built for ${cpu}, this process is ${process.arch})`;
    return fail('load-error', file, `${file} failed to load${why}: ${firstLine(error)}`);
  }
}

const loaded = loadAddon();

/**
 * The addon itself, without the size thresholds below, or `null` when the JS
 * fallback runs. For tests and benchmarks; the library calls the wrapped
 * exports.
 */
export const addon: Addon | null = loaded.addon;

/** `'native'` when the addon is loaded, `'js'` otherwise. */
export const backend: Backend = addon ? 'native' : 'js';

/**
 * Why {@link backend} is what it is, decided once at load. With
 * `WAVECAST_DEBUG` set it is also printed once to stderr, so a silent fall
 * back to JS (a missing prebuild, a binary for another CPU) can be seen.
 */
export const nativeStatus: NativeStatus = loaded.status;

if (envFlag('WAVECAST_DEBUG')) {
  const simd = addon ? ` (SIMD: mask ${addon.simd.mask}, utf8 ${addon.simd.utf8})` : '';
  process.stderr.write(`wavecast: backend ${backend}, addon ${nativeStatus.state}: ${nativeStatus.reason}${simd}\n`);
}

/*
 * Below these sizes (bytes) the JS path is used even with the addon; from
 * `npm run bench:micro` and crossover runs at 32..128 B and 1..16 KiB on an
 * AMD EPYC (AVX2), pinned to one CPU. A call into the addon costs about 55 ns
 * whatever the size; the JS loop masks about 1.5 bytes per ns.
 *
 * - unmask: the JS loop wins up to about 96 B, the addon from 112 B on.
 * - maskInto: six arguments cost a little more to check; the addon wins from
 *   about 128 B.
 * - UTF-8: Node's built-in `buffer.isUtf8` (simdutf, called without N-API)
 *   is as fast as the addon up to 8 KiB and faster below 4 KiB, so the JS
 *   fallback, which uses it above 24 B, runs below 16 KiB; from 16 KiB the
 *   addon is faster on ASCII and level on other text.
 */
const UNMASK_NATIVE_MIN = 112;
const MASK_INTO_NATIVE_MIN = 128;
const UTF8_NATIVE_MIN = 16 * 1024;

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
      sourceEnd - sourceStart < MASK_INTO_NATIVE_MIN
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

/**
 * The batched multi-socket write, or `null` when the JS backend runs or the
 * platform has no descriptors to write to; then each socket is written with
 * `socket.write()`. Pass only descriptors from {@link writableFd}.
 */
export const writeBatch: WriteBatch | null = addon?.writeBatch ?? null;

/**
 * The native transport's constructor, or `null` with the JS backend, without
 * epoll, or with `WAVECAST_NO_NATIVE_TRANSPORT` set (the addon's other
 * functions still run); then the server listens with Node's net and http
 * modules.
 */
export const createTransport: NonNullable<Addon['createTransport']> | null = envFlag('WAVECAST_NO_NATIVE_TRANSPORT')
  ? null
  : (addon?.createTransport ?? null);

/**
 * Creates the listening socket the workers of a primary share (see
 * `cluster/shared-listener.ts`); `null` wherever `createTransport` is.
 */
export const listenSocket: NonNullable<Addon['listenSocket']> | null =
  createTransport === null ? null : (addon?.listenSocket ?? null);

/** @internal See `Addon.fastUpgrade`; `null` wherever `createTransport` is. */
export const fastUpgrade: NonNullable<Addon['fastUpgrade']> | null =
  createTransport === null ? null : (addon?.fastUpgrade ?? null);

/** @internal See `Addon.transportBlocks`; `null` wherever `createTransport` is. */
export const transportBlocks: NonNullable<Addon['transportBlocks']> | null =
  createTransport === null ? null : (addon?.transportBlocks ?? null);

/** The parts of a libuv stream handle that {@link writableFd} reads. */
interface StreamHandle {
  fd?: unknown;
  writeQueueSize?: unknown;
}

/**
 * The OS descriptor of `socket` when bytes written to it natively would go out
 * in order, or -1. That holds only for a plain TCP (or pipe) socket that is
 * connected and writable and has nothing queued, neither in the JS stream
 * (`writableLength`, corked writes included) nor in libuv (`writeQueueSize`).
 * TLS sockets are -1: their descriptor carries ciphertext.
 */
export function writableFd(socket: Socket): number {
  if ((socket as { encrypted?: unknown }).encrypted === true) return -1;
  if (socket.destroyed || socket.connecting || !socket.writable || socket.writableLength !== 0) return -1;
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  if (!handle || handle.writeQueueSize !== 0) return -1;
  const fd = handle.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : -1;
}

/**
 * Where a failed UTF-8 check failed: the offset from `start` of the first
 * invalid byte given the state before the range, or -1. Runs once per
 * failure, to say where in the close reason and the error.
 */
export const utf8InvalidAt: Addon['utf8InvalidAt'] = addon ? addon.utf8InvalidAt : jsUtf8.utf8InvalidAt;

/**
 * The offset to report for a range that failed a whole-message check: the
 * first invalid byte, or the end when the range stops inside a code point.
 */
export function utf8FailureOffset(buf: Uint8Array, start: number, end: number): number {
  const at = utf8InvalidAt(0, buf, start, end);
  return at < 0 ? end - start : at;
}
