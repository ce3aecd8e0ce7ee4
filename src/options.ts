/**
 * A server's options, checked once: bad values throw typed errors at once,
 * and what the rest of the server reads is a `Settings` with every default
 * filled in.
 */
import { ownerCode } from './cluster/fd.js';
import { resolveDeflateOptions, type ResolvedDeflateOptions } from './deflate.js';
import type { ServerOptions } from './server-types.js';

const MiB = 1024 * 1024;

/** A server's options with defaults applied, as the rest of the server reads them. */
export interface Settings {
  /** The options as given (a copy). */
  readonly options: ServerOptions;
  readonly maxPayload: number;
  readonly closeTimeout: number;
  readonly handshakeTimeout: number;
  readonly maxConnections: number;
  readonly maxBackpressure: number;
  readonly backpressure: 'drop' | 'close';
  /** permessage-deflate's settings, null when off. */
  readonly deflate: ResolvedDeflateOptions | null;
  /** Sweep interval, idle time and ping interval of the heartbeat (0 = off). */
  readonly heartbeat: { readonly interval: number; readonly idleTime: number; readonly pingInterval: number };
  /** The server listens itself (neither `server` nor `noServer`). */
  readonly ownsHttpServer: boolean;
  readonly workerNum: number;
}

/** Checks a time option (ms); `fallback` when it is not given. */
export function checkTime(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative number of milliseconds, got ${String(value)}`);
  }
  return value;
}

/** Checks `options` and fills in the defaults; throws `TypeError` / `RangeError` on a bad value. */
export function resolveOptions(options: ServerOptions): Settings {
  if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
  const maxPayload = options.maxPayload ?? 2 * MiB;
  if (!Number.isSafeInteger(maxPayload) || maxPayload < 0) {
    throw new RangeError(`maxPayload must be a non-negative integer, got ${String(options.maxPayload)}`);
  }
  if (options.port !== undefined && (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535)) {
    throw new RangeError(`port must be an integer from 0 to 65535, got ${String(options.port)}`);
  }
  if (options.server !== undefined && options.noServer) {
    throw new TypeError('server and noServer cannot be used together');
  }
  if (options.server !== undefined && (options.tls !== undefined || options.port !== undefined)) {
    throw new TypeError('server cannot be combined with port or tls: the attached server listens');
  }
  const interval = checkTime('heartbeatCheckInterval', options.heartbeatCheckInterval, 0);
  const idleTime = checkTime('heartbeatIdleTime', options.heartbeatIdleTime, interval * 2);
  const pingInterval = checkTime('pingInterval', options.pingInterval, 0);
  if (idleTime > 0 && pingInterval >= idleTime) {
    throw new RangeError('pingInterval must be shorter than heartbeatIdleTime, or pinged clients are cut');
  }
  const handshakeTimeout = checkTime('handshakeTimeout', options.handshakeTimeout, 10_000);
  const closeTimeout = checkTime('closeTimeout', options.closeTimeout, 5_000);
  const maxConnections = options.maxConnections ?? Infinity;
  const deflate = resolveDeflateOptions(options.perMessageDeflate);
  const maxBackpressure = options.maxBackpressure ?? MiB;
  if (!(maxBackpressure >= 0)) throw new RangeError('maxBackpressure must be a non-negative number of bytes');
  const backpressure = options.backpressure ?? 'drop';
  if (backpressure !== 'drop' && backpressure !== 'close') {
    throw new TypeError(`backpressure must be 'drop' or 'close', got ${String(options.backpressure)}`);
  }
  if (!(maxConnections >= 0)) throw new RangeError('maxConnections must be a non-negative number');
  const sweep = [interval, pingInterval].filter((t) => t > 0);
  const ownsHttpServer = options.server === undefined && !options.noServer;
  const workerNum = options.workerNum ?? 1;
  if (!Number.isInteger(workerNum) || workerNum < 1) {
    throw new RangeError(`workerNum must be a positive integer, got ${String(options.workerNum)}`);
  }
  if (workerNum > 1 && !ownsHttpServer) throw new TypeError('workerNum > 1 needs the server to listen itself');
  if (options.instanceId !== undefined) ownerCode(options.instanceId, 0);
  return {
    options: { ...options },
    maxPayload,
    closeTimeout,
    handshakeTimeout,
    maxConnections,
    maxBackpressure,
    backpressure,
    deflate,
    heartbeat: {
      interval: sweep.length ? Math.min(...sweep) : 0,
      idleTime: interval > 0 ? idleTime : 0,
      pingInterval,
    },
    ownsHttpServer,
    workerNum,
  };
}
