/**
 * Smoke test of the load benchmark: the C load generator builds, completes
 * real handshakes with the `ws` peer, and a short echo and broadcast run end
 * with every echo verified and nothing lost or reordered, and a compressed
 * (permessage-deflate) broadcast of JSON arrives with RSV1, inflated and
 * verified; the server's CPU time over the measured window is reported; the
 * Bun peer (when a Bun binary runs here) echoes and broadcasts cleanly. About
 * 9 s in all; no pinning, so it runs on any Linux machine with a C compiler.
 */
import assert from 'node:assert/strict';
import os from 'node:os';
import { after, before, describe, it } from 'node:test';
import { findBun } from '../bench/bun-binary.js';
import { PEERS, buildLoadgen, runConnect, runLoad, startPeer } from '../bench/harness.js';
import type { LoadResult, RunningPeer } from '../bench/harness.js';

const wsPeer = PEERS.find((p) => p.id === 'ws')!;
const bunPeer = PEERS.find((p) => p.id === 'bun')!;

/**
 * The server's CPU over the window is a real sample: above zero (the server
 * worked), and at most what its threads could use on this machine's CPUs
 * in that time (plus one clock tick of slack for the /proc fallback).
 */
function assertServerCpu(r: LoadResult, seconds: number): void {
  assert.equal(typeof r.server_cpu_s, 'number', `server_cpu_s reported (${String(r.server_cpu_s)})`);
  const cpu = r.server_cpu_s as number;
  assert.ok(cpu > 0, `the server used CPU in the window (${cpu} s)`);
  assert.ok(cpu <= seconds * os.cpus().length + 0.01, `${cpu} s of CPU in ${seconds} s on ${os.cpus().length} CPUs`);
  assert.ok(Math.abs((r.server_cpu_pct as number) - (100 * cpu) / seconds) < 1, 'server_cpu_pct is server_cpu_s over the window');
}

describe('load benchmark against the ws peer', { timeout: 60_000 }, () => {
  before(() => {
    buildLoadgen();
  });

  describe('echo', () => {
    let server: RunningPeer;
    before(async () => {
      server = await startPeer(wsPeer, 'echo', null);
    });
    after(() => server.stop());

    it('verifies every echo byte for byte, binary at depth 4', async () => {
      const r = await runLoad({ mode: 'echo', port: server.port, conns: 8, depth: 4, size: 200, duration: 0.5, warmup: 0.1 }, null);
      assert.equal(r.error, null);
      assert.ok((r.rate ?? 0) > 0, 'some round trips were measured');
      assert.equal(r.mismatches, 0);
      assert.equal(r.protocol_errors, 0);
      assert.equal(r.closed, 0);
      assert.equal(r.undelivered, 0);
      assert.equal(r.server_cpu_s, null, 'no server pid, no server CPU figure');
    });

    it("reports the server's CPU time over the measured window when given its pid", async () => {
      const r = await runLoad({ mode: 'echo', port: server.port, conns: 8, depth: 4, size: 200, duration: 0.5, warmup: 0.1, serverPid: server.pid }, null);
      assert.equal(r.error, null);
      assertServerCpu(r, Number(r.seconds));
    });

    it('verifies 70 KiB text echoes, which take 64-bit lengths and many reads', async () => {
      const r = await runLoad({ mode: 'echo', port: server.port, conns: 2, depth: 2, size: 70_000, text: true, duration: 0.3, warmup: 0.1 }, null);
      assert.equal(r.error, null);
      assert.ok((r.rate ?? 0) > 0);
      assert.equal(r.mismatches, 0);
      assert.equal(r.protocol_errors, 0);
    });

    it('reports handshakes per second and the RSS growth of idle connections', async () => {
      const r = await runConnect({ mode: 'connect', port: server.port, conns: 300, concurrency: 50 }, server, null);
      assert.equal(r.error, null);
      assert.equal(r.opened, 300);
      assert.ok((r.handshakes_per_s ?? 0) > 0);
      assert.ok(Number.isFinite(r.kib_per_conn));
      // The window is the opening of the connections.
      assertServerCpu(r, Number(r.seconds));
    });
  });

  describe('broadcast', () => {
    let server: RunningPeer;
    before(async () => {
      server = await startPeer(wsPeer, 'broadcast', null);
    });
    after(() => server.stop());

    it('delivers every message to every receiver in order, none lost', async () => {
      const r = await runLoad({ mode: 'broadcast', port: server.port, conns: 50, window: 8, size: 64, duration: 0.5, warmup: 0.1, serverPid: server.pid }, null);
      assert.equal(r.error, null);
      assert.ok((r.rate ?? 0) > 0);
      assert.equal(r.lost, 0);
      assert.equal(r.reordered, 0);
      assert.equal(r.mismatches, 0);
      assert.equal(r.undelivered, 0);
      assertServerCpu(r, Number(r.seconds));
    });

    it('delivers every message at window 1, one broadcast in flight at a time', async () => {
      const r = await runLoad({ mode: 'broadcast', port: server.port, conns: 50, window: 1, size: 64, duration: 0.3, warmup: 0.1 }, null);
      assert.equal(r.error, null);
      assert.equal(r.window, 1);
      assert.ok((r.rate ?? 0) > 0);
      assert.equal(r.lost, 0);
      assert.equal(r.reordered, 0);
      assert.equal(r.undelivered, 0);
    });
  });

  describe('broadcast with permessage-deflate', () => {
    let server: RunningPeer;
    before(async () => {
      server = await startPeer(wsPeer, 'broadcast', null, { deflate: true });
    });
    after(() => server.stop());

    const base = { mode: 'broadcast', conns: 50, window: 8, size: 1024, json: true, deflate: true, duration: 0.5, warmup: 0.1 } as const;

    it('gets every 1 KiB JSON message compressed (RSV1), inflates and verifies it', async () => {
      const r = await runLoad({ ...base, port: server.port }, null);
      assert.equal(r.error, null);
      assert.ok((r.rate ?? 0) > 0);
      assert.equal(r.deflate_conns, 50);
      assert.ok((r.compressed_messages ?? 0) > 0, 'RSV1 frames were seen');
      assert.equal(r.plain_messages, 0);
      assert.equal(r.compressed_messages, r.total_messages);
      assert.ok((r.wire_per_payload ?? 1) < 0.8, `JSON compresses (wire / payload ${String(r.wire_per_payload)})`);
      assert.equal(r.lost, 0);
      assert.equal(r.reordered, 0);
      assert.equal(r.mismatches, 0);
      assert.equal(r.protocol_errors, 0);
      assert.equal(r.undelivered, 0);
    });

    it('inflates every message itself with the inflate cache off', async () => {
      const r = await runLoad({ ...base, port: server.port, duration: 0.3, inflateCache: false }, null);
      assert.equal(r.error, null);
      assert.equal(r.inflate_cache_hits, 0);
      assert.ok((r.inflated ?? 0) > 0);
      assert.equal(r.inflated, r.compressed_messages);
      assert.equal(r.mismatches, 0);
      assert.equal(r.lost, 0);
    });

    it('keeps an inflate context per connection when the server keeps its context', async () => {
      // Without server_no_context_takeover in the offer, ws compresses each
      // message against the previous ones of that connection.
      const offer = 'permessage-deflate; client_no_context_takeover';
      const r = await runLoad({ ...base, port: server.port, duration: 0.3, deflateOffer: offer }, null);
      assert.equal(r.error, null);
      assert.ok((r.compressed_messages ?? 0) > 0);
      assert.equal(r.inflate_cache_hits, 0, 'a message that depends on its history is never taken from the cache');
      assert.equal(r.mismatches, 0);
      assert.equal(r.protocol_errors, 0);
      assert.equal(r.lost, 0);
    });

    it('fails the run when the server does not answer the offer', async () => {
      const plain = await startPeer(wsPeer, 'broadcast', null);
      try {
        const r = await runLoad({ ...base, port: plain.port, duration: 0.2 }, null);
        assert.match(r.error ?? '', /declined permessage-deflate/);
      } finally {
        await plain.stop();
      }
    });
  });

  // Bun comes with `npm ci` (the devDependency `bun`); where no binary runs
  // (a platform Bun does not publish), the runner skips it with this reason too.
  const bun = findBun();
  describe('the Bun peer', { skip: bun.ok ? false : bun.reason }, () => {
    it('echoes byte for byte under Bun.serve', async () => {
      const server = await startPeer(bunPeer, 'echo', null);
      try {
        assert.equal(server.info.peer, 'bun');
        const r = await runLoad({ mode: 'echo', port: server.port, conns: 4, depth: 2, size: 100, duration: 0.3, warmup: 0.1, serverPid: server.pid }, null);
        assert.equal(r.error, null);
        assert.ok((r.rate ?? 0) > 0);
        assert.equal(r.mismatches, 0);
        assert.equal(r.undelivered, 0);
        assertServerCpu(r, Number(r.seconds));
      } finally {
        await server.stop();
      }
    });

    it('broadcasts through its pub/sub to every receiver in order', async () => {
      const server = await startPeer(bunPeer, 'broadcast', null);
      try {
        const r = await runLoad({ mode: 'broadcast', port: server.port, conns: 20, window: 4, size: 64, duration: 0.3, warmup: 0.1 }, null);
        assert.equal(r.error, null);
        assert.ok((r.rate ?? 0) > 0);
        assert.equal(r.lost, 0);
        assert.equal(r.reordered, 0);
        assert.equal(r.mismatches, 0);
        assert.equal(r.undelivered, 0);
      } finally {
        await server.stop();
      }
    });
  });

  it('fails the handshake check when the server is not a WebSocket server', async () => {
    const http = await import('node:http');
    const plain = http.createServer((_req, res) => res.end('no'));
    plain.on('upgrade', (_req, socket) => {
      // A 101 with a wrong accept key: the client must refuse it.
      socket.end('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n');
    });
    await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
    const { port } = plain.address() as { port: number };
    try {
      const r = await runLoad({ mode: 'echo', port, conns: 1, duration: 0.2, warmup: 0 }, null);
      assert.match(r.error ?? '', /Sec-WebSocket-Accept/);
      assert.equal(r.opened, 0);
    } finally {
      plain.close();
    }
  });
});
