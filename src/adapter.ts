/**
 * The adapter interface: how server instances on different machines (or
 * several on one) reach each other's connections. An adapter only moves
 * opaque messages; the server encodes and decodes them (see
 * `cluster/wire.ts`), so `broadcast`, `publish`, `push(fd)` and the async
 * queries work over any adapter. `RedisAdapter` is the one shipped.
 *
 * Delivery through an adapter is at-most-once: a message sent while the
 * transport is down is lost (the local part of a broadcast or publish is
 * still delivered). Messages from one process arrive in the order it sent them.
 */

/** What an adapter gets from the server it serves. */
export interface AdapterHost {
  /** This server instance's id (1 .. 255), carried by its fds. */
  readonly instanceId: number;
  /** This process's owner code (instance and worker slot), carried by its fds. */
  readonly owner: number;
  /** A message from another instance, exactly as it was given to `sendAll` or `sendTo`. */
  receive(message: Buffer): void;
  /** The transport failed (reported once per outage; it reconnects by itself). */
  error(error: Error): void;
}

/** A transport between server instances. */
export interface Adapter {
  /** An instance id from 1 to 255 for a server started without `instanceId`, distinct from the last 254 handed out. */
  allocateInstanceId(): Promise<number>;
  /** Connects and starts receiving this process's messages. */
  open(host: AdapterHost): Promise<void>;
  /** Sends to every process of every other instance; false when the transport is down (the message is lost). */
  sendAll(message: Buffer): boolean;
  /** Sends to the one process with this owner code; false when the transport is down (the message is lost). */
  sendTo(owner: number, message: Buffer): boolean;
  /** Disconnects. */
  close(): Promise<void>;
}
