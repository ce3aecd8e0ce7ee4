/**
 * Listening with the addon's native transport (`transport.ts`): the
 * transport accepts, hands clean WebSocket upgrade heads to the upgrade
 * decision, and gives every other connection to the server's Node
 * `http.Server` as a socket, as if that server had accepted it. In a worker
 * it listens on the socket the primary made and every worker shares.
 */
import type { EventEmitter } from 'node:events';
import type http from 'node:http';
import { maxHeaderSize } from 'node:http';
import type https from 'node:https';
import type { Socket } from 'node:net';
import { Connection } from './connection.js';
import { NativeHandshake } from './handshake-io.js';
import { clock } from './heartbeat.js';
import { bindLikeNet, inheritedListenFd } from './listen-address.js';
import type { Settings } from './options.js';
import { hasToken } from './protocol/handshake.js';
import { parseRequestHead } from './protocol/http-head.js';
import type { ServerCore } from './server-core.js';
import { NativeTransport, NativeWire, nativeTransportAvailable } from './transport.js';
import { decide, establish } from './upgrade.js';
import { UpgradeRequest } from './upgrade-request.js';

/**
 * Whether a server with these settings could listen with the native
 * transport, whatever its `workerNum`: the primary of workers shares a
 * native listening socket with them when this holds.
 */
export function nativeListenPossible(settings: Settings): boolean {
  const options = settings.options;
  const host = options.host;
  return (
    options.nativeTransport !== false &&
    nativeTransportAvailable &&
    options.tls === undefined &&
    // Scoped IPv6 addresses (fe80::1%eth0) are Node's to bind.
    (host === undefined || !host.includes('%'))
  );
}

/**
 * Whether a server with these settings listens with the native transport:
 * a lone process, or a worker whose primary gave it the listening socket.
 */
export function usesNativeTransport(settings: Settings): boolean {
  return nativeListenPossible(settings) && (settings.workerNum === 1 || inheritedListenFd() !== null);
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
      transport.release(wire, head);
      return;
    }
    decide(core, req, new NativeHandshake(transport, wire));
  };
  // A plainly valid upgrade the transport answered itself (no hook to run).
  const onOpen = (wire: NativeWire, head: Buffer): void => {
    establish(core, wire, UpgradeRequest.fromHead<Data>(core.registry.allocate(), head.toString('latin1'), wire), null);
  };
  // The same with nobody listening to `open`: nobody can see its request, and
  // establish() would make it rest (nothing of its own), so it rests from
  // the start, with no wire, request or copy of its head made.
  const onOpenResting = (slot: number, generation: number): boolean => {
    const registry = core.registry;
    if (!registry.canRest || core.events.listenerCount('open') > 0) return false;
    const fd = registry.allocate();
    const token = transport.parkOpened(slot, generation, fd, clock());
    if (token < 0) return false;
    registry.addResting(fd, token);
    core.counters.accepted++;
    try {
      core.router?.opened(fd);
    } catch (error) {
      // As onOpen's would be: reported, without losing the rest of the batch (transport.ts).
      process.nextTick(() => {
        throw error;
      });
    }
    return true;
  };
  const onHttp = (socket: Socket): void => {
    if (core.stopping) {
      socket.destroy();
      return;
    }
    (socket as Socket & { server: unknown }).server = server;
    server.emit('connection', socket);
  };
  // An event on a resting connection's slot wakes it (registry.ts).
  const wake = (fd: number): void => void core.registry.get(fd);
  const transport = new NativeTransport({ onHead, onOpen, onOpenResting, onHttp, onBatchEnd: () => allowFastOpens(core), wake }, core.settings.handshakeTimeout);
  // One read takes at most maxBackpressure (64 to 256 KiB; Infinity is no
  // limit, and N-API would read it as 0): what one read makes the server
  // answer then meets that limit over several batches, not within one.
  transport.binding.setReadSize(Math.min(core.maxBackpressure, 2 ** 30));
  if (core.settings.borrowFrames) transport.binding.lendBatches(true);
  const inherited = inheritedListenFd();
  try {
    if (inherited !== null) transport.listenFd(inherited);
    else await bindLikeNet(core.settings.options, (address, port, backlog, ipv6Only) => transport.listen(address, port, backlog, ipv6Only));
    // A shared listener (workers) gets the same value from each: harmless.
    if (core.settings.tcpDeferAccept > 0) transport.binding.deferAccept(core.settings.tcpDeferAccept);
  } catch (error) {
    transport.close();
    throw error;
  }
  core.transport = transport;
  watchHandshakeHooks(core);
  allowFastOpens(core);
  core.registry.restWith({
    park: (fd, wire, connection) => {
      if (!(wire instanceof NativeWire) || wire.transport !== transport) return -1;
      if (connection === null) {
        const now = clock();
        return transport.park(wire, fd, now, now, 0);
      }
      return transport.park(wire, fd, connection.connectTime, connection.lastReceive, connection.lastPing, connection.messagesOut);
    },
    wake: (fd, slot) => {
      const [openedAt, lastReceive, lastPing] = transport.restedTimes(slot);
      const connection = new Connection<Data>(fd, transport.unpark(slot), core, '', undefined as Data, null);
      connection.connectTime = openedAt;
      connection.lastReceive = lastReceive;
      connection.lastPing = lastPing;
      connection.messagesOut = transport.restedCounts(slot)[2];
      return connection;
    },
    quietSince: (slot) => transport.quietSince(slot),
    counts: (slot) => transport.restedCounts(slot),
  });
  // http.Server tracks its connections (closeAllConnections, request
  // timeouts) from its 'listening' event on.
  server.emit('listening');
}

/** The longest head the transport answers itself (native/handshake-fast.h). */
const FAST_HEAD_MAX = 4096;

/**
 * Lets the transport answer plainly valid upgrades itself, as many as the
 * server has room for, while nothing else needs deciding: no `handshake`
 * hook and not stopping. Renewed after each batch of events.
 */
function allowFastOpens<Data>(core: ServerCore<Data>): void {
  const transport = core.transport;
  if (transport === null) return;
  // maxConnections is Infinity by default; the transport counts in int32.
  const room = Math.min(core.settings.maxConnections - core.registry.size - core.upgrading, 2 ** 31 - 1);
  const budget = core.stopping || core.events.listenerCount('handshake') > 0 ? 0 : Math.max(room, 0);
  transport.setFastOpen(budget, core.settings.options.path ?? '', Math.min(maxHeaderSize, FAST_HEAD_MAX));
}

const watched = new WeakSet<object>();

/** A `handshake` hook added between batches takes effect at once: fast opens stop before it is added. */
function watchHandshakeHooks<Data>(core: ServerCore<Data>): void {
  if (watched.has(core)) return;
  watched.add(core);
  (core.events as EventEmitter).on('newListener', (name: string | symbol) => {
    if (name === 'handshake') core.transport?.setFastOpen(0, '', 0);
  });
}
