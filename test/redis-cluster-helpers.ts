/**
 * A private Redis Cluster for the sharded adapter's tests: six redis-server
 * processes (3 masters, one replica each) on free loopback ports, in a temp
 * directory, joined with `redis-cli --cluster create`; and a wavecast
 * instance in a child process (`fixtures/redis-instance.ts`) that a test can
 * SIGKILL. Every wait is bounded; `stop()` kills every process and removes
 * the directory.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import WebSocket from 'ws';
import type { Server } from '../src/index.js';
import { waitFor } from './helpers.js';
import { REDIS_CLI, REDIS_SERVER, requireProgram } from './programs.js';

/** Runs `redis-cli -p port args...`; resolves with its output. */
export function cli(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(requireProgram(REDIS_CLI), ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 }, (error, stdout) => {
      if (error) reject(error);
      else resolve(stdout);
    });
  });
}

/** Polls `check` every 50 ms until it is true; throws after `ms` (saying `what`). */
export async function until(check: () => Promise<boolean> | boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A port whose cluster bus port (+10000) is free too. */
async function freeClusterPort(taken: Set<number>): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20_000 + Math.floor(Math.random() * 10_000);
    if (taken.has(port)) continue;
    if ((await canBind(port)) && (await canBind(port + 10_000))) {
      taken.add(port);
      return port;
    }
  }
  throw new Error('no free pair of loopback ports for a cluster node');
}

interface Node {
  port: number;
  child: ChildProcess;
  exited: Promise<void>;
}

/** A 3-master, 3-replica Redis Cluster on 127.0.0.1. */
export class RedisCluster {
  private constructor(
    readonly dir: string,
    private readonly nodes: Node[],
  ) {}

  /** The ports of the six nodes. */
  get ports(): number[] {
    return this.nodes.map((n) => n.port);
  }

  static async start(): Promise<RedisCluster> {
    const server = requireProgram(REDIS_SERVER);
    const dir = mkdtempSync(path.join(tmpdir(), 'wavecast-redis-cluster-'));
    const cluster = new RedisCluster(dir, []);
    try {
      const taken = new Set<number>();
      for (let i = 0; i < 6; i++) {
        const port = await freeClusterPort(taken);
        const child = spawn(
          server,
          // Fast failure detection; a replica takes over however long it was cut off (validity factor 0).
          ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, `nodes-${port}.conf`)]
            .concat(['--cluster-node-timeout', '1000', '--cluster-replica-validity-factor', '0', '--save', '', '--appendonly', 'no', '--dir', dir]),
          { stdio: 'ignore' },
        );
        cluster.nodes.push({ port, child, exited: new Promise((resolve) => child.once('exit', () => resolve())) });
      }
      for (const { port } of cluster.nodes) await until(() => cli(port, 'ping').then((out) => out.trim() === 'PONG', () => false), 10_000, `node ${port} to start`);
      await new Promise<void>((resolve, reject) => {
        const args = ['--cluster', 'create', ...cluster.ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes'];
        execFile(requireProgram(REDIS_CLI), args, { timeout: 20_000 }, (error, stdout) => (error ? reject(new Error(`${error.message}\n${stdout}`)) : resolve()));
      });
      await cluster.settled(20_000);
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }

  /** Waits until every live node says `cluster_state:ok` and every replica's link to its master is up. */
  async settled(ms: number): Promise<void> {
    await until(
      async () => {
        for (const node of this.live()) {
          if (!(await cli(node.port, 'cluster', 'info')).includes('cluster_state:ok')) return false;
          const replication = await cli(node.port, 'info', 'replication');
          if (replication.includes('role:slave') && !replication.includes('master_link_status:up')) return false;
        }
        return true;
      },
      ms,
      'the cluster to settle',
    );
  }

  private live(): Node[] {
    return this.nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null);
  }

  /** The master that serves the slot of `key` (a channel name hashes as a key does). */
  async masterOf(key: string): Promise<number> {
    const slot = Number((await cli(this.live()[0].port, 'cluster', 'keyslot', key)).trim());
    for (const line of (await cli(this.live()[0].port, 'cluster', 'nodes')).split('\n')) {
      const fields = line.trim().split(' ');
      if (!fields[2]?.includes('master') || fields[2].includes('fail')) continue;
      for (const range of fields.slice(8)) {
        const [from, to = from] = range.split('-').map(Number);
        if (slot >= from && slot <= to) return Number(fields[1].split(':')[1].split('@')[0]);
      }
    }
    throw new Error(`no master serves slot ${slot}`);
  }

  /** The ports of the live masters. */
  async masters(): Promise<number[]> {
    const ports: number[] = [];
    for (const node of this.live()) if ((await cli(node.port, 'role')).startsWith('master')) ports.push(node.port);
    return ports;
  }

  /** SIGKILLs the node on `port`. */
  async kill(port: number): Promise<void> {
    const node = this.nodes.find((n) => n.port === port)!;
    node.child.kill('SIGKILL');
    await node.exited;
  }

  /** Kills every node and removes the directory. */
  async stop(): Promise<void> {
    for (const node of this.nodes) if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill('SIGKILL');
    await Promise.all(this.nodes.map((n) => n.exited));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const INSTANCE = fileURLToPath(new URL('./fixtures/redis-instance.js', import.meta.url));

/** A wavecast server with a `RedisAdapter` in a child process (`fixtures/redis-instance.ts`). */
export class Instance {
  port = 0;
  private readonly exited: Promise<void>;
  private constructor(readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /** `adapter`: the adapter's options as JSON (its `RedisAdapterOptions`). */
  static async start(adapter: Record<string, unknown>): Promise<Instance> {
    const child = spawn(process.execPath, [INSTANCE], {
      env: { ...process.env, REDIS_INSTANCE: '1', ADAPTER: JSON.stringify(adapter) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const instance = new Instance(child);
    instance.port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the instance did not start within 15 s')), 15_000);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const ready = (JSON.parse(line) as { ready?: number }).ready;
        if (ready === undefined) return;
        clearTimeout(timer);
        resolve(ready);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`the instance exited with ${code}`));
      });
    });
    return instance;
  }

  /** SIGKILL: the instance leaves without a word. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** A `ws` client that keeps every text message. */
export class Listener {
  readonly texts: string[] = [];
  private wake: (() => void) | null = null;
  private constructor(readonly ws: WebSocket) {
    ws.on('error', () => {});
    ws.on('message', (data: Buffer) => {
      this.texts.push(data.toString());
      this.wake?.();
    });
  }

  static async open(server: Server): Promise<{ client: Listener; fd: number }> {
    const opened = waitFor<[number]>(server, 'open');
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/`);
    const client = new Listener(ws);
    await once(ws, 'open');
    const [fd] = await opened;
    return { client, fd };
  }

  /** Waits (bounded) until `text` (or a message `text` accepts) has arrived; resolves with it. */
  async until(text: string | ((t: string) => boolean), ms = 5000): Promise<string> {
    const match = typeof text === 'string' ? (t: string) => t === text : text;
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.texts.find(match);
      if (found !== undefined) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${String(text)}; got ${JSON.stringify(this.texts).slice(0, 800)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** A client of an instance in another process: its fd comes in the greeting `{ hello: fd }`. */
  static async connect(port: number): Promise<{ client: Listener; fd: number }> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    const client = new Listener(ws);
    await once(ws, 'open');
    const hello = await client.until((t) => t.startsWith('{"hello"'));
    return { client, fd: (JSON.parse(hello) as { hello: number }).hello };
  }

  close(): void {
    this.ws.terminate();
  }
}
