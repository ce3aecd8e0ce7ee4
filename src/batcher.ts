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
 *
 * Native connections that get only small frames of their own (an echo, a
 * reply) skip the trie: their frames are encoded straight into one turn
 * buffer, as runs of bytes per connection, and the whole buffer is written
 * with one native call at the end of the turn (`appendMessage`): no frame
 * object, no trie node, and the payload copied once.
 */
import { Buffer } from 'node:buffer';
import { frameLength, headerSize, writeHeader, encodeFrame, type EncodedFrame } from './protocol/frame.js';
import { copyInto } from './fallback/mask.js';
import { writableFd, writeBatch } from './native.js';
import type { NativeWire } from './transport.js';
import type { StreamWire, Wire } from './wire.js';

/** What the batcher needs of a connection. */
export interface Batchable {
  /** Where this connection stands in this turn's trie; `IN_RUNS` in the turn buffer; null when nothing is pending. */
  batchNode: BatchNode | null;
  /** Bytes pending in this turn (not yet handed to the wire). */
  pendingBytes: number;
  readonly wire: Wire;
}

/** One node of the trie: the frame that led here from the parent. Reused across turns (see `SPARE_NODES`). */
export class BatchNode {
  private lastFrame: EncodedFrame | null = null;
  private lastChild: BatchNode | null = null;
  private children: Map<EncodedFrame, BatchNode> | null = null;
  /** Filled at flush time with the connections that ended here. */
  members: Batchable[] | null = null;
  parent: BatchNode | null = null;
  frame: EncodedFrame | null = null;
  depth = 0;
  bytes = 0;

  /** Makes this node `frame`'s child of `parent` (or a root, with nulls), with no children. */
  reset(parent: BatchNode | null, frame: EncodedFrame | null, depth: number, bytes: number): this {
    this.parent = parent;
    this.frame = frame;
    this.depth = depth;
    this.bytes = bytes;
    this.lastFrame = null;
    this.lastChild = null;
    this.children = null;
    this.members = null;
    return this;
  }

  /** The node one frame further, shared by every connection that gets `frame` next; a new one is listed in `made`. */
  child(frame: EncodedFrame, made: BatchNode[]): BatchNode {
    if (this.lastFrame === frame) return this.lastChild!;
    let child = this.children?.get(frame);
    if (child === undefined) {
      child = (spareNodes.pop() ?? new BatchNode()).reset(this, frame, this.depth + 1, this.bytes + frameLength(frame));
      made.push(child);
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

/**
 * Above this many bytes a group's frames are written as they are rather than
 * joined (then one call per connection instead of one for the group). As
 * much as one read can bring: a sender's 64 messages of 1 KiB read at once
 * are 64 broadcasts in one turn, 65.8 KB for each receiver.
 */
const JOIN_MAX = 256 * 1024;
/**
 * A group of one connection joins only this much: larger frames go out as
 * one writev of their parts, uncopied (joining pays only when the buffer is
 * shared by many connections).
 */
const JOIN_ONE_MAX = 4 * 1024;
const EAGAIN = -11;
/** Bytes of the turn buffer that carries, in one native call, the frames of many connections that got their own. */
const RUN_BYTES = 256 * 1024;
/** Frames up to this size go into the turn buffer (larger ones are not copied: see `JOIN_ONE_MAX`). */
const RUN_MAX = JOIN_ONE_MAX;
/** A range of up to this many bytes is copied by a loop: cheaper than making a view of it to copy from. */
const COPY_LOOP_MAX = 64;

/**
 * A connection's `batchNode` while all it has pending this turn is in the
 * turn buffer's runs (never a trie node: it has no parent and no children).
 */
const IN_RUNS = new BatchNode();

/**
 * Trie nodes kept for reuse by every batcher (a node returns here once its
 * flush is done with it), at most this many. A node made fresh each turn is
 * young and the connections pointing at it old: each such store (16,000 a
 * turn for 16 broadcasts to 1,000) took V8's write barrier into the
 * remembered set, 0.9% of that server's CPU. Reused nodes are old.
 */
const SPARE_NODES = 1024;
const spareNodes: BatchNode[] = [];

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
  private readonly root = new BatchNode();
  /** The nodes made this turn (the root aside), handed back to `spareNodes` by the flush. */
  private made: BatchNode[] = [];
  private touched: Batchable[] = [];
  private fds = new Int32Array(256);
  private handles = new Float64Array(256);
  private results = new Int32Array(256);
  /**
   * The turn buffer: runs of bytes, each for one native connection, written
   * with one `writeEach` (reused: the transport copies what the kernel does
   * not take). Run i is `[runEnds[i - 1], runEnds[i])`, for `runOwners[i]`.
   */
  private runs: Buffer | null = null;
  /** A DataView over `runs` (for `copyInto`). */
  private runsWords: DataView | null = null;
  private runBytes = 0;
  private runEnds = new Uint32Array(256);
  private readonly runOwners: Batchable[] = [];
  /** Some connection has more than one run (another's came between): `gather` before writing. */
  private scattered = false;
  /** Where `gather` copies runs to (allocated the first time it is needed). */
  private spareRuns: Buffer | null = null;
  private scheduled = false;
  /** A mixed group's members split by wire kind (reused between groups). */
  private readonly native: Batchable[] = [];
  private readonly streams: Batchable[] = [];
  private readonly flushNow = (): void => this.flush();

  /** Queues `frame` for `connection` behind what it already has this turn. */
  append(connection: Batchable, frame: EncodedFrame): void {
    let node = connection.batchNode;
    if (node === IN_RUNS) {
      const bytes = frameLength(frame);
      if (bytes <= RUN_MAX) {
        const at = this.reserve(connection, bytes);
        copyFrame(frame, this.runs!, at);
        return;
      }
      // A large frame is not copied: what the runs hold goes out first.
      this.writeRuns();
      node = null;
    }
    if (node === null) {
      node = this.root;
      this.touched.push(connection);
      this.schedule();
    }
    connection.batchNode = node.child(frame, this.made);
    connection.pendingBytes = connection.batchNode.bytes;
  }

  /**
   * Queues a whole text or binary message, `source[start, end)`, for
   * `connection`: encoded straight into the turn buffer when the connection
   * is native and has nothing in the trie this turn, else as `append` of its
   * frame. Returns true: queued, as a send reports it.
   */
  appendMessage(connection: Batchable, opcode: number, source: Buffer, start: number, end: number): true {
    const length = end - start;
    const bytes = headerSize(length) + length;
    const node = connection.batchNode;
    const whole = start === 0 && end === source.length;
    if ((node !== null && node !== IN_RUNS) || bytes > RUN_MAX || connection.wire.handle < 0) {
      this.append(connection, encodeFrame(opcode, whole ? source : source.subarray(start, end), true));
      return true;
    }
    const at = this.reserve(connection, bytes);
    const runs = this.runs!;
    const from = writeHeader(runs, at, opcode, true, length);
    if (whole) runs.set(source, from);
    else if (length <= COPY_LOOP_MAX) copyInto(source, start, end, runs, this.runsWords!, from);
    else runs.set(source.subarray(start, end), from);
    return true;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    process.nextTick(this.flushNow);
  }

  /**
   * Room for `bytes` more of `connection`'s bytes at the end of the turn
   * buffer (written first if full), behind what it already has there;
   * returns where they go.
   */
  private reserve(connection: Batchable, bytes: number): number {
    if (this.runs === null) this.useRuns(Buffer.allocUnsafeSlow(RUN_BYTES));
    if (this.runBytes + bytes > RUN_BYTES) this.writeRuns();
    const at = this.runBytes;
    const owners = this.runOwners;
    const count = owners.length;
    if (count === 0 || owners[count - 1] !== connection) {
      if (connection.batchNode === IN_RUNS) this.scattered = true;
      else connection.batchNode = IN_RUNS;
      if (count === this.runEnds.length) {
        const ends = new Uint32Array(count * 2);
        ends.set(this.runEnds);
        this.runEnds = ends;
      }
      owners.push(connection);
      if (count === 0) this.schedule();
    }
    this.runBytes = at + bytes;
    this.runEnds[owners.length - 1] = this.runBytes;
    connection.pendingBytes += bytes;
    return at;
  }

  /**
   * Writes one connection's pending frames now, through its stream (before an
   * `end()` that must follow them). Its place in the turn's list is skipped later.
   */
  flushOne(connection: Batchable): void {
    const node = connection.batchNode;
    if (node === null) return;
    if (node === IN_RUNS) {
      this.writeRuns();
      return;
    }
    connection.batchNode = null;
    connection.pendingBytes = 0;
    const frames = node.frames();
    this.writeOut(connection, node.bytes <= JOIN_ONE_MAX ? join(frames, node.bytes) : frames);
  }

  /** Writes everything pending: one write per connection, one batched call per group. */
  flush(): void {
    this.scheduled = false;
    const touched = this.touched;
    if (touched.length > 0) {
      // What JS does during the writes below (a close handler that sends)
      // starts the next turn: a cleared root and a list of its own.
      const made = this.made;
      this.touched = [];
      this.made = [];
      this.root.reset(null, null, 0, 0);
      const leaves: BatchNode[] = [];
      for (const connection of touched) {
        const node = connection.batchNode;
        // IN_RUNS: written out since (flushOne) and in the turn buffer now.
        if (node === null || node === IN_RUNS) continue;
        connection.batchNode = null;
        connection.pendingBytes = 0;
        if (connection.wire.destroyed) continue;
        if (node.members === null) {
          node.members = [];
          leaves.push(node);
        }
        node.members.push(connection);
      }
      for (const leaf of leaves) {
        const members = leaf.members!;
        // Alone with few bytes: into the turn buffer, written below with the
        // other runs (each connection is in one leaf, so its order holds).
        if (members.length === 1 && leaf.bytes <= RUN_MAX && members[0].wire.handle >= 0) {
          const at = this.reserve(members[0], leaf.bytes);
          copyFrames(leaf, this.runs!, at);
        } else {
          this.writeGroup(members, leaf.frames(), leaf.bytes);
        }
      }
      for (const node of made) {
        if (spareNodes.length === SPARE_NODES) break;
        spareNodes.push(node.reset(null, null, 0, 0));
      }
    }
    this.writeRuns();
  }

  /** Writes the turn buffer: each run to its connection, all in one native call. */
  private writeRuns(): void {
    if (this.runOwners.length === 0) return;
    if (this.scattered) this.gather();
    this.writeOwn(this.runOwners, this.runOwners.length);
    this.runOwners.length = 0;
    this.runBytes = 0;
  }

  /** Native connections that each got bytes of their own: `owners[i]` gets run i. */
  private writeOwn(owners: readonly Batchable[], count: number): void {
    this.ensureCapacity(count);
    const handles = this.handles;
    for (let i = 0; i < count; i++) {
      const owner = owners[i];
      owner.batchNode = null;
      owner.pendingBytes = 0;
      // A closed connection's handle names nothing: -1 skips it.
      handles[i] = owner.wire.destroyed ? -1 : owner.wire.handle;
    }
    owners[0].wire.transport!.binding.writeEach(handles, this.runEnds, count, this.runs!, this.results);
    const results = this.results;
    for (let i = 0; i < count; i++) {
      // -1: the connection failed (its close event follows) or was closed.
      if (results[i] >= 0) (owners[i].wire as NativeWire).queued = results[i];
    }
  }

  /**
   * Some connection got runs with another's in between (pushes to A, B, A):
   * copies each connection's runs together, in order, so it gets one write.
   */
  private gather(): void {
    this.scattered = false;
    const owners = this.runOwners;
    const ends = this.runEnds.slice(0, owners.length);
    const byOwner = new Map<Batchable, number[]>();
    for (let i = 0; i < owners.length; i++) {
      const list = byOwner.get(owners[i]);
      if (list === undefined) byOwner.set(owners[i], [i]);
      else list.push(i);
    }
    const from = this.runs!;
    const to = (this.spareRuns ??= Buffer.allocUnsafeSlow(RUN_BYTES));
    let offset = 0;
    let count = 0;
    for (const [owner, list] of byOwner) {
      for (const i of list) offset += from.copy(to, offset, i === 0 ? 0 : ends[i - 1], ends[i]);
      owners[count] = owner;
      this.runEnds[count++] = offset;
    }
    owners.length = count;
    this.spareRuns = from;
    this.useRuns(to);
  }

  private useRuns(runs: Buffer): void {
    this.runs = runs;
    this.runsWords = new DataView(runs.buffer, runs.byteOffset, runs.byteLength);
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
      for (const member of members) this.writeOut(member, frames);
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

  /** Hands bytes to one connection's wire (behind what it already queued), as one write where possible. */
  private writeOut(connection: Batchable, frames: readonly EncodedFrame[] | Buffer): void {
    if (Buffer.isBuffer(frames)) connection.wire.write(frames);
    else connection.wire.writeFrames(frames);
  }

  private ensureCapacity(count: number): void {
    if (this.fds.length >= count) return;
    this.fds = new Int32Array(count * 2);
    this.handles = new Float64Array(count * 2);
    this.results = new Int32Array(count * 2);
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
      for (const member of members) this.writeOut(member, out);
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
        this.writeOut(member, body === null ? head : frames);
      } else if (written < 0) {
        // The kernel refused the socket (peer gone); the close reports 1006.
        member.wire.destroy();
      } else {
        (member.wire as StreamWire).directBytesOut += written;
        if (written < bytes) this.writeOut(member, rest(head, body, written));
      }
    }
  }
}

/** Copies the frames from the root to `leaf` into `out` at `at` (`leaf.bytes` of them), without listing them. */
function copyFrames(leaf: BatchNode, out: Buffer, at: number): void {
  // Each node's frame starts where its parent's bytes end.
  for (let node: BatchNode | null = leaf; node !== null && node.frame !== null; node = node.parent) {
    copyFrame(node.frame, out, at + node.parent!.bytes);
  }
}

/** Copies one frame into `out` at `at`. */
function copyFrame(frame: EncodedFrame, out: Buffer, at: number): void {
  if (Buffer.isBuffer(frame)) {
    out.set(frame, at);
  } else {
    out.set(frame[0], at);
    out.set(frame[1], at + frame[0].length);
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
