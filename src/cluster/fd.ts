/**
 * Who owns an fd. An fd is `owner * 2^32 + seq`: `seq` counts one process's
 * connections from 1, and `owner` names the process that accepted it:
 * `instance * 2^13 + slot`. A single process without an adapter is owner 0,
 * so its fds stay 1, 2, 3, ... as they always were.
 *
 * - `slot` (0 .. 8191): 0 for a process that is not a worker; otherwise a
 *   number the primary gives each worker process it forks, a fresh one per
 *   fork (a restarted worker gets a new slot), so a stale fd of a dead worker
 *   never reaches a newer client. Slots wrap after 8191 forks.
 * - `instance` (0 .. 255): which server instance (machine) among those joined
 *   by an adapter; 0 without one.
 *
 * Every fd stays below 2^53, so it is an exact JS number.
 */

/** Connections one process can accept before its fds would run into the next owner's. */
export const SEQ_RANGE = 2 ** 32;
export const SLOT_RANGE = 2 ** 13;
export const INSTANCE_RANGE = 2 ** 8;

/** The owner code of `instance` / `slot`. */
export function ownerCode(instance: number, slot: number): number {
  if (!Number.isInteger(instance) || instance < 0 || instance >= INSTANCE_RANGE) {
    throw new RangeError(`instanceId must be an integer from 0 to ${INSTANCE_RANGE - 1}, got ${String(instance)}`);
  }
  if (!Number.isInteger(slot) || slot < 0 || slot >= SLOT_RANGE) throw new RangeError(`bad worker slot ${String(slot)}`);
  return instance * SLOT_RANGE + slot;
}

/** The owner of `fd` (0 for fds of a plain single process). */
export function ownerOf(fd: number): number {
  return Math.floor(fd / SEQ_RANGE);
}

export function instanceOf(owner: number): number {
  return Math.floor(owner / SLOT_RANGE);
}

export function slotOf(owner: number): number {
  return owner % SLOT_RANGE;
}

/** Whether `fd` could be an fd at all (a positive safe integer). */
export function isFd(fd: number): boolean {
  return Number.isSafeInteger(fd) && fd > 0;
}
