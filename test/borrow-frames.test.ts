/**
 * `borrowFrames`: a received frame is lent to its `message` listener only,
 * and the native transport takes back the memory of a batch nobody kept as
 * soon as its delivery is over (src/lease.ts). With real `ws` clients:
 *
 * - the frame reads and relays inside its listener, and every use after it
 *   (`data`, `payload`, `push`, `broadcast`, `publish`) throws
 *   `FrameExpiredError`, even when the listener threw;
 * - what the listener read stays the app's, whatever is read after it;
 * - relayed messages arrive whole where the batch must be kept: input held
 *   by a paused parser, compressed messages on their way to zlib, frames
 *   queued into another server's Node stream that is not being read, and
 *   frames whose flush a throwing nextTick put off;
 * - on the native transport the batch's blocks come back at once (a handful
 *   made for megabytes read), which is what the option is for.
 *
 * Every test runs on every backend (CI runs the suite with the native
 * transport, over Node's sockets and in pure JS); only the block count is the
 * native transport's own.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { FrameExpiredError, OPCODE, Server, type Frame } from '../src/index.js';
import { transportBlocks } from '../src/native.js';
import { closeAfterEach, nodeCommand } from './helpers.js';

const KiB = 1024;

/** What each test opened is closed after it. */
const { later, startServer } = closeAfterEach();

/** Opens a `ws` client and waits for its `open`, bounded. */
async function connect(port: number, options: WebSocket.ClientOptions = {}): Promise<WebSocket> {
  const client = new WebSocket(`ws://127.0.0.1:${port}`, options);
  later(() => client.terminate());
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    once(client, 'open'),
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('no open within 5 s')), 5000))),
  ]).finally(() => clearTimeout(timer));
  return client;
}

/** Message `seq` of client `id`: `size` bytes, its seq and id in front, the rest a pattern of both. */
function message(id: number, seq: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (id * 31 + seq * 7 + i) & 0xff;
  b.writeUInt32BE(seq, 0);
  b.writeUInt32BE(id, 4);
  return b;
}

/** Collects what a client receives as Buffers; `until(n)` waits for n of them, bounded. */
function collect(client: WebSocket): { got: Buffer[]; until(n: number, ms?: number): Promise<void> } {
  const got: Buffer[] = [];
  let wake: (() => void) | null = null;
  client.on('message', (data: Buffer) => {
    got.push(Buffer.from(data));
    wake?.();
  });
  return {
    got,
    until(n, ms = 10_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`got ${got.length} of ${n} messages within ${ms} ms`)), ms);
        const check = (): void => {
          if (got.length < n) return;
          clearTimeout(timer);
          wake = null;
          resolve();
        };
        wake = check;
        check();
      });
    },
  };
}

describe('borrowFrames', () => {
  test('must be a boolean', () => {
    assert.throws(() => new Server({ borrowFrames: 'yes' as unknown as boolean }), { name: 'TypeError', message: /borrowFrames must be a boolean/ });
  });

  test('a frame reads and relays inside its listener; every use after it throws FrameExpiredError', async () => {
    const seen: { frame: Frame; data: string | Buffer }[] = [];
    const server = await startServer({ borrowFrames: true }, (s) => {
      s.on('message', (frame) => {
        seen.push({ frame, data: frame.data });
        s.push(frame.fd, frame);
      });
    });
    const client = await connect(server.port);
    const inbox = collect(client);
    client.send('hello');
    client.send(Buffer.from([1, 2, 3]));
    await inbox.until(2);
    assert.deepEqual(inbox.got.map((b) => b.toString('hex')), [Buffer.from('hello').toString('hex'), '010203']);
    assert.equal(seen[0].data, 'hello');
    assert.deepEqual(seen[1].data, Buffer.from([1, 2, 3]));
    for (const { frame } of seen) {
      // What the frame says of itself stays.
      assert.equal(frame.fd, seen[0].frame.fd);
      assert.ok(frame.opcode === OPCODE.TEXT || frame.opcode === OPCODE.BINARY);
      const uses: [string, () => unknown][] = [
        ['data', () => frame.data],
        ['payload', () => frame.payload],
        ['push', () => server.push(frame.fd, frame)],
        ['push as a fragment', () => server.push(frame.fd, frame, OPCODE.BINARY, false)],
        ['broadcast', () => server.broadcast(frame)],
        ['publish', () => server.publish('t', frame)],
      ];
      for (const [what, use] of uses) {
        assert.throws(use, (error: unknown) => {
          assert.ok(error instanceof FrameExpiredError, `${what}: ${String(error)}`);
          assert.ok(error instanceof TypeError);
          assert.equal(error.code, 'ERR_FRAME_EXPIRED');
          return true;
        });
      }
    }
    // Nothing more reached the client.
    client.send('x');
    await inbox.until(3);
    assert.equal(inbox.got[2].toString(), 'x');
    client.close();
    await server.stop();
  });

  test('a listener that throws still lends its frame only', async () => {
    let kept: Frame | null = null;
    const server = await startServer({ borrowFrames: true }, (s) => {
      s.on('error', () => {});
      s.on('message', (frame) => {
        kept = frame;
        throw new Error('listener failed');
      });
    });
    const client = await connect(server.port);
    client.send('boom');
    const [code] = (await once(client, 'close')) as [number];
    assert.equal(code, 1011);
    assert.ok(kept !== null);
    assert.throws(() => kept!.data, FrameExpiredError);
    await server.stop();
  });

  test('without it a frame is the app\'s to keep (read after an await)', async () => {
    const late: (string | Buffer)[] = [];
    const server = await startServer({}, (s) => {
      s.on('message', async (frame) => {
        await new Promise((resolve) => setImmediate(resolve));
        late.push(frame.data);
        s.push(frame.fd, frame);
      });
    });
    const client = await connect(server.port);
    const inbox = collect(client);
    const big = message(1, 1, 64 * KiB);
    client.send('later');
    client.send(big);
    await inbox.until(2);
    assert.equal(late[0], 'later');
    assert.ok(big.equals(late[1] as Buffer));
    assert.ok(big.equals(inbox.got[1]));
    client.close();
    await server.stop();
  });

  test('what a listener read stays intact while many more messages are read', async () => {
    const kept = new Map<string, Buffer | string>();
    const server = await startServer({ borrowFrames: true }, (s) => {
      s.on('message', (frame) => {
        const data = frame.data;
        const key = typeof data === 'string' ? data.slice(0, 12) : `${data.readUInt32BE(4)}:${data.readUInt32BE(0)}`;
        kept.set(key, data);
        s.push(frame.fd, 'ok');
      });
    });
    const clients = await Promise.all([1, 2, 3].map(() => connect(server.port)));
    const inboxes = clients.map(collect);
    const rounds = 40;
    for (let seq = 1; seq <= rounds; seq++) {
      clients.forEach((client, id) => {
        // Large enough that the native transport lends its batches.
        client.send(message(id, seq, 48 * KiB + seq));
        client.send(`text:${String(id).padStart(2, '0')}:${String(seq).padStart(3, '0')}:${'y'.repeat(20 * KiB)}`);
      });
    }
    await Promise.all(inboxes.map((inbox) => inbox.until(rounds * 2)));
    for (let id = 0; id < clients.length; id++) {
      for (let seq = 1; seq <= rounds; seq++) {
        const bytes = kept.get(`${id}:${seq}`);
        assert.ok(Buffer.isBuffer(bytes) && bytes.equals(message(id, seq, 48 * KiB + seq)), `binary ${id}:${seq} changed`);
        const text = kept.get(`text:${String(id).padStart(2, '0')}:${String(seq).padStart(3, '0')}:`);
        assert.ok(typeof text === 'string' && text.length === 12 + 20 * KiB, `text ${id}:${seq}`);
      }
    }
    for (const client of clients) client.close();
    await server.stop();
  });

  test('relayed messages arrive whole, and the native transport reads into the same few blocks', async () => {
    const server = await startServer({ borrowFrames: true });
    const clients = await Promise.all(Array.from({ length: 8 }, () => connect(server.port)));
    const before = transportBlocks?.() ?? null;
    const rounds = 150;
    await Promise.all(
      clients.map(async (client, id) => {
        const inbox = collect(client);
        for (let seq = 1; seq <= rounds; seq++) {
          const sent = message(id, seq, 16 * KiB + ((seq * 997) % (48 * KiB)));
          client.send(sent);
          await inbox.until(seq);
          assert.ok(inbox.got[seq - 1].equals(sent), `client ${id} message ${seq} came back changed`);
        }
      }),
    );
    const after = transportBlocks?.() ?? null;
    if (server.stats().transport === 'native' && before !== null && after !== null) {
      // About 8 x 150 x 40 KiB = 47 MiB read: without the option the blocks
      // would come back only as V8 frees them, tens of MiB later.
      assert.ok(after[0] - before[0] <= 8, `blocks made: ${before[0]} -> ${after[0]}`);
    }
    for (const client of clients) client.close();
    await server.stop();
  });

  test('input held while a throttled connection is paused is kept', async () => {
    let dropped = 0;
    const server = await startServer({ borrowFrames: true, maxBackpressure: 64 * KiB }, (s) => {
      s.on('dropped', () => dropped++);
    });
    const client = await connect(server.port);
    const inbox = collect(client);
    // The client stops reading: the echoes fill the server's queue, and one
    // larger than maxBackpressure throttles the connection inside its
    // listener, so the parser holds the rest of the batch until it drains.
    const socket = (client as unknown as { _socket: import('node:net').Socket })._socket;
    socket.pause();
    // More than the kernel's socket buffers take, so that the server's queue fills.
    const count = 150;
    for (let seq = 1; seq <= count; seq++) client.send(message(7, seq, 100 * KiB));
    await new Promise((resolve) => setTimeout(resolve, 300));
    socket.resume();
    const deadline = Date.now() + 15_000;
    while (inbox.got.length + dropped < count && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(inbox.got.length + dropped, count, `${inbox.got.length} echoes and ${dropped} dropped of ${count}`);
    let last = 0;
    for (const echo of inbox.got) {
      const seq = echo.readUInt32BE(0);
      assert.ok(seq > last, `echo ${seq} after ${last}`);
      assert.ok(echo.equals(message(7, seq, 100 * KiB)), `echo ${seq} changed`);
      last = seq;
    }
    assert.ok(inbox.got.length > 0);
    client.close();
    await server.stop();
  });

  test('compressed messages, and relays to a compressing connection, arrive whole', async () => {
    const server = await startServer({ borrowFrames: true, perMessageDeflate: true });
    const client = await connect(server.port, { perMessageDeflate: { threshold: 0 } });
    assert.match(client.extensions, /permessage-deflate/);
    const inbox = collect(client);
    // Mostly random bytes, which deflate cannot shrink: the batches are
    // large enough to be lent, and the parser holds the rest of one while
    // zlib inflates a message in its threadpool.
    const count = 60;
    const sent = Array.from({ length: count }, (_, i) =>
      i % 4 === 3 ? Buffer.alloc(40 * KiB, i) : Buffer.concat([message(3, i + 1, 8), randomBytes(20 * KiB + i * 500)]),
    );
    for (const m of sent) client.send(m);
    await inbox.until(count, 20_000);
    for (let i = 0; i < count; i++) assert.ok(inbox.got[i].equals(sent[i]), `message ${i + 1} came back changed`);
    client.close();
    await server.stop();
  });

  test('frames relayed from a plain connection to a compressing one arrive whole', async () => {
    let target = -1;
    // Room for every message while zlib works (none is dropped for backpressure).
    const server = await startServer({ borrowFrames: true, perMessageDeflate: true, maxBackpressure: 64 * 1024 * KiB }, (s) => {
      s.on('message', (frame) => {
        // zlib compresses the relayed bytes in its threadpool, after the delivery.
        if (target >= 0) s.push(target, frame);
      });
    });
    const receiver = await connect(server.port, { perMessageDeflate: { threshold: 0 } });
    assert.match(receiver.extensions, /permessage-deflate/);
    target = Math.max(...server.connections);
    const sender = await connect(server.port, { perMessageDeflate: false });
    const inbox = collect(receiver);
    const sent = Array.from({ length: 40 }, (_, i) => Buffer.concat([message(4, i + 1, 8), randomBytes(30 * KiB + i * 700)]));
    for (const m of sent) sender.send(m);
    await inbox.until(sent.length, 20_000);
    for (let i = 0; i < sent.length; i++) assert.ok(inbox.got[i].equals(sent[i]), `message ${i + 1} came back changed`);
  });

  test("frames relayed into another server's Node stream that is not being read arrive whole", async () => {
    const sink = await startServer({ nativeTransport: false, maxBackpressure: 256 * 1024 * KiB }, (s) => s.on('message', () => {}));
    const sinkClient = await connect(sink.port);
    const [sinkFd] = [...sink.connections];
    const inbox = collect(sinkClient);
    const socket = (sinkClient as unknown as { _socket: import('node:net').Socket })._socket;
    socket.pause();
    const server = await startServer({ borrowFrames: true }, (s) => {
      s.on('message', (frame) => {
        sink.push(sinkFd, frame);
      });
    });
    const client = await connect(server.port);
    // More than the kernel's socket buffers take: the sink's stream queues the rest.
    const count = 200;
    for (let seq = 1; seq <= count; seq++) client.send(message(5, seq, 64 * KiB));
    // The sink's stream fills and queues while the sender's batches are delivered.
    await new Promise((resolve) => setTimeout(resolve, 300));
    socket.resume();
    await inbox.until(count, 15_000);
    for (let seq = 1; seq <= count; seq++) assert.ok(inbox.got[seq - 1].equals(message(5, seq, 64 * KiB)), `message ${seq} changed`);
    client.close();
    sinkClient.close();
    await server.stop();
    await sink.stop();
  });

  test('a nextTick that throws in a delivery: the batch is kept for the flush that runs later', async () => {
    // In a child: the throw must reach an uncaughtException handler, which
    // the test runner's own process must not have.
    const fixture = fileURLToPath(new URL('./fixtures/borrow-tick-throw.js', import.meta.url));
    const [command, args] = nodeCommand([fixture]);
    const out = await new Promise<string>((resolve, reject) => {
      execFile(command, args, { timeout: 20_000 }, (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout)));
    });
    const result = JSON.parse(out.trim().split('\n').pop()!) as { echoes: number; bad: number; thrown: number };
    assert.deepEqual(result, { echoes: 60, bad: 0, thrown: 60 });
  });
});
