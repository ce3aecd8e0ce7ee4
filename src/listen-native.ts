/**
 * Listening with the addon's native transport (`transport.ts`): the
 * transport accepts, hands clean WebSocket upgrade heads to the upgrade
 * decision, and gives every other connection to the server's Node
 * `http.Server` as a socket, as if that server had accepted it.
 */
import type http from 'node:http';
import type https from 'node:https';
import { lookup } from 'node:dns/promises';
import { isIP, type Socket } from 'node:net';
import { getSystemErrorMap } from 'node:util';
import { NativeHandshake } from './handshake-io.js';
import type { Settings } from './options.js';
import { hasToken } from './protocol/handshake.js';
import { parseRequestHead } from './protocol/http-head.js';
import type { ServerCore } from './server-core.js';
import { NativeTransport, nativeTransportAvailable, type NativeWire } from './transport.js';
import { decide } from './upgrade.js';

/** Whether a server with these settings listens with the native transport. */
export function usesNativeTransport(settings: Settings): boolean {
  const options = settings.options;
  const host = options.host;
  return (
    options.nativeTransport !== false &&
    nativeTransportAvailable &&
    options.tls === undefined &&
    settings.workerNum === 1 &&
    // Scoped IPv6 addresses (fe80::1%eth0) are Node's to bind.
    (host === undefined || !host.includes('%'))
  );
}

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
 * Listens with the native transport. `server` never listens itself: it
 * gets the connections that are plain HTTP, as if it had accepted them.
 * Sets `core.transport` once listening.
 */
export async function listenNative<Data>(core: ServerCore<Data>, server: http.Server | https.Server): Promise<void> {
  const onHead = (wire: NativeWire, head: Buffer): void => {
    const req = parseRequestHead(head);
    // Only clean WebSocket upgrades stay native; anything else is Node's http.Server's to answer.
    if (
      req === null ||
      !hasToken(req.headers.upgrade as string | undefined, 'websocket') ||
      !hasToken(req.headers.connection as string | undefined, 'upgrade')
    ) {
      transport.release(wire);
      return;
    }
    decide(core, req, new NativeHandshake(transport, wire, head.length));
  };
  const onHttp = (socket: Socket): void => {
    if (core.stopping) {
      socket.destroy();
      return;
    }
    (socket as Socket & { server: unknown }).server = server;
    server.emit('connection', socket);
  };
  const transport = new NativeTransport({ onHead, onHttp }, core.settings.handshakeTimeout);
  const { port = 0, backlog, host } = core.settings.options;
  let address = '::';
  try {
    if (host === undefined) {
      // Node's default: IPv6 any-address taking IPv4 too, or IPv4 alone without IPv6.
      try {
        transport.listen(address, port, backlog, false);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EAFNOSUPPORT') throw error;
        address = '0.0.0.0';
        transport.listen(address, port, backlog, false);
      }
    } else {
      address = isIP(host) !== 0 ? host : (await lookup(host)).address;
      transport.listen(address, port, backlog, false);
    }
  } catch (error) {
    transport.close();
    // The transport's error is a bare system error; the app expects net.Server's.
    throw listenError(error, address, port);
  }
  core.transport = transport;
  // http.Server tracks its connections (closeAllConnections, request
  // timeouts) from its 'listening' event on.
  server.emit('listening');
}
