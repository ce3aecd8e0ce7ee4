/**
 * The public shapes of a server: its options, what its queries return, its
 * events, and what `push` accepts. Types only, below everything that uses
 * them (the server and the cluster router both import them; they import
 * neither).
 */
import type http from 'node:http';
import type https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TlsOptions } from 'node:tls';
import type { Adapter } from './adapter.js';
import type { PerMessageDeflateOptions } from './deflate.js';
import type { Backend, NativeStatus } from './native.js';
import type { Frame } from './received-frame.js';
import type { HandshakeResponse, UpgradeRequest } from './upgrade-request.js';

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
  /**
   * How often the one heartbeat timer sweeps the connections. Default a
   * third of the shorter of `pingInterval` and `heartbeatIdleTime` (10 s).
   * As in Swoole, given alone it sets `heartbeatIdleTime` to twice itself;
   * `0` alone turns the heartbeat off.
   */
  heartbeatCheckInterval?: number;
  /**
   * Close a connection that received nothing (not even a pong) for this
   * long, with 1001 "idle timeout": a half-open connection whose peer
   * vanished. Default 90 s: 3 x `pingInterval`, so after 2 unanswered
   * pings. 0 turns the heartbeat off (and, unless given, the pings).
   */
  heartbeatIdleTime?: number;
  /**
   * Ping a connection quiet for this long, and again each time as long,
   * so a healthy idle client answers and stays. Default 30 s (a third of
   * `heartbeatIdleTime` when only that is given). 0 sends no pings (and,
   * unless `heartbeatIdleTime` is given, closes no idle connection).
   */
  pingInterval?: number;
  /** Cut a TCP client that has not completed its handshake by then. Default 10 s. */
  handshakeTimeout?: number;
  /**
   * Swoole's `tcp_defer_accept` (nginx's `deferred`; Bun does it too): the
   * kernel hands the server a new connection once its first bytes have
   * come, so the server takes the connection and reads its request head in
   * one go, one wake-up and one epoll round less per handshake. A client
   * that connects and sends nothing is held by the kernel for about this
   * long (whole seconds, rounded up) before the server sees it, and
   * `handshakeTimeout` counts from then. Default 1 s; 0 turns it off. The
   * native transport only (Node's sockets do not offer it).
   */
  tcpDeferAccept?: number;
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
  /**
   * Lend each received `Frame` to its `message` listener only, as uWS.js
   * lends its message ArrayBuffer: read `frame.data` or `frame.payload`
   * inside the listener (what you read is yours to keep), or relay the frame
   * from there (`push(fd, frame)`, `broadcast(frame)`). Touching the frame
   * after the listener returned, after an `await` say, throws
   * `FrameExpiredError`. In exchange the native transport reads into the
   * same memory again at once, while it is still in the CPU's cache, instead
   * of waiting for V8 to free it: relaying 16 KiB messages costs the server
   * less CPU (see the README's benchmarks). Default false: a frame is yours
   * to keep, as in ws and Swoole.
   */
  borrowFrames?: boolean;
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

/** Options of `stop`. */
export interface StopOptions {
  /** How long to wait for closing handshakes before cutting the rest (ms). Default `closeTimeout`. */
  timeout?: number;
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
  /**
   * What the connections run on: the addon's native transport, or Node's
   * net and http modules; before `start()` (and after `stop()`), what they
   * will run on. `'none'` in the primary of workers, which serves none.
   */
  transport: 'native' | 'node' | 'none';
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
  /**
   * A connection is gone: the code and reason of its closing handshake (1006
   * if none). While the listeners run, `getData(fd)`, `getClientInfo(fd)` and
   * `topics(fd)` still answer (as Swoole's `onClose` can read the
   * connection); `exist(fd)` is false and sends to it return false. After
   * they return, nothing of the fd is left.
   */
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

/** Options of `connectionsAsync` and `statsAsync`. */
export interface PresenceOptions {
  /** How long to wait for the other instances' answers (ms). Default 2000. */
  timeout?: number;
}

/**
 * How complete an answer gathered from every instance is: the result of
 * `connectionsAsync` (an array) and `statsAsync` (an object) carries it.
 */
export interface Presence {
  /** True when some instance did not answer in time (or the list of instances could not be read). */
  partial: boolean;
  /** Ids of the instances, alive as far as the adapter knows, that did not answer in time. */
  missing: number[];
}
