/**
 * The seam between the server and everything outside its process: fds owned
 * by other workers of this machine (reached over `Link`s) and by other
 * server instances (reached through an `Adapter`). The server asks the
 * router only about fds it does not hold itself; the router encodes the call
 * once (`wire.ts`) and hands it to the owner, or to every worker and every
 * instance for `broadcast` and `publish`. What arrives is carried out with
 * the server's own local API, so no message is forwarded twice.
 *
 * It also keeps a directory of the other workers' fds (each worker tells
 * its peers when a connection opens and closes), so `exist` and
 * `isEstablished` answer synchronously for any fd of this machine.
 */
import type { Adapter, AdapterHost } from '../adapter.js';
import type { BroadcastOptions, ClientInfo, PublishOptions, PushData, ServerStats } from '../server-types.js';
import { instanceOf, ownerCode, ownerOf, SEQ_RANGE, slotOf } from './fd.js';
import type { Link } from './link.js';
import {
  ASK,
  broadcastHeader,
  disconnectMessage,
  fdMessage,
  flagCompress,
  flagFin,
  flagOpcode,
  joined,
  MSG,
  packFlags,
  publishHeader,
  pushHeader,
  requestHeader,
  responseMessage,
  snapshotMessage,
} from './wire.js';

/** The server's local API, as the router uses it to carry out what other processes ask. */
export interface LocalServer {
  push(fd: number, data: PushData, opcode?: number, finish?: boolean, compress?: boolean): boolean;
  broadcast(data: PushData, options?: BroadcastOptions): number;
  publish(topic: string, data: PushData, options?: PublishOptions): number;
  disconnect(fd: number, code?: number, reason?: string): boolean;
  exist(fd: number): boolean;
  isEstablished(fd: number): boolean;
  getClientInfo(fd: number): ClientInfo | undefined;
  readonly connections: Iterable<number>;
  stats(): ServerStats;
}

/** Another worker of this machine. */
export interface Peer {
  readonly slot: number;
  readonly workerId: number;
  /** Where messages to it go. */
  readonly out: Link;
  /** Its open fds, as it last told us. */
  readonly fds: Set<number>;
  /** Messages are being dropped because its link is over `LINK_LIMIT` (reported once per episode). */
  behind: boolean;
}

interface Pending {
  kind: number;
  /** The worker slot asked, or -1 when the question went through the adapter. */
  slot: number;
  resolve(answer: unknown): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout | null;
}

/**
 * Bytes that may wait unsent on the link to one worker. Beyond them that
 * worker is stuck or far behind, and pushes, broadcasts and publishes for it
 * are dropped (reported once) rather than held in this worker's memory.
 */
export const LINK_LIMIT = 64 * 1024 * 1024;
/** How long a question to another instance may stay unanswered (the adapter may lose it). */
const ADAPTER_ANSWER_MS = 5000;
const TRUE = Buffer.of(1);
const FALSE = Buffer.of(0);
const NONE = Buffer.alloc(0);

/** The answer of an fd's owner that is gone: it knows nothing of the fd. */
function goneAnswer(kind: number): unknown {
  if (kind === ASK.INFO || kind === ASK.STATS) return undefined;
  if (kind === ASK.CONNECTIONS) return [];
  return false;
}

/** `promise`, or a rejection after `ms`. */
function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer for ${what} within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

function toPayload(data: Buffer | string): Buffer {
  return typeof data === 'string' ? Buffer.from(data) : data;
}

/** Routes calls for fds this process does not hold, and carries out what other processes send. */
export class Router implements AdapterHost {
  readonly instanceId: number;
  private readonly peers = new Map<number, Peer>();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private adapterUp = false;

  constructor(
    /** This process's owner code (see `fd.ts`). */
    readonly owner: number,
    private readonly server: LocalServer,
    private readonly adapter: Adapter | null,
    private readonly report: (error: Error) => void,
  ) {
    this.instanceId = instanceOf(owner);
  }

  /** A topic got its first local subscriber or lost its last: the adapter may route publishes by topic. */
  topicChanged(topic: string, subscribed: boolean): void {
    this.adapter?.topicChanged?.(topic, subscribed);
  }

  async openAdapter(): Promise<void> {
    if (this.adapter === null) return;
    await this.adapter.open(this);
    this.adapterUp = true;
  }

  // --- membership (worker.ts) -------------------------------------------------------

  /** A worker joined: it gets our fds first, then everything else in order. */
  addPeer(slot: number, workerId: number, out: Link): void {
    this.removePeer(slot);
    const peer: Peer = { slot, workerId, out, fds: new Set(), behind: false };
    this.peers.set(slot, peer);
    out.send(snapshotMessage([...this.server.connections]));
  }

  hasPeer(slot: number): boolean {
    return this.peers.has(slot);
  }

  peer(slot: number): Peer | null {
    return this.peers.get(slot) ?? null;
  }

  /** A worker is gone: its fds are forgotten and questions to it are answered "gone". */
  removePeer(slot: number): void {
    const peer = this.peers.get(slot);
    if (peer === undefined) return;
    this.peers.delete(slot);
    peer.out.close();
    for (const [id, p] of this.pending) {
      if (p.slot !== slot) continue;
      this.pending.delete(id);
      p.resolve(goneAnswer(p.kind));
    }
  }

  // --- directory --------------------------------------------------------------------

  /** A local connection opened: tell the other workers. */
  opened(fd: number): void {
    if (this.peers.size === 0) return;
    const message = fdMessage(MSG.OPEN, fd);
    for (const peer of this.peers.values()) peer.out.send(message);
  }

  /** A local connection closed: tell the other workers. */
  closed(fd: number): void {
    if (this.peers.size === 0) return;
    const message = fdMessage(MSG.CLOSED, fd);
    for (const peer of this.peers.values()) peer.out.send(message);
  }

  /** Whether another worker of this machine holds `fd`, as far as it has told us. */
  knows(fd: number): boolean {
    const owner = ownerOf(fd);
    if (owner === this.owner || instanceOf(owner) !== this.instanceId) return false;
    return this.peers.get(slotOf(owner))?.fds.has(fd) ?? false;
  }

  // --- sending ----------------------------------------------------------------------

  /**
   * Sends a message to another worker unless its link is over `LINK_LIMIT`
   * (`must`: never drop, for answers that a question waits for).
   */
  private sendPeer(peer: Peer, head: Buffer, payload: Buffer | null, must = false): boolean {
    if (!must && peer.out.buffered > LINK_LIMIT) {
      if (!peer.behind) {
        peer.behind = true;
        this.report(new Error(`worker ${peer.workerId} is more than ${LINK_LIMIT} bytes behind: dropping messages for it`));
      }
      return false;
    }
    peer.behind = false;
    peer.out.send(head, payload);
    return true;
  }

  /** Sends a message to the process `owner`: over a worker link or the adapter. False when there is no way. */
  private route(owner: number, head: Buffer, payload: Buffer | null, must = false): boolean {
    if (owner === this.owner) return false;
    if (instanceOf(owner) === this.instanceId) {
      const peer = this.peers.get(slotOf(owner));
      return peer !== undefined && this.sendPeer(peer, head, payload, must);
    }
    return this.adapter !== null && this.adapterUp && this.adapter.sendTo(owner, joined(head, payload));
  }

  /** `push` to an fd of another process: true when handed to its owner. */
  push(fd: number, opcode: number, data: Buffer | string, fin: boolean, compress: boolean | undefined): boolean {
    const payload = toPayload(data);
    return this.route(ownerOf(fd), pushHeader(fd, packFlags(opcode, fin, compress), payload.length), payload);
  }

  disconnect(fd: number, code: number, reason: string): boolean {
    return this.route(ownerOf(fd), disconnectMessage(fd, code, reason), null);
  }

  /** The rest of a broadcast: once to each other worker, once to the adapter. */
  broadcast(opcode: number, data: Buffer | string, except: readonly number[], compress: boolean | undefined): void {
    if (this.peers.size === 0 && this.adapter === null) return;
    const payload = toPayload(data);
    const head = broadcastHeader(packFlags(opcode, true, compress), this.owner, except, payload.length);
    for (const peer of this.peers.values()) this.sendPeer(peer, head, payload);
    if (this.adapter !== null && this.adapterUp) this.adapter.sendAll(joined(head, payload));
  }

  /** The rest of a publish: once to each other worker, once to the adapter. */
  publish(topic: string, opcode: number, data: Buffer | string, except: number | undefined, compress: boolean | undefined): void {
    if (this.peers.size === 0 && this.adapter === null) return;
    const payload = toPayload(data);
    const flags = packFlags(opcode, true, compress);
    const head = publishHeader(flags, this.owner, except ?? 0, Buffer.from(topic), payload.length);
    for (const peer of this.peers.values()) this.sendPeer(peer, head, payload);
    const adapter = this.adapter;
    if (adapter === null || !this.adapterUp) return;
    if (adapter.sendTopic !== undefined) adapter.sendTopic(topic, joined(head, payload));
    else adapter.sendAll(joined(head, payload));
  }

  // --- questions --------------------------------------------------------------------

  /**
   * Asks the owner of `fd` (`ASK.*`); resolves with its answer. A gone or
   * unknown worker answers "no such fd"; a question to another instance
   * rejects while the adapter is down, or after `timeout` ms (5 s) without an
   * answer (the adapter may have lost it).
   */
  ask(
    fd: number,
    kind: number,
    push?: { opcode: number; payload: Buffer | string; fin: boolean; compress: boolean | undefined },
    timeout = ADAPTER_ANSWER_MS,
  ): Promise<unknown> {
    const owner = ownerOf(fd);
    const payload = push === undefined ? null : toPayload(push.payload);
    const extra = payload === null ? 0 : 1 + payload.length;
    const id = this.nextId++ >>> 0;
    const head = requestHeader(id, this.owner, kind, fd, extra);
    const body = push === undefined ? null : Buffer.concat([Buffer.of(packFlags(push.opcode, push.fin, push.compress)), payload!]);
    const sameInstance = instanceOf(owner) === this.instanceId;
    return new Promise((resolve, reject) => {
      if (!this.route(owner, head, body)) {
        if (sameInstance || this.adapter === null) resolve(goneAnswer(kind));
        else reject(new Error(`cannot reach the owner of fd ${fd}: the adapter is down`));
        return;
      }
      const pending: Pending = { kind, slot: sameInstance ? slotOf(owner) : -1, resolve, reject, timer: null };
      if (!sameInstance) {
        pending.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new Error(`no answer from the owner of fd ${fd} within ${timeout} ms`));
        }, timeout);
      }
      this.pending.set(id, pending);
    });
  }

  /** Asks every other worker of this machine; resolves with their answers. */
  askWorkers(kind: number): Promise<unknown[]> {
    // Addressed by a stand-in fd of each worker (its first): the question is about the worker itself.
    return Promise.all([...this.peers.values()].map((peer) => this.ask(ownerCode(this.instanceId, peer.slot) * SEQ_RANGE + 1, kind)));
  }

  /**
   * Asks every process of every instance joined by the adapter: this
   * instance's workers over their links and, at the same time, the other
   * instances' processes that the adapter's `members` lists. An instance
   * that does not answer within `timeout` ms is named in `missing`;
   * `partial` is also set when the list of members could not be read.
   */
  async askEveryone(kind: number, timeout: number): Promise<{ answers: unknown[]; partial: boolean; missing: number[] }> {
    const [local, remote] = await Promise.all([this.askWorkers(kind), this.askInstances(kind, timeout)]);
    return { ...remote, answers: local.concat(remote.answers) };
  }

  private async askInstances(kind: number, timeout: number): Promise<{ answers: unknown[]; partial: boolean; missing: number[] }> {
    const adapter = this.adapter;
    if (adapter === null || adapter.members === undefined) return { answers: [], partial: false, missing: [] };
    const deadline = Date.now() + timeout;
    let members: number[];
    try {
      members = await withTimeout(adapter.members(), timeout, 'the list of instances');
    } catch {
      return { answers: [], partial: true, missing: [] };
    }
    const answers: unknown[] = [];
    const missing = new Set<number>();
    const left = Math.max(1, deadline - Date.now());
    const others = members.filter((owner) => instanceOf(owner) !== this.instanceId);
    await Promise.all(
      others.map((owner) =>
        // Addressed by a stand-in fd of that process, as in `askWorkers`.
        this.ask(owner * SEQ_RANGE + 1, kind, undefined, left).then(
          (answer) => void answers.push(answer),
          () => void missing.add(instanceOf(owner)),
        ),
      ),
    );
    return { answers, partial: missing.size > 0, missing: [...missing].sort((x, y) => x - y) };
  }

  // --- receiving --------------------------------------------------------------------

  /** AdapterHost: a message from another instance (with its length prefix). */
  receive(message: Buffer): void {
    this.handle(message.subarray(4), null);
  }

  /** AdapterHost */
  error(error: Error): void {
    this.report(error);
  }

  /** A message from a worker link (`peer`) or from the adapter (null); `m` starts at the type byte. */
  handle(m: Buffer, peer: Peer | null): void {
    const server = this.server;
    switch (m[0]) {
      case MSG.PUSH: {
        const flags = m[1];
        const fd = m.readDoubleLE(2);
        if (ownerOf(fd) === this.owner) server.push(fd, m.subarray(10), flagOpcode(flags), flagFin(flags), flagCompress(flags));
        return;
      }
      case MSG.BROADCAST: {
        const flags = m[1];
        const from = m.readUInt32LE(2);
        // Through the adapter every worker of every instance hears it: the sender's own instance already has it.
        if (peer === null && instanceOf(from) === this.instanceId) return;
        const n = m.readUInt32LE(6);
        let except: number[] | undefined;
        if (n > 0) {
          except = new Array<number>(n);
          for (let i = 0; i < n; i++) except[i] = m.readDoubleLE(10 + 8 * i);
        }
        server.broadcast(m.subarray(10 + 8 * n), { opcode: flagOpcode(flags), except, compress: flagCompress(flags), local: true });
        return;
      }
      case MSG.PUBLISH: {
        const flags = m[1];
        const from = m.readUInt32LE(2);
        if (peer === null && instanceOf(from) === this.instanceId) return;
        const except = m.readDoubleLE(6);
        const topicLength = m.readUInt16LE(14);
        const topic = m.toString('utf8', 16, 16 + topicLength);
        server.publish(topic, m.subarray(16 + topicLength), {
          opcode: flagOpcode(flags),
          except: except === 0 ? undefined : except,
          compress: flagCompress(flags),
          local: true,
        });
        return;
      }
      case MSG.DISCONNECT: {
        const fd = m.readDoubleLE(1);
        if (ownerOf(fd) === this.owner) server.disconnect(fd, m.readUInt16LE(9), m.toString('utf8', 11));
        return;
      }
      case MSG.OPEN:
        peer?.fds.add(m.readDoubleLE(1));
        return;
      case MSG.CLOSED:
        peer?.fds.delete(m.readDoubleLE(1));
        return;
      case MSG.SNAPSHOT:
        if (peer !== null) for (let off = 1; off + 8 <= m.length; off += 8) peer.fds.add(m.readDoubleLE(off));
        return;
      case MSG.REQUEST:
        this.answer(m);
        return;
      case MSG.RESPONSE:
        this.settle(m);
        return;
    }
  }

  private answer(m: Buffer): void {
    const id = m.readUInt32LE(1);
    const from = m.readUInt32LE(5);
    const kind = m[9];
    const fd = m.readDoubleLE(10);
    const server = this.server;
    const local = ownerOf(fd) === this.owner;
    let answer: Buffer;
    switch (kind) {
      case ASK.EXIST:
        answer = local && server.exist(fd) ? TRUE : FALSE;
        break;
      case ASK.ESTABLISHED:
        answer = local && server.isEstablished(fd) ? TRUE : FALSE;
        break;
      case ASK.PUSH: {
        const flags = m[18];
        const sent = local && server.push(fd, m.subarray(19), flagOpcode(flags), flagFin(flags), flagCompress(flags));
        answer = sent ? TRUE : FALSE;
        break;
      }
      case ASK.INFO: {
        const info = local ? server.getClientInfo(fd) : undefined;
        answer = info === undefined ? NONE : Buffer.from(JSON.stringify(info));
        break;
      }
      case ASK.CONNECTIONS: {
        const fds = [...server.connections];
        answer = Buffer.allocUnsafe(8 * fds.length);
        for (let i = 0; i < fds.length; i++) answer.writeDoubleLE(fds[i], 8 * i);
        break;
      }
      case ASK.STATS:
        answer = Buffer.from(JSON.stringify(server.stats()));
        break;
      default:
        return;
    }
    this.route(from, responseMessage(id, kind, answer), null, true);
  }

  private settle(m: Buffer): void {
    const id = m.readUInt32LE(1);
    const pending = this.pending.get(id);
    if (pending === undefined) return;
    this.pending.delete(id);
    if (pending.timer !== null) clearTimeout(pending.timer);
    const kind = m[5];
    const body = m.subarray(6);
    switch (kind) {
      case ASK.INFO:
      case ASK.STATS:
        pending.resolve(body.length === 0 ? undefined : JSON.parse(body.toString('utf8')));
        return;
      case ASK.CONNECTIONS: {
        const fds = new Array<number>(body.length / 8);
        for (let i = 0; i < fds.length; i++) fds[i] = body.readDoubleLE(8 * i);
        pending.resolve(fds);
        return;
      }
      default:
        pending.resolve(body[0] === 1);
    }
  }

  /** Ends every link and the adapter; unanswered questions get the "gone" answer. */
  async close(): Promise<void> {
    for (const slot of [...this.peers.keys()]) this.removePeer(slot);
    for (const p of this.pending.values()) {
      if (p.timer !== null) clearTimeout(p.timer);
      p.resolve(goneAnswer(p.kind));
    }
    this.pending.clear();
    if (this.adapter !== null) {
      this.adapterUp = false;
      await this.adapter.close();
    }
  }
}
