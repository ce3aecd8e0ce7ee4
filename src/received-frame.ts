/**
 * A received message as handed to `'message'` listeners (Swoole's
 * `$frame`): `fd`, `data`, `opcode`, `finish`. Text is decoded lazily, on the
 * first read of `data`, so a message that is only relayed (`push(fd, frame)`,
 * `broadcast(frame)`) is sent from its validated bytes and never decoded.
 *
 * `Frame` is typed as a union on `opcode`, so `frame.opcode === OPCODE.TEXT`
 * makes `frame.data` a `string` (and `BINARY` a `Buffer`) without a cast.
 */
import { Buffer } from 'node:buffer';
import { keepBatch } from './lease.js';
import { OPCODE } from './protocol/opcode.js';

/**
 * A received frame read after its `message` listener returned, on a server
 * with `borrowFrames`: its bytes may already be gone. What the listener
 * read from it (`frame.data`, `frame.payload`) is the app's to keep.
 */
export class FrameExpiredError extends TypeError {
  override readonly name = 'FrameExpiredError';
  readonly code = 'ERR_FRAME_EXPIRED';
  constructor() {
    super('this frame was lent to its message listener only (borrowFrames): read frame.data inside the listener to keep it');
  }
}

/** The source of a frame whose listener returned (borrowFrames). */
const EXPIRED = Buffer.alloc(0);

/** What every received message has, whatever its opcode. */
export interface FrameFields {
  /** The connection the message came from. */
  readonly fd: number;
  /** `OPCODE.TEXT` or `OPCODE.BINARY`. */
  readonly opcode: number;
  /** The message's bytes: UTF-8 (already validated) for text. */
  readonly payload: Buffer;
  /** Whether this is the whole message (always true unless fragments are delivered). */
  readonly finish: boolean;
  /** The message: a string for text (decoded on first access), the bytes for binary. */
  readonly data: string | Buffer;
  /** Whether `data` has been decoded (a relay that never decodes keeps this false). */
  readonly decoded: boolean;
}

/** A received text message: `data` is its string. */
export interface TextFrame extends FrameFields {
  readonly opcode: typeof OPCODE.TEXT;
  readonly data: string;
}

/** A received binary message: `data` is its bytes. */
export interface BinaryFrame extends FrameFields {
  readonly opcode: typeof OPCODE.BINARY;
  readonly data: Buffer;
}

/** A received message: narrow it on `opcode` to get `data` as a `string` or a `Buffer`. */
export type Frame = TextFrame | BinaryFrame;

/** `Frame` as a value: `new Frame(fd, opcode, payload)` (to relay bytes as a received message) and `instanceof Frame`. */
export interface FrameConstructor {
  new (fd: number, opcode: number, payload: Buffer, finish?: boolean): Frame;
  readonly prototype: Frame;
}

/** Where a received message's bytes are: `sourceOf(frame)[startOf(frame), endOf(frame))` (set in the class below). */
let sourceOf: (frame: Frame) => Buffer;
let startOf: (frame: Frame) => number;
let endOf: (frame: Frame) => number;
let makeReceived: (fd: number, opcode: number, source: Buffer, start: number, end: number, shared: boolean) => Frame;
let expireFrame: (frame: Frame) => void;

class ReceivedFrame implements FrameFields {
  #decoded: string | undefined;
  /** The payload as a Buffer, once one is made: a message read in place is only a range of `#source` until then. */
  #payload: Buffer | null;
  #source: Buffer;
  #start = 0;
  #end: number;
  #shared: boolean;

  constructor(
    readonly fd: number,
    readonly opcode: number,
    payload: Buffer,
    readonly finish = true,
    /**
     * `payload` is a view into memory that also holds other connections'
     * bytes (a native transport batch): the app gets a copy of its own, made
     * on first access, so `payload.buffer` shows nobody else's.
     */
    shared = false,
  ) {
    this.#payload = this.#source = payload;
    this.#end = payload.length;
    this.#shared = shared;
  }

  static {
    sourceOf = (frame) => (frame as unknown as ReceivedFrame).#live();
    startOf = (frame) => ((frame as unknown as ReceivedFrame).#live(), (frame as unknown as ReceivedFrame).#start);
    endOf = (frame) => (frame as unknown as ReceivedFrame).#end;
    expireFrame = (frame) => {
      const f = frame as unknown as ReceivedFrame;
      f.#source = EXPIRED;
      f.#payload = null;
      f.#decoded = undefined;
    };
    makeReceived = (fd, opcode, source, start, end, shared) => {
      const frame = new ReceivedFrame(fd, opcode, source, true, shared);
      if (start !== 0 || end !== source.length) {
        frame.#payload = null;
        frame.#start = start;
        frame.#end = end;
      }
      return frame as unknown as Frame;
    };
  }

  /** The source, unless the frame expired (borrowFrames): then it throws. */
  #live(): Buffer {
    if (this.#source === EXPIRED) throw new FrameExpiredError();
    return this.#source;
  }

  get payload(): Buffer {
    this.#live();
    if (this.#shared) {
      this.#shared = false;
      const own = Buffer.allocUnsafeSlow(this.#end - this.#start);
      this.#source.copy(own, 0, this.#start, this.#end);
      this.#payload = this.#source = own;
      this.#start = 0;
      this.#end = own.length;
    }
    return this.bytes;
  }

  /** The bytes as received, for relaying and decoding without a copy. */
  get bytes(): Buffer {
    return (this.#payload ??= this.#live().subarray(this.#start, this.#end));
  }

  get data(): string | Buffer {
    if (this.opcode !== OPCODE.TEXT) return this.payload;
    return (this.#decoded ??= this.#live().toString('utf8', this.#start, this.#end));
  }

  get decoded(): boolean {
    return this.#decoded !== undefined;
  }
}

/** The class of received messages (see the `Frame` type). */
export const Frame = ReceivedFrame as unknown as FrameConstructor;

/**
 * @internal A received message, as the server makes it: its bytes are
 * `source[start, end)` (no view is made until the app asks for one);
 * `shared` when `source` is a native batch that holds other connections' bytes.
 */
export function receivedFrame(fd: number, opcode: number, source: Buffer, start: number, end: number, shared: boolean): Frame {
  return makeReceived(fd, opcode, source, start, end, shared);
}

/**
 * @internal A received message's bytes as they arrived (no copy): for
 * relaying it. They may be held past the delivery (queued, compressed, sent
 * to other processes), so a borrowed batch is kept (lease.ts).
 */
export function bytesOf(frame: Frame): Buffer {
  const bytes = (frame as unknown as ReceivedFrame).bytes;
  keepBatch();
  return bytes;
}

/** @internal The frame's listener returned (borrowFrames): from now on reading it throws `FrameExpiredError`. */
export function expire(frame: Frame): void {
  expireFrame(frame);
}

export { endOf, sourceOf, startOf };
