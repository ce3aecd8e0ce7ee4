/**
 * The README's framework examples (`examples/express.ts`, `fastify.ts`,
 * `http-no-server.ts`) run as their own programs: each serves its HTTP
 * route and echoes a real `ws` client on the same port, refuses what it
 * should, and on SIGTERM closes its clients with 1001 and exits 0.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { createInterface } from 'node:readline';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { waitFor } from './helpers.js';

/** Starts an example with PORT=0; resolves with the child and the port it printed. */
async function run(name: string): Promise<{ child: ChildProcess; port: number; output: string[] }> {
  const file = fileURLToPath(new URL(`../examples/${name}.js`, import.meta.url));
  const child = spawn(process.execPath, [file], { env: { ...process.env, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => output.push(chunk));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} printed no port within 15 s: ${output.join('')}`)), 15_000);
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code}: ${output.join('')}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output.push(line);
      const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
      if (match === null) return;
      clearTimeout(timer);
      resolve(Number(match[1]));
    });
  });
  return { child, port, output };
}

/** A plain HTTP GET on a fresh connection: [status, body]. */
function get(port: number, path: string): Promise<[number, string]> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve([res.statusCode ?? 0, body]));
      })
      .on('error', reject);
  });
}

/** The HTTP status a WebSocket handshake to `url` is refused with. */
async function refusedWith(url: string): Promise<number> {
  const ws = new WebSocket(url);
  ws.on('error', () => {});
  const [, res] = await waitFor<[unknown, http.IncomingMessage]>(ws, 'unexpected-response');
  ws.terminate();
  return res.statusCode ?? 0;
}

async function echo(ws: WebSocket): Promise<void> {
  ws.send('hello');
  const [text] = await waitFor<[Buffer]>(ws, 'message');
  assert.equal(String(text), 'echo: hello');
  ws.send(Buffer.from([1, 2, 3]));
  const [bytes, isBinary] = await waitFor<[Buffer, boolean]>(ws, 'message');
  assert.deepEqual([...bytes], [1, 2, 3]);
  assert.equal(isBinary, true);
}

async function stops(child: ChildProcess, ws: WebSocket): Promise<void> {
  const closed = waitFor<[number, Buffer]>(ws, 'close', 10_000);
  const exited = waitFor<[number | null]>(child, 'exit', 10_000);
  child.kill('SIGTERM');
  const [code] = await closed;
  assert.equal(code, 1001);
  assert.deepEqual(await exited, [0, null]);
}

describe('framework examples', () => {
  for (const [name, page] of [
    ['express', 'Express here; WebSockets at /ws'],
    ['fastify', 'Fastify here; WebSockets at /ws'],
  ] as const) {
    test(`examples/${name}.ts serves its route and WebSockets at /ws on one port, refuses other upgrade paths with 400, and stops on SIGTERM`, async (t) => {
      const { child, port } = await run(name);
      t.after(() => child.kill('SIGKILL'));
      assert.deepEqual(await get(port, '/'), [200, page]);
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
      await waitFor(ws, 'open');
      await echo(ws);
      assert.equal(await refusedWith(`ws://127.0.0.1:${port}/elsewhere`), 400);
      await stops(child, ws);
    });
  }

  test('examples/http-no-server.ts upgrades only /ws with the token, through its own upgrade listener, and stops on SIGTERM', async (t) => {
    const { child, port } = await run('http-no-server');
    t.after(() => child.kill('SIGKILL'));
    assert.deepEqual(await get(port, '/'), [200, 'plain http here; WebSockets at /ws?token=...']);
    assert.equal(await refusedWith(`ws://127.0.0.1:${port}/ws?token=wrong`), 401);
    assert.equal(await refusedWith(`ws://127.0.0.1:${port}/other?token=let-me-in`), 401);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=let-me-in`);
    await waitFor(ws, 'open');
    await echo(ws);
    await stops(child, ws);
  });
});
