/**
 * A worker's side of `workerNum`: the Unix-domain socket mesh with the other
 * workers of this machine, and the control messages of the primary.
 *
 * Each worker listens on `<dir>/<slot>.sock` and opens one link to every
 * other worker; a link carries only what its opener sends (`Link`), so each
 * pair of workers has one socket per direction and every message from one
 * worker to another keeps its order. The primary (over cluster's own channel,
 * rarely: joins, exits, stop) says who the peers are. A worker starts
 * accepting clients only once every peer it was told of has linked to it, so
 * a broadcast from any worker reaches every client connected before it.
 */
import cluster from 'node:cluster';
import net from 'node:net';
import { join } from 'node:path';
import { slotOf } from './fd.js';
import { Link } from './link.js';
import type { Router } from './router.js';
import { helloMessage, MessageReader, MSG } from './wire.js';

/** What the primary tells a worker it forks (in its environment). */
export interface WorkerEnv {
  workerId: number;
  slot: number;
  /** Directory of the mesh's sockets. */
  dir: string;
  instance: number;
}

/** Control messages between the primary and a worker (JSON over cluster's channel; never per message). */
export type Control =
  | { wavecast: 'peers'; peers: { slot: number; workerId: number }[] }
  | { wavecast: 'peer-up'; slot: number; workerId: number }
  | { wavecast: 'peer-down'; slot: number }
  | { wavecast: 'stop' }
  | { wavecast: 'ipc' }
  | { wavecast: 'listening'; port: number }
  | { wavecast: 'reload' }
  | { wavecast: 'stop-all' };

/** This process's worker settings, or null when it is not a wavecast worker. */
export function workerEnv(): WorkerEnv | null {
  const env = process.env;
  if (!cluster.isWorker || env.WAVECAST_WORKER_ID === undefined) return null;
  return {
    workerId: Number(env.WAVECAST_WORKER_ID),
    slot: Number(env.WAVECAST_SLOT),
    dir: env.WAVECAST_IPC_DIR ?? '',
    instance: Number(env.WAVECAST_INSTANCE ?? 0),
  };
}

export function sendControl(message: Control): void {
  if (process.connected) process.send!(message);
}

export function isControl(message: unknown): message is Control {
  return typeof message === 'object' && message !== null && typeof (message as { wavecast?: unknown }).wavecast === 'string';
}

/** This worker's place in the mesh: its listening socket, its links, the primary's control messages. */
export class Membership {
  /** Set when the primary asked this worker to stop. */
  stopping = false;
  private readonly listener = net.createServer();
  private readonly inbound = new Set<net.Socket>();
  /** Peers we were told of whose link to us has not arrived yet. */
  private readonly awaited = new Set<number>();
  /** Peers whose link to us has arrived (possibly before the primary told us of them). */
  private readonly heard = new Set<number>();
  private onLinked: (() => void) | null = null;
  private stopped: Promise<void> | null = null;
  private stoppedResolve: (() => void) | null = null;

  private readonly onControl = (message: unknown): void => {
    if (!isControl(message)) return;
    switch (message.wavecast) {
      case 'peers':
        for (const { slot, workerId } of message.peers) {
          if (!this.heard.has(slot)) this.awaited.add(slot);
          this.connect(slot, workerId);
        }
        this.checkLinked();
        return;
      case 'peer-up':
        this.connect(message.slot, message.workerId);
        return;
      case 'peer-down':
        this.awaited.delete(message.slot);
        this.router.removePeer(message.slot);
        this.checkLinked();
        return;
      case 'stop':
        this.stopping = true;
        this.stop().then(
          () => this.stoppedResolve?.(),
          () => this.stoppedResolve?.(),
        );
        return;
    }
  };

  constructor(
    readonly env: WorkerEnv,
    private readonly router: Router,
    /** Stops this worker's server (the local part of `stop()`). */
    private readonly stopServer: () => Promise<void>,
  ) {}

  private path(slot: number): string {
    return join(this.env.dir, `${slot}.sock`);
  }

  /** Listens for peers, announces itself, and resolves once linked with every peer. */
  async join(): Promise<void> {
    this.listener.on('connection', (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      this.listener.once('error', reject);
      this.listener.listen(this.path(this.env.slot), () => {
        this.listener.removeListener('error', reject);
        resolve();
      });
    });
    process.on('message', this.onControl);
    const linked = new Promise<void>((resolve) => {
      this.onLinked = resolve;
    });
    sendControl({ wavecast: 'ipc' });
    await linked;
  }

  private checkLinked(): void {
    if (this.awaited.size === 0 && this.onLinked !== null) {
      const resolve = this.onLinked;
      this.onLinked = null;
      resolve();
    }
  }

  /** Opens our link to a peer (once). */
  private connect(slot: number, workerId: number): void {
    if (this.stopping || this.router.hasPeer(slot)) return;
    const socket = net.connect(this.path(slot));
    const link = new Link(socket);
    link.send(helloMessage(this.router.owner, this.env.workerId));
    this.router.addPeer(slot, workerId, link);
  }

  /** A peer's link to us: the first message says who it is, the rest go to the router. */
  private accept(socket: net.Socket): void {
    this.inbound.add(socket);
    let slot = -1;
    const reader = new MessageReader((m) => {
      if (slot === -1) {
        if (m[0] !== MSG.HELLO) {
          socket.destroy();
          return;
        }
        slot = slotOf(m.readUInt32LE(1));
        // We may hear of a peer from itself before the primary tells us.
        this.connect(slot, m.readUInt32LE(5));
        this.heard.add(slot);
        this.awaited.delete(slot);
        this.checkLinked();
        return;
      }
      this.router.handle(m, this.router.peer(slot));
    });
    socket.on('data', (chunk: Buffer) => reader.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.inbound.delete(socket);
      // The peer ended its link: it stopped or died. Its fds are gone.
      if (slot !== -1) this.router.removePeer(slot);
    });
  }

  /** Tells the primary this worker accepts clients. */
  listening(port: number): void {
    sendControl({ wavecast: 'listening', port });
  }

  /** Asks the primary to reload every worker (rolling). */
  reload(): void {
    sendControl({ wavecast: 'reload' });
  }

  /** `stop()` called in a worker: the primary stops every worker, this one included. */
  requestStop(): Promise<void> {
    if (this.stopped === null) {
      this.stopped = new Promise((resolve) => {
        this.stoppedResolve = resolve;
      });
      sendControl({ wavecast: 'stop-all' });
    }
    return this.stopped;
  }

  /** The primary's stop: the server closes its connections (handshakes finish), then the worker leaves. */
  private async stop(): Promise<void> {
    try {
      await this.stopServer();
    } finally {
      this.close();
      process.removeListener('message', this.onControl);
      // Leave once nothing of ours is pending; an app's own timers or sockets do not keep a stopped worker.
      cluster.worker?.disconnect();
      setTimeout(() => process.exit(0), 1000).unref();
    }
  }

  /** Ends the mesh (the router's links are closed by the router). */
  close(): void {
    this.listener.close();
    for (const socket of this.inbound) socket.destroy();
    this.inbound.clear();
  }
}
