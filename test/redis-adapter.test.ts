/**
 * RedisAdapter: two server instances on two ports joined through a private
 * redis-server (Debian's package) on a free loopback port, `ws` clients on
 * each; Redis killed and started again in the middle of a test.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RedisAdapter, type Server } from '../src/index.js';
import { App, freePort, spread, startRedis } from './cluster-helpers.js';
import { REDIS_SERVER, skipWithout } from './programs.js';
import { Instance, Listener } from './redis-cluster-helpers.js';
import { startServer, waitFor } from './helpers.js';

describe('RedisAdapter', { skip: skipWithout(REDIS_SERVER) }, () => {
  let redisPort: number;
  let redis: Awaited<ReturnType<typeof startRedis>>;
  before(async () => {
    redisPort = await freePort();
    redis = await startRedis(redisPort);
  });
  after(async () => {
    await redis.stop();
  });

  async function pair(): Promise<{ a: Server; b: Server; adapters: RedisAdapter[] }> {
    const adapters = [new RedisAdapter({ port: redisPort }), new RedisAdapter({ port: redisPort })];
    const a = await startServer({ adapter: adapters[0] });
    const b = await startServer({ adapter: adapters[1] });
    return { a, b, adapters };
  }

  test('bridges two instances on two ports: broadcast, publish and push(fd) reach the other instance once, in order', async () => {
    const { a, b } = await pair();
    const { client: ca, fd: fa } = await Listener.open(a);
    const { client: cb, fd: fb } = await Listener.open(b);
    try {
      assert.notEqual(a.port, b.port);
      // fds carry their instance: distinct owners, far above a lone server's 1, 2, 3.
      assert.ok(fa > 2 ** 32 && fb > 2 ** 32);
      assert.notEqual(Math.floor(fa / 2 ** 45), Math.floor(fb / 2 ** 45));

      for (let i = 0; i < 20; i++) a.broadcast(`b${i}`);
      assert.equal(a.push(fb, 'fence-1'), true);
      await cb.until('fence-1');
      await ca.until('b19');
      const burst = Array.from({ length: 20 }, (_, i) => `b${i}`);
      assert.deepEqual(cb.texts, [...burst, 'fence-1']);
      assert.deepEqual(ca.texts, burst);

      assert.equal(b.push(fa, 'from b'), true);
      assert.equal(await b.pushAsync(fa, 'from b, answered'), true);
      await ca.until('from b, answered');
      assert.deepEqual(ca.texts.slice(20), ['from b', 'from b, answered']);
      assert.equal(await b.existAsync(fa), true);
      assert.equal(await b.isEstablishedAsync(fa), true);
      assert.equal((await b.getClientInfoAsync(fa))?.fd, fa);
      assert.equal(await b.existAsync(fa + 1000), false);

      // A filter cannot run in another process: it needs local: true, and then stays local.
      assert.throws(() => a.broadcast('x', { filter: () => true }), TypeError);
      assert.equal(a.broadcast('local only', { filter: (fd) => fd === fa, local: true }), 1);
      await ca.until('local only');

      assert.equal(b.subscribe(fb, 'room'), true);
      a.publish('room', 'to the room');
      a.push(fb, 'fence-2');
      await cb.until('fence-2');
      assert.deepEqual(cb.texts.slice(21), ['to the room', 'fence-2']);
      assert.ok(!ca.texts.includes('to the room'));
    } finally {
      ca.close();
      cb.close();
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  test('joins instances of two workers each: a broadcast reaches every client of both once, push(fd) crosses', async () => {
    const apps = await Promise.all([App.start({ REDIS_PORT: String(redisPort) }), App.start({ REDIS_PORT: String(redisPort) })]);
    const clients = await Promise.all(apps.map((app) => spread(app.port, 2)));
    try {
      const all = clients.flat(2);
      const sender = clients[0][1][0];
      const starts = all.map((c) => c.texts().length);
      await sender.request({ op: 'broadcast', data: 'x', count: 10 });
      await sender.request({ op: 'broadcast', data: 'fence' });
      for (const [i, c] of all.entries()) {
        await c.waitMessage((m) => m.text === 'fence0');
        assert.deepEqual(c.texts().slice(starts[i]), [...Array.from({ length: 10 }, (_, k) => `x${k}`), 'fence0'], `fd ${c.fd}`);
      }
      const target = clients[1][0][0];
      assert.equal((await sender.request({ op: 'pushAsync', fd: target.fd, data: 'across' })).ok, true);
      await target.waitMessage((m) => m.text === 'across');
    } finally {
      for (const c of clients.flat(2)) c.close();
      await Promise.all(apps.map((app) => app.stop()));
    }
  });

  test('connectionsAsync and statsAsync include every instance; one SIGKILLed is named as missing within the timeout', async () => {
    const { a, b } = await pair();
    const c = await Instance.start({ port: redisPort });
    const { client: ca, fd: fa } = await Listener.open(a);
    const { client: cb, fd: fb } = await Listener.open(b);
    const { client: cc, fd: fc } = await Listener.connect(c.port);
    try {
      const whole = await b.connectionsAsync();
      assert.deepEqual([...whole].sort(), [fa, fb, fc].sort());
      assert.equal(whole.partial, false);
      assert.deepEqual(whole.missing, []);
      const stats = await a.statsAsync();
      assert.equal(stats.connections, 3);
      assert.equal(stats.accepted, 3);
      assert.equal(stats.partial, false);

      await c.kill();
      const started = Date.now();
      const rest = await b.connectionsAsync({ timeout: 800 });
      const took = Date.now() - started;
      assert.ok(took >= 700 && took < 2000, `answered in ${took} ms`);
      assert.deepEqual([...rest].sort(), [fa, fb].sort());
      assert.equal(rest.partial, true);
      assert.deepEqual(rest.missing, [Math.floor(fc / 2 ** 45)]);
      const partialStats = await a.statsAsync({ timeout: 300 });
      assert.equal(partialStats.connections, 2);
      assert.deepEqual([partialStats.partial, partialStats.missing], [true, [Math.floor(fc / 2 ** 45)]]);

      // An instance that stops cleanly leaves the registry at once: it is not waited for, nor named.
      await b.stop();
      const alone = await a.connectionsAsync({ timeout: 300 });
      assert.deepEqual([[...alone], alone.missing], [[fa], [Math.floor(fc / 2 ** 45)]]);
    } finally {
      ca.close();
      cb.close();
      cc.close();
      await c.kill();
      await Promise.all([a.stop(), b.stop()]);
    }
  });

  test('when Redis goes away, local delivery goes on and error says so; after it is back, delivery resumes', async () => {
    const { a, b, adapters } = await pair();
    const { client: ca, fd: fa } = await Listener.open(a);
    const { client: cb } = await Listener.open(b);
    try {
      a.broadcast('before');
      await cb.until('before');

      const errorOnA = waitFor<[Error]>(a, 'error', 5000);
      const down = adapters.map((adapter) => waitFor(adapter, 'down', 5000));
      await redis.stop();
      const [error] = await errorOnA;
      assert.match(error.message, /redis adapter: .*delivering locally only/);
      await Promise.all(down);
      // Nothing is queued for later: another instance's fd cannot be reached now, and says so.
      assert.equal(b.push(fa, 'lost'), false);
      await assert.rejects(b.existAsync(fa), /the adapter is down/);

      assert.equal(a.broadcast('during the outage'), 1);
      await ca.until('during the outage');

      const up = adapters.map((adapter) => waitFor(adapter, 'up', 10_000));
      redis = await startRedis(redisPort);
      await Promise.all(up);

      a.broadcast('after');
      await cb.until('after');
      assert.deepEqual(cb.texts, ['before', 'after']);
      assert.deepEqual(ca.texts, ['before', 'during the outage', 'after']);
    } finally {
      ca.close();
      cb.close();
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});
