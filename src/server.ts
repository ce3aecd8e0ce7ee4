/**
 * The public server: Swoole's WebSocket API in TypeScript. Wiring only:
 * options, the HTTP server and its upgrade path, events, fds. The protocol is
 * in `protocol/`, one socket's life in `connection.ts`.
 */
import cluster from 'node:cluster';
import { EventEmitter } from 'node:events';
import http, { type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import https from 'node:https';
import { lookup } from 'node:dns/promises';
import { isIP, Server as NetServer, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TlsOptions } from 'node:tls';
import type { Adapter } from './adapter.js';
import { Batcher } from './batcher.js';
import { ownerCode, SEQ_RANGE } from './cluster/fd.js';
import { Primary } from './cluster/primary.js';
import { Router } from './cluster/router.js';
import { ASK } from './cluster/wire.js';
import { Membership, workerEnv } from './cluster/worker.js';
import { Connection, ReadyState, type ConnectionOwner } from './connection.js';
import { DeflateShared, PerMessageDeflate, resolveDeflateOptions, SharedMessage, type PerMessageDeflateOptions } from './deflate.js';
import { CloseCode, WebSocketError } from './errors.js';
import { Heartbeat } from './heartbeat.js';
import { backend, nativeStatus, type Backend, type NativeStatus } from './native.js';
import { negotiateDeflate, parseExtensions, type DeflateAgreement } from './protocol/extensions.js';
import { encodeFrame, type EncodedFrame } from './protocol/frame.js';
import { acceptResponse, checkUpgrade, hasToken, rejectResponse } from './protocol/handshake.js';
import { OPCODE } from './protocol/opcode.js';
import { Topics } from './pubsub.js';
import { Frame } from './received-frame.js';
import { Registry } from './registry.js';
import { HandshakeResponse, UpgradeRequest } from './upgrade-request.js';
import { armHandshakeTimer, disarmHandshakeTimer, NativeHandshake, SocketHandshake, type Handshake } from './handshake-io.js';
import { parseRequestHead, type RequestHead } from './protocol/http-head.js';
import { NativeTransport, nativeTransportAvailable, type NativeWire } from './transport.js';

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
  /**
   * Worker processes. 1 (the default) is one process, as before. With N > 1,
   * `start()` in the primary forks N workers (node:cluster) that share the
   * port and run the event handlers; any worker can reach any fd. See Scaling
   * in the README.
   */
  workerNum?: number;
  /** Joins server instances (other machines, other ports): `broadcast`, `publish` and `push(fd)` reach their connections. */
  adapter?: Adapter;
  /** This instance's id among those joined by an adapter (1-255); by default the adapter hands one out. */
  instanceId?: number;
  /**
   * Serve plain-TCP connections from the addon's native transport (Linux
   * with the addon; the default there): no `net.Socket` per WebSocket, about
   * a fifth of the memory per connection, handshakes without Node's HTTP
   * parser. Plain HTTP requests still go to Node's http.Server and the
   * `request` event. `false` uses Node's net and http modules throughout, as
   * with TLS, an attached server, `noServer` and workers.
   */
  nativeTransport?: boolean;
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
  /** Only this process's connections (not other workers' or instances'). */
  local?: boolean;
}

/** Options of `publish`. */
export interface PublishOptions {
  /** Default `OPCODE.TEXT`, or a relayed frame's own opcode. */
  opcode?: number;
  /** An fd that should not get the message, typically the publisher. */
  except?: number;
  /** Compress for connections that negotiated it: true forces, false forbids; default by `threshold`. */
  compress?: boolean;
  /** Only this process's subscribers (not other workers' or instances'). */
  local?: boolean;
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
  /** Why the backend is what it is: the addon loaded, or forced off, missing for this platform, or failing to load (with the message). */
  native: NativeStatus;
  /** What the listener runs on: the addon's native transport, or Node's net and http modules. */
  transport: 'native' | 'node';
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
  /** In the primary (`workerNum` > 1): a worker listens, at start, after a crash or in a reload. */
  workerStart: [workerId: number, pid: number];
  /** In the primary: a worker process ended (crashed, or stopped by `reload()` / `stop()`). */
  workerExit: [workerId: number, code: number | null, signal: string | null];
}

/** Data types `push` accepts. */
export type PushData = string | Buffer | ArrayBuffer | ArrayBufferView | Frame;

const MiB = 1024 * 1024;
const EMPTY = Buffer.alloc(0);
/** One empty ping frame shared by every heartbeat ping (so a sweep's pings batch as one group). */
const HEARTBEAT_PING = encodeFrame(OPCODE.PING, EMPTY);
function ignoreError(): void {}

/** Listens with Node's own net server (TLS, no addon, `nativeTransport: false`). */
function listenNode(server: http.Server | https.Server, options: ServerOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: options.port ?? 0, host: options.host, backlog: options.backlog }, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
}

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
  private readonly workerNum: number;
  /** Other workers and instances (see `cluster/router.ts`); null for a lone process. */
  private router: Router | null = null;
  /** The native transport when it listens (see `nativeTransport`). */
  private transport: NativeTransport | null = null;
  private membership: Membership | null = null;
  private primary: Primary | null = null;

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (this.options.path !== undefined && this.httpServer !== null && !this.ownsHttpServer) {
      // Attached: leave other paths to the server's other upgrade listeners.
      if (pathOf(req.url) !== this.options.path && this.httpServer.listenerCount('upgrade') > 1) return;
    }
    this.handleUpgrade(req, socket, head);
  };
  private readonly onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    disarmHandshakeTimer(req.socket);
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
    armHandshakeTimer(socket, this.handshakeTimeout);
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
    this.workerNum = options.workerNum ?? 1;
    if (!Number.isInteger(this.workerNum) || this.workerNum < 1) {
      throw new RangeError(`workerNum must be a positive integer, got ${String(options.workerNum)}`);
    }
    if (this.workerNum > 1 && !this.ownsHttpServer) throw new TypeError('workerNum > 1 needs the server to listen itself');
    if (options.instanceId !== undefined) ownerCode(options.instanceId, 0);
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
    if (this.workerNum > 1 && cluster.isPrimary) return this.startPrimary();
    await this.startScaleOut();
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
      try {
        if (this.usesNativeTransport()) await this.listenNative(server);
        else await listenNode(server, options);
      } catch (error) {
        this.started = false;
        this.httpServer = null;
        throw error;
      }
    }
    this.heartbeat.start();
    this.membership?.listening(this.port);
  }

  private usesNativeTransport(): boolean {
    const host = this.options.host;
    return (
      this.options.nativeTransport !== false &&
      nativeTransportAvailable &&
      this.options.tls === undefined &&
      this.workerNum === 1 &&
      // Scoped IPv6 addresses (fe80::1%eth0) are Node's to bind.
      (host === undefined || !host.includes('%'))
    );
  }

  /**
   * Listens with the native transport. `server` never listens itself: it
   * gets the connections that are plain HTTP, as if it had accepted them.
   */
  private async listenNative(server: http.Server): Promise<void> {
    const transport = new NativeTransport({ onHead: this.onNativeHead, onHttp: this.onNativeHttp }, this.handshakeTimeout);
    const { port = 0, backlog } = this.options;
    try {
      const host = this.options.host;
      if (host === undefined) {
        // Node's default: IPv6 any-address taking IPv4 too, or IPv4 alone without IPv6.
        try {
          transport.listen('::', port, backlog, false);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EAFNOSUPPORT') throw error;
          transport.listen('0.0.0.0', port, backlog, false);
        }
      } else {
        const address = isIP(host) !== 0 ? host : (await lookup(host)).address;
        transport.listen(address, port, backlog, false);
      }
    } catch (error) {
      transport.close();
      throw error;
    }
    this.transport = transport;
    // http.Server tracks its connections (closeAllConnections, request
    // timeouts) from its 'listening' event on.
    server.emit('listening');
  }

  private readonly onNativeHead = (wire: NativeWire, head: Buffer): void => {
    const transport = this.transport!;
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
    this.decide(req, new NativeHandshake(transport, wire, head.length));
  };

  private readonly onNativeHttp = (socket: Socket): void => {
    const server = this.httpServer;
    if (server === null || this.stopping) {
      socket.destroy();
      return;
    }
    (socket as Socket & { server: unknown }).server = server;
    server.emit('connection', socket);
  };

  /** The primary of `workerNum` workers: forks them and waits until they all listen. */
  private async startPrimary(): Promise<void> {
    const adapter = this.options.adapter;
    const instance = this.options.instanceId ?? (adapter !== undefined ? await adapter.allocateInstanceId() : 0);
    this.primary = new Primary(this.workerNum, instance, this.closeTimeout, {
      workerStart: (id, pid) => this.emit('workerStart', id, pid),
      workerExit: (id, code, signal) => this.emit('workerExit', id, code, signal),
      error: (error) => this.reportError(error),
    });
    try {
      await this.primary.start();
    } catch (error) {
      this.primary = null;
      this.started = false;
      throw error;
    }
  }

  /** In a worker, or with an adapter: the fds' owner, the router, the worker mesh. */
  private async startScaleOut(): Promise<void> {
    const env = this.workerNum > 1 ? workerEnv() : null;
    const adapter = this.options.adapter ?? null;
    if (env === null && adapter === null) return;
    const instance = env?.instance ?? this.options.instanceId ?? (await adapter!.allocateInstanceId());
    const owner = ownerCode(instance, env?.slot ?? 0);
    this.registry.rebase(owner * SEQ_RANGE);
    const router = new Router(owner, this, adapter, (error) => this.reportError(error));
    this.router = router;
    try {
      await router.openAdapter();
      if (env !== null) {
        this.membership = new Membership(env, router, () => this.stop());
        await this.membership.join();
      }
    } catch (error) {
      await this.closeScaleOut();
      this.started = false;
      throw error;
    }
  }

  private async closeScaleOut(): Promise<void> {
    const router = this.router;
    this.router = null;
    this.membership?.close();
    await router?.close();
  }

  /** The port listened on (or of the attached server); 0 before `start()`. */
  get port(): number {
    if (this.primary !== null) return this.primary.port;
    if (this.transport !== null) return this.transport.port;
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
    if (this.primary !== null) {
      await this.primary.stop();
      this.primary = null;
      this.started = false;
      return;
    }
    // In a worker, stop() stops the whole server: the primary stops every worker (this one too).
    if (this.membership !== null && !this.membership.stopping) return this.membership.requestStop();
    // A worker leaving (reload, stop) while the others accept: handshakes already under way finish first.
    if (this.membership !== null && this.httpServer !== null && this.ownsHttpServer) await this.drainHandshakes(this.httpServer);
    this.stopping = true;
    this.heartbeat.stop();
    this.transport?.closeListener();
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
    this.transport?.close();
    this.transport = null;
    if (server !== null && this.ownsHttpServer) {
      server.closeAllConnections();
      server.removeListener('request', this.onRequest);
      server.removeListener('connection', this.onConnection);
      await closed;
    }
    this.deflateShared?.close();
    await this.closeScaleOut();
    this.membership = null;
    this.httpServer = null;
    this.started = false;
  }

  /**
   * Waits (at most 2 s, or `handshakeTimeout`) until every TCP connection
   * the closed listener accepted has become a WebSocket or gone, so a client
   * in the middle of its handshake is upgraded (then closed with 1001 like
   * the rest) rather than refused.
   */
  private async drainHandshakes(server: http.Server | https.Server): Promise<void> {
    // net's close, not http's: http's also cuts connections that have not sent their request yet.
    NetServer.prototype.close.call(server);
    const deadline = Date.now() + Math.min(this.handshakeTimeout || 2000, 2000);
    while (Date.now() < deadline) {
      const open = await new Promise<number>((resolve) => server.getConnections((error, n) => resolve(error ? 0 : n)));
      if (open <= this.registry.size) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  private allClosed(): Promise<void> {
    if (this.registry.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  // --- handshake --------------------------------------------------------------------

  /**
   * Takes over an upgrade request, as from an `http.Server`'s `'upgrade'`
   * event: validates it, runs the `handshake` hook, and answers 101 (then
   * `open`) or an HTTP error.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer = EMPTY): void {
    this.decide(req, new SocketHandshake(socket, head, this.handshakeTimeout));
  }

  /** Runs a handshake to its answer; an unexpected failure before the 101 answers 500. */
  private decide(req: RequestHead | IncomingMessage, handshake: Handshake): void {
    this.upgrade(req, handshake).catch((error: unknown) => {
      this.reject(handshake, 500);
      this.reportError(error instanceof Error ? error : new Error(String(error)));
    });
  }

  private async upgrade(req: RequestHead | IncomingMessage, handshake: Handshake): Promise<void> {
    if (this.stopping) return this.reject(handshake, 503, 'server shutting down');
    const check = checkUpgrade(req);
    if (!check.ok) return this.reject(handshake, check.status, check.message, check.headers);
    if (this.options.path !== undefined && pathOf(req.url) !== this.options.path) {
      return this.reject(handshake, 400, `no WebSocket endpoint at ${pathOf(req.url)}`);
    }
    if (this.registry.size + this.upgrading >= this.maxConnections) {
      return this.reject(handshake, 503, 'too many connections');
    }
    let extensions: DeflateAgreement | null = null;
    // Only set-cookie is ever an array.
    const offered = req.headers['sec-websocket-extensions'] as string | undefined;
    if (this.deflateShared !== null && offered !== undefined) {
      const offers = parseExtensions(offered);
      if (offers === null) return this.reject(handshake, 400, 'malformed Sec-WebSocket-Extensions header');
      extensions = negotiateDeflate(offers, this.deflateShared.options);
    }
    const supported = this.options.subprotocols;
    const protocol = supported ? (check.protocols.find((p) => supported.includes(p)) ?? '') : '';
    const request = new UpgradeRequest<Data>(
      this.registry.allocate(),
      req.url ?? '/',
      req.headers as IncomingHttpHeaders,
      handshake.remoteAddress,
      handshake.remotePort,
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
        return this.reject(handshake, status, body, headers);
      }
      if (handshake.destroyed || this.stopping) return this.reject(handshake, 503, 'server shutting down');
      extraHeaders = response.headers;
    }
    this.accept(handshake, request, check.key, extraHeaders, extensions);
  }

  private accept(
    handshake: Handshake,
    request: UpgradeRequest<Data>,
    key: string,
    headers: OutgoingHttpHeaders | undefined,
    extensions: DeflateAgreement | null,
  ): void {
    const response = acceptResponse(key, request.protocol, headers, extensions?.response);
    const wire = handshake.open(response);
    // Gone before the 101 went out: nothing was opened.
    if (wire === null) return;
    const deflate = extensions === null ? null : new PerMessageDeflate(this.deflateShared!, extensions.params);
    const connection = new Connection<Data>(request.fd, wire, this, request.protocol, request.data, deflate);
    this.registry.add(request.fd, connection);
    this.counters.accepted++;
    this.router?.opened(request.fd);
    try {
      this.emit('open', request.fd, request);
    } catch (error) {
      // After the 101 this is a WebSocket: never an HTTP 500 (decide()'s catch).
      this.listenerFailed(connection, error);
      return;
    }
    handshake.started(connection);
  }

  private reject(handshake: Handshake, status: number, body?: string, headers?: OutgoingHttpHeaders): void {
    this.counters.rejected++;
    if (handshake.destroyed) {
      handshake.abandon();
      return;
    }
    let response: string;
    try {
      response = rejectResponse(status, body, headers);
    } catch (error) {
      // A hook's invalid header: answer without it.
      response = rejectResponse(500);
      this.reportError(error as Error);
    }
    handshake.refuse(response);
  }

  private reportError(error: Error, fd?: number): void {
    if (this.listenerCount('error') > 0) this.emit('error', error, fd);
  }

  // --- ConnectionOwner --------------------------------------------------------------

  /** @internal */
  onMessage(connection: Connection, opcode: number, payload: Buffer): void {
    this.counters.messagesIn++;
    try {
      this.emit('message', new Frame(connection.fd, opcode, payload));
    } catch (error) {
      this.listenerFailed(connection, error);
    }
  }

  /**
   * An `open` or `message` listener threw for `connection`. Its state in the
   * app is unknown now, so it is failed with 1011 and nothing more is
   * delivered for it (the rest of the chunk is not misparsed). The error goes
   * to `error` listeners; without any it is rethrown on the next tick, an
   * uncaught exception, as a throwing listener is anywhere in Node.
   */
  private listenerFailed(connection: Connection, error: unknown): void {
    connection.expire(CloseCode.INTERNAL_ERROR, 'internal error');
    const failure = error instanceof Error ? error : new Error(String(error));
    if (this.listenerCount('error') > 0) {
      this.emit('error', failure, connection.fd);
    } else {
      process.nextTick(() => {
        throw failure;
      });
    }
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
    counters.bytesIn += connection.bytesIn;
    counters.bytesOut += connection.bytesOut;
    this.router?.closed(connection.fd);
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
   *
   * An fd of another worker or instance is handed to the process that holds
   * it: true means handed over (messages from one process keep their order),
   * false that no such process is known. `pushAsync` resolves with the
   * owner's own answer.
   */
  push(fd: number, data: PushData, opcode?: number, finish = true, compress?: boolean): boolean {
    opcode = resolveOpcode(data, opcode);
    const payload = this.validate(data, opcode, finish);
    if (compress !== undefined && typeof compress !== 'boolean') throw new TypeError('compress must be a boolean');
    const connection = this.registry.get(fd);
    // Another worker's or instance's fd: handed to its owner (see pushAsync for the owner's answer).
    if (connection === undefined) return this.router?.push(fd, opcode, payload, finish, compress) ?? false;
    if (connection.state !== ReadyState.OPEN) return false;
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
   * reached (not those skipped for backpressure) in this process; with other
   * workers or instances it is also sent once to each of them, which deliver
   * it to their own connections (`filter` then needs `local: true`).
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
    if (this.router !== null && options.local !== true) {
      // A function cannot run in another process: the caller says which part it means.
      if (filter !== undefined) throw new TypeError('filter works only with local: true when there are other workers or instances');
      this.router.broadcast(opcode, payload, skip === undefined ? [] : typeof skip === 'number' ? [skip] : [...skip], options.compress);
    }
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
   * how many it reached in this process; with other workers or instances it
   * is also sent once to each of them for their subscribers. A topic with no
   * subscribers costs one map lookup (in a lone process).
   */
  publish(topic: string, data: PushData, options: PublishOptions = {}): number {
    checkTopic(topic);
    const subscribers = this.topicIndex.subscribers(topic);
    const remote = this.router !== null && options.local !== true;
    if (subscribers === undefined && !remote) return 0;
    const opcode = resolveOpcode(data, options.opcode);
    if (opcode !== OPCODE.TEXT && opcode !== OPCODE.BINARY) throw new TypeError('publish sends text or binary messages');
    const payload = this.validate(data, opcode, true);
    if (remote) this.router!.publish(topic, opcode, payload, options.except, options.compress);
    if (subscribers === undefined) return 0;
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
    if (connection === undefined) return this.router?.disconnect(fd, code, reason) ?? false;
    return connection.close(code, reason);
  }

  /** Closes the TCP connection at once, without a closing handshake. False when `fd` is unknown. */
  close(fd: number): boolean {
    const connection = this.registry.get(fd);
    if (connection === undefined) return false;
    connection.destroy();
    return true;
  }

  /**
   * Whether `fd` is a connection of this server that has not closed yet. For
   * another worker's fd: as that worker last said (its open and close events
   * reach the other workers a moment later); false for another instance's
   * fd: use `existAsync`.
   */
  exist(fd: number): boolean {
    return this.registry.get(fd) !== undefined || (this.router?.knows(fd) ?? false);
  }

  /**
   * Whether `fd` is an open WebSocket (handshake done, no close started).
   * For another worker's fd: open from its `open` to its `close` event as
   * that worker last said (a closing handshake in progress is not seen); for
   * another instance's fd false: use `isEstablishedAsync`.
   */
  isEstablished(fd: number): boolean {
    const connection = this.registry.get(fd);
    if (connection === undefined) return this.router?.knows(fd) ?? false;
    return connection.state === ReadyState.OPEN;
  }

  /** The fds of all connections, oldest first (Swoole's `connection_list`); with workers, this worker's (see `connectionsAsync`). */
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
      bytesIn: c.bytesIn,
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

  /** Counters since start, live connections included; with workers, this worker's (see `statsAsync`). */
  stats(): ServerStats {
    const totals = { ...this.counters };
    for (const c of this.registry.values()) {
      totals.messagesOut += c.messagesOut;
      totals.bytesIn += c.bytesIn;
      totals.bytesOut += c.bytesOut;
    }
    return {
      backend,
      native: nativeStatus,
      transport: this.transport !== null ? 'native' : 'node',
      connections: this.registry.size,
      ...totals,
      errors: { ...this.errorCounts },
    };
  }

  // --- across workers and instances (see Scaling in the README) ----------------------

  /** This process's worker: 0 .. workerNum - 1 in a worker, -1 in the primary, 0 in a lone process. */
  get workerId(): number {
    if (this.primary !== null || (this.workerNum > 1 && cluster.isPrimary)) return -1;
    return this.membership?.env.workerId ?? 0;
  }

  /**
   * `push` that resolves with the owner's answer: what `push` would have
   * returned in the process that holds `fd` (false for an unknown fd, also
   * when that process is gone). Throws on bad arguments, as `push` does.
   */
  pushAsync(fd: number, data: PushData, opcode?: number, finish = true, compress?: boolean): Promise<boolean> {
    if (this.router === null || this.registry.get(fd) !== undefined) {
      return Promise.resolve(this.push(fd, data, opcode, finish, compress));
    }
    opcode = resolveOpcode(data, opcode);
    const payload = this.validate(data, opcode, finish);
    if (compress !== undefined && typeof compress !== 'boolean') throw new TypeError('compress must be a boolean');
    return this.router.ask(fd, ASK.PUSH, { opcode, payload, fin: finish, compress }) as Promise<boolean>;
  }

  /** `exist` answered by the process that holds `fd` (any worker, any instance). */
  existAsync(fd: number): Promise<boolean> {
    if (this.router === null || this.registry.get(fd) !== undefined) return Promise.resolve(this.exist(fd));
    return this.router.ask(fd, ASK.EXIST) as Promise<boolean>;
  }

  /** `isEstablished` answered by the process that holds `fd` (a closing handshake in progress counts). */
  isEstablishedAsync(fd: number): Promise<boolean> {
    if (this.router === null || this.registry.get(fd) !== undefined) return Promise.resolve(this.isEstablished(fd));
    return this.router.ask(fd, ASK.ESTABLISHED) as Promise<boolean>;
  }

  /** `getClientInfo` for an fd of any worker or instance. */
  getClientInfoAsync(fd: number): Promise<ClientInfo | undefined> {
    if (this.router === null || this.registry.get(fd) !== undefined) return Promise.resolve(this.getClientInfo(fd));
    return this.router.ask(fd, ASK.INFO) as Promise<ClientInfo | undefined>;
  }

  /** The fds of every worker on this machine (`connections` is this process's only). */
  async connectionsAsync(): Promise<number[]> {
    const local = [...this.registry.fds()];
    if (this.router === null) return local;
    const others = (await this.router.askWorkers(ASK.CONNECTIONS)) as number[][];
    return local.concat(...others);
  }

  /** `stats()` summed over every worker on this machine. */
  async statsAsync(): Promise<ServerStats> {
    const total = this.stats();
    if (this.router === null) return total;
    for (const other of (await this.router.askWorkers(ASK.STATS)) as (ServerStats | undefined)[]) {
      if (other === undefined) continue;
      for (const key of ['connections', 'accepted', 'closed', 'rejected', 'messagesIn', 'messagesOut', 'bytesIn', 'bytesOut', 'dropped'] as const) {
        total[key] += other[key];
      }
      for (const [code, count] of Object.entries(other.errors)) {
        total.errors[Number(code)] = (total.errors[Number(code)] ?? 0) + count;
      }
    }
    return total;
  }

  /**
   * Rolling restart of the workers (`workerNum` > 1): one at a time closes
   * its connections (1001, handshakes finished) and exits, and a fresh one
   * takes its id and listens before the next goes; the others accept all
   * along. In the primary it resolves when every worker is new; in a worker
   * it asks the primary and resolves at once.
   */
  async reload(): Promise<void> {
    if (this.primary !== null) return this.primary.reload();
    if (this.membership !== null) return this.membership.reload();
    throw new Error('reload() needs workerNum > 1 and a started server');
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
