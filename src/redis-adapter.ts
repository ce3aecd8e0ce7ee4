/**
 * `RedisAdapter`: server instances joined through Redis pub/sub (with the
 * `ioredis` client, an optional peer dependency loaded only when an adapter
 * opens). Each process subscribes to two channels: `<prefix>all` (broadcasts
 * and publishes of every instance) and `<prefix>o:<owner>` (pushes and
 * questions for its own fds). Messages are the binary `cluster/wire.ts`
 * messages, published as they are.
 *
 * At-most-once: nothing is queued while Redis is unreachable (the offline
 * queue is off), so a message sent during an outage is lost for the other
 * instances and delivered only locally; Redis keeps each connection's
 * publishes in order, so messages from one process arrive in publish order.
 * The adapter reports the outage once (`error` on the server, `down` here),
 * reconnects by itself, subscribes again, and says `up`.
 */
import { EventEmitter } from 'node:events';
import type { Redis as RedisClient, RedisOptions } from 'ioredis';
import type { Adapter, AdapterHost } from './adapter.js';
import { INSTANCE_RANGE } from './cluster/fd.js';

/** Settings of a `RedisAdapter`. */
export interface RedisAdapterOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 6379. */
  port?: number;
  /** A `redis://` URL instead of host and port. */
  url?: string;
  /** Prefix of the channels and of the instance counter key. Default `'wavecast:'`. */
  prefix?: string;
  /** Longest wait between reconnection attempts (ms). Default 1000. */
  maxRetryDelay?: number;
  /** More `ioredis` options (password, tls, db...), passed as they are. */
  redisOptions?: Record<string, unknown>;
}

/** Events of a `RedisAdapter` (the server also reports `down` as an `error`). */
export interface RedisAdapterEvents {
  /** Redis became unreachable: only local delivery until `up`. */
  down: [error: Error];
  /** Connected and subscribed again after `down`. */
  up: [];
}

type RedisConstructor = new (options: RedisOptions) => RedisClient;

/** Loads `ioredis` on first use, so the server itself never depends on it. */
async function loadRedis(): Promise<RedisConstructor> {
  try {
    const mod = (await import('ioredis')) as unknown as { Redis?: RedisConstructor; default: RedisConstructor };
    return mod.Redis ?? mod.default;
  } catch (error) {
    throw new Error(`RedisAdapter needs the ioredis package: npm install ioredis (${(error as Error).message})`);
  }
}

/**
 * An `Adapter` over Redis pub/sub: `new Server({ adapter: new RedisAdapter({ url }) })`.
 * Give each server (each process, with workers) its own adapter object.
 */
export class RedisAdapter extends EventEmitter<RedisAdapterEvents> implements Adapter {
  private readonly prefix: string;
  private pub: RedisClient | null = null;
  private sub: RedisClient | null = null;
  private host: AdapterHost | null = null;
  private channels: string[] = [];
  private down = false;
  private closing = false;
  /** Messages not sent to Redis because it was unreachable. */
  lost = 0;

  constructor(private readonly options: RedisAdapterOptions = {}) {
    super();
    this.prefix = options.prefix ?? 'wavecast:';
  }

  private async client(role: 'pub' | 'sub' | 'once'): Promise<RedisClient> {
    const Redis = await loadRedis();
    const o = this.options;
    const maxDelay = o.maxRetryDelay ?? 1000;
    const settings: RedisOptions = {
      ...(o.redisOptions as RedisOptions | undefined),
      lazyConnect: true,
      // At-most-once: fail at once while disconnected instead of queueing for later.
      enableOfflineQueue: role === 'sub',
      autoResubscribe: false,
      maxRetriesPerRequest: role === 'once' ? 1 : null,
      retryStrategy: role === 'once' ? () => null : (times: number) => Math.min(50 * 2 ** times, maxDelay),
      connectionName: `wavecast-${role}`,
    };
    const client = o.url !== undefined ? new (Redis as unknown as new (url: string, options: RedisOptions) => RedisClient)(o.url, settings) : new Redis({ host: o.host ?? '127.0.0.1', port: o.port ?? 6379, ...settings });
    client.on('error', (error: Error) => this.lose(error));
    await client.connect();
    return client;
  }

  /** Counts up `<prefix>instance` in Redis: ids 1 .. 255, wrapping. */
  async allocateInstanceId(): Promise<number> {
    const client = this.pub ?? (await this.client('once'));
    try {
      const n = await client.incr(`${this.prefix}instance`);
      return ((n - 1) % (INSTANCE_RANGE - 1)) + 1;
    } finally {
      if (client !== this.pub) client.disconnect();
    }
  }

  async open(host: AdapterHost): Promise<void> {
    this.host = host;
    this.closing = false;
    this.channels = [`${this.prefix}all`, `${this.prefix}o:${host.owner}`];
    const [pub, sub] = await Promise.all([this.client('pub'), this.client('sub')]);
    this.pub = pub;
    this.sub = sub;
    sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => host.receive(message));
    for (const client of [pub, sub]) {
      client.on('close', () => this.lose(new Error('connection to Redis lost')));
      client.on('ready', () => this.regain());
    }
    await sub.subscribe(...this.channels);
  }

  /** The first sign of an outage is reported; the rest of it is quiet. */
  private lose(error: Error): void {
    if (this.closing || this.host === null || this.down) return;
    this.down = true;
    const reported = new Error(`redis adapter: ${error.message}; delivering locally only until Redis is back`);
    this.host.error(reported);
    this.emit('down', reported);
  }

  /** After a reconnection: subscribe again, and say `up` once both connections work. */
  private regain(): void {
    const pub = this.pub;
    const sub = this.sub;
    if (!this.down || pub === null || sub === null || pub.status !== 'ready' || sub.status !== 'ready') return;
    sub.subscribe(...this.channels).then(
      () => {
        if (!this.down || pub.status !== 'ready' || sub.status !== 'ready') return;
        this.down = false;
        this.emit('up');
      },
      (error: Error) => this.lose(error),
    );
  }

  sendAll(message: Buffer): boolean {
    return this.publish(`${this.prefix}all`, message);
  }

  sendTo(owner: number, message: Buffer): boolean {
    return this.publish(`${this.prefix}o:${owner}`, message);
  }

  private publish(channel: string, message: Buffer): boolean {
    const pub = this.pub;
    if (pub === null || this.down || pub.status !== 'ready') {
      this.lost++;
      return false;
    }
    pub.publish(channel, message).catch(() => {
      this.lost++;
    });
    return true;
  }

  async close(): Promise<void> {
    this.closing = true;
    const clients = [this.pub, this.sub];
    this.pub = this.sub = null;
    this.host = null;
    this.down = false;
    await Promise.all(clients.map((c) => (c === null ? undefined : c.quit().catch(() => c.disconnect()))));
  }
}
