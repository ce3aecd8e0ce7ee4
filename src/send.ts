/**
 * Sending: `push`, `broadcast` and `publish` check their arguments, encode
 * a message once, choose whether it goes out compressed, and hand the frame
 * to each connection (which applies backpressure) and, for fds and
 * recipients elsewhere, to the router.
 */
import { Buffer } from 'node:buffer';
import type { Connection } from './connection.js';
import { ReadyState } from './connection-owner.js';
import { SharedMessage } from './deflate.js';
import { encodeFrame, type EncodedFrame } from './protocol/frame.js';
import { OPCODE } from './protocol/opcode.js';
import { bytesOf, endOf, Frame, sourceOf, startOf } from './received-frame.js';
import type { ServerCore } from './server-core.js';
import type { BroadcastOptions, PublishOptions, PushData } from './server-types.js';

/** The opcode a message goes out with: the given one, a relayed frame's own, or text. */
export function resolveOpcode(data: PushData, opcode: number | undefined): number {
  if (opcode !== undefined) return opcode;
  return data instanceof Frame ? data.opcode : OPCODE.TEXT;
}

/** Throws unless `compress` is a boolean or undefined. */
export function checkCompress(compress: unknown): void {
  if (compress !== undefined && typeof compress !== 'boolean') throw new TypeError('compress must be a boolean');
}

/** Throws unless `topic` is a string. */
export function checkTopic(topic: string): void {
  if (typeof topic !== 'string') throw new TypeError('a topic is a string');
}

function toBuffer(data: Exclude<PushData, Frame | string>): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('data must be a string, Buffer, ArrayBuffer, typed array or Frame');
}

/** Validates a message and returns its payload; throws on bad arguments. */
export function validate(maxPayload: number, data: PushData, opcode: number, finish: boolean): Buffer | string {
  const payload =
    data instanceof Frame ? bytesOf(data) : typeof data === 'string' ? data : toBuffer(data as Exclude<PushData, Frame | string>);
  if (typeof finish !== 'boolean') throw new TypeError('finish must be a boolean');
  if (opcode === OPCODE.CLOSE) throw new TypeError('use disconnect(fd, code, reason) to close');
  if (
    opcode !== OPCODE.TEXT &&
    opcode !== OPCODE.BINARY &&
    opcode !== OPCODE.CONTINUATION &&
    opcode !== OPCODE.PING &&
    opcode !== OPCODE.PONG
  ) {
    throw new TypeError(`invalid opcode ${String(opcode)}`);
  }
  // Byte length without encoding: a UTF-16 unit is at most 3 UTF-8 bytes.
  const limit = opcode >= 0x8 ? 125 : maxPayload;
  const length = typeof payload === 'string' && payload.length * 3 > limit ? Buffer.byteLength(payload) : payload.length;
  if (opcode >= 0x8) {
    // RFC 6455 5.5: control frames carry at most 125 bytes and are never fragmented.
    if (length > 125) throw new RangeError('a ping or pong payload is at most 125 bytes');
    if (!finish) throw new TypeError('control frames cannot be fragmented');
  } else if (length > maxPayload) {
    throw new RangeError(`message of ${length} bytes is larger than maxPayload (${maxPayload})`);
  }
  return payload;
}

/** Whether a message goes out compressed to connections that negotiated it. */
function wantsCompression<Data>(core: ServerCore<Data>, payload: Buffer | string, compress: boolean | undefined): boolean {
  checkCompress(compress);
  if (core.deflateShared === null || compress === false) return false;
  if (compress === true) return true;
  const threshold = core.deflateShared.options.threshold;
  // A string's UTF-8 size is at least its length: count bytes only when it matters.
  if (payload.length >= threshold) return true;
  return typeof payload === 'string' && payload.length * 3 >= threshold && Buffer.byteLength(payload) >= threshold;
}

/**
 * One recipient of a broadcast or publish that may be compressed: plain if
 * it did not negotiate permessage-deflate; without server context takeover
 * the one compressed frame shared by all such recipients (each message
 * stands alone, so the same bytes are right for every one of them); with
 * takeover, compressed by its own context.
 */
function sendShared(connection: Connection, frame: EncodedFrame, shared: SharedMessage): boolean {
  const deflate = connection.deflate;
  if (deflate === null) return connection.send(shared.opcode, frame, true);
  const params = deflate.params;
  if (params.serverNoContextTakeover) {
    return connection.send(shared.opcode, shared.frameFor(params.serverMaxWindowBits), true);
  }
  return connection.sendCompressed(shared.opcode, shared.payload);
}

/**
 * `push` of a received message, whole, to a connection of this process that
 * does not compress: its bytes are copied from where they arrived, with no
 * view made of them. Undefined when the general path must decide.
 */
function relay<Data>(core: ServerCore<Data>, fd: number, frame: Frame, opcode: number): boolean | undefined {
  const start = startOf(frame);
  const end = endOf(frame);
  if (end - start > core.maxPayload) return undefined;
  const connection = core.registry.get(fd);
  if (connection === undefined || connection.deflate !== null) return undefined;
  if (connection.state !== ReadyState.OPEN) return false;
  return connection.sendMessage(opcode, sourceOf(frame), start, end);
}

/** `Server.push`: see there. */
export function push<Data>(
  core: ServerCore<Data>,
  fd: number,
  data: PushData,
  opcode: number | undefined,
  finish: boolean,
  compress: boolean | undefined,
): boolean {
  opcode = resolveOpcode(data, opcode);
  if (data instanceof Frame && finish === true && compress === undefined && (opcode === OPCODE.TEXT || opcode === OPCODE.BINARY)) {
    const sent = relay(core, fd, data, opcode);
    if (sent !== undefined) return sent;
  }
  const payload = validate(core.maxPayload, data, opcode, finish);
  checkCompress(compress);
  const connection = core.registry.get(fd);
  // Another worker's or instance's fd: handed to its owner (see pushAsync for the owner's answer).
  if (connection === undefined) return core.router?.push(fd, opcode, payload, finish, compress) ?? false;
  if (connection.state !== ReadyState.OPEN) return false;
  const whole = finish && (opcode === OPCODE.TEXT || opcode === OPCODE.BINARY);
  if (whole && connection.deflate !== null && wantsCompression(core, payload, compress)) {
    return connection.sendCompressed(opcode, payload);
  }
  if (whole && typeof payload !== 'string') return connection.sendMessage(opcode, payload, 0, payload.length);
  return connection.send(opcode, encodeFrame(opcode, payload, finish), finish);
}

/** `Server.broadcast`: see there. */
export function broadcast<Data>(core: ServerCore<Data>, data: PushData, options: BroadcastOptions): number {
  const opcode = resolveOpcode(data, options.opcode);
  if (opcode !== OPCODE.TEXT && opcode !== OPCODE.BINARY) throw new TypeError('broadcast sends text or binary messages');
  const payload = validate(core.maxPayload, data, opcode, true);
  const frame = encodeFrame(opcode, payload, true);
  const shared = wantsCompression(core, payload, options.compress) ? new SharedMessage(core.deflateShared!, opcode, payload) : null;
  const { except, filter } = options;
  if (filter !== undefined && typeof filter !== 'function') throw new TypeError('filter must be a function');
  const skip: ReadonlySet<number> | number | undefined =
    except === undefined || typeof except === 'number' ? except : new Set(except);
  if (core.router !== null && options.local !== true) {
    // A function cannot run in another process: the caller says which part it means.
    if (filter !== undefined) throw new TypeError('filter works only with local: true when there are other workers or instances');
    core.router.broadcast(opcode, payload, skip === undefined ? [] : typeof skip === 'number' ? [skip] : [...skip], options.compress);
  }
  let reached = 0;
  for (const connection of core.registry.values()) {
    const fd = connection.fd;
    if (skip !== undefined && (typeof skip === 'number' ? fd === skip : skip.has(fd))) continue;
    if (filter !== undefined && !filter(fd)) continue;
    if (shared === null ? connection.send(opcode, frame, true) : sendShared(connection, frame, shared)) reached++;
  }
  return reached;
}

/** `Server.publish`: see there. */
export function publish<Data>(core: ServerCore<Data>, topic: string, data: PushData, options: PublishOptions): number {
  checkTopic(topic);
  // Bad arguments throw whether or not anyone listens (a mistake is not hidden by an empty topic).
  checkCompress(options.compress);
  const opcode = resolveOpcode(data, options.opcode);
  if (opcode !== OPCODE.TEXT && opcode !== OPCODE.BINARY) throw new TypeError('publish sends text or binary messages');
  const payload = validate(core.maxPayload, data, opcode, true);
  const subscribers = core.topicIndex.subscribers(topic);
  const remote = core.router !== null && options.local !== true;
  if (subscribers === undefined && !remote) return 0;
  if (remote) core.router!.publish(topic, opcode, payload, options.except, options.compress);
  if (subscribers === undefined) return 0;
  const frame = encodeFrame(opcode, payload, true);
  const shared = wantsCompression(core, payload, options.compress) ? new SharedMessage(core.deflateShared!, opcode, payload) : null;
  const except = options.except;
  let reached = 0;
  for (const connection of subscribers) {
    if (connection.fd === except) continue;
    if (shared === null ? connection.send(opcode, frame, true) : sendShared(connection, frame, shared)) reached++;
  }
  return reached;
}
