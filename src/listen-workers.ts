/**
 * Listening as one of several processes: the primary of `workerNum`
 * workers (it forks them and never serves a WebSocket), and a worker or an
 * instance joined by an adapter (its fd range, the router to the others,
 * the worker mesh). The workers themselves listen with Node's `http`
 * (`listen-node.ts`), sharing the port through node:cluster.
 */
import { ownerCode, SEQ_RANGE } from './cluster/fd.js';
import { Primary } from './cluster/primary.js';
import { Router, type LocalServer } from './cluster/router.js';
import { Membership, workerEnv } from './cluster/worker.js';
import type { ServerCore } from './server-core.js';

/** The primary of `workerNum` workers: forks them and waits until they all listen. */
export async function startPrimary<Data>(core: ServerCore<Data>): Promise<void> {
  const { options, workerNum, closeTimeout } = core.settings;
  const adapter = options.adapter;
  const instance = options.instanceId ?? (adapter !== undefined ? await adapter.allocateInstanceId() : 0);
  const events = core.events;
  core.primary = new Primary(workerNum, instance, closeTimeout, {
    workerStart: (id, pid) => events.emit('workerStart', id, pid),
    workerExit: (id, code, signal) => events.emit('workerExit', id, code, signal),
    error: (error) => core.reportError(error),
  });
  try {
    await core.primary.start();
  } catch (error) {
    core.primary = null;
    throw error;
  }
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
