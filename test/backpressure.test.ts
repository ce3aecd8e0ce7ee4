/**
 * Frames the server writes on its own (pongs, close replies) count toward
 * `maxBackpressure`, and a connection over it is not read until its queue
 * drains: a client that floods pings and never reads cannot grow the
 * server's memory. Runs on whichever listener and backend the suite runs on
 * (CI runs it on the native transport, on Node's sockets and in pure JS).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, test } from 'node:test';
import type { Server } from '../src/index.js';
import { clientFrame, startServer, upgradeRequest, waitFor } from './helpers.js';

const LIMIT = 64 * 1024;
const PING_PAYLOAD = Buffer.alloc(125, 0x61);
/** The largest pong: 2 header bytes and 125 of payload. */
const PONG_MAX = 127;

/**
 * A raw client that floods pings without reading, then can start reading
 * and count what the server sent, frame by frame, without keeping it.
 */
class PingFlooder {
  pings = 0;
  pongs = 0;
  /** Bytes of the upgrade request. */
  readonly headBytes = Buffer.byteLength(upgradeRequest('/'));
  closeCode = -1;
  closed = false;
  private pending: Buffer = Buffer.alloc(0);
  private headDone = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => {});
  }

  static async open(port: number): Promise<PingFlooder> {
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const flooder = new PingFlooder(socket);
    socket.write(upgradeRequest('/'));
    // Read the 101 only, then stop reading.
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        flooder.take(chunk);
        if (!flooder.headDone) return;
        socket.off('data', onData);
        socket.pause();
        resolve();
      };
      socket.on('data', onData);
      socket.once('close', () => reject(new Error('closed during the handshake')));
    });
    return flooder;
  }

  /** Writes `count` pings in chunks of 1,000 without waiting for the server. */
  flood(count: number): void {
    const ping = clientFrame(0x9, PING_PAYLOAD);
    const chunk = Buffer.concat(Array.from({ length: 1000 }, () => ping));
    for (let sent = 0; sent < count; sent += 1000) this.socket.write(chunk);
    this.pings += count;
  }

  /** Starts reading and counting frames. */
  read(): void {
    this.socket.on('data', (chunk: Buffer) => this.take(chunk));
    this.socket.resume();
  }

  private take(chunk: Buffer): void {
    let buf: Buffer = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    if (!this.headDone) {
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) {
        this.pending = buf;
        return;
      }
      assert.match(buf.toString('latin1', 0, end), /^HTTP\/1\.1 101 /);
      this.headDone = true;
      buf = buf.subarray(end + 4);
    }
    let at = 0;
    while (buf.length - at >= 2) {
      const opcode = buf[at] & 0x0f;
      let len = buf[at + 1] & 0x7f;
      let header = 2;
      if (len === 126) {
        if (buf.length - at < 4) break;
        len = buf.readUInt16BE(at + 2);
        header = 4;
      } else if (len === 127) {
        if (buf.length - at < 10) break;
        len = Number(buf.readBigUInt64BE(at + 2));
        header = 10;
      }
      if (buf.length - at < header + len) break;
      if (opcode === 0xa) this.pongs++;
      if (opcode === 0x8) this.closeCode = len >= 2 ? buf.readUInt16BE(at + header) : 1005;
      at += header + len;
    }
    this.pending = Buffer.from(buf.subarray(at));
  }
}

/** Largest `bufferedAmount` of `fd` seen on every turn for `ms` (an observation window, not a wait). */
async function peakBuffered(server: Server, fd: number, ms: number): Promise<number> {
  let peak = 0;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const info = server.getClientInfo(fd);
    if (info === undefined) break;
    peak = Math.max(peak, info.bufferedAmount);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return peak;
}

/** Waits (bounded) until `predicate` holds, checking once per turn. */
async function until(predicate: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('backpressure on frames the server writes on its own', () => {
  test("a client that floods pings and never reads keeps the server's queue for it within maxBackpressure plus one pong; once it reads, every ping is answered", async () => {
    const server = await startServer({ maxBackpressure: LIMIT });
    const opened = waitFor<[number]>(server, 'open');
    const client = await PingFlooder.open(server.port);
    const [fd] = await opened;
    try {
      // 80,000 pings make 10 MB of pongs: more than the kernel buffers on
      // both sides of loopback hold, so the server's own queue must fill.
      client.flood(80_000);
      await until(() => (server.getClientInfo(fd)?.bufferedAmount ?? 0) >= LIMIT - PONG_MAX, 15_000, 'the queue fills');
      const peak = await peakBuffered(server, fd, 500);
      assert.ok(peak <= LIMIT + PONG_MAX, `bufferedAmount reached ${peak} (limit ${LIMIT})`);
      assert.ok(server.exist(fd), 'the connection stays open with the default drop policy');
      client.read();
      await until(() => client.pongs === client.pings, 30_000, `every ping is answered (${client.pongs}/${client.pings})`);
      assert.equal(client.pongs, 80_000);
    } finally {
      client.socket.destroy();
      await server.stop({ timeout: 100 });
    }
  });

  test("with backpressure 'close', a client that floods pings and never reads is closed with 1008 slow consumer", async () => {
    const server = await startServer({ maxBackpressure: LIMIT, backpressure: 'close' });
    const opened = waitFor<[number]>(server, 'open');
    const client = await PingFlooder.open(server.port);
    const [fd] = await opened;
    try {
      const closed = waitFor<[number, number, string]>(server, 'close', 20_000, (f) => f === fd);
      client.flood(80_000);
      // The close frame waits behind the queue: it reaches a client that
      // reads. The server reads on (and drops) the rest of the pings: once it
      // has them all, its close is a FIN, not the RST a close with unread
      // input would be (which could cut the close frame off on the wire).
      await until(() => !server.isEstablished(fd), 15_000, 'the server fails the connection');
      const native = server.stats().transport === 'native';
      const sent = (): number => client.socket.bytesWritten - (native ? client.headBytes : 0);
      await until(
        () => client.socket.writableLength === 0 && (server.getClientInfo(fd)?.bytesIn ?? -1) >= sent(),
        15_000,
        'the server has read every ping',
      );
      client.read();
      const [, code, reason] = await closed;
      assert.equal(code, 1008);
      assert.equal(reason, 'slow consumer');
      assert.equal(server.exist(fd), false);
      await until(() => client.closed, 10_000, 'the TCP connection closes');
      assert.equal(client.closeCode, 1008, 'the close frame on the wire says 1008');
    } finally {
      client.socket.destroy();
      await server.stop({ timeout: 100 });
    }
  });
});
