/**
 * Interop with the `ws` client, a real peer: payload sizes, fragmented sends,
 * ping/pong and close codes in both directions.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { OPCODE, type Server } from '../src/index.js';
import { closeEvent, startServer, waitFor } from './helpers.js';

const MiB = 1024 * 1024;

/** Opens a ws client; resolves with it and the fd the server gave it. */
async function connect(server: Server, path = '/'): Promise<{ ws: WebSocket; fd: number }> {
  const opened = waitFor<[number]>(server, 'open');
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}${path}`, { perMessageDeflate: false });
  await waitFor(ws, 'open');
  const [fd] = await opened;
  return { ws, fd };
}

function nextMessage(ws: WebSocket, ms = 10_000): Promise<[Buffer, boolean]> {
  return waitFor<[Buffer, boolean]>(ws, 'message', ms);
}

describe('interop with the ws client', () => {
  let server: Server;
  before(async () => {
    server = await startServer();
  });
  after(() => server.stop({ timeout: 200 }));

  for (const size of [0, 1, 125, 126, 65535, 65536, 2 * MiB]) {
    test(`echoes a ${size}-byte binary message and a ${size}-byte text message`, async () => {
      const { ws } = await connect(server);
      const binary = Buffer.alloc(size);
      for (let i = 0; i < size; i++) binary[i] = (i * 31) & 0xff;
      ws.send(binary, { binary: true });
      const [echoed, isBinary] = await nextMessage(ws);
      assert.equal(isBinary, true);
      assert.ok(echoed.equals(binary), 'binary echo is byte-identical');
      const text = 'é'.repeat(size >> 1) + 'a'.repeat(size & 1);
      ws.send(text);
      const [echoedText, textIsBinary] = await nextMessage(ws);
      assert.equal(textIsBinary, false);
      assert.equal(echoedText.toString(), text);
      ws.close();
    });
  }

  test('a ws message over maxPayload (2 MiB + 1) is closed with 1009', async () => {
    const { ws } = await connect(server);
    ws.send(Buffer.alloc(2 * MiB + 1));
    const [code] = await waitFor<[number, Buffer]>(ws, 'close');
    assert.equal(code, 1009);
  });

  test('a fragmented ws send arrives as one message with finish true', async () => {
    const { ws } = await connect(server);
    const got = waitFor<[{ data: string | Buffer; finish: boolean; opcode: number }]>(server, 'message');
    ws.send('Hel', { fin: false });
    ws.send('lo, ', { fin: false });
    ws.send('world', { fin: true });
    const [frame] = await got;
    assert.deepEqual([frame.data, frame.finish, frame.opcode], ['Hello, world', true, OPCODE.TEXT]);
    ws.close();
  });

  test('push with finish = false sends fragments that ws assembles into one message', async () => {
    const { ws, fd } = await connect(server);
    const received = nextMessage(ws);
    assert.equal(server.push(fd, 'part one, ', OPCODE.TEXT, false), true);
    assert.equal(server.push(fd, 'part two, ', OPCODE.CONTINUATION, false), true);
    assert.equal(server.push(fd, 'end', OPCODE.CONTINUATION, true), true);
    const [data, isBinary] = await received;
    assert.deepEqual([data.toString(), isBinary], ['part one, part two, end', false]);
    ws.close();
  });

  test('other messages wait behind a fragmented push; pings do not', async () => {
    const { ws, fd } = await connect(server);
    const messages: string[] = [];
    ws.on('message', (data) => messages.push(String(data)));
    const pinged = waitFor(ws, 'ping');
    server.push(fd, Buffer.from('a'), OPCODE.BINARY, false);
    server.push(fd, 'queued');
    server.ping(fd, 'hi');
    await pinged;
    assert.deepEqual(messages, [], 'nothing complete yet: the queued message waits');
    server.push(fd, Buffer.from('b'), OPCODE.CONTINUATION, true);
    await waitFor(ws, 'message');
    if (messages.length < 2) await waitFor(ws, 'message');
    assert.deepEqual(messages, ['ab', 'queued']);
    ws.close();
  });

  test('a continuation without a fragmented message in progress throws TypeError', async () => {
    const { ws, fd } = await connect(server);
    assert.throws(() => server.push(fd, 'x', OPCODE.CONTINUATION), TypeError);
    server.push(fd, 'x', OPCODE.TEXT, false);
    assert.throws(() => server.push(fd, 'y', OPCODE.TEXT, false), TypeError, 'a second fragmented message');
    server.push(fd, 'z', OPCODE.CONTINUATION);
    ws.close();
  });

  test('a string pushed with the binary opcode arrives as its UTF-8 bytes', async () => {
    const { ws, fd } = await connect(server);
    const received = nextMessage(ws);
    server.push(fd, 'receive from 1 的消息', OPCODE.BINARY);
    const [data, isBinary] = await received;
    assert.equal(isBinary, true);
    assert.ok(data.equals(Buffer.from('receive from 1 的消息')));
    ws.close();
  });

  test('typed arrays and ArrayBuffers are sent as binary bytes', async () => {
    const { ws, fd } = await connect(server);
    const received = nextMessage(ws);
    const view = new Uint16Array([0x0102, 0x0304]).subarray(1);
    server.push(fd, view, OPCODE.BINARY);
    const [data] = await received;
    assert.ok(data.equals(Buffer.from(view.buffer, view.byteOffset, view.byteLength)));
    ws.close();
  });

  test('answers a ws ping with a pong carrying its payload', async () => {
    const { ws } = await connect(server);
    const pong = waitFor<[Buffer]>(ws, 'pong');
    ws.ping('are you there');
    assert.equal((await pong)[0].toString(), 'are you there');
    ws.close();
  });

  test('server ping(fd) reaches ws, and its pong comes back as a pong event', async () => {
    const { ws, fd } = await connect(server);
    const pong = waitFor<[number, Buffer]>(server, 'pong');
    assert.equal(server.ping(fd, 'tick'), true);
    const [pongFd, payload] = await pong;
    assert.deepEqual([pongFd, payload.toString()], [fd, 'tick']);
    ws.close();
  });

  test('a ws close code and reason reach the close event, cleanly', async () => {
    const { ws, fd } = await connect(server);
    const closed = closeEvent(server, fd);
    ws.close(4321, 'client says bye');
    assert.deepEqual(await closed, [4321, 'client says bye', true]);
    const [code] = await waitFor<[number]>(ws, 'close');
    assert.equal(code, 4321, 'the server echoed the code');
  });

  test('disconnect(fd, code, reason) reaches ws with that code and reason', async () => {
    const { ws, fd } = await connect(server);
    const wsClosed = waitFor<[number, Buffer]>(ws, 'close');
    const closed = closeEvent(server, fd);
    server.disconnect(fd, 4000, 'bye from server');
    const [code, reason] = await wsClosed;
    assert.deepEqual([code, reason.toString()], [4000, 'bye from server']);
    assert.deepEqual(await closed, [4000, 'bye from server', true]);
  });

  test('a relayed frame keeps its opcode: binary stays binary', async () => {
    const { ws } = await connect(server);
    ws.send(Buffer.from([1, 2, 3]));
    const [data, isBinary] = await nextMessage(ws);
    assert.deepEqual([[...data], isBinary], [[1, 2, 3], true]);
    ws.close();
  });
});

describe('pushing from open', () => {
  test('push and disconnect work inside the open event', async () => {
    const server = await startServer({}, (s) => {
      s.on('open', (fd, req) => {
        s.push(fd, `welcome ${fd}`);
        if (req.path === '/kick') s.disconnect(fd, 4003, 'not today');
      });
    });
    try {
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}/`);
      const [welcome] = await nextMessage(ws);
      assert.match(welcome.toString(), /^welcome \d+$/);
      ws.close();
      const kicked = new WebSocket(`ws://127.0.0.1:${server.port}/kick`);
      const messages: string[] = [];
      kicked.on('message', (d) => messages.push(String(d)));
      const [code, reason] = await waitFor<[number, Buffer]>(kicked, 'close');
      assert.deepEqual([code, reason.toString()], [4003, 'not today']);
      assert.equal(messages.length, 1, 'the welcome went out before the close');
    } finally {
      await server.stop({ timeout: 200 });
    }
  });
});
