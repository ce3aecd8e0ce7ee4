/**
 * The `wavecast` command (src/cli.ts) as a user runs it: a child process,
 * its exit status and output, and real `ws` clients against the servers it
 * starts on a free port.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import WebSocket from 'ws';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const execFileAsync = promisify(execFile);

/** Runs the command to its end; resolves with its exit status and output. */
async function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [CLI, ...args], { timeout: 15_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** A running `wavecast <command>`: its URL (read from its first line) and the rest of its output. */
class Running {
  readonly lines: string[] = [];
  private constructor(
    readonly child: ChildProcess,
    readonly url: string,
  ) {}

  static async start(args: string[]): Promise<Running> {
    const child = spawn(process.execPath, [CLI, ...args, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const lines = createInterface({ input: child.stdout! });
    const first = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no first line within 15 s; stderr: ${stderr}`)), 15_000);
      lines.once('line', (line) => {
        clearTimeout(timer);
        resolve(line);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`exited with ${code} before listening; stderr: ${stderr}`));
      });
    });
    const url = /listening on (\S+)/.exec(first)?.[1];
    assert.ok(url, `the first line names the URL: ${first}`);
    const running = new Running(child, url);
    lines.on('line', (line) => running.lines.push(line));
    return running;
  }

  /** SIGTERM, as Ctrl+C would: resolves with the exit status once the server stopped. */
  async stop(): Promise<number | null> {
    const exited = once(this.child, 'exit') as Promise<[number | null]>;
    this.child.kill('SIGTERM');
    const [code] = await exited;
    return code;
  }
}

/** A `ws` client that queues every message from the start: the server may send one with its 101 response. */
class Client {
  private readonly queue: { data: Buffer; isBinary: boolean }[] = [];
  private wake: (() => void) | null = null;
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.queue.push({ data, isBinary });
      this.wake?.();
    });
  }

  static async open(url: string): Promise<Client> {
    const client = new Client(new WebSocket(url));
    await once(client.ws, 'open');
    return client;
  }

  /** The next message (the test's timeout bounds the wait). */
  async next(): Promise<{ data: Buffer; isBinary: boolean }> {
    while (this.queue.length === 0) await new Promise<void>((resolve) => (this.wake = resolve));
    return this.queue.shift()!;
  }

  /** Messages that arrived and were not taken yet. */
  get pending(): number {
    return this.queue.length;
  }

  async close(): Promise<void> {
    this.ws.close();
    await once(this.ws, 'close');
  }
}

describe('wavecast command line', () => {
  test('--help lists the commands and options and exits 0', async () => {
    for (const flag of ['--help', '-h', 'echo --help']) {
      const { code, stdout } = await runCli(flag.split(' '));
      assert.equal(code, 0, flag);
      assert.match(stdout, /^Usage: wavecast <command> \[options\]/);
      for (const word of ['chat', 'echo', 'broadcast', '--port', '--host', '--quiet']) assert.ok(stdout.includes(word), `${flag} mentions ${word}`);
    }
  });

  test('--version prints the package version', async () => {
    const { code, stdout } = await runCli(['--version']);
    assert.equal(code, 0);
    assert.match(stdout, /^\d+\.\d+\.\d+\n$/);
  });

  test('a bad command line exits 2 and says what is wrong, with a pointer to --help', async () => {
    const cases: [string[], RegExp][] = [
      [[], /no command given/],
      [['serve'], /unknown command "serve" \(one of: chat, echo, broadcast\)/],
      [['echo', '--prot', '9000'], /Unknown option '--prot'$/m],
      [['echo', '--port'], /--port <value>' argument missing/],
      [['echo', '--port', 'abc'], /--port must be a port number \(0-65535\), got "abc"/],
      [['echo', '--port', '70000'], /--port must be a port number \(0-65535\), got "70000"/],
      [['echo', '--port=-1'], /--port must be a port number \(0-65535\), got "-1"/],
      [['echo', 'extra'], /unexpected argument "extra"/],
      [['echo', '--host', ''], /--host must not be empty/],
    ];
    for (const [args, message] of cases) {
      const { code, stdout, stderr } = await runCli(args);
      assert.equal(code, 2, args.join(' '));
      assert.equal(stdout, '', args.join(' '));
      assert.match(stderr, message, args.join(' '));
      assert.match(stderr, /Run 'wavecast --help'/);
    }
  });

  test('a port that is taken exits 1 with the reason', async () => {
    const taken = net.createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    try {
      const { port } = taken.address() as net.AddressInfo;
      const { code, stderr } = await runCli(['echo', '--port', String(port)]);
      assert.equal(code, 1);
      assert.match(stderr, /^wavecast: .*EADDRINUSE/);
    } finally {
      taken.close();
    }
  });

  test('echo sends each text and binary message back to its sender only, and logs it', async () => {
    const server = await Running.start(['echo']);
    try {
      assert.match(server.url, /^ws:\/\/127\.0\.0\.1:\d+\/$/);
      const a = await Client.open(server.url);
      const b = await Client.open(server.url);
      a.ws.send('hello');
      const text = await a.next();
      assert.deepEqual([text.data.toString(), text.isBinary], ['hello', false]);
      a.ws.send(Buffer.from([0, 1, 2, 255]));
      const binary = await a.next();
      assert.deepEqual([[...binary.data], binary.isBinary], [[0, 1, 2, 255], true]);
      // b's own echo comes after anything a's messages could have sent it.
      b.ws.send('b');
      assert.equal((await b.next()).data.toString(), 'b');
      assert.equal(b.pending, 0, 'b got nothing of what a sent');
      await Promise.all([a.close(), b.close()]);
    } finally {
      assert.equal(await server.stop(), 0, 'SIGTERM stops it cleanly');
    }
    assert.ok(server.lines.some((line) => /^fd \d+: text "hello"$/.test(line)), server.lines.join('\n'));
  });

  test('broadcast sends each message to every connected client, the sender included', async () => {
    const server = await Running.start(['broadcast', '--quiet']);
    try {
      const clients = [await Client.open(server.url), await Client.open(server.url), await Client.open(server.url)];
      clients[1].ws.send('to everyone');
      for (const client of clients) assert.equal((await client.next()).data.toString(), 'to everyone');
      await Promise.all(clients.map((client) => client.close()));
    } finally {
      assert.equal(await server.stop(), 0);
    }
    assert.deepEqual(server.lines, [], '--quiet logs nothing after the first line');
  });

  test('chat serves the page and relays a message to everyone as JSON', async () => {
    const server = await Running.start(['chat', '-q']);
    try {
      const page = server.url;
      assert.match(page, /^http:\/\/127\.0\.0\.1:\d+\/$/);
      const res = await fetch(page);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
      assert.match(await res.text(), /<script[^>]+chat\.js/);
      const client = await Client.open(page.replace(/^http/, 'ws'));
      const welcome = JSON.parse((await client.next()).data.toString()) as { type: string; fd: number };
      assert.equal(welcome.type, 'welcome');
      client.ws.send('hi all');
      assert.deepEqual(JSON.parse((await client.next()).data.toString()), { type: 'message', from: welcome.fd, text: 'hi all' });
      await client.close();
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });
});
