/**
 * One WebSocket connection over one wire (a `net.Socket` or a native
 * transport slot, see `wire.ts`): its state, the close handshake, fragmented
 * sends, backpressure, and the only writes to the wire. It knows nothing of
 * other connections; what it learns goes to its owner (the server).
 *
 * Frames go through the owner's batcher, which holds them to the end of the
 * turn and writes them in one go (see `batcher.ts`).
 */
import { Buffer } from 'node:buffer';
import type { BatchNode, Batchable } from './batch-trie.js';
import { Flag, ReadyState, type Closing, type ConnectionOwner, type Deferred } from './connection-owner.js';
import type { PerMessageDeflate } from './deflate.js';
import { WebSocketError } from './errors.js';
import { clock } from './heartbeat.js';
import { kept } from './lease.js';
import { isValidUtf8, utf8FailureOffset } from './native.js';
import { adoptSpareParser, STOPPED_PARSER, type Parser, type ParserHandler, returnSpareParser } from './protocol/parser.js';
import { encodeClose, encodeFrame, frameLength, headerSize, type EncodedFrame } from './protocol/frame.js';
import { OPCODE } from './protocol/opcode.js';
import type { Wire, WireSink } from './wire.js';

/**
 * Calls `done` once nothing of the connection is queued in user space (the wire's bytes out, this turn's
 * batch looked at again next turn); never for a closed connection. Costs nothing on connections that never wait.
 */
function whenEmpty(connection: Connection, done: (connection: Connection) => void): void {
  if (connection.state === ReadyState.CLOSED) return;
  const wire = connection.wire;
  if (wire.queued > 0) wire.whenDrained(() => whenEmpty(connection, done));
  else if (connection.pendingBytes > 0) setImmediate(whenEmpty, connection, done);
  else done(connection);
}
/** After a drop: `drain` once the queue is empty again. */
function reportDrain(connection: Connection): void {
  connection.drainReported();
}
/**
 * While a connection is over `maxBackpressure`, it is not read: whatever a client makes the server write on
 * its own (pongs, close replies, an app's echo) stops growing the queue once the client stops reading.
 * Reading resumes when everything queued has left user space.
 */
function unthrottle(connection: Connection): void {
  connection.unthrottle();
}
function onCloseTimeout(connection: Connection): void {
  connection.wire.destroy();
}

const NO_DATA = Buffer.alloc(0);

/**
 * State held per connection. Budget: the 21 fields below (192 bytes on a 64-bit heap), the wire (a native
 * slot: 6 fields; or a `net.Socket`), and no parser, closures or timers while idle: a parser only inside a
 * message (see `adoptSpareParser`), a `Closing` and its timer only during a close; none while resting.
 */
export class Connection<Data = unknown> implements ParserHandler, Batchable, WireSink {
  state: number = ReadyState.OPEN;
  /** Time of the last bytes received (a `clock()` reading), for the heartbeat. */
  lastReceive: number;
  /** Time the last server ping went out (`clock()`), for `pingInterval`. */
  lastPing = 0;
  messagesIn = 0;
  messagesOut = 0;
  batchNode: BatchNode | null = null;
  pendingBytes = 0;
  /** Topics this connection is subscribed to (owned by the server's pub/sub). */
  topics: Set<string> | null = null;
  /** When the connection opened (`clock()`; set back for one that rested). */
  connectTime: number;

  /** The parser reading for this connection, or null between messages (see `adoptSpareParser`). */
  private parser: Parser | null = null;
  /** Data frames waiting for a fragmented message being sent to finish. */
  private waiting: EncodedFrame[] | null = null;
  /** Yes/no state: the bits of `Flag` (`connection-owner.ts`). */
  private flags = 0;
  private closing: Closing | null = null;
  /** Data messages behind the compression in flight, in order; null when none is in flight. */
  private deferred: Deferred[] | null = null;
  /** Bytes of the message being compressed and of `deferred`, counted in `bufferedAmount`. */
  private deferredBytes = 0;

  constructor(
    readonly fd: number,
    readonly wire: Wire,
    readonly owner: ConnectionOwner<Connection>,
    /** The negotiated subprotocol, or '' for none. */
    readonly protocol: string,
    /** Per-connection user data attached by the handshake hook. */
    public data: Data,
    /** permessage-deflate state when it was negotiated, else null. */
    readonly deflate: PerMessageDeflate | null = null,
  ) {
    this.connectTime = this.lastReceive = clock();
    wire.attach(this);
  }

  get remoteAddress(): string {
    return this.wire.remoteAddress;
  }
  get remotePort(): number {
    return this.wire.remotePort;
  }

  /** Bytes queued in user space for this connection (this turn's and the wire's), not yet in the kernel. */
  get bufferedAmount(): number {
    return this.wire.queued + this.pendingBytes + this.deferredBytes;
  }

  /** Bytes sent to the client so far. */
  get bytesOut(): number {
    return this.wire.bytesWritten;
  }

  /** Bytes received from the client so far. */
  get bytesIn(): number {
    return this.wire.bytesRead;
  }

  /** Feeds received bytes to the parser (also bytes that came with the upgrade request). */
  receive(chunk: Buffer, start = 0, end = chunk.length): void {
    this.lastReceive = clock();
    const parser = this.takeParser();
    parser.write(chunk, start, end);
    // Between messages again: the parser goes back to being the spare.
    if (this.parser === parser && returnSpareParser(parser)) this.parser = null;
    this.checkBackpressure();
    // Only pings and pongs received, nothing going on or held: it may rest again, its sent messages counted (registry.ts). (`closing`, `waiting`, `deferred` imply a flag, a message or `deflate`.)
    if (this.parser === null && this.flags === 0 && this.state === ReadyState.OPEN && this.batchNode === null && this.topics === null && this.deflate === null &&
      this.messagesIn + this.pendingBytes + this.wire.queued === 0 && this.protocol === '' && this.data === undefined) this.owner.rest?.(this);
  }

  /** This connection's parser, the spare one adopted if it has none. */
  private takeParser(): Parser {
    return (this.parser ??= adoptSpareParser(this, this.owner.maxPayload, this.deflate !== null));
  }

  /** Nothing more is parsed for this connection (a close frame, an error, the socket's end). */
  private stopParser(): void {
    if (this.parser !== null) this.parser.stop();
    else this.parser = STOPPED_PARSER;
  }

  /** Whether input ended for this connection (see `stopParser`). */
  private get inputStopped(): boolean {
    return this.parser !== null && this.parser.stopped;
  }

  /**
   * What the client made us write (pongs, a close reply, an app's answers)
   * counts toward `maxBackpressure`: past it, the client is not read (the
   * parser holds the rest of its chunk) until the queue drains, so one that
   * never reads cannot grow it by more than a frame.
   */
  private checkBackpressure(): void {
    if (this.bufferedAmount > this.owner.maxBackpressure && this.state !== ReadyState.CLOSED) this.throttle();
  }

  private throttle(): void {
    if (this.owner.backpressure === 'close') {
      if (this.state === ReadyState.OPEN) this.expire(1008, 'slow consumer');
      return;
    }
    if (this.flags & Flag.PAUSED_BACKPRESSURE) return;
    this.pauseReading(Flag.PAUSED_BACKPRESSURE);
    setImmediate(whenEmpty, this, unthrottle);
  }

  /** @internal reading resumes once a throttled connection's queue is empty. */
  unthrottle(): void {
    this.resumeReading(Flag.PAUSED_BACKPRESSURE);
  }

  private pauseReading(reason: number): void {
    if ((this.flags & Flag.PAUSED) === 0) {
      this.takeParser().pause();
      this.wire.pause();
    }
    this.flags |= reason;
  }

  private resumeReading(reason: number): void {
    if (!(this.flags & reason)) return;
    this.flags &= ~reason;
    if ((this.flags & Flag.PAUSED) !== 0) return;
    this.wire.resume();
    this.parser?.resume();
  }

  // --- sending ---------------------------------------------------------------

  private write(frame: EncodedFrame): void {
    this.owner.batcher.append(this, frame);
  }

  /**
   * Sends a data or control frame. Returns false when the connection is not
   * open, or when the message was dropped for backpressure. A data frame with
   * `fin` false starts a fragmented message that `OPCODE.CONTINUATION` frames
   * continue; other data messages wait behind it in order, control frames do
   * not.
   */
  send(opcode: number, frame: EncodedFrame, fin: boolean): boolean {
    if (this.state !== ReadyState.OPEN) return false;
    if (opcode >= 0x8) {
      this.write(frame);
      return true;
    }
    if (this.deferred !== null) return this.defer(opcode, fin, frame, NO_DATA);
    if (opcode !== OPCODE.CONTINUATION && this.refuse(frameLength(frame))) return false;
    if (opcode === OPCODE.CONTINUATION) {
      if (!(this.flags & Flag.FRAGMENTING)) throw new TypeError(`no fragmented message is in progress on fd ${this.fd}`);
      this.write(frame);
      if (fin) this.finishFragmented();
      return true;
    }
    if (this.flags & Flag.FRAGMENTING) {
      if (!fin) throw new TypeError(`a fragmented message is already in progress on fd ${this.fd}`);
      (this.waiting ??= []).push(frame);
      this.messagesOut++;
      return true;
    }
    this.write(frame);
    if (fin) this.messagesOut++;
    else this.flags |= Flag.FRAGMENTING;
    return true;
  }

  /** `send` of a whole text or binary message, `source[start, end)`, which the batcher may encode straight into its turn buffer. */
  sendMessage(opcode: number, source: Buffer, start: number, end: number): boolean {
    if (this.deferred !== null || this.flags & Flag.FRAGMENTING) return this.send(opcode, encodeFrame(opcode, kept(source.subarray(start, end))), true);
    if (this.state !== ReadyState.OPEN || this.refuse(headerSize(end - start) + end - start)) return false;
    this.messagesOut++;
    return this.owner.batcher.appendMessage(this, opcode, source, start, end);
  }

  /**
   * Applies backpressure to a new message of `bytes`: true when it must not
   * be sent (dropped and reported, or the connection closed with 1008).
   */
  private refuse(bytes: number): boolean {
    const owner = this.owner;
    const queued = this.bufferedAmount;
    // An empty queue takes any message, so one larger than the limit still goes.
    if (queued === 0 || queued + bytes <= owner.maxBackpressure) return false;
    // A slow consumer: skip the message for it, or close it (1008).
    if (owner.backpressure === 'close') {
      this.expire(1008, 'slow consumer');
    } else {
      owner.onDropped(this, bytes);
      if (!(this.flags & Flag.WANT_DRAIN)) {
        this.flags |= Flag.WANT_DRAIN;
        setImmediate(whenEmpty, this, reportDrain);
      }
    }
    return true;
  }

  /**
   * Sends a whole text or binary message compressed (RFC 7692 7.2.1: one
   * frame with RSV1). Compression runs in the zlib threadpool: data messages
   * sent meanwhile wait behind it, so order is kept; control frames do not
   * wait. Returns false when the connection is not open or the message was
   * refused for backpressure (checked on its uncompressed size).
   */
  sendCompressed(opcode: number, data: Buffer | string): boolean {
    if (this.state !== ReadyState.OPEN) return false;
    if (this.deferred !== null) return this.defer(opcode, true, null, data);
    const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    if (this.refuse(bytes)) return false;
    this.deferred = [];
    this.compressNext(opcode, data, bytes);
    return true;
  }

  private defer(opcode: number, fin: boolean, frame: EncodedFrame | null, data: Buffer | string): boolean {
    const bytes = frame !== null ? frameLength(frame) : typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    if (opcode !== OPCODE.CONTINUATION && this.refuse(bytes)) return false;
    // The fragmentation rules of send(), checked now rather than when the queue drains.
    const open = (this.flags & (this.deferred!.length > 0 ? Flag.DEFERRED_FRAGMENTING : Flag.FRAGMENTING)) !== 0;
    let stillOpen: boolean;
    if (opcode === OPCODE.CONTINUATION) {
      if (!open) throw new TypeError(`no fragmented message is in progress on fd ${this.fd}`);
      stillOpen = !fin;
    } else if (!fin) {
      if (open) throw new TypeError(`a fragmented message is already in progress on fd ${this.fd}`);
      stillOpen = true;
    } else {
      stillOpen = open;
    }
    this.flags = stillOpen ? this.flags | Flag.DEFERRED_FRAGMENTING : this.flags & ~Flag.DEFERRED_FRAGMENTING;
    this.deferred!.push({ opcode, fin, frame, data, bytes });
    this.deferredBytes += bytes;
    return true;
  }

  private compressNext(opcode: number, data: Buffer | string, bytes: number): void {
    this.deferredBytes += bytes;
    this.deflate!.compress(data, (error, payload) => {
      this.deferredBytes -= bytes;
      const deferred = this.deferred!;
      this.deferred = null;
      if (error === null) this.send(opcode, encodeFrame(opcode, payload, true, true), true);
      this.drainDeferred(deferred);
    });
  }

  /** Sends what waited behind a compression, up to the next message to compress. */
  private drainDeferred(deferred: Deferred[]): void {
    for (let i = 0; i < deferred.length; i++) {
      const item = deferred[i];
      this.deferredBytes -= item.bytes;
      if (item.frame === null) {
        if (this.state !== ReadyState.OPEN) continue;
        this.deferred = deferred.slice(i + 1);
        this.compressNext(item.opcode, item.data, item.bytes);
        return;
      }
      this.send(item.opcode, item.frame, item.fin);
    }
  }

  private finishFragmented(): void {
    this.flags &= ~Flag.FRAGMENTING;
    this.messagesOut++;
    const waiting = this.waiting;
    if (waiting === null) return;
    this.waiting = null;
    for (const frame of waiting) this.write(frame);
  }

  // --- closing ---------------------------------------------------------------

  /** Starts the closing handshake (RFC 6455 7.1.2). Returns false if one already started. */
  close(code: number, reason: string): boolean {
    if (this.state !== ReadyState.OPEN) return false;
    this.closeWith(code, reason);
    this.sendClose(code, reason);
    return true;
  }

  /** `drain` is due: the queue emptied after a drop. */
  drainReported(): void {
    this.flags &= ~Flag.WANT_DRAIN;
    this.owner.onDrain(this);
  }

  /** Records the code and reason this connection closes with (the first ones win). */
  private closeWith(code: number, reason: string): Closing {
    let closing = this.closing;
    if (closing === null) closing = this.closing = { code, reason, timer: null };
    else if (!(this.flags & (Flag.CLOSE_SENT | Flag.CLOSE_RECEIVED))) {
      closing.code = code;
      closing.reason = reason;
    }
    return closing;
  }

  /**
   * Sends a close frame and closes the TCP connection as soon as it is
   * written, without waiting for the answer: for peers presumed gone (the
   * heartbeat's idle timeout). Reported as not clean.
   */
  expire(code: number, reason: string): void {
    if (this.state === ReadyState.OPEN) {
      this.closeWith(code, reason);
      this.sendClose(code, reason);
    }
    this.flags |= Flag.FAILED;
    this.stopParser();
    this.owner.batcher.flushOne(this);
    this.wire.destroySoon();
    this.startCloseTimer();
  }

  /** Ends our side of TCP after what is pending this turn. */
  private endSocket(): void {
    this.owner.batcher.flushOne(this);
    this.wire.end();
  }

  /** Closes the TCP connection at once, without a closing handshake. */
  destroy(): void {
    this.state = ReadyState.CLOSING;
    this.stopParser();
    this.wire.destroy();
  }

  private sendClose(code: number, reason: string): void {
    this.state = ReadyState.CLOSING;
    this.flags |= Flag.CLOSE_SENT;
    this.waiting = null;
    this.write(encodeClose(code, reason));
    this.startCloseTimer();
  }

  private startCloseTimer(): void {
    const closing = (this.closing ??= { code: 1006, reason: '', timer: null });
    if (closing.timer !== null) return;
    closing.timer = setTimeout(onCloseTimeout, this.owner.closeTimeout, this);
    closing.timer.unref();
  }

  /** The peer sent FIN: nothing more will come, so finish our side too. */
  peerEnded(): void {
    this.stopParser();
    if (this.state === ReadyState.OPEN) this.state = ReadyState.CLOSING;
    this.endSocket();
    this.startCloseTimer();
  }

  socketClosed(): void {
    if (this.state === ReadyState.CLOSED) return;
    this.state = ReadyState.CLOSED;
    this.stopParser();
    this.deflate?.close();
    this.deferred = null;
    this.deferredBytes = 0;
    this.waiting = null;
    const closing = this.closing;
    if (closing !== null && closing.timer !== null) {
      clearTimeout(closing.timer);
      closing.timer = null;
    }
    const flags = this.flags;
    const wasClean = (flags & (Flag.CLOSE_SENT | Flag.CLOSE_RECEIVED | Flag.FAILED)) === (Flag.CLOSE_SENT | Flag.CLOSE_RECEIVED);
    const code = (flags & (Flag.CLOSE_SENT | Flag.CLOSE_RECEIVED)) !== 0 && closing !== null ? closing.code : 1006;
    this.owner.onClosed(this, code, code === 1006 ? '' : closing!.reason, wasClean);
  }

  // --- ParserHandler -----------------------------------------------------------

  onMessage(opcode: number, source: Buffer, start: number, end: number, inPlace: boolean): void {
    this.owner.onMessage(this, opcode, source, start, end, inPlace);
    this.checkBackpressure();
  }

  onCompressedFragment(opcode: number, payload: Buffer, fin: boolean): void {
    if (!fin && payload.length === 0) return;
    // Hold further input until this fragment is inflated: messages stay in
    // order and nothing piles up in memory while zlib works.
    this.pauseReading(Flag.PAUSED_INFLATE);
    this.deflate!.decompress(payload, fin, (error, message) => this.inflated(opcode, error, message));
  }

  private inflated(opcode: number, error: WebSocketError | null, message: Buffer | null): void {
    if (this.inputStopped) return;
    if (error === null && message !== null && opcode === OPCODE.TEXT && !isValidUtf8(message, 0, message.length)) {
      // RFC 6455 8.1, on the inflated bytes.
      error = new WebSocketError('INVALID_UTF8', utf8FailureOffset(message, 0, message.length));
    }
    if (error !== null) {
      this.stopParser();
      this.onError(error);
      // Read on (and ignore) so the peer's close is seen.
      this.resumeReading(Flag.PAUSED_INFLATE);
      return;
    }
    if (message !== null) this.onMessage(opcode, message, 0, message.length, false);
    if (this.inputStopped) return;
    this.resumeReading(Flag.PAUSED_INFLATE);
  }

  onPing(payload: Buffer): void {
    // RFC 6455 5.5.2: answer a ping with a pong carrying the same payload.
    if (this.state === ReadyState.OPEN) this.write(encodeFrame(OPCODE.PONG, payload));
    this.owner.onPing(this, payload);
    this.checkBackpressure();
  }

  onPong(payload: Buffer): void {
    this.owner.onPong(this, payload);
  }

  onClose(code: number, reason: string): void {
    if (!(this.flags & Flag.CLOSE_SENT)) {
      // RFC 6455 5.5.1: reply with a close frame, echoing the status code.
      this.closeWith(code, reason);
      this.flags |= Flag.CLOSE_RECEIVED;
      this.sendClose(code, '');
    } else {
      this.flags |= Flag.CLOSE_RECEIVED;
    }
    // RFC 6455 7.1.1: the server closes the TCP connection first.
    this.endSocket();
  }

  onError(error: WebSocketError): void {
    // RFC 6455 7.1.7: fail the connection: a close frame with the reason, then TCP close.
    this.flags |= Flag.FAILED;
    if (!(this.flags & Flag.CLOSE_SENT)) {
      this.closeWith(error.closeCode, error.message);
      this.sendClose(error.closeCode, error.message);
    }
    this.endSocket();
    this.owner.onProtocolError(this, error);
  }
}
