/**
 * ONE timer per server that sweeps every connection (Swoole's
 * `heartbeat_check_interval` / `heartbeat_idle_time`): a connection that has
 * received nothing for `idleTime` is closed; with `pingInterval`, a
 * connection quiet for that long is pinged so a healthy idle client answers
 * and stays. Per-socket timers would cost memory and timer-list churn on every
 * receive; a sweep costs one pass per interval.
 */
/** When `clock()` was 0 (ms since the epoch). */
export const CLOCK_EPOCH = Date.now();

/** This stretch of JS's `clock()` reading, or -1 (read anew). */
let reading = -1;
const forgetReading = (): void => {
  reading = -1;
};

/**
 * Milliseconds since this module loaded: what connections keep their times
 * in. It stays a small integer (a Smi, stored in the object) for 24 days,
 * where a `Date.now()` value would be a heap number of its own per field
 * per connection; past that it is a heap number and still right.
 *
 * Read once per synchronous stretch of JS (until its microtasks run): a
 * batch of events from the native transport stamps all its connections
 * with one reading, not one each (measured: `Date.now()` per received
 * chunk was about 0.7% of the server's CPU echoing 32-byte messages). The
 * heartbeat counts in seconds; a stretch lasts far less.
 */
export function clock(): number {
  if (reading < 0) {
    reading = Date.now() - CLOCK_EPOCH;
    queueMicrotask(forgetReading);
  }
  return reading;
}

/** Times are `clock()` readings. */
export interface HeartbeatTarget {
  lastReceive: number;
  lastPing: number;
}

export interface HeartbeatOptions<C extends HeartbeatTarget> {
  /** Milliseconds between sweeps. */
  interval: number;
  /** Close a connection that received nothing for this long (0 = never). */
  idleTime: number;
  /** Ping a connection quiet for this long (0 = never). */
  pingInterval: number;
  /** The connections to look at (the awake ones, when some rest: see `wakeQuietSince`). */
  connections: () => Iterable<C>;
  /**
   * Wakes the resting connections (see `registry.ts`) quiet since `time` or
   * before: one rests only after it received something, and no ping waits
   * for its answer, so only those can be due.
   */
  wakeQuietSince?: (time: number) => void;
  onIdle: (connection: C) => void;
  onPing: (connection: C) => void;
}

export class Heartbeat<C extends HeartbeatTarget> {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly options: HeartbeatOptions<C>) {}

  start(): void {
    if (this.timer !== null || this.options.interval <= 0) return;
    this.timer = setInterval(() => this.sweep(clock()), this.options.interval);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** One pass over all connections at time `now` (a `clock()` reading). */
  sweep(now: number): void {
    const { idleTime, pingInterval, onIdle, onPing, wakeQuietSince } = this.options;
    const due = idleTime > 0 && pingInterval > 0 ? Math.min(idleTime, pingInterval) : idleTime > 0 ? idleTime : pingInterval;
    if (due > 0 && wakeQuietSince !== undefined) wakeQuietSince(now - due);
    for (const connection of this.options.connections()) {
      const quiet = now - connection.lastReceive;
      if (idleTime > 0 && quiet >= idleTime) {
        onIdle(connection);
      } else if (pingInterval > 0 && quiet >= pingInterval && now - connection.lastPing >= pingInterval) {
        connection.lastPing = now;
        onPing(connection);
      }
    }
  }
}
