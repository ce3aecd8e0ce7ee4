/**
 * Topics: the index of subscribers, and the hook an adapter that routes
 * publishes by topic learns from (first local subscriber in, last one out).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Topics, type Subscriber } from '../src/pubsub.js';

describe('Topics', () => {
  test('tells when a topic gains its first subscriber and loses its last, once each, however they leave', () => {
    const changes: [string, boolean][] = [];
    const topics = new Topics<Subscriber>((topic, subscribed) => changes.push([topic, subscribed]));
    const a: Subscriber = { topics: null };
    const b: Subscriber = { topics: null };

    assert.equal(topics.subscribe(a, 'room'), true);
    assert.equal(topics.subscribe(b, 'room'), true);
    assert.equal(topics.subscribe(b, 'room'), false);
    assert.equal(topics.subscribe(b, 'news'), true);
    assert.deepEqual(changes, [
      ['room', true],
      ['news', true],
    ]);

    assert.equal(topics.unsubscribe(a, 'room'), true);
    assert.equal(topics.unsubscribe(a, 'room'), false);
    assert.equal(changes.length, 2, 'room still has b');
    topics.unsubscribeAll(b);
    assert.deepEqual(changes.slice(2), [
      ['room', false],
      ['news', false],
    ]);
    assert.equal(topics.count('room'), 0);

    topics.subscribe(a, 'room');
    assert.deepEqual(changes.slice(4), [['room', true]]);
  });

  test('works without a hook', () => {
    const topics = new Topics<Subscriber>();
    const a: Subscriber = { topics: null };
    assert.equal(topics.subscribe(a, 't'), true);
    assert.equal(topics.unsubscribe(a, 't'), true);
    assert.equal(topics.subscribers('t'), undefined);
  });
});
