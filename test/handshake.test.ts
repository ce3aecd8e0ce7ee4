/**
 * The opening handshake (RFC 6455 4.2): pure checks, then the accept/reject
 * matrix over raw sockets with the status actually on the wire.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { Server } from '../src/index.js';
import { acceptKey, checkUpgrade, parseProtocols } from '../src/protocol/handshake.js';
import { RawClient, startServer, UPGRADE_ACCEPT, UPGRADE_KEY, upgradeRequest, waitFor } from './helpers.js';

describe('handshake functions', () => {
  test("computes RFC 6455 1.3's example accept key", () => {
    assert.equal(acceptKey(UPGRADE_KEY), UPGRADE_ACCEPT);
  });

  test('parses subprotocol lists and refuses malformed ones', () => {
    assert.deepEqual(parseProtocols(undefined), []);
    assert.deepEqual(parseProtocols('chat, superchat'), ['chat', 'superchat']);
    assert.equal(parseProtocols('chat,,x'), null);
    assert.equal(parseProtocols('chat, chat'), null);
    assert.equal(parseProtocols('ch@t'), null);
  });

  test('accepts a key only if it is base64 of exactly 16 bytes', () => {
    const req = (key: string) => ({
      method: 'GET',
      httpVersionMajor: 1,
      httpVersionMinor: 1,
      headers: { host: 'x', upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': key, 'sec-websocket-version': '13' },
    });
    assert.equal(checkUpgrade(req(UPGRADE_KEY)).ok, true);
    for (const key of ['', 'abc', 'dGhlIHNhbXBsZSBub25jZQ=', 'dGhlIHNhbXBsZSBub25jZR==', 'dGhlIHNhbXBsZSBub25jZQ==x', 'dGhl*HNhbXBsZSBub25jZQ==']) {
      assert.equal(checkUpgrade(req(key)).ok, false, key);
    }
  });
});

/** Sends raw request text; returns the status line and the response head. */
async function roundTrip(port: number, request: string | Buffer): Promise<{ status: number; head: string; client: RawClient }> {
  const client = await RawClient.connect(port);
  client.send(request);
  await client.until(() => client.response !== '');
  const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(client.response)?.[1]);
  if (status !== 101) await client.until(() => client.ended || client.closed || client.body.length > 0).catch(() => {});
  // The head, then any body text (a refusal explains itself there).
  return { status, head: client.response + (status === 101 ? '' : client.body.toString()), client };
}

describe('handshake on the wire', () => {
  let server: Server<{ user: string }>;
  const opened: [number, string, string, { user: string } | undefined][] = [];
  before(async () => {
    server = await startServer<{ user: string }>({ subprotocols: ['chat', 'superchat'] }, (s) => {
      s.on('open', (fd, req) => opened.push([fd, req.path, req.protocol, req.data]));
      s.on('handshake', async (req, res) => {
        if (req.path === '/private') {
          res.reject(401, 'who are you?', { 'WWW-Authenticate': 'Bearer' });
          return;
        }
        if (req.path === '/throws') throw new Error('hook failed');
        if (req.path === '/async') {
          await new Promise((r) => setTimeout(r, 20));
          res.data = { user: req.query.get('user') ?? '' };
          res.protocol = 'superchat';
          res.headers['X-Hello'] = 'world';
        }
      });
    });
  });
  after(() => server.stop({ timeout: 100 }));

  const matrix: [string, string, number, RegExp?][] = [
    ['a valid request', upgradeRequest('/'), 101, /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/],
    ['Upgrade and Connection in other cases and lists', upgradeRequest('/', { Upgrade: 'WebSocket', Connection: 'keep-alive, UPGRADE' }), 101],
    ['no Host', upgradeRequest('/', { Host: undefined }), 400, /Host/],
    ['Upgrade: h2c', upgradeRequest('/', { Upgrade: 'h2c' }), 400, /Upgrade header/],
    ['Upgrade without Connection: Upgrade', upgradeRequest('/', { Connection: 'keep-alive' }), 400, /Connection header/],
    ['no Sec-WebSocket-Key', upgradeRequest('/', { 'Sec-WebSocket-Key': undefined }), 400, /Sec-WebSocket-Key/],
    ['a key of 15 bytes', upgradeRequest('/', { 'Sec-WebSocket-Key': 'AAAAAAAAAAAAAAAAAAAA' }), 400, /Sec-WebSocket-Key/],
    ['version 8', upgradeRequest('/', { 'Sec-WebSocket-Version': '8' }), 426, /Sec-WebSocket-Version: 13/],
    ['no version', upgradeRequest('/', { 'Sec-WebSocket-Version': undefined }), 426, /Sec-WebSocket-Version: 13/],
    ['POST', upgradeRequest('/', {}, 'POST / HTTP/1.1'), 400, /GET/],
    ['HTTP/1.0', upgradeRequest('/', {}, 'GET / HTTP/1.0'), 400, /HTTP\/1.1/],
    ['a malformed Sec-WebSocket-Protocol', upgradeRequest('/', { 'Sec-WebSocket-Protocol': 'chat,,x' }), 400, /Protocol/],
    ['a hook rejection', upgradeRequest('/private'), 401, /WWW-Authenticate: Bearer/],
    ['a hook that throws', upgradeRequest('/throws'), 500],
    ['a plain GET with no request listener', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', 426, /Upgrade: websocket/i],
  ];

  for (const [name, request, status, head] of matrix) {
    test(`answers ${status} to ${name}`, async () => {
      const { status: got, head: response, client } = await roundTrip(server.port, request);
      assert.equal(got, status, response);
      if (head) assert.match(response, head);
      if (status !== 101) {
        await client.serverEnded();
        assert.ok(client.ended || client.closed, 'the connection is closed after a refusal');
      }
      client.destroy();
    });
  }

  test('answers 400 and closes on a byte stream that is not HTTP', async () => {
    const { status, client } = await roundTrip(server.port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x01, 0x0d, 0x0a, 0x0d, 0x0a]));
    assert.equal(status, 400);
    await client.serverEnded();
    client.destroy();
  });

  test('chooses the first offered subprotocol the server speaks', async () => {
    const { head, client } = await roundTrip(server.port, upgradeRequest('/', { 'Sec-WebSocket-Protocol': 'other, superchat, chat' }));
    assert.match(head, /\r\nSec-WebSocket-Protocol: superchat\r\n/);
    client.destroy();
  });

  test('sends no subprotocol when none offered is spoken', async () => {
    const { status, head, client } = await roundTrip(server.port, upgradeRequest('/', { 'Sec-WebSocket-Protocol': 'other' }));
    assert.equal(status, 101);
    assert.doesNotMatch(head, /Sec-WebSocket-Protocol/);
    client.destroy();
  });

  test('an async hook attaches typed data, picks the subprotocol and adds headers; open sees them', async () => {
    const { status, head, client } = await roundTrip(
      server.port,
      upgradeRequest('/async?user=ann', { 'Sec-WebSocket-Protocol': 'chat, superchat' }),
    );
    assert.equal(status, 101);
    assert.match(head, /Sec-WebSocket-Protocol: superchat\r\n/);
    assert.match(head, /X-Hello: world\r\n/);
    const [fd, path, protocol, data] = opened.at(-1)!;
    assert.deepEqual([path, protocol, data], ['/async', 'superchat', { user: 'ann' }]);
    assert.deepEqual(server.getData(fd), { user: 'ann' });
    assert.equal(server.getClientInfo(fd)?.protocol, 'superchat');
    client.destroy();
  });

  test('a hook that throws is reported through the error event', async () => {
    const errored = waitFor<[Error]>(server, 'error');
    const { status, client } = await roundTrip(server.port, upgradeRequest('/throws'));
    assert.equal(status, 500);
    assert.equal((await errored)[0].message, 'hook failed');
    client.destroy();
  });

  test('refuses a second handshake listener with a TypeError', () => {
    assert.throws(() => server.on('handshake', () => {}), TypeError);
  });

  test('counts refused handshakes in stats()', async () => {
    const before = server.stats().rejected;
    const { client } = await roundTrip(server.port, upgradeRequest('/', { 'Sec-WebSocket-Version': '7' }));
    assert.equal(server.stats().rejected, before + 1);
    client.destroy();
  });
});

describe('handshake limits', () => {
  test('answers 503 beyond maxConnections', async () => {
    const server = await startServer({ maxConnections: 2 });
    try {
      const a = await RawClient.open(server.port);
      const b = await RawClient.open(server.port);
      const { status, client } = await roundTrip(server.port, upgradeRequest('/'));
      assert.equal(status, 503);
      for (const c of [a, b, client]) c.destroy();
    } finally {
      await server.stop({ timeout: 100 });
    }
  });

  test('cuts a TCP client that sends nothing within handshakeTimeout', async () => {
    const server = await startServer({ handshakeTimeout: 200 });
    try {
      const client = await RawClient.connect(server.port);
      const started = Date.now();
      await client.until(() => client.closed, 3000).catch(() => {});
      assert.ok(client.closed, 'the silent client was cut');
      assert.ok(Date.now() - started >= 150);
    } finally {
      await server.stop({ timeout: 100 });
    }
  });

  test('cuts a client that sends its request slower than handshakeTimeout (slowloris)', async () => {
    const server = await startServer({ handshakeTimeout: 300 });
    try {
      const client = await RawClient.connect(server.port);
      const request = upgradeRequest('/');
      let i = 0;
      const drip = setInterval(() => {
        if (i < request.length - 4) client.send(request[i++]);
      }, 20);
      await client.until(() => client.closed, 3000).catch(() => {});
      clearInterval(drip);
      assert.ok(client.closed, 'the slow client was cut');
      assert.equal(client.response, '');
    } finally {
      await server.stop({ timeout: 100 });
    }
  });

  // Runs on whichever listener this process uses: the native transport, or
  // Node's sockets (WAVECAST_NO_NATIVE_TRANSPORT=1, WAVECAST_NO_NATIVE=1).
  test('a client that sends its FIN during an async hook is never opened, and the socket is closed', async () => {
    const events: string[] = [];
    let entered!: () => void;
    const inHook = new Promise<void>((resolve) => (entered = resolve));
    let decided!: () => void;
    const hookDone = new Promise<void>((resolve) => (decided = resolve));
    const server = await startServer({}, (s) => {
      s.on('open', (fd) => events.push(`open ${fd}`));
      s.on('close', (fd) => events.push(`close ${fd}`));
      s.on('handshake', async () => {
        entered();
        await new Promise((resolve) => setTimeout(resolve, 100));
        setImmediate(decided);
      });
    });
    try {
      const client = await RawClient.connect(server.port);
      client.send(upgradeRequest('/'));
      await inHook;
      client.socket.end();
      await hookDone;
      // The server closes its side: the client sees the TCP close, not a 101.
      await client.until(() => client.closed, 3000);
      assert.equal(client.response, '');
      assert.deepEqual(events, []);
      assert.equal(server.stats().accepted, 0);
      assert.equal(server.stats().connections, 0);
    } finally {
      await server.stop({ timeout: 100 });
    }
  });

  test('only upgrades requests for `path` when one is set', async () => {
    const server = await startServer({ path: '/ws' });
    try {
      const ok = await roundTrip(server.port, upgradeRequest('/ws?x=1'));
      assert.equal(ok.status, 101);
      const other = await roundTrip(server.port, upgradeRequest('/other'));
      assert.equal(other.status, 400);
      ok.client.destroy();
      other.client.destroy();
    } finally {
      await server.stop({ timeout: 100 });
    }
  });

  test('hands plain HTTP requests to request listeners, on the same port', async () => {
    const server = await startServer({}, (s) => {
      s.on('request', (req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end(`hello ${req.url}`);
      });
    });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: server.port, path: '/page', agent: false }, (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString()));
            res.on('end', () => resolve(`${res.statusCode} ${text}`));
          })
          .on('error', reject);
      });
      assert.equal(body, '200 hello /page');
    } finally {
      await server.stop({ timeout: 100 });
    }
  });
});
