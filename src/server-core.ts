/**
 * What every part of a server shares: its settings, its connections (fds,
 * topics, the write batcher, the heartbeat), its counters, and what its
 * connections report (messages, pings, protocol errors, closes), turned
 * into the server's events. The public `Server` holds one, and so do the
 * parts that listen, upgrade and send; it is never part of the public API.
 */
import { Buffer } from 'node:buffer';
import type { EventEmitter } from 'node:events';
import { Batcher } from './batcher.js';
import type { Primary } from './cluster/primary.js';
import type { Router } from './cluster/router.js';
import type { Membership } from './cluster/worker.js';
import type { Connection } from './connection.js';
import { ReadyState, type ConnectionOwner } from './connection-owner.js';
import { DeflateShared } from './deflate.js';
import { CloseCode, type WebSocketError } from './errors.js';
import { CLOCK_EPOCH, Heartbeat } from './heartbeat.js';
import { backend, nativeStatus } from './native.js';
import type { Settings } from './options.js';
import { encodeFrame } from './protocol/frame.js';
import { OPCODE } from './protocol/opcode.js';
import { Topics } from './pubsub.js';
import { expire, receivedFrame } from './received-frame.js';
import { Registry } from './registry.js';
import type { ClientInfo, ServerEvents, ServerStats } from './server-types.js';
import type { NativeTransport } from './transport.js';

/** One empty ping frame shared by every heartbeat ping (so a sweep's pings batch as one group). */
const HEARTBEAT_PING = encodeFrame(OPCODE.PING, Buffer.alloc(0));

/** Each public server's core, for the few tests that look inside (zlib pools, queues). */
const cores = new WeakMap<object, ServerCore<unknown>>();

/** The core of a `Server` (internal: tests only; not exported by the package). */
export function coreOf<Data>(server: EventEmitter<ServerEvents<Data>>): ServerCore<Data> {
  const core = cores.get(server);
  if (core === undefined) throw new TypeError('not a wavecast Server');
  return core as ServerCore<Data>;
}

/** The shared state of one server, and the owner its connections report to. */
export class ServerCore<Data> implements ConnectionOwner<Connection> {
  readonly maxPayload: number;
  readonly closeTimeout: number;
  readonly maxBackpressure: number;
  readonly backpressure: 'drop' | 'close';
  readonly batcher = new Batcher();
  readonly topicIndex = new Topics<Connection<Data>>((topic, subscribed) => this.router?.topicChanged(topic, subscribed));
  /** permessage-deflate's server-wide part (settings, zlib queue, pools); null when off. */
  readonly deflateShared: DeflateShared | null;
  readonly registry = new Registry<Connection<Data>>();
  readonly heartbeat: Heartbeat<Connection<Data>>;
  /** Stopping: new upgrades get 503, plain HTTP connections are refused. */
  stopping = false;
  /** Upgrades between request and 101 (an async hook may be running). */
  upgrading = 0;
  /** A failed handshake was reported with `process.emitWarning` (once per server, without `error` listeners). */
  handshakeFailureWarned = false;
  readonly counters = {
    accepted: 0,
    closed: 0,
    rejected: 0,
    messagesIn: 0,
    messagesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    dropped: 0,
  };
  readonly errorCounts: Record<number, number> = {};
  /** Other workers and instances (see `cluster/router.ts`); null for a lone process. */
  router: Router | null = null;
  /** The native transport when it listens (see `nativeTransport`). */
  transport: NativeTransport | null = null;
  /** What `stats().transport` says while the native transport is not listening. */
  plannedTransport: 'native' | 'node' | 'none' = 'node';
  membership: Membership | null = null;
  primary: Primary | null = null;
  private closeWaiters: (() => void)[] = [];
  /**
   * Connections whose `close` listeners are running: gone from the registry
   * (not `exist`, sends return false) but still readable (`getData`,
   * `getClientInfo`, `topics`) until the listeners return.
   */
  private readonly departing = new Map<number, Connection<Data>>();

  constructor(
    readonly settings: Settings,
    /** The public server, which emits the events. */
    readonly events: EventEmitter<ServerEvents<Data>>,
  ) {
    this.maxPayload = settings.maxPayload;
    this.closeTimeout = settings.closeTimeout;
    this.maxBackpressure = settings.maxBackpressure;
    this.backpressure = settings.backpressure;
    this.deflateShared = settings.deflate === null ? null : new DeflateShared(settings.deflate, this.maxPayload);
    this.heartbeat = new Heartbeat({
      ...settings.heartbeat,
      connections: () => this.registry.awake(),
      wakeQuietSince: (time) => this.registry.wakeQuietSince(time),
      onIdle: (connection) => connection.expire(CloseCode.GOING_AWAY, 'idle timeout'),
      onPing: (connection) => connection.send(OPCODE.PING, HEARTBEAT_PING, true),
    });
    cores.set(events, this as ServerCore<unknown>);
  }

  /**
   * The connection of `fd` for reading its state: a live one, or one whose
   * `close` listeners are running. Sends and subscriptions use `registry`.
   */
  lookup(fd: number): Connection<Data> | undefined {
    return this.registry.get(fd) ?? (this.departing.size > 0 ? this.departing.get(fd) : undefined);
  }

  /** Resolves when no connection is left. */
  allClosed(): Promise<void> {
    if (this.registry.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.push(resolve));
  }

  /** Emits `error` when listened to (errors nobody asked for are not thrown). */
  reportError(error: Error, fd?: number): void {
    if (this.events.listenerCount('error') > 0) this.events.emit('error', error, fd);
  }

  /**
   * An `open` or `message` listener threw for `connection`. Its state in the
   * app is unknown now, so it is failed with 1011 and nothing more is
   * delivered for it (the rest of the chunk is not misparsed). The error goes
   * to `error` listeners; without any it is rethrown on the next tick, an
   * uncaught exception, as a throwing listener is anywhere in Node.
   */
  listenerFailed(connection: Connection, error: unknown): void {
    connection.expire(CloseCode.INTERNAL_ERROR, 'internal error');
    const failure = error instanceof Error ? error : new Error(String(error));
    if (this.events.listenerCount('error') > 0) {
      this.events.emit('error', failure, connection.fd);
    } else {
      process.nextTick(() => {
        throw failure;
      });
    }
  }

  /** Facts about one connection of this process, or undefined for an unknown fd. */
  clientInfo(fd: number): ClientInfo | undefined {
    const c = this.lookup(fd);
    if (c === undefined) return undefined;
    return {
      fd,
      remoteAddress: c.remoteAddress,
      remotePort: c.remotePort,
      connectTime: CLOCK_EPOCH + c.connectTime,
      lastReceiveTime: CLOCK_EPOCH + c.lastReceive,
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

  /** Counters since start, live connections included. */
  stats(): ServerStats {
    const totals = { ...this.counters };
    for (const c of this.registry.awake()) {
      totals.messagesOut += c.messagesOut;
      totals.bytesIn += c.bytesIn;
      totals.bytesOut += c.bytesOut;
    }
    // Resting connections count without waking.
    const [restingIn, restingOut, restingMessagesOut] = this.registry.restingCounts();
    totals.bytesIn += restingIn;
    totals.bytesOut += restingOut;
    totals.messagesOut += restingMessagesOut;
    return {
      backend,
      native: nativeStatus,
      transport: this.transport !== null ? 'native' : this.plannedTransport,
      connections: this.registry.size,
      ...totals,
      errors: { ...this.errorCounts },
    };
  }

  // --- ConnectionOwner --------------------------------------------------------------

  onMessage(connection: Connection, opcode: number, source: Buffer, start: number, end: number, inPlace: boolean): void {
    this.counters.messagesIn++;
    connection.messagesIn++;
    try {
      // A view into a native batch also holds other connections' bytes (a
      // payload read in place always is one: the batch holds its header too;
      // `.buffer` is a slow call, so it is asked only of the other payloads).
      const shared = connection.wire.handle >= 0 && (inPlace || source.length !== source.buffer.byteLength);
      const frame = receivedFrame(connection.fd, opcode, source, start, end, shared);
      try {
        this.events.emit('message', frame);
      } finally {
        // Lent to the listeners only: its bytes may be read into again (lease.ts).
        if (this.settings.borrowFrames) expire(frame);
      }
    } catch (error) {
      this.listenerFailed(connection, error);
    }
  }

  onPing(connection: Connection, payload: Buffer): void {
    if (this.events.listenerCount('ping') > 0) this.events.emit('ping', connection.fd, payload);
  }

  onPong(connection: Connection, payload: Buffer): void {
    if (this.events.listenerCount('pong') > 0) this.events.emit('pong', connection.fd, payload);
  }

  onProtocolError(connection: Connection, error: WebSocketError): void {
    this.errorCounts[error.closeCode] = (this.errorCounts[error.closeCode] ?? 0) + 1;
    this.reportError(error, connection.fd);
  }

  onClosed(closed: Connection, code: number, reason: string, wasClean: boolean): void {
    const connection = closed as Connection<Data>;
    const fd = connection.fd;
    this.registry.delete(fd);
    // Out of every topic (publishes no longer count it), but `topics(fd)` still answers during `close`.
    const topics = connection.topics;
    this.topicIndex.unsubscribeAll(connection);
    connection.topics = topics;
    const counters = this.counters;
    counters.closed++;
    counters.messagesOut += connection.messagesOut;
    counters.bytesIn += connection.bytesIn;
    counters.bytesOut += connection.bytesOut;
    this.router?.closed(fd);
    this.departing.set(fd, connection);
    try {
      this.events.emit('close', fd, code, reason, wasClean);
    } finally {
      this.departing.delete(fd);
      connection.topics = null;
    }
    if (this.registry.size === 0 && this.closeWaiters.length > 0) {
      const waiters = this.closeWaiters;
      this.closeWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  onDropped(connection: Connection, bytes: number): void {
    this.counters.dropped++;
    if (this.events.listenerCount('dropped') > 0) this.events.emit('dropped', connection.fd, bytes);
  }

  onDrain(connection: Connection): void {
    if (this.events.listenerCount('drain') > 0) this.events.emit('drain', connection.fd);
  }

  rest(connection: Connection): void {
    this.registry.rest(connection.fd, connection.wire, connection as Connection<Data>);
  }
}
