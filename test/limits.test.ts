/**
 * Running out of file descriptors: a server under a low `ulimit -n` that is
 * sent more connections than it can hold must neither crash nor spin on its
 * listener, and must serve again once descriptors are free. Runs on
 * whichever listener the environment picks (the native transport refuses
 * the excess with libuv's reserve-descriptor trick; Node's listener has
 * libuv's own).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { waitFor } from './helpers.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/fd-limit-server.js', import.meta.url));
const LIMIT = 128;
const CLIENTS = 300;

/** CPU seconds (user + system) the process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1].split(' ');
  // utime and stime are fields 14 and 15 of /proc/PID/stat (1-based), here 11 and 12 after "pid (comm)".
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Reads the child's next JSON line (bounded in time). */
function nextLine(child: ChildProcess): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no line from the server child within 10 s: ${text}`)), 10_000);
    const onData = (chunk: Buffer): void => {
      text += chunk.toString();
      const end = text.indexOf('\n');
      if (end === -1) return;
      clearTimeout(timer);
      child.stdout!.removeListener('data', onData);
      resolve(JSON.parse(text.slice(0, end)) as Record<string, unknown>);
    };
    child.stdout!.on('data', onData);
  });
}

/** Opens a TCP connection; resolves with the socket whatever then happens to it. */
function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.once('connect', () => resolve(socket));
    setTimeout(() => reject(new Error('connect timed out')), 5000).unref();
  });
}

describe('out of file descriptors', { skip: process.platform !== 'linux' && 'needs /proc and ulimit' }, () => {
  test(`${CLIENTS} connections to a server limited to ${LIMIT} descriptors: no crash, no spin, serves again after`, { timeout: 60_000 }, async () => {
    const child = spawn('sh', ['-c', `ulimit -n ${LIMIT} && exec "${process.execPath}" "${FIXTURE}" run`], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    try {
      const { port } = (await nextLine(child)) as { port: number; transport: string };
      const sockets: net.Socket[] = [];
      for (let i = 0; i < CLIENTS; i++) sockets.push(await connect(port));
      // Held open: the server has run out of descriptors. A listener that
      // spins on EMFILE would burn a whole CPU here.
      await sleep(200);
      const before = cpuSeconds(child.pid!);
      await sleep(1000);
      const used = cpuSeconds(child.pid!) - before;
      assert.ok(used < 0.5, `the server used ${used.toFixed(2)} s of CPU in 1 s while out of descriptors`);
      assert.equal(child.exitCode, null, 'the server is alive');
      for (const socket of sockets) socket.destroy();
      // Once descriptors are free again, a WebSocket client is served.
      let served = false;
      for (let attempt = 0; attempt < 50 && !served; attempt++) {
        const ws = new WebSocket(`ws://127.0.0.1:${port}`);
        try {
          await waitFor(ws, 'open', 2000);
          const reply = waitFor<[Buffer]>(ws, 'message', 2000);
          ws.send('after the flood');
          const [data] = await reply;
          assert.equal(data.toString(), 'after the flood');
          served = true;
        } catch {
          await sleep(100);
        } finally {
          ws.terminate();
        }
      }
      assert.ok(served, 'a client is served once descriptors are free');
      assert.equal(child.exitCode, null, 'the server is still alive');
    } finally {
      child.stdin!.end();
      child.kill();
    }
  });
});
