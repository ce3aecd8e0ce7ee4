/**
 * Mistakes a new user makes in JavaScript, where no compiler catches them,
 * are loud: typed errors at once that say what was wrong, a warning for a
 * handshake hook that throws, Node's own EADDRINUSE, and an answer for an
 * upgrade that no Server on a shared http.Server claims.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { describe, test } from 'node:test';
import express from 'express';
import Fastify from 'fastify';
import WebSocket from 'ws';
import { Server, type ServerOptions } from '../src/index.js';
import { RawClient, startServer, upgradeRequest, waitFor } from './helpers.js';

/** Options as plain JavaScript would pass them, unchecked by the compiler. */
function js(options: Record<string, unknown>): ServerOptions {
  return options as ServerOptions;
}

function listening(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}

/** Sends an upgrade for `path` and resolves with everything the server wrote until it closed the connection. */
async function upgradeAnswer(port: number, path: string): Promise<string> {
  const client = await RawClient.connect(port);
  client.send(upgradeRequest(path));
  await client.serverEnded();
  client.destroy();
  return client.response + client.body.toString('latin1');
}

describe('options', () => {
  test('an unknown option is a TypeError that names the closest known one', () => {
    assert.throws(() => new Server(js({ maxPayLoad: 1024 })), { name: 'TypeError', message: "unknown option 'maxPayLoad': did you mean maxPayload?" });
    assert.throws(() => new Server(js({ heartbeatInterval: 1000 })), { name: 'TypeError', message: /did you mean heartbeatCheckInterval\?/ });
    assert.throws(() => new Server(js({ prot: 80 })), { name: 'TypeError', message: /did you mean port\?/ });
    assert.throws(() => new Server(js({ colour: 'blue' })), { name: 'TypeError', message: /unknown option 'colour' \(known options: host, port, / });
  });

  test("a path without a leading '/' is a TypeError", () => {
    assert.throws(() => new Server({ noServer: true, path: 'ws' }), { name: 'TypeError', message: /path must be a string that starts with '\/', got the string 'ws'/ });
    assert.throws(() => new Server(js({ noServer: true, path: 42 })), TypeError);
    assert.doesNotThrow(() => new Server({ noServer: true, path: '/ws' }));
  });

  test('tls without key and cert (or pfx) is a TypeError', () => {
    assert.throws(() => new Server({ tls: {} }), { name: 'TypeError', message: /tls needs a certificate: key and cert/ });
    assert.throws(() => new Server({ tls: { key: 'k' } }), TypeError);
    assert.throws(() => new Server({ tls: { cert: 'c' } }), TypeError);
    assert.throws(() => new Server(js({ tls: true })), { name: 'TypeError', message: /tls must be an object/ });
    assert.doesNotThrow(() => new Server({ tls: { key: 'k', cert: 'c' } }));
    assert.doesNotThrow(() => new Server({ tls: { pfx: Buffer.alloc(1) } }));
  });

  test('noServer with port, host or tls is a TypeError', () => {
    assert.throws(() => new Server({ noServer: true, port: 9501 }), { name: 'TypeError', message: /noServer takes no port/ });
    assert.throws(() => new Server({ noServer: true, host: '127.0.0.1' }), { name: 'TypeError', message: /noServer takes no host/ });
    assert.throws(() => new Server({ noServer: true, tls: { key: 'k', cert: 'c' } }), { name: 'TypeError', message: /noServer takes no tls/ });
  });

  test('a server that is not an http.Server or https.Server is a TypeError; an Express app is told to pass what app.listen() returns', async () => {
    const app = express();
    assert.throws(() => new Server(js({ server: app })), { name: 'TypeError', message: /Express app: pass what app\.listen\(\) returns/ });
    const fastify = Fastify();
    assert.throws(() => new Server(js({ server: fastify })), { name: 'TypeError', message: /in \.server \(Fastify\?\): pass that one/ });
    assert.throws(() => new Server(js({ server: net.createServer() })), { name: 'TypeError', message: /got an object \(Server\)/ });
    assert.throws(() => new Server(js({ server: {} })), TypeError);
    assert.doesNotThrow(() => new Server({ server: http.createServer(app) }));
    assert.doesNotThrow(() => new Server({ server: https.createServer() }));
    assert.doesNotThrow(() => new Server({ server: fastify.server }));
    await fastify.close();
  });

  test("port: '0' says it got a string", () => {
    assert.throws(() => new Server(js({ port: '0' })), { name: 'TypeError', message: "port must be a number, got the string '0'" });
    assert.throws(() => new Server({ port: 1.5 }), RangeError);
  });

  test('tcpDeferAccept takes a non-negative number of milliseconds', () => {
    for (const bad of [-1, Infinity, NaN, '1000']) {
      assert.throws(() => new Server(js({ tcpDeferAccept: bad })), { name: 'RangeError', message: /^tcpDeferAccept must be a non-negative number of milliseconds/ });
    }
    for (const good of [0, 1, 1000, 2500]) assert.doesNotThrow(() => new Server({ tcpDeferAccept: good }));
  });
});

describe('handshake hook failures', () => {
  test('a handshake hook that throws, without an error listener, is reported once with process.emitWarning; every such client gets 500', async () => {
    const server = await startServer({}, (s) => {
      s.on('handshake', () => {
        throw new Error('hook bug');
      });
    });
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => {
      if ((warning as Error & { code?: string }).code === 'WAVECAST_HANDSHAKE_FAILED') warnings.push(warning);
    };
    process.on('warning', onWarning);
    try {
      for (let i = 0; i < 3; i++) assert.match(await upgradeAnswer(server.port, '/'), /^HTTP\/1\.1 500 /);
      // A warning is emitted on the next tick: one more turn of answers is past it.
      await upgradeAnswer(server.port, '/');
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0].name, 'WavecastWarning');
      assert.match(warnings[0].message, /a handshake failed with an exception, so the client got 500: hook bug/);
    } finally {
      process.removeListener('warning', onWarning);
      await server.stop();
    }
  });

  test('with an error listener, a throwing hook goes to it and no warning is given', async () => {
    const errors: Error[] = [];
    const server = await startServer({}, (s) => {
      s.on('handshake', async () => {
        throw new Error('async hook bug');
      });
      s.on('error', (error) => errors.push(error));
    });
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => {
      if ((warning as Error & { code?: string }).code === 'WAVECAST_HANDSHAKE_FAILED') warnings.push(warning);
    };
    process.on('warning', onWarning);
    try {
      assert.match(await upgradeAnswer(server.port, '/'), /^HTTP\/1\.1 500 /);
      await upgradeAnswer(server.port, '/');
      assert.deepEqual(errors.map((e) => e.message), ['async hook bug', 'async hook bug']);
      assert.equal(warnings.length, 0);
    } finally {
      process.removeListener('warning', onWarning);
      await server.stop();
    }
  });
});

describe('publish', () => {
  test('publish throws for bad data, opcode or compress even when the topic has no subscribers', async () => {
    const server = await startServer({ maxPayload: 16 });
    try {
      assert.equal(server.subscriberCount('nobody'), 0);
      assert.throws(() => server.publish('nobody', 42 as unknown as string), TypeError);
      assert.throws(() => server.publish('nobody', { text: 'hi' } as unknown as string), TypeError);
      assert.throws(() => server.publish('nobody', 'hi', { opcode: 9 }), TypeError);
      assert.throws(() => server.publish('nobody', 'hi', { compress: 'yes' as unknown as boolean }), TypeError);
      assert.throws(() => server.publish('nobody', 'x'.repeat(17)), RangeError);
      assert.throws(() => server.publish('nobody', '€'.repeat(6)), RangeError, '18 UTF-8 bytes in 6 UTF-16 units');
      assert.equal(server.publish('nobody', 'hi'), 0);
    } finally {
      await server.stop();
    }
  });
});

describe('listen errors', () => {
  test("EADDRINUSE carries address, port and the message Node's net gives", async () => {
    const first = await startServer();
    try {
      const port = first.port;
      const nodeError = await new Promise<NodeJS.ErrnoException>((resolve) => {
        const probe = net.createServer();
        probe.once('error', resolve);
        probe.listen(port, '127.0.0.1');
      });
      const second = new Server({ host: '127.0.0.1', port });
      second.on('message', () => {});
      const error = (await second.start().then(
        () => assert.fail('start() should have failed'),
        (e: unknown) => e,
      )) as NodeJS.ErrnoException & { address: string; port: number };
      assert.equal(error.message, nodeError.message);
      assert.equal(error.message, `listen EADDRINUSE: address already in use 127.0.0.1:${port}`);
      assert.deepEqual(
        { code: error.code, syscall: error.syscall, address: error.address, port: error.port },
        { code: 'EADDRINUSE', syscall: 'listen', address: '127.0.0.1', port },
      );
      assert.equal(second.port, 0);
    } finally {
      await first.stop();
    }
  });
});

describe('several Servers on one http.Server', () => {
  async function twoServers(): Promise<{ httpServer: http.Server; port: number; a: Server; b: Server }> {
    const httpServer = http.createServer((_req, res) => res.end('page'));
    const port = await listening(httpServer);
    const [a, b] = ['/a', '/b'].map((path) => {
      const server = new Server({ server: httpServer, path });
      server.on('message', (frame) => server.push(frame.fd, `${path} got ${frame.data}`));
      return server;
    });
    await a.start();
    await b.start();
    return { httpServer, port, a, b };
  }

  async function echo(port: number, path: string): Promise<string> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
    await waitFor(ws, 'open');
    ws.send('hi');
    const [data] = await waitFor<[Buffer]>(ws, 'message');
    ws.close();
    await waitFor(ws, 'close');
    return String(data);
  }

  test('an upgrade that no Server claims is answered 400 once, and each Server keeps its own path', async () => {
    const { httpServer, port, a, b } = await twoServers();
    try {
      assert.equal(await echo(port, '/a'), '/a got hi');
      assert.equal(await echo(port, '/b'), '/b got hi');
      const answer = await upgradeAnswer(port, '/c?x=1');
      assert.match(answer, /^HTTP\/1\.1 400 /);
      assert.equal(answer.match(/HTTP\/1\.1 /g)?.length, 1, `one answer, got: ${answer}`);
      assert.match(answer, /no WebSocket endpoint at \/c/);
      assert.equal(a.stats().rejected + b.stats().rejected, 1);
      // With the first Server gone, the other answers.
      await a.stop();
      assert.match(await upgradeAnswer(port, '/a'), /^HTTP\/1\.1 400 /);
      assert.equal(await echo(port, '/b'), '/b got hi');
    } finally {
      await a.stop();
      await b.stop();
      httpServer.closeAllConnections();
      await new Promise((resolve) => httpServer.close(resolve));
    }
  });

  test("an upgrade no Server claims is left to the app's own upgrade listener", async () => {
    const { httpServer, port, a, b } = await twoServers();
    httpServer.on('upgrade', (req, socket) => {
      if (req.url === '/mine') socket.end('HTTP/1.1 418 I\'m a teapot\r\nConnection: close\r\n\r\n');
    });
    try {
      const answer = await upgradeAnswer(port, '/mine');
      assert.match(answer, /^HTTP\/1\.1 418 /);
      assert.equal(answer.match(/HTTP\/1\.1 /g)?.length, 1);
      assert.equal(a.stats().rejected + b.stats().rejected, 0);
      assert.equal(await echo(port, '/a'), '/a got hi');
    } finally {
      await a.stop();
      await b.stop();
      httpServer.closeAllConnections();
      await new Promise((resolve) => httpServer.close(resolve));
    }
  });
});

