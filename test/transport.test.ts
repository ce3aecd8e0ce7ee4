/**
 * The native transport (src/transport.ts, native/transport-*.cc): what is
 * specific to it, over real sockets on loopback, asserting on the bytes on
 * the wire. Plain HTTP handed to Node's http.Server, upgrades split or glued
 * to a first frame, the handshake deadline sweep, clients that leave during
 * a handshake, listen errors, the native write queue, many connections, and
 * stop(). The rest of the suite already runs over this transport by default.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import WebSocket from 'ws';
import { backend, OPCODE, Server, type ServerOptions } from '../src/index.js';
import {
  clientFrame,
  closeEvent,
  nodeCommand,
  parseFrames,
  RawClient,
  startServer,
  UPGRADE_ACCEPT,
  upgradeRequest,
  waitFor,
} from './helpers.js';
import { OPENSSL, requireProgram, skipWithout } from './programs.js';
import { coreOf } from '../src/server-core.js';
import { transportBlocks } from '../src/native.js';
import { NativeWire } from '../src/transport.js';

/** Why the suite cannot run here, or false when a default server runs on the native transport. */
async function nativeUnavailable(): Promise<string | false> {
  const probe = new Server({ host: '127.0.0.1', port: 0 });
  probe.on('message', () => {});
  await probe.start();
  const transport = probe.stats().transport;
  await probe.stop({ timeout: 100 });
  if (transport === 'native') return false;
  const why =
    backend !== 'native'
      ? `the JS backend is in use (addon not built, or WAVECAST_NO_NATIVE set)`
      : process.platform !== 'linux'
        ? `${process.platform} has no epoll`
        : process.env.WAVECAST_NO_NATIVE_TRANSPORT !== undefined
          ? 'WAVECAST_NO_NATIVE_TRANSPORT is set'
          : 'the addon has no transport';
  return `a default server listens on Node's net/http here (stats().transport is '${transport}'): ${why}`;
}

const skip = await nativeUnavailable();

/**
 * A raw TCP peer that keeps every byte the server sent (chunks, not one
 * growing buffer: some tests receive megabytes), and whether the server
 * ended or closed the connection.
 */
class Peer {
  readonly socket: net.Socket;
  private chunks: Buffer[] = [];
  received = 0;
  ended = false;
  closed = false;
  error: NodeJS.ErrnoException | null = null;
  private waiters: (() => void)[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.received += chunk.length;
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      this.error = error;
    });
  }

  /** Connects to `host:port`; rejects (bounded) when that fails. */
  static async connect(port: number, host = '127.0.0.1', ms = 5000): Promise<Peer> {
    const socket = net.connect({ port, host });
    socket.setNoDelay(true);
    const timer = setTimeout(() => socket.destroy(new Error(`connect to ${host}:${port} timed out`)), ms);
    try {
      await once(socket, 'connect');
    } finally {
      clearTimeout(timer);
    }
    return new Peer(socket);
  }

  /** Connects, sends an upgrade request and waits for the 101 (throws on any other answer). */
  static async open(port: number, host = '127.0.0.1', path = '/'): Promise<Peer> {
    const peer = await Peer.connect(port, host);
    peer.send(upgradeRequest(path));
    await peer.until(() => peer.text().includes('\r\n\r\n'));
    if (!peer.text().startsWith('HTTP/1.1 101 ')) throw new Error(`handshake failed: ${peer.text()}`);
    return peer;
  }

  send(data: Buffer | string): void {
    this.socket.write(data);
  }

  /** Everything received so far. */
  bytes(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  text(): string {
    return this.bytes().toString('latin1');
  }

  /** Frames after the first response head that is a 101. */
  frames(): ReturnType<typeof parseFrames>['frames'] {
    const all = this.bytes();
    const start = all.indexOf('HTTP/1.1 101 ');
    if (start === -1) return [];
    const end = all.indexOf('\r\n\r\n', start);
    return end === -1 ? [] : parseFrames(all.subarray(end + 4)).frames;
  }

  /** Waits (bounded) until `predicate` holds after some socket event. */
  async until(predicate: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!predicate()) {
      if (this.closed) throw new Error(`connection closed before the condition held; got ${JSON.stringify(this.text().slice(0, 300))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms; got ${JSON.stringify(this.text().slice(0, 300))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Waits (bounded) until the server closed the connection (FIN read, or reset). */
  async untilClosed(ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the server did not close the connection within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Polls `predicate` every few ms until it holds; fails after `ms`. For state that has no event. */
async function pollUntil(predicate: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await delay(5);
  }
}

/** The status code of each HTTP response head in `text`, in order. */
function statuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

/** Sends a masked text frame and waits for the server's echo of it. */
async function echoes(peer: Peer | RawClient, text: string): Promise<void> {
  const before = peer.frames().length;
  peer.send(clientFrame(OPCODE.TEXT, text));
  await peer.until(() => peer.frames().length > before);
  const frame = peer.frames()[before];
  assert.equal(frame.opcode, OPCODE.TEXT);
  assert.equal(frame.masked, false, 'server frames are never masked');
  assert.equal(frame.payload.toString(), text);
}

/** Runs `fn` on a started server, then stops it (bounded). */
async function withServer<D = unknown>(
  options: ServerOptions,
  setup: ((server: Server<D>) => void) | undefined,
  fn: (server: Server<D>) => Promise<void>,
): Promise<void> {
  const server = await startServer<D>(options, setup);
  try {
    await fn(server);
  } finally {
    await server.stop({ timeout: 200 });
  }
}

/** Whether this machine can connect to the IPv6 loopback (a plain Node server as the other end). */
async function ipv6Loopback(): Promise<boolean> {
  const server = net.createServer((socket) => socket.destroy());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '::1', resolve);
    });
    const peer = await Peer.connect((server.address() as net.AddressInfo).port, '::1', 2000);
    peer.destroy();
    return true;
  } catch {
    return false;
  } finally {
    server.close();
  }
}

describe('native transport', { skip }, () => {
  describe('which listener', () => {
    test("a default server reports transport 'native'; nativeTransport: false reports 'node', and both serve", async () => {
      for (const [options, transport] of [
        [{}, 'native'],
        [{ nativeTransport: false }, 'node'],
      ] as const) {
        await withServer(options, undefined, async (server) => {
          assert.equal(server.stats().transport, transport);
          assert.equal(server.stats().backend, 'native');
          const peer = await Peer.open(server.port);
          assert.match(peer.text(), new RegExp(`Sec-WebSocket-Accept: ${UPGRADE_ACCEPT.replace(/[+/]/g, '\\$&')}\r\n`));
          await echoes(peer, `over ${transport}`);
          peer.destroy();
        });
      }
    });

    test("with WAVECAST_NO_NATIVE_TRANSPORT set, a default server reports transport 'node'", async () => {
      const index = fileURLToPath(new URL('../src/index.js', import.meta.url));
      const script = `
        const { Server } = await import(${JSON.stringify(pathToFileURL(index).href)});
        const server = new Server({ host: '127.0.0.1', port: 0 });
        server.on('message', () => {});
        await server.start();
        console.log(server.stats().transport);
        await server.stop();`;
      const run = (env: NodeJS.ProcessEnv): string =>
        execFileSync(...nodeCommand(['--input-type=module', '-e', script]), { env, timeout: 10_000 }).toString().trim();
      const { WAVECAST_NO_NATIVE_TRANSPORT: _, ...env } = process.env;
      assert.equal(run(env), 'native');
      assert.equal(run({ ...env, WAVECAST_NO_NATIVE_TRANSPORT: '1' }), 'node');
    });

    test("an attached server and noServer report transport 'node'", async () => {
      const httpServer = http.createServer();
      await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
      try {
        for (const options of [{ server: httpServer }, { noServer: true }]) {
          const server = new Server(options);
          server.on('message', () => {});
          await server.start();
          assert.equal(server.stats().transport, 'node');
          await server.stop({ timeout: 100 });
        }
      } finally {
        await new Promise((resolve) => httpServer.close(resolve));
      }
    });

    test("a wss server reports transport 'node'", { skip: skipWithout(OPENSSL) }, async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'wavecast-tls-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      execFileSync(requireProgram(OPENSSL), [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
        '-addext', 'subjectAltName=IP:127.0.0.1',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
      ], { stdio: 'ignore' });
      const cert = readFileSync(join(dir, 'cert.pem'));
      await withServer({ tls: { key: readFileSync(join(dir, 'key.pem')), cert } }, undefined, async (server) => {
        assert.equal(server.stats().transport, 'node');
        const ws = new WebSocket(`wss://127.0.0.1:${server.port}/`, { ca: cert });
        await waitFor(ws, 'open');
        ws.send('over tls');
        const [data] = await waitFor<[Buffer]>(ws, 'message');
        assert.equal(data.toString(), 'over tls');
        ws.terminate();
      });
    });
  });

  describe('plain HTTP through the native listener', () => {
    test('a GET without upgrade reaches the request event with its method, url and headers', async () => {
      const seen: [string, string, string | undefined, string][] = [];
      await withServer({}, (s) => {
        s.on('request', (req, res) => {
          seen.push([req.method!, req.url!, req.headers['x-custom'] as string | undefined, req.httpVersion]);
          const body = `page ${req.url}`;
          res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length, 'X-Reply': 'yes' });
          res.end(body);
        });
      }, async (server) => {
        const peer = await Peer.connect(server.port);
        peer.send('GET /page?q=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Custom: hello there\r\nConnection: close\r\n\r\n');
        await peer.untilClosed();
        assert.deepEqual(seen, [['GET', '/page?q=1', 'hello there', '1.1']]);
        const text = peer.text();
        assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
        assert.match(text, /\r\nX-Reply: yes\r\n/);
        assert.ok(text.endsWith('\r\n\r\npage /page?q=1'), text);
      });
    });

    // The transport reads a head (it does not peek): what it read of a plain
    // request goes back in front of the socket's stream for Node's parser.
    test('a GET sent in pieces, with pauses, reaches the request event whole', async () => {
      const seen: string[] = [];
      await withServer({}, (s) => {
        s.on('request', (req, res) => {
          seen.push(`${req.method} ${req.url} ${req.headers['x-custom']}`);
          res.writeHead(200, { 'Content-Length': 2, Connection: 'close' });
          res.end('ok');
        });
      }, async (server) => {
        const peer = await Peer.connect(server.port);
        const request = Buffer.from('GET /pieces?q=2 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Custom: in pieces\r\n\r\n');
        for (let i = 0; i < request.length; i += 7) {
          peer.send(request.subarray(i, i + 7));
          await delay(2);
        }
        await peer.untilClosed();
        assert.deepEqual(seen, ['GET /pieces?q=2 in pieces']);
        assert.match(peer.text(), /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nok$/);
      });
    });

    test('a POST whose body comes in the same write as its head reaches the request event with the whole body', async () => {
      const bodies: string[] = [];
      const body = 'b'.repeat(3000) + 'end';
      await withServer({}, (s) => {
        s.on('request', (req, res) => {
          const chunks: Buffer[] = [];
          req.on('data', (chunk: Buffer) => chunks.push(chunk));
          req.on('end', () => {
            bodies.push(Buffer.concat(chunks).toString());
            res.writeHead(200, { 'Content-Length': 4, Connection: 'close' });
            res.end('done');
          });
        });
      }, async (server) => {
        const peer = await Peer.connect(server.port);
        peer.send(`POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
        await peer.untilClosed();
        assert.deepEqual(bodies, [body]);
        assert.match(peer.text(), /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\ndone$/);
      });
    });

    test('a keep-alive connection serves two requests in a row on the same socket', async () => {
      const ports: number[] = [];
      await withServer({}, (s) => {
        s.on('request', (req, res) => {
          ports.push(req.socket.remotePort!);
          const body = `you asked for ${req.url}`;
          res.writeHead(200, { 'Content-Length': Buffer.byteLength(body) });
          res.end(body);
        });
      }, async (server) => {
        const peer = await Peer.connect(server.port);
        peer.send('GET /one HTTP/1.1\r\nHost: x\r\n\r\n');
        await peer.until(() => peer.text().endsWith('you asked for /one'));
        peer.send('GET /two HTTP/1.1\r\nHost: x\r\n\r\n');
        await peer.until(() => peer.text().endsWith('you asked for /two'));
        assert.deepEqual(statuses(peer.text()), [200, 200]);
        assert.equal(peer.closed, false, 'the connection is kept alive');
        assert.equal(ports.length, 2);
        assert.equal(ports[0], peer.socket.localPort);
        assert.equal(ports[1], peer.socket.localPort);
        peer.destroy();
      });
    });

    test('a POST with a body larger than the peek window reaches the request event intact', async () => {
      const body = randomBytes(24 * 1024);
      await withServer({}, (s) => {
        s.on('request', (req, res) => {
          const parts: Buffer[] = [];
          req.on('data', (c: Buffer) => parts.push(c));
          req.on('end', () => {
            const got = Buffer.concat(parts);
            const digest = `${req.method} ${req.url} ${got.length} ${got.equals(body)}`;
            res.writeHead(201, { 'Content-Length': digest.length, Connection: 'close' });
            res.end(digest);
          });
        });
      }, async (server) => {
        const peer = await Peer.connect(server.port);
        peer.send(Buffer.concat([
          Buffer.from(`POST /submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`),
          body,
        ]));
        await peer.untilClosed();
        assert.match(peer.text(), /^HTTP\/1\.1 201 Created\r\n/);
        assert.ok(peer.text().endsWith(`\r\n\r\nPOST /submit ${body.length} true`), peer.text());
      });
    });

    test('without a request listener a plain GET gets 426 and the connection is closed', async () => {
      await withServer({}, undefined, async (server) => {
        const peer = await Peer.connect(server.port);
        peer.send('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
        await peer.untilClosed();
        assert.deepEqual(statuses(peer.text()), [426]);
        assert.match(peer.text(), /\r\nUpgrade: websocket\r\n/i);
        assert.equal(server.stats().connections, 0);
      });
    });

    test('a keep-alive connection that made a plain GET then upgrades gets a 101 and works as a WebSocket', async () => {
      await withServer({}, (s) => {
        s.on('request', (_req, res) => {
          res.writeHead(200, { 'Content-Length': 4 });
          res.end('page');
        });
      }, async (server) => {
        const peer = await Peer.connect(server.port);
        peer.send('GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n');
        await peer.until(() => peer.text().endsWith('\r\n\r\npage'));
        const opened = waitFor<[number]>(server, 'open');
        peer.send(upgradeRequest('/ws'));
        await peer.until(() => /\r\n\r\npageHTTP\/1\.1 101 [^\r]*\r\n[\s\S]*\r\n\r\n/.test(peer.text()));
        assert.deepEqual(statuses(peer.text()), [200, 101]);
        assert.match(peer.text(), new RegExp(`Sec-WebSocket-Accept: ${UPGRADE_ACCEPT.replace(/[+/]/g, '\\$&')}\r\n`));
        const [fd] = await opened;
        assert.equal(server.getClientInfo(fd)?.remotePort, peer.socket.localPort);
        await echoes(peer, 'after a plain request');
        peer.destroy();
      });
    });
  });

  describe('the request head on the native path', () => {
    test('an upgrade request written in 1 to 3 byte pieces, with pauses, gets a 101 and an echo', async () => {
      await withServer({}, undefined, async (server) => {
        const peer = await Peer.connect(server.port);
        const request = Buffer.from(upgradeRequest('/split?x=1'));
        let pieces = 0;
        for (let i = 0; i < request.length; pieces++) {
          const size = 1 + (pieces % 3);
          peer.send(request.subarray(i, i + size));
          i += size;
          // Pauses let the transport peek at many partial heads, including one ending in "\r\n\r".
          if (pieces % 8 === 7) await delay(2);
        }
        await peer.until(() => peer.text().includes('\r\n\r\n'));
        assert.match(peer.text(), /^HTTP\/1\.1 101 Switching Protocols\r\n/);
        assert.match(peer.text(), new RegExp(`Sec-WebSocket-Accept: ${UPGRADE_ACCEPT.replace(/[+/]/g, '\\$&')}\r\n`));
        await echoes(peer, 'split');
        peer.destroy();
      });
    });

    // Without a hook the transport answers the head itself (a fast open); with one, the head takes
    // Node's 'upgrade' road with the bytes after it (native/transport-head.cc). Either way they are messages.
    for (const hook of [false, true]) {
      test(`${hook ? 'with a handshake hook' : 'without one (a fast open)'}, first masked frames in the same write as the head are delivered as messages after open`, async () => {
        const events: string[] = [];
        await withServer({}, (s) => {
          if (hook) s.on('handshake', (request) => void events.push(`hook ${request.url}`));
          s.on('open', (fd) => events.push(`open ${fd}`));
          s.on('message', (frame) => {
            events.push(`message ${frame.fd} ${frame.data}`);
            s.push(frame.fd, frame);
          });
        }, async (server) => {
          const peer = await Peer.connect(server.port);
          peer.send(Buffer.concat([Buffer.from(upgradeRequest('/early')), clientFrame(OPCODE.TEXT, 'early bird'), clientFrame(OPCODE.BINARY, Buffer.from([1, 2, 3]))]));
          await peer.until(() => peer.frames().length === 2);
          assert.match(peer.text(), /^HTTP\/1\.1 101 /);
          const [text, binary] = peer.frames();
          assert.deepEqual([text.opcode, text.payload.toString()], [OPCODE.TEXT, 'early bird']);
          assert.deepEqual([binary.opcode, [...binary.payload]], [OPCODE.BINARY, [1, 2, 3]]);
          const opened = events.find((e) => e.startsWith('open '));
          const fd = Number(opened?.split(' ')[1]);
          assert.deepEqual(events, [...(hook ? ['hook /early'] : []), `open ${fd}`, `message ${fd} early bird`, `message ${fd} \u0001\u0002\u0003`]);
          await echoes(peer, 'and later');
          peer.destroy();
        });
      });
    }

    test('a POST with Upgrade and Connection headers gets 400 and is closed', async () => {
      await withServer({}, undefined, async (server) => {
        const peer = await Peer.connect(server.port);
        peer.send(upgradeRequest('/', {}, 'POST / HTTP/1.1'));
        await peer.untilClosed();
        assert.deepEqual(statuses(peer.text()), [400]);
        assert.match(peer.text(), /GET/);
        assert.equal(server.stats().connections, 0);
      });
    });

    test('an upgrade request whose head exceeds 16 KiB gets 431 from Node', async () => {
      await withServer({}, undefined, async (server) => {
        const peer = await Peer.connect(server.port);
        peer.send(upgradeRequest('/', { 'X-Big': 'a'.repeat(20 * 1024) }));
        await peer.untilClosed();
        assert.deepEqual(statuses(peer.text()), [431]);
        assert.equal(server.stats().connections, 0);
      });
    });

    test('an incomplete head followed by the client FIN is closed, and the server keeps serving', async () => {
      const errors: Error[] = [];
      await withServer({}, (s) => s.on('error', (e) => errors.push(e)), async (server) => {
        const peer = await Peer.connect(server.port);
        peer.send('GET /half HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n');
        peer.socket.end();
        await peer.untilClosed();
        // Handed to Node, whose parser fails at the EOF inside the head: 400.
        assert.deepEqual(statuses(peer.text()), [400]);
        const next = await Peer.open(server.port);
        await echoes(next, 'still serving');
        next.destroy();
        assert.deepEqual(errors, []);
        assert.equal(server.stats().accepted, 1);
      });
    });
  });

  describe('handshake deadline', () => {
    test('a client stalled in its head and a silent one are cut after handshakeTimeout; an open client stays', async () => {
      // Without TCP_DEFER_ACCEPT: the kernel hands the silent client over at once.
      await withServer({ handshakeTimeout: 300, tcpDeferAccept: 0 }, undefined, async (server) => {
        const open = await Peer.open(server.port);
        const started = Date.now();
        const stalled = await Peer.connect(server.port);
        stalled.send('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n');
        const silent = await Peer.connect(server.port);
        const cutAfter = await Promise.all(
          [stalled, silent].map(async (peer) => {
            await peer.untilClosed(3000);
            return Date.now() - started;
          }),
        );
        for (const ms of cutAfter) {
          // The sweep runs every timeout/4 and closes within 1.25x the timeout.
          assert.ok(ms >= 250 && ms <= 1000, `cut after ${ms} ms`);
        }
        assert.equal(stalled.text(), '', 'nothing is sent to a client cut in its handshake');
        assert.equal(silent.text(), '');
        // Older than the deadline when the sweep cut the others, but open: untouched.
        assert.equal(open.closed, false);
        await echoes(open, 'unaffected');
        assert.equal(server.stats().connections, 1);
        open.destroy();
      });
    });
  });

  describe('tcpDeferAccept', () => {
    // TCP_DEFER_ACCEPT (on by default, 1 s): the kernel hands a connection
    // over once its first bytes are in; a silent one after about a second.
    for (const tcpDeferAccept of [undefined, 0]) {
      test(`tcpDeferAccept ${tcpDeferAccept ?? '(default)'}: a client that sends its head opens at once; a silent one is ${tcpDeferAccept === 0 ? 'handshaking at once' : 'held by the kernel first'}`, async () => {
        await withServer({ handshakeTimeout: 300, tcpDeferAccept }, undefined, async (server) => {
          const transport = coreOf(server).transport!;
          const started = Date.now();
          const silent = await Peer.connect(server.port);
          const talker = await Peer.open(server.port);
          assert.ok(Date.now() - started < 900, 'the client that spoke opened without waiting for the kernel');
          await echoes(talker, 'at once');
          await delay(150);
          // Held by the kernel: not accepted yet, so not handshaking.
          assert.equal(transport.handshaking, tcpDeferAccept === 0 ? 1 : 0);
          await silent.untilClosed(5000);
          const cutAfter = Date.now() - started;
          if (tcpDeferAccept === 0) assert.ok(cutAfter <= 1000, `cut after ${cutAfter} ms`);
          // About a second in the kernel, then handshakeTimeout.
          else assert.ok(cutAfter >= 1000 && cutAfter <= 4500, `cut after ${cutAfter} ms`);
          assert.equal(silent.text(), '');
          assert.equal(talker.closed, false);
          talker.destroy();
        });
      });
    }
  });

  describe('clients that leave during the handshake', () => {
    for (const how of ['destroy', 'resetAndDestroy'] as const) {
      test(`a client gone (${how}) during an async handshake hook is never opened and the server accepts the next`, async () => {
        const events: string[] = [];
        let entered!: () => void;
        const inHook = new Promise<void>((resolve) => (entered = resolve));
        let hookDone!: () => void;
        const afterHook = new Promise<void>((resolve) => (hookDone = resolve));
        await withServer({}, (s) => {
          s.on('open', (fd) => events.push(`open ${fd}`));
          s.on('close', (fd, code) => events.push(`close ${fd} ${code}`));
          s.on('error', (e) => events.push(`error ${e.message}`));
          s.on('handshake', async (req) => {
            if (req.path !== '/slow') return;
            entered();
            await delay(100);
            setImmediate(hookDone);
          });
        }, async (server) => {
          const leaver = await Peer.connect(server.port);
          leaver.send(upgradeRequest('/slow'));
          await inHook;
          if (how === 'destroy') leaver.socket.destroy();
          else leaver.socket.resetAndDestroy();
          await afterHook;
          // The next handshake is a full round trip after the hook's decision.
          const nextOpened = waitFor<[number]>(server, 'open');
          const next = await Peer.open(server.port);
          const [nextFd] = await nextOpened;
          await echoes(next, 'next');
          assert.deepEqual(events, [`open ${nextFd}`]);
          assert.equal(server.stats().connections, 1);
          assert.equal(server.stats().accepted, 1, 'only the next client was accepted');
          assert.equal(leaver.text(), '');
          next.destroy();
        });
      });
    }

    test('a client that half-closes right after a valid head: every open is matched by a close, no crash', async () => {
      let opens = 0;
      let closes = 0;
      const errors: Error[] = [];
      await withServer({}, (s) => {
        s.on('open', () => opens++);
        s.on('close', () => closes++);
        s.on('error', (e) => errors.push(e));
      }, async (server) => {
        const peer = await Peer.connect(server.port);
        peer.send(upgradeRequest('/'));
        peer.socket.end();
        await peer.untilClosed();
        assert.ok(peer.text() === '' || /^HTTP\/1\.1 101 /.test(peer.text()), peer.text());
        await pollUntil(() => server.stats().connections === 0 && closes === opens, 3000, 'close events to match opens');
        assert.ok(opens <= 1);
        if (opens === 1) {
          // It was opened: the server saw the FIN and closed the connection (a close frame at most).
          const frames = peer.frames();
          assert.ok(frames.every((f) => f.opcode === OPCODE.CLOSE), `frames: ${frames.map((f) => f.opcode)}`);
        }
        assert.deepEqual(errors, []);
        const next = await Peer.open(server.port);
        await echoes(next, 'after a half-close');
        next.destroy();
      });
    });
  });

  describe('listening', () => {
    test('a second server on the port of a running one rejects with EADDRINUSE; the first keeps serving', async () => {
      await withServer({}, undefined, async (first) => {
        const second = new Server({ host: '127.0.0.1', port: first.port });
        second.on('message', () => {});
        await assert.rejects(second.start(), (error: NodeJS.ErrnoException) => {
          assert.ok(error instanceof Error);
          assert.equal(error.code, 'EADDRINUSE');
          return true;
        });
        assert.equal(second.port, 0);
        const peer = await Peer.open(first.port);
        await echoes(peer, 'first still here');
        peer.destroy();
      });
    });

    test("host: 'localhost' listens on what it resolves to", async () => {
      await withServer({ host: 'localhost' }, undefined, async (server) => {
        assert.equal(server.stats().transport, 'native');
        let peer: Peer | null = null;
        for (const address of ['127.0.0.1', '::1']) {
          peer = await Peer.open(server.port, address).catch(() => null);
          if (peer !== null) break;
        }
        assert.ok(peer !== null, `nothing answers on port ${server.port} of 127.0.0.1 or ::1`);
        await echoes(peer, 'via localhost');
        peer.destroy();
      });
    });

    test("host: '::1' listens on the IPv6 loopback", async (t) => {
      if (!(await ipv6Loopback())) {
        t.skip('no IPv6 loopback on this machine');
        return;
      }
      await withServer({ host: '::1' }, undefined, async (server) => {
        assert.equal(server.stats().transport, 'native');
        const opened = waitFor<[number]>(server, 'open');
        const peer = await Peer.open(server.port, '::1');
        const [fd] = await opened;
        assert.equal(server.getClientInfo(fd)?.remoteAddress, '::1');
        assert.equal(server.getClientInfo(fd)?.remotePort, peer.socket.localPort);
        await echoes(peer, 'over ipv6');
        peer.destroy();
        await assert.rejects(Peer.connect(server.port, '127.0.0.1', 2000));
      });
    });
  });

  describe('backpressure on the native write queue', () => {
    /** A 1 KiB binary message carrying its sequence number. */
    const message = (seq: number): Buffer => {
      const data = Buffer.alloc(1024, seq & 0xff);
      data.writeUInt32BE(seq, 0);
      return data;
    };
    /** The sequence numbers of the 1 KiB messages in `bytes` (after the 101 head); asserts the frames are whole. */
    const sequence = (peer: Peer): number[] => {
      const frames = peer.frames();
      for (const f of frames) assert.deepEqual([f.opcode, f.fin, f.payload.length], [OPCODE.BINARY, true, 1024]);
      return frames.map((f) => f.payload.readUInt32BE(0));
    };

    test('what the kernel refuses is counted in bufferedAmount and goes out once the client reads', async () => {
      await withServer({}, undefined, async (server) => {
        const opened = waitFor<[number]>(server, 'open');
        const peer = await Peer.open(server.port);
        const [fd] = await opened;
        const head = peer.bytes().indexOf('\r\n\r\n') + 4;
        peer.socket.pause();
        let sent = 0;
        for (let i = 0; i < 20_000 && server.bufferedAmount(fd) <= 256 * 1024; i++) {
          assert.equal(server.push(fd, message(i), OPCODE.BINARY), true, `push ${i}`);
          sent++;
          if (i % 100 === 99) await new Promise((r) => setImmediate(r));
        }
        // Past this turn's batch, what is left waits in the native queue.
        await new Promise((r) => setImmediate(r));
        const queued = server.bufferedAmount(fd);
        assert.ok(queued > 256 * 1024, `bufferedAmount is ${queued} after ${sent} pushes`);
        assert.equal(server.getClientInfo(fd)?.bufferedAmount, queued);
        // The kernel took the first part: bytes out + queued = everything pushed.
        const wireBytes = sent * (4 + 1024);
        assert.equal(server.getClientInfo(fd)!.bytesOut + queued, head + wireBytes);
        peer.socket.resume();
        await pollUntil(() => server.bufferedAmount(fd) === 0, 10_000, 'bufferedAmount to return to 0');
        await peer.until(() => peer.received - head === wireBytes, 10_000);
        assert.deepEqual(sequence(peer), Array.from({ length: sent }, (_, i) => i));
        peer.destroy();
      });
    });

    test("over maxBackpressure with 'drop', pushes return false and 'drain' arrives once the client reads", async () => {
      const dropped: number[] = [];
      await withServer({ maxBackpressure: 64 * 1024 }, (s) => s.on('dropped', (fd, bytes) => dropped.push(fd, bytes)), async (server) => {
        const opened = waitFor<[number]>(server, 'open');
        const peer = await Peer.open(server.port);
        const [fd] = await opened;
        const head = peer.bytes().indexOf('\r\n\r\n') + 4;
        peer.socket.pause();
        const accepted: number[] = [];
        let refused = 0;
        for (let i = 0; i < 20_000 && refused < 10; i++) {
          if (server.push(fd, message(i), OPCODE.BINARY)) accepted.push(i);
          else refused++;
          if (i % 100 === 99) await new Promise((r) => setImmediate(r));
        }
        assert.equal(refused, 10, `no push was refused after ${accepted.length} accepted`);
        assert.ok(server.bufferedAmount(fd) <= 64 * 1024 + 1028, `bufferedAmount ${server.bufferedAmount(fd)}`);
        assert.equal(server.stats().dropped, 10);
        // Each 'dropped' event names the fd and the frame's bytes (4 of header, 1024 of payload).
        assert.deepEqual([dropped[0], dropped[1], dropped.length], [fd, 1028, 20]);
        const drained = waitFor<[number]>(server, 'drain', 10_000, (f) => f === fd);
        peer.socket.resume();
        await drained;
        assert.equal(server.bufferedAmount(fd), 0);
        assert.equal(server.push(fd, message(999_999), OPCODE.BINARY), true, 'a push after drain is sent');
        await peer.until(() => peer.received - head === (accepted.length + 1) * 1028, 10_000);
        assert.deepEqual(sequence(peer), [...accepted, 999_999]);
        peer.destroy();
      });
    });
  });

  describe('many connections', () => {
    test('2,000 concurrent ws clients each get their echo and all close cleanly', { timeout: 30_000 }, async () => {
      const count = 2000;
      const closes = new Map<number, string>();
      await withServer({}, (s) => {
        s.on('close', (fd, code, _reason, wasClean) => closes.set(fd, `${code} ${wasClean}`));
      }, async (server) => {
        const clients: WebSocket[] = [];
        try {
          for (let at = 0; at < count; at += 200) {
            const batch = Array.from({ length: 200 }, () => new WebSocket(`ws://127.0.0.1:${server.port}`, { perMessageDeflate: false }));
            clients.push(...batch);
            await Promise.all(batch.map((ws) => waitFor(ws, 'open', 15_000)));
          }
          assert.equal(server.stats().connections, count);
          const replies = await Promise.all(
            clients.map((ws, i) => {
              const reply = waitFor<[Buffer]>(ws, 'message', 15_000);
              ws.send(`client ${i}`);
              return reply;
            }),
          );
          replies.forEach(([data], i) => assert.equal(data.toString(), `client ${i}`));
          const clientCloses = clients.map((ws) => waitFor<[number]>(ws, 'close', 15_000));
          for (const ws of clients) ws.close(1000);
          for (const [code] of await Promise.all(clientCloses)) assert.equal(code, 1000);
          await pollUntil(() => server.stats().connections === 0, 5000, 'every connection to be gone');
          assert.equal(closes.size, count);
          assert.deepEqual(new Set(closes.values()), new Set(['1000 true']));
        } finally {
          for (const ws of clients) ws.terminate();
        }
      });
    });
  });

  describe('received bytes', () => {
    // Batches over 16 KiB reach JS in a reused block that returns to the
    // transport when V8 frees the Buffer: a message kept by the app must keep
    // its bytes while later batches fill other blocks.
    test('messages kept by the app keep their bytes while many more large batches arrive', { timeout: 30_000 }, async () => {
      const kept: Buffer[] = [];
      const sent: Buffer[] = [];
      await withServer({}, (s) => {
        s.on('message', (frame) => {
          kept.push(frame.data as Buffer);
          s.push(frame.fd, 'ok');
        });
      }, async (server) => {
        const ws = new WebSocket(`ws://127.0.0.1:${server.port}`, { perMessageDeflate: false });
        try {
          await waitFor(ws, 'open', 5000);
          // 200 messages of 48 KiB (10 MB through the blocks), one in flight at a time.
          for (let i = 0; i < 200; i++) {
            const message = randomBytes(48 * 1024);
            sent.push(message);
            const reply = waitFor(ws, 'message', 5000);
            ws.send(message);
            await reply;
            // Allocation pressure, so that scavenges free the batches nobody kept.
            if (i % 20 === 0) Array.from({ length: 50_000 }, (_, n) => ({ n }));
          }
          assert.equal(kept.length, sent.length);
          kept.forEach((data, i) => assert.ok(data.equals(sent[i]), `message ${i} changed after it was received`));
        } finally {
          ws.terminate();
        }
      });
    });
  });

  describe('data blocks', () => {
    // A lent block comes back when a scavenge frees its Buffer, all of one
    // GC cycle's together: they wait as spares for the next busy spell, and
    // the handshake sweep gives back those a whole second did not need.
    test("a busy spell's blocks come back as spares, serve the next spell without new ones, and go after a quiet second", { timeout: 30_000 }, async () => {
      const blocks = transportBlocks!;
      setFlagsFromString('--expose-gc');
      const gc = runInNewContext('gc') as () => void;
      // Frees the batches' Buffers; their blocks come back on a later turn.
      const collect = async (): Promise<void> => {
        gc();
        await delay(50);
        gc();
        await delay(50);
      };
      await withServer({}, (s) => {
        s.on('message', (frame) => {
          s.push(frame.fd, 'ok');
        });
      }, async (server) => {
        const ws = new WebSocket(`ws://127.0.0.1:${server.port}`, { perMessageDeflate: false });
        // 100 messages of 48 KiB, one in flight at a time: one lent block each.
        const spell = async (): Promise<void> => {
          for (let i = 0; i < 100; i++) {
            const reply = waitFor(ws, 'message', 5000);
            ws.send(randomBytes(48 * 1024));
            await reply;
          }
        };
        try {
          await waitFor(ws, 'open', 5000);
          await collect();
          await spell();
          await collect();
          const [made, , spare] = blocks();
          assert.ok(spare >= 100, `${spare} spare blocks after 100 lent ones came back`);
          await spell();
          await collect();
          assert.equal(blocks()[0], made, 'the second spell took spares only');
          await pollUntil(() => blocks()[2] <= 32, 5000, 'the spares a quiet second did not need freed');
          const [, live, left] = blocks();
          assert.ok(live - left <= 2, `${live - left} blocks lent or read into while nothing is sent`);
        } finally {
          ws.terminate();
        }
      });
    });
  });

  describe('read size', () => {
    // One read takes all a client has pipelined, up to 256 KiB, but never
    // more than the server's maxBackpressure (at least 64 KiB): what one
    // read makes the server answer meets that limit over several batches.
    const largestRead = async (options: ServerOptions): Promise<number> => {
      const chunks: number[] = [];
      const received = NativeWire.prototype.received;
      NativeWire.prototype.received = function (this: NativeWire, data: Buffer, start: number, end: number): void {
        chunks.push(end - start);
        received.call(this, data, start, end);
      };
      let messages = 0;
      try {
        await withServer(options, (s) => {
          s.on('message', () => {
            // The first message holds the loop, so the other nine wait in the kernel together.
            if (messages++ === 0) for (const end = Date.now() + 200; Date.now() < end; );
          });
        }, async (server) => {
          const client = await RawClient.open(server.port);
          try {
            chunks.length = 0;
            client.send(Buffer.concat(Array.from({ length: 10 }, () => clientFrame(OPCODE.BINARY, randomBytes(16 * 1024)))));
            await pollUntil(() => messages === 10, 5000, 'ten messages');
          } finally {
            client.socket.destroy();
          }
        });
      } finally {
        NativeWire.prototype.received = received;
      }
      return Math.max(...chunks);
    };

    test('pipelined messages are read together, beyond 64 KiB, by default and with no limit', async () => {
      for (const options of [{}, { maxBackpressure: Infinity }] as ServerOptions[]) {
        const largest = await largestRead(options);
        assert.ok(largest > 64 * 1024, `largest read ${largest} bytes with maxBackpressure ${options.maxBackpressure ?? 'by default'}`);
      }
    });

    test('a read takes no more than maxBackpressure, down to 64 KiB', async () => {
      assert.ok((await largestRead({ maxBackpressure: 100 * 1024 })) <= 100 * 1024);
      assert.ok((await largestRead({ maxBackpressure: 1024 })) <= 64 * 1024);
    });
  });

  describe('resting connections', () => {
    // An idle connection with nothing of its own keeps no objects (src/registry.ts):
    // each thing that needs it wakes it, and it behaves as if it had never rested.
    test('idle clients rest until a message, a push, their close or stop() wakes them; each open gets one close', async () => {
      const opens: number[] = [];
      const restingAtOpen: number[] = [];
      const closes = new Map<number, string[]>();
      const started = Date.now();
      await withServer({}, (s) => {
        s.on('open', (fd) => {
          opens.push(fd);
          restingAtOpen.push(coreOf(s).registry.restingSize);
        });
        s.on('close', (fd, code, _reason, wasClean) => closes.set(fd, [...(closes.get(fd) ?? []), `${code} ${wasClean}`]));
      }, async (server) => {
        const registry = coreOf(server).registry;
        const clients: RawClient[] = [];
        for (let i = 0; i < 5; i++) clients.push(await RawClient.open(server.port));
        await pollUntil(() => opens.length === 5, 5000, 'five opens');
        assert.deepEqual(restingAtOpen, [1, 2, 3, 4, 5], 'each connection rests from its open on');
        assert.equal(registry.restingSize, 5);
        assert.deepEqual([...server.connections], opens);
        // stats() counts resting connections without waking them: the 101s out, nothing in.
        const stats = server.stats();
        assert.equal(registry.restingSize, 5);
        assert.equal(stats.bytesIn, 0);
        assert.equal(stats.bytesOut, clients.reduce((n, client) => n + Buffer.byteLength(client.response, 'latin1'), 0));
        const [a, b, c, d, e] = clients;

        // A message wakes its connection only; the echo goes to its client.
        await echoes(a, 'hello from a');
        assert.equal(registry.restingSize, 4);
        // A push to a resting connection reaches its client and no other.
        assert.equal(server.push(opens[1], 'to b'), true);
        await b.until(() => b.frames().length === 1);
        assert.equal(b.frames()[0].payload.toString(), 'to b');
        assert.equal(registry.restingSize, 3);
        // What a resting connection reports is what it would have without resting.
        const info = server.getClientInfo(opens[4])!;
        assert.ok(info.connectTime >= started && info.connectTime <= Date.now(), `connectTime ${info.connectTime}`);
        assert.equal(info.lastReceiveTime, info.connectTime);
        assert.equal(info.remotePort, e.socket.localPort);
        assert.equal(info.messagesIn + info.messagesOut, 0);
        assert.equal(registry.restingSize, 2);
        // A client that leaves while resting: one close, 1006.
        const cGone = closeEvent(server, opens[2]);
        c.destroy();
        assert.deepEqual(await cGone, [1006, '', false]);
        // A close frame from a resting client: a clean close.
        const dGone = closeEvent(server, opens[3]);
        const payload = Buffer.alloc(2);
        payload.writeUInt16BE(1000);
        d.send(clientFrame(OPCODE.CLOSE, payload));
        assert.deepEqual(await dGone, [1000, '', true]);
        assert.equal(registry.restingSize, 0);
        for (const client of [a, b, e]) assert.equal(client.frames().filter((f) => f.opcode !== OPCODE.CLOSE).length, client === e ? 0 : 1);
      });
      assert.deepEqual([...closes.keys()].sort((x, y) => x - y), opens);
      for (const fd of opens) assert.equal(closes.get(fd)!.length, 1, `one close for fd ${fd}`);
      assert.match(closes.get(opens[4])![0], /^1001 /, 'stop() closed the one still resting');
    });

    test('exist() and isEstablished() answer for a resting connection without waking it', async () => {
      await withServer({}, undefined, async (server) => {
        const client = await RawClient.open(server.port);
        const registry = coreOf(server).registry;
        await pollUntil(() => registry.size === 1, 5000, 'the open');
        const [fd] = [...server.connections];
        assert.equal(registry.restingSize, 1);
        assert.equal(server.exist(fd), true);
        assert.equal(server.isEstablished(fd), true);
        assert.equal(registry.restingSize, 1, 'still resting after exist() and isEstablished()');
        assert.equal(server.exist(fd + 1), false);
        assert.equal(server.isEstablished(fd + 1), false);
        const gone = closeEvent(server, fd);
        client.destroy();
        await gone;
        assert.equal(server.exist(fd), false);
        assert.equal(server.isEstablished(fd), false);
      });
    });

    test('stop() closes resting clients with 1001', async () => {
      const server = await startServer();
      const client = await RawClient.open(server.port);
      await pollUntil(() => coreOf(server).registry.size === 1, 5000, 'the open');
      assert.equal(coreOf(server).registry.restingSize, 1);
      const stopped = server.stop({ timeout: 2000 });
      const { code } = await client.closeFrame();
      assert.equal(code, 1001);
      client.destroy();
      await stopped;
    });

    test('a resting client is pinged when due, and closed when it never answers', async () => {
      await withServer({ pingInterval: 150, heartbeatIdleTime: 500 }, undefined, async (server) => {
        const fdClosed = waitFor<[number, number, string, boolean]>(server, 'close', 5000);
        const client = await RawClient.open(server.port);
        await client.until(() => client.frames().some((f) => f.opcode === OPCODE.PING), 3000);
        const [, code, reason] = await fdClosed;
        assert.deepEqual([code, reason], [1001, 'idle timeout']);
        client.destroy();
      });
    });

    test('a client that answers the heartbeat rests again after each pong, keeps its times and counts, and stays open', async () => {
      await withServer({ pingInterval: 150, heartbeatIdleTime: 500 }, undefined, async (server) => {
        const registry = coreOf(server).registry;
        let closed = false;
        server.on('close', () => (closed = true));
        const client = await RawClient.open(server.port);
        await pollUntil(() => registry.size === 1, 5000, 'the open');
        const fd = [...server.connections][0];
        let pongBytes = 0;
        for (let answered = 0; answered < 3; answered++) {
          await client.until(() => client.frames().filter((f) => f.opcode === OPCODE.PING).length > answered, 3000);
          assert.equal(registry.restingSize, 0, 'woken for its ping');
          const pong = clientFrame(OPCODE.PONG, `pong ${answered}`);
          pongBytes += pong.length;
          client.send(pong);
          await pollUntil(() => registry.restingSize === 1, 3000, 'the connection to rest again');
        }
        // Three pings answered over more than the idle time: still open.
        assert.equal(closed, false);
        assert.equal(server.stats().bytesIn, pongBytes);
        assert.equal(registry.restingSize, 1, 'stats() wakes nobody');
        const info = server.getClientInfo(fd)!;
        assert.equal(info.bytesIn, pongBytes);
        assert.ok(info.lastReceiveTime > info.connectTime, 'the last pong counts as received');
        assert.equal(info.established, true);
        client.destroy();
      });
    });

    test('a client sent messages rests again after its next pong, its messages sent still counted', async () => {
      await withServer({ pingInterval: 150, heartbeatIdleTime: 5000 }, undefined, async (server) => {
        const registry = coreOf(server).registry;
        const clients = [await RawClient.open(server.port), await RawClient.open(server.port)];
        await pollUntil(() => registry.restingSize === 2, 5000, 'both opened and resting');
        const [pushed, other] = [...server.connections];
        // A push and a broadcast wake their receivers; the messages reach the right clients.
        assert.equal(server.push(pushed, 'to one'), true);
        assert.equal(server.broadcast('to all'), 2);
        assert.equal(registry.restingSize, 0);
        await clients[0].until(() => clients[0].frames().length >= 2, 3000);
        await clients[1].until(() => clients[1].frames().length >= 1, 3000);
        assert.deepEqual(clients[0].frames().map((f) => f.payload.toString()), ['to one', 'to all']);
        assert.deepEqual(clients[1].frames().map((f) => f.payload.toString()), ['to all']);
        // Each answers its next ping, and rests again.
        for (const client of clients) {
          await client.until(() => client.frames().some((f) => f.opcode === OPCODE.PING), 3000);
          client.send(clientFrame(OPCODE.PONG, ''));
        }
        await pollUntil(() => registry.restingSize === 2, 3000, 'both to rest again');
        // Counted while resting, and as they were once woken.
        assert.equal(server.stats().messagesOut, 3);
        assert.equal(registry.restingSize, 2, 'stats() wakes nobody');
        assert.equal(server.getClientInfo(pushed)!.messagesOut, 2);
        assert.equal(server.getClientInfo(other)!.messagesOut, 1);
        // One that received a message stays awake.
        clients[1].send(clientFrame(OPCODE.TEXT, 'hello'));
        await pollUntil(() => server.getClientInfo(other)!.messagesIn === 1, 3000, 'the message');
        const pingsBefore = clients[1].frames().filter((f) => f.opcode === OPCODE.PING).length;
        await clients[1].until(() => clients[1].frames().filter((f) => f.opcode === OPCODE.PING).length > pingsBefore, 3000);
        clients[1].send(clientFrame(OPCODE.PONG, ''));
        await delay(100);
        assert.equal(registry.isResting(other), false);
        for (const client of clients) client.destroy();
      });
    });

    test('a connection with a subprotocol or data does not rest', async () => {
      const resting: number[] = [];
      await withServer<{ n: number }>({ subprotocols: ['chat'] }, (s) => {
        s.on('handshake', (request, response) => {
          if (request.url === '/data') response.data = { n: 1 };
        });
        s.on('open', () => resting.push(coreOf(s).registry.restingSize));
      }, async (server) => {
        const withProtocol = await RawClient.open(server.port, '/', { 'Sec-WebSocket-Protocol': 'chat' });
        const withData = await RawClient.open(server.port, '/data');
        const plain = await RawClient.open(server.port, '/');
        await pollUntil(() => resting.length === 3, 5000, 'three opens');
        assert.deepEqual(resting, [0, 0, 1]);
        for (const client of [withProtocol, withData, plain]) client.destroy();
      });
    });
  });

  describe('stop()', () => {
    test('closes open clients with 1001, answers 503 to a handshake whose hook returns meanwhile, resolves, and frees the port', async () => {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let entered = 0;
      const serverCloses: string[] = [];
      const server = await startServer({}, (s) => {
        s.on('close', (_fd, code, _reason, wasClean) => serverCloses.push(`${code} ${wasClean}`));
        s.on('handshake', async (req) => {
          if (req.path === '/slow') {
            entered++;
            await gate;
          }
        });
      });
      const port = server.port;
      const clients = await Promise.all([1, 2, 3].map(() => RawClient.open(port)));
      // Each open client answers the server's close frame, as a browser would.
      for (const c of clients) {
        void c.closeFrame().then(() => c.send(clientFrame(OPCODE.CLOSE, Buffer.from([0x03, 0xe9])))).catch(() => {});
      }
      const pending = await Peer.connect(port);
      pending.send(upgradeRequest('/slow'));
      await pollUntil(() => entered === 1, 2000, 'the handshake hook to be entered');
      const stopped = server.stop({ timeout: 2000 });
      release();
      await stopped;
      for (const c of clients) {
        const { code, reason } = await c.closeFrame();
        assert.deepEqual([code, reason], [1001, 'server shutting down']);
        await c.until(() => c.closed, 2000).catch(() => {});
        assert.ok(c.closed, 'the open client is closed');
      }
      assert.deepEqual(serverCloses, ['1001 true', '1001 true', '1001 true']);
      // The hook returned while stop() was under way: refused, then closed.
      await pending.untilClosed(2000);
      assert.deepEqual(statuses(pending.text()), [503]);
      assert.match(pending.text(), /\r\n\r\nserver shutting down$/);
      assert.equal(server.stats().connections, 0);
      assert.equal(server.port, 0);
      const again = await startServer({ port });
      try {
        assert.equal(again.port, port);
        const peer = await Peer.open(port);
        await echoes(peer, 'port reused');
        peer.destroy();
      } finally {
        await again.stop({ timeout: 200 });
      }
    });

    test('a handshake still in its hook when stop() resolves is closed without a 101', async () => {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let entered = 0;
      const opens: number[] = [];
      const server = await startServer({}, (s) => {
        s.on('open', (fd) => opens.push(fd));
        s.on('handshake', async () => {
          entered++;
          await gate;
        });
      });
      const pending = await Peer.connect(server.port);
      pending.send(upgradeRequest('/'));
      await pollUntil(() => entered === 1, 2000, 'the handshake hook to be entered');
      await server.stop({ timeout: 200 });
      await pending.untilClosed(2000);
      release();
      await new Promise((r) => setImmediate(r));
      assert.deepEqual(opens, []);
      assert.doesNotMatch(pending.text(), /^HTTP\/1\.1 101 /);
      assert.equal(server.stats().connections, 0);
    });
  });
});
