/**
 * workerNum: real worker processes (the app in `fixtures/cluster-app.ts`)
 * and real `ws` clients on 127.0.0.1. Each client's greeting says which
 * worker holds it; commands sent by a client run in its worker.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { App, Client, openOn, spread } from './cluster-helpers.js';

describe('two workers', () => {
  let app: App;
  let clients: Client[][];
  before(async () => {
    app = await App.start({ WORKERS: '2' });
    clients = await spread(app.port, 2, 3);
  });
  after(async () => {
    for (const c of clients.flat()) c.close();
    await app.stop();
  });

  test('greets each client with a distinct fd that names its worker', () => {
    const all = clients.flat();
    assert.equal(new Set(all.map((c) => c.fd)).size, all.length);
    assert.deepEqual(new Set(all.map((c) => c.worker)), new Set([0, 1]));
    assert.notEqual(clients[0][0].pid, clients[1][0].pid);
    // Worker fds are not a lone process's 1, 2, 3: they carry their owner.
    for (const c of all) assert.ok(c.fd > 2 ** 32, `fd ${c.fd}`);
  });

  test('push reaches a client of the other worker, in both directions', async () => {
    const [a] = clients[0];
    const [b] = clients[1];
    const bFrom = b.texts().length;
    assert.deepEqual((await a.request({ op: 'push', fd: b.fd, data: 'from worker 0' })).ok, true);
    await b.waitMessage((m) => m.text === 'from worker 0', 5000, bFrom);
    const aFrom = a.texts().length;
    assert.equal((await b.request({ op: 'pushAsync', fd: a.fd, data: 'from worker 1' })).ok, true);
    await a.waitMessage((m) => m.text === 'from worker 1', 5000, aFrom);
  });

  test('pushAsync resolves false for an fd no worker holds, push false for an unknown worker', async () => {
    const [a] = clients[0];
    const [b] = clients[1];
    // b's worker, but a sequence number it never handed out.
    const unused = b.fd + 1000;
    assert.equal((await a.request({ op: 'pushAsync', fd: unused, data: 'x' })).ok, false);
    // A worker slot no process has.
    assert.equal((await a.request({ op: 'push', fd: 4000 * 2 ** 32 + 1, data: 'x' })).ok, false);
  });

  test('broadcast from either worker reaches every client in every worker exactly once, in order', async () => {
    const all = clients.flat();
    for (const sender of [clients[0][1], clients[1][1]]) {
      const tag = `w${sender.worker}-`;
      const starts = all.map((c) => c.texts().length);
      await sender.request({ op: 'broadcast', data: tag, count: 50 });
      // A fence after the burst, from the same worker: whatever of the burst arrives, arrives before it.
      await sender.request({ op: 'broadcast', data: `${tag}end` });
      for (const [i, c] of all.entries()) {
        await c.waitMessage((m) => m.text === `${tag}end0`, 5000);
        const got = c.texts().slice(starts[i]).filter((t) => t.startsWith(tag) && !t.startsWith(`${tag}end`));
        assert.deepEqual(got, Array.from({ length: 50 }, (_, k) => `${tag}${k}`), `fd ${c.fd} of worker ${c.worker}`);
      }
    }
  });

  test('publish reaches the subscribers of every worker once, and no one else', async () => {
    const subscribers = [clients[0][2], clients[1][2]];
    const others = [clients[0][0], clients[1][0]];
    for (const s of subscribers) assert.equal((await s.request({ op: 'subscribe', topic: 'news' })).ok, true);
    const starts = [...subscribers, ...others].map((c) => c.texts().length);
    await others[1].request({ op: 'publish', topic: 'news', data: 'n', count: 20 });
    // A fence: a broadcast from the same worker, behind the publishes.
    await others[1].request({ op: 'broadcast', data: 'fence-p' });
    for (const [i, c] of [...subscribers, ...others].entries()) {
      await c.waitMessage((m) => m.text === 'fence-p0', 5000);
      const got = c.texts().slice(starts[i]).filter((t) => /^n\d+$/.test(t));
      assert.deepEqual(got, i < 2 ? Array.from({ length: 20 }, (_, k) => `n${k}`) : [], `fd ${c.fd}`);
    }
  });

  test('exist, isEstablished and getClientInfoAsync answer for the other worker\'s fds', async () => {
    const [a] = clients[0];
    const [b] = clients[1];
    const answer = await a.request({ op: 'query', fd: b.fd });
    assert.equal(answer.exist, true);
    assert.equal(answer.established, true);
    assert.equal(answer.existAsync, true);
    assert.equal(answer.establishedAsync, true);
    assert.equal(answer.info.fd, b.fd);
    assert.equal(answer.info.remoteAddress, '127.0.0.1');
  });

  test('connectionsAsync and statsAsync count every worker', async () => {
    const all = clients.flat();
    const answer = await all[0].request({ op: 'whole' });
    assert.deepEqual(new Set(answer.connections), new Set(all.filter((c) => c.closed === null).map((c) => c.fd)));
    assert.ok(answer.local.length < answer.connections.length);
    assert.equal(answer.stats.connections, answer.connections.length);
  });

  test('disconnect closes a client of the other worker; its fd is then gone everywhere', async () => {
    const victim = clients[1].pop()!;
    const [a] = clients[0];
    assert.equal((await a.request({ op: 'disconnect', fd: victim.fd })).ok, true);
    assert.deepEqual(await victim.waitClose(), { code: 4000, reason: 'bye' });
    const answer = await a.request({ op: 'query', fd: victim.fd });
    assert.equal(answer.existAsync, false);
    assert.equal(answer.info, null);
    assert.equal((await a.request({ op: 'pushAsync', fd: victim.fd, data: 'x' })).ok, false);
  });

  test('a close listener in a worker reads the closing fd\'s data, client info and topics; they are gone after it', async () => {
    for (const worker of [0, 1]) {
      const leaving = await openOn(app.port, worker);
      assert.equal((await leaving.request({ op: 'subscribe', topic: 'room' })).ok, true);
      const from = app.lines.length;
      const port = (leaving.ws as unknown as { _socket: { localPort: number } })._socket.localPort;
      leaving.close();
      const line = await app.waitLine((l) => l.closed === leaving.fd, 10_000, from);
      assert.equal(line.worker, worker);
      assert.deepEqual(line.during, { data: { name: `client ${leaving.fd}` }, port, topics: ['room'], exist: false, push: false });
      assert.deepEqual(line.after, { data: null, info: null, topics: [] });
    }
  });
});

test('a crashed worker is restarted; its clients are closed, the other worker\'s never notice', async () => {
  const app = await App.start({ WORKERS: '2' });
  const [[a], [b]] = await spread(app.port, 2);
  try {
    const mark = app.lines.length;
    void a.request({ op: 'crash' }).catch(() => {});
    assert.equal((await a.waitClose()).code, 1006);
    await app.waitLine((l) => l.workerExit === 0, 5000, mark);
    const restarted = await app.waitLine((l) => l.workerStart === 0, 10_000, mark);
    assert.notEqual(restarted.pid, a.pid);
    // The survivor never noticed: still open, and its worker still pushes to it.
    assert.equal(b.closed, null);
    assert.equal((await b.request({ op: 'push', fd: b.fd, data: 'still here' })).ok, true);
    await b.waitMessage((m) => m.text === 'still here');
    // The dead worker's fd is unknown everywhere, and pushes to it report it.
    assert.equal((await b.request({ op: 'pushAsync', fd: a.fd, data: 'x' })).ok, false);
    assert.equal((await b.request({ op: 'query', fd: a.fd })).exist, false);
    // The new worker 0 is in the mesh: pushes cross both ways.
    const c = await openOn(app.port, 0);
    assert.equal(c.pid, restarted.pid);
    assert.equal((await b.request({ op: 'push', fd: c.fd, data: 'hello new worker' })).ok, true);
    await c.waitMessage((m) => m.text === 'hello new worker');
    assert.equal((await c.request({ op: 'pushAsync', fd: b.fd, data: 'hello old worker' })).ok, true);
    await b.waitMessage((m) => m.text === 'hello old worker');
    c.close();
  } finally {
    b.close();
    await app.stop();
  }
});

test('reload() restarts the workers one at a time: clients get 1001, new connections are accepted throughout', async () => {
  const app = await App.start({ WORKERS: '2' });
  const [[a], [b]] = await spread(app.port, 2);
  const mark = app.lines.length;
  let reloading = true;
  const accepted: Client[] = [];
  const refused: string[] = [];
  // Connect one client after another for as long as the reload runs.
  const prober = (async () => {
    while (reloading) {
      try {
        const c = await Client.open(app.port);
        accepted.push(c);
        c.close();
      } catch (error) {
        refused.push((error as Error).message);
      }
    }
  })();
  try {
    const closes = [a.waitClose(10_000), b.waitClose(10_000)];
    await a.request({ op: 'reload' });
    await app.waitLine((l) => l.workerStart === 0, 10_000, mark);
    await app.waitLine((l) => l.workerStart === 1, 10_000, mark);
    reloading = false;
    await prober;
    for (const close of await Promise.all(closes)) assert.deepEqual(close, { code: 1001, reason: 'server shutting down' });
    const exits = app.lines.slice(mark).filter((l) => 'workerExit' in l || 'workerStart' in l);
    // One at a time: worker 0 leaves and is back before worker 1 leaves.
    assert.deepEqual(
      exits.map((l) => ('workerExit' in l ? `exit ${l.workerExit}` : `start ${l.workerStart}`)),
      ['exit 0', 'start 0', 'exit 1', 'start 1'],
    );
    assert.deepEqual(refused, [], 'every connection attempt during the reload got through');
    assert.ok(accepted.length >= 5, `only ${accepted.length} connections during the reload`);
    // The new workers are in the mesh.
    const [[c], [d]] = await spread(app.port, 2);
    assert.ok(![a.pid, b.pid].includes(c.pid) && ![a.pid, b.pid].includes(d.pid));
    assert.equal((await c.request({ op: 'push', fd: d.fd, data: 'after reload' })).ok, true);
    await d.waitMessage((m) => m.text === 'after reload');
    c.close();
    d.close();
  } finally {
    reloading = false;
    await prober;
    await app.stop();
  }
});

test('a stopped worker does not make the others hold its backlog without bound: they drop for it, say so, and resume', async () => {
  const app = await App.start({ WORKERS: '2' });
  const [[a], [b]] = await spread(app.port, 2);
  try {
    const mark = app.lines.length;
    process.kill(b.pid, 'SIGSTOP');
    try {
      // 80 MiB of broadcasts for a worker that reads nothing: more than the 64 MiB a link may hold.
      await a.request({ op: 'flood', size: 1024 * 1024, count: 80 }, 20_000);
      const line = await app.waitLine((l) => typeof l.error === 'string' && l.worker === 0, 5000, mark);
      assert.match(line.error as string, /^worker 1 is more than 67108864 bytes behind: dropping messages for it$/);
    } finally {
      process.kill(b.pid, 'SIGCONT');
    }
    // Once worker 1 has read its backlog (and its client the part that fit its
    // connection's backpressure budget), a push to it is handed over and sent:
    // pushAsync resolves with worker 1's own push() answer.
    let ok = false;
    for (const deadline = Date.now() + 10_000; !ok && Date.now() < deadline; ) {
      ok = (await a.request({ op: 'pushAsync', fd: b.fd, data: 'caught up' })).ok as boolean;
    }
    assert.equal(ok, true);
    await b.waitMessage((m) => m.text === 'caught up', 10_000);
  } finally {
    a.close();
    b.close();
    await app.stop();
  }
});

test('stop() called in a worker stops every worker, each closing its clients with 1001, and the primary exits', async () => {
  const app = await App.start({ WORKERS: '2' });
  const [[a], [b]] = await spread(app.port, 2);
  const mark = app.lines.length;
  const closes = [a.waitClose(), b.waitClose()];
  a.ws.send(JSON.stringify({ op: 'stop', id: 0 }));
  for (const close of await Promise.all(closes)) assert.deepEqual(close, { code: 1001, reason: 'server shutting down' });
  await app.waitLine((l) => l.workerExit === 0, 5000, mark);
  await app.waitLine((l) => l.workerExit === 1, 5000, mark);
  await app.exited(5000);
});
