/**
 * A server's options, checked once: bad values throw typed errors at once,
 * and what the rest of the server reads is a `Settings` with every default
 * filled in.
 */
import http from 'node:http';
import https from 'node:https';
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
  /** TCP_DEFER_ACCEPT of the native listener, in whole seconds (0: off). */
  readonly tcpDeferAccept: number;
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
  /** Received frames are valid only inside their `message` listener (`ServerOptions.borrowFrames`). */
  readonly borrowFrames: boolean;
}

/** Every option `ServerOptions` has (the compiler keeps this list complete). */
const KNOWN_OPTIONS = Object.keys({
  host: true,
  port: true,
  backlog: true,
  tls: true,
  server: true,
  noServer: true,
  path: true,
  maxPayload: true,
  heartbeatCheckInterval: true,
  heartbeatIdleTime: true,
  pingInterval: true,
  handshakeTimeout: true,
  tcpDeferAccept: true,
  closeTimeout: true,
  maxConnections: true,
  subprotocols: true,
  maxBackpressure: true,
  backpressure: true,
  perMessageDeflate: true,
  workerNum: true,
  adapter: true,
  instanceId: true,
  nativeTransport: true,
  borrowFrames: true,
} satisfies Record<keyof ServerOptions, true>);

/** Edit distance (insertions, deletions, substitutions), for "did you mean". */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length];
}

/** The known option closest to `name` (ignoring case), or null when none is close. */
export function closestOption(name: string): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const known of KNOWN_OPTIONS) {
    const d = distance(name.toLowerCase(), known.toLowerCase());
    if (d < bestDistance) {
      best = known;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : null;
}

/** A value as an error message names it: `the string '0'`, `a function`, `null`. */
function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return `the string '${value}'`;
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object') return `an object (${value.constructor?.name ?? 'no prototype'})`;
  return `${typeof value} ${String(value)}`;
}

function checkServer(server: unknown): void {
  if (server instanceof http.Server || server instanceof https.Server) return;
  const candidate = server as { listen?: unknown; use?: unknown; server?: unknown } | null;
  if (typeof server === 'function' && typeof candidate!.listen === 'function') {
    throw new TypeError(
      'server must be an http.Server or https.Server, got a function with listen(), like an Express app: ' +
        'pass what app.listen() returns (or http.createServer(app))',
    );
  }
  if (candidate !== null && typeof candidate === 'object' && candidate.server instanceof http.Server) {
    throw new TypeError('server must be an http.Server or https.Server, got an object that has one in .server (Fastify?): pass that one');
  }
  throw new TypeError(`server must be an http.Server or https.Server, got ${describe(server)}`);
}

function checkTls(tls: unknown): void {
  if (tls === null || typeof tls !== 'object') throw new TypeError(`tls must be an object of TLS options, got ${describe(tls)}`);
  const o = tls as { key?: unknown; cert?: unknown; pfx?: unknown; SNICallback?: unknown };
  const hasPair = o.key !== undefined && o.cert !== undefined;
  if (!hasPair && o.pfx === undefined && o.SNICallback === undefined) {
    throw new TypeError('tls needs a certificate: key and cert (or pfx, or an SNICallback)');
  }
}

/** Checks the options a user mistypes most, with messages that say what was wrong. */
function checkShape(options: ServerOptions): void {
  for (const name of Object.keys(options)) {
    if (KNOWN_OPTIONS.includes(name)) continue;
    const closest = closestOption(name);
    throw new TypeError(
      closest === null
        ? `unknown option '${name}' (known options: ${KNOWN_OPTIONS.join(', ')})`
        : `unknown option '${name}': did you mean ${closest}?`,
    );
  }
  if (options.port !== undefined && typeof options.port !== 'number') {
    throw new TypeError(`port must be a number, got ${describe(options.port)}`);
  }
  if (options.host !== undefined && typeof options.host !== 'string') {
    throw new TypeError(`host must be a string, got ${describe(options.host)}`);
  }
  if (options.path !== undefined && (typeof options.path !== 'string' || !options.path.startsWith('/'))) {
    throw new TypeError(`path must be a string that starts with '/', got ${describe(options.path)}`);
  }
  if (options.tls !== undefined) checkTls(options.tls);
  if (options.server !== undefined) checkServer(options.server);
  if (options.noServer) {
    const given = (['port', 'host', 'tls'] as const).filter((name) => options[name] !== undefined);
    if (given.length > 0) {
      throw new TypeError(`noServer takes no ${given.join(' or ')}: upgrades arrive through handleUpgrade() from your own server`);
    }
  }
}

/** Checks a time option (ms); `fallback` when it is not given. */
export function checkTime(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative number of milliseconds, got ${String(value)}`);
  }
  return value;
}

/** A quiet connection is pinged after this long by default (uWS.js and Bun ping idle sockets too). */
export const DEFAULT_PING_INTERVAL = 30_000;
/** By default a connection is closed after this many pings went unanswered. */
const MISSED_PINGS = 2;

/**
 * The heartbeat's timings. On by default: a connection quiet for
 * `pingInterval` (30 s) is pinged, and again each `pingInterval`; one quiet
 * for `heartbeatIdleTime` (3 x `pingInterval`, so after 2 unanswered pings)
 * is closed. Given one of the two, the other follows from it; Swoole's
 * `heartbeatCheckInterval` alone keeps Swoole's idle time (twice the
 * interval). `heartbeatIdleTime: 0` or `pingInterval: 0` (or
 * `heartbeatCheckInterval: 0` alone) turns the heartbeat off.
 */
function resolveHeartbeat(options: ServerOptions): Settings['heartbeat'] {
  const check = checkTime('heartbeatCheckInterval', options.heartbeatCheckInterval, -1);
  const givenIdle = options.heartbeatIdleTime !== undefined;
  const givenPing = options.pingInterval !== undefined;
  if (check === 0 && !givenIdle && !givenPing) return { interval: 0, idleTime: 0, pingInterval: 0 };
  const givenPingInterval = givenPing ? checkTime('pingInterval', options.pingInterval, 0) : undefined;
  const idleTime = givenIdle
    ? checkTime('heartbeatIdleTime', options.heartbeatIdleTime, 0)
    : check > 0
      ? 2 * check
      : (MISSED_PINGS + 1) * (givenPingInterval ?? DEFAULT_PING_INTERVAL);
  const pingInterval = givenPingInterval ?? Math.floor(idleTime / (MISSED_PINGS + 1));
  if (idleTime > 0 && pingInterval >= idleTime) {
    throw new RangeError('pingInterval must be shorter than heartbeatIdleTime, or pinged clients are cut');
  }
  const shortest = Math.min(...[idleTime, pingInterval].filter((t) => t > 0));
  // One sweep a third of the shortest time: pings and closes land within a third of their time.
  const interval = check > 0 ? check : Number.isFinite(shortest) ? Math.max(10, Math.floor(shortest / 3)) : 0;
  return { interval, idleTime, pingInterval };
}

/** Checks `options` and fills in the defaults; throws `TypeError` / `RangeError` on a bad value. */
export function resolveOptions(options: ServerOptions): Settings {
  if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
  checkShape(options);
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
  if (options.server !== undefined && (options.tls !== undefined || options.port !== undefined || options.host !== undefined)) {
    throw new TypeError('server cannot be combined with port, host or tls: the attached server listens');
  }
  const heartbeat = resolveHeartbeat(options);
  const handshakeTimeout = checkTime('handshakeTimeout', options.handshakeTimeout, 10_000);
  const closeTimeout = checkTime('closeTimeout', options.closeTimeout, 5_000);
  // The kernel counts in seconds (it retransmits the SYN-ACK that many times at most).
  const tcpDeferAccept = Math.min(Math.ceil(checkTime('tcpDeferAccept', options.tcpDeferAccept, 1_000) / 1000), 3600);
  const maxConnections = options.maxConnections ?? Infinity;
  const deflate = resolveDeflateOptions(options.perMessageDeflate);
  const maxBackpressure = options.maxBackpressure ?? MiB;
  if (!(maxBackpressure >= 0)) throw new RangeError('maxBackpressure must be a non-negative number of bytes');
  const backpressure = options.backpressure ?? 'drop';
  if (backpressure !== 'drop' && backpressure !== 'close') {
    throw new TypeError(`backpressure must be 'drop' or 'close', got ${String(options.backpressure)}`);
  }
  if (!(maxConnections >= 0)) throw new RangeError('maxConnections must be a non-negative number');
  const ownsHttpServer = options.server === undefined && !options.noServer;
  const workerNum = options.workerNum ?? 1;
  if (!Number.isInteger(workerNum) || workerNum < 1) {
    throw new RangeError(`workerNum must be a positive integer, got ${String(options.workerNum)}`);
  }
  if (workerNum > 1 && !ownsHttpServer) throw new TypeError('workerNum > 1 needs the server to listen itself');
  if (options.instanceId !== undefined) ownerCode(options.instanceId, 0);
  const borrowFrames = options.borrowFrames ?? false;
  if (typeof borrowFrames !== 'boolean') throw new TypeError(`borrowFrames must be a boolean, got ${describe(borrowFrames)}`);
  return {
    options: { ...options },
    maxPayload,
    closeTimeout,
    handshakeTimeout,
    tcpDeferAccept,
    maxConnections,
    maxBackpressure,
    backpressure,
    deflate,
    heartbeat,
    ownsHttpServer,
    workerNum,
    borrowFrames,
  };
}
