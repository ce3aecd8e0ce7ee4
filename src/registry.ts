/**
 * fd -> connection. fds are positive integers handed out in increasing order
 * and never reused in a server's lifetime, so a stale fd kept by an app can
 * never reach a newer client. No I/O here.
 */
export class Registry<C> {
  private base = 0;
  private next = 1;
  private readonly byFd = new Map<number, C>();

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

  add(fd: number, connection: C): void {
    this.byFd.set(fd, connection);
  }

  get(fd: number): C | undefined {
    return this.byFd.get(fd);
  }

  delete(fd: number): boolean {
    return this.byFd.delete(fd);
  }

  get size(): number {
    return this.byFd.size;
  }

  /** The fds, in the order they connected. */
  fds(): IterableIterator<number> {
    return this.byFd.keys();
  }

  values(): IterableIterator<C> {
    return this.byFd.values();
  }
}
