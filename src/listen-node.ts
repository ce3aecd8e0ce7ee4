/**
 * Listening with Node's `http` / `https` modules: the server's own
 * `http.Server` (TLS, no addon, `nativeTransport: false`, workers) or one the
 * app attached (`server` option). Its `upgrade` events become handshakes;
 * plain requests go to the `request` event (426 without one); malformed
 * HTTP gets 400. The native transport (`listen-native.ts`) hands its plain
 * HTTP connections to this same `http.Server`.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import { Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { armHandshakeTimer, disarmHandshakeTimer, SocketHandshake } from './handshake-io.js';
import { hasToken, rejectResponse } from './protocol/handshake.js';
import type { ServerOptions } from './server-types.js';
import type { ServerCore } from './server-core.js';
import { decide, pathOf } from './upgrade.js';

function ignoreError(): void {}

/** The Servers attached to each app-owned `http.Server`, in the order they attached. */
const attached = new WeakMap<http.Server | https.Server, HttpFront<unknown>[]>();

/** Listens with Node's own net server (TLS, no addon, `nativeTransport: false`). */
export function listenNode(server: http.Server | https.Server, options: ServerOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: options.port ?? 0, host: options.host, backlog: options.backlog }, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
}

/** Hands an upgrade request on a Node socket to the upgrade decision. */
export function handleSocketUpgrade<Data>(core: ServerCore<Data>, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  decide(core, req, new SocketHandshake(socket, head, core.settings.handshakeTimeout));
}

/** The `http.Server` a server listens with or is attached to, and its listeners. */
export class HttpFront<Data> {
  readonly server: http.Server | https.Server;
  /** The server created it (and listens with it), rather than the app. */
  readonly owned: boolean;

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (!this.owned) {
      const path = pathOf(req.url);
      if (!this.claims(path)) {
        const fronts = attached.get(this.server) ?? [];
        // Another Server on this http.Server takes it.
        if (fronts.some((front) => front.claims(path))) return;
        // The app's own upgrade listeners may take it.
        if (this.server.listenerCount('upgrade') > fronts.length) return;
        // Nobody takes it: one answer (400, from the upgrade decision's path check), by the first Server attached.
        if (fronts[0] !== this) return;
      }
    }
    handleSocketUpgrade(this.core, req, socket, head);
  };
  private readonly onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    disarmHandshakeTimer(req.socket);
    if (hasToken(req.headers.upgrade, 'websocket')) {
      // Looks like a WebSocket handshake, but Node saw no `Connection: Upgrade`.
      this.core.counters.rejected++;
      res.writeHead(400, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' });
      res.end('the Connection header must contain "Upgrade"');
      return;
    }
    const events = this.core.events;
    if (events.listenerCount('request') > 0) {
      events.emit('request', req, res);
      return;
    }
    const body = 'this is a WebSocket server: upgrade required';
    res.writeHead(426, {
      Upgrade: 'websocket',
      Connection: 'close',
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
  };
  private readonly onConnection = (socket: Socket): void => {
    armHandshakeTimer(socket, this.core.settings.handshakeTimeout);
  };
  private readonly onClientError = (error: NodeJS.ErrnoException, socket: Duplex): void => {
    // Not HTTP, or malformed HTTP: answer 400 (431 for oversized headers) and close.
    if (socket.writable && !(socket as Socket).bytesWritten) {
      const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      socket.end(rejectResponse(status));
    }
    socket.destroy();
  };

  constructor(private readonly core: ServerCore<Data>) {
    const options = core.settings.options;
    this.owned = core.settings.ownsHttpServer;
    this.server = options.server ?? (options.tls ? https.createServer(options.tls) : http.createServer());
  }

  /** Whether upgrades to `path` are this Server's (it has no `path`, or this one). */
  claims(path: string): boolean {
    const own = this.core.settings.options.path;
    return own === undefined || own === path;
  }

  /** Starts taking the server's upgrades (and, when owned, its requests and connections). */
  attach(): void {
    const server = this.server;
    server.on('upgrade', this.onUpgrade);
    if (!this.owned) {
      const fronts = attached.get(server) ?? [];
      fronts.push(this as HttpFront<unknown>);
      attached.set(server, fronts);
      return;
    }
    server.on('request', this.onRequest);
    server.on('connection', this.onConnection);
    server.on('clientError', this.onClientError);
    server.on('tlsClientError', ignoreError);
  }

  /**
   * Stops taking upgrades; an owned server stops listening and closes its
   * idle keep-alive connections. Resolves when an owned server is closed.
   */
  stopAccepting(): Promise<void> {
    const server = this.server;
    const closed = this.owned ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    server.removeListener('upgrade', this.onUpgrade);
    if (this.owned) server.closeIdleConnections();
    else {
      const fronts = attached.get(server) ?? [];
      fronts.splice(fronts.indexOf(this as HttpFront<unknown>), 1);
      if (fronts.length === 0) attached.delete(server);
    }
    return closed;
  }

  /** After the WebSockets are gone: an owned server drops its remaining connections and listeners. */
  release(): void {
    if (!this.owned) return;
    const server = this.server;
    server.closeAllConnections();
    server.removeListener('request', this.onRequest);
    server.removeListener('connection', this.onConnection);
  }

  /**
   * Waits (at most 2 s, or `handshakeTimeout`) until every TCP connection
   * the closed listener accepted has become a WebSocket or gone, so a client
   * in the middle of its handshake is upgraded (then closed with 1001 like
   * the rest) rather than refused.
   */
  async drainHandshakes(): Promise<void> {
    const server = this.server;
    // net's close, not http's: http's also cuts connections that have not sent their request yet.
    NetServer.prototype.close.call(server);
    // The native transport stops accepting too; what waits in a shared
    // listener's queue is for the other workers. Its accepted connections
    // finish their handshakes.
    const transport = this.core.transport;
    transport?.closeListener();
    const deadline = Date.now() + Math.min(this.core.settings.handshakeTimeout || 2000, 2000);
    while (Date.now() < deadline) {
      const open = await new Promise<number>((resolve) => server.getConnections((error, n) => resolve(error ? 0 : n)));
      if (open <= this.core.registry.size && (transport?.handshaking ?? 0) === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}
