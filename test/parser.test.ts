/**
 * The frame parser, driven through its handler interface without sockets.
 * Every case is also re-run with its input split at every byte boundary and
 * fed one byte at a time.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { WebSocketError } from '../src/errors.js';
import { adoptSpareParser, Parser, returnSpareParser, type ParserHandler } from '../src/protocol/parser.js';
import { clientFrame } from './helpers.js';

type Event =
  | ['message', number, string]
  | ['ping', string]
  | ['pong', string]
  | ['close', number, string]
  | ['error', string, number];

class Recorder implements ParserHandler {
  events: Event[] = [];
  onMessage(opcode: number, source: Buffer, start: number, end: number): void {
    this.events.push(['message', opcode, source.toString('hex', start, end)]);
  }
  onPing(payload: Buffer): void {
    this.events.push(['ping', payload.toString('hex')]);
  }
  onPong(payload: Buffer): void {
    this.events.push(['pong', payload.toString('hex')]);
  }
  onClose(code: number, reason: string): void {
    this.events.push(['close', code, reason]);
  }
  onError(error: WebSocketError): void {
    this.events.push(['error', error.code, error.closeCode]);
  }
}

const MASK = Buffer.from('37fa213d', 'hex');
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const masked = (opcode: number, payload: Buffer | string, opts: Parameters<typeof clientFrame>[2] = {}): Buffer =>
  clientFrame(opcode, payload, { mask: MASK, ...opts });

/** Feeds `chunks` to a fresh parser; returns the events. */
function run(chunks: Buffer[], maxPayload = 1 << 20): Event[] {
  const recorder = new Recorder();
  const parser = new Parser(recorder, maxPayload);
  // Copies: the parser unmasks in place.
  for (const chunk of chunks) parser.write(Buffer.from(chunk));
  return recorder.events;
}

/** Bytes around a ranged chunk (see `runRanged`): read as a frame, they would be an RSV_BITS_SET error. */
const JUNK = Buffer.from('ffffff', 'hex');

/**
 * Feeds each chunk as a range of a larger buffer with other bytes on both
 * sides, as the native transport hands a connection its part of a batch.
 */
function runRanged(chunks: Buffer[], maxPayload = 1 << 20): Event[] {
  const recorder = new Recorder();
  const parser = new Parser(recorder, maxPayload);
  for (const chunk of chunks) parser.write(Buffer.concat([JUNK, chunk, JUNK]), JUNK.length, JUNK.length + chunk.length);
  return recorder.events;
}

/** Asserts the events for `input` whole, split at every byte (also as ranges of larger buffers), and byte by byte. */
function check(input: Buffer, expected: Event[], maxPayload?: number): void {
  assert.deepEqual(run([input], maxPayload), expected, 'whole input');
  assert.deepEqual(runRanged([input], maxPayload), expected, 'whole input, as a range');
  for (let i = 1; i < input.length; i++) {
    assert.deepEqual(run([input.subarray(0, i), input.subarray(i)], maxPayload), expected, `split at ${i}`);
    assert.deepEqual(runRanged([input.subarray(0, i), input.subarray(i)], maxPayload), expected, `split at ${i}, as ranges`);
  }
  const bytes = Array.from({ length: input.length }, (_, i) => input.subarray(i, i + 1));
  assert.deepEqual(run(bytes, maxPayload), expected, 'byte by byte');
}

const text = (s: string): Event => ['message', 1, Buffer.from(s).toString('hex')];

describe('parser: valid frames', () => {
  test("reads RFC 6455 5.7's masked 'Hello' example", () => {
    check(hex('81 85 37fa213d 7f9f4d5158'), [text('Hello')]);
  });

  test('reads an empty text message and an empty binary message', () => {
    check(Buffer.concat([masked(1, ''), masked(2, '')]), [text(''), ['message', 2, '']]);
  });

  test('reads 7-bit, 16-bit and 64-bit payload lengths (125, 126, 65535, 65536 bytes)', () => {
    for (const size of [125, 126, 65535, 65536]) {
      const payload = Buffer.alloc(size, 0x61 + (size % 26));
      const frame = masked(2, payload);
      assert.deepEqual(run([frame]), [['message', 2, payload.toString('hex')]], `size ${size}`);
      const mid = frame.length >> 1;
      assert.deepEqual(run([frame.subarray(0, mid), frame.subarray(mid)]), [['message', 2, payload.toString('hex')]]);
    }
  });

  test('accepts a 16-bit length field carrying a small value (non-minimal encoding)', () => {
    check(hex('82 fe 0003 00000000 010203'), [['message', 2, '010203']]);
  });

  test('reassembles a message fragmented into text + continuations', () => {
    const input = Buffer.concat([masked(1, 'Hel', { fin: false }), masked(0, 'l', { fin: false }), masked(0, 'o')]);
    check(input, [text('Hello')]);
  });

  test('reassembles fragments that include empty ones', () => {
    const input = Buffer.concat([masked(2, '', { fin: false }), masked(0, 'ab', { fin: false }), masked(0, '', { fin: false }), masked(0, 'c')]);
    check(input, [['message', 2, Buffer.from('abc').toString('hex')]]);
  });

  test('accepts control frames between fragments of a message', () => {
    const input = Buffer.concat([
      masked(1, 'a', { fin: false }),
      masked(9, 'p1'),
      masked(0, 'b', { fin: false }),
      masked(10, 'p2'),
      masked(0, 'c'),
    ]);
    check(input, [['ping', Buffer.from('p1').toString('hex')], ['pong', Buffer.from('p2').toString('hex')], text('abc')]);
  });

  test('reads several messages in one chunk, in order', () => {
    const input = Buffer.concat([masked(1, 'one'), masked(2, Buffer.from([1, 2])), masked(1, 'three')]);
    check(input, [text('one'), ['message', 2, '0102'], text('three')]);
  });

  test('reads ping and pong payloads of 0 and 125 bytes', () => {
    const big = Buffer.alloc(125, 7);
    check(Buffer.concat([masked(9, ''), masked(10, big)]), [['ping', ''], ['pong', big.toString('hex')]]);
  });

  test('reads a close frame with code and reason, and stops after it', () => {
    check(Buffer.concat([masked(8, Buffer.concat([hex('03e8'), Buffer.from('bye')])), masked(1, 'ignored')]), [['close', 1000, 'bye']]);
  });

  test('reports an empty close frame as 1005', () => {
    check(masked(8, ''), [['close', 1005, '']]);
  });

  test('accepts every valid close code: 1000-1003, 1007-1014, 3000-4999', () => {
    for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999]) {
      const body = Buffer.alloc(2);
      body.writeUInt16BE(code);
      assert.deepEqual(run([masked(8, body)]), [['close', code, '']], `code ${code}`);
    }
  });

  test('validates multi-byte UTF-8 split across fragments at every byte', () => {
    const s = 'κόσμε 😀 €';
    const bytes = Buffer.from(s);
    for (let cut = 1; cut < bytes.length; cut++) {
      const input = Buffer.concat([masked(1, bytes.subarray(0, cut), { fin: false }), masked(0, bytes.subarray(cut))]);
      assert.deepEqual(run([input]), [text(s)], `cut at ${cut}`);
    }
  });

  test('accepts a message of exactly maxPayload bytes, fragmented', () => {
    const input = Buffer.concat([masked(2, Buffer.alloc(6, 1), { fin: false }), masked(0, Buffer.alloc(4, 2))]);
    check(input, [['message', 2, '01010101010102020202']], 10);
  });
});

describe('parser: protocol errors', () => {
  const err = (code: string, close: number): Event => ['error', code, close];

  test('fails with 1002 on an unmasked client frame', () => {
    check(hex('81 05 48656c6c6f'), [err('UNMASKED_FRAME', 1002)]);
  });

  test('fails with 1002 on each RSV bit set without an extension', () => {
    for (const rsv of [4, 2, 1]) check(masked(1, 'x', { rsv }), [err('RSV_BITS_SET', 1002)]);
  });

  test('fails with 1002 on reserved opcodes 3-7 and 11-15', () => {
    for (const opcode of [3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) check(masked(opcode, 'x'), [err('RESERVED_OPCODE', 1002)]);
  });

  test('fails with 1002 on a fragmented control frame', () => {
    check(masked(9, 'x', { fin: false }), [err('CONTROL_FRAGMENTED', 1002)]);
  });

  test('fails with 1002 on a control frame longer than 125 bytes', () => {
    check(masked(9, Buffer.alloc(126)), [err('CONTROL_TOO_LONG', 1002)]);
  });

  test('fails with 1002 on a continuation with nothing to continue', () => {
    check(masked(0, 'x'), [err('UNEXPECTED_CONTINUATION', 1002)]);
  });

  test('fails with 1002 on a new data frame inside a fragmented message', () => {
    check(Buffer.concat([masked(1, 'a', { fin: false }), masked(1, 'b')]), [err('EXPECTED_CONTINUATION', 1002)]);
  });

  test('fails with 1002 on a 64-bit length with the top bit set', () => {
    check(hex('82 ff 8000000000000001 00000000'), [err('INVALID_LENGTH', 1002)]);
  });

  test('fails with 1009 from the header of a frame larger than maxPayload, before its payload', () => {
    // Only the header is sent: the error must not wait for the payload.
    check(masked(2, Buffer.alloc(0), { length: 1025 }).subarray(0, 8), [err('MESSAGE_TOO_BIG', 1009)], 1024);
  });

  test('fails with 1009 on a 2^53-byte length header', () => {
    check(hex('82 ff 0020000000000000 00000000'), [err('MESSAGE_TOO_BIG', 1009)]);
  });

  test('fails with 1009 when fragments add up past maxPayload', () => {
    const input = Buffer.concat([masked(2, Buffer.alloc(6), { fin: false }), masked(0, Buffer.alloc(5))]);
    check(input, [err('MESSAGE_TOO_BIG', 1009)], 10);
  });

  test('fails with 1007 on invalid UTF-8 in a single-frame text message', () => {
    check(masked(1, hex('cebae1bdb9cf83cebcceb5eda080656469746564')), [err('INVALID_UTF8', 1007)]);
  });

  test('fails with 1007 at the first bad fragment, before the message ends', () => {
    // The final fragment is never sent: the error comes from the second one.
    const input = Buffer.concat([masked(1, 'ok', { fin: false }), masked(0, hex('c0af'), { fin: false })]);
    check(input, [err('INVALID_UTF8', 1007)]);
  });

  test('fails with 1007 inside a large frame before the frame is complete', () => {
    const payload = Buffer.concat([Buffer.alloc(1000, 0x61), hex('ff'), Buffer.alloc(1000, 0x61)]);
    const frame = masked(1, payload);
    // Header plus the first 1,100 payload bytes: the bad byte is among them.
    const headerLength = frame.length - payload.length;
    assert.deepEqual(run([frame.subarray(0, headerLength + 1100)]), [err('INVALID_UTF8', 1007)]);
  });

  test('says in the error and the close reason where the first invalid byte of the message is', () => {
    const errors: WebSocketError[] = [];
    const handler = Object.assign(new Recorder(), { onError: (e: WebSocketError) => errors.push(e) });
    const cases: [Buffer[], number][] = [
      [[masked(1, hex('41 42 43 ff'))], 3],
      [[masked(1, 'abc', { fin: false }), masked(0, hex('44 e2 28'), { fin: false })], 5],
      [[masked(1, hex('61 e2'), { fin: false }), masked(0, hex('82 41'))], 3],
      [[masked(1, hex('61 e2 82'), { fin: false }), masked(0, '')], 3],
      [[masked(1, Buffer.concat([Buffer.alloc(70_000, 0x61), hex('c0 80')]))], 70_000],
    ];
    for (const [frames, offset] of cases) {
      errors.length = 0;
      const parser = new Parser(handler, 1 << 20);
      for (const f of frames) parser.write(Buffer.from(f));
      assert.equal(errors.length, 1);
      assert.deepEqual([errors[0].code, errors[0].offset], ['INVALID_UTF8', offset]);
      assert.match(errors[0].message, new RegExp(`\\(byte ${offset}\\)$`));
    }
  });

  test('fails with 1007 when a text message ends inside a code point', () => {
    const input = Buffer.concat([masked(1, hex('e282'), { fin: false }), masked(0, '')]);
    check(input, [err('INVALID_UTF8', 1007)]);
  });

  test('fails with 1002 on a close frame with a 1-byte payload', () => {
    check(masked(8, hex('03')), [err('INVALID_CLOSE_PAYLOAD', 1002)]);
  });

  test('fails with 1002 on invalid close codes', () => {
    for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]) {
      const body = Buffer.alloc(2);
      body.writeUInt16BE(code);
      assert.deepEqual(run([masked(8, body)]), [err('INVALID_CLOSE_CODE', 1002)], `code ${code}`);
    }
  });

  test('fails with 1007 on a close reason that is not UTF-8', () => {
    check(masked(8, hex('03e8 ff')), [err('INVALID_CLOSE_REASON', 1007)]);
  });

  test('reports only the first error and ignores every later byte', () => {
    const input = Buffer.concat([masked(3, 'x'), masked(1, 'never'), hex('81 05 00')]);
    check(input, [err('RESERVED_OPCODE', 1002)]);
  });
});

describe('parser: memory', () => {
  test('a message in many tiny fragments is held in one buffer of about its size', () => {
    const recorder = new Recorder();
    const parser = new Parser(recorder, 1 << 20);
    let payload: Buffer | null = null;
    recorder.onMessage = (_opcode, source, start, end) => {
      payload = source.subarray(start, end);
    };
    const fragments = 20_000;
    parser.write(masked(2, Buffer.from([0]), { fin: false }));
    for (let i = 1; i < fragments - 1; i++) parser.write(masked(0, Buffer.from([i & 0xff]), { fin: false }));
    parser.write(masked(0, Buffer.from([(fragments - 1) & 0xff])));
    assert.ok(payload !== null);
    const p = payload as Buffer;
    assert.equal(p.length, fragments);
    for (let i = 0; i < fragments; i++) if (p[i] !== (i & 0xff)) assert.fail(`byte ${i}`);
    // One backing store of about the message's size: not a chunk per
    // fragment, nor the slack of geometric growth.
    assert.ok(p.buffer.byteLength <= fragments * 1.25, `backing store ${p.buffer.byteLength}`);
  });

  test('a fragmented message does not keep the socket chunks it came in alive', () => {
    const recorder = new Recorder();
    const parser = new Parser(recorder, 1 << 20);
    let payload: Buffer | null = null;
    recorder.onMessage = (_opcode, source, start, end) => {
      payload = source.subarray(start, end);
    };
    const chunk = Buffer.alloc(64 * 1024);
    const first = masked(2, 'ab', { fin: false });
    first.copy(chunk);
    parser.write(chunk.subarray(0, first.length));
    parser.write(masked(0, 'cd'));
    assert.notEqual((payload as Buffer | null)?.buffer, chunk.buffer);
  });
});

/** Records compressed fragments too; optionally pauses on each and resumes when told. */
class DeflateRecorder extends Recorder {
  parser!: Parser;
  pauseOnFragment = false;
  onCompressedFragment(opcode: number, payload: Buffer, fin: boolean): void {
    this.events.push(['fragment', opcode, payload.toString('hex'), fin] as unknown as Event);
    if (this.pauseOnFragment) this.parser.pause();
  }
}

function runCompressed(chunks: Buffer[], maxPayload = 1 << 20): Event[] {
  const recorder = new DeflateRecorder();
  recorder.parser = new Parser(recorder, maxPayload, true);
  for (const chunk of chunks) recorder.parser.write(Buffer.from(chunk));
  return recorder.events;
}

/** Like check(), for a parser that negotiated permessage-deflate. */
function checkCompressed(input: Buffer, expected: unknown[], maxPayload?: number): void {
  assert.deepEqual(runCompressed([input], maxPayload), expected, 'whole input');
  for (let i = 1; i < input.length; i++) {
    assert.deepEqual(runCompressed([input.subarray(0, i), input.subarray(i)], maxPayload), expected, `split at ${i}`);
  }
  const bytes = Array.from({ length: input.length }, (_, i) => input.subarray(i, i + 1));
  assert.deepEqual(runCompressed(bytes, maxPayload), expected, 'byte by byte');
}

describe('parser: permessage-deflate (RFC 7692)', () => {
  const err = (code: string, close: number): Event => ['error', code, close];
  // RFC 7692 7.2.3.1: "Hello" compressed, c1 07 f2 48 cd c9 c9 07 00 unmasked.
  const HELLO = hex('f248cdc9c90700');

  test('hands over a frame with RSV1 as a compressed fragment, unmasked and not UTF-8 checked', () => {
    checkCompressed(masked(1, HELLO, { rsv: 4 }), [['fragment', 1, HELLO.toString('hex'), true]]);
    // 0xff is never valid UTF-8: a compressed text payload is checked after inflating, not here.
    checkCompressed(masked(1, hex('ff00'), { rsv: 4 }), [['fragment', 1, 'ff00', true]]);
  });

  test('hands over each frame of a fragmented compressed message as it completes, then plain messages as before', () => {
    const input = Buffer.concat([
      masked(2, hex('f248cd'), { rsv: 4, fin: false }),
      masked(9, 'p'),
      masked(0, '', { fin: false }),
      masked(0, hex('c9c90700')),
      masked(1, 'plain'),
    ]);
    checkCompressed(input, [
      ['fragment', 2, 'f248cd', false],
      ['ping', Buffer.from('p').toString('hex')],
      ['fragment', 2, '', false],
      ['fragment', 2, 'c9c90700', true],
      text('plain'),
    ]);
  });

  test('fails RSV1 on a continuation frame with RSV1_NOT_FIRST (1002)', () => {
    checkCompressed(Buffer.concat([masked(1, 'a', { rsv: 4, fin: false }), masked(0, 'b', { rsv: 4 })]), [
      ['fragment', 1, Buffer.from('a').toString('hex'), false],
      err('RSV1_NOT_FIRST', 1002),
    ]);
  });

  test('fails RSV1 on control frames with RSV1_NOT_FIRST (1002)', () => {
    for (const opcode of [8, 9, 10]) checkCompressed(masked(opcode, '', { rsv: 4 }), [err('RSV1_NOT_FIRST', 1002)]);
  });

  test('still fails RSV2 and RSV3, which permessage-deflate does not define', () => {
    for (const rsv of [2, 1, 6]) checkCompressed(masked(1, 'x', { rsv }), [err('RSV_BITS_SET', 1002)]);
  });

  test('without the extension RSV1 stays a protocol error', () => {
    check(masked(1, HELLO, { rsv: 4 }), [err('RSV_BITS_SET', 1002)]);
  });

  test('bounds the compressed size of a message near maxPayload, across fragments', () => {
    // maxPayload 1000: compressed bytes may exceed it by the slack deflate needs, no more.
    assert.deepEqual(runCompressed([masked(2, Buffer.alloc(1000), { rsv: 4 })], 1000)[0][0], 'fragment');
    const tooBig = Buffer.concat([masked(2, Buffer.alloc(600), { rsv: 4, fin: false }), masked(0, Buffer.alloc(600))]);
    assert.deepEqual(runCompressed([tooBig], 1000), [['fragment', 2, '00'.repeat(600), false], err('MESSAGE_TOO_BIG', 1009)]);
  });

  test('pause() holds the rest of the input until resume(), in order', () => {
    const recorder = new DeflateRecorder();
    const parser = new Parser(recorder, 1 << 20, true);
    recorder.parser = parser;
    recorder.pauseOnFragment = true;
    parser.write(Buffer.concat([masked(1, HELLO, { rsv: 4 }), masked(1, 'next'), masked(1, HELLO, { rsv: 4 })]));
    assert.deepEqual(recorder.events, [['fragment', 1, HELLO.toString('hex'), true]]);
    parser.write(masked(1, 'later'));
    assert.equal(recorder.events.length, 1, 'input written while paused waits too');
    parser.resume();
    assert.deepEqual(recorder.events.slice(1), [text('next'), ['fragment', 1, HELLO.toString('hex'), true]]);
    parser.resume();
    assert.deepEqual(recorder.events.slice(3), [text('later')]);
  });

  test('pause() holds ranges of larger buffers too, and only the bytes in them', () => {
    const recorder = new DeflateRecorder();
    const parser = new Parser(recorder, 1 << 20, true);
    recorder.parser = parser;
    recorder.pauseOnFragment = true;
    const first = Buffer.concat([masked(1, HELLO, { rsv: 4 }), masked(1, 'next')]);
    parser.write(Buffer.concat([JUNK, first, JUNK]), JUNK.length, JUNK.length + first.length);
    assert.deepEqual(recorder.events, [['fragment', 1, HELLO.toString('hex'), true]]);
    const later = masked(1, 'later');
    parser.write(Buffer.concat([JUNK, later, JUNK]), JUNK.length, JUNK.length + later.length);
    parser.resume();
    assert.deepEqual(recorder.events.slice(1), [text('next'), text('later')]);
  });
});

describe('parser: the spare parser connections share between messages', () => {
  const HELLO = hex('f248cdc9c90700');

  test('an idle parser goes back as the spare and reads for the next handler with that handler\'s agreement', () => {
    const agreed = new DeflateRecorder();
    const first = adoptSpareParser(agreed, 1 << 20, true);
    first.write(masked(1, HELLO, { rsv: 4 }));
    assert.deepEqual(agreed.events, [['fragment', 1, HELLO.toString('hex'), true]]);
    assert.equal(returnSpareParser(first), true);
    // The same object, now for a handler without compression: RSV1 is an error for it.
    const plain = new DeflateRecorder();
    const second = adoptSpareParser(plain, 1 << 20, false);
    assert.equal(second, first);
    second.write(masked(1, HELLO, { rsv: 4 }));
    assert.deepEqual(plain.events, [['error', 'RSV_BITS_SET', 1002]]);
    assert.equal(agreed.events.length, 1, 'nothing more reaches the handler it read for before');
  });

  test('a parser inside a frame or a fragmented message stays with its handler; the next handler gets another', () => {
    const whole = masked(1, 'one whole message');
    const cases: [held: Buffer, rest: Buffer, message: string][] = [
      [whole.subarray(0, 5), whole.subarray(5), 'one whole message'],
      [masked(1, 'frag', { fin: false }), masked(0, 'ment'), 'fragment'],
    ];
    for (const [held, rest, message] of cases) {
      const a = new Recorder();
      const parserA = adoptSpareParser(a, 1 << 20, false);
      parserA.write(Buffer.from(held));
      assert.equal(returnSpareParser(parserA), false, 'not idle: not given back');
      const b = new Recorder();
      const parserB = adoptSpareParser(b, 1 << 20, false);
      assert.notEqual(parserB, parserA);
      parserB.write(Buffer.from(masked(1, 'for b')));
      assert.deepEqual(b.events, [text('for b')]);
      assert.equal(returnSpareParser(parserB), true);
      parserA.write(Buffer.from(rest));
      assert.deepEqual(a.events, [text(message)]);
    }
  });
});

describe('parser: randomized input', () => {
  /** A small deterministic PRNG, so a failure can be replayed. */
  function rng(seed: number): () => number {
    let x = seed >>> 0;
    return () => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) / 0x100000000;
    };
  }

  test('random valid streams, split at random points, give back exactly the messages sent', () => {
    const random = rng(0xc0ffee);
    for (let round = 0; round < 200; round++) {
      const sent: Event[] = [];
      const frames: Buffer[] = [];
      for (let m = 0, count = 1 + Math.floor(random() * 6); m < count; m++) {
        const binary = random() < 0.5;
        const size = Math.floor(random() ** 3 * 70_000);
        const payload = binary
          ? Buffer.from(Array.from({ length: size }, () => Math.floor(random() * 256)))
          : Buffer.from('aé€😀'.repeat(size >> 3));
        sent.push(['message', binary ? 2 : 1, payload.toString('hex')]);
        // Cut the message into 1..4 fragments, with a ping between some.
        const cuts = [0, ...Array.from({ length: Math.floor(random() * 4) }, () => Math.floor(random() * payload.length)).sort((a, b) => a - b), payload.length];
        for (let f = 0; f + 1 < cuts.length; f++) {
          const last = f + 2 === cuts.length;
          frames.push(clientFrame(f === 0 ? (binary ? 2 : 1) : 0, payload.subarray(cuts[f], cuts[f + 1]), { fin: last }));
          if (!last && random() < 0.3) {
            frames.push(clientFrame(9, 'p'));
            sent.splice(sent.length - 1, 0, ['ping', '70']);
          }
        }
      }
      const stream = Buffer.concat(frames);
      const chunks: Buffer[] = [];
      for (let at = 0; at < stream.length; ) {
        const take = 1 + Math.floor(random() ** 2 * 9000);
        chunks.push(stream.subarray(at, at + take));
        at += take;
      }
      assert.deepEqual(run(chunks), sent, `round ${round}`);
    }
  });

  test('random garbage and mutated frames never throw, and report at most one error and nothing after it', () => {
    const random = rng(0xbadc0de);
    for (let round = 0; round < 2000; round++) {
      let input: Buffer;
      if (random() < 0.5) {
        input = Buffer.from(Array.from({ length: Math.floor(random() * 300) }, () => Math.floor(random() * 256)));
      } else {
        input = Buffer.concat([clientFrame(1, 'hello'), clientFrame(2, Buffer.alloc(200, 7), { fin: false }), clientFrame(0, 'x')]);
        for (let flips = 1 + Math.floor(random() * 4); flips > 0; flips--) {
          input[Math.floor(random() * input.length)] ^= 1 << Math.floor(random() * 8);
        }
      }
      let events: Event[] = [];
      assert.doesNotThrow(() => {
        events = run([input.subarray(0, input.length >> 1), input.subarray(input.length >> 1)], 4096);
      }, `round ${round}`);
      const errorAt = events.findIndex((e) => e[0] === 'error');
      if (errorAt !== -1) assert.equal(errorAt, events.length - 1, `round ${round}: nothing after the error`);
      const closeAt = events.findIndex((e) => e[0] === 'close');
      if (closeAt !== -1) assert.equal(closeAt, events.length - 1, `round ${round}: nothing after a close`);
    }
  });
});
