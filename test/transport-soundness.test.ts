/**
 * What keeps one connection's bytes away from another's on the native
 * transport (src/transport.ts, native/transport-*.cc), driven through the
 * transport itself where the server would hide it: a handle kept after its
 * connection closed names nothing once the slot serves a newer client; the
 * bytes the app is handed, and their ArrayBuffer, hold that connection's
 * bytes only; request heads are cut or refused on time; descriptors handed
 * off in a batch are not leaked when the transport closes during it.
 * The cross-talk stress test (stress.test.ts) covers the same ground at
 * random; these are its cases written down.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { describe, test } from 'node:test';
import { OPCODE, Server } from '../src/index.js';
import { nativeTransportAvailable, NativeTransport, type NativeWire } from '../src/transport.js';
import { clientFrame, parseFrames, RawClient, startServer, UPGRADE_ACCEPT, upgradeRequest, waitFor } from './helpers.js';

const RESPONSE_101 = Buffer.from(
  `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${UPGRADE_ACCEPT}\r\n\r\n`,
);

const skip =
  !nativeTransportAvailable || process.env.WAVECAST_NO_NATIVE_TRANSPORT !== undefined
    ? 'the native transport is not in use here (JS backend, not Linux, or WAVECAST_NO_NATIVE_TRANSPORT set)'
    : false;

/** A transport that accepts every head, with what it saw. */
function acceptingTransport(headCap?: number): {
  transport: NativeTransport;
  wires: NativeWire[];
  heads: Buffer[];
  http: net.Socket[];
  next(): Promise<NativeWire>;
} {
  const wires: NativeWire[] = [];
  const heads: Buffer[] = [];
  const http: net.Socket[] = [];
  let waiting: ((wire: NativeWire) => void) | null = null;
  const transport = new NativeTransport(
    {
      onHead(wire, head) {
        heads.push(head);
        assert.ok(transport.accept(wire, RESPONSE_101));
        wires.push(wire);
        waiting?.(wire);
        waiting = null;
      },
      onHttp(socket) {
        http.push(socket);
      },
    },
    0,
    headCap,
  );
  return {
    transport,
    wires,
    heads,
    http,
    next: () => new Promise<NativeWire>((resolve) => (waiting = resolve)),
  };
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Waits (bounded) until `predicate` holds, checking every few ms. */
async function until(predicate: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Two raw clients accepted by `t` and not yet read from, with what writing to them through its binding needs. */
async function twoClients(t: ReturnType<typeof acceptingTransport>) {
  const port = t.transport.listen('127.0.0.1', 0, undefined, false);
  const a = await RawClient.open(port);
  const b = await RawClient.open(port);
  await until(() => t.wires.length === 2, 2000, 'both clients are pending');
  const handles = new Float64Array([t.wires[0].handle, t.wires[1].handle]);
  return { a, b, binding: t.transport.binding, handles, results: new Int32Array(2) };
}

/** Waits until `a` got `forA` and `b` got `forB`, then 50 ms more: nothing else came. Closes both. */
async function receivedOnly(a: RawClient, forA: string, b: RawClient, forB: string): Promise<void> {
  await a.until(() => a.body.length >= forA.length);
  await b.until(() => b.body.length >= forB.length);
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(a.body.toString(), forA);
  assert.equal(b.body.toString(), forB);
  a.destroy();
  b.destroy();
}

describe('native transport soundness', { skip }, () => {
  test('a handle kept after its connection closed is refused once the slot serves a newer client, which receives nothing meant for the old one', async () => {
    const t = acceptingTransport();
    const port = t.transport.listen('127.0.0.1', 0, undefined, false);
    try {
      const first = await RawClient.open(port);
      const old = t.wires[0];
      const closed = new Promise<void>((resolve) => old.attach({ receive() {}, peerEnded() {}, socketClosed: resolve }));
      old.destroy();
      await closed;
      first.destroy();
      const second = await RawClient.open(port);
      const fresh = t.wires[1];
      assert.equal(fresh.slot, old.slot, 'the slot is reused');
      assert.notEqual(fresh.handle, old.handle, 'with a new generation');
      const binding = t.transport.binding;
      const secret = Buffer.from('secret-for-the-old-client');
      assert.equal(binding.write(old.handle, secret, null), -1);
      assert.equal(binding.writev(old.handle, [secret]), -1);
      const results = new Int32Array(1);
      binding.writeBatch(new Float64Array([old.handle]), 1, secret, results, null);
      assert.equal(results[0], -1);
      results[0] = 0;
      binding.writeEach(new Float64Array([old.handle]), new Uint32Array([secret.length]), 1, secret, results);
      assert.equal(results[0], -1);
      binding.end(old.handle);
      binding.destroy(old.handle);
      binding.pause(old.handle);
      assert.equal(binding.peer(old.handle), undefined);
      // The new client is untouched: it still gets what is written to its own handle, and only that.
      assert.ok(binding.write(fresh.handle, Buffer.from('mine'), null) >= 0);
      await second.until(() => second.body.length >= 4);
      assert.equal(second.body.toString(), 'mine');
      assert.equal(second.closed || second.ended, false);
      second.destroy();
    } finally {
      t.transport.close();
    }
  });

  test('request heads arrive in a buffer of their own, apart from the bytes of data events', async () => {
    const t = acceptingTransport();
    const port = t.transport.listen('127.0.0.1', 0, undefined, false);
    const chunks: Buffer[] = [];
    try {
      const open = await RawClient.open(port);
      t.wires[0].attach({ receive: (chunk) => chunks.push(chunk), peerEnded() {}, socketClosed() {} });
      // A head and another client's data, in the kernel before the same loop turn.
      const late = net.connect(port, '127.0.0.1');
      await once(late, 'connect');
      const arrived = t.next();
      late.write(upgradeRequest('/', { Cookie: 'session=secret-cookie' }));
      open.send(clientFrame(OPCODE.BINARY, Buffer.alloc(64, 1)));
      await arrived;
      await until(() => chunks.length > 0, 5000, 'the data arrives');
      const head = t.heads[1];
      assert.match(head.toString('latin1'), /secret-cookie/);
      for (const chunk of chunks) {
        assert.notEqual(chunk.buffer, head.buffer, 'a data chunk shares the head buffer');
        assert.equal(Buffer.from(chunk.buffer).includes('secret-cookie'), false);
      }
      open.destroy();
      late.destroy();
    } finally {
      t.transport.close();
    }
  });

  test('descriptors handed off to HTTP in a batch during which the transport closes are closed, not leaked', async () => {
    const before = openFds();
    let calls = 0;
    const transport: NativeTransport = new NativeTransport(
      {
        onHead() {},
        onHttp(socket) {
          calls++;
          socket.destroy();
          transport.close();
        },
      },
      0,
    );
    const port = transport.listen('127.0.0.1', 0, undefined, false);
    const clients: net.Socket[] = [];
    for (let i = 0; i < 8; i++) {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => {});
      clients.push(socket);
    }
    await Promise.all(clients.map((socket) => once(socket, 'connect')));
    // Every request is in the kernel before the transport's next turn: one batch.
    for (const socket of clients) socket.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n');
    await until(() => calls > 0, 5000, 'the first hand-off');
    // Not events.once: it rejects on the 'error' (ECONNRESET) that comes before 'close' when the server resets.
    await Promise.all(clients.map((socket) => (socket.destroyed ? null : new Promise((resolve) => socket.once('close', resolve)))));
    assert.equal(calls, 1, 'no hand-off reaches a closed transport');
    await until(() => openFds() <= before, 5000, `descriptors are back to ${before} (now ${openFds()})`);
  });

  test('a head that never completes is cut after the hard cap even with no handshake timeout', async () => {
    const t = acceptingTransport(200);
    const port = t.transport.listen('127.0.0.1', 0, undefined, false);
    try {
      const client = await RawClient.connect(port);
      client.send('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      const started = Date.now();
      await client.serverEnded(5000);
      assert.ok(Date.now() - started >= 150, 'not before the cap');
      assert.equal(t.heads.length, 0);
    } finally {
      t.transport.close();
    }
  });

  test('writeEach gives each connection only its own range, and refuses ranges outside the bytes before sending any', async () => {
    const t = acceptingTransport();
    try {
      const { a, b, binding, handles, results } = await twoClients(t);
      const bytes = Buffer.from('for-a|for-b');
      // Past the end, and going backwards: nothing is written to anyone.
      assert.throws(() => binding.writeEach(handles, new Uint32Array([6, 12]), 2, bytes, results), RangeError);
      assert.throws(() => binding.writeEach(handles, new Uint32Array([6, 5]), 2, bytes, results), RangeError);
      assert.throws(() => binding.writeEach(handles, new Uint32Array([6, 11]), 3, bytes, results), TypeError);
      binding.writeEach(handles, new Uint32Array([6, 11]), 2, bytes, results);
      assert.deepEqual([...results], [0, 0]);
      await receivedOnly(a, 'for-a|', b, 'for-b');
    } finally {
      t.transport.close();
    }
  });

  test("writeEach's splices put batch ranges inside their own run only, and bad splices are refused before sending any", async () => {
    const t = acceptingTransport();
    try {
      const { a, b, binding, handles, results } = await twoClients(t);
      const bytes = Buffer.from('a1a2|b1');
      const ends = new Uint32Array([5, 7]);
      const batch = Buffer.from('XAAYBBZ');
      const write = (splices: number[], count = splices.length / 4): void =>
        binding.writeEach(handles, ends, 2, bytes, results, batch, new Uint32Array(splices), count);
      // Out of order, outside the run, past the batch, a backwards range, run past count, count past the array.
      assert.throws(() => write([1, 7, 4, 6, 0, 2, 1, 3]), RangeError);
      assert.throws(() => write([0, 6, 1, 3]), RangeError);
      assert.throws(() => write([0, 2, 5, 8]), RangeError);
      assert.throws(() => write([0, 2, 3, 1]), RangeError);
      assert.throws(() => write([2, 7, 0, 1]), RangeError);
      assert.throws(() => write([0, 2, 1, 3], 2), TypeError);
      assert.throws(() => write(Array.from({ length: 33 }, () => [0, 2, 1, 3]).flat()), RangeError, 'at most 32 a run');
      // a gets a1 AA a2 Z |, b gets b1 BB.
      write([0, 2, 1, 3, 0, 4, 6, 7, 1, 7, 4, 6]);
      assert.deepEqual([...results], [0, 0]);
      await receivedOnly(a, 'a1AAa2Z|', b, 'b1BB');
    } finally {
      t.transport.close();
    }
  });

  test('writev refuses an array of more than 2^20 buffers at once, without sending any', async () => {
    const t = acceptingTransport();
    const port = t.transport.listen('127.0.0.1', 0, undefined, false);
    try {
      const client = await RawClient.open(port);
      const handle = t.wires[0].handle;
      assert.throws(() => t.transport.binding.writev(handle, new Array<Uint8Array>(2 ** 20 + 1)), RangeError);
      assert.throws(() => t.transport.binding.writev(handle, [Buffer.from('x'), 'y' as unknown as Uint8Array]), TypeError);
      client.destroy();
    } finally {
      t.transport.close();
    }
  });
});

describe('bytes handed to the app', () => {
  test("a binary message's bytes and their ArrayBuffer hold only its own connection's bytes when many arrive in one turn", async () => {
    const seen = new Map<number, Buffer>();
    const server = await startServer({}, (s) => {
      s.on('message', (frame) => seen.set(frame.fd, frame.data as Buffer));
    });
    const clients: RawClient[] = [];
    try {
      for (let i = 0; i < 16; i++) clients.push(await RawClient.open(server.port, '/', { Cookie: `id=secret-${i}` }));
      // Every message is in the kernel before the server's next turn.
      clients.forEach((client, i) => client.send(clientFrame(OPCODE.BINARY, Buffer.alloc(300, 0x41 + i))));
      await until(() => seen.size === clients.length, 5000, 'every message arrives');
      for (const data of seen.values()) {
        const fill = data[0];
        assert.ok(data.every((byte) => byte === fill));
        const whole = Buffer.from(data.buffer);
        for (let i = 0; i < clients.length; i++) {
          if (0x41 + i === fill) continue;
          assert.equal(whole.includes(Buffer.alloc(8, 0x41 + i)), false, `another client's bytes in the ArrayBuffer of ${fill}`);
        }
        assert.equal(whole.includes('secret-'), false, 'a request head in the ArrayBuffer');
      }
    } finally {
      for (const client of clients) client.destroy();
      await server.stop({ timeout: 100 });
    }
  });

  test('a request head whose lines end in a bare LF gets 400 at once, not at the handshake timeout', async () => {
    const server = await startServer({ handshakeTimeout: 30_000 });
    try {
      const client = await RawClient.connect(server.port);
      client.send(upgradeRequest('/').replaceAll('\r\n', '\n'));
      await client.serverEnded(5000);
      assert.match(client.response || client.body.toString('latin1'), /^HTTP\/1\.1 400 /);
    } finally {
      await server.stop({ timeout: 100 });
    }
  });

  test('echo still works for a client whose upgrade and first frames arrive glued after a bare-LF client was refused', async () => {
    const server: Server = await startServer();
    try {
      const bad = await RawClient.connect(server.port);
      bad.send('GET / HTTP/1.1\nHost: x\n\n');
      const good = await RawClient.connect(server.port);
      const opened = waitFor(server, 'open');
      good.send(Buffer.concat([Buffer.from(upgradeRequest('/')), clientFrame(OPCODE.TEXT, 'hello')]));
      await opened;
      await good.until(() => good.frames().length > 0);
      assert.equal(good.frames()[0].payload.toString(), 'hello');
      await bad.serverEnded(5000);
      assert.equal(parseFrames(good.body).frames.length, 1);
      good.destroy();
    } finally {
      await server.stop({ timeout: 100 });
    }
  });
});

/**
 * The native transport reads a turn's bytes into a batch and lends a large
 * batch to JS in its block: every view into it must read the same bytes for
 * as long as it lives, also after the turn, when later turns have read
 * other clients' bytes. A transport that recycled a block as soon as the
 * batch's JS call returned would fail these (each message here is larger
 * than the 16 KiB below which a batch is copied instead of lent). The JS
 * transport, whose chunks are Node's own, runs them too.
 */
for (const nativeTransport of [true, false]) {
  describe(`views into received bytes after their turn (nativeTransport: ${nativeTransport})`, () => {
    const SIZE = 20_000;
    const fill = (client: number, round: number): number => 0x21 + ((client * 7 + round) % 90);

    test('a message the app keeps without reading it still holds its own bytes after later turns read other clients', async () => {
      const kept: { fd: number; frame: { data: string | Buffer; payload: Buffer; opcode: number } }[] = [];
      const server = await startServer({ nativeTransport }, (s) => {
        s.on('message', (frame) => kept.push({ fd: frame.fd, frame }));
      });
      const clients: RawClient[] = [];
      try {
        for (let i = 0; i < 4; i++) clients.push(await RawClient.open(server.port));
        const fds = [...server.connections];
        for (let round = 0; round < 6; round++) {
          const before = kept.length;
          clients.forEach((client, i) => {
            const opcode = round % 2 === 0 ? OPCODE.BINARY : OPCODE.TEXT;
            client.send(clientFrame(opcode, Buffer.alloc(SIZE, fill(i, round))));
          });
          // Each round arrives in turns of its own.
          await until(() => kept.length === before + clients.length, 5000, `round ${round} arrives`);
        }
        await new Promise((resolve) => setImmediate(resolve));
        const rounds = new Map<number, number>();
        for (const { fd, frame } of kept) {
          const client = fds.indexOf(fd);
          const round = rounds.get(fd) ?? 0;
          rounds.set(fd, round + 1);
          const expected = Buffer.alloc(SIZE, fill(client, round));
          const data = frame.opcode === OPCODE.TEXT ? Buffer.from(frame.data as string) : (frame.data as Buffer);
          assert.ok(data.equals(expected), `message ${round} of client ${client} changed after its turn`);
          assert.ok(frame.payload.equals(expected), `payload ${round} of client ${client} changed after its turn`);
        }
        assert.equal(kept.length, clients.length * 6);
      } finally {
        for (const client of clients) client.destroy();
        await server.stop({ timeout: 100 });
      }
    });

    test('input held while a connection is throttled is parsed after its turn as it arrived, whatever other clients sent meanwhile', async () => {
      // maxBackpressure 1: after each echo the connection is throttled and
      // the parser holds the rest of its chunk until the echo is out.
      const server = await startServer({ nativeTransport, maxBackpressure: 1 });
      const clients: RawClient[] = [];
      try {
        for (let i = 0; i < 4; i++) clients.push(await RawClient.open(server.port));
        const messages = 4;
        for (let round = 0; round < messages; round++) {
          // Each client sends all its messages in one write: all but the
          // first wait in the parser, past the turn that read them.
          clients.forEach((client, i) => {
            const frames: Buffer[] = [];
            for (let m = 0; m < messages; m++) frames.push(clientFrame(OPCODE.BINARY, Buffer.alloc(SIZE, fill(i, round * messages + m))));
            client.send(Buffer.concat(frames));
          });
          await Promise.all(clients.map((client) => client.until(() => client.frames().length === (round + 1) * messages)));
        }
        clients.forEach((client, i) => {
          const frames = client.frames();
          assert.equal(frames.length, messages * messages);
          frames.forEach((frame, n) => {
            assert.ok(frame.payload.equals(Buffer.alloc(SIZE, fill(i, n))), `echo ${n} of client ${i} is not what it sent`);
          });
        });
      } finally {
        for (const client of clients) client.destroy();
        await server.stop({ timeout: 100 });
      }
    });
  });
}
