/**
 * The public server: Swoole's WebSocket API in TypeScript. A facade over
 * the server's parts: options (`options.ts`), shared state and events
 * (`server-core.ts`), the three ways to listen (`listen-node.ts`,
 * `listen-native.ts`, `listen-workers.ts`), the upgrade decision
 * (`upgrade.ts`) and sending (`send.ts`). The protocol is in `protocol/`,
 * one socket's life in `connection.ts`.
 */
import { Buffer } from 'node:buffer';
import cluster from 'node:cluster';
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { ASK } from './cluster/wire.js';
import { ReadyState } from './connection-owner.js';
import { CloseCode } from './errors.js';
import { listenNative, usesNativeTransport } from './listen-native.js';
import { handleSocketUpgrade, HttpFront, listenNode } from './listen-node.js';
import { closeScaleOut, startPrimary, startScaleOut } from './listen-workers.js';
import { checkTime, resolveOptions } from './options.js';
import { OPCODE } from './protocol/opcode.js';
import { broadcast, checkCompress, checkTopic, publish, push, resolveOpcode, validate } from './send.js';
import { ServerCore } from './server-core.js';
import type { BroadcastOptions, ClientInfo, Presence, PresenceOptions, PublishOptions, PushData, ServerEvents, ServerOptions, ServerStats, StopOptions } from './server-types.js';

const EMPTY = Buffer.alloc(0);
/** How long `connectionsAsync` and `statsAsync` wait for other instances by default (ms). */
const PRESENCE_TIMEOUT = 2000;

function presenceTimeout(options: PresenceOptions): number {
  const timeout = options.timeout ?? PRESENCE_TIMEOUT;
  if (!Number.isFinite(timeout) || timeout <= 0) throw new RangeError('timeout must be a positive number of milliseconds');
  return timeout;
}

/** Codes an application may send in a close frame (RFC 6455 7.4.1-7.4.2). */
function isSendableCloseCode(code: number): boolean {
  return (
    Number.isInteger(code) &&
    ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999))
  );
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
export class Server<Data = unknown> extends EventEmitter<ServerEvents<Data>> {
  /** Largest message, reassembled, in either direction (bytes). */
  readonly maxPayload: number;
  /** How long a closing handshake may take before the TCP connection is cut (ms). */
  readonly closeTimeout: number;
  readonly #core: ServerCore<Data>;
  /** The `http.Server` listened with or attached to; null before `start()` and with `noServer`. */
  #front: HttpFront<Data> | null = null;
  #started = false;

  constructor(options: ServerOptions = {}) {
    super();
    const settings = resolveOptions(options);
    this.#core = new ServerCore<Data>(settings, this);
    this.#core.plannedTransport =
      settings.workerNum > 1 && cluster.isPrimary ? 'none' : settings.ownsHttpServer && usesNativeTransport(settings) ? 'native' : 'node';
    this.maxPayload = settings.maxPayload;
    this.closeTimeout = settings.closeTimeout;
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
    if (this.#started) throw new Error('the server is already started');
    this.#started = true;
    const core = this.#core;
    const settings = core.settings;
    core.stopping = false;
    try {
      if (settings.workerNum > 1 && cluster.isPrimary) return await startPrimary(core);
      await startScaleOut(core, this, () => this.stop());
    } catch (error) {
      this.#started = false;
      throw error;
    }
    if (settings.options.noServer) {
      core.heartbeat.start();
      return;
    }
    const front = new HttpFront(core);
    this.#front = front;
    front.attach();
    if (front.owned) {
      try {
        if (usesNativeTransport(settings)) await listenNative(core, front.server);
        else await listenNode(front.server, settings.options);
      } catch (error) {
        this.#started = false;
        this.#front = null;
        throw error;
      }
    }
    core.heartbeat.start();
    core.membership?.listening(this.port);
  }

  /** The port listened on (or of the attached server); 0 before `start()`. */
  get port(): number {
    const core = this.#core;
    if (core.primary !== null) return core.primary.port;
    if (core.transport !== null) return core.transport.port;
    const address = this.#front?.server.address();
    return address !== null && typeof address === 'object' ? (address as AddressInfo).port : 0;
  }

  /**
   * Stops accepting, closes every connection with 1001, waits for the closing
   * handshakes up to `timeout` ms (default `closeTimeout`), destroys the
   * rest, and resolves when all are gone.
   */
  async stop({ timeout = this.closeTimeout }: StopOptions = {}): Promise<void> {
    checkTime('timeout', timeout, 0);
    if (!this.#started) return;
    const core = this.#core;
    if (core.primary !== null) {
      await core.primary.stop();
      core.primary = null;
      this.#started = false;
      return;
    }
    // In a worker, stop() stops the whole server: the primary stops every worker (this one too).
    if (core.membership !== null && !core.membership.stopping) return core.membership.requestStop();
    const front = this.#front;
    // A worker leaving (reload, stop) while the others accept: handshakes already under way finish first.
    if (core.membership !== null && front !== null && front.owned) await front.drainHandshakes();
    core.stopping = true;
    core.heartbeat.stop();
    core.transport?.closeListener();
    const closed = front !== null ? front.stopAccepting() : Promise.resolve();
    for (const connection of core.registry.values()) {
      connection.close(CloseCode.GOING_AWAY, 'server shutting down');
    }
    if (core.registry.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        core.allClosed(),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeout);
        }),
      ]);
      clearTimeout(timer);
      for (const connection of core.registry.values()) connection.destroy();
      await core.allClosed();
    }
    core.transport?.close();
    core.transport = null;
    if (front !== null) {
      front.release();
      await closed;
    }
    core.deflateShared?.close();
    await closeScaleOut(core);
    core.membership = null;
    this.#front = null;
    this.#started = false;
  }

  // --- handshake --------------------------------------------------------------------

  /**
   * Takes over an upgrade request, as from an `http.Server`'s `'upgrade'`
   * event: validates it, runs the `handshake` hook, and answers 101 (then
   * `open`) or an HTTP error.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer = EMPTY): void {
    handleSocketUpgrade(this.#core, req, socket, head);
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
    return push(this.#core, fd, data, opcode, finish, compress);
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
    return broadcast(this.#core, data, options);
  }

  /** Subscribes `fd` to `topic` (any string). False when `fd` is not established or already subscribed. */
  subscribe(fd: number, topic: string): boolean {
    checkTopic(topic);
    const connection = this.#core.registry.get(fd);
    if (connection === undefined || connection.state !== ReadyState.OPEN) return false;
    return this.#core.topicIndex.subscribe(connection, topic);
  }

  /** Ends `fd`'s subscription to `topic`. False when it was not subscribed. */
  unsubscribe(fd: number, topic: string): boolean {
    checkTopic(topic);
    const connection = this.#core.registry.get(fd);
    return connection !== undefined && this.#core.topicIndex.unsubscribe(connection, topic);
  }

  /** Whether `fd` is subscribed to `topic`. */
  isSubscribed(fd: number, topic: string): boolean {
    return this.#core.lookup(fd)?.topics?.has(topic) ?? false;
  }

  /** The topics `fd` is subscribed to (also during its `close` listeners, as they were at the end). */
  topics(fd: number): string[] {
    const topics = this.#core.lookup(fd)?.topics;
    return topics ? [...topics] : [];
  }

  /** How many connections are subscribed to `topic`. */
  subscriberCount(topic: string): number {
    return this.#core.topicIndex.count(topic);
  }

  /**
   * Sends one message to the subscribers of `topic`, encoded once. Returns
   * how many it reached in this process; with other workers or instances it
   * is also sent once to each of them for their subscribers. A topic with no
   * subscribers costs one map lookup (in a lone process).
   */
  publish(topic: string, data: PushData, options: PublishOptions = {}): number {
    return publish(this.#core, topic, data, options);
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
    const connection = this.#core.registry.get(fd);
    if (connection === undefined) return this.#core.router?.disconnect(fd, code, reason) ?? false;
    return connection.close(code, reason);
  }

  /** Closes the TCP connection at once, without a closing handshake. False when `fd` is unknown. */
  close(fd: number): boolean {
    const connection = this.#core.registry.get(fd);
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
    // has(): a resting connection is not woken to be looked at.
    return this.#core.registry.has(fd) || (this.#core.router?.knows(fd) ?? false);
  }

  /**
   * Whether `fd` is an open WebSocket (handshake done, no close started).
   * For another worker's fd: open from its `open` to its `close` event as
   * that worker last said (a closing handshake in progress is not seen); for
   * another instance's fd false: use `isEstablishedAsync`.
   */
  isEstablished(fd: number): boolean {
    const registry = this.#core.registry;
    if (!registry.has(fd)) return this.#core.router?.knows(fd) ?? false;
    // A resting connection is open with nothing under way (registry.ts): no need to wake it.
    return registry.isResting(fd) || registry.get(fd)!.state === ReadyState.OPEN;
  }

  /** The fds of all connections, oldest first (Swoole's `connection_list`); with workers, this worker's (see `connectionsAsync`). */
  get connections(): IterableIterator<number> {
    return this.#core.registry.fds();
  }

  /**
   * The data attached to `fd` by the handshake hook or `setData`; also
   * during `fd`'s `close` listeners (undefined after they return).
   */
  getData(fd: number): Data | undefined {
    return this.#core.lookup(fd)?.data;
  }

  /** Replaces the data attached to `fd`. False when `fd` is unknown. */
  setData(fd: number, data: Data): boolean {
    const connection = this.#core.registry.get(fd);
    if (connection === undefined) return false;
    connection.data = data;
    return true;
  }

  /** Bytes queued for `fd` in user space (0 for an unknown fd). */
  bufferedAmount(fd: number): number {
    return this.#core.registry.get(fd)?.bufferedAmount ?? 0;
  }

  /**
   * Facts about one connection, or undefined for an unknown fd. Also during
   * `fd`'s `close` listeners (with `established: false`), as Swoole's
   * `onClose` can read them; undefined after they return.
   */
  getClientInfo(fd: number): ClientInfo | undefined {
    return this.#core.clientInfo(fd);
  }

  /** Counters since start, live connections included; with workers, this worker's (see `statsAsync`). */
  stats(): ServerStats {
    return this.#core.stats();
  }

  // --- across workers and instances (see Scaling in the README) ----------------------

  /** This process's worker: 0 .. workerNum - 1 in a worker, -1 in the primary, 0 in a lone process. */
  get workerId(): number {
    const core = this.#core;
    if (core.primary !== null || (core.settings.workerNum > 1 && cluster.isPrimary)) return -1;
    return core.membership?.env.workerId ?? 0;
  }

  /**
   * `push` that resolves with the owner's answer: what `push` would have
   * returned in the process that holds `fd` (false for an unknown fd, also
   * when that process is gone). Throws on bad arguments, as `push` does.
   */
  pushAsync(fd: number, data: PushData, opcode?: number, finish = true, compress?: boolean): Promise<boolean> {
    const core = this.#core;
    if (core.router === null || core.registry.get(fd) !== undefined) {
      return Promise.resolve(this.push(fd, data, opcode, finish, compress));
    }
    opcode = resolveOpcode(data, opcode);
    const payload = validate(core.maxPayload, data, opcode, finish);
    checkCompress(compress);
    return core.router.ask(fd, ASK.PUSH, { opcode, payload, fin: finish, compress }) as Promise<boolean>;
  }

  /** `exist` answered by the process that holds `fd` (any worker, any instance). */
  existAsync(fd: number): Promise<boolean> {
    const core = this.#core;
    if (core.router === null || core.registry.get(fd) !== undefined) return Promise.resolve(this.exist(fd));
    return core.router.ask(fd, ASK.EXIST) as Promise<boolean>;
  }

  /** `isEstablished` answered by the process that holds `fd` (a closing handshake in progress counts). */
  isEstablishedAsync(fd: number): Promise<boolean> {
    const core = this.#core;
    if (core.router === null || core.registry.get(fd) !== undefined) return Promise.resolve(this.isEstablished(fd));
    return core.router.ask(fd, ASK.ESTABLISHED) as Promise<boolean>;
  }

  /** `getClientInfo` for an fd of any worker or instance. */
  getClientInfoAsync(fd: number): Promise<ClientInfo | undefined> {
    const core = this.#core;
    if (core.router === null || core.registry.get(fd) !== undefined) return Promise.resolve(this.getClientInfo(fd));
    return core.router.ask(fd, ASK.INFO) as Promise<ClientInfo | undefined>;
  }

  /**
   * The fds of every worker of every instance (`connections` is this
   * process's only). Other instances joined by an adapter with `members`
   * (`RedisAdapter`) are asked too, and waited for up to `timeout` ms; the
   * array says `partial: true` and names in `missing` the instances that did
   * not answer by then.
   */
  async connectionsAsync(options: PresenceOptions = {}): Promise<number[] & Presence> {
    const core = this.#core;
    const local = [...core.registry.fds()];
    if (core.router === null) return Object.assign(local, { partial: false, missing: [] });
    const { answers, partial, missing } = await core.router.askEveryone(ASK.CONNECTIONS, presenceTimeout(options));
    return Object.assign(local.concat(...(answers as number[][])), { partial, missing });
  }

  /** `stats()` summed over every worker of every instance, with `partial` and `missing` as in `connectionsAsync`. */
  async statsAsync(options: PresenceOptions = {}): Promise<ServerStats & Presence> {
    const total = this.stats();
    const router = this.#core.router;
    if (router === null) return Object.assign(total, { partial: false, missing: [] });
    const { answers, partial, missing } = await router.askEveryone(ASK.STATS, presenceTimeout(options));
    for (const other of answers as (ServerStats | undefined)[]) {
      if (other === undefined) continue;
      for (const key of ['connections', 'accepted', 'closed', 'rejected', 'messagesIn', 'messagesOut', 'bytesIn', 'bytesOut', 'dropped'] as const) {
        total[key] += other[key];
      }
      for (const [code, count] of Object.entries(other.errors)) {
        total.errors[Number(code)] = (total.errors[Number(code)] ?? 0) + count;
      }
    }
    return Object.assign(total, { partial, missing });
  }

  /**
   * Rolling restart of the workers (`workerNum` > 1): one at a time closes
   * its connections (1001, handshakes finished) and exits, and a fresh one
   * takes its id and listens before the next goes; the others accept all
   * along. In the primary it resolves when every worker is new; in a worker
   * it asks the primary and resolves at once.
   */
  async reload(): Promise<void> {
    const core = this.#core;
    if (core.primary !== null) return core.primary.reload();
    if (core.membership !== null) return core.membership.reload();
    throw new Error('reload() needs workerNum > 1 and a started server');
  }
}
