/**
 * The byte stream under one WebSocket connection. Two kinds: a Node
 * `net.Socket` (TLS, attached servers, `handleUpgrade`, workers, the JS
 * backend) and a slot of the native transport (`transport.ts`), which has no
 * `net.Socket` at all. `connection.ts` talks to either through this
 * interface and never knows which.
 */
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { keepBatch } from './lease.js';
import type { EncodedFrame } from './protocol/frame.js';
import type { TransportBinding } from './native.js';

/** Where a wire reports what happens to it (the connection). */
export interface WireSink {
  /** `chunk[start, end)` arrived (the whole chunk when they are left out). */
  receive(chunk: Buffer, start?: number, end?: number): void;
  /** The peer sent FIN. */
  peerEnded(): void;
  /** The descriptor is closed; called once. */
  socketClosed(): void;
}

export interface Wire {
  /** The native transport's handle (slot and generation), or -1 for a Node stream. */
  readonly handle: number;
  /** The native transport this wire belongs to (for batched writes), or null. */
  readonly transport: { readonly binding: TransportBinding } | null;
  /** The Node stream, or null for a native wire. */
  readonly socket: Socket | null;
  readonly destroyed: boolean;
  /** Bytes in user space that the kernel has not taken yet. */
  readonly queued: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Starts reporting data, end and close to `sink`. */
  attach(sink: WireSink): void;
  write(data: Buffer): void;
  writeFrames(frames: readonly EncodedFrame[]): void;
  /** FIN after what is queued; the descriptor closes once the peer's FIN is in. */
  end(): void;
  /** Closes once what is queued is written. */
  destroySoon(): void;
  destroy(): void;
  pause(): void;
  resume(): void;
  /** Calls `callback` once nothing is queued in user space. */
  whenDrained(callback: () => void): void;
}

const kSink = Symbol('wavecast.sink');
type OwnedSocket = Socket & { [kSink]?: WireSink };

// One set of socket listeners shared by all connections (no closures per socket).
function onSocketData(this: OwnedSocket, chunk: Buffer): void {
  this[kSink]!.receive(chunk);
}
function onSocketEnd(this: OwnedSocket): void {
  this[kSink]!.peerEnded();
}
function onSocketClose(this: OwnedSocket): void {
  this[kSink]!.socketClosed();
}
function onSocketError(): void {
  // ECONNRESET, EPIPE and the like: 'close' follows and reports 1006.
}
const NOTHING = Buffer.alloc(0);

/** A wire over a Node `net.Socket` (or `tls.TLSSocket`). */
export class StreamWire implements Wire {
  readonly handle = -1;
  readonly transport = null;
  /** Bytes the fd-based native batched write sent past the stream (see `batcher.ts`). */
  directBytesOut = 0;

  constructor(readonly socket: Socket) {
    // net.Socket reads the peer once and keeps it: read now, so `close`
    // listeners still see the address after the socket is gone.
    void socket.remotePort;
  }

  get destroyed(): boolean {
    return this.socket.destroyed;
  }
  get queued(): number {
    return this.socket.writableLength;
  }
  get bytesRead(): number {
    return this.socket.bytesRead;
  }
  get bytesWritten(): number {
    return this.socket.bytesWritten + this.directBytesOut;
  }
  get remoteAddress(): string {
    return this.socket.remoteAddress ?? '';
  }
  get remotePort(): number {
    return this.socket.remotePort ?? 0;
  }

  attach(sink: WireSink): void {
    const socket = this.socket as OwnedSocket;
    socket[kSink] = sink;
    socket.setNoDelay(true);
    socket.setTimeout(0);
    socket.on('data', onSocketData);
    socket.on('end', onSocketEnd);
    socket.on('close', onSocketClose);
    socket.on('error', onSocketError);
  }

  write(data: Buffer): void {
    // A stream may hold what it is given: a view of a native batch is kept (lease.ts).
    keepBatch();
    this.socket.write(data);
  }

  writeFrames(frames: readonly EncodedFrame[]): void {
    keepBatch();
    const socket = this.socket;
    socket.cork();
    for (const frame of frames) {
      if (Buffer.isBuffer(frame)) {
        socket.write(frame);
      } else {
        socket.write(frame[0]);
        socket.write(frame[1]);
      }
    }
    socket.uncork();
  }

  end(): void {
    this.socket.end();
  }
  destroySoon(): void {
    this.socket.destroySoon();
  }
  destroy(): void {
    this.socket.destroy();
  }
  pause(): void {
    this.socket.pause();
  }
  resume(): void {
    this.socket.resume();
  }

  whenDrained(callback: () => void): void {
    // An empty write queued behind the stream's bytes calls back when they are out.
    if (this.socket.writableLength > 0) this.socket.write(NOTHING, callback);
    else setImmediate(callback);
  }
}
