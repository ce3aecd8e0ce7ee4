/**
 * Helpers of the scale-out tests: the worker app (`fixtures/cluster-app.ts`)
 * as a child process, `ws` clients that the app greets and answers, and a
 * private `redis-server` on a free loopback port. Every wait is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { REDIS_SERVER, requireProgram } from './programs.js';

const APP = fileURLToPath(new URL('./fixtures/cluster-app.js', import.meta.url));

type Json = Record<string, any>;

/** Waits (bounded) for the first item of a growing list that `match` accepts, from index `from` on. */
function waitIn(list: Json[], subscribe: (wake: () => void) => () => void, match: (x: Json) => boolean, ms: number, what: string, from = 0): Promise<Json> {
  return new Promise((resolve, reject) => {
    let index = from;
    const check = (): boolean => {
      for (; index < list.length; index++) {
        if (match(list[index])) {
          done();
          resolve(list[index]);
          return true;
        }
      }
      return false;
    };
    const unsubscribe = subscribe(() => void check());
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${ms} ms waiting for ${what}; got ${JSON.stringify(list.slice(from)).slice(0, 800)}`));
    }, ms);
    const done = (): void => {
      clearTimeout(timer);
      unsubscribe();
    };
    check();
  });
}

/** The worker app in its own process (its primary; the workers are its children). */
export class App {
  readonly lines: Json[] = [];
  port = 0;
  private wakers = new Set<() => void>();
  private readonly exitPromise: Promise<void>;

  private constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        this.lines.push(JSON.parse(line) as Json);
      } catch {
        this.lines.push({ text: line });
      }
      for (const wake of this.wakers) wake();
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.lines.push({ stderr: chunk });
      for (const wake of this.wakers) wake();
    });
    this.exitPromise = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  static async start(env: Record<string, string> = {}): Promise<App> {
    const child = spawn(process.execPath, [APP], { env: { ...process.env, CLUSTER_APP: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const app = new App(child);
    const ready = await app.waitLine((l) => 'ready' in l, 15_000);
    app.port = ready.ready as number;
    return app;
  }

  /** The first line (from index `from`) that `match` accepts. */
  waitLine(match: (line: Json) => boolean, ms = 10_000, from = 0): Promise<Json> {
    const subscribe = (wake: () => void): (() => void) => {
      this.wakers.add(wake);
      return () => this.wakers.delete(wake);
    };
    return waitIn(this.lines, subscribe, match, ms, 'an app line', from);
  }

  /** Resolves when the app's process has exited by itself; rejects after `ms`. */
  async exited(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.exitPromise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`the app did not exit within ${ms} ms`)), ms);
      }),
    ]);
    clearTimeout(timer);
  }

  /** SIGTERM (the app stops its server), SIGKILL after 10 s. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const hard = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    this.child.kill('SIGTERM');
    await this.exitPromise;
    clearTimeout(hard);
  }
}

/** A `ws` client of the app: knows its fd, worker and pid from the greeting. */
export class Client {
  readonly messages: Json[] = [];
  fd = 0;
  worker = -1;
  pid = 0;
  closed: { code: number; reason: string } | null = null;
  private nextId = 1;
  private wakers = new Set<() => void>();
  private closeWaiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const text = data.toString();
      let message: Json;
      try {
        message = JSON.parse(text) as Json;
      } catch {
        message = { text };
      }
      this.messages.push(message);
      for (const wake of this.wakers) wake();
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.closed = { code, reason: reason.toString() };
      for (const wake of this.closeWaiters) wake();
    });
    ws.on('error', () => {});
  }

  static async open(port: number, ms = 5000): Promise<Client> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    const client = new Client(ws);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no open within the time limit')), ms);
      ws.once('open', () => {
        clearTimeout(timer);
        resolve();
      });
      ws.once('unexpected-response', (_req, res) => {
        clearTimeout(timer);
        reject(new Error(`handshake answered ${res.statusCode}`));
      });
      ws.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
    const hello = await client.waitMessage((m) => 'hello' in m, ms);
    client.fd = hello.hello as number;
    client.worker = hello.worker as number;
    client.pid = hello.pid as number;
    return client;
  }

  waitMessage(match: (m: Json) => boolean, ms = 5000, from = 0): Promise<Json> {
    const subscribe = (wake: () => void): (() => void) => {
      this.wakers.add(wake);
      return () => this.wakers.delete(wake);
    };
    return waitIn(this.messages, subscribe, match, ms, `a message on fd ${this.fd}`, from);
  }

  /** The plain-text messages received so far (what the app pushed or broadcast). */
  texts(): string[] {
    return this.messages.filter((m) => 'text' in m).map((m) => m.text as string);
  }

  /** Waits until `n` text messages arrived. */
  async waitTexts(n: number, ms = 5000): Promise<string[]> {
    let seen = 0;
    await this.waitMessage((m) => 'text' in m && ++seen >= n, ms);
    return this.texts();
  }

  /** Sends a command to the app; resolves with its answer. */
  request(command: Json, ms = 5000): Promise<Json> {
    const id = this.nextId++;
    const from = this.messages.length;
    this.ws.send(JSON.stringify({ ...command, id }));
    return this.waitMessage((m) => m.re === id, ms, from);
  }

  /** The close (code, reason), waiting for it (bounded). */
  async waitClose(ms = 5000): Promise<{ code: number; reason: string }> {
    if (this.closed === null) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`fd ${this.fd}: no close within ${ms} ms`)), ms);
        this.closeWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.closed!;
  }

  close(): void {
    this.ws.terminate();
  }
}

/**
 * Opens clients until every worker in `workers` has at least `each` of them;
 * returns them by worker. Connections opened one at a time are not dealt
 * out in turn on the native transport's shared listener (whichever worker
 * wakes first takes one: 38 of 40 to one worker was seen), hence the room.
 */
export async function spread(port: number, workers: number, each = 1, limit = 400): Promise<Client[][]> {
  const by: Client[][] = Array.from({ length: workers }, () => []);
  for (let i = 0; i < limit && by.some((list) => list.length < each); i++) {
    const client = await Client.open(port);
    by[client.worker].push(client);
  }
  if (by.some((list) => list.length < each)) throw new Error(`connections did not reach every worker: ${by.map((l) => l.length)}`);
  return by;
}

/**
 * Opens clients until one lands on `worker` (the others are closed). Which
 * worker the kernel wakes first is not fair: right after a restart the new
 * one got 25-35% of connections in a sequence (20 tries missed it in one
 * full-suite run), hence the wide limit.
 */
export async function openOn(port: number, worker: number, limit = 60): Promise<Client> {
  for (let i = 0; i < limit; i++) {
    const client = await Client.open(port);
    if (client.worker === worker) return client;
    client.close();
  }
  throw new Error(`no connection reached worker ${worker} in ${limit} tries`);
}

/** A free TCP port on 127.0.0.1 (the OS picks; it is closed again before use). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A private redis-server (no persistence) on `port`; resolves once it accepts connections. */
export async function startRedis(port: number): Promise<{ port: number; stop(): Promise<void> }> {
  const child = spawn(requireProgram(REDIS_SERVER), ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server did not start: ${out}`));
    }, 10_000);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}: ${out}`));
    });
  });
  return {
    port,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}
