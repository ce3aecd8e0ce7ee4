/**
 * The primary process of a server with `workerNum` > 1: it forks the
 * workers (node:cluster; they share the listening port and run the event
 * handlers), tells each who its peers are, restarts a worker that dies,
 * reloads them one at a time, and stops them all. It never touches a
 * WebSocket message.
 *
 * With the native transport the primary makes the listening socket itself
 * and every worker inherits it (an extra stdio descriptor) and accepts from
 * it in its own transport; the primary never accepts. Connections waiting
 * in the socket's queue outlive any one worker, so a reload or a crash
 * refuses nobody. Without it, node:cluster's round-robin shares the port.
 */
import cluster, { type ClusterSettings, type Worker } from 'node:cluster';
import { closeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LISTEN_FD_ENV } from '../listen-address.js';
import { SLOT_RANGE } from './fd.js';
import { isControl, type Control } from './worker.js';

/** What the primary reports to its server (which emits it). */
export interface PrimaryEvents {
  workerStart(workerId: number, pid: number): void;
  workerExit(workerId: number, code: number | null, signal: string | null): void;
  error(error: Error): void;
}

interface Record {
  readonly id: number;
  readonly slot: number;
  readonly worker: Worker;
  readonly startedAt: number;
  /** Has said its mesh socket listens, so peers may link to it. */
  linked: boolean;
  listening: boolean;
  /** Stopped on purpose (reload, stop): not restarted. */
  planned: boolean;
  readonly ready: Promise<void>;
  readonly exited: Promise<void>;
  resolveReady(): void;
  rejectReady(error: Error): void;
  resolveExited(): void;
}

/** A worker that dies sooner than this after its start is restarted after a growing delay. */
const QUICK_DEATH_MS = 1000;
const MAX_RESTART_DELAY_MS = 5000;

/** A listening socket the primary made for its workers to inherit. */
export interface SharedListener {
  readonly fd: number;
  readonly port: number;
}

/** Forks, restarts, reloads and stops the workers of one server. */
export class Primary {
  /** The port the workers listen on, once one of them does. */
  port = 0;
  private dir = '';
  private nextSlot = 1;
  private readonly live = new Set<Record>();
  private stopping = false;
  private reloading: Promise<void> | null = null;
  private restartDelay = 0;
  private readonly restartTimers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly workerNum: number,
    private readonly instance: number,
    /** How long a stopping worker may take before it is killed. */
    private readonly stopTimeout: number,
    private readonly events: PrimaryEvents,
    /** The workers' listening socket (closed by `stop()`), or null for node:cluster's sharing. */
    private listener: SharedListener | null = null,
  ) {
    if (listener !== null) this.port = listener.port;
  }

  /** Forks every worker; resolves once all of them listen, rejects if one dies first. */
  async start(): Promise<void> {
    this.stopping = false;
    try {
      this.dir = await mkdtemp(join(tmpdir(), 'wavecast-'));
      await Promise.all(Array.from({ length: this.workerNum }, (_, id) => this.fork(id).ready));
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  private takeSlot(): number {
    const slot = this.nextSlot;
    this.nextSlot = slot + 1 === SLOT_RANGE ? 1 : slot + 1;
    return slot;
  }

  private fork(id: number): Record {
    const slot = this.takeSlot();
    const worker = this.forkWorker({
      WAVECAST_WORKER_ID: String(id),
      WAVECAST_SLOT: String(slot),
      WAVECAST_IPC_DIR: this.dir,
      WAVECAST_INSTANCE: String(this.instance),
    });
    let resolveReady!: () => void;
    let rejectReady!: (error: Error) => void;
    let resolveExited!: () => void;
    const ready = new Promise<void>((resolve, reject) => {
      resolveReady = resolve;
      rejectReady = reject;
    });
    ready.catch(() => {});
    const exited = new Promise<void>((resolve) => {
      resolveExited = resolve;
    });
    const record: Record = {
      id,
      slot,
      worker,
      startedAt: Date.now(),
      linked: false,
      listening: false,
      planned: false,
      ready,
      exited,
      resolveReady,
      rejectReady,
      resolveExited,
    };
    this.live.add(record);
    worker.on('message', (message: unknown) => this.onMessage(record, message));
    worker.on('error', () => {});
    worker.on('exit', (code, signal) => this.onExit(record, code, signal));
    return record;
  }

  /**
   * cluster.fork, giving the worker the shared listener as one more stdio
   * descriptor (its number in the worker goes in the environment). Only
   * this fork gets it: the primary's copy is close-on-exec, and the app's
   * own cluster settings are put back at once.
   */
  private forkWorker(env: { [key: string]: string }): Worker {
    const listener = this.listener;
    if (listener === null) return cluster.fork(env);
    const settings = cluster.settings as ClusterSettings;
    const saved = settings.stdio;
    const stdio = [...(saved ?? (settings.silent === true ? ['pipe', 'pipe', 'pipe', 'ipc'] : [0, 1, 2, 'ipc']))];
    (cluster.settings as ClusterSettings).stdio = [...stdio, listener.fd];
    try {
      return cluster.fork({ ...env, [LISTEN_FD_ENV]: String(stdio.length) });
    } finally {
      // fork() replaced cluster.settings with a copy holding our stdio.
      if (saved === undefined) delete (cluster.settings as ClusterSettings).stdio;
      else (cluster.settings as ClusterSettings).stdio = saved;
    }
  }

  private send(record: Record, message: Control): void {
    if (record.worker.isConnected()) record.worker.send(message);
  }

  private onMessage(record: Record, message: unknown): void {
    if (!isControl(message)) return;
    switch (message.wavecast) {
      case 'ipc': {
        record.linked = true;
        const peers = [...this.live].filter((r) => r !== record && r.linked);
        this.send(record, { wavecast: 'peers', peers: peers.map((r) => ({ slot: r.slot, workerId: r.id })) });
        for (const peer of peers) this.send(peer, { wavecast: 'peer-up', slot: record.slot, workerId: record.id });
        return;
      }
      case 'listening':
        record.listening = true;
        if (this.listener === null) this.port = message.port;
        this.restartDelay = 0;
        record.resolveReady();
        this.events.workerStart(record.id, record.worker.process.pid ?? 0);
        return;
      case 'reload':
        this.reload().catch((error: Error) => this.events.error(error));
        return;
      case 'stop-all':
        this.stop().catch((error: Error) => this.events.error(error));
        return;
    }
  }

  private onExit(record: Record, code: number | null, signal: string | null): void {
    this.live.delete(record);
    for (const peer of this.live) if (peer.linked) this.send(peer, { wavecast: 'peer-down', slot: record.slot });
    record.rejectReady(new Error(`worker ${record.id} exited (${signal ?? code}) before it listened`));
    record.resolveExited();
    this.events.workerExit(record.id, code, signal);
    if (this.stopping || record.planned) return;
    // A crash: start a new worker with the same id (and a new slot, so the old fds stay dead).
    const quick = Date.now() - record.startedAt < QUICK_DEATH_MS;
    this.restartDelay = quick ? Math.min(MAX_RESTART_DELAY_MS, Math.max(100, this.restartDelay * 2)) : 0;
    const timer = setTimeout(() => {
      this.restartTimers.delete(timer);
      if (!this.stopping) this.fork(record.id);
    }, this.restartDelay);
    this.restartTimers.add(timer);
  }

  /** Asks a worker to stop (it closes its connections with 1001 first); kills it if it takes too long. */
  private async retire(record: Record): Promise<void> {
    record.planned = true;
    this.send(record, { wavecast: 'stop' });
    const timer = setTimeout(() => record.worker.process.kill('SIGKILL'), this.stopTimeout + 2000);
    await record.exited;
    clearTimeout(timer);
  }

  /**
   * Rolling restart: one worker at a time stops (finishing its closing
   * handshakes) and a new one takes its id and starts listening before the
   * next stops. The others keep accepting all along.
   */
  reload(): Promise<void> {
    if (this.reloading !== null) return this.reloading;
    this.reloading = (async () => {
      try {
        for (let id = 0; id < this.workerNum && !this.stopping; id++) {
          const current = [...this.live].find((r) => r.id === id);
          // Not running: a crash restart is already on its way, and it starts fresh.
          if (current === undefined) continue;
          await this.retire(current);
          if (this.stopping) break;
          await this.fork(id).ready;
        }
      } finally {
        this.reloading = null;
      }
    })();
    return this.reloading;
  }

  /** Stops every worker, closes the shared listener and removes the mesh's sockets. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const timer of this.restartTimers) clearTimeout(timer);
    this.restartTimers.clear();
    await Promise.all([...this.live].map((record) => this.retire(record)));
    // The last copy: the port stops taking connections.
    if (this.listener !== null) closeSync(this.listener.fd);
    this.listener = null;
    if (this.dir !== '') await rm(this.dir, { recursive: true, force: true });
  }
}
