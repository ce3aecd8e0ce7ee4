/**
 * The addon against the JS fallback: randomized native-equals-JS checks over
 * sizes 0 .. 1 MiB and offsets 0 .. 15, argument checking, the two UTF-8
 * validators taking turns within one message, and the batched socket write
 * on real TCP sockets.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { constants } from 'node:os';
import { describe, test } from 'node:test';
import * as jsMask from '../src/fallback/mask.js';
import * as jsUtf8 from '../src/fallback/utf8.js';
import { addon, backend, writableFd, writeBatch, type Addon } from '../src/native.js';

const NO_ADDON = `addon not loaded (${process.env.WAVECAST_NO_NATIVE ? 'WAVECAST_NO_NATIVE is set' : 'no build or prebuild'})`;
const skipNative = addon ? false : NO_ADDON;
/** The suite name, saying why when the suite is skipped. */
const named = (name: string, skip: string | false): string => (skip ? `${name} SKIPPED: ${skip}` : name);
const batchSkip = addon?.writeBatch ? false : `${NO_ADDON} or not Linux`;
const native = addon as Addon;
const { errno } = constants;

/** A small deterministic PRNG (xorshift32), so a failure can be replayed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** Sizes 0..130, powers of two +-1 up to 1 MiB, and a few random ones. */
function sizes(random: () => number): number[] {
  const out = new Set<number>();
  for (let n = 0; n <= 130; n++) out.add(n);
  for (let p = 8; p <= 20; p++) for (const d of [-1, 0, 1]) out.add(2 ** p + d);
  for (let k = 0; k < 12; k++) out.add(Math.floor(random() * (1 << 20)));
  return [...out].sort((a, b) => a - b);
}

/** Random UTF-8: mostly valid text of 1- to 4-byte characters, sometimes one corrupted byte. */
function randomText(random: () => number, size: number): Buffer {
  const buf = Buffer.alloc(size);
  const pieces = [Buffer.from('a'), Buffer.from('é'), Buffer.from('€'), Buffer.from('😀'), Buffer.from(' ')];
  let i = 0;
  const asciiHeavy = random() < 0.5;
  while (i < size) {
    const p = pieces[asciiHeavy && random() < 0.9 ? 0 : Math.floor(random() * pieces.length)];
    if (i + p.length > size) break;
    p.copy(buf, i);
    i += p.length;
  }
  buf.fill(0x41, i);
  if (size > 0 && random() < 0.5) buf[Math.floor(random() * size)] = Math.floor(random() * 256);
  return buf;
}

describe(named(`native equals JS (backend ${backend})`, skipNative), { skip: skipNative }, () => {
  test('unmask and maskInto equal the JS fallback over sizes 0..1 MiB and offsets 0..15', () => {
    const random = rng(0x5eed1);
    const deadline = Date.now() + 20_000;
    for (const size of sizes(random)) {
      for (let offset = 0; offset < 16; offset++) {
        assert.ok(Date.now() < deadline, 'bounded in time');
        // Large sizes at a few offsets only, to keep the run short.
        if (size > 4096 && offset % 5 !== 0) continue;
        const mask = Math.floor(random() * 2 ** 32);
        const base = Buffer.alloc(offset + size + 16);
        for (let i = 0; i < base.length; i++) base[i] = (i * 7 + size) & 0xff;
        const a = Buffer.from(base);
        const b = Buffer.from(base);
        native.unmask(a, offset, offset + size, mask);
        jsMask.unmask(b, offset, offset + size, mask);
        assert.ok(a.equals(b), `unmask size ${size} offset ${offset}`);
        const ta = Buffer.alloc(size + 32, 0x5a);
        const tb = Buffer.alloc(size + 32, 0x5a);
        native.maskInto(base, offset, offset + size, ta, 15 - offset, mask);
        jsMask.maskInto(base, offset, offset + size, tb, 15 - offset, mask);
        assert.ok(ta.equals(tb), `maskInto size ${size} offset ${offset}`);
      }
    }
  });

  test('isValidUtf8, utf8Continue and utf8InvalidAt equal the JS fallback over sizes 0..1 MiB and offsets 0..15', () => {
    const random = rng(0x5eed2);
    const deadline = Date.now() + 30_000;
    let invalid = 0;
    for (const size of sizes(random)) {
      for (let offset = 0; offset < 16; offset++) {
        assert.ok(Date.now() < deadline, 'bounded in time');
        if (size > 4096 && offset % 5 !== 0) continue;
        const text = randomText(random, size);
        const buf = Buffer.alloc(offset + size + 3, 0xff); // bad bytes around the range
        text.copy(buf, offset);
        const whole = jsUtf8.isValidUtf8(buf, offset, offset + size);
        if (!whole) invalid++;
        assert.equal(native.isValidUtf8(buf, offset, offset + size), whole, `isValidUtf8 size ${size} offset ${offset}`);
        const cut = offset + Math.floor(random() * (size + 1));
        const js1 = jsUtf8.utf8Continue(0, buf, offset, cut);
        assert.equal(native.utf8Continue(0, buf, offset, cut), js1, `utf8Continue 1st size ${size} offset ${offset}`);
        const js2 = jsUtf8.utf8Continue(js1, buf, cut, offset + size);
        assert.equal(native.utf8Continue(js1, buf, cut, offset + size), js2, `utf8Continue 2nd size ${size} offset ${offset}`);
        if (!whole) {
          const at = jsUtf8.utf8InvalidAt(0, buf, offset, offset + size);
          assert.equal(native.utf8InvalidAt(0, buf, offset, offset + size), at, `utf8InvalidAt size ${size} offset ${offset}`);
          if (js1 !== jsUtf8.UTF8_INVALID) {
            const at2 = jsUtf8.utf8InvalidAt(js1, buf, cut, offset + size);
            assert.equal(native.utf8InvalidAt(js1, buf, cut, offset + size), at2, `utf8InvalidAt continued size ${size}`);
          }
        }
      }
    }
    assert.ok(invalid > 50, 'the random inputs include invalid ones');
  });

  test('stays inside buffers that end where the range ends (what ASan checks in npm run test:asan)', () => {
    // Buffer.alloc never hands out a slice of a shared pool, so each buffer is
    // its own allocation and a byte read or written past its end is one
    // AddressSanitizer reports.
    const random = rng(0x5eed4);
    for (const size of [...Array(131).keys(), 255, 256, 257, 1023, 1024, 1025, 65537]) {
      for (const start of [0, 1, 7, 15]) {
        if (start > size) continue;
        const mask = Math.floor(random() * 2 ** 32);
        const a = Buffer.alloc(size, 0x80 | (size & 0x3f));
        const b = Buffer.from(a);
        native.unmask(a, start, size, mask);
        jsMask.unmask(b, start, size, mask);
        assert.ok(a.equals(b), `unmask size ${size} start ${start}`);
        const target = Buffer.alloc(size - start);
        native.maskInto(a, start, size, target, 0, mask);
        const back = Buffer.alloc(size - start);
        jsMask.maskInto(a, start, size, back, 0, mask);
        assert.ok(target.equals(back), `maskInto size ${size} start ${start}`);
        // A lead byte last: the vector paths must not look past it.
        const text = Buffer.alloc(size, 0x41);
        if (size > 0) text[size - 1] = 0xf0;
        assert.equal(native.isValidUtf8(text, start, size), jsUtf8.isValidUtf8(text, start, size), `utf8 size ${size}`);
        assert.equal(native.utf8Continue(0, text, start, size), jsUtf8.utf8Continue(0, text, start, size));
      }
    }
  });

  test('native and JS take turns within one message and agree with the whole-buffer check', () => {
    const random = rng(0x5eed3);
    for (let round = 0; round < 300; round++) {
      const text = randomText(random, 1 + Math.floor(random() * 3000));
      let state = 0;
      let from = 0;
      let turn = round & 1;
      while (from < text.length) {
        const to = Math.min(text.length, from + 1 + Math.floor(random() * 200));
        state = (turn ? native.utf8Continue : jsUtf8.utf8Continue)(state, text, from, to);
        turn ^= 1;
        from = to;
      }
      assert.equal(state === 0, jsUtf8.isValidUtf8(text, 0, text.length), `round ${round}`);
    }
  });
});

describe(named('native argument checks', skipNative), { skip: skipNative }, () => {
  const buf = Buffer.alloc(16);

  test('throws TypeError for a buffer that is not a Uint8Array', () => {
    for (const bad of ['abc', null, undefined, 42, {}, new Uint16Array(8), new Int32Array(4), new ArrayBuffer(8)]) {
      assert.throws(() => native.unmask(bad as Uint8Array, 0, 0, 0), TypeError);
      assert.throws(() => native.isValidUtf8(bad as Uint8Array, 0, 0), TypeError);
      assert.throws(() => native.utf8Continue(0, bad as Uint8Array, 0, 0), TypeError);
      assert.throws(() => native.maskInto(buf, 0, 0, bad as Uint8Array, 0, 0), TypeError);
    }
  });

  test('throws TypeError for indices or a mask that are not numbers', () => {
    assert.throws(() => native.unmask(buf, '0' as unknown as number, 1, 0), TypeError);
    assert.throws(() => native.unmask(buf, 0, 1n as unknown as number, 0), TypeError);
    assert.throws(() => native.unmask(buf, 0, 1, '1' as unknown as number), TypeError);
    assert.throws(() => native.utf8Continue('0' as unknown as number, buf, 0, 1), TypeError);
  });

  test('throws RangeError for ranges outside the buffer, reversed, negative or fractional', () => {
    for (const [start, end] of [[0, 17], [17, 17], [-1, 4], [5, 4], [0.5, 4], [0, NaN], [0, Infinity]]) {
      assert.throws(() => native.unmask(buf, start, end, 0), RangeError, `unmask ${start}..${end}`);
      assert.throws(() => native.isValidUtf8(buf, start, end), RangeError, `isValidUtf8 ${start}..${end}`);
      assert.throws(() => native.utf8Continue(0, buf, start, end), RangeError, `utf8Continue ${start}..${end}`);
    }
    assert.throws(() => native.maskInto(buf, 0, 16, Buffer.alloc(15), 0, 0), RangeError);
    assert.throws(() => native.maskInto(buf, 0, 8, Buffer.alloc(16), 9, 0), RangeError);
  });

  test('throws RangeError when the target range starts inside the source range', () => {
    assert.throws(() => native.maskInto(buf, 0, 8, buf, 4, 0), RangeError);
    const view = buf.subarray(1);
    assert.throws(() => native.maskInto(buf, 0, 8, view, 0, 0), RangeError, 'same memory through another view');
  });

  test('throws RangeError for a UTF-8 state utf8Continue cannot return', () => {
    for (const state of [-2, 1, 0x41 << 16, (1 << 24) | (0x80 << 16), (2 << 24) | (0xe2 << 16) | (0x41 << 8), (3 << 24) | (0xe2 << 16), 2 ** 31, 0.5]) {
      assert.throws(() => native.utf8Continue(state, buf, 0, 1), RangeError, `state ${state}`);
      assert.throws(() => native.utf8InvalidAt(state, buf, 0, 1), RangeError, `utf8InvalidAt state ${state}`);
    }
    // utf8InvalidAt continues from the state before a failure, never from UTF8_INVALID.
    assert.throws(() => native.utf8InvalidAt(-1, buf, 0, 1), RangeError);
    assert.throws(() => native.utf8InvalidAt('0' as unknown as number, buf, 0, 1), TypeError);
    assert.equal(native.utf8Continue(-1, buf, 0, 1), -1, 'utf8Continue accepts UTF8_INVALID and keeps it');
  });

  test('reports the SIMD paths it chose for this CPU: NEON on arm64, SSE or AVX2 on x64', (t) => {
    t.diagnostic(`${process.arch}: mask ${native.simd.mask}, utf8 ${native.simd.utf8}`);
    if (process.arch === 'arm64') {
      // NEON is part of every AArch64 CPU: anything else means the NEON
      // paths were not compiled in, and the parity tests above ran scalar code.
      assert.deepEqual(native.simd, { mask: 'neon', utf8: 'neon' });
    } else if (process.arch === 'x64') {
      assert.match(native.simd.mask, /^(avx2|sse2)$/);
      assert.match(native.simd.utf8, /^(avx2|ssse3|scalar)$/);
    } else {
      assert.deepEqual(native.simd, { mask: 'scalar', utf8: 'scalar' });
    }
  });
});

/** A server on 127.0.0.1 and `n` clients; resolves with both ends of each. */
async function pairs(n: number): Promise<{ server: net.Server; servers: net.Socket[]; clients: net.Socket[] }> {
  const servers: net.Socket[] = [];
  const server = net.createServer((s) => servers.push(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  const clients: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const c = net.connect(port, '127.0.0.1');
    await once(c, 'connect');
    clients.push(c);
  }
  while (servers.length < n) await once(server, 'connection');
  return { server, servers, clients };
}

async function closeAll(server: net.Server, sockets: net.Socket[]): Promise<void> {
  for (const s of sockets) s.destroy();
  server.close();
  await once(server, 'close');
}

/** Reads from `socket` until `length` bytes arrived. */
async function receive(socket: net.Socket, length: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  for await (const chunk of socket) {
    chunks.push(chunk as Buffer);
    got += (chunk as Buffer).length;
    if (got >= length) break;
  }
  return Buffer.concat(chunks);
}

describe(named('writeBatch on real sockets', batchSkip), { skip: batchSkip }, () => {
  const write = writeBatch as NonNullable<typeof writeBatch>;

  test('writes one frame to every client in one call', async () => {
    const { server, servers, clients } = await pairs(5);
    try {
      const head = Buffer.from([0x81, 0x05]);
      const body = Buffer.from('hello');
      const fds = new Int32Array(servers.map(writableFd));
      assert.ok(fds.every((fd) => fd >= 0), 'every idle server socket has a writable fd');
      const results = new Int32Array(fds.length).fill(-12345);
      const received = clients.map((c) => receive(c, 7));
      write(fds, fds.length, head, results, body);
      assert.deepEqual([...results], [7, 7, 7, 7, 7]);
      for (const got of await Promise.all(received)) assert.deepEqual(got, Buffer.from('\x81\x05hello', 'latin1'));
    } finally {
      await closeAll(server, [...servers, ...clients]);
    }
  });

  test('writes only the first count descriptors and reports -EBADF for a negative one', async () => {
    const { server, servers, clients } = await pairs(2);
    try {
      const fds = new Int32Array([-1, writableFd(servers[1]), writableFd(servers[0])]);
      const results = new Int32Array(3).fill(99);
      const received = receive(clients[1], 3);
      write(fds, 2, Buffer.from('abc'), results);
      assert.deepEqual([...results], [-errno.EBADF, 3, 99]);
      assert.equal((await received).toString(), 'abc');
    } finally {
      await closeAll(server, [...servers, ...clients]);
    }
  });

  test('reports -EPIPE or -ECONNRESET for a peer that has reset, without SIGPIPE', async () => {
    const { server, servers, clients } = await pairs(1);
    try {
      // Not reading keeps libuv from seeing the reset and closing the fd.
      servers[0].pause();
      const fd = writableFd(servers[0]);
      clients[0].resetAndDestroy();
      await once(clients[0], 'close');
      const results = new Int32Array(1);
      const seen = new Set<number>();
      // The first write after a reset may still be accepted by the kernel (it
      // is what draws the RST); a later one must fail. Bounded in count.
      for (let i = 0; i < 50 && results[0] >= 0; i++) {
        write(new Int32Array([fd]), 1, Buffer.alloc(1000, 1), results);
        seen.add(results[0]);
        if (results[0] >= 0) await new Promise((r) => setImmediate(r));
      }
      assert.ok(results[0] === -errno.EPIPE || results[0] === -errno.ECONNRESET, `results seen: ${[...seen]}`);
    } finally {
      await closeAll(server, [...servers, ...clients]);
    }
  });

  test('reports a partial count, then -EAGAIN, when the kernel send buffer is full', async () => {
    const { server, servers, clients } = await pairs(1);
    try {
      clients[0].pause();
      const fd = writableFd(servers[0]);
      const big = Buffer.alloc(64 << 20, 0x61);
      const results = new Int32Array(1);
      write(new Int32Array([fd]), 1, big, results);
      assert.ok(results[0] > 0 && results[0] < big.length, `partial write: ${results[0]}`);
      write(new Int32Array([fd]), 1, big, results);
      assert.equal(results[0], -errno.EAGAIN);
    } finally {
      await closeAll(server, [...servers, ...clients]);
    }
  });

  test('throws TypeError / RangeError for wrong arguments', () => {
    const r = new Int32Array(2);
    assert.throws(() => write([3] as unknown as Int32Array, 1, Buffer.alloc(1), r), TypeError);
    assert.throws(() => write(new Int32Array(1), 1, 'x' as unknown as Buffer, r), TypeError);
    assert.throws(() => write(new Int32Array(1), 1, Buffer.alloc(1), new Uint32Array(1) as unknown as Int32Array), TypeError);
    assert.throws(() => write(new Int32Array(1), 2, Buffer.alloc(1), r), RangeError, 'count above fds.length');
    assert.throws(() => write(new Int32Array(3), 3, Buffer.alloc(1), r), RangeError, 'results too short');
    assert.throws(() => write(new Int32Array(1), 1, Buffer.alloc(1), r, 'x' as unknown as Buffer), TypeError);
  });
});

describe('writableFd', () => {
  test('gives the fd of an idle TCP socket and -1 once something is queued or the socket is gone', async () => {
    const { server, servers, clients } = await pairs(1);
    try {
      const s = servers[0];
      const fd = writableFd(s);
      assert.ok(fd >= 0);
      s.cork();
      s.write('queued in the JS stream');
      assert.equal(writableFd(s), -1, 'corked data is queued');
      s.uncork();
      // libuv's queue: fill the kernel buffer so socket.write leaves bytes behind.
      clients[0].pause();
      const big = Buffer.alloc(32 << 20);
      s.write(big);
      assert.equal(writableFd(s), -1, 'a write libuv could not finish is queued');
      s.destroy();
      assert.equal(writableFd(s), -1, 'destroyed');
    } finally {
      await closeAll(server, [...servers, ...clients]);
    }
  });

  test('gives -1 for a socket that is not connected yet and for a TLS socket', async () => {
    const { TLSSocket } = await import('node:tls');
    const { server, servers, clients } = await pairs(1);
    try {
      assert.equal(writableFd(new net.Socket()), -1, 'never connected');
      const tls = new TLSSocket(clients[0]);
      assert.equal(writableFd(tls), -1, 'TLS');
      tls.destroy();
    } finally {
      await closeAll(server, [...servers, ...clients]);
    }
  });
});
