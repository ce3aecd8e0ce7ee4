/**
 * Large messages relayed with `push(fd, frame)`. On the native transport a
 * payload over 4 KiB that lies in the batch being delivered is not copied:
 * its header goes into the turn buffer with the other connections' bytes,
 * and the payload is written from the batch, in place, inside the same
 * native call (a splice: src/batcher.ts, `writeEach` in the addon). These
 * are the ways that could go wrong, with raw clients so that many frames
 * arrive in one read: order within a connection, other connections' bytes
 * in between (A, B, A in one turn), more large messages in one read than
 * one native call takes, a turn buffer that fills, and `borrowFrames`.
 * Every test runs on every backend (the same bytes must arrive whichever
 * path writes them).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { OPCODE, type Frame } from '../src/index.js';
import { clientFrame, closeAfterEach, lastFd, RawClient } from './helpers.js';

const KiB = 1024;

/** What each test opened is closed after it. */
const { later, startServer } = closeAfterEach();

async function open(port: number): Promise<RawClient> {
  const client = await RawClient.open(port);
  later(() => client.socket.destroy());
  return client;
}

/** Message `seq` of client `id`: `size` bytes, a pattern of both (with the two in front from 8 bytes on). */
function message(id: number, seq: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (id * 31 + seq * 7 + i * 13) & 0xff;
  if (size >= 8) {
    b.writeUInt32BE(seq, 0);
    b.writeUInt32BE(id, 4);
  }
  return b;
}

/** Waits for `n` data frames on `client`; returns their payloads. */
async function payloads(client: RawClient, n: number): Promise<Buffer[]> {
  const data = (): Buffer[] => client.frames().filter((f) => f.opcode !== OPCODE.CLOSE).map((f) => Buffer.from(f.payload));
  await client.until(() => data().length >= n, 10_000);
  await new Promise((resolve) => setTimeout(resolve, 30));
  return data();
}

/** Sizes around the 4 KiB line and past 64 KiB, with small ones between. */
const SIZES = [5 * KiB, 100, 16 * KiB, 40, 64 * KiB + 3, 4 * KiB + 1, 4 * KiB - 20, 70_000, 7];

for (const borrowFrames of [false, true]) {
  describe(`relaying large messages${borrowFrames ? ' (borrowFrames)' : ''}`, () => {
    test('pipelined in one write, mixed with small ones: each comes back whole, in order, to its sender only', async () => {
      const server = await startServer({ borrowFrames });
      const clients = [await open(server.port), await open(server.port), await open(server.port)];
      const sent = clients.map((_, id) => [...SIZES, ...SIZES].map((size, seq) => message(id, seq, size)));
      // Each client's messages in one write, the clients' writes together.
      clients.forEach((client, id) => client.send(Buffer.concat(sent[id].map((m) => clientFrame(OPCODE.BINARY, m)))));
      for (const [id, client] of clients.entries()) {
        const got = await payloads(client, sent[id].length);
        assert.equal(got.length, sent[id].length, `client ${id}: no more and no fewer`);
        got.forEach((payload, seq) => assert.ok(payload.equals(sent[id][seq]), `client ${id} message ${seq} (${sent[id][seq].length} B)`));
      }
    });

    test("other connections' frames queued between a connection's large ones (A, B, A in one turn) keep every order", async () => {
      let other = -1;
      let seq = 0;
      const server = await startServer({ borrowFrames }, (s) => {
        s.on('message', (frame: Frame) => {
          if (frame.fd === other) return;
          // To the other client, then the sender, then both again: each gets runs with the other's between.
          // (Reading frame.data would copy the payload out of the batch: only the relays touch it.)
          // Buffers, as strings take another path (`appendMessage` is for Buffers and frames).
          s.push(other, Buffer.from(`before:${seq}`));
          s.push(frame.fd, frame);
          s.push(other, frame);
          s.push(frame.fd, Buffer.from(`after:${seq++}`));
        });
      });
      const sender = await open(server.port);
      const receiver = await open(server.port);
      other = lastFd(server);
      const sent = SIZES.map((size, seq) => message(1, seq, size));
      sender.send(Buffer.concat(sent.map((m) => clientFrame(OPCODE.BINARY, m))));
      const toSender = await payloads(sender, 2 * sent.length);
      const toReceiver = await payloads(receiver, 2 * sent.length);
      sent.forEach((m, i) => {
        assert.ok(toSender[2 * i].equals(m), `sender: message ${i} (${m.length} B)`);
        assert.equal(toSender[2 * i + 1].toString(), `after:${i}`);
        assert.equal(toReceiver[2 * i].toString(), `before:${i}`);
        assert.ok(toReceiver[2 * i + 1].equals(m), `receiver: message ${i} (${m.length} B)`);
      });
    });

    test('more large messages in one batch than one native write takes (8 clients x 12 of 4.5 KiB at once)', async () => {
      const server = await startServer({ borrowFrames });
      const clients = await Promise.all(Array.from({ length: 8 }, () => open(server.port)));
      const sent = clients.map((_, id) => Array.from({ length: 12 }, (_, seq) => message(id, seq, 4500 + id * 10 + seq)));
      // Each client's 54 KiB in one write, all at once: one pump reads most of them into one batch.
      clients.forEach((client, id) => client.send(Buffer.concat(sent[id].map((m) => clientFrame(OPCODE.BINARY, m)))));
      for (const [id, client] of clients.entries()) {
        const got = await payloads(client, sent[id].length);
        assert.equal(got.length, sent[id].length, `client ${id}`);
        got.forEach((payload, seq) => assert.ok(payload.equals(sent[id][seq]), `client ${id} message ${seq}`));
      }
    });

    test('a turn buffer filled by small replies between large relays: nothing is lost or reordered', async () => {
      const server = await startServer({ borrowFrames }, (s) => {
        s.on('message', (frame: Frame) => {
          // 3 KiB of small pushes for every relay: 200 messages fill the 256 KiB turn buffer twice over.
          for (let i = 0; i < 3; i++) s.push(frame.fd, Buffer.alloc(1000, 0x61 + i));
          s.push(frame.fd, frame);
        });
      });
      const client = await open(server.port);
      const sent = Array.from({ length: 200 }, (_, seq) => message(3, seq, 4 * KiB + 100 + (seq % 7) * 500));
      client.send(Buffer.concat(sent.map((m) => clientFrame(OPCODE.BINARY, m))));
      const got = await payloads(client, 4 * sent.length);
      assert.equal(got.length, 4 * sent.length);
      sent.forEach((m, i) => {
        for (let k = 0; k < 3; k++) assert.ok(got[4 * i + k].equals(Buffer.alloc(1000, 0x61 + k)), `small ${k} before message ${i}`);
        assert.ok(got[4 * i + 3].equals(m), `message ${i}`);
      });
    });

    test('a connection closed in the turn its relay was queued gets nothing after its close; the others get theirs', async () => {
      let victim = -1;
      const server = await startServer({ borrowFrames }, (s) => {
        s.on('message', (frame: Frame) => {
          s.push(frame.fd, frame);
          if (victim !== -1) s.push(victim, frame);
          if (victim !== -1) s.disconnect(victim, 4000, 'gone');
          victim = -1;
        });
      });
      const victimClient = await open(server.port);
      victim = lastFd(server);
      const sender = await open(server.port);
      const m = message(4, 0, 20 * KiB);
      sender.send(clientFrame(OPCODE.BINARY, m));
      const got = await payloads(sender, 1);
      assert.ok(got[0].equals(m));
      const { code } = await victimClient.closeFrame();
      assert.equal(code, 4000);
      const frames = victimClient.frames();
      // The relay queued before the disconnect, then the close: nothing after.
      assert.deepEqual(frames.map((f) => f.opcode), [OPCODE.BINARY, OPCODE.CLOSE]);
      assert.ok(Buffer.from(frames[0].payload).equals(m));
    });
  });
}
