/**
 * The batcher's trie of frames (see batcher.ts): a connection's position is
 * the node reached by the frames it got this turn, so connections that got
 * the same sequence share a node, and their bytes are joined once.
 */
import { Buffer } from 'node:buffer';
import { frameLength, type EncodedFrame } from './protocol/frame.js';
import type { Wire } from './wire.js';

/** What the batcher needs of a connection. */
export interface Batchable {
  /** Where this connection stands in this turn's trie; `IN_RUNS` (batcher.ts) in the turn buffer; null when nothing is pending. */
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
      child = (spare.pop() ?? new BatchNode()).reset(this, frame, this.depth + 1, this.bytes + frameLength(frame));
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
 * Trie nodes kept for reuse by every batcher (a node returns here once its
 * flush is done with it), at most this many. A node made fresh each turn is
 * young and the connections pointing at it old: each such store (16,000 a
 * turn for 16 broadcasts to 1,000) took V8's write barrier into the
 * remembered set, 0.9% of that server's CPU. Reused nodes are old.
 */
const SPARE_NODES = 1024;
const spare: BatchNode[] = [];

/** Hands the nodes of a flushed turn back for reuse (up to `SPARE_NODES` are kept). */
export function spareNodes(nodes: readonly BatchNode[]): void {
  for (const node of nodes) {
    if (spare.length === SPARE_NODES) break;
    spare.push(node.reset(null, null, 0, 0));
  }
}

/** Joins frames into one buffer (or returns the single frame's buffer as is). */
export function join(frames: readonly EncodedFrame[], bytes: number): Buffer {
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

/** Copies the frames from the root to `leaf` into `out` at `at` (`leaf.bytes` of them), without listing them. */
export function copyFrames(leaf: BatchNode, out: Buffer, at: number): void {
  // Each node's frame starts where its parent's bytes end.
  for (let node: BatchNode | null = leaf; node !== null && node.frame !== null; node = node.parent) {
    copyFrame(node.frame, out, at + node.parent!.bytes);
  }
}

/** Copies one frame into `out` at `at`. */
export function copyFrame(frame: EncodedFrame, out: Buffer, at: number): void {
  if (Buffer.isBuffer(frame)) {
    out.set(frame, at);
  } else {
    out.set(frame[0], at);
    out.set(frame[1], at + frame[0].length);
  }
}
