/**
 * One direction of a worker-to-worker link: a Unix-domain socket that carries
 * `wire.ts` messages. Everything sent in one turn of the event loop leaves in
 * one `writev` (the socket is corked on the first send and uncorked at the
 * end of the turn), so a burst of pushes costs one system call, not one each.
 */
import type { Socket } from 'node:net';

function uncork(link: Link): void {
  link.corked = false;
  link.socket.uncork();
}

/** The sending end of a socket to another worker. */
export class Link {
  /** @internal */
  corked = false;

  constructor(readonly socket: Socket) {
    // A peer that dies resets the socket; its exit is handled by the membership.
    socket.on('error', () => {});
  }

  /** Queues a message: its header and (not copied) its payload. */
  send(head: Buffer, payload: Buffer | null = null): void {
    const socket = this.socket;
    if (socket.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      process.nextTick(uncork, this);
    }
    socket.write(head);
    if (payload !== null && payload.length > 0) socket.write(payload);
  }

  /** Bytes waiting in user space (the peer is slow or not yet connected). */
  get buffered(): number {
    return this.socket.writableLength;
  }

  close(): void {
    this.socket.end();
  }
}
