/**
 * The permessage-deflate data path without sockets: settings, the job queue,
 * compress/inflate round trips with and without context takeover, the RFC
 * 7692 7.2 tail handling, fragment-by-fragment inflation, the inflate bomb,
 * and releasing contexts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import zlib from 'node:zlib';
import {
  DeflateShared,
  Limiter,
  PerMessageDeflate,
  resolveDeflateOptions,
  type ResolvedDeflateOptions,
} from '../src/deflate.js';
import type { WebSocketError } from '../src/errors.js';
import type { DeflateParams } from '../src/protocol/extensions.js';

const MiB = 1024 * 1024;

function shared(options: Partial<ResolvedDeflateOptions> = {}, maxPayload = 4 * MiB): DeflateShared {
  return new DeflateShared({ ...resolveDeflateOptions(true)!, ...options }, maxPayload);
}

function params(p: Partial<DeflateParams> = {}): DeflateParams {
  return {
    serverNoContextTakeover: true,
    clientNoContextTakeover: true,
    serverMaxWindowBits: 15,
    clientMaxWindowBits: 15,
    ...p,
  };
}

function compress(pmd: PerMessageDeflate, data: Buffer | string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    pmd.compress(data, (error, payload) => (error ? reject(error) : resolve(payload)));
  });
}

function decompress(pmd: PerMessageDeflate, data: Buffer, fin = true): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    pmd.decompress(data, fin, (error, message) => (error ? reject(error) : resolve(message)));
  });
}

/** Inflates a message given as fragments, one at a time as the connection does. */
async function decompressFragments(pmd: PerMessageDeflate, fragments: Buffer[]): Promise<Buffer> {
  let message: Buffer | null = null;
  for (let i = 0; i < fragments.length; i++) {
    message = await decompress(pmd, fragments[i], i === fragments.length - 1);
    if (i < fragments.length - 1) assert.equal(message, null, 'no message before the final fragment');
  }
  return message!;
}

/** What a peer sends: raw deflate, sync-flushed, without the 00 00 ff ff tail (RFC 7692 7.2.1). */
function peerCompress(data: Buffer | string, windowBits = 15): Buffer {
  const out = zlib.deflateRawSync(data, { windowBits, finishFlush: zlib.constants.Z_SYNC_FLUSH });
  assert.deepEqual([...out.subarray(-4)], [0x00, 0x00, 0xff, 0xff]);
  return out.subarray(0, -4);
}

/** What a peer does with what we send: append the tail and inflate. */
function peerInflate(payload: Buffer): Buffer {
  return zlib.inflateRawSync(Buffer.concat([payload, Buffer.from([0, 0, 0xff, 0xff])]), {
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
}

const json = (i: number): string => JSON.stringify({ type: 'tick', seq: i, items: Array.from({ length: 40 }, (_, k) => ({ k, v: `value-${k}` })) });

describe('perMessageDeflate setting', () => {
  test('off unless asked; true takes the memory-minded defaults', () => {
    assert.equal(resolveDeflateOptions(undefined), null);
    assert.equal(resolveDeflateOptions(false), null);
    assert.deepEqual(resolveDeflateOptions(true), {
      threshold: 1024,
      level: 6,
      memLevel: 8,
      serverNoContextTakeover: true,
      clientNoContextTakeover: true,
      serverMaxWindowBits: 15,
      clientMaxWindowBits: 15,
      concurrency: 10,
    });
    assert.equal(resolveDeflateOptions({ level: 1, serverNoContextTakeover: false })?.serverNoContextTakeover, false);
  });

  test('refuses bad values at once', () => {
    assert.throws(() => resolveDeflateOptions({ serverMaxWindowBits: 8 }), RangeError);
    assert.throws(() => resolveDeflateOptions({ clientMaxWindowBits: 7 }), RangeError);
    assert.throws(() => resolveDeflateOptions({ level: 10 }), RangeError);
    assert.throws(() => resolveDeflateOptions({ memLevel: 0 }), RangeError);
    assert.throws(() => resolveDeflateOptions({ concurrency: 0 }), RangeError);
    assert.throws(() => resolveDeflateOptions({ threshold: -1 }), RangeError);
    assert.throws(() => resolveDeflateOptions({ serverNoContextTakeover: 'yes' as unknown as boolean }), TypeError);
    assert.throws(() => resolveDeflateOptions('on' as unknown as boolean), TypeError);
  });
});

describe('Limiter', () => {
  test('runs at most `concurrency` jobs at once and the rest in order', () => {
    const limiter = new Limiter(2);
    const started: number[] = [];
    const dones: (() => void)[] = [];
    for (let i = 0; i < 5; i++) {
      limiter.run((done) => {
        started.push(i);
        dones.push(done);
      });
    }
    assert.deepEqual(started, [0, 1]);
    assert.equal(limiter.waiting, 3);
    dones[1]();
    assert.deepEqual(started, [0, 1, 2]);
    dones[0]();
    dones[2]();
    assert.deepEqual(started, [0, 1, 2, 3, 4]);
    dones[3]();
    dones[4]();
    assert.equal(limiter.active, 0);
    assert.equal(limiter.waiting, 0);
  });
});

describe('PerMessageDeflate', () => {
  test('compresses without the 00 00 ff ff tail and a peer inflates it (RFC 7692 7.2.1)', async () => {
    const pmd = new PerMessageDeflate(shared(), params());
    for (const data of ['', 'a', json(1), Buffer.alloc(200_000, 7), 'é'.repeat(10_000)]) {
      const payload = await compress(pmd, data);
      const n = payload.length;
      assert.ok(!(n >= 4 && payload.readUInt32BE(n - 4) === 0x0000ffff), 'the tail is removed');
      assert.deepEqual(peerInflate(payload), Buffer.from(data));
    }
    pmd.close();
  });

  test('an empty message compresses to the single octet 0x00 (RFC 7692 7.2.3.6)', async () => {
    const pmd = new PerMessageDeflate(shared(), params());
    assert.deepEqual([...(await compress(pmd, ''))], [0x00]);
    pmd.close();
  });

  test("inflates a peer's message appending the tail, whole and split into fragments at every size", async () => {
    const pmd = new PerMessageDeflate(shared(), params());
    const text = json(7).repeat(20);
    const compressed = peerCompress(text);
    assert.equal((await decompressFragments(pmd, [compressed])).toString(), text);
    for (const size of [1, 3, 17, 100, compressed.length - 1]) {
      const fragments: Buffer[] = [];
      for (let i = 0; i < compressed.length; i += size) fragments.push(compressed.subarray(i, i + size));
      assert.equal((await decompressFragments(pmd, fragments)).toString(), text, `fragments of ${size}`);
    }
    // Empty fragments, including an empty final one.
    const half = compressed.length >> 1;
    const fragments = [Buffer.alloc(0), compressed.subarray(0, half), Buffer.alloc(0), compressed.subarray(half), Buffer.alloc(0)];
    assert.equal((await decompressFragments(pmd, fragments)).toString(), text);
    pmd.close();
  });

  test('RFC 7692 7.2.3.1: inflates "Hello" from the RFC example bytes', async () => {
    const pmd = new PerMessageDeflate(shared(), params());
    const hello = Buffer.from('f248cdc9c90700', 'hex');
    assert.equal((await decompressFragments(pmd, [hello])).toString(), 'Hello');
    // 7.2.3.2: the same message in two fragments.
    assert.equal((await decompressFragments(pmd, [Buffer.from('f248cd', 'hex'), Buffer.from('c9c90700', 'hex')])).toString(), 'Hello');
    pmd.close();
  });

  test('with context takeover the second identical message is smaller and the peer inflates both with one context', async () => {
    const server = new PerMessageDeflate(shared(), params({ serverNoContextTakeover: false }));
    const client = zlib.createInflateRaw();
    const inflate = (payload: Buffer): Promise<Buffer> =>
      new Promise((resolve) => {
        const chunks: Buffer[] = [];
        const onData = (c: Buffer): number => chunks.push(c);
        client.on('data', onData);
        client.write(payload);
        client.write(Buffer.from([0, 0, 0xff, 0xff]));
        client.flush(() => {
          client.removeListener('data', onData);
          resolve(Buffer.concat(chunks));
        });
      });
    const text = json(3);
    const first = await compress(server, text);
    const second = await compress(server, text);
    assert.ok(second.length < first.length / 4, `second ${second.length} B vs first ${first.length} B`);
    assert.equal((await inflate(first)).toString(), text);
    assert.equal((await inflate(second)).toString(), text);
    assert.equal(server.holdsContexts, true, 'the deflater is kept between messages');
    server.close();
    assert.equal(server.holdsContexts, false);
    client.close();
  });

  test('without context takeover every message stands alone and no context is held between messages', async () => {
    const s = shared();
    const pmd = new PerMessageDeflate(s, params());
    const text = json(3);
    const first = await compress(pmd, text);
    const second = await compress(pmd, text);
    assert.deepEqual(second, first, 'a reset context compresses the same message the same way');
    assert.equal(peerInflate(second).toString(), text);
    assert.equal(pmd.holdsContexts, false);
    await decompressFragments(pmd, [peerCompress(text)]);
    assert.equal(pmd.holdsContexts, false);
    // Contexts are reused from the pool, not created per message.
    for (let i = 0; i < 20; i++) {
      await compress(pmd, text);
      await decompressFragments(pmd, [peerCompress(text)]);
    }
    assert.equal(s.contexts, 2, 'one pooled deflater and one pooled inflater');
    pmd.close();
    s.close();
    assert.equal(s.contexts, 0);
  });

  test('inflates with client context takeover across messages', async () => {
    const pmd = new PerMessageDeflate(shared(), params({ clientNoContextTakeover: false }));
    const peer = zlib.createDeflateRaw();
    const chunks: Buffer[] = [];
    peer.on('data', (c: Buffer) => chunks.push(c));
    const peerSend = (text: string): Promise<Buffer> =>
      new Promise((resolve) => {
        peer.write(text);
        peer.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve(Buffer.concat(chunks.splice(0)).subarray(0, -4)));
      });
    for (let i = 0; i < 5; i++) {
      const text = json(1);
      const payload = await peerSend(text);
      assert.equal((await decompressFragments(pmd, [payload])).toString(), text);
    }
    assert.equal(pmd.holdsContexts, true);
    pmd.close();
    peer.close();
  });

  test('inflates a message compressed with an 8-bit window when that was agreed', async () => {
    const pmd = new PerMessageDeflate(shared(), params({ clientMaxWindowBits: 8 }));
    const text = json(9).repeat(5);
    // zlib raises raw deflate windowBits 8 to 9; a peer keeping to 8 bits is what we must read.
    assert.equal((await decompressFragments(pmd, [peerCompress(text, 9)])).toString(), text);
    pmd.close();
  });

  test('corrupt compressed data fails with INVALID_COMPRESSED_DATA (1007)', async () => {
    const s = shared();
    const pmd = new PerMessageDeflate(s, params());
    await assert.rejects(decompress(pmd, Buffer.from('ffffffffff', 'hex')), (error: WebSocketError) => {
      assert.equal(error.code, 'INVALID_COMPRESSED_DATA');
      assert.equal(error.closeCode, 1007);
      return true;
    });
    assert.equal(s.limiter.active, 0, 'the queue slot is given back');
    pmd.close();
  });

  test('stops a 1 GiB bomb at maxPayload with MESSAGE_TOO_BIG (1009), memory far from its inflated size', async () => {
    // Deflate's best ratio is about 1032:1, so 1 GiB needs about 1 MB: 64
    // copies of a sync-flushed 16 MiB run of zeros (non-final blocks, so they chain).
    const block = zlib.deflateRawSync(Buffer.alloc(16 * MiB), { level: 9, finishFlush: zlib.constants.Z_SYNC_FLUSH });
    const bomb = Buffer.concat(Array.from({ length: 64 }, () => block)).subarray(0, -4);
    assert.ok(bomb.length < 1.1 * MiB, `bomb is ${bomb.length} bytes`);
    const maxPayload = 2 * MiB;
    const s = shared({}, maxPayload);
    const pmd = new PerMessageDeflate(s, params());
    global.gc?.();
    const before = process.memoryUsage().rss;
    let error: WebSocketError | null = null;
    let fragments = 0;
    // 10 KB fragments, as a client streaming the bomb would send them.
    for (let i = 0; i < bomb.length && error === null; i += 10_000) {
      fragments++;
      try {
        await decompress(pmd, bomb.subarray(i, i + 10_000), i + 10_000 >= bomb.length);
      } catch (e) {
        error = e as WebSocketError;
      }
    }
    const growth = process.memoryUsage().rss - before;
    assert.ok(error !== null, 'the bomb is stopped');
    assert.equal(error.code, 'MESSAGE_TOO_BIG');
    assert.equal(error.closeCode, 1009);
    assert.ok(fragments <= 3, `stopped within the first fragments (${fragments})`);
    assert.ok(growth < 64 * MiB, `RSS grew by ${(growth / MiB).toFixed(1)} MiB`);
    assert.equal(s.contexts, 0, 'the inflater that met the bomb is closed, not pooled');
    assert.equal(s.limiter.active, 0);
    pmd.close();
  });

  test('accepts a message of exactly maxPayload and refuses one byte more', async () => {
    const s = shared({}, 100_000);
    const exact = new PerMessageDeflate(s, params());
    assert.equal((await decompressFragments(exact, [peerCompress(Buffer.alloc(100_000, 1))])).length, 100_000);
    await assert.rejects(decompress(exact, peerCompress(Buffer.alloc(100_001, 1))), { code: 'MESSAGE_TOO_BIG' });
    exact.close();
  });

  test('closing in the middle of a job frees its context and its queue slot, and drops the callback', async () => {
    const s = shared({ concurrency: 1 });
    const a = new PerMessageDeflate(s, params());
    const b = new PerMessageDeflate(s, params());
    let called = false;
    a.decompress(peerCompress(json(1).repeat(1000)), true, () => {
      called = true;
    });
    assert.equal(s.limiter.active, 1);
    // b waits behind a in the queue of one.
    const bDone = decompress(b, peerCompress('after'));
    a.close();
    assert.equal((await bDone)?.toString(), 'after');
    assert.equal(called, false);
    assert.equal(s.limiter.active, 0);
    b.close();
    s.close();
    assert.equal(s.contexts, 0);
  });

  test('compressOnce gives the same bytes a connection without context takeover sends', async () => {
    const s = shared();
    const pmd = new PerMessageDeflate(s, params());
    const text = json(5);
    assert.deepEqual(s.compressOnce(text, 15), await compress(pmd, text));
    assert.equal(peerInflate(s.compressOnce(Buffer.from(text), 10)).toString(), text);
    pmd.close();
  });
});
