/**
 * Fast opens (native/handshake-fast.h): with no `handshake` hook the native
 * transport answers a plainly valid upgrade itself. What it answers must be
 * a subset of what the JS decision accepts, with the same 101; everything
 * else (subprotocol and extension offers, a hook, a full server, a path
 * other than the server's, a stop) still goes through the JS decision.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { fastUpgrade } from '../src/native.js';
import { coreOf } from '../src/server-core.js';
import { hasToken, checkUpgrade, acceptResponse } from '../src/protocol/handshake.js';
import { parseRequestHead } from '../src/protocol/http-head.js';
import { nativeTransportAvailable, NativeTransport, type NativeWire } from '../src/transport.js';
import { pathOf } from '../src/upgrade.js';
import { UpgradeRequest } from '../src/upgrade-request.js';
import { clientFrame, RawClient, startServer, UPGRADE_ACCEPT, UPGRADE_KEY, upgradeRequest, waitFor } from './helpers.js';

const skip =
  !nativeTransportAvailable || process.env.WAVECAST_NO_NATIVE_TRANSPORT !== undefined || fastUpgrade === null
    ? 'the native transport is not in use here (JS backend, not Linux, or WAVECAST_NO_NATIVE_TRANSPORT set)'
    : false;

/** What the server's JS decision answers to `head` with no hook, subprotocols or compression: the 101, or null. */
function jsAnswer(head: Buffer, path: string): string | null {
  const req = parseRequestHead(head);
  if (req === null) return null;
  if (!hasToken(req.headers.upgrade as string | undefined, 'websocket')) return null;
  if (!hasToken(req.headers.connection as string | undefined, 'upgrade')) return null;
  const check = checkUpgrade(req);
  if (!check.ok) return null;
  if (path !== '' && pathOf(req.url) !== path) return null;
  return acceptResponse(check.key);
}

/** A small seeded generator (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const REQUEST_LINES = [
  'GET / HTTP/1.1',
  'GET /chat HTTP/1.1',
  'GET /chat?room=1&x=%20 HTTP/1.1',
  'GET /chat/ HTTP/1.1',
  'GET /ch%61t HTTP/1.1',
  'GET http://h/chat HTTP/1.1',
  'GET /a b HTTP/1.1',
  'GET / HTTP/1.0',
  'GET / HTTP/1.2',
  'GET  / HTTP/1.1',
  'get / HTTP/1.1',
  'POST / HTTP/1.1',
  'GET / HTTP/1.1 ',
  'GET /\x7f HTTP/1.1',
  'GET /\xe9 HTTP/1.1',
  'GET * HTTP/1.1',
];
const NAMES: Record<string, string[]> = {
  host: ['Host', 'host', 'HOST', 'hOsT'],
  upgrade: ['Upgrade', 'upgrade', 'UPGRADE'],
  connection: ['Connection', 'connection'],
  key: ['Sec-WebSocket-Key', 'sec-websocket-key', 'SEC-WEBSOCKET-KEY'],
  version: ['Sec-WebSocket-Version', 'sec-websocket-version'],
};
const VALUES: Record<string, string[]> = {
  host: ['127.0.0.1', 'example.com:8080', '', ' ', 'a\xe9'],
  upgrade: ['websocket', 'WebSocket', 'websocket, h2c', 'h2c, websocket', 'web socket', 'websockets', '', ' websocket\t', ','],
  connection: ['Upgrade', 'upgrade', 'keep-alive, Upgrade', 'Upgrade,keep-alive', 'upgraded', 'keep-alive', ' Upgrade , x', ''],
  key: [
    UPGRADE_KEY,
    'AAAAAAAAAAAAAAAAAAAAAA==',
    'x3JJHMbDL1EzLkh9GBhXDw==',
    'dGhlIHNhbXBsZSBub25jZQ=',
    'dGhlIHNhbXBsZSBub25jZR==',
    'dGhlIHNhbXBsZSBub25j ZQ==',
    'dGhlIHNhbXBsZSBub25jZQ==x',
    '*GhlIHNhbXBsZSBub25jZQ==',
    '',
  ],
  version: ['13', ' 13 ', '8', '13, 8', '013', '1 3', ''],
};
const EXTRAS = [
  'Origin: http://example.com',
  'User-Agent: test/1.0',
  'X-Empty:',
  'X-Tab:\tvalue\t',
  'Cookie: a=1; b=2',
  'Sec-WebSocket-Protocol: chat',
  'Sec-WebSocket-Extensions: permessage-deflate',
  'Content-Length: 0',
  'Content-Length: 5',
  'Transfer-Encoding: chunked',
  '__proto__: x',
  'X-Obs: caf\xe9',
  'X-Ctl: a\x01b',
  'X-Cr: a\rb',
  'Bad Name: x',
  'Host : x',
  ': empty',
  ' folded',
  'X-Colon: a:b',
];

function pick<T>(next: () => number, list: readonly T[]): T {
  return list[Math.floor(next() * list.length)]!;
}

/** A request head: mostly valid upgrades, each with a few random flaws. */
function generate(next: () => number): Buffer {
  const lines: string[] = [];
  for (const field of Object.keys(NAMES)) {
    const copies = next() < 0.08 ? 0 : next() < 0.08 ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      const value = next() < 0.8 ? VALUES[field]![0]! : pick(next, VALUES[field]!);
      const space = pick(next, [' ', '', '  ', '\t', ' \t']);
      lines.push(`${pick(next, NAMES[field]!)}:${space}${value}`);
    }
  }
  const extras = Math.floor(next() * 3);
  for (let i = 0; i < extras; i++) lines.push(pick(next, EXTRAS));
  for (let i = lines.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [lines[i], lines[j]] = [lines[j]!, lines[i]!];
  }
  const requestLine = next() < 0.7 ? pick(next, REQUEST_LINES.slice(0, 5)) : pick(next, REQUEST_LINES);
  return Buffer.from(`${requestLine}\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`, 'latin1');
}

describe('fast opens: the native answer is a subset of the JS decision', { skip }, () => {
  test('over 20,000 generated heads, every head the transport answers gets the same 101 from the JS decision, and its request parses', () => {
    const next = random(0x5eed);
    let answered = 0;
    let jsOnly = 0;
    for (let i = 0; i < 20_000; i++) {
      const head = generate(next);
      const path = next() < 0.2 ? '/chat' : '';
      const native = fastUpgrade!(head, path, 4096);
      const js = jsAnswer(head, path);
      if (native === null) {
        if (js !== null) jsOnly++;
        continue;
      }
      answered++;
      assert.equal(native, js, `the JS decision answers differently:\n${JSON.stringify(head.toString('latin1'))}`);
      const request = UpgradeRequest.fromHead(1, head.toString('latin1'), { remoteAddress: '', remotePort: 0 });
      const parsed = parseRequestHead(head)!;
      assert.equal(request.url, parsed.url);
      assert.deepEqual(request.headers, parsed.headers);
    }
    // The generator makes both kinds often: the check above ran on thousands of each.
    assert.ok(answered > 1000, `answered ${answered}`);
    assert.ok(jsOnly > 200, `left to JS though valid: ${jsOnly}`);
  });

  test('offers of subprotocols or extensions are left to the JS decision, which negotiates them', () => {
    const offers = [{ 'Sec-WebSocket-Protocol': 'chat' }, { 'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits' }];
    for (const extra of offers) {
      const head = Buffer.from(upgradeRequest('/', extra), 'latin1');
      assert.notEqual(jsAnswer(head, ''), null, 'valid for the JS decision');
      assert.equal(fastUpgrade!(head, '', 4096), null);
    }
  });

  test('the heads real clients send are answered, with the RFC 6455 accept value', () => {
    const heads = [
      upgradeRequest('/'),
      // ws 8 (Node), Chrome, Firefox, and the benchmark's load generator.
      `GET /chat HTTP/1.1\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${UPGRADE_KEY}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nHost: 127.0.0.1:9501\r\n\r\n`,
      `GET /chat HTTP/1.1\r\nHost: localhost:9501\r\nConnection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\nUpgrade: websocket\r\nOrigin: http://localhost:9501\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nAccept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: ${UPGRADE_KEY}\r\n\r\n`,
      `GET /chat HTTP/1.1\r\nHost: localhost:9501\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\nAccept: */*\r\nSec-WebSocket-Version: 13\r\nOrigin: http://localhost:9501\r\nSec-WebSocket-Key: ${UPGRADE_KEY}\r\nConnection: keep-alive, Upgrade\r\nPragma: no-cache\r\nUpgrade: websocket\r\n\r\n`,
    ];
    for (const text of heads) {
      const response = fastUpgrade!(Buffer.from(text, 'latin1'), '', 4096);
      assert.ok(response?.includes(`Sec-WebSocket-Accept: ${UPGRADE_ACCEPT}\r\n`), text);
    }
  });

  test('a head longer than the limit, or with another path, is left to JS', () => {
    const head = Buffer.from(upgradeRequest('/chat?x=1', { 'X-Pad': 'p'.repeat(300) }), 'latin1');
    assert.notEqual(fastUpgrade!(head, '/chat', head.length), null);
    assert.equal(fastUpgrade!(head, '/chat', head.length - 1), null);
    assert.equal(fastUpgrade!(head, '/cha', 4096), null);
    assert.equal(fastUpgrade!(head, '/chat/', 4096), null);
  });
});

describe('fast opens on a server', { skip }, () => {
  test('a transport answers exactly its budget of upgrades itself, then hands heads to JS', async () => {
    const opened: NativeWire[] = [];
    const heads: NativeWire[] = [];
    const transport = new NativeTransport(
      {
        onHead(wire, head) {
          heads.push(wire);
          transport.release(wire, head);
        },
        onOpen(wire) {
          opened.push(wire);
        },
        onHttp(socket) {
          socket.destroy();
        },
      },
      0,
    );
    try {
      const port = transport.listen('127.0.0.1', 0, 511, false);
      transport.setFastOpen(2, '', 4096);
      const clients = [];
      for (let i = 0; i < 4; i++) {
        const client = await RawClient.connect(port);
        client.send(upgradeRequest('/'));
        clients.push(client);
        await client.until(() => client.response !== '' || heads.length + opened.length > i);
      }
      assert.equal(opened.length, 2);
      assert.equal(heads.length, 2);
      for (const client of clients.slice(0, 2)) assert.ok(client.response.includes(UPGRADE_ACCEPT));
      for (const client of clients) client.socket.destroy();
    } finally {
      transport.close();
    }
  });

  test('a server without a handshake hook answers upgrades in the transport; with one, every upgrade runs it', async () => {
    const server = await startServer();
    try {
      const transport = coreOf(server).transport!;
      const clients = await Promise.all(Array.from({ length: 5 }, () => RawClient.open(server.port)));
      assert.equal(transport.fastOpened, 5);
      const seen: string[] = [];
      server.on('handshake', (request) => {
        seen.push(request.url);
      });
      clients.push(await RawClient.open(server.port, '/hooked'));
      assert.deepEqual(seen, ['/hooked']);
      assert.equal(transport.fastOpened, 5);
      server.removeAllListeners('handshake');
      // A batch of data leaves the budget at 0; the next handshake goes to
      // the JS decision, and its batch renews the budget for the one after.
      clients[0]!.send(clientFrame(0x1, Buffer.from('x')));
      await clients[0]!.until(() => clients[0]!.frames().length === 1);
      clients.push(await RawClient.open(server.port));
      assert.equal(transport.fastOpened, 5);
      clients.push(await RawClient.open(server.port));
      assert.equal(transport.fastOpened, 6);
      for (const client of clients) client.socket.destroy();
    } finally {
      await server.stop();
    }
  });

  test('bytes sent right behind the head, in the same segment, are the first message', async () => {
    const server = await startServer();
    try {
      const client = await RawClient.connect(server.port);
      client.send(Buffer.concat([Buffer.from(upgradeRequest('/')), clientFrame(0x1, Buffer.from('first'))]));
      await client.until(() => client.frames().length === 1);
      assert.ok(client.response.includes(UPGRADE_ACCEPT));
      assert.equal(client.frames()[0]!.payload.toString(), 'first');
      client.socket.destroy();
    } finally {
      await server.stop();
    }
  });

  test('with no open listener a fast open rests from its start, making no request, and is a connection like any other', async () => {
    const closes: number[] = [];
    let allClosed = (): void => {};
    const server = await startServer({}, (s) =>
      s.on('close', (fd) => {
        closes.push(fd);
        if (closes.length === 3) allClosed();
      }),
    );
    const fromHead = UpgradeRequest.fromHead;
    let requests = 0;
    UpgradeRequest.fromHead = (...args) => {
      requests++;
      return fromHead(...args);
    };
    try {
      const registry = coreOf(server).registry;
      const quiet = await RawClient.open(server.port);
      const early = await RawClient.connect(server.port);
      early.send(Buffer.concat([Buffer.from(upgradeRequest('/')), clientFrame(0x1, Buffer.from('early'))]));
      await early.until(() => early.frames().length === 1);
      assert.equal(early.frames()[0]!.payload.toString(), 'early');
      assert.equal(requests, 0, 'no request was made for either');
      assert.equal(coreOf(server).transport!.fastOpened, 2);
      const [quietFd, earlyFd] = [...server.connections];
      assert.deepEqual([registry.size, registry.restingSize, registry.isResting(quietFd!)], [2, 1, true]);
      const stats = server.stats();
      assert.deepEqual([stats.connections, stats.bytesIn], [2, clientFrame(0x1, Buffer.from('early')).length]);
      assert.equal(stats.bytesOut, Buffer.byteLength(quiet.response, 'latin1') + Buffer.byteLength(early.response, 'latin1') + 7);
      assert.equal(server.push(quietFd!, 'to quiet'), true);
      await quiet.until(() => quiet.frames().length === 1);
      assert.equal(quiet.frames()[0]!.payload.toString(), 'to quiet');
      // With an open listener, the request is made again.
      const opened = waitFor<[number, UpgradeRequest]>(server, 'open');
      const third = await RawClient.open(server.port, '/third');
      const [thirdFd, request] = await opened;
      assert.equal(request.url, '/third');
      assert.equal(requests, 1);
      const gone = waitFor(server, 'close');
      quiet.socket.destroy();
      await gone;
      assert.deepEqual(closes, [quietFd], 'one close, for the client that left');
      const all = new Promise<void>((resolve) => (allClosed = resolve));
      early.socket.destroy();
      third.socket.destroy();
      await all;
      assert.deepEqual([...closes].sort((a, b) => a - b), [quietFd, earlyFd, thirdFd], 'one close each');
    } finally {
      UpgradeRequest.fromHead = fromHead;
      await server.stop();
    }
  });

  test('the open listener gets the request: url, path, query, lazily parsed headers, address', async () => {
    const server = await startServer();
    try {
      const opened = waitFor<[number, UpgradeRequest]>(server, 'open');
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}/room?id=7`, { headers: { 'X-Token': 'abc', Cookie: 'a=1' } });
      const [fd, request] = await opened;
      assert.equal(request.fd, fd);
      assert.equal(request.url, '/room?id=7');
      assert.equal(request.path, '/room');
      assert.equal(request.query.get('id'), '7');
      assert.equal(request.headers['x-token'], 'abc');
      assert.equal(request.headers.cookie, 'a=1');
      assert.equal(request.headers.host, `127.0.0.1:${server.port}`);
      assert.equal(request.remoteAddress, '127.0.0.1');
      assert.equal(request.protocol, '');
      assert.deepEqual(request.protocols, []);
      await once(ws, 'open');
      ws.terminate();
    } finally {
      await server.stop();
    }
  });

  test('maxConnections holds under a burst of simultaneous upgrades: the rest get 503', async () => {
    const server = await startServer({ maxConnections: 3 });
    try {
      const clients = await Promise.all(Array.from({ length: 12 }, () => RawClient.connect(server.port)));
      for (const client of clients) client.send(upgradeRequest('/'));
      await Promise.all(clients.map((client) => client.until(() => client.response !== '')));
      const statuses = clients.map((client) => client.response.slice(9, 12)).sort();
      assert.deepEqual(statuses, ['101', '101', '101', ...Array<string>(9).fill('503')]);
      assert.equal(server.stats().connections, 3);
      for (const client of clients) client.socket.destroy();
    } finally {
      await server.stop();
    }
  });

  test('a handshake hook added after start is run for the next handshake', async () => {
    const server = await startServer();
    try {
      const first = await RawClient.open(server.port);
      const seen: string[] = [];
      server.on('handshake', (request, response) => {
        seen.push(request.url);
        response.reject(403, 'no');
      });
      const second = await RawClient.connect(server.port);
      second.send(upgradeRequest('/second'));
      await second.until(() => second.response !== '');
      assert.match(second.response, /^HTTP\/1\.1 403 /);
      assert.deepEqual(seen, ['/second']);
      first.socket.destroy();
      second.socket.destroy();
    } finally {
      await server.stop();
    }
  });

  test('with the path option, another path gets the JS decision\'s 400 and the path itself opens', async () => {
    const server = await startServer({ path: '/ws' });
    try {
      const other = await RawClient.connect(server.port);
      other.send(upgradeRequest('/other'));
      await other.until(() => other.response !== '');
      assert.match(other.response, /^HTTP\/1\.1 400 /);
      const ok = await RawClient.open(server.port, '/ws?x=1');
      assert.ok(ok.response.includes(UPGRADE_ACCEPT));
      other.socket.destroy();
      ok.socket.destroy();
    } finally {
      await server.stop();
    }
  });

  test('a client gone before its 101 is never opened, and the server serves the next', async () => {
    const server = await startServer();
    const events: string[] = [];
    server.on('open', (fd) => events.push(`open ${fd}`));
    server.on('close', (fd) => events.push(`close ${fd}`));
    try {
      for (let i = 0; i < 20; i++) {
        const socket = net.connect(server.port, '127.0.0.1');
        await once(socket, 'connect');
        socket.on('error', () => {});
        socket.write(upgradeRequest('/'));
        if (i % 2 === 0) socket.resetAndDestroy();
        else socket.destroy();
      }
      const next = await RawClient.open(server.port);
      next.socket.destroy();
      for (let i = 0; i < 250 && server.stats().connections > 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(server.stats().connections, 0);
      // Every open has its close; the abandoned ones may or may not have opened first.
      const opens = events.filter((e) => e.startsWith('open')).length;
      const closes = events.filter((e) => e.startsWith('close')).length;
      assert.ok(opens >= 1);
      assert.equal(opens, closes);
    } finally {
      await server.stop();
    }
  });
});
