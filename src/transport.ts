/**
 * The JS side of the native transport (`native/transport-*.cc`): the server's
 * own listener on Linux with the addon, for plain TCP. The addon accepts,
 * reads each request head, and reports in batches; this file turns the
 * batches into calls on the server (a head to decide, a descriptor and the
 * bytes read from it for Node's http.Server) and on connections (data, end, drain, close).
 *
 * A connection here is a `NativeWire`: a slot number and a few counters. It
 * has no `net.Socket`, no libuv handle and no stream state, which is where
 * most of a Node socket's memory goes. An idle one can rest: no object at
 * all, a few numbers by slot (see `park` and `registry.ts`).
 */
import { Buffer } from 'node:buffer';
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { delivered, delivering } from './lease.js';
import type { EncodedFrame } from './protocol/frame.js';
import { createTransport, type TransportBinding } from './native.js';
import type { Wire, WireSink } from './wire.js';

// Event types (native/transport-loop.h); each event is 5 int32s: type, slot, generation, a, b.
const EV_HEAD = 1;
const EV_HTTP = 2;
const EV_DATA = 3;
const EV_END = 4;
const EV_CLOSE = 5;
const EV_DRAIN = 6;
const EV_OPEN = 7;
const EVENT_INTS = 5;
/** A handle is `generation * SLOTS + slot` (native/transport-conn.h). */
const SLOTS = 2 ** 24;
/**
 * Request heads that never complete are cut after this long even with
 * `handshakeTimeout: 0` (Node's own `headersTimeout` is 60 s too).
 */
const HEAD_HARD_CAP_MS = 60_000;

/** What the transport hands its server. */
export interface TransportHandler {
  /**
   * A complete GET request head arrived. The server answers with
   * `transport.accept()`, `reject()` or `release()`; until then the slot is
   * pending and `wire.destroyed` turns true if the client goes away.
   */
  onHead(wire: NativeWire, head: Buffer): void;
  /**
   * A plainly valid upgrade the transport answered itself while fast opens
   * were allowed (`setFastOpen`): the 101 is out and the wire is open;
   * `head` is the request.
   */
  onOpen?(wire: NativeWire, head: Buffer): void;
  /** Asked first for a fast open: true if the server kept it resting from its start (`parkOpened`), false for `onOpen`. */
  onOpenResting?(slot: number, generation: number): boolean;
  /** After a batch of events that opened, offered or closed connections: the fast-open budget may be renewed. */
  onBatchEnd?(): void;
  /** A connection that is not a WebSocket handshake, as a socket for Node's http.Server. */
  onHttp(socket: Socket): void;
  /** An event came for the resting connection of `fd` (see `park`): wake it, so its slot has a wire again. */
  wake?(fd: number): void;
}

// Fields of a resting slot in `NativeTransport.rest`.
const REST_FD = 0;
const REST_HANDLE = 1;
const REST_OPENED = 2;
const REST_RECEIVED = 3;
const REST_PINGED = 4;
const REST_READ = 5;
const REST_SENT = 6;
const REST_FIELDS = 7;

const NO_PEER: readonly [string, number] = Object.freeze(['', 0] as [string, number]);

/** Whether this process can run the native transport. */
export const nativeTransportAvailable = createTransport !== null;

/** One connection of the native transport. */
export class NativeWire implements Wire {
  /**
   * Bytes in the transport's queue as of the last write, 0 again when it
   * drains; partial flushes in between are not seen, so it can read high
   * (backpressure errs on the safe side).
   */
  queued = 0;
  bytesRead = 0;
  private sink: WireSink | null = null;
  /** bytesOut at close, when the slot is gone; -1 while the connection lives. */
  private finalBytesOut = -1;

  /** The slot and its generation: what every call into the transport names. */
  readonly handle: number;

  constructor(
    readonly transport: NativeTransport,
    slot: number,
    generation: number,
  ) {
    this.handle = generation * SLOTS + slot;
  }

  get socket(): null {
    return null;
  }
  get slot(): number {
    return this.handle % SLOTS;
  }

  /** The client went away, or JS let go of it (closed, rejected or released). */
  get destroyed(): boolean {
    return this.finalBytesOut >= 0;
  }

  /** The client's address as accept() gave it (kept by the transport: no system call); known to `close` listeners, '' after. */
  get remoteAddress(): string {
    return this.transport.peerOf(this)[0];
  }
  get remotePort(): number {
    return this.transport.peerOf(this)[1];
  }

  get bytesWritten(): number {
    return this.finalBytesOut >= 0 ? this.finalBytesOut : this.transport.binding.bytesOut(this.handle);
  }

  attach(sink: WireSink): void {
    this.sink = sink;
  }

  write(data: Buffer): void {
    if (this.destroyed) return;
    const queued = this.transport.binding.write(this.handle, data, null);
    if (queued >= 0) this.queued = queued;
  }

  /** Frames too large to join: one writev of all their parts. */
  writeFrames(frames: readonly EncodedFrame[]): void {
    if (this.destroyed) return;
    const parts: Buffer[] = [];
    for (const frame of frames) {
      if (Buffer.isBuffer(frame)) parts.push(frame);
      else parts.push(frame[0], frame[1]);
    }
    const queued = this.transport.binding.writev(this.handle, parts);
    if (queued >= 0) this.queued = queued;
  }

  end(): void {
    if (!this.destroyed) this.transport.binding.end(this.handle);
  }
  destroySoon(): void {
    if (!this.destroyed) this.transport.binding.destroySoon(this.handle);
  }
  destroy(): void {
    if (!this.destroyed) this.transport.binding.destroy(this.handle);
  }
  pause(): void {
    if (!this.destroyed) this.transport.binding.pause(this.handle);
  }
  resume(): void {
    if (!this.destroyed) this.transport.binding.resume(this.handle);
  }

  whenDrained(callback: () => void): void {
    if (this.queued === 0 || this.destroyed) setImmediate(callback);
    else this.transport.waitDrain(this, callback);
  }

  /** @internal events from the transport */
  received(data: Buffer, start: number, end: number): void {
    this.bytesRead += end - start;
    this.sink?.receive(data, start, end);
  }
  /** @internal */
  ended(): void {
    this.sink?.peerEnded();
  }
  /** @internal */
  emptied(): void {
    this.queued = 0;
    this.transport.drained(this, true);
  }
  /** @internal */
  closed(): void {
    this.gone(this.transport.binding.bytesOut(this.handle));
    this.sink?.socketClosed();
  }
  /** @internal Marks the wire destroyed (`bytesOut` as the transport last counted it). */
  gone(bytesOut: number): void {
    this.finalBytesOut = bytesOut;
    this.queued = 0;
    this.transport.drained(this, false);
  }
}

/** A listener and its connections in the native transport. */
export class NativeTransport {
  /** @internal */
  readonly binding: TransportBinding;
  private readonly events: Int32Array;
  /** Pending and open connections by slot. */
  private readonly wires: (NativeWire | undefined)[] = [];
  /** Callbacks waiting for a wire's queue to empty (few: a drop's and a throttle's), kept here, not per wire. */
  private readonly drainWaiters = new Map<NativeWire, (() => void)[]>();
  /**
   * Resting connections (see `park`), REST_FIELDS numbers per slot: fd (0: none rests), handle, opening
   * time, last receive, last ping, bytes read, messages sent. Numbers: no object per idle connection.
   */
  private rest = new Float64Array(0);
  private sweepTimer: NodeJS.Timeout | null = null;
  private listenPort = 0;
  private closed = false;
  /** @internal Upgrades the transport answered itself (`setFastOpen`). */
  fastOpened = 0;

  /** Throws when the addon has no transport (see `nativeTransportAvailable`). */
  constructor(
    private readonly handler: TransportHandler,
    /** Connections still in their handshake after this many ms are closed (0: only heads past `headCap`). */
    private readonly handshakeTimeout: number,
    /** @internal heads that never complete are cut after this many ms whatever the timeout. */
    private readonly headCap = HEAD_HARD_CAP_MS,
  ) {
    if (createTransport === null) throw new Error('the native transport is not available');
    this.binding = createTransport(this.onEvents);
    this.events = this.binding.events;
  }

  /** Listens on a numeric address; returns the port. Throws errors like `net.Server`'s (code EADDRINUSE...). */
  listen(host: string, port: number, backlog: number | undefined, ipv6Only: boolean): number {
    this.listenPort = this.binding.listen(host, port, backlog ?? 511, ipv6Only);
    return this.startSweeping();
  }

  /**
   * Listens on a listening socket this process inherited and shares with
   * other processes (a worker's, from its primary); returns the port.
   * Closing the listener closes only this process's copy.
   */
  listenFd(fd: number): number {
    this.listenPort = this.binding.listenFd(fd);
    return this.startSweeping();
  }

  private startSweeping(): number {
    // One sweep for every connection in its handshake: closes it within
    // 1.25x the timeout, without a timer per connection. With no timeout it
    // still cuts request heads that never complete (the native hard cap).
    const { handshakeTimeout: timeout, headCap } = this;
    const every = Math.max(10, Math.min(1000, Math.floor((timeout > 0 ? Math.min(timeout, headCap) : headCap) / 4)));
    this.sweepTimer = setInterval(() => this.binding.sweep(timeout, headCap), every);
    this.sweepTimer.unref();
    return this.listenPort;
  }

  get port(): number {
    return this.listenPort;
  }

  /**
   * Lets the transport answer the next `budget` plainly valid upgrades
   * itself (native/handshake-fast.h): those with this `path` ('' for any)
   * and heads of at most `maxHead` bytes. 0 leaves every head to `onHead`.
   */
  setFastOpen(budget: number, path: string, maxHead: number): void {
    if (!this.closed) this.binding.setFastOpen(budget, path, maxHead);
  }

  /** Answers a pending slot (its head read already) with the 101; false if the client is gone. */
  accept(wire: NativeWire, response: Buffer): boolean {
    return !wire.destroyed && this.binding.accept(wire.handle, response);
  }

  /** Answers a pending slot with `response` and closes after the client's FIN. */
  reject(wire: NativeWire, response: Buffer): void {
    if (wire.destroyed) return;
    this.forget(wire);
    this.binding.reject(wire.handle, response);
  }

  /** A pending slot turned out to be plain HTTP: its descriptor goes to Node, with `head`, the bytes it sent (`onHead`'s). */
  release(wire: NativeWire, head: Buffer): void {
    if (wire.destroyed) return;
    this.forget(wire);
    const fd = this.binding.release(wire.handle);
    if (fd >= 0) this.handler.onHttp(socketFor(fd, Buffer.from(head)));
  }

  /** @internal The client's address and port, for a slot not yet freed; ['', 0] for one that is. */
  peerOf(wire: NativeWire): readonly [string, number] {
    return this.binding.peer(wire.handle) ?? NO_PEER;
  }

  /** Connections accepted and still in their handshake (before JS's decision or waiting for it). */
  get handshaking(): number {
    return this.closed ? 0 : this.binding.handshaking();
  }

  /** Stops accepting; connections stay. */
  closeListener(): void {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    // Heads already in the kernel go to the JS decision, which answers 503.
    this.binding.setFastOpen(0, '', 0);
    this.binding.closeListener();
  }

  /** Closes the listener and every connection (each reports its close) and frees the transport. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeListener();
    for (let slot = 0; slot < this.rest.length / REST_FIELDS; slot++) if (this.restsAs(slot) !== 0) this.wakeSlot(slot);
    this.binding.close();
    const wires = this.wires.splice(0);
    for (const wire of wires) if (wire !== undefined && !wire.destroyed) wire.closed();
  }

  /**
   * @internal Lets an open connection's slot rest: JS forgets its wire (fd,
   * times, bytes read and messages sent are kept as numbers) until an event
   * comes for the slot, which asks `handler.wake(fd)` to make its objects
   * again (`unpark`). The slot, or -1 if the wire is not this transport's live one.
   */
  park(wire: NativeWire, fd: number, openedAt: number, lastReceive: number, lastPing: number, messagesOut = 0): number {
    const slot = wire.slot;
    if (this.closed || wire.destroyed || this.wires[slot] !== wire || !(fd > 0)) return -1;
    this.wires[slot] = undefined;
    return this.keepResting(slot, fd, wire.handle, openedAt, lastReceive, lastPing, wire.bytesRead, messagesOut);
  }

  /** @internal `park` for a fast open's slot (`onOpenResting`) opened at `now`: no wire is made. */
  parkOpened(slot: number, generation: number, fd: number, now: number): number {
    return this.closed || !(fd > 0) ? -1 : this.keepResting(slot, fd, generation * SLOTS + slot, now, now, 0, 0, 0);
  }

  private keepResting(slot: number, fd: number, handle: number, openedAt: number, lastReceive: number, lastPing: number, read: number, sent: number): number {
    const at = slot * REST_FIELDS;
    if (at >= this.rest.length) {
      const grown = new Float64Array(Math.max(at + REST_FIELDS, 1024 * REST_FIELDS, this.rest.length * 2));
      grown.set(this.rest);
      this.rest = grown;
    }
    const rest = this.rest;
    rest[at + REST_FD] = fd;
    rest[at + REST_HANDLE] = handle;
    rest[at + REST_OPENED] = openedAt;
    rest[at + REST_RECEIVED] = lastReceive;
    rest[at + REST_PINGED] = lastPing;
    rest[at + REST_READ] = read;
    rest[at + REST_SENT] = sent;
    return slot;
  }

  /** @internal A resting slot's times (see `park`): opened, last receive, last ping. */
  restedTimes(slot: number): [openedAt: number, lastReceive: number, lastPing: number] {
    const at = slot * REST_FIELDS;
    return [this.rest[at + REST_OPENED], this.rest[at + REST_RECEIVED], this.rest[at + REST_PINGED]];
  }

  /** @internal A resting slot's bytes received and sent, and messages sent (it has received none). */
  restedCounts(slot: number): [bytesIn: number, bytesOut: number, messagesOut: number] {
    const at = slot * REST_FIELDS;
    return [this.rest[at + REST_READ], this.binding.bytesOut(this.rest[at + REST_HANDLE]), this.rest[at + REST_SENT]];
  }

  /** @internal Since when a resting slot has received nothing. */
  quietSince(slot: number): number {
    return this.rest[slot * REST_FIELDS + REST_RECEIVED];
  }

  /** @internal A resting slot's wire, made anew: the slot no longer rests. */
  unpark(slot: number): NativeWire {
    const at = slot * REST_FIELDS;
    const handle = this.rest[at + REST_HANDLE];
    this.rest[at + REST_FD] = 0;
    const wire = new NativeWire(this, slot, (handle - slot) / SLOTS);
    wire.bytesRead = this.rest[at + REST_READ];
    this.wires[slot] = wire;
    return wire;
  }

  /** The fd a slot rests as, or 0. */
  private restsAs(slot: number): number {
    const at = slot * REST_FIELDS;
    return at < this.rest.length ? this.rest[at + REST_FD] : 0;
  }

  /** The wire of a slot that rests as `handle` (any handle: undefined), woken by the handler; undefined if it does not. */
  private wakeSlot(slot: number, handle?: number): NativeWire | undefined {
    const fd = this.restsAs(slot);
    if (fd === 0 || (handle !== undefined && this.rest[slot * REST_FIELDS + REST_HANDLE] !== handle)) return undefined;
    this.handler.wake?.(fd);
    // Woken by its server; without one, the wire has no sink and the events go nowhere, as for a forgotten slot.
    if (this.restsAs(slot) !== 0) this.unpark(slot);
    return this.wires[slot];
  }

  private forget(wire: NativeWire): void {
    wire.gone(0);
    this.wires[wire.slot] = undefined;
  }

  /** @internal */
  waitDrain(wire: NativeWire, callback: () => void): void {
    const waiting = this.drainWaiters.get(wire);
    if (waiting !== undefined) waiting.push(callback);
    else this.drainWaiters.set(wire, [callback]);
  }

  /** @internal The wire's queue emptied (`call`), or the wire is gone: its waiters are done. */
  drained(wire: NativeWire, call: boolean): void {
    if (this.drainWaiters.size === 0) return;
    const waiting = this.drainWaiters.get(wire);
    if (waiting === undefined) return;
    this.drainWaiters.delete(wire);
    if (call) for (const callback of waiting) callback();
  }

  private readonly onEvents = (count: number, data: Buffer | undefined, heads: Buffer | undefined): void => {
    const events = this.events;
    delivering(events, data);
    const wires = this.wires;
    // Whether connections came or went (a batch of data leaves the fast-open budget as it is).
    let churn = false;
    for (let i = 0; i < count; i++) {
      const at = i * EVENT_INTS;
      const type = events[at];
      const slot = events[at + 1];
      const generation = events[at + 2];
      const a = events[at + 3];
      const b = events[at + 4];
      if (type === EV_HTTP) {
        // Ours to close if the server stopped; its bytes read are at `generation` in the heads (copied: they are reused).
        if (this.closed) closeSync(a);
        else this.handler.onHttp(socketFor(a, Buffer.from(heads!.subarray(generation, generation + b))));
        continue;
      }
      let wire = wires[slot];
      if (type === EV_HEAD || type === EV_OPEN || type === EV_CLOSE) churn = true;
      if (type === EV_HEAD || type === EV_OPEN) {
        // The transport reuses a slot only after its CLOSE was delivered.
        if (wire !== undefined || this.restsAs(slot) !== 0) {
          throw new Error(`wavecast: native transport reused slot ${slot} before its close`);
        }
        if (type === EV_OPEN) this.fastOpened++;
        if (type === EV_OPEN && this.handler.onOpenResting?.(slot, generation) === true) continue;
        wire = new NativeWire(this, slot, generation);
        wires[slot] = wire;
      } else if (wire === undefined || wire.handle !== generation * SLOTS + slot) {
        // A resting connection wakes; else one JS already forgot (rejected or released).
        wire = wire === undefined ? this.wakeSlot(slot, generation * SLOTS + slot) : undefined;
        if (wire === undefined) continue;
      }
      // One event's failure (a throwing 'close' listener) must not lose the rest of the batch: rethrown afterwards, uncaught.
      try {
        switch (type) {
          case EV_DATA:
            // A range of the batch, not a view of it: one object fewer per read.
            wire.received(data!, a, a + b);
            break;
          case EV_HEAD:
            this.handler.onHead(wire, heads!.subarray(a, a + b));
            break;
          case EV_OPEN:
            this.handler.onOpen!(wire, heads!.subarray(a, a + b));
            break;
          case EV_END:
            wire.ended();
            break;
          case EV_DRAIN:
            wire.emptied();
            break;
          case EV_CLOSE:
            wires[slot] = undefined;
            wire.closed();
            break;
        }
      } catch (error) {
        process.nextTick(rethrow, error);
      }
    }
    delivered();
    if (churn) this.handler.onBatchEnd?.();
  };
}

function rethrow(error: unknown): never {
  throw error;
}

/** A descriptor the transport accepted, as a Node socket, with the bytes read from it back in front of its stream. */
function socketFor(fd: number, read: Buffer): Socket {
  const socket = new Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
  // Node's parser gets them first (through 'data'): the socket reads the kernel only on a later turn.
  if (read.length > 0) socket.unshift(read);
  return socket;
}
