/**
 * The heartbeat is on by default, as in uWS.js and Bun: a quiet connection
 * is pinged, and one that answers none of two pings (a half-open
 * connection, a vanished peer) is closed; healthy idle clients stay.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { OPCODE, Server, type ServerOptions } from '../src/index.js';
import { clock } from '../src/heartbeat.js';
import { coreOf } from '../src/server-core.js';
import { closeEvent, lastFd, RawClient, startServer, waitFor } from './helpers.js';

function heartbeatOf(options: ServerOptions): { interval: number; idleTime: number; pingInterval: number } {
  return coreOf(new Server(options)).settings.heartbeat;
}

describe('heartbeat defaults', () => {
  test('without options, quiet connections are pinged after 30 s and closed after 90 s (2 unanswered pings), swept every 10 s', () => {
    assert.deepEqual(heartbeatOf({}), { interval: 10_000, idleTime: 90_000, pingInterval: 30_000 });
  });

  test('one of the times given, the others follow from it; Swoole\'s check interval alone keeps Swoole\'s idle time', () => {
    assert.deepEqual(heartbeatOf({ pingInterval: 1000 }), { interval: 333, idleTime: 3000, pingInterval: 1000 });
    assert.deepEqual(heartbeatOf({ heartbeatIdleTime: 60_000 }), { interval: 6666, idleTime: 60_000, pingInterval: 20_000 });
    assert.deepEqual(heartbeatOf({ heartbeatCheckInterval: 60_000 }), { interval: 60_000, idleTime: 120_000, pingInterval: 40_000 });
    assert.deepEqual(heartbeatOf({ heartbeatIdleTime: 300, pingInterval: 0 }), { interval: 100, idleTime: 300, pingInterval: 0 });
  });

  test('heartbeatIdleTime: 0, pingInterval: 0 or heartbeatCheckInterval: 0 turns it off', () => {
    const off = { interval: 0, idleTime: 0, pingInterval: 0 };
    assert.deepEqual(heartbeatOf({ heartbeatIdleTime: 0 }), off);
    assert.deepEqual(heartbeatOf({ pingInterval: 0 }), off);
    assert.deepEqual(heartbeatOf({ heartbeatCheckInterval: 0 }), off);
  });
});

describe('heartbeat clock', () => {
  test('reads the time once per synchronous stretch of JS (a batch stamps its connections alike), anew after its microtasks', async () => {
    const first = clock();
    for (const end = Date.now() + 5; Date.now() <= end; );
    assert.equal(clock(), first, 'one reading for the stretch');
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(clock() >= first + 5, 'a later stretch reads the time again');
  });
});

describe('heartbeat at work (times scaled down)', () => {
  test('a client that answers no ping is closed with 1001 after two unanswered pings; a ws client that answers stays', async () => {
    // Only pingInterval given: the idle time is 3 x 300 ms, as the defaults are 3 x 30 s.
    const server = await startServer({ pingInterval: 300 });
    try {
      const silent = await RawClient.open(server.port);
      const silentFd = lastFd(server);
      const closed = closeEvent(server, silentFd, 5000);
      const started = Date.now();
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}`);
      await waitFor(ws, 'open');
      const healthyFd = lastFd(server);
      const [code, reason, wasClean] = await closed;
      assert.ok(Date.now() - started >= 880, `closed after ${Date.now() - started} ms, before the idle time`);
      assert.deepEqual([code, reason, wasClean], [1001, 'idle timeout', false]);
      assert.equal((await silent.closeFrame()).code, 1001);
      const frames = silent.frames();
      const close = frames.findIndex((f) => f.opcode === OPCODE.CLOSE);
      assert.equal(frames.slice(0, close).filter((f) => f.opcode === OPCODE.PING).length, 2, 'two pings went unanswered');
      // The healthy client answers its pings: it outlives the idle time.
      for (let i = 0; i < 4; i++) await waitFor(server, 'pong', 2000, (fd) => fd === healthyFd);
      assert.equal(server.isEstablished(healthyFd), true);
      ws.close();
      silent.destroy();
    } finally {
      await server.stop({ timeout: 100 });
    }
  });
});
