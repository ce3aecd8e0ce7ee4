/**
 * fd -> connection. fds are positive integers handed out in increasing order
 * and never reused in a server's lifetime, so a stale fd kept by an app can
 * never reach a newer client. No I/O here.
 *
 * A connection that has nothing of its own yet (opened, nothing received,
 * nothing sent, no subprotocol, data or compression) can be kept resting: as
 * a small integer (a native transport slot) instead of objects. Thousands of
 * idle clients then cost no JS heap each, and, more than that, the burst
 * that opens them does not grow V8's young generation (objects that survive
 * it are what grows it). The first look at a resting connection (`get`,
 * `values`, an event on its slot, the heartbeat when it is due) wakes it: its
 * objects are made then, as they would have been at its opening. One that
 * has since received only pings and pongs rests again after the next one,
 * whatever it was sent (a broadcast to everyone wakes everyone, each until
 * its next pong; see `Connection.receive`).
 *
 * Budget of a resting connection: its Map entry here (about 28 bytes at
 * 10,000) and 7 numbers in the transport (56 bytes, off the JS heap);
 * awake, it is a `Connection` (192 bytes) and a `NativeWire` (72 bytes) more.
 */

/** How resting connections are kept and woken: the native transport's slots (see `listen-native.ts`). */
export interface Resting<C> {
  /**
   * Parks the connection of `fd` on `wire` (`connection`: one that rests
   * again, whose times are kept; null: one just opened): a token (a small
   * integer), or -1 when it cannot rest.
   */
  park(fd: number, wire: unknown, connection: C | null): number;
  /** The connection of a token, made now, as it was (the token is spent). */
  wake(fd: number, token: number): C;
  /** Since when the connection of a token has received nothing (a `clock()` reading). */
  quietSince(token: number): number;
  /** Bytes the connection of a token received and sent, and the messages it sent (a resting one has received none). */
  counts(token: number): [bytesIn: number, bytesOut: number, messagesOut: number];
}

export class Registry<C> {
  private base = 0;
  private next = 1;
  /** A connection, or the token of a resting one (see `Resting`). */
  private readonly byFd = new Map<number, C | number>();
  private resting: Resting<C> | null = null;
  /** How many entries of `byFd` are tokens. */
  private restingCount = 0;
  /**
   * The connection `get` last found, and its fd (-1: none), until `byFd`
   * changes: the messages of one read are answered one after another, each
   * `push` asking for the same fd (echo at depth 10: 9 lookups in 10).
   */
  private lastFd = -1;
  private last: C | undefined = undefined;

  /**
   * Allocates from `base + 1, base + 2, ...` (the range of this process's
   * owner, see `cluster/fd.ts`); the same base again carries on where it was.
   */
  rebase(base: number): void {
    if (base === this.base) return;
    this.base = base;
    this.next = base + 1;
  }

  /** Reserves the next fd (taken when an upgrade request arrives). */
  allocate(): number {
    return this.next++;
  }

  /** Where connections rest from now on (null: none rests). Those resting elsewhere are woken first. */
  restWith(resting: Resting<C> | null): void {
    if (this.restingCount > 0) for (const _ of this.values());
    this.resting = resting;
  }

  add(fd: number, connection: C): void {
    this.forgetLast();
    this.byFd.set(fd, connection);
  }

  /**
   * Keeps the connection of `fd` on `wire` resting: one just opened (then,
   * on false, `add` it), or `connection`, back to nothing of its own (on
   * false it stays as it is). Whoever asks vouches that nothing else holds
   * `connection`: it is dropped.
   */
  rest(fd: number, wire: unknown, connection: C | null = null): boolean {
    if (connection !== null && this.byFd.get(fd) !== connection) return false;
    const token = this.resting !== null ? this.resting.park(fd, wire, connection) : -1;
    if (token < 0) return false;
    this.forgetLast();
    this.byFd.set(fd, token);
    this.restingCount++;
    return true;
  }

  /** Whether connections can rest here now (see `restWith`). */
  get canRest(): boolean {
    return this.resting !== null;
  }

  /**
   * Records `fd` as a connection that rests from its opening as `token`,
   * parked already by whoever opened it (a fast open with nobody to tell:
   * `listen-native.ts`); only while `canRest`.
   */
  addResting(fd: number, token: number): void {
    this.forgetLast();
    this.byFd.set(fd, token);
    this.restingCount++;
  }

  /** The connection of `fd` (woken if it was resting). */
  get(fd: number): C | undefined {
    if (fd === this.lastFd) return this.last;
    const entry = this.byFd.get(fd);
    if (typeof entry === 'number') return this.wake(fd, entry);
    if (entry !== undefined) {
      this.lastFd = fd;
      this.last = entry;
    }
    return entry;
  }

  /** Whether `fd` is a connection here (resting or not), without waking it. */
  has(fd: number): boolean {
    return this.byFd.has(fd);
  }

  /** Whether `fd` is a resting connection here (see `Resting`), without waking it. */
  isResting(fd: number): boolean {
    return typeof this.byFd.get(fd) === 'number';
  }

  delete(fd: number): boolean {
    const entry = this.byFd.get(fd);
    if (entry === undefined) return false;
    if (typeof entry === 'number') this.restingCount--;
    this.forgetLast();
    return this.byFd.delete(fd);
  }

  get size(): number {
    return this.byFd.size;
  }

  /** How many connections are resting (see `Resting`). */
  get restingSize(): number {
    return this.restingCount;
  }

  /** The fds, in the order they connected. */
  fds(): IterableIterator<number> {
    return this.byFd.keys();
  }

  /**
   * Every connection, the resting ones woken. With none resting it is the
   * Map's own iterator (a broadcast walks it per message: a generator costs
   * it 5-8% of its CPU); a connection rests only when its data or its
   * handshake is handled, never while this is walked.
   */
  values(): IterableIterator<C> {
    return this.restingCount === 0 ? (this.byFd.values() as IterableIterator<C>) : this.wakingValues();
  }

  private *wakingValues(): IterableIterator<C> {
    for (const [fd, entry] of this.byFd) {
      // Replacing the value of a key a Map iteration is on is safe.
      yield typeof entry === 'number' ? this.wake(fd, entry) : entry;
    }
  }

  /** The connections that are not resting (with none resting, the Map's own iterator, as `values()`). */
  awake(): IterableIterator<C> {
    return this.restingCount === 0 ? (this.byFd.values() as IterableIterator<C>) : this.awakeValues();
  }

  private *awakeValues(): IterableIterator<C> {
    for (const entry of this.byFd.values()) if (typeof entry !== 'number') yield entry;
  }

  /** Bytes received and sent and messages sent by the resting connections, summed, without waking them (for `stats()`). */
  restingCounts(): [bytesIn: number, bytesOut: number, messagesOut: number] {
    const sums: [number, number, number] = [0, 0, 0];
    if (this.restingCount === 0) return sums;
    for (const entry of this.byFd.values()) {
      if (typeof entry !== 'number') continue;
      const counts = this.resting!.counts(entry);
      for (let i = 0; i < 3; i++) sums[i] += counts[i];
    }
    return sums;
  }

  /** Wakes the resting connections quiet since `time` or before (a `clock()` reading): the heartbeat's due ones. */
  wakeQuietSince(time: number): void {
    if (this.restingCount === 0) return;
    const resting = this.resting!;
    for (const [fd, entry] of this.byFd) {
      if (typeof entry === 'number' && resting.quietSince(entry) <= time) this.wake(fd, entry);
    }
  }

  private forgetLast(): void {
    this.lastFd = -1;
    this.last = undefined;
  }

  private wake(fd: number, token: number): C {
    // Not `forgetLast()`: only an fd whose entry is a connection is remembered.
    const connection = this.resting!.wake(fd, token);
    this.byFd.set(fd, connection);
    this.restingCount--;
    return connection;
  }
}
