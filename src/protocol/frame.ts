/**
 * Encodes server frames (RFC 6455 5.2): never masked, encoded once and then
 * written to one socket or shared by many. Small payloads and all strings go
 * out as one buffer (header and payload together, one write); a large Buffer
 * payload is not copied: the frame is its header plus the caller's buffer.
 */
import { Buffer } from 'node:buffer';
import { OPCODE } from './opcode.js';

/** A frame ready for the wire: one buffer, or a header and the payload it precedes. */
export type EncodedFrame = Buffer | readonly [header: Buffer, payload: Buffer];

/**
 * Up to this payload size a Buffer is copied behind its header (one buffer
 * to write); above it the header and the payload go out as two buffers of
 * one writev, and the payload is never copied.
 */
const COPY_MAX = 4 * 1024;

/** Size of a server frame header for a payload of `length` bytes. */
export function headerSize(length: number): number {
  return length < 126 ? 2 : length <= 0xffff ? 4 : 10;
}

/** Writes a server frame header into `target` at `offset`; returns the offset after it. */
export function writeHeader(
  target: Buffer,
  offset: number,
  opcode: number,
  fin: boolean,
  length: number,
  rsv1 = false,
): number {
  target[offset] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  if (length < 126) {
    target[offset + 1] = length;
    return offset + 2;
  }
  if (length <= 0xffff) {
    target[offset + 1] = 126;
    target.writeUInt16BE(length, offset + 2);
    return offset + 4;
  }
  target[offset + 1] = 127;
  target.writeUInt32BE(Math.floor(length / 0x100000000), offset + 2);
  target.writeUInt32BE(length >>> 0, offset + 6);
  return offset + 10;
}

/** Encodes one frame. A string is written as UTF-8 straight into the frame buffer. */
export function encodeFrame(opcode: number, data: Buffer | string, fin = true, rsv1 = false): EncodedFrame {
  if (typeof data === 'string') {
    const length = Buffer.byteLength(data);
    const frame = Buffer.allocUnsafe(headerSize(length) + length);
    frame.write(data, writeHeader(frame, 0, opcode, fin, length, rsv1));
    return frame;
  }
  const length = data.length;
  if (length <= COPY_MAX) {
    const frame = Buffer.allocUnsafe(headerSize(length) + length);
    data.copy(frame, writeHeader(frame, 0, opcode, fin, length, rsv1));
    return frame;
  }
  const header = Buffer.allocUnsafe(headerSize(length));
  writeHeader(header, 0, opcode, fin, length, rsv1);
  return [header, data];
}

/** Bytes a frame puts on the wire. */
export function frameLength(frame: EncodedFrame): number {
  return Buffer.isBuffer(frame) ? frame.length : frame[0].length + frame[1].length;
}

/**
 * Encodes a close frame (RFC 6455 5.5.1). Code 1005 ("no status") sends an
 * empty body, as when echoing a close that carried none.
 */
export function encodeClose(code: number, reason = ''): Buffer {
  if (code === 1005) return encodeFrame(OPCODE.CLOSE, Buffer.alloc(0)) as Buffer;
  const reasonLength = Buffer.byteLength(reason);
  const body = Buffer.allocUnsafe(2 + reasonLength);
  body.writeUInt16BE(code, 0);
  body.write(reason, 2);
  return encodeFrame(OPCODE.CLOSE, body) as Buffer;
}
