/**
 * The public server: Swoole's WebSocket API in TypeScript. Wiring only:
 * options, the HTTP server and its upgrade path, events, fds. The protocol is
 * in `protocol/`, one socket's life in `connection.ts`.
 */
import { EventEmitter } from 'node:events';
import http, { type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TlsOptions } from 'node:tls';
import { Batcher } from './batcher.js';
import { Connection, ReadyState, type ConnectionOwner } from './connection.js';
import { DeflateShared, PerMessageDeflate, resolveDeflateOptions, SharedMessage, type PerMessageDeflateOptions } from './deflate.js';
import { CloseCode, WebSocketError } from './errors.js';
import { Heartbeat } from './heartbeat.js';
import { backend, type Backend } from './native.js';
import { negotiateDeflate, parseExtensions, type DeflateAgreement } from './protocol/extensions.js';
import { encodeFrame, type EncodedFrame } from './protocol/frame.js';
import { acceptResponse, checkUpgrade, hasToken, rejectResponse } from './protocol/handshake.js';
import { OPCODE } from './protocol/opcode.js';
import { Topics } from './pubsub.js';
import { Frame } from './received-frame.js';
import { Registry } from './registry.js';
import { HandshakeResponse, UpgradeRequest } from './upgrade-request.js';

/** Server settings. Times are in milliseconds. */
export interface ServerOptions {
  /** Interface to listen on (Node's default: all). */
  host?: string;
  /** Port to listen on; 0 picks a free one (read it from `server.port`). Default 0. */
  port?: number;
  /** Listen backlog. */
  backlog?: number;
  /** Key and certificate (and any `tls` option): the server speaks wss. */
  tls?: TlsOptions;
  /** Attach to an existing HTTP(S) server instead of listening. */
  server?: http.Server | https.Server;
  /** Neither listen nor attach: upgrades arrive through `handleUpgrade()`. */
  noServer?: boolean;
  /** Accept upgrades only for this path (others get 400, or are left to other listeners of an attached server). */
  path?: string;
  /** Largest message, reassembled, in either direction (bytes). Default 2 MiB, as in Swoole. */
  maxPayload?: number;
  /** Sweep for idle connections this often; 0 turns the heartbeat off. Default 0. */
  heartbeatCheckInterval?: number;
  /** Close a connection that received nothing for this long. Default twice the check interval. */
  heartbeatIdleTime?: number;
  /** Ping a connection that has been quiet this long, so healthy idle clients stay. 0 = off. */
  pingInterval?: number;
  /** Cut a TCP client that has not completed its handshake by then. Default 10 s. */
  handshakeTimeout?: number;
  /** Destroy a connection whose closing handshake has not finished by then. Default 5 s. */
  closeTimeout?: number;
  /** Beyond this many connections, upgrades get 503. Default unlimited. */
  maxConnections?: number;
  /** Subprotocols the server speaks; the first one the client offers is chosen. */
  subprotocols?: readonly string[];
  /**
   * Bytes that may wait in user space for one connection before
   * `backpressure` applies to further messages. Default 1 MiB.
   */
  maxBackpressure?: number;
  /**
   * What happens to a message for a connection over `maxBackpressure`:
   * `'drop'` skips it for that connection (counted, `dropped` event; the
   * default, as in uWS), `'close'` closes the connection with 1008 "slow consumer".
   */
  backpressure?: 'drop' | 'close';
  /**
   * permessage-deflate (RFC 7692). Off by default (as in ws); `true` takes
   * the defaults, which keep no zlib memory per idle connection (measured:
   * 2 KiB more RSS per connection than without compression, against about
   * 235 KiB with context takeover both ways). See `PerMessageDeflateOptions`
   * for each setting and its memory cost.
   */
  perMessageDeflate?: boolean | PerMessageDeflateOptions;
}

/** Options of `broadcast`. */
export interface BroadcastOptions {
  /** Default `OPCODE.TEXT`, or a relayed frame's own opcode. */
  opcode?: number;
  /** An fd (or fds) that should not get the message, typically the sender. */
  except?: number | Iterable<number>;
  /** Only fds for which this returns true get the message. */
  filter?: (fd: number) => boolean;
  /** Compress for connections that negotiated it: true forces, false forbids; default by `threshold`. */
  compress?: boolean;
}

/** Options of `publish`. */
export interface PublishOptions {
  /** Default `OPCODE.TEXT`, or a relayed frame's own opcode. */
  opcode?: number;
  /** An fd that should not get the message, typically the publisher. */
  except?: number;
  /** Compress for connections that negotiated it: true forces, false forbids; default by `threshold`. */
  compress?: boolean;
}

/** What `getClientInfo(fd)` returns. */
export interface ClientInfo {
  fd: number;
  remoteAddress: string;
  remotePort: number;
  /** When the connection opened (ms since epoch). */
  connectTime: number;
  /** When bytes last arrived from the client (ms since epoch). */
  lastReceiveTime: number;
  bytesIn: number;
  bytesOut: number;
  messagesIn: number;
  messagesOut: number;
  /** Negotiated subprotocol, '' for none. */
  protocol: string;
  /** Bytes queued in user space, not yet handed to the kernel. */
  bufferedAmount: number;
  established: boolean;
  /** Topics the connection is subscribed to. */
  topics: string[];
  /** Whether permessage-deflate was negotiated. */
  perMessageDeflate: boolean;
}

/** What `stats()` returns. */
export interface ServerStats {
  backend: Backend;
  /** Connections open now (including those closing). */
  connections: number;
  /** Upgrades accepted since start. */
  accepted: number;
  /** Connections closed since start. */
  closed: number;
  /** Upgrade requests refused (bad handshake, hook, limits). */
  rejected: number;
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Messages skipped for slow connections (backpressure `'drop'`). */
  dropped: number;
  /** Protocol errors by the close code they were closed with. */
  errors: Record<number, number>;
}

/** Event signatures. Handlers receive plain values; the server is `this` of nothing: close over it. */
export interface ServerEvents<Data> {
  /**
   * Before accepting an upgrade (optional, one listener, may be async): see
   * the request, `reject()` it, pick `protocol`, attach `data`, add headers.
   */
  handshake: [request: UpgradeRequest<Data>, response: HandshakeResponse<Data>];
  /** A WebSocket connection is open. `push` and `disconnect` work from here. */
  open: [fd: number, request: UpgradeRequest<Data>];
  /** A whole message (required: the server will not start without one). */
  message: [frame: Frame];
  /** A connection is gone: the code and reason of its closing handshake (1006 if none). */
  close: [fd: number, code: number, reason: string, wasClean: boolean];
  /** A plain HTTP request (not an upgrade). Without listeners the answer is 426. */
  request: [req: IncomingMessage, res: ServerResponse];
  ping: [fd: number, payload: Buffer];
  pong: [fd: number, payload: Buffer];
  /** A connection that had messages dropped has an empty queue again (only when listened to). */
  drain: [fd: number];
  /** A message was skipped for a slow connection, `bytes` long (only when listened to). */
  dropped: [fd: number, bytes: number];
  /** A client's protocol error (with its fd), or a failing handshake hook. Emitted only when listened to. */
  error: [error: Error, fd?: number];
}

/** Data types `push` accepts. */
export type PushData = string | Buffer | ArrayBuffer | ArrayBufferView | Frame;

const MiB = 1024 * 1024;
const EMPTY = Buffer.alloc(0);
/** One empty ping frame shared by every heartbeat ping (so a sweep's pings batch as one group). */
const HEARTBEAT_PING = encodeFrame(OPCODE.PING, EMPTY);
const kHandshakeTimer = Symbol('wavecast.handshakeTimer');
type PendingSocket = Duplex & { [kHandshakeTimer]?: NodeJS.Timeout };

function clearHandshakeTimer(socket: PendingSocket): void {
  const timer = socket[kHandshakeTimer];
  if (timer !== undefined) {
    clearTimeout(timer);
    socket[kHandshakeTimer] = undefined;
  }
}
function onPendingClose(this: PendingSocket): void {
  clearHandshakeTimer(this);
}
function onHandshakeTimeout(socket: PendingSocket): void {
  socket[kHandshakeTimer] = undefined;
  socket.destroy();
}
function ignoreError(): void {}

function checkTime(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative number of milliseconds, got ${String(value)}`);
  }
  return value;
}

/** Codes an application may send in a close frame (RFC 6455 7.4.1-7.4.2). */
function isSendableCloseCode(code: number): boolean {
  return (
    Number.isInteger(code) &&
    ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999))
  );
}

function toBuffer(data: Exclude<PushData, Frame | string>): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('data must be a string, Buffer, ArrayBuffer, typed array or Frame');
}

/**
 * A WebSocket server with Swoole's API: `open` / `message` / `close` /
 * `request` / `handshake` events, integer fds, `push(fd, data, opcode, finish)`.
 *
 * ```ts
 * const server = new Server({ port: 9501 });
 * server.on('message', (frame) => server.push(frame.fd, `echo: ${frame.data}`));
 * await server.start();
 * ```
 */
export class Server<Data = unknown> extends EventEmitter<ServerEvents<Data>> implements ConnectionOwner {
  readonly maxPayload: number;
  readonly closeTimeout: number;
  /** @internal */
  readonly maxBackpressure: number;
  /** @internal */
  readonly backpressure: 'drop' | 'close';
  /** @internal */
  readonly batcher = new Batcher();
  private readonly topicIndex = new Topics<Connection<Data>>();
  /** permessage-deflate's server-wide part (settings, zlib queue, pools); null when off. */
  private readonly deflateShared: DeflateShared | null;
  private readonly options: ServerOptions;
  private readonly handshakeTimeout: number;
  private readonly maxConnections: number;
  private readonly registry = new Registry<Connection<Data>>();
  private readonly heartbeat: Heartbeat<Connection<Data>>;
  private httpServer: http.Server | https.Server | null = null;
  private readonly ownsHttpServer: boolean;
  private started = false;
  private stopping = false;
  /** Upgrades between request and 101 (an async hook may be running). */
  private upgrading = 0;
  private closeWaiters: (() => void)[] = [];
  private readonly counters = {
    accepted: 0,
    closed: 0,
    rejected: 0,
    messagesIn: 0,
    messagesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    dropped: 0,
  };
  private readonly errorCounts: Record<number, number> = {};

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (this.options.path !== undefined && this.httpServer !== null && !this.ownsHttpServer) {
      // Attached: leave other paths to the server's other upgrade listeners.
      if (pathOf(req.url) !== this.options.path && this.httpServer.listenerCount('upgrade') > 1) return;
    }
    this.handleUpgrade(req, socket, head);
  };
  private readonly onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    clearHandshakeTimer(req.socket as PendingSocket);
    if (hasToken(req.headers.upgrade, 'websocket')) {
      // Looks like a WebSocket handshake, but Node saw no `Connection: Upgrade`.
      this.counters.rejected++;
      res.writeHead(400, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' });
      res.end('the Connection header must contain "Upgrade"');
      return;
    }
    if (this.listenerCount('request') > 0) {
      this.emit('request', req, res);
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
    this.armHandshakeTimer(socket);
  };
  private readonly onClientError = (error: NodeJS.ErrnoException, socket: Duplex): void => {
    // Not HTTP, or malformed HTTP: answer 400 (431 for oversized headers) and close.
    if (socket.writable && !(socket as Socket).bytesWritten) {
      const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      socket.end(rejectResponse(status));
    }
    socket.destroy();
  };

  constructor(options: ServerOptions = {}) {
    super();
    if (options === null || typeof options !== 'object') throw new TypeError('options must be an object');
    this.options = { ...options };
    this.maxPayload = options.maxPayload ?? 2 * MiB;
    if (!Number.isSafeInteger(this.maxPayload) || this.maxPayload < 0) {
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
    this.handshakeTimeout = checkTime('handshakeTimeout', options.handshakeTimeout, 10_000);
    this.closeTimeout = checkTime('closeTimeout', options.closeTimeout, 5_000);
    this.maxConnections = options.maxConnections ?? Infinity;
    const deflate = resolveDeflateOptions(options.perMessageDeflate);
    this.deflateShared = deflate === null ? null : new DeflateShared(deflate, this.maxPayload);
    this.maxBackpressure = options.maxBackpressure ?? MiB;
    if (!(this.maxBackpressure >= 0)) throw new RangeError('maxBackpressure must be a non-negative number of bytes');
    this.backpressure = options.backpressure ?? 'drop';
    if (this.backpressure !== 'drop' && this.backpressure !== 'close') {
      throw new TypeError(`backpressure must be 'drop' or 'close', got ${String(options.backpressure)}`);
    }
    if (!(this.maxConnections >= 0)) throw new RangeError('maxConnections must be a non-negative number');
    const sweep = [interval, pingInterval].filter((t) => t > 0);
    this.heartbeat = new Heartbeat({
      interval: sweep.length ? Math.min(...sweep) : 0,
      idleTime: interval > 0 ? idleTime : 0,
      pingInterval,
      connections: () => this.registry.values(),
      onIdle: (connection) => connection.expire(CloseCode.GOING_AWAY, 'idle timeout'),
      onPing: (connection) => connection.send(OPCODE.PING, HEARTBEAT_PING, true),
    });
    this.ownsHttpServer = options.server === undefined && !options.noServer;
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event === 'handshake' && this.listenerCount('handshake') > 0) {
        throw new TypeError("only one 'handshake' listener can decide a handshake");
      }
    });
  }

  // --- life cycle -----------------------------------------------------------------

  /**
   * Starts listening (or attaches to `options.server`). Resolves when
   * listening; rejects without a `message` listener, as Swoole refuses to.
   */
  async start(): Promise<void> {
    if (this.listenerCount('message') === 0) {
      throw new Error("a 'message' listener is required: server.on('message', (frame) => ...)");
    }
    if (this.started) throw new Error('the server is already started');
    this.started = true;
    this.stopping = false;
    const options = this.options;
    if (options.noServer) {
      this.heartbeat.start();
      return;
    }
    const server =
      options.server ?? (options.tls ? https.createServer(options.tls) : http.createServer());
    this.httpServer = server;
    server.on('upgrade', this.onUpgrade);
    if (this.ownsHttpServer) {
      server.on('request', this.onRequest);
      server.on('connection', this.onConnection);
      server.on('clientError', this.onClientError);
      server.on('tlsClientError', ignoreError);
      await new Promise<void>((resolve, reject) => {
        const onError = (error: Error): void => {
          this.started = false;
          this.httpServer = null;
          reject(error);
        };
        server.once('error', onError);
        server.listen({ port: options.port ?? 0, host: options.host, backlog: options.backlog }, () => {
          server.removeListener('error', onError);
          resolve();
        });
      });
    }
    this.heartbeat.start();
  }

  /** The port listened on (or of the attached server); 0 before `start()`. */
  get port(): number {
    const address = this.httpServer?.address();
    return address !== null && typeof address === 'object' ? (address as AddressInfo).port : 0;
  }

  /**
   * Stops accepting, closes every connection with 1001, waits for the closing
   * handshakes up to `timeout` ms (default `closeTimeout`), destroys the
   * rest, and resolves when all are gone.
   */
  async stop({ timeout = this.closeTimeout }: { timeout?: number } = {}): Promise<void> {
    checkTime('timeout', timeout, 0);
    if (!this.started) return;
    this.stopping = true;
    this.heartbeat.stop();
    const server = this.httpServer;
    const closed =
      server !== null && this.ownsHttpServer
        ? new Promise<void>((resolve) => server.close(() => resolve()))
        : Promise.resolve();
    if (server !== null) {
      server.removeListener('upgrade', this.onUpgrade);
      if (this.ownsHttpServer) server.closeIdleConnections();
    }
    for (const connection of this.registry.values()) {
      connection.close(CloseCode.GOING_AWAY, 'server shutting down');
    }
    if (this.registry.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.allClosed(),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeout);
        }),
      ]);
      clearTimeout(timer);
      for (const connection of this.registry.values()) connection.destroy();
      await this.allClosed();
    }
    if (server !== null && this.ownsHttpServer) {
      server.closeAllConnections();
      server.removeListener('request', this.onRequest);
      server.removeListener('connection', this.onConnection);
      await closed;
    }
    this.deflateShared?.close();
    this.httpServer = null;
    this.started = false;
  }

  private allClosed(): Promise<void> {
    if (this.registry.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  // --- handshake --------------------------------------------------------------------

  private armHandshakeTimer(socket: PendingSocket): void {
    if (this.handshakeTimeout <= 0 || socket[kHandshakeTimer] !== undefined) return;
    const timer = setTimeout(onHandshakeTimeout, this.handshakeTimeout, socket);
    timer.unref();
    socket[kHandshakeTimer] = timer;
    socket.once('close', onPendingClose);
  }

  /**
   * Takes over an upgrade request, as from an `http.Server`'s `'upgrade'`
   * event: validates it, runs the `handshake` hook, and answers 101 (then
   * `open`) or an HTTP error.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer = EMPTY): void {
    this.upgrade(req, socket, head).catch((error: unknown) => {
      this.reject(socket, 500);
      this.reportError(error instanceof Error ? error : new Error(String(error)));
    });
  }

  private async upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    this.armHandshakeTimer(socket);
    socket.on('error', ignoreError);
    if (this.stopping) return this.reject(socket, 503, 'server shutting down');
    const check = checkUpgrade(req);
    if (!check.ok) return this.reject(socket, check.status, check.message, check.headers);
    if (this.options.path !== undefined && pathOf(req.url) !== this.options.path) {
      return this.reject(socket, 400, `no WebSocket endpoint at ${pathOf(req.url)}`);
    }
    if (this.registry.size + this.upgrading >= this.maxConnections) {
      return this.reject(socket, 503, 'too many connections');
    }
    let extensions: DeflateAgreement | null = null;
    const offered = req.headers['sec-websocket-extensions'];
    if (this.deflateShared !== null && offered !== undefined) {
      const offers = parseExtensions(offered);
      if (offers === null) return this.reject(socket, 400, 'malformed Sec-WebSocket-Extensions header');
      extensions = negotiateDeflate(offers, this.deflateShared.options);
    }
    const supported = this.options.subprotocols;
    const protocol = supported ? (check.protocols.find((p) => supported.includes(p)) ?? '') : '';
    const tcp = socket as Socket;
    const request = new UpgradeRequest<Data>(
      this.registry.allocate(),
      req.url ?? '/',
      req.headers,
      tcp.remoteAddress ?? '',
      tcp.remotePort ?? 0,
      check.protocols,
      protocol,
      undefined as Data,
    );
    let extraHeaders: OutgoingHttpHeaders | undefined;
    const hook = this.listeners('handshake')[0];
    if (hook !== undefined) {
      const response = new HandshakeResponse<Data>(request);
      this.upgrading++;
      try {
        const result: unknown = hook.call(this, request, response);
        if (result instanceof Promise) await result;
      } finally {
        this.upgrading--;
      }
      if (response.rejection !== null) {
        const { status, body, headers } = response.rejection;
        return this.reject(socket, status, body, headers);
      }
      if (socket.destroyed || this.stopping) return this.reject(socket, 503, 'server shutting down');
      extraHeaders = response.headers;
    }
    this.accept(tcp, request, check.key, head, extraHeaders, extensions);
  }

  private accept(
    socket: Socket,
    request: UpgradeRequest<Data>,
    key: string,
    head: Buffer,
    headers: OutgoingHttpHeaders | undefined,
    extensions: DeflateAgreement | null,
  ): void {
    const response = acceptResponse(key, request.protocol, headers, extensions?.response);
    clearHandshakeTimer(socket);
    socket.removeListener('close', onPendingClose);
    socket.removeListener('error', ignoreError);
    socket.write(response);
    const deflate = extensions === null ? null : new PerMessageDeflate(this.deflateShared!, extensions.params);
    const connection = new Connection<Data>(request.fd, socket, this, request.protocol, request.data, deflate);
    this.registry.add(request.fd, connection);
    this.counters.accepted++;
    this.emit('open', request.fd, request);
    if (head.length > 0 && connection.state === ReadyState.OPEN) connection.receive(head);
    socket.resume();
  }

  private reject(socket: Duplex, status: number, body?: string, headers?: OutgoingHttpHeaders): void {
    this.counters.rejected++;
    if (socket.writable) {
      try {
        socket.end(rejectResponse(status, body, headers));
      } catch (error) {
        // A hook's invalid header: answer without it.
        socket.end(rejectResponse(500));
        this.reportError(error as Error);
      }
    }
    // Keep reading so the client's FIN is seen; the handshake timer destroys a client that lingers.
    socket.on('end', () => socket.destroy());
    socket.resume();
  }

  private reportError(error: Error, fd?: number): void {
    if (this.listenerCount('error') > 0) this.emit('error', error, fd);
  }

  // --- ConnectionOwner --------------------------------------------------------------

  /** @internal */
  onMessage(connection: Connection, opcode: number, payload: Buffer): void {
    this.counters.messagesIn++;
    this.emit('message', new Frame(connection.fd, opcode, payload));
  }

  /** @internal */
  onPing(connection: Connection, payload: Buffer): void {
    if (this.listenerCount('ping') > 0) this.emit('ping', connection.fd, payload);
  }

  /** @internal */
  onPong(connection: Connection, payload: Buffer): void {
    if (this.listenerCount('pong') > 0) this.emit('pong', connection.fd, payload);
  }

  /** @internal */
  onProtocolError(connection: Connection, error: WebSocketError): void {
    this.errorCounts[error.closeCode] = (this.errorCounts[error.closeCode] ?? 0) + 1;
    this.reportError(error, connection.fd);
  }

  /** @internal */
  onClosed(connection: Connection, code: number, reason: string, wasClean: boolean): void {
    this.registry.delete(connection.fd);
    this.topicIndex.unsubscribeAll(connection as Connection<Data>);
    const counters = this.counters;
    counters.closed++;
    counters.messagesOut += connection.messagesOut;
    counters.bytesIn += connection.socket.bytesRead;
    counters.bytesOut += connection.bytesOut;
    this.emit('close', connection.fd, code, reason, wasClean);
    if (this.registry.size === 0 && this.closeWaiters.length > 0) {
      const waiters = this.closeWaiters;
      this.closeWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** @internal */
  onDropped(connection: Connection, bytes: number): void {
    this.counters.dropped++;
    if (this.listenerCount('dropped') > 0) this.emit('dropped', connection.fd, bytes);
  }

  /** @internal */
  onDrain(connection: Connection): void {
    if (this.listenerCount('drain') > 0) this.emit('drain', connection.fd);
  }

  // --- the Swoole-style API ---------------------------------------------------------

  /**
   * Sends a message (or one fragment of one) to `fd`. Returns false when `fd`
   * is unknown or not an established WebSocket; throws on bad arguments.
   *
   * - `opcode`: `OPCODE.TEXT` (default), `BINARY`, `CONTINUATION`, `PING`, `PONG`.
   *   A string sent as binary goes out as its UTF-8 bytes.
   * - `finish = false` sends a non-final fragment; continue with
   *   `OPCODE.CONTINUATION`. Other messages to that fd wait behind it.
   * - A received `Frame` is relayed from its bytes, with its own opcode by default.
   * - `compress`, for a connection that negotiated permessage-deflate: true
   *   compresses, false sends plain; by default a whole text or binary
   *   message of `threshold` bytes or more is compressed. Fragments and
   *   control frames are never compressed. A compressed message is sent once
   *   zlib is done; later messages to `fd` wait behind it.
   */
  push(fd: number, data: PushData, opcode?: number, finish = true, compress?: boolean): boolean {
    opcode = resolveOpcode(data, opcode);
    const payload = this.validate(data, opcode, finish);
    if (compress !== undefined && typeof compress !== 'boolean') throw new TypeError('compress must be a boolean');
    const connection = this.registry.get(fd);
    if (connection === undefined || connection.state !== ReadyState.OPEN) return false;
    const whole = finish && (opcode === OPCODE.TEXT || opcode === OPCODE.BINARY);
    if (whole && connection.deflate !== null && this.wantsCompression(payload, compress)) {
      return connection.sendCompressed(opcode, payload);
    }
    return connection.send(opcode, encodeFrame(opcode, payload, finish), finish);
  }

  /**
   * Sends one message to every established connection (except `except`, and
   * only those `filter` accepts). The frame is encoded once and shared; a
   * relayed `Frame` is sent from its bytes. Returns how many connections it
   * reached (not those skipped for backpressure).
   */
  broadcast(data: PushData, options: BroadcastOptions = {}): number {
    const opcode = resolveOpcode(data, options.opcode);
    if (opcode !== OPCODE.TEXT && opcode !== OPCODE.BINARY) throw new TypeError('broadcast sends text or binary messages');
    const payload = this.validate(data, opcode, true);
    const frame = encodeFrame(opcode, payload, true);
    const shared = this.wantsCompression(payload, options.compress) ? new SharedMessage(this.deflateShared!, opcode, payload) : null;
    const { except, filter } = options;
    if (filter !== undefined && typeof filter !== 'function') throw new TypeError('filter must be a function');
    const skip: ReadonlySet<number> | number | undefined =
      except === undefined || typeof except === 'number' ? except : new Set(except);
    let reached = 0;
    for (const connection of this.registry.values()) {
      const fd = connection.fd;
      if (skip !== undefined && (typeof skip === 'number' ? fd === skip : skip.has(fd))) continue;
      if (filter !== undefined && !filter(fd)) continue;
      if (shared === null ? connection.send(opcode, frame, true) : this.sendShared(connection, frame, shared)) reached++;
    }
    return reached;
  }

  /** Subscribes `fd` to `topic` (any string). False when `fd` is not established or already subscribed. */
  subscribe(fd: number, topic: string): boolean {
    checkTopic(topic);
    const connection = this.registry.get(fd);
    if (connection === undefined || connection.state !== ReadyState.OPEN) return false;
    return this.topicIndex.subscribe(connection, topic);
  }

  /** Ends `fd`'s subscription to `topic`. False when it was not subscribed. */
  unsubscribe(fd: number, topic: string): boolean {
    checkTopic(topic);
    const connection = this.registry.get(fd);
    return connection !== undefined && this.topicIndex.unsubscribe(connection, topic);
  }

  /** Whether `fd` is subscribed to `topic`. */
  isSubscribed(fd: number, topic: string): boolean {
    return this.registry.get(fd)?.topics?.has(topic) ?? false;
  }

  /** The topics `fd` is subscribed to. */
  topics(fd: number): string[] {
    const topics = this.registry.get(fd)?.topics;
    return topics ? [...topics] : [];
  }

  /** How many connections are subscribed to `topic`. */
  subscriberCount(topic: string): number {
    return this.topicIndex.count(topic);
  }

  /**
   * Sends one message to the subscribers of `topic`, encoded once. Returns
   * how many it reached. A topic with no subscribers costs one map lookup.
   */
  publish(topic: string, data: PushData, options: PublishOptions = {}): number {
    checkTopic(topic);
    const subscribers = this.topicIndex.subscribers(topic);
    if (subscribers === undefined) return 0;
    const opcode = resolveOpcode(data, options.opcode);
    if (opcode !== OPCODE.TEXT && opcode !== OPCODE.BINARY) throw new TypeError('publish sends text or binary messages');
    const payload = this.validate(data, opcode, true);
    const frame = encodeFrame(opcode, payload, true);
    const shared = this.wantsCompression(payload, options.compress) ? new SharedMessage(this.deflateShared!, opcode, payload) : null;
    const except = options.except;
    let reached = 0;
    for (const connection of subscribers) {
      if (connection.fd === except) continue;
      if (shared === null ? connection.send(opcode, frame, true) : this.sendShared(connection, frame, shared)) reached++;
    }
    return reached;
  }

  /** Whether a message goes out compressed to connections that negotiated it. */
  private wantsCompression(payload: Buffer | string, compress: boolean | undefined): boolean {
    if (compress !== undefined && typeof compress !== 'boolean') throw new TypeError('compress must be a boolean');
    if (this.deflateShared === null || compress === false) return false;
    if (compress === true) return true;
    const threshold = this.deflateShared.options.threshold;
    // A string's UTF-8 size is at least its length: count bytes only when it matters.
    if (payload.length >= threshold) return true;
    return typeof payload === 'string' && payload.length * 3 >= threshold && Buffer.byteLength(payload) >= threshold;
  }

  /**
   * One recipient of a broadcast or publish that may be compressed: plain if
   * it did not negotiate permessage-deflate; without server context takeover
   * the one compressed frame shared by all such recipients (each message
   * stands alone, so the same bytes are right for every one of them); with
   * takeover, compressed by its own context.
   */
  private sendShared(connection: Connection<Data>, frame: EncodedFrame, shared: SharedMessage): boolean {
    const deflate = connection.deflate;
    if (deflate === null) return connection.send(shared.opcode, frame, true);
    const params = deflate.params;
    if (params.serverNoContextTakeover) {
      return connection.send(shared.opcode, shared.frameFor(params.serverMaxWindowBits), true);
    }
    return connection.sendCompressed(shared.opcode, shared.payload);
  }

  /** Validates a message and returns its payload; throws on bad arguments. */
  private validate(data: PushData, opcode: number, finish: boolean): Buffer | string {
    const payload = data instanceof Frame ? data.payload : typeof data === 'string' ? data : toBuffer(data);
    if (typeof finish !== 'boolean') throw new TypeError('finish must be a boolean');
    if (opcode === OPCODE.CLOSE) throw new TypeError('use disconnect(fd, code, reason) to close');
    if (
      opcode !== OPCODE.TEXT &&
      opcode !== OPCODE.BINARY &&
      opcode !== OPCODE.CONTINUATION &&
      opcode !== OPCODE.PING &&
      opcode !== OPCODE.PONG
    ) {
      throw new TypeError(`invalid opcode ${String(opcode)}`);
    }
    // Byte length without encoding: a UTF-16 unit is at most 3 UTF-8 bytes.
    const length =
      typeof payload === 'string'
        ? payload.length * 3 <= 125
          ? payload.length
          : Buffer.byteLength(payload)
        : payload.length;
    if (opcode >= 0x8) {
      // RFC 6455 5.5: control frames carry at most 125 bytes and are never fragmented.
      if (length > 125) throw new RangeError('a ping or pong payload is at most 125 bytes');
      if (!finish) throw new TypeError('control frames cannot be fragmented');
    } else if (length > this.maxPayload) {
      throw new RangeError(`message of ${length} bytes is larger than maxPayload (${this.maxPayload})`);
    }
    return payload;
  }

  /** Sends a ping (payload up to 125 bytes). False when `fd` is not established. */
  ping(fd: number, data: string | Buffer = EMPTY): boolean {
    return this.push(fd, data, OPCODE.PING);
  }

  /**
   * Starts the closing handshake with `code` and `reason` (at most 123 bytes).
   * The `close` event follows when the client answers, or after `closeTimeout`.
   * False when `fd` is not established.
   */
  disconnect(fd: number, code: number = CloseCode.NORMAL, reason = ''): boolean {
    if (!isSendableCloseCode(code)) {
      throw new RangeError(`close code ${String(code)} cannot be sent (1000-1003, 1007-1014 or 3000-4999)`);
    }
    if (typeof reason !== 'string') throw new TypeError('reason must be a string');
    // RFC 6455 5.5: the close body (2-byte code + reason) fits a 125-byte control frame.
    if (Buffer.byteLength(reason) > 123) throw new RangeError('close reason is longer than 123 bytes');
    const connection = this.registry.get(fd);
    return connection !== undefined && connection.close(code, reason);
  }

  /** Closes the TCP connection at once, without a closing handshake. False when `fd` is unknown. */
  close(fd: number): boolean {
    const connection = this.registry.get(fd);
    if (connection === undefined) return false;
    connection.destroy();
    return true;
  }

  /** Whether `fd` is a connection of this server that has not closed yet. */
  exist(fd: number): boolean {
    return this.registry.get(fd) !== undefined;
  }

  /** Whether `fd` is an open WebSocket (handshake done, no close started). */
  isEstablished(fd: number): boolean {
    return this.registry.get(fd)?.state === ReadyState.OPEN;
  }

  /** The fds of all connections, oldest first (Swoole's `connection_list`). */
  get connections(): IterableIterator<number> {
    return this.registry.fds();
  }

  /** The data attached to `fd` by the handshake hook or `setData`. */
  getData(fd: number): Data | undefined {
    return this.registry.get(fd)?.data;
  }

  /** Replaces the data attached to `fd`. False when `fd` is unknown. */
  setData(fd: number, data: Data): boolean {
    const connection = this.registry.get(fd);
    if (connection === undefined) return false;
    connection.data = data;
    return true;
  }

  /** Bytes queued for `fd` in user space (0 for an unknown fd). */
  bufferedAmount(fd: number): number {
    return this.registry.get(fd)?.bufferedAmount ?? 0;
  }

  /** Facts about one connection, or undefined for an unknown fd. */
  getClientInfo(fd: number): ClientInfo | undefined {
    const c = this.registry.get(fd);
    if (c === undefined) return undefined;
    return {
      fd,
      remoteAddress: c.remoteAddress,
      remotePort: c.remotePort,
      connectTime: c.connectTime,
      lastReceiveTime: c.lastReceive,
      bytesIn: c.socket.bytesRead,
      bytesOut: c.bytesOut,
      messagesIn: c.messagesIn,
      messagesOut: c.messagesOut,
      protocol: c.protocol,
      bufferedAmount: c.bufferedAmount,
      established: c.state === ReadyState.OPEN,
      topics: c.topics ? [...c.topics] : [],
      perMessageDeflate: c.deflate !== null,
    };
  }

  /** Counters since start, live connections included. */
  stats(): ServerStats {
    const totals = { ...this.counters };
    for (const c of this.registry.values()) {
      totals.messagesOut += c.messagesOut;
      totals.bytesIn += c.socket.bytesRead;
      totals.bytesOut += c.bytesOut;
    }
    return {
      backend,
      connections: this.registry.size,
      ...totals,
      errors: { ...this.errorCounts },
    };
  }
}

/** The opcode a message goes out with: the given one, a relayed frame's own, or text. */
function resolveOpcode(data: PushData, opcode: number | undefined): number {
  if (opcode !== undefined) return opcode;
  return data instanceof Frame ? data.opcode : OPCODE.TEXT;
}

function checkTopic(topic: string): void {
  if (typeof topic !== 'string') throw new TypeError('a topic is a string');
}

function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
