/**
 * permessage-deflate on the wire: the negotiation matrix as the client sees
 * it, compressed frames from raw sockets (RSV1 rules, corrupt data, inflated
 * UTF-8, the inflate bomb), round trips with the ws client with and without
 * context takeover, message order while zlib works, and broadcast / publish
 * compressing once for every recipient that negotiated it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import zlib from 'node:zlib';
import WebSocket from 'ws';
import { DeflateShared } from '../src/deflate.js';
import { coreOf } from '../src/server-core.js';
import { OPCODE, type Server, type ServerOptions } from '../src/index.js';
import { clientFrame, closeEvent, lastFd, RawClient, startServer, upgradeRequest, waitFor } from './helpers.js';

const MiB = 1024 * 1024;
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
/** RFC 7692 7.2.3.1: "Hello" compressed. */
const HELLO = hex('f248cdc9c90700');
const OFFER = 'permessage-deflate; client_max_window_bits';

/** Raw deflate of `data` as a peer sends it: sync-flushed, without the 00 00 ff ff tail. */
function deflate(data: Buffer | string): Buffer {
  return zlib.deflateRawSync(data, { finishFlush: zlib.constants.Z_SYNC_FLUSH }).subarray(0, -4);
}
function inflate(payload: Buffer): Buffer {
  return zlib.inflateRawSync(Buffer.concat([payload, hex('0000ffff')]), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
}

/** The handshake response head for `headers`; the client is left open for frames. */
async function handshake(server: Server, headers: Record<string, string | undefined>): Promise<RawClient> {
  const client = await RawClient.connect(server.port);
  client.send(upgradeRequest('/', headers));
  await client.until(() => client.response !== '');
  return client;
}

function extensionsHeader(response: string): string | undefined {
  return /^sec-websocket-extensions: (.*)\r$/im.exec(response)?.[1];
}

const json = (i: number): string =>
  JSON.stringify({ type: 'quote', seq: i, rows: Array.from({ length: 60 }, (_, k) => ({ symbol: `SYM${k}`, bid: 100 + k, ask: 101 + k })) });

describe('permessage-deflate negotiation on the wire', () => {
  let server: Server;
  let plain: Server;
  before(async () => {
    server = await startServer({ perMessageDeflate: true });
    plain = await startServer();
  });
  after(async () => {
    await server.stop({ timeout: 200 });
    await plain.stop({ timeout: 200 });
  });

  const matrix: [offer: string | undefined, status: number, response: string | undefined][] = [
    [OFFER, 101, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
    ['permessage-deflate', 101, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
    ['permessage-deflate; server_max_window_bits=10', 101, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10'],
    ['permessage-deflate; foo, permessage-deflate; client_max_window_bits=9', 101, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=9'],
    ['permessage-deflate; server_max_window_bits=8', 101, undefined],
    ['permessage-deflate; client_no_context_takeover; client_no_context_takeover', 101, undefined],
    ['x-webkit-deflate-frame', 101, undefined],
    [undefined, 101, undefined],
    ['permessage-deflate; server_max_window_bits="1 0"', 400, undefined],
    ['permessage-deflate;; x', 400, undefined],
    ['permessage-deflate, ;foo', 400, undefined],
  ];
  for (const [offer, status, response] of matrix) {
    test(`answers ${status}${response ? ` with "${response}"` : ''} to ${offer === undefined ? 'no offer' : JSON.stringify(offer)}`, async () => {
      const client = await handshake(server, { 'Sec-WebSocket-Extensions': offer });
      assert.match(client.response, new RegExp(`^HTTP/1.1 ${status} `));
      assert.equal(extensionsHeader(client.response), response);
      if (status === 101) {
        const fd = lastFd(server);
        assert.equal(server.getClientInfo(fd)?.perMessageDeflate, response !== undefined);
      } else {
        await client.serverEnded();
        assert.match(client.body.toString(), /malformed Sec-WebSocket-Extensions/);
      }
      client.destroy();
    });
  }

  test('a server without perMessageDeflate ignores the header, even a malformed one', async () => {
    for (const offer of [OFFER, 'permessage-deflate;; x']) {
      const client = await handshake(plain, { 'Sec-WebSocket-Extensions': offer });
      assert.match(client.response, /^HTTP\/1.1 101 /);
      assert.equal(extensionsHeader(client.response), undefined);
      client.destroy();
    }
  });

  test('answers with the configured window and takeover settings', async () => {
    const custom = await startServer({
      perMessageDeflate: { serverNoContextTakeover: false, clientNoContextTakeover: false, serverMaxWindowBits: 12, clientMaxWindowBits: 10 },
    });
    try {
      const client = await handshake(custom, { 'Sec-WebSocket-Extensions': OFFER });
      assert.equal(extensionsHeader(client.response), 'permessage-deflate; server_max_window_bits=12; client_max_window_bits=10');
      client.destroy();
    } finally {
      await custom.stop({ timeout: 200 });
    }
  });
});

describe('compressed frames from a raw client', () => {
  let server: Server;
  before(async () => {
    server = await startServer({ perMessageDeflate: true });
  });
  after(() => server.stop({ timeout: 200 }));

  test('inflates RFC 7692\'s "Hello", whole and in two fragments, and sends it back compressed when forced', async () => {
    const client = await RawClient.open(server.port, '/', { 'Sec-WebSocket-Extensions': OFFER });
    const fd = lastFd(server);
    const first = waitFor<[{ data: string }]>(server, 'message');
    client.send(clientFrame(1, HELLO, { rsv: 4 }));
    assert.equal((await first)[0].data, 'Hello');
    const second = waitFor<[{ data: string }]>(server, 'message');
    client.send(Buffer.concat([clientFrame(1, hex('f248cd'), { rsv: 4, fin: false }), clientFrame(0, hex('c9c90700'))]));
    assert.equal((await second)[0].data, 'Hello');
    // The echoes are under the threshold: plain.
    await client.until(() => client.frames().length >= 2);
    assert.deepEqual(client.frames().map((f) => [f.rsv, f.payload.toString()]), [[0, 'Hello'], [0, 'Hello']]);
    // Forced: the same bytes as the RFC example (a fresh context per message).
    assert.equal(server.push(fd, 'Hello', OPCODE.TEXT, true, true), true);
    await client.until(() => client.frames().length >= 3);
    const frame = client.frames()[2];
    assert.deepEqual([frame.fin, frame.rsv, frame.opcode], [true, 4, OPCODE.TEXT]);
    assert.equal(frame.payload.toString('hex'), HELLO.toString('hex'));
    client.destroy();
  });

  test('push compresses at the threshold, not below it, and never when told not to; pings never', async () => {
    const client = await RawClient.open(server.port, '/', { 'Sec-WebSocket-Extensions': OFFER });
    const fd = lastFd(server);
    const atThreshold = 'a'.repeat(1024);
    server.push(fd, 'b'.repeat(1023));
    server.push(fd, atThreshold);
    server.push(fd, Buffer.from(atThreshold), OPCODE.BINARY);
    server.push(fd, atThreshold, OPCODE.TEXT, true, false);
    server.ping(fd, 'p'.repeat(125));
    await client.until(() => client.frames().length >= 5);
    const frames = client.frames();
    // The ping does not wait behind compressions in flight; data messages keep their order.
    const data = frames.filter((f) => f.opcode !== OPCODE.PING);
    assert.deepEqual(data.map((f) => f.rsv), [0, 4, 4, 0]);
    assert.equal(frames.find((f) => f.opcode === OPCODE.PING)?.rsv, 0);
    assert.equal(inflate(data[1].payload).toString(), atThreshold);
    assert.ok(data[1].payload.length < 50);
    assert.throws(() => server.push(fd, 'x', OPCODE.TEXT, true, 'yes' as unknown as boolean), TypeError);
    assert.throws(() => server.broadcast('x', { compress: 1 as unknown as boolean }), TypeError);
    client.destroy();
  });

  const misuse: [string, Buffer[], number, RegExp][] = [
    ['RSV1 on a continuation frame', [clientFrame(1, hex('f248cd'), { rsv: 4, fin: false }), clientFrame(0, hex('c9c90700'), { rsv: 4 })], 1002, /RSV1/],
    ['RSV1 on a ping', [clientFrame(9, 'x', { rsv: 4 })], 1002, /RSV1/],
    ['RSV1 on a close frame', [clientFrame(8, hex('03e8'), { rsv: 4 })], 1002, /RSV1/],
    ['RSV2 with permessage-deflate negotiated', [clientFrame(1, 'x', { rsv: 2 })], 1002, /RSV/],
    ['compressed data that does not inflate', [clientFrame(2, hex('ffffffff'), { rsv: 4 })], 1007, /inflate/],
    ['a compressed text message that inflates to invalid UTF-8', [clientFrame(1, deflate(hex('48 c3 28')), { rsv: 4 })], 1007, /UTF-8/],
  ];
  for (const [name, frames, code, reason] of misuse) {
    test(`closes with ${code} on ${name}, with the close frame on the wire`, async () => {
      const client = await RawClient.open(server.port, '/', { 'Sec-WebSocket-Extensions': OFFER });
      const closed = closeEvent(server, lastFd(server));
      const error = waitFor<[Error & { code: string }, number]>(server, 'error');
      client.send(Buffer.concat(frames));
      const close = await client.closeFrame();
      assert.equal(close.code, code);
      assert.match(close.reason, reason);
      assert.equal(close.frame.rsv, 0, 'control frames are never compressed');
      const [[err], [closeCode]] = await Promise.all([error, closed]);
      assert.equal(closeCode, code);
      assert.match(err.message, reason);
      client.destroy();
    });
  }

  test('RSV1 from a client that did not negotiate the extension is still 1002', async () => {
    const client = await RawClient.open(server.port);
    client.send(clientFrame(1, HELLO, { rsv: 4 }));
    const close = await client.closeFrame();
    assert.deepEqual([close.code, close.reason], [1002, 'RSV bits set with no extension negotiated']);
    client.destroy();
  });

  test('cuts a 1 GiB inflate bomb in 10 KB fragments at maxPayload with 1009; RSS stays far from 1 GiB', async (t) => {
    // Deflate's best ratio is about 1032:1: 1 GiB of zeros takes about 1 MB
    // (64 chained copies of a sync-flushed 16 MiB block).
    const block = zlib.deflateRawSync(Buffer.alloc(16 * MiB), { level: 9, finishFlush: zlib.constants.Z_SYNC_FLUSH });
    const bomb = Buffer.concat(Array.from({ length: 64 }, () => block)).subarray(0, -4);
    const frames: Buffer[] = [];
    for (let i = 0; i < bomb.length; i += 10_000) {
      const last = i + 10_000 >= bomb.length;
      frames.push(clientFrame(i === 0 ? 1 : 0, bomb.subarray(i, i + 10_000), { rsv: i === 0 ? 4 : 0, fin: last }));
    }
    const client = await RawClient.open(server.port, '/', { 'Sec-WebSocket-Extensions': OFFER });
    const closed = closeEvent(server, lastFd(server));
    let messages = 0;
    const count = (): number => messages++;
    server.on('message', count);
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
    try {
      client.send(Buffer.concat(frames));
      const close = await client.closeFrame(20_000);
      assert.deepEqual([close.code, close.reason], [1009, 'message larger than maxPayload']);
      assert.equal((await closed)[0], 1009);
    } finally {
      clearInterval(sampler);
      server.removeListener('message', count);
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    const growth = peak - rssBefore;
    assert.equal(messages, 0);
    // maxPayload is 2 MiB; a generous margin, still 10x below the bomb's size.
    assert.ok(growth < 100 * MiB, `RSS grew by ${(growth / MiB).toFixed(1)} MiB`);
    t.diagnostic(`bomb of ${bomb.length} B (1 GiB inflated): peak RSS growth ${(growth / MiB).toFixed(1)} MiB`);
    client.destroy();
  });
});

/** Opens a ws client; resolves with it and its fd. */
async function connect(
  server: Server,
  perMessageDeflate: WebSocket.ClientOptions['perMessageDeflate'],
): Promise<{ ws: WebSocket; fd: number; extensions: string | undefined }> {
  const opened = waitFor<[number]>(server, 'open');
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/`, { perMessageDeflate });
  const upgrade = waitFor<[{ headers: Record<string, string | undefined> }]>(ws, 'upgrade');
  await waitFor(ws, 'open');
  const [fd] = await opened;
  const [response] = await upgrade;
  return { ws, fd, extensions: response.headers['sec-websocket-extensions'] };
}

/** `promise`, or a rejection after `ms` (the timer cleared either way). */
async function within<T>(promise: Promise<T>, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function nextMessage(ws: WebSocket, ms = 10_000): Promise<[Buffer, boolean]> {
  return waitFor<[Buffer, boolean]>(ws, 'message', ms);
}

const settings: [string, ServerOptions['perMessageDeflate'], string][] = [
  ['without context takeover (the defaults)', true, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
  ['with context takeover', { serverNoContextTakeover: false, clientNoContextTakeover: false }, 'permessage-deflate'],
  ['with small windows', { serverMaxWindowBits: 9, clientMaxWindowBits: 8 }, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=8'],
];

for (const [label, perMessageDeflate, agreed] of settings) {
  describe(`round trips with the ws client ${label}`, () => {
    let server: Server;
    before(async () => {
      server = await startServer({ perMessageDeflate });
    });
    after(() => server.stop({ timeout: 200 }));

    test('negotiates the expected parameters', async () => {
      const { ws, extensions } = await connect(server, { threshold: 0 });
      assert.equal(extensions, agreed);
      ws.close();
    });

    const payloads: [string, () => Buffer | string][] = [
      ['a short text', () => 'hello, compressed world'],
      ['a 60 KiB JSON text', () => Array.from({ length: 20 }, (_, i) => json(i)).join('\n').slice(0, 60 * 1024)],
      ['an empty binary message', () => Buffer.alloc(0)],
      ['a 1 MiB incompressible binary', () => Buffer.from(Array.from({ length: MiB }, (_, i) => (i * 2654435761) >>> 24))],
      ['a 2 MiB (maxPayload) compressible binary', () => Buffer.alloc(2 * MiB, 'abc')],
      ['non-ASCII text', () => '你好, wörld! '.repeat(5000)],
    ];
    for (const [name, make] of payloads) {
      test(`echoes ${name} both ways compressed`, async () => {
        const { ws, fd } = await connect(server, { threshold: 0 });
        const data = make();
        const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
        const before = server.getClientInfo(fd)!;
        ws.send(data, { binary: typeof data !== 'string' });
        const [echoed, isBinary] = await nextMessage(ws);
        assert.equal(isBinary, typeof data !== 'string');
        assert.ok(echoed.equals(Buffer.from(data)), 'byte-identical');
        const after = server.getClientInfo(fd)!;
        if (name.includes('compressible') || name.includes('JSON') || name.includes('non-ASCII')) {
          // Compressed both ways: far fewer bytes on the wire than the message.
          const inBytes = after.bytesIn - before.bytesIn;
          const outBytes = after.bytesOut - before.bytesOut;
          if (!name.includes('incompressible')) {
            assert.ok(inBytes < size / 4, `client compressed: ${inBytes} B on the wire for ${size} B`);
            assert.ok(outBytes < size / 4, `server compressed: ${outBytes} B on the wire for ${size} B`);
          }
        }
        ws.close();
      });
    }

    test('inflates a fragmented compressed message from ws fragment by fragment', async () => {
      const { ws } = await connect(server, { threshold: 0 });
      const got = waitFor<[{ data: string }]>(server, 'message');
      const parts = [json(1), json(2), '', json(3)];
      for (let i = 0; i < parts.length; i++) ws.send(parts[i], { fin: i === parts.length - 1, compress: true });
      assert.equal((await got)[0].data, parts.join(''));
      ws.close();
    });

    test('keeps message order both ways while zlib works (compressed and plain mixed)', async () => {
      const { ws, fd } = await connect(server, { threshold: 100 });
      const count = 60;
      const sent = Array.from({ length: count }, (_, i) => (i % 3 === 0 ? `small ${i}` : `${i}:${json(i)}`));
      const received: string[] = [];
      const done = new Promise<void>((resolve) => {
        ws.on('message', (data) => {
          received.push(String(data));
          if (received.length === count * 2) resolve();
        });
      });
      for (const message of sent) ws.send(message);
      // And from the server: a compressed push followed by plain ones in the same tick.
      for (const message of sent) server.push(fd, `push ${message}`, OPCODE.TEXT, true, message.startsWith('small') ? false : undefined);
      await within(done);
      assert.deepEqual(received.filter((m) => m.startsWith('push ')), sent.map((m) => `push ${m}`));
      assert.deepEqual(received.filter((m) => !m.startsWith('push ')), sent);
      ws.close();
    });

    test('a compressed message over maxPayload once inflated is closed with 1009', async () => {
      const { ws } = await connect(server, { threshold: 0 });
      ws.send(Buffer.alloc(2 * MiB + 1));
      const [code] = await waitFor<[number, Buffer]>(ws, 'close');
      assert.equal(code, 1009);
    });

    test('a ws client without compression still gets plain frames', async () => {
      const { ws, fd, extensions } = await connect(server, false);
      assert.equal(extensions, undefined);
      assert.equal(server.getClientInfo(fd)?.perMessageDeflate, false);
      const text = json(1).repeat(10);
      ws.send(text);
      assert.equal(String((await nextMessage(ws))[0]), text);
      ws.close();
    });
  });
}

describe('context takeover on the wire', () => {
  test('with takeover a repeated message costs a fraction of the first; without, the same each time', async () => {
    for (const [perMessageDeflate, shrinks] of [
      [{ serverNoContextTakeover: false }, true],
      [true, false],
    ] as const) {
      const server = await startServer({ perMessageDeflate });
      try {
        const { ws, fd } = await connect(server, { threshold: 0 });
        const text = json(42);
        const sizes: number[] = [];
        for (let i = 0; i < 3; i++) {
          const before = server.getClientInfo(fd)!.bytesOut;
          server.push(fd, text);
          assert.equal(String((await nextMessage(ws))[0]), text);
          sizes.push(server.getClientInfo(fd)!.bytesOut - before);
        }
        if (shrinks) assert.ok(sizes[1] < sizes[0] / 5 && sizes[2] < sizes[0] / 5, `sizes ${sizes}`);
        else assert.deepEqual([sizes[1], sizes[2]], [sizes[0], sizes[0]]);
        ws.close();
      } finally {
        await server.stop({ timeout: 200 });
      }
    }
  });
});

describe('broadcast and publish with compression', () => {
  test('compress once and send the same RSV1 frame to every compressing recipient, plain frames to the others', async () => {
    const server = await startServer({ perMessageDeflate: true });
    const compressOnce = DeflateShared.prototype.compressOnce;
    let compressions = 0;
    DeflateShared.prototype.compressOnce = function (this: DeflateShared, ...args) {
      compressions++;
      return compressOnce.apply(this, args);
    };
    try {
      const a = await RawClient.open(server.port, '/', { 'Sec-WebSocket-Extensions': OFFER });
      const fdA = lastFd(server);
      const b = await RawClient.open(server.port, '/', { 'Sec-WebSocket-Extensions': OFFER });
      const fdB = lastFd(server);
      const p = await RawClient.open(server.port);
      const fdP = lastFd(server);
      const text = json(7);
      assert.equal(server.broadcast(text), 3);
      assert.equal(compressions, 1, 'compressed once for the broadcast');
      for (const fd of [fdA, fdB, fdP]) server.subscribe(fd, 'quotes');
      assert.equal(server.publish('quotes', Buffer.from(text), { opcode: OPCODE.BINARY }), 3);
      assert.equal(compressions, 2, 'and once for the publish');
      // Below the threshold nothing is compressed; compress: false forbids, true forces.
      server.broadcast('tiny');
      server.broadcast(text, { compress: false });
      server.publish('quotes', 'tiny forced', { compress: true });
      assert.equal(compressions, 3);
      for (const c of [a, b, p]) await c.until(() => c.frames().length >= 5);
      const [fa, fp] = [a, p].map((c) => c.frames());
      assert.deepEqual(fa.map((f) => f.rsv), [4, 4, 0, 0, 4]);
      assert.deepEqual(fp.map((f) => f.rsv), [0, 0, 0, 0, 0]);
      // The very same bytes for both compressing recipients.
      assert.deepEqual(a.body, b.body);
      assert.equal(inflate(fa[0].payload).toString(), text);
      assert.deepEqual([fa[1].opcode, inflate(fa[1].payload).toString()], [OPCODE.BINARY, text]);
      assert.equal(inflate(fa[4].payload).toString(), 'tiny forced');
      assert.equal(fp[0].payload.toString(), text);
      assert.ok(fa[0].payload.length < text.length / 4);
      for (const c of [a, b, p]) c.destroy();
    } finally {
      DeflateShared.prototype.compressOnce = compressOnce;
      await server.stop({ timeout: 200 });
    }
  });

  test('recipients with server context takeover compress with their own context, in order with their other messages', async () => {
    const server = await startServer({ perMessageDeflate: { serverNoContextTakeover: false } });
    try {
      const clients = [await connect(server, { threshold: 0 }), await connect(server, { threshold: 0 })];
      const texts = [json(1), 'short', json(2)];
      const received = clients.map(({ ws }) => {
        const got: string[] = [];
        return new Promise<string[]>((resolve) =>
          ws.on('message', (data) => {
            got.push(String(data));
            if (got.length === 4) resolve(got);
          }),
        );
      });
      for (const t of texts) server.broadcast(t);
      server.push(clients[0].fd, 'after');
      server.push(clients[1].fd, 'after');
      for (const got of await within(Promise.all(received))) assert.deepEqual(got, [...texts, 'after']);
      for (const { ws } of clients) ws.close();
    } finally {
      await server.stop({ timeout: 200 });
    }
  });
});

describe('zlib contexts over a connection\'s life', () => {
  test('with takeover each connection holds its two contexts until it closes; the defaults hold none while idle', async () => {
    for (const [perMessageDeflate, held] of [
      [{ serverNoContextTakeover: false, clientNoContextTakeover: false }, 2],
      [true, 0],
    ] as const) {
      const server = await startServer({ perMessageDeflate });
      const shared = coreOf(server).deflateShared!;
      try {
        const clients = [];
        for (let i = 0; i < 5; i++) clients.push(await connect(server, { threshold: 0 }));
        for (const { ws } of clients) {
          ws.send(json(1));
          assert.equal(String((await nextMessage(ws))[0]), json(1));
        }
        // The defaults keep at most the pooled contexts (one of each kind here), not one per connection.
        assert.equal(shared.contexts, held === 2 ? 10 : 2);
        const closed = clients.map(({ fd }) => closeEvent(server, fd));
        for (const { ws } of clients) ws.close();
        await Promise.all(closed);
        assert.equal(shared.contexts, held === 2 ? 0 : 2, 'contexts of closed connections are freed');
      } finally {
        await server.stop({ timeout: 200 });
      }
      assert.equal(shared.contexts, 0, 'stop() frees the pools');
    }
  });
});
