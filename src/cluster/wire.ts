/**
 * The binary messages that workers (over Unix-domain sockets) and server
 * instances (through an adapter) exchange. No JSON on the hot path: a push,
 * broadcast or publish is a small fixed header followed by the payload bytes
 * as they are, so the payload is never copied to frame it for a socket.
 *
 * Every message is `u32 length` (of what follows) + `u8 type` + body, little
 * endian. fds travel as float64: every fd is a safe integer (see `fd.ts`).
 *
 * | type | body |
 * |---|---|
 * | HELLO | u32 owner, u32 worker id (first message on a worker link) |
 * | PUSH | u8 flags, f64 fd, payload |
 * | BROADCAST | u8 flags, u32 from, u32 n, n x f64 except, payload |
 * | PUBLISH | u8 flags, u32 from, f64 except (0: none), u16 topic length, topic, payload |
 * | DISCONNECT | f64 fd, u16 code, reason |
 * | OPEN, CLOSED | f64 fd (another worker's connection directory) |
 * | SNAPSHOT | n x f64 fd (all of a worker's fds, once per link) |
 * | REQUEST | u32 id, u32 from, u8 kind, f64 fd, then for PUSH: u8 flags, payload |
 * | RESPONSE | u32 id, u8 kind, answer |
 *
 * `flags` = opcode (bits 0-3) | fin (bit 4) | compress (bits 5-6: 0 default, 1 false, 2 true).
 */

export const MSG = {
  HELLO: 1,
  PUSH: 2,
  BROADCAST: 3,
  PUBLISH: 4,
  DISCONNECT: 5,
  OPEN: 6,
  CLOSED: 7,
  SNAPSHOT: 8,
  REQUEST: 9,
  RESPONSE: 10,
} as const;

/** What a REQUEST asks of the owner of an fd (or of a whole worker). */
export const ASK = {
  EXIST: 1,
  ESTABLISHED: 2,
  INFO: 3,
  PUSH: 4,
  CONNECTIONS: 5,
  STATS: 6,
} as const;

/** Length prefix + type byte. */
export const HEAD = 5;

export function packFlags(opcode: number, fin: boolean, compress: boolean | undefined): number {
  return opcode | (fin ? 0x10 : 0) | (compress === undefined ? 0 : compress ? 0x40 : 0x20);
}
export function flagOpcode(flags: number): number {
  return flags & 0x0f;
}
export function flagFin(flags: number): boolean {
  return (flags & 0x10) !== 0;
}
export function flagCompress(flags: number): boolean | undefined {
  const c = flags & 0x60;
  return c === 0 ? undefined : c === 0x40;
}

/** A header buffer for a message whose body is `fixed` bytes here plus `payload` bytes sent after it. */
function header(type: number, fixed: number, payload: number): Buffer {
  const buf = Buffer.allocUnsafe(HEAD + fixed);
  buf.writeUInt32LE(1 + fixed + payload, 0);
  buf[4] = type;
  return buf;
}

export function helloMessage(owner: number, workerId: number): Buffer {
  const buf = header(MSG.HELLO, 8, 0);
  buf.writeUInt32LE(owner, 5);
  buf.writeUInt32LE(workerId, 9);
  return buf;
}

/** PUSH header; the payload follows it. */
export function pushHeader(fd: number, flags: number, payload: number): Buffer {
  const buf = header(MSG.PUSH, 9, payload);
  buf[5] = flags;
  buf.writeDoubleLE(fd, 6);
  return buf;
}

/** BROADCAST header; the payload follows it. */
export function broadcastHeader(flags: number, from: number, except: readonly number[], payload: number): Buffer {
  const buf = header(MSG.BROADCAST, 9 + 8 * except.length, payload);
  buf[5] = flags;
  buf.writeUInt32LE(from, 6);
  buf.writeUInt32LE(except.length, 10);
  for (let i = 0; i < except.length; i++) buf.writeDoubleLE(except[i], 14 + 8 * i);
  return buf;
}

/** PUBLISH header; the payload follows it. */
export function publishHeader(flags: number, from: number, except: number, topic: Buffer, payload: number): Buffer {
  if (topic.length > 0xffff) throw new RangeError('a topic is at most 65535 bytes to cross processes');
  const buf = header(MSG.PUBLISH, 15 + topic.length, payload);
  buf[5] = flags;
  buf.writeUInt32LE(from, 6);
  buf.writeDoubleLE(except, 10);
  buf.writeUInt16LE(topic.length, 18);
  topic.copy(buf, 20);
  return buf;
}

export function disconnectMessage(fd: number, code: number, reason: string): Buffer {
  const text = Buffer.from(reason);
  const buf = header(MSG.DISCONNECT, 10 + text.length, 0);
  buf.writeDoubleLE(fd, 5);
  buf.writeUInt16LE(code, 13);
  text.copy(buf, 15);
  return buf;
}

/** OPEN or CLOSED of one fd. */
export function fdMessage(type: typeof MSG.OPEN | typeof MSG.CLOSED, fd: number): Buffer {
  const buf = header(type, 8, 0);
  buf.writeDoubleLE(fd, 5);
  return buf;
}

export function snapshotMessage(fds: readonly number[]): Buffer {
  const buf = header(MSG.SNAPSHOT, 8 * fds.length, 0);
  for (let i = 0; i < fds.length; i++) buf.writeDoubleLE(fds[i], 5 + 8 * i);
  return buf;
}

/** REQUEST header; for `ASK.PUSH` the flags byte and payload follow it. */
export function requestHeader(id: number, from: number, kind: number, fd: number, extra: number): Buffer {
  const buf = header(MSG.REQUEST, 17, extra);
  buf.writeUInt32LE(id, 5);
  buf.writeUInt32LE(from, 9);
  buf[13] = kind;
  buf.writeDoubleLE(fd, 14);
  return buf;
}

export function responseMessage(id: number, kind: number, answer: Buffer): Buffer {
  const buf = header(MSG.RESPONSE, 5 + answer.length, 0);
  buf.writeUInt32LE(id, 5);
  buf[9] = kind;
  answer.copy(buf, 10);
  return buf;
}

/** `header` and `payload` as one buffer (for transports that carry whole messages). */
export function joined(head: Buffer, payload: Buffer | null): Buffer {
  return payload === null || payload.length === 0 ? head : Buffer.concat([head, payload], head.length + payload.length);
}

/**
 * Splits a byte stream into messages. Each message is handed over as a view
 * (type byte first, no length prefix) of the chunk it arrived in; chunks are
 * joined only when a message spans them, once it is complete.
 */
export class MessageReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private need = 4;

  constructor(private readonly onMessage: (message: Buffer) => void) {}

  push(chunk: Buffer): void {
    if (this.buffered > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.buffered < this.need) return;
      chunk = Buffer.concat(this.chunks, this.buffered);
      this.chunks = [];
      this.buffered = 0;
    }
    let pos = 0;
    while (chunk.length - pos >= 4) {
      const length = chunk.readUInt32LE(pos);
      if (chunk.length - pos - 4 < length) break;
      this.onMessage(chunk.subarray(pos + 4, pos + 4 + length));
      pos += 4 + length;
    }
    if (pos < chunk.length) {
      const rest = chunk.subarray(pos);
      this.chunks.push(rest);
      this.buffered = rest.length;
      this.need = rest.length >= 4 ? 4 + rest.readUInt32LE(0) : 4;
    }
  }
}
