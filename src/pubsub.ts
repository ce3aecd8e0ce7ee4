/**
 * Topics (pub/sub as in uWS and Bun, with Swoole's fds): topic -> its
 * subscribers, and each connection's own set so that closing it ends its
 * subscriptions in one pass. No framing and no I/O here: the server encodes
 * a publish once and hands it to each subscriber.
 */
export interface Subscriber {
  topics: Set<string> | null;
}

export class Topics<C extends Subscriber> {
  private readonly byTopic = new Map<string, Set<C>>();

  /**
   * `changed` hears when a topic gets its first subscriber (true) and loses
   * its last (false): an adapter that routes publishes by topic subscribes
   * to the topic's channel only while this process has subscribers.
   */
  constructor(private readonly changed: ((topic: string, subscribed: boolean) => void) | null = null) {}

  /** Subscribes; false if it already was. */
  subscribe(subscriber: C, topic: string): boolean {
    let set = this.byTopic.get(topic);
    if (set === undefined) {
      set = new Set();
      this.byTopic.set(topic, set);
      this.changed?.(topic, true);
    } else if (set.has(subscriber)) {
      return false;
    }
    set.add(subscriber);
    (subscriber.topics ??= new Set()).add(topic);
    return true;
  }

  /** Unsubscribes; false if it was not subscribed. */
  unsubscribe(subscriber: C, topic: string): boolean {
    const set = this.byTopic.get(topic);
    if (set === undefined || !set.delete(subscriber)) return false;
    if (set.size === 0) this.gone(topic);
    subscriber.topics!.delete(topic);
    return true;
  }

  /** Ends every subscription of `subscriber` (when its connection closes). */
  unsubscribeAll(subscriber: C): void {
    const topics = subscriber.topics;
    if (topics === null) return;
    for (const topic of topics) {
      const set = this.byTopic.get(topic)!;
      set.delete(subscriber);
      if (set.size === 0) this.gone(topic);
    }
    subscriber.topics = null;
  }

  private gone(topic: string): void {
    this.byTopic.delete(topic);
    this.changed?.(topic, false);
  }

  /** The subscribers of `topic`, or undefined when it has none. */
  subscribers(topic: string): ReadonlySet<C> | undefined {
    return this.byTopic.get(topic);
  }

  count(topic: string): number {
    return this.byTopic.get(topic)?.size ?? 0;
  }
}
