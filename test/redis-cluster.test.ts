/**
 * RedisAdapter on a real Redis Cluster (3 masters, 3 replicas, started by
 * the test on free loopback ports) with sharded pub/sub: delivery across
 * instances, publishes that travel only to the shard that owns their
 * topic, presence across instances with one of them SIGKILLed, and a
 * master SIGKILLed in the middle of sequence-numbered publishes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RedisAdapter, type Server } from '../src/index.js';
import { REDIS_CLI, REDIS_SERVER, skipWithout } from './programs.js';
import { cli, Instance, Listener, RedisCluster, until } from './redis-cluster-helpers.js';
import { startServer } from './helpers.js';

/** The instance id an fd carries (see src/cluster/fd.ts). */
const instanceOfFd = (fd: number): number => Math.floor(fd / 2 ** 45);

/** How many `SPUBLISH` commands the node on `port` has carried out. */
async function spublishCalls(port: number): Promise<number> {
  const match = /cmdstat_spublish:calls=(\d+)/.exec(await cli(port, 'info', 'commandstats'));
  return match === null ? 0 : Number(match[1]);
}

/** How many connections have subscribed `channel` (sharded) on the node on `port`. */
async function shardSubscribers(port: number, channel: string): Promise<number> {
  const lines = (await cli(port, 'pubsub', 'shardnumsub', channel)).trim().split('\n');
  return Number(lines[lines.length - 1]);
}

describe('RedisAdapter on a Redis Cluster with sharded pub/sub', { skip: skipWithout(REDIS_SERVER) || skipWithout(REDIS_CLI) }, () => {
  let cluster: RedisCluster;
  let seed: { host: string; port: number }[];
  const servers: Server[] = [];
  const listeners: Listener[] = [];
  before(async () => {
    cluster = await RedisCluster.start();
    seed = [{ host: '127.0.0.1', port: cluster.ports[0] }];
  });
  after(async () => {
    await cluster?.stop();
  });

  /** `n` servers joined through the cluster, with their adapters; each test uses its own channel prefix. */
  async function instances(n: number, prefix: string): Promise<{ servers: Server[]; adapters: RedisAdapter[] }> {
    const adapters = Array.from({ length: n }, () => new RedisAdapter({ cluster: seed, prefix }));
    const started = await Promise.all(adapters.map((adapter) => startServer({ adapter })));
    servers.push(...started);
    return { servers: started, adapters };
  }

  async function open(server: Server): Promise<{ client: Listener; fd: number }> {
    const opened = await Listener.open(server);
    listeners.push(opened.client);
    return opened;
  }

  async function cleanUp(): Promise<void> {
    for (const client of listeners.splice(0)) client.close();
    await Promise.all(servers.splice(0).map((server) => server.stop()));
  }

  test('broadcast, publish and push(fd) cross two instances; a topic channel is subscribed only while it has local subscribers', async () => {
    try {
      const {
        servers: [a, b],
        adapters,
      } = await instances(2, 'wc1:');
      assert.equal(adapters[0].sharded, true);
      const { client: ca, fd: fa } = await open(a);
      const { client: cb, fd: fb } = await open(b);

      a.broadcast('hello all');
      await cb.until('hello all');
      await ca.until('hello all');

      const channel = adapters[1].topicChannel('room');
      const owner = await cluster.masterOf(channel);
      assert.equal(await shardSubscribers(owner, channel), 0);
      assert.equal(b.subscribe(fb, 'room'), true);
      // Only b has a subscriber of the topic: one subscription on the shard, not two.
      await until(async () => (await shardSubscribers(owner, channel)) === 1, 5000, 'b to subscribe the topic channel');
      a.publish('room', 'to the room');
      await cb.until('to the room');

      assert.equal(a.push(fb, 'push to b'), true);
      await cb.until('push to b');
      assert.equal(await b.pushAsync(fa, 'push to a, answered'), true);
      await ca.until('push to a, answered');
      assert.equal(await b.existAsync(fa), true);
      assert.equal((await a.getClientInfoAsync(fb))?.fd, fb);
      assert.ok(!ca.texts.includes('to the room'));
      assert.deepEqual(cb.texts, ['hello all', 'to the room', 'push to b']);

      // The last local subscriber leaves: the instance unsubscribes from the channel.
      assert.equal(b.unsubscribe(fb, 'room'), true);
      await until(async () => (await shardSubscribers(owner, channel)) === 0, 5000, 'b to unsubscribe the topic channel');
    } finally {
      await cleanUp();
    }
  });

  test('a publish travels only to the master that owns its topic channel', async () => {
    try {
      const {
        servers: [a, b],
        adapters,
      } = await instances(2, 'wc2:');
      const { client: cb, fd: fb } = await open(b);
      const masters = await cluster.masters();
      assert.equal(masters.length, 3);
      const channel = adapters[0].topicChannel('news');
      const owner = await cluster.masterOf(channel);
      b.subscribe(fb, 'news');
      await until(async () => (await shardSubscribers(owner, channel)) === 1, 5000, 'b to subscribe the topic channel');

      const before = await Promise.all(masters.map(spublishCalls));
      for (let i = 0; i < 30; i++) a.publish('news', `n${i}`);
      await cb.until('n29');
      const afterwards = await Promise.all(masters.map(spublishCalls));
      assert.deepEqual(cb.texts, Array.from({ length: 30 }, (_, i) => `n${i}`));
      for (const [i, port] of masters.entries()) {
        assert.equal(afterwards[i] - before[i], port === owner ? 30 : 0, `SPUBLISH calls on master ${port} (owner ${owner})`);
        if (port !== owner) assert.equal(await shardSubscribers(port, channel), 0);
      }
    } finally {
      await cleanUp();
    }
  });

  test('connectionsAsync and statsAsync include every instance; one SIGKILLed is named as missing within the timeout', async () => {
    let c: Instance | null = null;
    try {
      const {
        servers: [a, b],
      } = await instances(2, 'wc3:');
      c = await Instance.start({ cluster: seed, prefix: 'wc3:' });
      const { fd: fa } = await open(a);
      const { fd: fb } = await open(b);
      const { client: cc, fd: fc } = await Listener.connect(c.port);
      listeners.push(cc);

      const whole = await a.connectionsAsync();
      assert.deepEqual([...whole].sort(), [fa, fb, fc].sort());
      assert.equal(whole.partial, false);
      assert.deepEqual(whole.missing, []);
      const stats = await b.statsAsync();
      assert.equal(stats.connections, 3);
      assert.equal(stats.partial, false);

      await c.kill();
      const started = Date.now();
      const rest = await a.connectionsAsync({ timeout: 1000 });
      const took = Date.now() - started;
      assert.ok(took >= 900 && took < 2500, `answered in ${took} ms`);
      assert.deepEqual([...rest].sort(), [fa, fb].sort());
      assert.equal(rest.partial, true);
      assert.deepEqual(rest.missing, [instanceOfFd(fc)]);
      const partialStats = await b.statsAsync({ timeout: 500 });
      assert.equal(partialStats.connections, 2);
      assert.equal(partialStats.partial, true);
      assert.deepEqual(partialStats.missing, [instanceOfFd(fc)]);
    } finally {
      await c?.kill();
      await cleanUp();
    }
  });

  test('a master SIGKILLed: its replica takes over and delivery resumes, at most once and in order per publisher', async () => {
    try {
      const {
        servers: [a, b, c],
        adapters,
      } = await instances(3, 'wc4:');
      const { client: cc, fd: fc } = await open(c);
      const channel = adapters[2].topicChannel('seq');
      const owner = await cluster.masterOf(channel);
      c.subscribe(fc, 'seq');
      await until(async () => (await shardSubscribers(owner, channel)) === 1, 5000, 'c to subscribe the topic channel');

      const next = { a: 0, b: 0 };
      const send = (): void => {
        a.publish('seq', `a:${next.a++}`);
        b.publish('seq', `b:${next.b++}`);
      };
      for (let i = 0; i < 20; i++) send();
      await cc.until('a:19');
      await cc.until('b:19');

      const errors: string[] = [];
      for (const server of [a, b]) server.on('error', (error) => errors.push(error.message));
      await cluster.kill(owner);
      const killedAt = { a: next.a, b: next.b };
      // Three publishes each every 20 ms until both publishers are heard again (bounded: 25 s, 1250 rounds).
      const resumed = (who: 'a' | 'b'): boolean => cc.texts.some((t) => t.startsWith(`${who}:`) && Number(t.slice(2)) >= killedAt[who]);
      const deadline = Date.now() + 25_000;
      for (let round = 0; round < 1250 && !(resumed('a') && resumed('b')); round++) {
        assert.ok(Date.now() < deadline, `delivery did not resume within 25 s; got ${cc.texts.slice(-5).join(', ')}`);
        for (let k = 0; k < 3; k++) send();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.ok(resumed('a') && resumed('b'), 'delivery resumed');
      const promoted = await cluster.masterOf(channel);
      assert.notEqual(promoted, owner, 'a replica serves the slot now');
      assert.equal(await shardSubscribers(promoted, channel), 1, 'c subscribed again on the new master');
      assert.ok(errors.some((m) => /redis adapter: cluster node error/.test(m)), `the publishers' error events: ${errors.join('; ')}`);
      assert.ok(adapters[0].lost > 0 && adapters[1].lost > 0, 'publishes during the failover are lost, and counted');
      for (let i = 0; i < 10; i++) send();
      await cc.until(`a:${next.a - 1}`);
      await cc.until(`b:${next.b - 1}`);

      for (const who of ['a', 'b'] as const) {
        const seqs = cc.texts.filter((t) => t.startsWith(`${who}:`)).map((t) => Number(t.slice(2)));
        // Everything sent before the kill arrived; after it, some may be lost, none twice, none out of order.
        assert.deepEqual(seqs.slice(0, 20), Array.from({ length: 20 }, (_, i) => i));
        for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `${who}: ${seqs[i - 1]} then ${seqs[i]}`);
      }
    } finally {
      await cleanUp();
    }
  });
});
