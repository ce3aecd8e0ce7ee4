/**
 * Exceptions thrown by the application's own listeners: they must never put
 * HTTP bytes on an established WebSocket, desynchronise a connection's
 * parser, or touch other connections. With an 'error' listener the server
 * reports them there and closes that connection with 1011; without one they
 * surface as uncaught exceptions, as a throwing listener does anywhere in Node.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import WebSocket from 'ws';
import { clientFrame, closeEvent, lastFd, RawClient, startServer, waitFor } from './helpers.js';

describe('exceptions in listeners', () => {
  test("an 'open' listener that throws: reported as an error, the connection closed with 1011, no HTTP 500 on the wire", async () => {
    const server = await startServer({}, (s) => {
      s.on('open', (_fd, request) => {
        if (request.path === '/boom') throw new Error('open failed');
      });
    });
    try {
      const errored = waitFor<[Error, number]>(server, 'error');
      const client = await RawClient.open(server.port, '/boom');
      const [error, fd] = await errored;
      assert.equal(error.message, 'open failed');
      assert.ok(fd > 0);
      const close = await client.closeFrame();
      assert.equal(close.code, 1011);
      assert.doesNotMatch(client.body.toString('latin1'), /HTTP\/1\.1 500/, 'no HTTP response after the 101');
      client.destroy();
      // Other connections are untouched.
      const ws = new WebSocket(`ws://127.0.0.1:${server.port}/fine`);
      await waitFor(ws, 'open');
      ws.send('still works');
      const [data] = await waitFor<[Buffer]>(ws, 'message');
      assert.equal(data.toString(), 'still works');
      ws.close();
    } finally {
      await server.stop({ timeout: 200 });
    }
  });

  test("a 'message' listener that throws: reported, closed with 1011, and the rest of the chunk is not misparsed", async () => {
    let seen: string[] = [];
    const server = await startServer({}, (s) => {
      s.on('message', (frame) => {
        seen.push(String(frame.data));
        if (frame.data === 'boom') throw new Error('message failed');
        s.push(frame.fd, frame);
      });
    });
    try {
      const good = await RawClient.open(server.port);
      const bad = await RawClient.open(server.port);
      const badFd = lastFd(server);
      const errored = waitFor<[Error, number]>(server, 'error');
      const closed = closeEvent(server, badFd);
      seen = [];
      // Three messages in one chunk: the second makes the listener throw.
      bad.send(Buffer.concat([clientFrame(1, 'one'), clientFrame(1, 'boom'), clientFrame(1, 'three')]));
      const [error, fd] = await errored;
      assert.deepEqual([error.message, fd], ['message failed', badFd]);
      const [code] = await closed;
      assert.equal(code, 1011);
      assert.deepEqual(seen, ['one', 'boom'], 'nothing is delivered after the failure');
      good.send(clientFrame(1, 'hello'));
      await good.until(() => good.frames().length === 1);
      assert.equal(good.frames()[0].payload.toString(), 'hello');
      good.destroy();
      bad.destroy();
    } finally {
      await server.stop({ timeout: 200 });
    }
  });
});
