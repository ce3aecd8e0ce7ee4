/**
 * The two roads an opening handshake's bytes take: a Node socket from
 * http.Server's 'upgrade' event (or `handleUpgrade`), or a slot of the
 * native transport. The server decides a handshake the same way on both;
 * this is where they differ: how the answer is written, what the open
 * connection runs on, and when the client is cut for being slow.
 */
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Connection } from './connection.js';
import { ReadyState } from './connection-owner.js';
import type { NativeTransport, NativeWire } from './transport.js';
import { StreamWire, type Wire } from './wire.js';

/** One handshake under way. */
export interface Handshake {
  /** The client is gone, or sent its FIN: it can no longer be a WebSocket. */
  readonly destroyed: boolean;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Writes an HTTP refusal; the connection closes after the client's FIN (or the handshake deadline). */
  refuse(response: string): void;
  /** Closes what is left of a client that left (`destroyed`). */
  abandon(): void;
  /** Writes the 101 and returns the wire the connection runs on, or null when the client is gone. */
  open(response: string): Wire | null;
  /** The connection is open and announced: bytes that came with the request go to it now. */
  started(connection: Connection): void;
}

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

/**
 * Cuts `socket` if it has not become a WebSocket within `timeout` ms of now
 * (an absolute deadline from the first byte: a slowloris client trickling
 * headers is cut too). No-op when armed already or `timeout` is 0.
 */
export function armHandshakeTimer(socket: Duplex, timeout: number): void {
  const pending = socket as PendingSocket;
  if (timeout <= 0 || pending[kHandshakeTimer] !== undefined) return;
  const timer = setTimeout(onHandshakeTimeout, timeout, pending);
  timer.unref();
  pending[kHandshakeTimer] = timer;
  pending.once('close', onPendingClose);
}

/** The socket became something else (a plain HTTP request): no WebSocket deadline. */
export function disarmHandshakeTimer(socket: Duplex): void {
  clearHandshakeTimer(socket as PendingSocket);
}

/** A handshake on a Node socket. */
export class SocketHandshake implements Handshake {
  constructor(
    private readonly socket: Duplex,
    /** Bytes that came after the request head (Node's `head`). */
    private readonly head: Buffer,
    timeout: number,
  ) {
    armHandshakeTimer(socket, timeout);
    socket.on('error', ignoreError);
  }

  get destroyed(): boolean {
    // Node's http server lets the socket flow during an async hook, so a
    // client's FIN may already have ended it: nothing would report its close.
    const socket = this.socket;
    return socket.destroyed || !socket.readable || !socket.writable;
  }
  get remoteAddress(): string {
    return (this.socket as Socket).remoteAddress ?? '';
  }
  get remotePort(): number {
    return (this.socket as Socket).remotePort ?? 0;
  }

  refuse(response: string): void {
    const socket = this.socket;
    if (socket.writable) socket.end(response);
    // Keep reading so the client's FIN is seen; the handshake timer destroys a client that lingers.
    socket.on('end', () => socket.destroy());
    socket.resume();
  }

  abandon(): void {
    this.socket.destroy();
  }

  open(response: string): Wire | null {
    const socket = this.socket as PendingSocket & Socket;
    clearHandshakeTimer(socket);
    socket.removeListener('close', onPendingClose);
    socket.removeListener('error', ignoreError);
    socket.write(response);
    return new StreamWire(socket);
  }

  started(connection: Connection): void {
    if (this.head.length > 0 && connection.state === ReadyState.OPEN) connection.receive(this.head);
    this.socket.resume();
  }
}

/** A handshake on a native transport slot (the transport's sweep enforces the deadline). */
export class NativeHandshake implements Handshake {
  constructor(
    private readonly transport: NativeTransport,
    private readonly wire: NativeWire,
  ) {}

  get destroyed(): boolean {
    return this.wire.destroyed;
  }
  get remoteAddress(): string {
    return this.wire.remoteAddress;
  }
  get remotePort(): number {
    return this.wire.remotePort;
  }

  refuse(response: string): void {
    this.transport.reject(this.wire, Buffer.from(response));
  }

  abandon(): void {
    // The transport closed the slot when it saw the client go.
  }

  open(response: string): Wire | null {
    return this.transport.accept(this.wire, Buffer.from(response)) ? this.wire : null;
  }

  started(): void {
    // The transport read the head and nothing after it (see native/transport-head.cc): what follows is still in the kernel.
  }
}
