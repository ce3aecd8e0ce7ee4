/**
 * Where a native listener binds (`host`, `port`, `backlog` as `net.Server`
 * reads them) and the errors it throws as `net.Server`'s. Shared by a lone
 * server's transport (`listen-native.ts`) and by the primary of `workerNum`
 * workers, which makes one listening socket that every worker inherits
 * (`listen-workers.ts`).
 */
import cluster from 'node:cluster';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { getSystemErrorMap } from 'node:util';

/** The environment variable that tells a worker which descriptor is the shared listener. */
export const LISTEN_FD_ENV = 'WAVECAST_LISTEN_FD';

/** Binds and listens on a numeric address; returns the port bound. Throws the addon's bare system error. */
export type Bind = (address: string, port: number, backlog: number, ipv6Only: boolean) => number;

/**
 * The error `net.Server` gives for a failed listen (`listen EADDRINUSE:
 * address already in use 127.0.0.1:9501`, with `address` and `port`), from
 * the transport's bare system error.
 */
function listenError(error: unknown, address: string, port: number): unknown {
  const cause = error as NodeJS.ErrnoException;
  if (typeof cause?.errno !== 'number' || typeof cause.code !== 'string') return error;
  // Not the listen itself (a failed DNS lookup of host is already Node's own error).
  if (cause.syscall !== 'bind' && cause.syscall !== 'listen') return error;
  const text = getSystemErrorMap().get(cause.errno)?.[1] ?? cause.message;
  const where = port > 0 ? ` ${address}:${port}` : ` ${address}`;
  const wrapped = new Error(`listen ${cause.code}: ${text}${where}`, { cause }) as NodeJS.ErrnoException & { address: string; port: number };
  wrapped.code = cause.code;
  wrapped.errno = cause.errno;
  wrapped.syscall = 'listen';
  wrapped.address = address;
  wrapped.port = port;
  return wrapped;
}

/**
 * Listens where `net.Server` would: with no host, the IPv6 any-address
 * taking IPv4 too, or IPv4 alone without IPv6; a host name is looked up.
 * Errors are `net.Server`'s.
 */
export async function bindLikeNet(options: { host?: string; port?: number; backlog?: number }, bind: Bind): Promise<number> {
  const { port = 0, backlog = 511, host } = options;
  let address = '::';
  try {
    if (host === undefined) {
      try {
        return bind(address, port, backlog, false);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EAFNOSUPPORT') throw error;
        address = '0.0.0.0';
        return bind(address, port, backlog, false);
      }
    }
    address = isIP(host) !== 0 ? host : (await lookup(host)).address;
    return bind(address, port, backlog, false);
  } catch (error) {
    // The transport's error is a bare system error; the app expects net.Server's.
    throw listenError(error, address, port);
  }
}

/** In a worker of a primary that shares its listening socket: the descriptor; else null. */
export function inheritedListenFd(): number | null {
  const value = process.env[LISTEN_FD_ENV];
  if (!cluster.isWorker || value === undefined) return null;
  const fd = Number(value);
  return Number.isInteger(fd) && fd > 2 ? fd : null;
}
