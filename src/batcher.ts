/**
 * Per-tick write batching. Every frame for a connection in one turn of the
 * event loop (pushes, broadcasts, publishes, pongs, in call order) is held
 * until the end of the turn and then leaves in one write. Connections that
 * were sent the same sequence of frames (a broadcast to everyone, a topic's
 * subscribers) form one group: their bytes are joined once and written to all
 * of them with one native batched call (native transport slots, or the
 * descriptors of Node sockets), or one `socket.write` each of the same shared
 * buffer; nothing is copied per recipient unless the kernel refuses it.
 *
 * Grouping is a trie of frames: a connection's position is the node reached
 * by the frames it got this turn, so "same sequence" is "same node", found
 * in O(1) per frame and recipient.
 */
import { Buffer } from 'node:buffer';
import { frameLength, type EncodedFrame } from './protocol/frame.js';
import { writableFd, writeBatch } from './native.js';
import type { NativeWire } from './transport.js';
import type { StreamWire, Wire } from './wire.js';

/** What the batcher needs of a connection. */
export interface Batchable {
  /** Where this connection stands in this turn's trie; null when nothing is pending. */
  batchNode: BatchNode | null;
  /** Bytes pending in this turn (not yet handed to the wire). */
  pendingBytes: number;
  /** Writes bytes through the wire (after anything already queued there). */
  writeOut(frames: readonly EncodedFrame[] | Buffer): void;
  readonly wire: Wire;
}

/** One node of the trie: the frame that led here from the parent. */
export class BatchNode {
  private lastFrame: EncodedFrame | null = null;
  private lastChild: BatchNode | null = null;
  private children: Map<EncodedFrame, BatchNode> | null = null;
  /** Filled at flush time with the connections that ended here. */
  members: Batchable[] | null = null;

  constructor(
    readonly parent: BatchNode | null,
    readonly frame: EncodedFrame | null,
    readonly depth: number,
    readonly bytes: number,
  ) {}

  /** The node one frame further; shared by every connection that gets `frame` next. */
  child(frame: EncodedFrame): BatchNode {
    if (this.lastFrame === frame) return this.lastChild!;
    let child = this.children?.get(frame);
    if (child === undefined) {
      child = new BatchNode(this, frame, this.depth + 1, this.bytes + frameLength(frame));
      if (this.lastFrame !== null) (this.children ??= new Map()).set(this.lastFrame, this.lastChild!);
    }
    this.lastFrame = frame;
    this.lastChild = child;
    return child;
  }

  /** The frames from the root to this node, in order. */
  frames(): EncodedFrame[] {
    const frames = new Array<EncodedFrame>(this.depth);
    for (let node: BatchNode | null = this; node !== null && node.frame !== null; node = node.parent) {
      frames[node.depth - 1] = node.frame;
    }
    return frames;
  }
}

/** Above this many bytes a group's frames are written as they are rather than joined. */
const JOIN_MAX = 64 * 1024;
/**
 * A group of one connection joins only this much: larger frames go out as
 * one writev of their parts, uncopied (joining pays only when the buffer is
 * shared by many connections).
 */
const JOIN_ONE_MAX = 4 * 1024;
const EAGAIN = -11;
/** Bytes of the buffer that carries, in one native call, the turn's frames of many connections that got their own. */
const EACH_BYTES = 256 * 1024;

/** Joins frames into one buffer (or returns the single frame's buffer as is). */
function join(frames: readonly EncodedFrame[], bytes: number): Buffer {
  if (frames.length === 1 && Buffer.isBuffer(frames[0])) return frames[0];
  const out = Buffer.allocUnsafe(bytes);
  let offset = 0;
  for (const frame of frames) {
    if (Buffer.isBuffer(frame)) {
      offset += frame.copy(out, offset);
    } else {
      offset += frame[0].copy(out, offset);
      offset += frame[1].copy(out, offset);
    }
  }
  return out;
}

export class Batcher {
  private root = new BatchNode(null, null, 0, 0);
  private touched: Batchable[] = [];
  private fds = new Int32Array(256);
  private handles = new Float64Array(256);
  private results = new Int32Array(256);
  private ends = new Uint32Array(256);
  /** Where `writeEach` groups' frames are copied (reused: the transport copies what the kernel does not take). */
  private each: Buffer | null = null;
  /** Native connections alone in their group with few bytes, written together at the end of the flush. */
  private readonly alone: BatchNode[] = [];
  /** A mixed group's members split by wire kind (reused between groups). */
  private readonly native: Batchable[] = [];
  private readonly streams: Batchable[] = [];
  private readonly flushNow = (): void => this.flush();

  /** Queues `frame` for `connection` behind what it already has this turn. */
  append(connection: Batchable, frame: EncodedFrame): void {
    let node = connection.batchNode;
    if (node === null) {
      node = this.root;
      if (this.touched.push(connection) === 1) process.nextTick(this.flushNow);
    }
    connection.batchNode = node.child(frame);
    connection.pendingBytes = connection.batchNode.bytes;
  }

  /**
   * Writes one connection's pending frames now, through its stream (before an
   * `end()` that must follow them). Its place in the turn's list is skipped later.
   */
  flushOne(connection: Batchable): void {
    const node = connection.batchNode;
    if (node === null) return;
    connection.batchNode = null;
    connection.pendingBytes = 0;
    const frames = node.frames();
    connection.writeOut(node.bytes <= JOIN_ONE_MAX ? join(frames, node.bytes) : frames);
  }

  /** Writes everything pending: one write per connection, one batched call per group. */
  flush(): void {
    const touched = this.touched;
    if (touched.length === 0) return;
    this.touched = [];
    this.root = new BatchNode(null, null, 0, 0);
    const leaves: BatchNode[] = [];
    for (const connection of touched) {
      const node = connection.batchNode;
      if (node === null) continue;
      connection.batchNode = null;
      connection.pendingBytes = 0;
      if (connection.wire.destroyed) continue;
      if (node.members === null) {
        node.members = [];
        leaves.push(node);
      }
      node.members.push(connection);
    }
    const alone = this.alone;
    for (const leaf of leaves) {
      const members = leaf.members!;
      // Each connection is in one leaf, so writing these last keeps every connection's order.
      if (members.length === 1 && leaf.bytes <= JOIN_ONE_MAX && members[0].wire.handle >= 0) alone.push(leaf);
      else this.writeGroup(members, leaf.frames(), leaf.bytes);
    }
    if (alone.length > 0) {
      this.writeAlone(alone);
      alone.length = 0;
    }
  }

  /**
   * Native connections that each got frames of their own (echo, replies): their
   * bytes copied one after another into one buffer and written with one
   * native call, not one call and one joined buffer per connection.
   */
  private writeAlone(leaves: readonly BatchNode[]): void {
    const each = (this.each ??= Buffer.allocUnsafeSlow(EACH_BYTES));
    let from = 0;
    while (from < leaves.length) {
      let count = 0;
      let offset = 0;
      while (from + count < leaves.length && offset + leaves[from + count].bytes <= EACH_BYTES) {
        offset += leaves[from + count].bytes;
        count++;
      }
      this.ensureCapacity(count);
      const handles = this.handles;
      const ends = this.ends;
      offset = 0;
      for (let i = 0; i < count; i++) {
        const leaf = leaves[from + i];
        copyFrames(leaf, each, offset);
        offset += leaf.bytes;
        ends[i] = offset;
        handles[i] = leaf.members![0].wire.handle;
      }
      const transport = leaves[from].members![0].wire.transport!;
      transport.binding.writeEach(handles, ends, count, each, this.results);
      const results = this.results;
      for (let i = 0; i < count; i++) {
        // -1: the connection failed; its close event follows.
        if (results[i] >= 0) (leaves[from + i].members![0].wire as NativeWire).queued = results[i];
      }
      from += count;
    }
  }

  private writeGroup(members: readonly Batchable[], frames: readonly EncodedFrame[], bytes: number): void {
    const single = frames.length === 1 ? frames[0] : null;
    // Two buffers at most reach the kernel in one native call: a joined
    // buffer, or a large frame's header and payload.
    let head: Buffer | null = null;
    let body: Buffer | null = null;
    if (single !== null && !Buffer.isBuffer(single)) {
      head = single[0];
      body = single[1];
    } else if (single !== null || bytes <= (members.length === 1 ? JOIN_ONE_MAX : JOIN_MAX)) {
      head = join(frames, bytes);
    }
    if (head === null) {
      for (const member of members) member.writeOut(frames);
      return;
    }
    // A server's connections are almost always of one kind: split only a mixed group.
    let natives = 0;
    for (const member of members) if (member.wire.handle >= 0) natives++;
    if (natives === members.length) {
      this.writeNative(members, head, body);
    } else if (natives === 0) {
      this.writeStreams(members, frames, head, body, bytes);
    } else {
      const native = this.native;
      const streams = this.streams;
      for (const member of members) (member.wire.handle >= 0 ? native : streams).push(member);
      this.writeNative(native, head, body);
      this.writeStreams(streams, frames, head, body, bytes);
      native.length = 0;
      streams.length = 0;
    }
  }

  private ensureCapacity(count: number): void {
    if (this.fds.length >= count) return;
    this.fds = new Int32Array(count * 2);
    this.handles = new Float64Array(count * 2);
    this.results = new Int32Array(count * 2);
    this.ends = new Uint32Array(count * 2);
  }

  /** Native transport connections: one call; what the kernel does not take waits in the transport. */
  private writeNative(members: readonly Batchable[], head: Buffer, body: Buffer | null): void {
    this.ensureCapacity(members.length);
    const handles = this.handles;
    const count = members.length;
    for (let i = 0; i < count; i++) handles[i] = members[i].wire.handle;
    // One transport per server, so one per batcher.
    members[0].wire.transport!.binding.writeBatch(handles, count, head, this.results, body);
    const results = this.results;
    for (let i = 0; i < count; i++) {
      // -1: the connection failed; its close event follows.
      if (results[i] >= 0) (members[i].wire as NativeWire).queued = results[i];
    }
  }

  /** Node streams: one sendmsg each from the addon when their streams are empty, else `socket.write`. */
  private writeStreams(
    members: readonly Batchable[],
    frames: readonly EncodedFrame[],
    head: Buffer,
    body: Buffer | null,
    bytes: number,
  ): void {
    if (writeBatch === null) {
      const out = body === null ? head : frames;
      for (const member of members) member.writeOut(out);
      return;
    }
    this.ensureCapacity(members.length);
    const fds = this.fds;
    let count = 0;
    for (const member of members) fds[count++] = writableFd(member.wire.socket!);
    writeBatch(fds, count, head, this.results, body);
    const results = this.results;
    for (let i = 0; i < count; i++) {
      const member = members[i];
      const written = results[i];
      if (fds[i] < 0 || written === EAGAIN) {
        member.writeOut(body === null ? head : frames);
      } else if (written < 0) {
        // The kernel refused the socket (peer gone); the close reports 1006.
        member.wire.destroy();
      } else {
        (member.wire as StreamWire).directBytesOut += written;
        if (written < bytes) member.writeOut(rest(head, body, written));
      }
    }
  }
}

/** Copies the frames from the root to `leaf` into `out` at `at` (`leaf.bytes` of them), without listing them. */
function copyFrames(leaf: BatchNode, out: Buffer, at: number): void {
  for (let node: BatchNode | null = leaf; node !== null && node.frame !== null; node = node.parent) {
    const frame = node.frame;
    const end = at + node.bytes;
    if (Buffer.isBuffer(frame)) {
      frame.copy(out, end - frame.length);
    } else {
      frame[1].copy(out, end - frame[1].length);
      frame[0].copy(out, end - frame[1].length - frame[0].length);
    }
  }
}

/** What remains of head + body after the kernel took `written` bytes. */
function rest(head: Buffer, body: Buffer | null, written: number): Buffer | readonly EncodedFrame[] {
  if (written < head.length) {
    const tail = head.subarray(written);
    return body === null ? tail : [tail, body];
  }
  return (body as Buffer).subarray(written - head.length);
}
