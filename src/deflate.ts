/**
 * permessage-deflate (RFC 7692) data path: the server-wide zlib work queue and
 * context pools, and one connection's compressor and decompressor.
 *
 * Memory is the design constraint (in ws and Socket.IO, zlib contexts are the
 * usual cause of gigabytes at 10-20k sockets):
 *
 * - Contexts are created lazily, on the first message that needs one.
 * - With no context takeover (`server_no_context_takeover` for the deflater,
 *   `client_no_context_takeover` for the inflater) a context is reset after
 *   each message and returned to a server-wide pool (at most `concurrency`
 *   idle contexts per kind): an idle connection then holds no zlib memory.
 * - With context takeover the connection keeps its context between messages
 *   (that is what takeover means) and frees it on close.
 * - At most `concurrency` zlib jobs (one fragment to inflate, one message to
 *   deflate) run at once in the threadpool; the rest wait in a FIFO queue.
 * - Inflation counts its output as zlib produces it (16 KiB at a time) and
 *   stops at `maxPayload`: a bomb costs at most `maxPayload` + 16 KiB.
 */
import { Buffer } from 'node:buffer';
import zlib from 'node:zlib';
import { WebSocketError } from './errors.js';
import type { DeflateNegotiationConfig, DeflateParams } from './protocol/extensions.js';
import { encodeFrame, type EncodedFrame } from './protocol/frame.js';

/**
 * The `perMessageDeflate` setting. Every field is optional; the defaults are
 * chosen for memory per connection. Measured RSS per connection, idle after
 * one 1.4 KB JSON message compressed each way (2,000 ws clients in another
 * process; Node 20, x64, Linux):
 *
 * | setting | RSS per connection | zlib memory held while idle |
 * |---|---|---|
 * | compression off | 15-18 KiB | none |
 * | `true` (defaults: no context takeover either way) | 17-20 KiB | none: contexts are reset and pooled server-wide |
 * | `clientNoContextTakeover: false` | 35-43 KiB | an inflater: `2^clientMaxWindowBits` window + about 7 KiB |
 * | `serverNoContextTakeover: false` | about 234 KiB | a deflater: `2^(serverMaxWindowBits+2) + 2^(memLevel+9)` bytes (256 KiB at 15 / 8) |
 * | both `false` (ws's defaults) | about 250 KiB | both |
 *
 * The pools hold at most `concurrency` idle contexts per kind and window
 * size, whatever the number of connections.
 */
export interface PerMessageDeflateOptions {
  /** Messages this size or larger (bytes, before compression) are compressed by `push`. Default 1024. */
  threshold?: number;
  /** zlib compression level 0..9 (speed vs size). Default 6, zlib's default. */
  level?: number;
  /** zlib memLevel 1..9 for the deflater: its hash memory is `2^(memLevel+9)` bytes. Default 8. */
  memLevel?: number;
  /**
   * Reset the compressor after each message (`server_no_context_takeover`).
   * Default true: no deflater per idle connection, and a broadcast or publish
   * is compressed once for all recipients. False compresses repeated content
   * better at the cost of one deflater per connection (about 220 KiB RSS at 15 / 8).
   */
  serverNoContextTakeover?: boolean;
  /**
   * Ask the client to reset its compressor after each message
   * (`client_no_context_takeover`). Default true: the server's inflater goes
   * back to the pool after each message. False keeps an inflater per
   * connection (20-40 KiB RSS at 15 window bits).
   */
  clientNoContextTakeover?: boolean;
  /** Window of the server's compressor, 9..15 (`server_max_window_bits`). Default 15. */
  serverMaxWindowBits?: number;
  /** Largest window the server lets the client use, 8..15 (`client_max_window_bits`, when offered). Default 15. */
  clientMaxWindowBits?: number;
  /** zlib jobs running at once, server-wide; more wait in a queue. Default 10. */
  concurrency?: number;
}

/** `PerMessageDeflateOptions` with every field decided. */
export interface ResolvedDeflateOptions extends DeflateNegotiationConfig {
  threshold: number;
  level: number;
  memLevel: number;
  concurrency: number;
}

function integerIn(name: string, value: number | undefined, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`perMessageDeflate.${name} must be an integer from ${min} to ${max}, got ${String(value)}`);
  }
  return value;
}

function flag(name: string, value: boolean | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new TypeError(`perMessageDeflate.${name} must be a boolean`);
  return value;
}

/** Validates the setting; null when compression is off. Throws `TypeError` / `RangeError` on bad values. */
export function resolveDeflateOptions(
  option: boolean | PerMessageDeflateOptions | undefined,
): ResolvedDeflateOptions | null {
  if (option === undefined || option === false) return null;
  if (option !== true && (option === null || typeof option !== 'object')) {
    throw new TypeError('perMessageDeflate must be a boolean or an options object');
  }
  const o: PerMessageDeflateOptions = option === true ? {} : option;
  return {
    threshold: integerIn('threshold', o.threshold, 0, Number.MAX_SAFE_INTEGER, 1024),
    level: integerIn('level', o.level, 0, 9, 6),
    memLevel: integerIn('memLevel', o.memLevel, 1, 9, 8),
    serverNoContextTakeover: flag('serverNoContextTakeover', o.serverNoContextTakeover, true),
    clientNoContextTakeover: flag('clientNoContextTakeover', o.clientNoContextTakeover, true),
    // RFC 7692 allows 8, but zlib's raw deflate cannot keep to an 8-bit window.
    serverMaxWindowBits: integerIn('serverMaxWindowBits', o.serverMaxWindowBits, 9, 15, 15),
    clientMaxWindowBits: integerIn('clientMaxWindowBits', o.clientMaxWindowBits, 8, 15, 15),
    concurrency: integerIn('concurrency', o.concurrency, 1, 1024, 10),
  };
}

/** RFC 7692 7.2.2: the receiver appends 0x00 0x00 0xff 0xff to a message's payload before inflating. */
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
const EMPTY = Buffer.alloc(0);

const kOwner = Symbol('wavecast.deflateOwner');
type Inflater = zlib.InflateRaw & { [kOwner]: PerMessageDeflate | null };
type Deflater = zlib.DeflateRaw & { [kOwner]: PerMessageDeflate | null };

// One set of zlib listeners for all contexts; a context's current owner is on it.
function onInflateData(this: Inflater, chunk: Buffer): void {
  this[kOwner]?.inflateData(chunk);
}
function onInflateError(this: Inflater, error: Error): void {
  this[kOwner]?.inflateFailed(error);
}
function onDeflateData(this: Deflater, chunk: Buffer): void {
  this[kOwner]?.deflateData(chunk);
}
function onDeflateError(this: Deflater, error: Error): void {
  this[kOwner]?.deflateFailed(error);
}

/** A job gets `done` to call exactly once when its zlib work is over. */
type Job = (done: () => void) => void;

/** At most `concurrency` jobs at once; the others wait in order. */
export class Limiter {
  private running = 0;
  private queue: (Job | undefined)[] = [];
  private head = 0;
  private readonly next = (): void => {
    if (this.head < this.queue.length) {
      const job = this.queue[this.head];
      this.queue[this.head++] = undefined;
      if (this.head === this.queue.length) {
        this.queue = [];
        this.head = 0;
      }
      job!(this.next);
    } else {
      this.running--;
    }
  };

  constructor(readonly concurrency: number) {}

  /** Jobs running now. */
  get active(): number {
    return this.running;
  }

  /** Jobs waiting for a slot. */
  get waiting(): number {
    return this.queue.length - this.head;
  }

  run(job: Job): void {
    if (this.running < this.concurrency) {
      this.running++;
      job(this.next);
    } else {
      this.queue.push(job);
    }
  }
}

/**
 * The server-wide part: settings, the job queue, pools of reset contexts (by
 * window bits), and the synchronous one-shot compressor for broadcasts.
 */
export class DeflateShared {
  readonly limiter: Limiter;
  private readonly inflaters = new Map<number, Inflater[]>();
  private readonly deflaters = new Map<number, Deflater[]>();
  /** Contexts alive now (in use, idle in a connection, or pooled): for tests and stats. */
  contexts = 0;

  constructor(
    readonly options: ResolvedDeflateOptions,
    readonly maxPayload: number,
  ) {
    this.limiter = new Limiter(options.concurrency);
  }

  /** @internal */
  takeInflater(windowBits: number, owner: PerMessageDeflate): Inflater {
    let inflater = this.inflaters.get(windowBits)?.pop();
    if (inflater === undefined) {
      inflater = zlib.createInflateRaw({ windowBits }) as Inflater;
      inflater.on('data', onInflateData);
      inflater.on('error', onInflateError);
      this.contexts++;
    }
    inflater[kOwner] = owner;
    return inflater;
  }

  /** @internal A context after a whole message: reset and pooled, or closed if the pool is full. */
  giveInflater(windowBits: number, inflater: Inflater): void {
    this.release(this.inflaters, windowBits, inflater);
  }

  /** @internal */
  takeDeflater(windowBits: number, owner: PerMessageDeflate): Deflater {
    let deflater = this.deflaters.get(windowBits)?.pop();
    if (deflater === undefined) {
      const { level, memLevel } = this.options;
      deflater = zlib.createDeflateRaw({ windowBits, level, memLevel }) as Deflater;
      deflater.on('data', onDeflateData);
      deflater.on('error', onDeflateError);
      this.contexts++;
    }
    deflater[kOwner] = owner;
    return deflater;
  }

  /** @internal */
  giveDeflater(windowBits: number, deflater: Deflater): void {
    this.release(this.deflaters, windowBits, deflater);
  }

  /** Resets a context into its pool, or closes it when the pool is full. */
  private release<C extends Inflater | Deflater>(pools: Map<number, C[]>, windowBits: number, context: C): void {
    context[kOwner] = null;
    let pool = pools.get(windowBits);
    if (pool === undefined) pools.set(windowBits, (pool = []));
    if (pool.length < this.options.concurrency) {
      context.reset();
      pool.push(context);
    } else {
      this.discard(context);
    }
  }

  /** @internal Closes a context (its listeners stay to swallow a late error). */
  discard(context: Inflater | Deflater): void {
    context[kOwner] = null;
    context.close();
    this.contexts--;
  }

  /**
   * Compresses one message synchronously with a fresh context, for a
   * broadcast or publish to connections without server context takeover:
   * done once, on the event loop (as uWS's shared compressor), and the
   * result sent to all of them. Returns the payload of an RSV1 frame.
   */
  compressOnce(data: Buffer | string, windowBits: number): Buffer {
    const { level, memLevel } = this.options;
    const out = zlib.deflateRawSync(data, {
      windowBits,
      level,
      memLevel,
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
    });
    return stripTail(out);
  }

  /** Frees the pooled contexts (server stop). */
  close(): void {
    for (const pool of [...this.inflaters.values(), ...this.deflaters.values()]) {
      for (const context of pool) this.discard(context);
      pool.length = 0;
    }
  }
}

/**
 * One broadcast or publish to be compressed: its RSV1 frames by window size,
 * each compressed on first need and then shared by every recipient without
 * server context takeover (so the batcher still writes one buffer to all).
 */
export class SharedMessage {
  private first: EncodedFrame | null = null;
  private firstBits = 0;
  private others: Map<number, EncodedFrame> | null = null;

  constructor(
    private readonly shared: DeflateShared,
    readonly opcode: number,
    readonly payload: Buffer | string,
  ) {}

  /** The compressed frame for recipients that agreed on `windowBits`. */
  frameFor(windowBits: number): EncodedFrame {
    if (this.first !== null && this.firstBits === windowBits) return this.first;
    let frame = this.first === null ? undefined : this.others?.get(windowBits);
    if (frame === undefined) {
      frame = encodeFrame(this.opcode, this.shared.compressOnce(this.payload, windowBits), true, true);
      if (this.first === null) {
        this.first = frame;
        this.firstBits = windowBits;
      } else {
        (this.others ??= new Map()).set(windowBits, frame);
      }
    }
    return frame;
  }
}

/** RFC 7692 7.2.1: remove the 0x00 0x00 0xff 0xff a sync flush ends with. */
function stripTail(out: Buffer): Buffer {
  const n = out.length;
  if (n >= 4 && out[n - 4] === 0x00 && out[n - 3] === 0x00 && out[n - 2] === 0xff && out[n - 1] === 0xff) {
    return out.subarray(0, n - 4);
  }
  return out;
}

/** Called once per `decompress`: with the whole message after the final fragment, else null. */
export type InflateCallback = (error: WebSocketError | null, message: Buffer | null) => void;
/** Called once per `compress` with the compressed payload (error only when the connection closed). */
export type DeflateCallback = (error: Error | null, payload: Buffer) => void;

/**
 * One connection's permessage-deflate: its agreed parameters and at most one
 * inflater and one deflater, taken from the pool when needed. One fragment
 * is inflated at a time, and one message compressed at a time: callers wait
 * for the callback before the next call.
 *
 * State: 10 fields; no zlib memory between messages unless context takeover
 * was agreed for that direction.
 */
export class PerMessageDeflate {
  private inflater: Inflater | null = null;
  private deflater: Deflater | null = null;
  private inflated: Buffer[] = [];
  private inflatedBytes = 0;
  private inflateCallback: InflateCallback | null = null;
  private inflateDone: (() => void) | null = null;
  private deflated: Buffer[] = [];
  private deflateCallback: DeflateCallback | null = null;
  private deflateDone: (() => void) | null = null;
  private closed = false;

  constructor(
    readonly shared: DeflateShared,
    readonly params: DeflateParams,
  ) {}

  /**
   * Inflates one fragment of a compressed message (its payload as it came,
   * fragments in order). After the final fragment the callback gets the
   * whole message; on the way, the inflated size is held to `maxPayload`
   * (1009) and corrupt data fails with 1007.
   */
  decompress(data: Buffer, fin: boolean, callback: InflateCallback): void {
    if (this.inflateCallback !== null) throw new Error('a fragment is already being inflated');
    this.inflateCallback = callback;
    this.shared.limiter.run((done) => {
      if (this.closed) return done();
      this.inflateDone = done;
      const shared = this.shared;
      const inflater = (this.inflater ??= shared.takeInflater(this.params.clientMaxWindowBits, this));
      if (data.length > 0) inflater.write(data);
      if (fin) inflater.write(TAIL);
      inflater.flush(() => {
        if (this.inflater !== inflater || this.inflateCallback === null) return;
        let message: Buffer | null = null;
        if (fin) {
          message = this.inflated.length === 1 ? this.inflated[0] : Buffer.concat(this.inflated, this.inflatedBytes);
          this.inflated = [];
          this.inflatedBytes = 0;
          if (this.params.clientNoContextTakeover) {
            this.inflater = null;
            shared.giveInflater(this.params.clientMaxWindowBits, inflater);
          }
        }
        this.endInflate(null, message);
      });
    });
  }

  /** @internal zlib output: counted against maxPayload as it comes. */
  inflateData(chunk: Buffer): void {
    this.inflatedBytes += chunk.length;
    if (this.inflatedBytes > this.shared.maxPayload) {
      // A bomb, or just too big: stop zlib now, before it produces the rest.
      this.dropInflater();
      this.endInflate(new WebSocketError('MESSAGE_TOO_BIG'), null);
      return;
    }
    this.inflated.push(chunk);
  }

  /** @internal */
  inflateFailed(_error: Error): void {
    this.dropInflater();
    this.endInflate(new WebSocketError('INVALID_COMPRESSED_DATA'), null);
  }

  private dropInflater(): void {
    const inflater = this.inflater;
    this.inflater = null;
    this.inflated = [];
    this.inflatedBytes = 0;
    if (inflater !== null) this.shared.discard(inflater);
  }

  private endInflate(error: WebSocketError | null, message: Buffer | null): void {
    const callback = this.inflateCallback;
    const done = this.inflateDone;
    this.inflateCallback = this.inflateDone = null;
    done?.();
    callback?.(error, message);
  }

  /**
   * Compresses one whole message (RFC 7692 7.2.1): the payload of a frame
   * with RSV1 set. With server context takeover the window carries over to
   * the next message; without, the deflater goes back to the pool.
   */
  compress(data: Buffer | string, callback: DeflateCallback): void {
    if (this.deflateCallback !== null) throw new Error('a message is already being compressed');
    this.deflateCallback = callback;
    this.shared.limiter.run((done) => {
      if (this.closed) return done();
      this.deflateDone = done;
      const shared = this.shared;
      const deflater = (this.deflater ??= shared.takeDeflater(this.params.serverMaxWindowBits, this));
      deflater.write(data);
      deflater.flush(zlib.constants.Z_SYNC_FLUSH, () => {
        if (this.deflater !== deflater || this.deflateCallback === null) return;
        const payload = stripTail(
          this.deflated.length === 1 ? this.deflated[0] : Buffer.concat(this.deflated),
        );
        this.deflated = [];
        if (this.params.serverNoContextTakeover) {
          this.deflater = null;
          shared.giveDeflater(this.params.serverMaxWindowBits, deflater);
        }
        this.endDeflate(null, payload);
      });
    });
  }

  /** @internal */
  deflateData(chunk: Buffer): void {
    this.deflated.push(chunk);
  }

  /** @internal zlib does not fail to compress valid input; if it did, the message is lost with the context. */
  deflateFailed(error: Error): void {
    const deflater = this.deflater;
    this.deflater = null;
    this.deflated = [];
    if (deflater !== null) this.shared.discard(deflater);
    this.endDeflate(error, EMPTY);
  }

  private endDeflate(error: Error | null, payload: Buffer): void {
    const callback = this.deflateCallback;
    const done = this.deflateDone;
    this.deflateCallback = this.deflateDone = null;
    done?.();
    callback?.(error, payload);
  }

  /** Whether a context is held between messages (context takeover in use). */
  get holdsContexts(): boolean {
    return this.inflater !== null || this.deflater !== null;
  }

  /**
   * The connection closed: free both contexts (a context in the middle of a
   * job is closed, not pooled) and give back any queue slot held. Pending
   * callbacks are dropped.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dropInflater();
    const deflater = this.deflater;
    this.deflater = null;
    this.deflated = [];
    if (deflater !== null) this.shared.discard(deflater);
    const inflateDone = this.inflateDone;
    const deflateDone = this.deflateDone;
    this.inflateCallback = this.inflateDone = this.deflateCallback = this.deflateDone = null;
    inflateDone?.();
    deflateDone?.();
  }
}
