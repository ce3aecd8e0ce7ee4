/**
 * `RedisAdapter`: server instances joined through Redis pub/sub (with the
 * `ioredis` client, an optional peer dependency loaded only when an adapter
 * opens), on one Redis or on a Redis Cluster.
 *
 * Channels: `<prefix>all` (broadcasts), `<prefix>o:<owner>` (pushes and
 * questions for one process's fds) and, for publishes, either `<prefix>all`
 * (classic pub/sub) or, sharded, `<prefix>t:<topic>`: with `SSUBSCRIBE` /
 * `SPUBLISH` (Redis 7) a channel lives on the shard that owns its slot, so a
 * publish travels only to that shard, and each process subscribes to a
 * topic's channel only while it has local subscribers of the topic. Classic
 * pub/sub in a cluster copies every message to every node. Messages are the
 * binary `cluster/wire.ts` messages, published as they are.
 *
 * At-most-once: nothing is queued while Redis is unreachable (the offline
 * queue is off) and a command whose connection broke is never sent again,
 * so a message sent during an outage or a failover is lost for the other
 * instances and delivered only locally. Redis keeps each connection's
 * publishes in order, so messages from one process on one channel arrive in
 * publish order (sharded: per topic, per owner, broadcasts). The adapter
 * reports an outage once (`error` on the server, `down` here), reconnects by
 * itself, subscribes again, and says `up`.
 *
 * Presence: each process renews its entry in the sorted set
 * `<prefix>members` every `heartbeat` ms (see `PRESENCE_SCRIPT`); `members()`
 * reads the live ones, for `connectionsAsync` and `statsAsync`.
 */
import { EventEmitter } from 'node:events';
import type { Adapter, AdapterHost } from './adapter.js';
import { INSTANCE_RANGE } from './cluster/fd.js';
import { createLink, PRESENCE_SCRIPT, type LinkRole, type LinkSettings, type RedisLink } from './redis-clients.js';

/** Settings of a `RedisAdapter`. */
export interface RedisAdapterOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 6379. */
  port?: number;
  /** A `redis://` URL instead of host and port. */
  url?: string;
  /**
   * Nodes of a Redis Cluster to start from (ioredis `Cluster`), instead of
   * one Redis: `[{ host: '10.0.0.1', port: 7000 }, ...]`.
   */
  cluster?: { host: string; port: number }[];
  /**
   * Sharded pub/sub (`SSUBSCRIBE` / `SPUBLISH`, Redis 7): each topic on its
   * own channel, subscribed only by processes that have subscribers of it.
   * Default true with `cluster`, false with one Redis.
   */
  sharded?: boolean;
  /** Prefix of the channels and keys. Default `'wavecast:'`. */
  prefix?: string;
  /** Longest wait between reconnection attempts (ms). Default 1000. */
  maxRetryDelay?: number;
  /**
   * How often this process renews its presence entry (ms); an entry not
   * renewed for three times this long counts as gone. Default 2000.
   */
  heartbeat?: number;
  /** More `ioredis` options (password, tls, db...), passed as they are (to every node of a cluster). */
  redisOptions?: Record<string, unknown>;
  /** More ioredis `Cluster` options (natMap, slotsRefreshInterval...), passed as they are. */
  clusterOptions?: Record<string, unknown>;
}

/** Events of a `RedisAdapter` (the server also reports `down` as an `error`). */
export interface RedisAdapterEvents {
  /** Redis became unreachable: only local delivery until `up`. */
  down: [error: Error];
  /** Connected and subscribed again after `down`. */
  up: [];
}

/** Cluster node errors (a failover in progress) are reported at most this often (ms). */
const CLUSTER_REPORT_MS = 5000;

/**
 * An `Adapter` over Redis pub/sub: `new Server({ adapter: new RedisAdapter({ url }) })`,
 * or on a cluster `new RedisAdapter({ cluster: [{ host, port }] })`.
 * Give each server (each process, with workers) its own adapter object.
 */
export class RedisAdapter extends EventEmitter<RedisAdapterEvents> implements Adapter {
  private readonly prefix: string;
  private readonly settings: LinkSettings;
  private readonly heartbeat: number;
  private pub: RedisLink | null = null;
  private sub: RedisLink | null = null;
  private host: AdapterHost | null = null;
  private channels: string[] = [];
  /** Topics this process has subscribers of (their channels are subscribed when sharded). */
  private readonly topics = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private down = false;
  private closing = false;
  private reportedAt = -Infinity;
  /** Messages that did not reach Redis (unreachable, or in a cluster a node failing or a slot moving): lost for the other instances. */
  lost = 0;

  constructor(private readonly options: RedisAdapterOptions = {}) {
    super();
    this.prefix = options.prefix ?? 'wavecast:';
    this.heartbeat = options.heartbeat ?? 2000;
    if (!(this.heartbeat > 0)) throw new RangeError('heartbeat must be a positive number of milliseconds');
    if (options.cluster !== undefined && options.cluster.length === 0) throw new TypeError('cluster needs at least one node');
    this.settings = { ...options, sharded: options.sharded ?? options.cluster !== undefined };
  }

  /** Whether publishes go by topic on sharded channels. */
  get sharded(): boolean {
    return this.settings.sharded;
  }

  /** The channel a topic's publishes travel on when sharded. */
  topicChannel(topic: string): string {
    return `${this.prefix}t:${topic}`;
  }

  private async link(role: LinkRole): Promise<RedisLink> {
    const client = await createLink(role, this.settings);
    if (this.options.cluster === undefined) client.on('error', (error: Error) => this.lose(error));
    else for (const event of ['error', 'node error']) client.on(event, (error: Error) => this.nodeTrouble(error));
    await client.connect();
    return client;
  }

  /** Counts up `<prefix>instance` in Redis: ids 1 .. 255, wrapping. */
  async allocateInstanceId(): Promise<number> {
    const client = this.pub ?? (await this.link('once'));
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
    const [pub, sub] = await Promise.all([this.link('pub'), this.link('sub')]);
    this.pub = pub;
    this.sub = sub;
    const receive = (_channel: Buffer, message: Buffer): void => host.receive(message);
    sub.on(this.sharded ? 'smessageBuffer' : 'messageBuffer', receive);
    for (const client of [pub, sub]) {
      client.on('close', () => this.lose(new Error('connection to Redis lost')));
      client.on('ready', () => this.regain());
    }
    await this.subscribeAll(sub);
    await this.renew();
    this.timer = setInterval(() => void this.renew().catch(() => {}), this.heartbeat);
    this.timer.unref();
  }

  /** Subscribes to this process's channels and, sharded, its topics' (one command each: sharded channels of one command share a slot). */
  private async subscribeAll(sub: RedisLink): Promise<void> {
    if (!this.sharded) {
      await sub.subscribe(...this.channels);
      return;
    }
    const channels = [...this.channels, ...[...this.topics].map((topic) => this.topicChannel(topic))];
    await Promise.all(channels.map((channel) => sub.ssubscribe(channel)));
  }

  /** The first sign of an outage is reported; the rest of it is quiet. */
  private lose(error: Error): void {
    if (this.closing || this.host === null || this.down) return;
    this.down = true;
    const reported = new Error(`redis adapter: ${error.message}; delivering locally only until Redis is back`);
    this.host.error(reported);
    this.emit('down', reported);
  }

  /** A cluster node failed (the cluster client finds the new master itself): reported, at most every few seconds. */
  private nodeTrouble(error: Error): void {
    if (this.closing || this.host === null) return;
    const now = Date.now();
    if (now - this.reportedAt < CLUSTER_REPORT_MS) return;
    this.reportedAt = now;
    this.host.error(new Error(`redis adapter: cluster node error: ${error.message}; messages to its shard are lost until a replica takes over`));
  }

  /** After a reconnection: subscribe again, and say `up` once both connections work. */
  private regain(): void {
    const pub = this.pub;
    const sub = this.sub;
    if (!this.down || pub === null || sub === null || pub.status !== 'ready' || sub.status !== 'ready') return;
    // A cluster client subscribes again by itself; one Redis is told here.
    const again = this.options.cluster === undefined ? this.subscribeAll(sub) : Promise.resolve();
    again.then(
      () => {
        if (!this.down || pub.status !== 'ready' || sub.status !== 'ready') return;
        this.down = false;
        this.emit('up');
        void this.renew().catch(() => {});
      },
      (error: Error) => this.lose(error),
    );
  }

  /** Renews this process's presence entry. */
  private async renew(): Promise<void> {
    const pub = this.pub;
    const host = this.host;
    if (pub === null || host === null || pub.status !== 'ready') return;
    await pub.eval(PRESENCE_SCRIPT, 1, `${this.prefix}members`, String(host.owner), 3 * this.heartbeat);
  }

  /** The owner codes of every live process of every instance (this one's included). */
  async members(): Promise<number[]> {
    const pub = this.pub;
    if (pub === null || pub.status !== 'ready') throw new Error('redis adapter: not connected');
    const owners = (await pub.eval(PRESENCE_SCRIPT, 1, `${this.prefix}members`, '', 0)) as string[];
    return owners.map(Number);
  }

  topicChanged(topic: string, subscribed: boolean): void {
    if (subscribed) this.topics.add(topic);
    else this.topics.delete(topic);
    const sub = this.sub;
    if (!this.sharded || sub === null) return;
    const channel = this.topicChannel(topic);
    (subscribed ? sub.ssubscribe(channel) : sub.sunsubscribe(channel)).catch((error: Error) => {
      this.host?.error(new Error(`redis adapter: could not ${subscribed ? 'subscribe to' : 'unsubscribe from'} ${channel}: ${error.message}`));
    });
  }

  sendAll(message: Buffer): boolean {
    return this.publish(`${this.prefix}all`, message);
  }

  sendTo(owner: number, message: Buffer): boolean {
    return this.publish(`${this.prefix}o:${owner}`, message);
  }

  sendTopic(topic: string, message: Buffer): boolean {
    return this.publish(this.sharded ? this.topicChannel(topic) : `${this.prefix}all`, message);
  }

  private publish(channel: string, message: Buffer): boolean {
    const pub = this.pub;
    if (pub === null || this.down || pub.status !== 'ready') {
      this.lost++;
      return false;
    }
    (this.sharded ? pub.spublish(channel, message) : pub.publish(channel, message)).catch(() => {
      this.lost++;
      // In a cluster the slot may have moved (a failover, a resharding): nothing is retried, so look again.
      pub.refreshSlotsCache?.();
    });
    return true;
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    const pub = this.pub;
    const host = this.host;
    // Leaves the presence registry at once rather than when the entry expires.
    if (pub !== null && host !== null && pub.status === 'ready') await pub.zrem(`${this.prefix}members`, String(host.owner)).catch(() => {});
    const clients = [this.pub, this.sub];
    this.pub = this.sub = null;
    this.host = null;
    this.down = false;
    this.topics.clear();
    await Promise.all(clients.map((c) => (c === null ? undefined : c.quit().catch(() => c.disconnect()))));
  }
}
