/**
 * The Swoole-style API: fds, push results and argument errors, connection
 * queries, heartbeat, stop(), many connections, wss, and attaching to an
 * existing HTTP server.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { OPCODE, Server, backend } from '../src/index.js';
import { clientFrame, closeEvent, lastFd, RawClient, startServer, waitFor } from './helpers.js';
import { OPENSSL, requireProgram, skipWithout } from './programs.js';

async function openWs(url: string, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, options);
  await waitFor(ws, 'open');
  return ws;
}

describe('server life cycle', () => {
  test('refuses to start without a message listener, like Swoole', async () => {
    const server = new Server({ host: '127.0.0.1', port: 0 });
    await assert.rejects(server.start(), /'message' listener is required/);
  });

  test('start() resolves when listening on port 0 and exposes the real port', async () => {
    const server = await startServer();
    assert.ok(server.port > 0);
    await server.stop();
    assert.equal(server.port, 0);
  });

  test('start() rejects when the port is taken', async () => {
    const first = await startServer();
    const second = new Server({ host: '127.0.0.1', port: first.port });
    second.on('message', () => {});
    await assert.rejects(second.start(), { code: 'EADDRINUSE' });
    await first.stop();
  });

  test('bad options throw typed errors at once', () => {
    assert.throws(() => new Server({ maxPayload: -1 }), RangeError);
    assert.throws(() => new Server({ port: 70000 }), RangeError);
    assert.throws(() => new Server({ heartbeatCheckInterval: Number.NaN }), RangeError);
    assert.throws(() => new Server({ heartbeatCheckInterval: 100, pingInterval: 500 }), RangeError);
    assert.throws(() => new Server({ noServer: true, server: http.createServer() }), TypeError);
  });

  test('stop() closes every connection with 1001 cleanly and resolves when all are gone', async () => {
    const server = await startServer();
    const clients = await Promise.all([1, 2, 3].map(() => openWs(`ws://127.0.0.1:${server.port}`)));
    const codes = clients.map((ws) => waitFor<[number, Buffer]>(ws, 'close'));
    const serverCloses: [number, boolean][] = [];
    server.on('close', (_fd, code, _reason, wasClean) => serverCloses.push([code, wasClean]));
    await server.stop();
    assert.equal(server.stats().connections, 0);
    assert.deepEqual(serverCloses, [[1001, true], [1001, true], [1001, true]]);
    for (const c of await Promise.all(codes)) assert.deepEqual([c[0], c[1].toString()], [1001, 'server shutting down']);
  });

  test('stop({ timeout }) destroys clients that do not answer the close', async () => {
    const server = await startServer();
    const client = await RawClient.open(server.port);
    const started = Date.now();
    await server.stop({ timeout: 200 });
    assert.ok(Date.now() - started < 2000);
    await client.until(() => client.closed);
    assert.equal((await client.closeFrame()).code, 1001);
  });
});

describe('fds and queries', () => {
  let server: Server;
  before(async () => {
    server = await startServer();
  });
  after(() => server.stop({ timeout: 200 }));

  test('fds are positive, increasing and never reused', async () => {
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) {
      const opened = waitFor<[number]>(server, 'open');
      const ws = await openWs(`ws://127.0.0.1:${server.port}`);
      const [fd] = await opened;
      seen.push(fd);
      const closed = closeEvent(server, fd);
      ws.close();
      await closed;
    }
    assert.ok(seen[0] > 0);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1], `${seen}`);
  });

  test('push returns false for an unknown, closed or non-integer fd and never throws for it', async () => {
    assert.equal(server.push(999_999, 'x'), false);
    assert.equal(server.push(-1, 'x'), false);
    assert.equal(server.push(1.5, 'x'), false);
    const ws = await openWs(`ws://127.0.0.1:${server.port}`);
    const fd = lastFd(server);
    const closed = closeEvent(server, fd);
    ws.close();
    await closed;
    assert.equal(server.push(fd, 'x'), false);
    assert.equal(server.exist(fd), false);
    assert.equal(server.isEstablished(fd), false);
    assert.equal(server.getClientInfo(fd), undefined);
    assert.equal(server.disconnect(fd), false);
  });

  test('push and disconnect throw typed errors on bad arguments', async () => {
    const ws = await openWs(`ws://127.0.0.1:${server.port}`);
    const fd = lastFd(server);
    assert.throws(() => server.push(fd, Buffer.alloc(2 * 1024 * 1024 + 1)), RangeError);
    assert.throws(() => server.push(fd, 'x'.repeat(126), OPCODE.PING), RangeError);
    assert.throws(() => server.push(fd, 'x', 3), TypeError);
    assert.throws(() => server.push(fd, 'x', OPCODE.CLOSE), TypeError);
    assert.throws(() => server.push(fd, 'x', OPCODE.PING, false), TypeError);
    assert.throws(() => server.push(fd, 42 as unknown as string), TypeError);
    assert.throws(() => server.disconnect(fd, 1005), RangeError);
    assert.throws(() => server.disconnect(fd, 1006), RangeError);
    assert.throws(() => server.disconnect(fd, 2000), RangeError);
    assert.throws(() => server.disconnect(fd, 1000, 'x'.repeat(124)), RangeError);
    assert.equal(server.isEstablished(fd), true, 'the connection is untouched by refused calls');
    ws.close();
  });

  test('exist, isEstablished, connections, getClientInfo and stats describe live connections', async () => {
    const before = server.stats();
    const ws = await openWs(`ws://127.0.0.1:${server.port}`);
    const fd = lastFd(server);
    assert.equal(server.exist(fd), true);
    assert.equal(server.isEstablished(fd), true);
    assert.ok([...server.connections].includes(fd));
    ws.send('hello');
    await waitFor(ws, 'message');
    const info = server.getClientInfo(fd)!;
    assert.equal(info.remoteAddress, '127.0.0.1');
    assert.equal(info.remotePort, (ws as unknown as { _socket: { localPort: number } })._socket.localPort);
    assert.equal(info.messagesIn, 1);
    assert.equal(info.messagesOut, 1);
    assert.ok(info.bytesIn > 0 && info.bytesOut > 0);
    assert.ok(info.connectTime <= info.lastReceiveTime);
    const stats = server.stats();
    assert.equal(stats.backend, backend);
    assert.equal(stats.accepted, before.accepted + 1);
    assert.equal(stats.messagesIn, before.messagesIn + 1);
    assert.equal(stats.messagesOut, before.messagesOut + 1);
    ws.close();
  });

  test('setData and getData hold per-connection data', async () => {
    const ws = await openWs(`ws://127.0.0.1:${server.port}`);
    const fd = lastFd(server);
    assert.equal(server.setData(fd, { name: 'ann' }), true);
    assert.deepEqual(server.getData(fd), { name: 'ann' });
    assert.equal(server.setData(123_456, 1), false);
    ws.close();
  });
});

describe('heartbeat', () => {
  test('closes a connection idle longer than heartbeatIdleTime and keeps one that pings', async () => {
    const server = await startServer({ heartbeatCheckInterval: 50, heartbeatIdleTime: 300 });
    try {
      const idle = await RawClient.open(server.port);
      const idleFd = lastFd(server);
      const busy = await RawClient.open(server.port);
      const busyFd = lastFd(server);
      const idleClosed = closeEvent(server, idleFd, 5000);
      const keepAlive = setInterval(() => busy.send(clientFrame(OPCODE.PING, 'k')), 50);
      const started = Date.now();
      const [code, reason] = await idleClosed;
      clearInterval(keepAlive);
      assert.ok(Date.now() - started >= 250, 'not closed before the idle time');
      assert.equal(code, 1001);
      assert.equal(reason, 'idle timeout');
      assert.equal((await idle.closeFrame()).code, 1001);
      assert.equal(server.isEstablished(busyFd), true, 'the pinging client is kept');
      idle.destroy();
      busy.destroy();
    } finally {
      await server.stop({ timeout: 100 });
    }
  });

  test('pingInterval pings quiet clients so a healthy ws client is kept past the idle time', async () => {
    const server = await startServer({ heartbeatCheckInterval: 50, heartbeatIdleTime: 400, pingInterval: 100 });
    try {
      const ws = await openWs(`ws://127.0.0.1:${server.port}`);
      const fd = lastFd(server);
      let pings = 0;
      ws.on('ping', () => pings++);
      // Wait for enough pongs that the idle time has passed twice over.
      for (let i = 0; i < 8; i++) await waitFor(server, 'pong', 2000);
      assert.ok(pings >= 8);
      assert.equal(server.isEstablished(fd), true);
      ws.close();
    } finally {
      await server.stop({ timeout: 100 });
    }
  });
});

describe('scale', () => {
  test('1,000 concurrent connections each echo their own message', async () => {
    const server = await startServer();
    const count = 1000;
    const clients: WebSocket[] = [];
    try {
      for (let batch = 0; batch < count; batch += 100) {
        const opened = await Promise.all(
          Array.from({ length: 100 }, () => openWs(`ws://127.0.0.1:${server.port}`, { perMessageDeflate: false })),
        );
        clients.push(...opened);
      }
      assert.equal(server.stats().connections, count);
      const replies = clients.map((ws, i) => {
        const reply = waitFor<[Buffer]>(ws, 'message', 20_000);
        ws.send(`client ${i}`);
        return reply;
      });
      const got = await Promise.all(replies);
      got.forEach(([data], i) => assert.equal(data.toString(), `client ${i}`));
    } finally {
      for (const ws of clients) ws.terminate();
      await server.stop({ timeout: 500 });
    }
  });
});

describe('wss and existing servers', () => {
  test('speaks wss with a self-signed certificate', { skip: skipWithout(OPENSSL) }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'wavecast-tls-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    execFileSync(requireProgram(OPENSSL), [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    const cert = readFileSync(join(dir, 'cert.pem'));
    const server = await startServer({ tls: { key: readFileSync(join(dir, 'key.pem')), cert } });
    try {
      const ws = await openWs(`wss://127.0.0.1:${server.port}/secure`, { ca: cert });
      ws.send('over tls');
      const [data] = await waitFor<[Buffer]>(ws, 'message');
      assert.equal(data.toString(), 'over tls');
      ws.close();
    } finally {
      await server.stop({ timeout: 200 });
    }
  });

  test('attaches to an existing http server: its requests stay its own, upgrades on path become WebSockets', async () => {
    const httpServer = http.createServer((_req, res) => res.end('plain page'));
    await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
    const port = (httpServer.address() as { port: number }).port;
    const server = new Server({ server: httpServer, path: '/ws' });
    server.on('message', (frame) => server.push(frame.fd, `got ${frame.data}`));
    await server.start();
    try {
      assert.equal(server.port, port);
      const page = await fetch(`http://127.0.0.1:${port}/`).then((r) => r.text());
      assert.equal(page, 'plain page');
      const ws = await openWs(`ws://127.0.0.1:${port}/ws`);
      ws.send('hi');
      const [data] = await waitFor<[Buffer]>(ws, 'message');
      assert.equal(data.toString(), 'got hi');
      ws.close();
    } finally {
      await server.stop({ timeout: 200 });
      await new Promise((resolve) => httpServer.close(resolve));
    }
  });

  test('handleUpgrade() takes upgrades handed over by the app (noServer)', async () => {
    const server = new Server({ noServer: true });
    server.on('message', (frame) => server.push(frame.fd, frame));
    await server.start();
    const httpServer = http.createServer();
    httpServer.on('upgrade', (req, socket, head) => {
      if (req.url === '/mine') server.handleUpgrade(req, socket, head);
      else socket.destroy();
    });
    await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
    const port = (httpServer.address() as { port: number }).port;
    try {
      const ws = await openWs(`ws://127.0.0.1:${port}/mine`);
      ws.send('handed over');
      const [data] = await waitFor<[Buffer]>(ws, 'message');
      assert.equal(data.toString(), 'handed over');
      ws.close();
    } finally {
      await server.stop({ timeout: 200 });
      httpServer.closeAllConnections();
      await new Promise((resolve) => httpServer.close(resolve));
    }
  });
});
