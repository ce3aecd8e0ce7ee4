/**
 * Listening as one of several processes: the primary of `workerNum`
 * workers (it forks them and never serves a WebSocket), and a worker or an
 * instance joined by an adapter (its fd range, the router to the others,
 * the worker mesh). The workers themselves listen with Node's `http`
 * (`listen-node.ts`), sharing the port through node:cluster.
 */
import { ownerCode, SEQ_RANGE } from './cluster/fd.js';
import { Primary, type SharedListener } from './cluster/primary.js';
import { Router, type LocalServer } from './cluster/router.js';
import { Membership, workerEnv } from './cluster/worker.js';
import { bindLikeNet } from './listen-address.js';
import { nativeListenPossible } from './listen-native.js';
import { listenSocket } from './native.js';
import type { ServerCore } from './server-core.js';

/** The primary of `workerNum` workers: forks them and waits until they all listen. */
export async function startPrimary<Data>(core: ServerCore<Data>): Promise<void> {
  const { options, workerNum, closeTimeout } = core.settings;
  const adapter = options.adapter;
  const instance = options.instanceId ?? (adapter !== undefined ? await adapter.allocateInstanceId() : 0);
  const events = core.events;
  const listener = await sharedListener(core);
  core.primary = new Primary(
    workerNum,
    instance,
    closeTimeout,
    {
      workerStart: (id, pid) => events.emit('workerStart', id, pid),
      workerExit: (id, code, signal) => events.emit('workerExit', id, code, signal),
      error: (error) => core.reportError(error),
    },
    listener,
  );
  try {
    await core.primary.start();
  } catch (error) {
    core.primary = null;
    throw error;
  }
}

/**
 * The listening socket the workers inherit when they can serve on the
 * native transport (null: they share the port through node:cluster).
 * Throws `net.Server`'s errors (EADDRINUSE...), as a lone server's `start()`.
 */
async function sharedListener<Data>(core: ServerCore<Data>): Promise<SharedListener | null> {
  if (listenSocket === null || !nativeListenPossible(core.settings)) return null;
  const make = listenSocket;
  let fd = -1;
  const port = await bindLikeNet(core.settings.options, (address, port, backlog, ipv6Only) => {
    const [socket, bound] = make(address, port, backlog, ipv6Only);
    fd = socket;
    return bound;
  });
  return { fd, port };
}

/**
 * In a worker, or with an adapter: the fds' owner, the router, the worker
 * mesh. `local` is the server's own API, which carries out what other
 * processes ask; `stop` stops it when the primary says so.
 */
export async function startScaleOut<Data>(core: ServerCore<Data>, local: LocalServer, stop: () => Promise<void>): Promise<void> {
  const { options, workerNum } = core.settings;
  const env = workerNum > 1 ? workerEnv() : null;
  const adapter = options.adapter ?? null;
  if (env === null && adapter === null) return;
  const instance = env?.instance ?? options.instanceId ?? (await adapter!.allocateInstanceId());
  const owner = ownerCode(instance, env?.slot ?? 0);
  core.registry.rebase(owner * SEQ_RANGE);
  const router = new Router(owner, local, adapter, (error) => core.reportError(error));
  core.router = router;
  try {
    await router.openAdapter();
    if (env !== null) {
      core.membership = new Membership(env, router, stop);
      await core.membership.join();
    }
  } catch (error) {
    await closeScaleOut(core);
    throw error;
  }
}

/** Leaves the worker mesh and closes the router (and its adapter). */
export async function closeScaleOut<Data>(core: ServerCore<Data>): Promise<void> {
  const router = core.router;
  core.router = null;
  core.membership?.close();
  await router?.close();
}
