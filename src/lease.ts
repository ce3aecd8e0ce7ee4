/**
 * Whether anything kept a view of the native batch being delivered.
 *
 * The native transport reads into large blocks and hands JS a whole batch of
 * them in one Buffer; by default a block is read into again only once V8 has
 * freed every view of it, after some tens of MiB of other reads, so the
 * kernel writes into memory long gone from the CPU's cache. With the server's
 * `borrowFrames`, received frames are valid only inside their `message`
 * listener, and a batch nobody kept is taken back as soon as its delivery is
 * over (its microtasks and nextTicks included): the transport detaches the
 * batch's ArrayBuffer, so a view of it reads as empty, never as later bytes.
 *
 * The transport writes the keep flag (the last int32 of its events array)
 * before each delivery: 0 when it offers the batch back. Whatever may hold a
 * view of the batch past the delivery calls `keepBatch()`: the parser's
 * input held while paused, a compressed frame on its way to zlib, a message
 * queued behind one being compressed or into a Node stream, and a received
 * frame's bytes handed to the rest of the API (`bytesOf`). That batch then
 * comes back as without the option, when V8 frees it.
 */

/** The events array of the transport delivering now (or last), whose last int32 is the keep flag. */
let flags: Int32Array | null = null;
/** The batch being delivered, null between deliveries. */
let batch: Uint8Array | null = null;

/** @internal A native delivery starts (`events`: its transport's event array; `data`: the batch, if any). */
export function delivering(events: Int32Array, data: Uint8Array | undefined): void {
  flags = events;
  batch = data ?? null;
}

/** @internal The delivery's listeners have run (its nextTicks have not: a flush still sees what was queued). */
export function delivered(): void {
  batch = null;
}

/**
 * @internal Whether `buf` is the batch being delivered: small payloads in it
 * are read a word at a time (fallback/mask.ts), and a large one sent on is
 * written from it in place (a splice, batcher.ts).
 */
export function isBatch(buf: Uint8Array): boolean {
  return buf === batch;
}

/** @internal Something may hold a view of the batch being delivered past the delivery: it must not be taken back. */
export function keepBatch(): void {
  if (flags !== null) flags[flags.length - 1] = 1;
}

/** @internal `keepBatch()`, then `view`: for a view that is about to be held. */
export function kept<T>(view: T): T {
  keepBatch();
  return view;
}
