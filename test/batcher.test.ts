/**
 * The batcher's trie across turns, driven without sockets: fake connections
 * whose wires record what they are handed. Trie nodes are reused from turn to
 * turn, so a turn must never see an earlier turn's grouping, and what JS
 * sends while a flush is writing (a close handler) must reach the next
 * flush intact.
 */
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, test } from 'node:test';
import { Batcher, type Batchable } from '../src/batcher.js';
import { OPCODE } from '../src/index.js';
import { encodeFrame, type EncodedFrame } from '../src/protocol/frame.js';
import type { Wire } from '../src/wire.js';

/** A connection on a stream wire that is never writable straight away: every write reaches `write` / `writeFrames`. */
class FakeConnection implements Batchable {
  batchNode: Batchable['batchNode'] = null;
  pendingBytes = 0;
  readonly written: Buffer[] = [];
  /** Called on each write, after it is recorded (a close handler that sends). */
  onWrite: (() => void) | null = null;
  readonly wire: Wire;

  constructor() {
    const record = (data: Buffer): void => {
      this.written.push(Buffer.from(data));
      this.onWrite?.();
    };
    this.wire = {
      handle: -1,
      transport: null,
      // An encrypted socket has no descriptor to write to: the batcher falls back to the wire's own writes.
      socket: { encrypted: true },
      destroyed: false,
      queued: 0,
      write: record,
      writeFrames: (frames: readonly EncodedFrame[]) => record(Buffer.concat(frames.flatMap((f) => (Buffer.isBuffer(f) ? [f] : [...f])))),
    } as unknown as Wire;
  }

  /** Everything written so far, as the payloads of the frames in it (one byte of header each: short binary frames). */
  payloads(): string[] {
    const all = Buffer.concat(this.written);
    const out: string[] = [];
    for (let at = 0; at < all.length; ) {
      const length = all[at + 1]! & 0x7f;
      out.push(all.subarray(at + 2, at + 2 + length).toString());
      at += 2 + length;
    }
    return out;
  }
}

const frame = (text: string): EncodedFrame => encodeFrame(OPCODE.BINARY, Buffer.from(text));

describe('Batcher across turns', () => {
  test('a frame sent again in a later turn is grouped afresh, with nothing of the earlier turn', () => {
    const batcher = new Batcher();
    const [a, b, c] = [new FakeConnection(), new FakeConnection(), new FakeConnection()];
    const shared = frame('F');
    const g = frame('G');
    batcher.append(a, shared);
    batcher.append(b, shared);
    batcher.append(b, g);
    batcher.append(c, g);
    batcher.flush();
    assert.deepEqual([a.payloads(), b.payloads(), c.payloads()], [['F'], ['F', 'G'], ['G']]);

    // The same frame objects again, in other combinations: the trie's nodes of
    // the first turn are reused, and must lead nowhere the first turn went.
    const h = frame('H');
    batcher.append(b, g);
    batcher.append(a, shared);
    batcher.append(a, h);
    batcher.append(b, shared);
    batcher.append(c, shared);
    batcher.append(c, g);
    batcher.flush();
    assert.deepEqual(
      [a.payloads(), b.payloads(), c.payloads()],
      [
        ['F', 'F', 'H'],
        ['F', 'G', 'G', 'F'],
        ['G', 'F', 'G'],
      ],
    );
    for (const connection of [a, b, c]) {
      assert.equal(connection.batchNode, null);
      assert.equal(connection.pendingBytes, 0);
    }
  });

  test('frames queued while a flush writes (a close handler that sends) go out whole with the next flush', () => {
    const batcher = new Batcher();
    const connections = Array.from({ length: 4 }, () => new FakeConnection());
    const [a, b, c, d] = connections as [FakeConnection, FakeConnection, FakeConnection, FakeConnection];
    const x = frame('X');
    const y = frame('Y');
    // While the first group is written, b and d are sent two frames each.
    a.onWrite = () => {
      a.onWrite = null;
      batcher.append(b, x);
      batcher.append(b, y);
      batcher.append(d, x);
      batcher.append(d, y);
    };
    for (const text of ['1', '2', '3']) {
      const f = frame(text);
      for (const connection of connections) batcher.append(connection, f);
    }
    batcher.append(c, frame('4'));
    batcher.flush();
    assert.deepEqual(
      connections.map((connection) => connection.payloads()),
      [
        ['1', '2', '3'],
        ['1', '2', '3'],
        ['1', '2', '3', '4'],
        ['1', '2', '3'],
      ],
    );
    assert.equal(b.pendingBytes, 6);
    // More frames before the next flush, on nodes taken from the spares: the
    // first flush's, never the ones b and d wait on.
    for (let turn = 0; turn < 50; turn++) {
      const f = frame(String(turn % 10));
      batcher.append(a, f);
      batcher.append(c, f);
      batcher.append(c, frame('z'));
    }
    batcher.flush();
    assert.deepEqual(b.payloads(), ['1', '2', '3', 'X', 'Y']);
    assert.deepEqual(d.payloads(), ['1', '2', '3', 'X', 'Y']);
  });
});
