/**
 * A received message as handed to `'message'` listeners (Swoole's
 * `$frame`): `fd`, `data`, `opcode`, `finish`. Text is decoded lazily, on the
 * first read of `data`, so a message that is only relayed (`push(fd, frame)`,
 * `broadcast(frame)`) is sent from its validated bytes and never decoded.
 */
import { OPCODE } from './protocol/opcode.js';

export class Frame {
  #decoded: string | undefined;

  constructor(
    /** The connection the message came from. */
    readonly fd: number,
    /** `OPCODE.TEXT` or `OPCODE.BINARY`. */
    readonly opcode: number,
    /** The message's bytes: UTF-8 (already validated) for text. */
    readonly payload: Buffer,
    /** Whether this is the whole message (always true unless fragments are delivered). */
    readonly finish = true,
  ) {}

  /** The message: a string for text (decoded on first access), the bytes for binary. */
  get data(): string | Buffer {
    if (this.opcode !== OPCODE.TEXT) return this.payload;
    return (this.#decoded ??= this.payload.toString('utf8'));
  }

  /** Whether `data` has been decoded (a relay that never decodes keeps this false). */
  get decoded(): boolean {
    return this.#decoded !== undefined;
  }
}
