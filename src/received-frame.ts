/**
 * A received message as handed to `'message'` listeners (Swoole's
 * `$frame`): `fd`, `data`, `opcode`, `finish`. Text is decoded lazily, on the
 * first read of `data`, so a message that is only relayed (`push(fd, frame)`,
 * `broadcast(frame)`) is sent from its validated bytes and never decoded.
 */
import { OPCODE } from './protocol/opcode.js';

export class Frame {
  #decoded: string | undefined;
  #payload: Buffer;
  #shared: boolean;

  constructor(
    /** The connection the message came from. */
    readonly fd: number,
    /** `OPCODE.TEXT` or `OPCODE.BINARY`. */
    readonly opcode: number,
    payload: Buffer,
    /** Whether this is the whole message (always true unless fragments are delivered). */
    readonly finish = true,
    /**
     * @internal `payload` is a view into memory that also holds other
     * connections' bytes (a native transport batch): the app gets a copy of
     * its own, made on first access, so `payload.buffer` shows nobody else's.
     */
    shared = false,
  ) {
    this.#payload = payload;
    this.#shared = shared;
  }

  /** The message's bytes: UTF-8 (already validated) for text. */
  get payload(): Buffer {
    if (this.#shared) {
      this.#shared = false;
      const own = Buffer.allocUnsafeSlow(this.#payload.length);
      this.#payload.copy(own);
      this.#payload = own;
    }
    return this.#payload;
  }

  /** @internal the bytes as received, for relaying and decoding without a copy. */
  get bytes(): Buffer {
    return this.#payload;
  }

  /** The message: a string for text (decoded on first access), the bytes for binary. */
  get data(): string | Buffer {
    if (this.opcode !== OPCODE.TEXT) return this.payload;
    return (this.#decoded ??= this.#payload.toString('utf8'));
  }

  /** Whether `data` has been decoded (a relay that never decodes keeps this false). */
  get decoded(): boolean {
    return this.#decoded !== undefined;
  }
}
