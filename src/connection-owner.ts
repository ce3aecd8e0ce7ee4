/**
 * What a connection is (its ready state and flags) and what it reports to, and asks
 * of, its owner: the server's core implements `ConnectionOwner`, and
 * `connection.ts` knows nothing else of it.
 */
import type { Batcher } from './batcher.js';
import type { WebSocketError } from './errors.js';
import type { EncodedFrame } from './protocol/frame.js';

/** Life cycle of a connection after its opening handshake. */
export const ReadyState = {
  OPEN: 1,
  /** A close frame was sent or received; waiting for the other half or the TCP close. */
  CLOSING: 2,
  CLOSED: 3,
} as const;

/** Bits of `Connection.flags`: a connection's yes/no state in one number. */
export const Flag = {
  /** A message was dropped: report `drain` when the queue is empty again. */
  WANT_DRAIN: 1,
  /** A fragmented message is being sent: data messages wait behind it. */
  FRAGMENTING: 2,
  CLOSE_SENT: 4,
  CLOSE_RECEIVED: 8,
  /** Failed (protocol error, expired): the close is not clean. */
  FAILED: 16,
  /** The last deferred data frame left a fragmented message open (checked when deferring). */
  DEFERRED_FRAGMENTING: 32,
  // Why reading is paused: a fragment being inflated, a queue over the limit.
  PAUSED_INFLATE: 64,
  PAUSED_BACKPRESSURE: 128,
  PAUSED: 64 | 128,
} as const;

/** How a connection closes, kept from the first close frame sent or received (or failure) on. */
export interface Closing {
  code: number;
  reason: string;
  /** Destroys the socket if the close does not finish in time. */
  timer: NodeJS.Timeout | null;
}

/** A data message waiting behind a compression in flight: a ready frame, or (`frame` null) one to compress. */
export interface Deferred {
  opcode: number;
  fin: boolean;
  frame: EncodedFrame | null;
  data: Buffer | string;
  bytes: number;
}

/**
 * What a connection reports to, and asks of, its server. Generic in the
 * connection's type so that this file needs nothing of `connection.ts`.
 */
export interface ConnectionOwner<Connection> {
  readonly maxPayload: number;
  readonly closeTimeout: number;
  /** Bytes a connection may have queued before `backpressure` applies. */
  readonly maxBackpressure: number;
  readonly backpressure: 'drop' | 'close';
  readonly batcher: Batcher;
  /** The message is `source[start, end)`; `inPlace`: `source` is the bytes the wire delivered (see `ParserHandler`). */
  onMessage(connection: Connection, opcode: number, source: Buffer, start: number, end: number, inPlace: boolean): void;
  onPing(connection: Connection, payload: Buffer): void;
  onPong(connection: Connection, payload: Buffer): void;
  onProtocolError(connection: Connection, error: WebSocketError): void;
  onClosed(connection: Connection, code: number, reason: string, wasClean: boolean): void;
  /** A message was skipped for a slow connection (backpressure `'drop'`). */
  onDropped(connection: Connection, bytes: number): void;
  /** A connection that had messages dropped has an empty queue again. */
  onDrain(connection: Connection): void;
  /** A connection is as it was when it opened, nothing queued, pending or held: it may rest (see `registry.ts`). */
  rest?(connection: Connection): void;
}
