/**
 * Every framing rule of RFC 6455 through raw sockets: the close code and
 * reason the server actually puts on the wire, and the TCP close after it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Server } from '../src/index.js';
import { constants, deflateRawSync } from 'node:zlib';
import { clientFrame, closeEvent, lastFd, RawClient, startServer, upgradeRequest } from './helpers.js';

/** A permessage-deflate payload (RFC 7692 7.2.1: the trailing 00 00 ff ff removed). */
function compress(text: string): Buffer {
  const out = deflateRawSync(Buffer.from(text), { finishFlush: constants.Z_SYNC_FLUSH });
  return out.subarray(0, out.length - 4);
}

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const closeBody = (code: number, reason = ''): Buffer => {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code);
  b.write(reason, 2);
  return b;
};

describe('framing rules on the wire', () => {
  let server: Server;
  before(async () => {
    server = await startServer({ maxPayload: 64 * 1024 });
  });
  after(() => server.stop({ timeout: 100 }));

  /** Sends `input` (whole, or one byte per write) and expects a close frame with `code` then the TCP close. */
  async function expectClose(input: Buffer, code: number, reason: RegExp, bytewise = false): Promise<void> {
    const client = await RawClient.open(server.port);
    if (bytewise) await client.sendBytewise(input);
    else client.send(input);
    const close = await client.closeFrame();
    assert.equal(close.code, code);
    assert.match(close.reason, reason);
    assert.equal(close.frame.masked, false, 'server frames are never masked');
    await client.serverEnded();
    client.destroy();
  }

  const cases: [string, Buffer, number, RegExp][] = [
    ['an unmasked frame', clientFrame(1, 'hi', { mask: null }), 1002, /not masked/],
    ['RSV1 set with no extension', clientFrame(1, 'hi', { rsv: 4 }), 1002, /RSV/],
    ['RSV2 set', clientFrame(2, 'hi', { rsv: 2 }), 1002, /RSV/],
    ['RSV3 set', clientFrame(2, 'hi', { rsv: 1 }), 1002, /RSV/],
    ['reserved data opcode 3', clientFrame(3, 'hi'), 1002, /reserved opcode/],
    ['reserved control opcode 11', clientFrame(11, 'hi'), 1002, /reserved opcode/],
    ['a fragmented ping', clientFrame(9, 'hi', { fin: false }), 1002, /fragmented control/],
    ['a 126-byte ping', clientFrame(9, Buffer.alloc(126)), 1002, /125/],
    ['a continuation with nothing to continue', clientFrame(0, 'hi'), 1002, /continuation/],
    ['a new message inside a fragmented one', Buffer.concat([clientFrame(1, 'a', { fin: false }), clientFrame(2, 'b')]), 1002, /fragmented message/],
    ['a 64-bit length with the top bit set', clientFrame(2, Buffer.alloc(0), { length: 0x8000000000000001n }), 1002, /top bit/],
    ['a frame over maxPayload (header only)', clientFrame(2, Buffer.alloc(0), { length: 64 * 1024 + 1 }), 1009, /maxPayload/],
    ['fragments adding up past maxPayload', Buffer.concat([clientFrame(2, Buffer.alloc(40_000), { fin: false }), clientFrame(0, Buffer.alloc(40_000))]), 1009, /maxPayload/],
    ['invalid UTF-8 in a text message', clientFrame(1, hex('48 c3 28')), 1007, /UTF-8/],
    ['invalid UTF-8 in the first of two fragments', clientFrame(1, hex('ed a0 80'), { fin: false }), 1007, /UTF-8/],
    ['a close frame with a 1-byte body', clientFrame(8, hex('03')), 1002, /1 byte/],
    ['close code 1005', clientFrame(8, closeBody(1005)), 1002, /close code/],
    ['close code 1006', clientFrame(8, closeBody(1006)), 1002, /close code/],
    ['close code 1015', clientFrame(8, closeBody(1015)), 1002, /close code/],
    ['close code 999', clientFrame(8, closeBody(999)), 1002, /close code/],
    ['close code 5000', clientFrame(8, closeBody(5000)), 1002, /close code/],
    ['a close reason that is not UTF-8', clientFrame(8, Buffer.concat([closeBody(1000), hex('ff fe')])), 1007, /UTF-8/],
  ];

  for (const [name, input, code, reason] of cases) {
    test(`closes with ${code} on ${name}`, () => expectClose(input, code, reason));
  }

  test('closes with the same codes when every case arrives one byte per write', async () => {
    for (const [, input, code, reason] of cases.filter(([, input]) => input.length < 200)) {
      await expectClose(input, code, reason, true);
    }
  });

  test('reports protocol errors in stats() by close code and in the close event as not clean', async () => {
    const before = server.stats().errors[1002] ?? 0;
    const client = await RawClient.open(server.port);
    const closed = closeEvent(server, lastFd(server));
    client.send(clientFrame(3, 'x'));
    assert.deepEqual(await closed, [1002, 'reserved opcode', false]);
    assert.equal(server.stats().errors[1002], before + 1);
    client.destroy();
  });

  test('a protocol error on one connection leaves the others working', async () => {
    const good = await RawClient.open(server.port);
    const bad = await RawClient.open(server.port);
    bad.send(clientFrame(1, hex('ff')));
    await bad.closeFrame();
    good.send(clientFrame(1, 'still here'));
    await good.until(() => good.frames().length === 1);
    assert.equal(good.frames()[0].payload.toString(), 'still here');
    good.destroy();
    bad.destroy();
  });
});

describe('control frames and the closing handshake', () => {
  let server: Server;
  before(async () => {
    server = await startServer({ closeTimeout: 300 });
  });
  after(() => server.stop({ timeout: 100 }));

  test('answers a ping with a pong carrying the same payload, between fragments too', async () => {
    const client = await RawClient.open(server.port);
    client.send(Buffer.concat([clientFrame(1, 'ab', { fin: false }), clientFrame(9, 'ping-1'), clientFrame(0, 'cd')]));
    client.send(clientFrame(9, Buffer.alloc(125, 0x7a)));
    await client.until(() => client.frames().length === 3);
    const [pong, echo, pong2] = client.frames();
    assert.deepEqual([pong.opcode, pong.fin, pong.payload.toString()], [10, true, 'ping-1']);
    assert.deepEqual([echo.opcode, echo.payload.toString()], [1, 'abcd']);
    assert.deepEqual([pong2.opcode, pong2.payload], [10, Buffer.alloc(125, 0x7a)]);
    client.destroy();
  });

  test('accepts unsolicited pongs silently', async () => {
    const client = await RawClient.open(server.port);
    client.send(Buffer.concat([clientFrame(10, 'x'), clientFrame(1, 'after')]));
    await client.until(() => client.frames().length === 1);
    assert.equal(client.frames()[0].payload.toString(), 'after');
    client.destroy();
  });

  test('echoes the client close code, then closes TCP first; the close is clean', async () => {
    const client = await RawClient.open(server.port);
    const closed = closeEvent(server, lastFd(server));
    client.send(clientFrame(8, closeBody(4001, 'done')));
    const close = await client.closeFrame();
    assert.equal(close.code, 4001);
    await client.serverEnded();
    assert.deepEqual(await closed, [4001, 'done', true]);
    client.destroy();
  });

  test('answers an empty close frame with an empty close frame (1005 reported)', async () => {
    const client = await RawClient.open(server.port);
    const closed = closeEvent(server, lastFd(server));
    client.send(clientFrame(8, ''));
    const close = await client.closeFrame();
    assert.equal(close.frame.payload.length, 0);
    await client.serverEnded();
    assert.deepEqual(await closed, [1005, '', true]);
    client.destroy();
  });

  test('ignores data frames after the client close frame', async () => {
    const client = await RawClient.open(server.port);
    client.send(Buffer.concat([clientFrame(8, closeBody(1000)), clientFrame(1, 'too late')]));
    await client.serverEnded();
    assert.deepEqual(client.frames().map((f) => f.opcode), [8]);
    client.destroy();
  });

  test('disconnect() sends the code and reason and reports a clean close once the client answers', async () => {
    const client = await RawClient.open(server.port);
    const fd = lastFd(server);
    const closed = closeEvent(server, fd);
    assert.equal(server.disconnect(fd, 4000, 'kick'), true);
    assert.equal(server.isEstablished(fd), false, 'closing is not established');
    assert.equal(server.exist(fd), true, 'still exists until the TCP close');
    assert.equal(server.push(fd, 'late'), false, 'no data after a close frame');
    const close = await client.closeFrame();
    assert.deepEqual([close.code, close.reason], [4000, 'kick']);
    client.send(clientFrame(8, closeBody(4000)));
    await client.serverEnded();
    assert.deepEqual(await closed, [4000, 'kick', true]);
    assert.equal(server.exist(fd), false);
    client.destroy();
  });

  test('destroys the connection after closeTimeout when the client never answers the close', async () => {
    const client = await RawClient.open(server.port);
    const fd = lastFd(server);
    const closed = closeEvent(server, fd);
    const started = Date.now();
    server.disconnect(fd, 1000);
    await client.closeFrame();
    assert.deepEqual(await closed, [1000, '', false]);
    assert.ok(Date.now() - started >= 250, 'waited for closeTimeout (300 ms)');
    await client.until(() => client.closed, 3000);
  });

  test('reports 1006 when the TCP connection drops without a close frame', async () => {
    const client = await RawClient.open(server.port);
    const closed = closeEvent(server, lastFd(server));
    client.destroy();
    assert.deepEqual(await closed, [1006, '', false]);
  });

  test('close(fd) cuts the TCP connection at once, without a close frame', async () => {
    const client = await RawClient.open(server.port);
    const fd = lastFd(server);
    const closed = closeEvent(server, fd);
    assert.equal(server.close(fd), true);
    assert.deepEqual(await closed, [1006, '', false]);
    await client.until(() => client.closed);
    assert.equal(client.frames().length, 0);
    assert.equal(server.close(fd), false);
  });

  test('closes with 1002 when a close frame is the first frame of a half-sent message', async () => {
    const client = await RawClient.open(server.port);
    client.send(Buffer.concat([clientFrame(1, 'x', { fin: false }), clientFrame(8, hex('03'))]));
    const close = await client.closeFrame();
    assert.equal(close.code, 1002);
    client.destroy();
  });
});

describe('frames split across reads', () => {
  test('echoes every message when the input arrives one byte at a time', async () => {
    const server = await startServer();
    try {
      const client = await RawClient.open(server.port);
      const messages = ['', 'a', 'x'.repeat(125), 'y'.repeat(126), 'é😀'.repeat(100)];
      await client.sendBytewise(Buffer.concat(messages.map((m) => clientFrame(1, m))));
      await client.until(() => client.frames().length === messages.length);
      assert.deepEqual(client.frames().map((f) => f.payload.toString()), messages);
      client.destroy();
    } finally {
      await server.stop({ timeout: 100 });
    }
  });

  test('connections between messages share one parser: a frame cut short on one is not continued by another, and RSV1 is judged by each connection\'s own agreement', async () => {
    const got: [number, string][] = [];
    const server = await startServer({ perMessageDeflate: true }, (s) => {
      s.on('message', (frame) => void got.push([frame.fd, frame.opcode === 1 ? (frame.data as string) : '']));
    });
    const pause = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));
    try {
      const plain = await RawClient.open(server.port);
      const plainFd = lastFd(server);
      const deflated = await RawClient.open(server.port, '/', { 'Sec-WebSocket-Extensions': 'permessage-deflate' });
      const deflatedFd = lastFd(server);
      // plain: half a frame, then the first fragment of a message; deflated talks in between.
      const whole = clientFrame(1, 'plain-'.repeat(20));
      plain.send(whole.subarray(0, 40));
      await pause();
      deflated.send(clientFrame(1, 'deflated-one'));
      await pause();
      plain.send(whole.subarray(40));
      plain.send(clientFrame(1, 'frag-', { fin: false }));
      await pause();
      deflated.send(clientFrame(1, compress('deflated-two'), { rsv: 4 }));
      await pause();
      plain.send(clientFrame(0, 'ment'));
      await until(() => got.length === 4);
      assert.deepEqual(
        got.filter(([fd]) => fd === plainFd).map(([, text]) => text),
        ['plain-'.repeat(20), 'frag-ment'],
      );
      assert.deepEqual(
        got.filter(([fd]) => fd === deflatedFd).map(([, text]) => text),
        ['deflated-one', 'deflated-two'],
      );
      // A connection that has read nothing yet, among ones that agreed to
      // compression: RSV1 is still an error for it.
      const fresh = await RawClient.open(server.port);
      deflated.send(clientFrame(1, 'last'));
      await until(() => got.length === 5);
      fresh.send(clientFrame(1, compress('no'), { rsv: 4 }));
      assert.equal((await fresh.closeFrame()).code, 1002);
      plain.destroy();
      deflated.destroy();
      fresh.destroy();
    } finally {
      await server.stop({ timeout: 100 });
    }

    async function until(predicate: () => boolean): Promise<void> {
      const end = Date.now() + 5000;
      while (!predicate()) {
        if (Date.now() > end) throw new Error(`timed out with ${JSON.stringify(got)}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
  });

  test('reads frames that arrived with the upgrade request', async () => {
    const server = await startServer();
    try {
      const client = await RawClient.connect(server.port);
      client.send(Buffer.concat([Buffer.from(upgradeRequest('/')), clientFrame(1, 'early')]));
      await client.until(() => client.frames().length === 1);
      assert.equal(client.frames()[0].payload.toString(), 'early');
      client.destroy();
    } finally {
      await server.stop({ timeout: 100 });
    }
  });
});

