/**
 * The registry (src/registry.ts): fds in connection order, and resting
 * connections kept as tokens, woken by the first look at them.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Registry, type Resting } from '../src/registry.js';

interface Fake {
  fd: number;
  woken: boolean;
}

/** A registry whose connections can rest: token = fd * 10, opened at time = fd. */
function resting(): { registry: Registry<Fake>; woken: number[] } {
  const registry = new Registry<Fake>();
  const woken: number[] = [];
  const rest: Resting<Fake> = {
    park: (fd, wire) => (wire === 'native' ? fd * 10 : -1),
    wake: (fd, token) => {
      assert.equal(token, fd * 10);
      woken.push(fd);
      return { fd, woken: true };
    },
    quietSince: (token) => token / 10,
    counts: (token) => [token, 2 * token, 3 * token],
  };
  registry.restWith(rest);
  return { registry, woken };
}

describe('registry', () => {
  test('a connection rests only where it can, and is woken once, by the first get', () => {
    const { registry, woken } = resting();
    assert.equal(registry.rest(1, 'native'), true);
    assert.equal(registry.rest(2, 'stream'), false);
    registry.add(2, { fd: 2, woken: false });
    assert.equal(registry.size, 2);
    assert.equal(registry.restingSize, 1);
    assert.equal(registry.has(1), true);
    assert.equal(registry.isResting(1), true);
    assert.equal(registry.isResting(2), false);
    assert.equal(registry.isResting(3), false);
    assert.deepEqual(woken, [], 'has() and isResting() wake nothing');
    const first = registry.get(1);
    assert.equal(registry.isResting(1), false);
    assert.deepEqual(first, { fd: 1, woken: true });
    assert.equal(registry.get(1), first, 'the same object afterwards');
    assert.deepEqual(woken, [1]);
    assert.equal(registry.restingSize, 0);
    assert.equal(registry.get(3), undefined);
  });

  test('values() wakes every resting connection, in connection order; awake() and fds() wake none', () => {
    const { registry, woken } = resting();
    registry.rest(1, 'native');
    registry.add(2, { fd: 2, woken: false });
    registry.rest(3, 'native');
    assert.deepEqual([...registry.fds()], [1, 2, 3]);
    assert.deepEqual([...registry.awake()].map((c) => c.fd), [2]);
    assert.deepEqual(woken, []);
    assert.deepEqual([...registry.values()].map((c) => c.fd), [1, 2, 3]);
    assert.deepEqual(woken, [1, 3]);
    assert.deepEqual([...registry.awake()].map((c) => c.fd), [1, 2, 3]);
  });

  test('wakeQuietSince() wakes only the connections quiet since the time or before', () => {
    const { registry, woken } = resting();
    for (const fd of [1, 2, 3, 4]) registry.rest(fd, 'native');
    registry.wakeQuietSince(2);
    assert.deepEqual(woken, [1, 2]);
    assert.equal(registry.restingSize, 2);
    assert.deepEqual([...registry.awake()].map((c) => c.fd), [1, 2]);
  });

  test('restingCounts() sums the resting connections without waking them', () => {
    const { registry, woken } = resting();
    registry.rest(1, 'native');
    registry.add(2, { fd: 2, woken: false });
    registry.rest(3, 'native');
    assert.deepEqual(registry.restingCounts(), [40, 80, 120]);
    registry.get(1);
    assert.deepEqual(registry.restingCounts(), [30, 60, 90]);
    assert.deepEqual(woken, [1]);
  });

  test('get() of the fd it just found answers the same until the fd is deleted, re-added, rests or wakes', () => {
    const { registry, woken } = resting();
    const first = { fd: 1, woken: false };
    registry.add(1, first);
    assert.equal(registry.get(1), first);
    assert.equal(registry.get(1), first);
    registry.delete(1);
    assert.equal(registry.get(1), undefined, 'deleted');
    const again = { fd: 1, woken: false };
    registry.add(1, { fd: 1, woken: false });
    registry.get(1);
    registry.add(1, again);
    assert.equal(registry.get(1), again, 're-added');
    assert.equal(registry.rest(1, 'native', again), true);
    const awoken = registry.get(1);
    assert.deepEqual([awoken, woken], [{ fd: 1, woken: true }, [1]], 'rested, then woken by get');
    assert.equal(registry.get(1), awoken, 'the woken one');
    registry.addResting(1, 10);
    assert.deepEqual(registry.get(1), { fd: 1, woken: true });
    assert.notEqual(registry.get(1), awoken, 'parked anew, then woken anew');
    assert.deepEqual(woken, [1, 1]);
  });

  test('deleting a resting connection wakes nothing and counts it out', () => {
    const { registry, woken } = resting();
    registry.rest(1, 'native');
    registry.rest(2, 'native');
    assert.equal(registry.delete(1), true);
    assert.equal(registry.delete(1), false);
    assert.equal(registry.size, 1);
    assert.equal(registry.restingSize, 1);
    assert.deepEqual(woken, []);
  });

  test('without a place to rest, nothing rests', () => {
    const registry = new Registry<Fake>();
    assert.equal(registry.rest(1, 'native'), false);
    assert.equal(registry.size, 0);
  });
});
