/**
 * The Redis connections of a `RedisAdapter`: `ioredis` loaded on first use
 * (an optional peer dependency), one Redis or a Redis Cluster behind one
 * small interface, with the settings that keep delivery at-most-once, and
 * the presence registry's script.
 */
import type { EventEmitter } from 'node:events';
import type { ClusterNode, ClusterOptions, RedisOptions } from 'ioredis';

/** What the adapter uses of an ioredis `Redis` or `Cluster`. */
export interface RedisLink extends EventEmitter {
  readonly status: string;
  connect(): Promise<void>;
  quit(): Promise<unknown>;
  disconnect(): void;
  incr(key: string): Promise<number>;
  publish(channel: string, message: Buffer): Promise<number>;
  spublish(channel: string, message: Buffer): Promise<number>;
  subscribe(...channels: string[]): Promise<unknown>;
  ssubscribe(...channels: string[]): Promise<unknown>;
  sunsubscribe(...channels: string[]): Promise<unknown>;
  zrem(key: string, member: string): Promise<number>;
  eval(script: string, keys: number, ...args: (string | number)[]): Promise<unknown>;
  /** A cluster's: reads which node serves which slots again. */
  refreshSlotsCache?(): void;
}

/** `pub` sends, `sub` receives, `once` asks one thing before the adapter opens. */
export type LinkRole = 'pub' | 'sub' | 'once';

/** Where and how to connect (the adapter's options, as they matter here). */
export interface LinkSettings {
  host?: string;
  port?: number;
  url?: string;
  cluster?: ClusterNode[];
  sharded: boolean;
  maxRetryDelay?: number;
  redisOptions?: Record<string, unknown>;
  clusterOptions?: Record<string, unknown>;
}

interface IoRedis {
  Redis: new (...args: unknown[]) => RedisLink;
  Cluster: new (nodes: ClusterNode[], options: ClusterOptions) => RedisLink;
}

async function loadIoRedis(): Promise<IoRedis> {
  try {
    const mod = (await import('ioredis')) as unknown as Partial<IoRedis> & { default: IoRedis['Redis'] & { Cluster?: IoRedis['Cluster'] } };
    return { Redis: mod.Redis ?? mod.default, Cluster: (mod.Cluster ?? mod.default.Cluster)! };
  } catch (error) {
    throw new Error(`RedisAdapter needs the ioredis package: npm install ioredis (${(error as Error).message})`);
  }
}

/** A connection (to one Redis, or to the cluster), not yet connected: call `connect()`. */
export async function createLink(role: LinkRole, settings: LinkSettings): Promise<RedisLink> {
  const { Redis, Cluster } = await loadIoRedis();
  const maxDelay = settings.maxRetryDelay ?? 1000;
  const retry = role === 'once' ? () => null : (times: number) => Math.min(50 * 2 ** times, maxDelay);
  const common: RedisOptions = {
    ...(settings.redisOptions as RedisOptions | undefined),
    // At-most-once: a command whose connection broke is never sent again (it may have been carried out).
    autoResendUnfulfilledCommands: false,
    autoResubscribe: false,
    connectionName: `wavecast-${role}`,
  };
  if (settings.cluster !== undefined) {
    return new Cluster(settings.cluster, {
      ...(settings.clusterOptions as ClusterOptions | undefined),
      lazyConnect: true,
      // The subscriber keeps its subscriptions across failovers itself (ioredis resubscribes on the new master).
      redisOptions: { ...common, autoResubscribe: role === 'sub' },
      // Commands wait for a node's connection to open (the adapter itself sends nothing while the cluster is down).
      enableOfflineQueue: true,
      shardedSubscribers: role === 'sub' && settings.sharded,
      clusterRetryStrategy: retry,
      // A publish whose node went away is lost, not retried on the new master (it may have gone out). Nor is
      // one answered MOVED, CLUSTERDOWN or TRYAGAIN sent again: a retry, late, would overtake later publishes.
      retryDelayOnFailover: 0,
      maxRedirections: role === 'pub' ? 0 : 16,
    });
  }
  const options: RedisOptions = {
    ...common,
    lazyConnect: true,
    // At-most-once: fail at once while disconnected instead of queueing for later.
    enableOfflineQueue: role === 'sub',
    maxRetriesPerRequest: role === 'once' ? 1 : null,
    retryStrategy: retry,
  };
  return settings.url !== undefined ? new Redis(settings.url, options) : new Redis({ host: settings.host ?? '127.0.0.1', port: settings.port ?? 6379, ...options });
}

/**
 * The presence registry: one sorted set, owner code -> the Redis time (ms)
 * until which that process counts as alive. Run with the owner and a time
 * to live, it renews that entry; with an empty owner it only reads. Either
 * way it drops expired entries and returns the live owners. Redis's own
 * clock decides, so the machines' clocks need not agree.
 */
export const PRESENCE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[1] ~= '' then
  local ttl = tonumber(ARGV[2])
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
`;
