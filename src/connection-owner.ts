/**
 * What a connection is (its ready state) and what it reports to, and asks
 * of, its owner: the server's core implements `ConnectionOwner`, and
 * `connection.ts` knows nothing else of it.
 */
import type { Batcher } from './batcher.js';
import type { WebSocketError } from './errors.js';

/** Life cycle of a connection after its opening handshake. */
export const ReadyState = {
  OPEN: 1,
  /** A close frame was sent or received; waiting for the other half or the TCP close. */
  CLOSING: 2,
  CLOSED: 3,
} as const;

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
  onMessage(connection: Connection, opcode: number, payload: Buffer): void;
  onPing(connection: Connection, payload: Buffer): void;
  onPong(connection: Connection, payload: Buffer): void;
  onProtocolError(connection: Connection, error: WebSocketError): void;
  onClosed(connection: Connection, code: number, reason: string, wasClean: boolean): void;
  /** A message was skipped for a slow connection (backpressure `'drop'`). */
  onDropped(connection: Connection, bytes: number): void;
  /** A connection that had messages dropped has an empty queue again. */
  onDrain(connection: Connection): void;
}
