/**
 * The RFC 6455 frame parser for frames a server receives: a state machine fed
 * socket chunks of any size, split anywhere. It unmasks, checks UTF-8 as the
 * bytes arrive, reassembles fragmented messages, and reports to a handler. It
 * never throws and never touches a socket: a violation is reported once to
 * `onError` and every later byte is ignored.
 *
 * Memory: a message whose only frame lies whole in one chunk is unmasked in
 * place and handed over as a range of that chunk. Anything else is copied,
 * unmasked on the way, into one buffer sized from the frame headers, so a
 * message costs about its own size however many fragments it came in (a
 * flood of tiny fragments keeps no per-fragment objects or chunk views alive).
 *
 * permessage-deflate (RFC 7692): when the connection negotiated it, RSV1 on
 * the first frame marks a compressed message. Its frames are handed to
 * `onCompressedFragment` one by one, as they came, without UTF-8 checks (the
 * handler inflates and checks); the handler may `pause()` the parser while it
 * works and `resume()` it after, so messages stay in order.
 */
import { Buffer } from 'node:buffer';
import { isValidCloseCode, WebSocketError, type WebSocketErrorCode } from '../errors.js';
import { kept } from '../lease.js';
import { isValidUtf8, maskInto, rotateMask, unmask, utf8Continue, utf8FailureOffset, utf8InvalidAt, UTF8_INVALID } from '../native.js';
import { OPCODE } from './opcode.js';

/** What the parser reports to. Payload buffers are the handler's to keep. */
export interface ParserHandler {
  /**
   * A whole data message, `source[start, end)`: `opcode` is `OPCODE.TEXT`
   * (valid UTF-8) or `OPCODE.BINARY`. `inPlace`: `source` is the chunk given
   * to `write` (no view is made of it here: the handler makes one if it needs
   * one); otherwise it is a buffer of the message's own, `start` 0 and `end`
   * its length.
   */
  onMessage(opcode: number, source: Buffer, start: number, end: number, inPlace: boolean): void;
  onPing(payload: Buffer): void;
  onPong(payload: Buffer): void;
  /** A valid close frame; `code` is 1005 when it carried no status. */
  onClose(code: number, reason: string): void;
  onError(error: WebSocketError): void;
  /**
   * One frame of a compressed message (only when the parser was created with
   * `compression`): its unmasked payload, and whether it is the last one.
   */
  onCompressedFragment?(opcode: number, payload: Buffer, fin: boolean): void;
}

const HEADER = 0;
const PAYLOAD = 1;
/** After a close frame or an error: input is ignored. */
const STOPPED = 2;

const EMPTY = Buffer.alloc(0);
/** 2^53: no payload length at or above this fits a maxPayload. */
const HIGH_WORD_LIMIT = 2 ** 21;

export class Parser {
  private state = HEADER;
  /** Header bytes held while a header straddles chunks (allocated on need). */
  private header: Buffer | null = null;
  private headerFilled = 0;

  // The frame being read.
  private fin = false;
  private opcode = 0;
  private mask = 0;
  private frameLength = 0;
  private frameRead = 0;
  /** Where a frame that straddles chunks is copied (control frames only). */
  private controlBuffer: Buffer | null = null;

  // The message being assembled (data frames that are fragmented or straddle chunks).
  private messageOpcode = 0;
  private message: Buffer | null = null;
  private messageLength = 0;
  private utf8State = 0;
  /** The message being read is compressed (RSV1 on its first frame). */
  private compressed = false;
  /** Compressed bytes of this message already handed over. */
  private compressedRead = 0;
  /** Limit on a compressed message's own size (see `compressedLimit()`). */
  private compressedLimit: number;

  private paused = false;
  /** Input received while paused, parsed on `resume()`. */
  private pending: Buffer | null = null;

  constructor(
    private handler: ParserHandler,
    private maxPayload: number,
    /** permessage-deflate was negotiated: RSV1 is allowed on a message's first frame. */
    private compression = false,
  ) {
    this.compressedLimit = compressedLimit(maxPayload);
  }

  /**
   * Whether the parser sits between messages with nothing held: a fresh
   * parser would carry on exactly as this one. An idle parser can serve
   * another connection (see `adopt`).
   */
  get idle(): boolean {
    return this.state === HEADER && this.headerFilled === 0 && this.messageOpcode === 0 && !this.paused && this.pending === null;
  }

  /**
   * Makes an idle parser read for another handler (connections between
   * messages hold no parser of their own: see `connection.ts`).
   */
  adopt(handler: ParserHandler, maxPayload: number, compression: boolean): void {
    this.handler = handler;
    this.compression = compression;
    if (maxPayload !== this.maxPayload) {
      this.maxPayload = maxPayload;
      this.compressedLimit = compressedLimit(maxPayload);
    }
  }

  /** Reads for nobody until adopted again: keeps no reference to the handler it read for. */
  release(): void {
    this.handler = NOBODY;
  }

  /** Stops parsing: bytes already queued and later chunks are ignored. */
  stop(): void {
    this.state = STOPPED;
    this.paused = false;
    this.header = this.controlBuffer = this.message = this.pending = null;
  }

  /** Holds input, from the next frame on, until `resume()` (called from a handler callback). */
  pause(): void {
    if (this.state !== STOPPED) this.paused = true;
  }

  /** Parses what arrived while paused, then carries on. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const pending = this.pending;
    this.pending = null;
    if (pending !== null && this.state !== STOPPED) this.write(pending);
  }

  /** Whether the parser stopped (close frame, error, or `stop()`). */
  get stopped(): boolean {
    return this.state === STOPPED;
  }

  /**
   * Feeds `chunk[start, end)` (a native batch's bytes for one connection are
   * a range of it: no view is made per read). They may be unmasked in place
   * and kept by views.
   */
  write(chunk: Buffer, start = 0, end = chunk.length): void {
    if (this.state === STOPPED) return;
    if (this.paused) {
      const part = start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end);
      this.pending = this.pending === null ? kept(part) : Buffer.concat([this.pending, part]);
      return;
    }
    let pos = start;
    while (pos < end && this.state !== STOPPED && !this.paused) {
      if (this.state === HEADER) {
        pos = this.readHeader(chunk, pos, end);
      } else {
        pos = this.readPayload(chunk, pos, end);
      }
    }
    // Held until resume(), past this delivery: a native batch is kept (lease.ts).
    if (this.paused && pos < end && this.state !== STOPPED) this.pending = kept(chunk.subarray(pos, end));
  }

  private fail(code: WebSocketErrorCode, offset?: number): void {
    this.stop();
    this.handler.onError(new WebSocketError(code, offset));
  }

  /** Reads a frame header from `chunk[pos..]`; returns the new position. */
  private readHeader(chunk: Buffer, pos: number, end: number): number {
    let src = chunk;
    let at = pos;
    if (this.headerFilled === 0 && end - pos >= 2) {
      const size = this.checkFirstTwo(chunk[pos], chunk[pos + 1]);
      if (size < 0) return end;
      if (end - pos < size) return this.holdHeader(chunk, pos, end);
    } else {
      const before = this.headerFilled;
      const next = this.holdHeader(chunk, pos, end);
      if (this.state === STOPPED) return end;
      const header = this.header as Buffer;
      const size = this.headerFilled >= 2 ? headerSize(header[1]) : 14;
      if (this.headerFilled < size) return next;
      // Complete: hand back the bytes taken beyond this header.
      src = header;
      at = 0;
      this.headerFilled = 0;
      pos += size - before;
    }
    const b1 = src[at + 1];
    this.fin = (src[at] & 0x80) !== 0;
    this.opcode = src[at] & 0x0f;
    let length = b1 & 0x7f;
    let offset = at + 2;
    if (length === 126) {
      length = src.readUInt16BE(offset);
      offset += 2;
    } else if (length === 127) {
      const high = src.readUInt32BE(offset);
      // RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0.
      if (high >= 0x80000000) {
        this.fail('INVALID_LENGTH');
        return end;
      }
      length = high >= HIGH_WORD_LIMIT ? Infinity : high * 0x100000000 + src.readUInt32BE(offset + 4);
      offset += 8;
    }
    this.mask = src.readUInt32BE(offset);
    offset += 4;
    if (src === chunk) pos = offset;
    this.frameLength = length;
    this.frameRead = 0;
    if (this.opcode < 0x8) {
      if (this.opcode !== OPCODE.CONTINUATION) {
        this.messageOpcode = this.opcode;
        this.compressed = (src[at] & 0x40) !== 0;
      }
      const limit = this.compressed ? this.compressedLimit : this.maxPayload;
      if (this.compressedRead + this.messageLength + length > limit) {
        this.fail('MESSAGE_TOO_BIG');
        return end;
      }
    }
    this.state = PAYLOAD;
    if (length === 0) this.frameDone(EMPTY, 0, 0);
    return pos;
  }

  /**
   * Checks the rules decidable from the first two header bytes, at once, so a
   * bad frame fails before its length or payload arrive. Returns the header
   * size, or -1 after reporting an error.
   */
  private checkFirstTwo(b0: number, b1: number): number {
    const opcode = b0 & 0x0f;
    // RFC 6455 5.2: RSV1-3 MUST be 0 unless an extension defines them.
    const rsv = b0 & 0x70;
    if (rsv !== 0) {
      if (rsv !== 0x40 || !this.compression) return this.failed('RSV_BITS_SET');
      // RFC 7692 6.1: RSV1 is set on the first frame of a compressed message only.
      if (opcode >= 0x8 || opcode === OPCODE.CONTINUATION) return this.failed('RSV1_NOT_FIRST');
    }
    if (opcode >= 0x8) {
      if (opcode > OPCODE.PONG) return this.failed('RESERVED_OPCODE');
      // RFC 6455 5.5: control frames MUST NOT be fragmented ...
      if ((b0 & 0x80) === 0) return this.failed('CONTROL_FRAGMENTED');
      // ... and MUST have a payload length of 125 bytes or less.
      if ((b1 & 0x7f) > 125) return this.failed('CONTROL_TOO_LONG');
    } else if (opcode > OPCODE.BINARY) {
      return this.failed('RESERVED_OPCODE');
    } else if (opcode === OPCODE.CONTINUATION) {
      // RFC 6455 5.4: a continuation needs a message in progress ...
      if (this.messageOpcode === 0) return this.failed('UNEXPECTED_CONTINUATION');
    } else if (this.messageOpcode !== 0) {
      // ... and a new message may not start before the last one finished.
      return this.failed('EXPECTED_CONTINUATION');
    }
    // RFC 6455 5.1: the server MUST close on an unmasked client frame.
    if ((b1 & 0x80) === 0) return this.failed('UNMASKED_FRAME');
    return headerSize(b1);
  }

  private failed(code: WebSocketErrorCode): number {
    this.fail(code);
    return -1;
  }

  /** Copies header bytes into the hold buffer, checking the first two once they are in. */
  private holdHeader(chunk: Buffer, pos: number, end: number): number {
    const header = (this.header ??= Buffer.allocUnsafe(14));
    while (pos < end) {
      const size = this.headerFilled >= 2 ? headerSize(header[1]) : 2;
      if (this.headerFilled >= size) break;
      const take = Math.min(size - this.headerFilled, end - pos);
      chunk.copy(header, this.headerFilled, pos, pos + take);
      this.headerFilled += take;
      pos += take;
      if (this.headerFilled === 2 && this.checkFirstTwo(header[0], header[1]) < 0) return end;
    }
    return pos;
  }

  /** Reads payload bytes of the current frame; returns the new position. */
  private readPayload(chunk: Buffer, pos: number, end: number): number {
    const want = this.frameLength - this.frameRead;
    const take = Math.min(want, end - pos);
    const isControl = this.opcode >= 0x8;

    const whole = this.fin || this.compressed;
    if (take === want && this.frameRead === 0 && (isControl || (whole && this.message === null))) {
      // Whole frame in this chunk, nothing assembled: unmask in place, no copy.
      unmask(chunk, pos, pos + take, this.mask);
      this.frameDone(chunk, pos, pos + take);
      return pos + take;
    }

    const mask = rotateMask(this.mask, this.frameRead);
    if (isControl) {
      const target = (this.controlBuffer ??= Buffer.allocUnsafe(this.frameLength));
      maskInto(chunk, pos, pos + take, target, this.frameRead, mask);
      this.frameRead += take;
      if (this.frameRead === this.frameLength) {
        this.controlBuffer = null;
        this.frameDone(target, 0, target.length);
      }
      return pos + take;
    }

    const at = this.messageLength;
    const target = this.reserve(at + want);
    maskInto(chunk, pos, pos + take, target, at, mask);
    this.messageLength += take;
    this.frameRead += take;
    if (this.messageOpcode === OPCODE.TEXT && !this.compressed) {
      // Fail fast: a bad byte closes the connection before the message ends.
      const before = this.utf8State;
      this.utf8State = utf8Continue(before, target, at, at + take);
      if (this.utf8State === UTF8_INVALID) {
        this.fail('INVALID_UTF8', at + Math.max(0, utf8InvalidAt(before, target, at, at + take)));
        return end;
      }
    }
    if (this.frameRead === this.frameLength) this.frameDone(null, 0, 0);
    return pos + take;
  }

  /** Ensures the message buffer holds `size` bytes, growing geometrically. */
  private reserve(size: number): Buffer {
    const current = this.message;
    if (current !== null && current.length >= size) return current;
    let capacity = size;
    if (!this.compressed && (current !== null || !this.fin)) {
      // Fragmented: grow by doubling so many small fragments copy O(n) bytes.
      capacity = Math.min(Math.max(size, (current?.length ?? 0) * 2, 1024), this.maxPayload);
    }
    const grown = Buffer.allocUnsafe(capacity);
    if (current !== null) current.copy(grown, 0, 0, this.messageLength);
    this.message = grown;
    return grown;
  }

  /**
   * A frame's payload is complete. `buf[start, end)` is the payload of a frame
   * read without copying; `buf` is null when it went into the message buffer.
   */
  private frameDone(buf: Buffer | null, start: number, end: number): void {
    this.state = HEADER;
    const opcode = this.opcode;
    if (opcode >= 0x8) {
      this.control(opcode, buf as Buffer, start, end);
      return;
    }
    if (this.compressed) return this.compressedFrameDone(buf, start, end);
    if (buf !== null && end > start) {
      // A whole single-frame message read in place (or an empty fragment).
      if (this.messageOpcode === OPCODE.TEXT && this.message === null) {
        if (!isValidUtf8(buf, start, end)) return this.fail('INVALID_UTF8', utf8FailureOffset(buf, start, end));
      }
    }
    if (!this.fin) return;
    // Read in place: the handler gets the chunk and the range, no view.
    const inPlace = this.message === null && buf !== null && end > start;
    let payload = inPlace ? buf! : EMPTY;
    if (this.message !== null) {
      // A buffer grown by doubling can be twice the message: a message the
      // app keeps should cost its own size, so a loose one is trimmed.
      payload = this.message.subarray(0, this.messageLength);
      if (this.message.length - this.messageLength > this.messageLength >>> 2) {
        payload = Buffer.from(payload.buffer.slice(payload.byteOffset, payload.byteOffset + payload.length));
      }
      // The message ended inside a code point: the first missing byte is the bad one.
      if (this.messageOpcode === OPCODE.TEXT && this.utf8State !== 0) return this.fail('INVALID_UTF8', this.messageLength);
      start = 0;
      end = payload.length;
    } else if (!inPlace) {
      start = end = 0;
    }
    const messageOpcode = this.messageOpcode;
    this.messageOpcode = 0;
    this.message = null;
    this.messageLength = 0;
    this.utf8State = 0;
    this.handler.onMessage(messageOpcode, payload, start, end, inPlace);
  }

  /** A frame of a compressed message is complete: hand it over as it is, one frame at a time. */
  private compressedFrameDone(buf: Buffer | null, start: number, end: number): void {
    const payload =
      buf === null ? (this.message as Buffer).subarray(0, this.messageLength) : end === start ? EMPTY : kept(buf.subarray(start, end));
    this.message = null;
    this.messageLength = 0;
    const opcode = this.messageOpcode;
    const fin = this.fin;
    if (fin) {
      this.messageOpcode = 0;
      this.compressed = false;
      this.compressedRead = 0;
    } else {
      this.compressedRead += payload.length;
    }
    this.handler.onCompressedFragment!(opcode, payload, fin);
  }

  private control(opcode: number, buf: Buffer, start: number, end: number): void {
    if (opcode === OPCODE.PING) {
      this.handler.onPing(copyOut(buf, start, end));
    } else if (opcode === OPCODE.PONG) {
      this.handler.onPong(copyOut(buf, start, end));
    } else {
      const length = end - start;
      // RFC 6455 5.5.1: a close body, if any, starts with a 2-byte status code.
      if (length === 1) return this.fail('INVALID_CLOSE_PAYLOAD');
      let code = 1005;
      let reason = '';
      if (length >= 2) {
        code = buf.readUInt16BE(start);
        if (!isValidCloseCode(code)) return this.fail('INVALID_CLOSE_CODE');
        // RFC 6455 5.5.1: the reason is UTF-8 encoded data.
        if (!isValidUtf8(buf, start + 2, end)) return this.fail('INVALID_CLOSE_REASON');
        reason = buf.toString('utf8', start + 2, end);
      }
      this.stop();
      this.handler.onClose(code, reason);
    }
  }
}

/**
 * Limit on a compressed message's own size: `maxPayload` on the inflated size
 * is enforced while inflating; this bounds what is buffered, with room for
 * the few bytes deflate adds to incompressible data (5 per stored block).
 */
function compressedLimit(maxPayload: number): number {
  return maxPayload + Math.ceil(maxPayload / 1024) + 64;
}

/** Header size from its second byte: 2, plus the extended length, plus the mask. */
function headerSize(b1: number): number {
  const length = b1 & 0x7f;
  return 2 + (length === 126 ? 2 : length === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
}

/** Control payloads are tiny: copy them so they never pin a large chunk. */
function copyOut(buf: Buffer, start: number, end: number): Buffer {
  if (end === start) return EMPTY;
  return Buffer.from(buf.subarray(start, end));
}

/**
 * Connections between messages hold no parser: an idle one reads with the
 * spare parser, and keeps it only while it is inside a frame or a fragmented
 * message, paused or stopped. Only the parser object changes hands: an idle
 * parser holds nothing of the connection it last read for. When the spare is
 * in use (a handler's call reaching another connection's input), a new one
 * is made.
 */
let spare: Parser | null = null;

/** The spare parser (or a new one) reading for `handler`. */
export function adoptSpareParser(handler: ParserHandler, maxPayload: number, compression: boolean): Parser {
  const parser = spare;
  if (parser === null) return new Parser(handler, maxPayload, compression);
  spare = null;
  parser.adopt(handler, maxPayload, compression);
  return parser;
}

/** A handler for a parser that reads for nobody (the spare, and `STOPPED_PARSER`). */
const NOBODY: ParserHandler = { onMessage() {}, onPing() {}, onPong() {}, onClose() {}, onError() {} };

/** Keeps `parser` as the spare if it is idle and there is none: true if it was taken. */
export function returnSpareParser(parser: Parser): boolean {
  if (spare !== null || !parser.idle) return false;
  parser.release();
  spare = parser;
  return true;
}

/** What a connection whose input ended holds instead of a parser: it ignores everything. */
export const STOPPED_PARSER = new Parser(NOBODY, 0);
STOPPED_PARSER.stop();
