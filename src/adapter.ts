/**
 * The adapter interface: how server instances on different machines (or
 * several on one) reach each other's connections. An adapter only moves
 * opaque messages; the server encodes and decodes them (see
 * `cluster/wire.ts`), so `broadcast`, `publish`, `push(fd)` and the async
 * queries work over any adapter. `RedisAdapter` is the one shipped.
 *
 * Delivery through an adapter is at-most-once: a message sent while the
 * transport is down is lost (the local part of a broadcast or publish is
 * still delivered). Messages from one process arrive in the order it sent them
 * (a sharded adapter keeps that order per channel: per topic, per owner).
 *
 * Two optional parts serve adapters that need them:
 * - topics: `topicChanged` learns when this process's first subscriber of a
 *   topic arrives and its last one leaves, and `sendTopic` carries a publish
 *   to the processes that have subscribers (a sharded Redis publishes each
 *   topic on its own channel). Without `sendTopic` a publish goes by `sendAll`.
 * - presence: `members` lists the processes that are alive, so that
 *   `connectionsAsync` and `statsAsync` can ask every instance and say which
 *   did not answer.
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
  /**
   * Optional: sends a publish of `topic` to every other process that has
   * subscribers of it (that called `topicChanged(topic, true)` last); false
   * when the transport is down. Without it a publish goes by `sendAll`.
   */
  sendTopic?(topic: string, message: Buffer): boolean;
  /**
   * Optional: this process's first subscriber of `topic` arrived (true) or
   * its last one left (false). Called synchronously, once per change.
   */
  topicChanged?(topic: string, subscribed: boolean): void;
  /**
   * Optional: the owner codes of every process (of every instance, this
   * one's included) that is alive as far as the transport knows.
   */
  members?(): Promise<number[]>;
}
