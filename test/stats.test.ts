/**
 * `stats().transport` says what connections run on, also before `start()`
 * and after `stop()`: what they will run on, or 'none' where no connection
 * is ever served (the primary of workers).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { describe, test } from 'node:test';
import { backend, Server, type ServerOptions } from '../src/index.js';

/** What a default listening server runs on in this process: the native transport unless it is switched off or missing. */
const expected =
  backend === 'native' && process.platform === 'linux' && process.env.WAVECAST_NO_NATIVE_TRANSPORT === undefined ? 'native' : 'node';

function made(options: ServerOptions): Server {
  const server = new Server(options);
  server.on('message', () => {});
  return server;
}

describe('stats().transport', () => {
  test(`before start() a listening server says what it will listen on ('${expected}' here), the same as once started and after stop()`, async () => {
    const server = made({ host: '127.0.0.1', port: 0 });
    assert.equal(server.stats().transport, expected);
    await server.start();
    try {
      assert.equal(server.stats().transport, expected);
    } finally {
      await server.stop();
    }
    assert.equal(server.stats().transport, expected);
  });

  test("before start() nativeTransport: false, tls, an attached server and noServer say 'node'", () => {
    assert.equal(made({ nativeTransport: false }).stats().transport, 'node');
    assert.equal(made({ tls: { key: 'k', cert: 'c' } }).stats().transport, 'node');
    assert.equal(made({ server: http.createServer() }).stats().transport, 'node');
    assert.equal(made({ noServer: true }).stats().transport, 'node');
  });

  test("the primary of workers says 'none': it never serves a connection", () => {
    assert.equal(made({ workerNum: 2 }).stats().transport, 'none');
  });
});
