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
 * Grouping is a trie of frames (batch-trie.ts): a connection's position is
 * the node reached by the frames it got this turn, so "same sequence" is
 * "same node", found in O(1) per frame and recipient.
 *
 * Native connections that get only messages of their own (an echo, a reply)
 * skip the trie: their frames are encoded straight into one turn buffer, as
 * runs of bytes per connection, and the whole buffer is written with one
 * native call at the end of the turn (`appendMessage`): no frame object, no
 * trie node, and a small payload copied once. A large payload that lies in
 * the native batch being delivered (an echo of what was just read) is not
 * copied: only its header goes into the run, and the payload is written from
 * the batch, in place (a splice), in the same call.
 */
import { Buffer } from 'node:buffer';
import { BatchNode, copyFrame, copyFrames, join, spareNodes, type Batchable } from './batch-trie.js';
import { frameLength, headerSize, writeHeader, encodeFrame, type EncodedFrame } from './protocol/frame.js';
import { copyInto } from './fallback/mask.js';
import { isBatch } from './lease.js';
import { writableFd, writeBatch } from './native.js';
import type { NativeWire } from './transport.js';
import type { StreamWire } from './wire.js';

export type { Batchable } from './batch-trie.js';

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
/**
 * Splices (large payloads of the batch being delivered, written from it
 * inside the runs) the turn buffer holds at most: the runs are written out
 * when one more comes, so no connection's write has more (the addon takes
 * 32 a run).
 */
const MAX_SPLICES = 32;
/** A range of up to this many bytes is copied by a loop: cheaper than making a view of it to copy from. */
const COPY_LOOP_MAX = 64;

/**
 * A connection's `batchNode` while all it has pending this turn is in the
 * turn buffer's runs (never a trie node: it has no parent and no children).
 */
const IN_RUNS = new BatchNode();

export class Batcher {
  private readonly root = new BatchNode();
  /** The nodes made this turn (the root aside), handed back for reuse (`spareNodes`) by the flush. */
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
  /** Splice k: `splices[4k .. 4k + 3]`, (run, at, start, end): `spliceBatch[start, end)` goes out inside run `run`, at `at` of the turn buffer. */
  private readonly splices = new Uint32Array(4 * MAX_SPLICES);
  private spliceCount = 0;
  private spliceBatch: Buffer | null = null;
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
    if ((node !== null && node !== IN_RUNS) || connection.wire.handle < 0 || (bytes > RUN_MAX && !isBatch(source))) {
      this.append(connection, encodeFrame(opcode, whole ? source : source.subarray(start, end), true));
      return true;
    }
    if (bytes > RUN_MAX) return this.splice(connection, opcode, source, start, end);
    const at = this.reserve(connection, bytes);
    const runs = this.runs!;
    const from = writeHeader(runs, at, opcode, true, length);
    if (whole) runs.set(source, from);
    else if (length <= COPY_LOOP_MAX) copyInto(source, start, end, runs, this.runsWords!, from);
    else runs.set(source.subarray(start, end), from);
    return true;
  }

  /** A large message whose payload is `batch[start, end)`: its header into the turn buffer, the payload a splice. */
  private splice(connection: Batchable, opcode: number, batch: Buffer, start: number, end: number): true {
    if (this.spliceCount === MAX_SPLICES || (this.spliceBatch !== null && this.spliceBatch !== batch)) this.writeRuns();
    const length = end - start;
    const header = headerSize(length);
    const at = this.reserve(connection, header) + header;
    writeHeader(this.runs!, at - header, opcode, true, length);
    connection.pendingBytes += length;
    const k = 4 * this.spliceCount++;
    const splices = this.splices;
    splices[k] = this.runOwners.length - 1;
    splices[k + 1] = at;
    splices[k + 2] = start;
    splices[k + 3] = end;
    this.spliceBatch = batch;
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
      spareNodes(made);
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
    this.spliceCount = 0;
    this.spliceBatch = null;
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
    const binding = owners[0].wire.transport!.binding;
    if (this.spliceCount === 0) binding.writeEach(handles, this.runEnds, count, this.runs!, this.results);
    else binding.writeEach(handles, this.runEnds, count, this.runs!, this.results, this.spliceBatch, this.splices, this.spliceCount);
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
    // Where run i went: its new run, and how far its bytes moved (for the splices in it).
    const runOf = new Uint32Array(owners.length);
    const moved = new Int32Array(owners.length);
    let offset = 0;
    let count = 0;
    for (const [owner, list] of byOwner) {
      for (const i of list) {
        const begin = i === 0 ? 0 : ends[i - 1];
        runOf[i] = count;
        moved[i] = offset - begin;
        offset += from.copy(to, offset, begin, ends[i]);
      }
      owners[count] = owner;
      this.runEnds[count++] = offset;
    }
    owners.length = count;
    if (this.spliceCount > 0) this.moveSplices(runOf, moved);
    this.spareRuns = from;
    this.useRuns(to);
  }

  private useRuns(runs: Buffer): void {
    this.runs = runs;
    this.runsWords = new DataView(runs.buffer, runs.byteOffset, runs.byteLength);
  }

  /** After `gather`: each splice goes with its run's bytes, and the splices are in order of run and position again. */
  private moveSplices(runOf: Uint32Array, moved: Int32Array): void {
    const splices = this.splices;
    const list: number[][] = [];
    for (let k = 0; k < 4 * this.spliceCount; k += 4) {
      const run = splices[k];
      list.push([runOf[run], splices[k + 1] + moved[run], splices[k + 2], splices[k + 3]]);
    }
    list.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    list.forEach((splice, k) => splices.set(splice, 4 * k));
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

/** What remains of head + body after the kernel took `written` bytes. */
function rest(head: Buffer, body: Buffer | null, written: number): Buffer | readonly EncodedFrame[] {
  if (written < head.length) {
    const tail = head.subarray(written);
    return body === null ? tail : [tail, body];
  }
  return (body as Buffer).subarray(written - head.length);
}
