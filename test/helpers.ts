/**
 * Test helpers: a raw client over `net` that speaks just enough RFC 6455 to
 * send anything (including malformed frames) and read exactly what the server
 * put on the wire, plus server start/stop with bounded waits.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { afterEach } from 'node:test';
import { Server, type ServerOptions } from '../src/index.js';

/**
 * The program and arguments that run `args` in another Node like this one.
 * Under qemu-user (the arm64 run of .ci/run) this Node is an arm64 binary the
 * kernel cannot start by itself, so WAVECAST_TEST_LAUNCHER names the emulator
 * to put in front (e.g. `qemu-aarch64`); unset, it is `process.execPath`.
 */
export function nodeCommand(args: string[]): [string, string[]] {
  const launcher = (process.env.WAVECAST_TEST_LAUNCHER ?? '').split(' ').filter((word) => word !== '');
  if (launcher.length === 0) return [process.execPath, args];
  return [launcher[0], [...launcher.slice(1), process.execPath, ...args]];
}

/** Starts a server on 127.0.0.1:0 with an echo `message` handler unless one is given. */
export async function startServer<D = unknown>(
  options: ServerOptions = {},
  setup?: (server: Server<D>) => void,
): Promise<Server<D>> {
  const server = new Server<D>({ host: '127.0.0.1', port: 0, ...options });
  setup?.(server);
  if (server.listenerCount('message') === 0) {
    server.on('message', (frame) => server.push(frame.fd, frame));
  }
  await server.start();
  return server;
}

/**
 * For a test file's top level: `later(close)` has `close` called after the
 * current test, whether it passed or not (a failed test must not hold the
 * run open), last opened first; `startServer` is the one above, stopped so.
 */
export function closeAfterEach(): {
  later(close: () => unknown): void;
  startServer(options: ServerOptions, setup?: (server: Server) => void): Promise<Server>;
} {
  const opened: (() => unknown)[] = [];
  afterEach(async () => {
    for (const close of opened.splice(0).reverse()) await close();
  });
  const later = (close: () => unknown): void => {
    opened.push(close);
  };
  return {
    later,
    async startServer(options, setup) {
      const server = await startServer(options, setup);
      later(() => server.stop());
      return server;
    },
  };
}

/**
 * Resolves with the arguments of the first `event` for which `filter` holds,
 * or rejects after `ms`: no test waits forever. (Unlike `events.once` it does
 * not listen to 'error', which would change what the server emits.)
 */
export function waitFor<T extends unknown[]>(
  emitter: NodeJS.EventEmitter,
  event: string,
  ms = 5000,
  filter: (...args: T) => boolean = () => true,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.removeListener(event, listener);
      reject(new Error(`timed out after ${ms} ms waiting for '${event}'`));
    }, ms);
    const listener = (...args: T): void => {
      if (!filter(...args)) return;
      clearTimeout(timer);
      emitter.removeListener(event, listener);
      resolve(args);
    };
    emitter.on(event, listener as (...args: unknown[]) => void);
  });
}

/** The `close` event of one fd: [code, reason, wasClean]. Call before causing the close. */
export async function closeEvent(server: Server<any>, fd: number, ms = 5000): Promise<[number, string, boolean]> {
  const [, code, reason, wasClean] = await waitFor<[number, number, string, boolean]>(server, 'close', ms, (f) => f === fd);
  return [code, reason, wasClean];
}

/** The newest fd of a server (the connection opened last). */
export function lastFd(server: Server<any>): number {
  return Math.max(...server.connections);
}

/** Builds a client frame. `mask` defaults to a fresh random mask; `null` sends it unmasked. */
export function clientFrame(
  opcode: number,
  payload: Buffer | string = Buffer.alloc(0),
  { fin = true, rsv = 0, mask = randomBytes(4) as Buffer | null, length }: {
    fin?: boolean;
    rsv?: number;
    mask?: Buffer | null;
    /** Claimed payload length, when it should differ from the real one. */
    length?: number | bigint;
  } = {},
): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const len = length ?? data.length;
  const n = typeof len === 'bigint' ? len : BigInt(len);
  const ext = n < 126n ? 0 : n <= 0xffffn ? 2 : 8;
  const header = Buffer.alloc(2 + ext + (mask ? 4 : 0));
  header[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
  if (ext === 0) header[1] = Number(n);
  else if (ext === 2) {
    header[1] = 126;
    header.writeUInt16BE(Number(n), 2);
  } else {
    header[1] = 127;
    header.writeBigUInt64BE(n, 2);
  }
  if (!mask) return Buffer.concat([header, data]);
  header[1] |= 0x80;
  mask.copy(header, 2 + ext);
  const body = Buffer.from(data);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
  return Buffer.concat([header, body]);
}

/** A frame as the server sent it. */
export interface ServerFrame {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** Parses complete server frames from `buf`; returns them and the unparsed rest. */
export function parseFrames(buf: Buffer): { frames: ServerFrame[]; rest: Buffer } {
  const frames: ServerFrame[] = [];
  let pos = 0;
  for (;;) {
    if (buf.length - pos < 2) break;
    const b0 = buf[pos];
    const b1 = buf[pos + 1];
    let len = b1 & 0x7f;
    let off = pos + 2;
    if (len === 126) {
      if (buf.length - off < 2) break;
      len = buf.readUInt16BE(off);
      off += 2;
    } else if (len === 127) {
      if (buf.length - off < 8) break;
      len = Number(buf.readBigUInt64BE(off));
      off += 8;
    }
    const masked = (b1 & 0x80) !== 0;
    if (masked) off += 4;
    if (buf.length - off < len) break;
    frames.push({ fin: (b0 & 0x80) !== 0, rsv: (b0 >> 4) & 7, opcode: b0 & 0x0f, masked, payload: buf.subarray(off, off + len) });
    pos = off + len;
  }
  return { frames, rest: buf.subarray(pos) };
}

/** A close frame's code (1005 if empty) and reason. */
export function closeOf(frame: ServerFrame): { code: number; reason: string } {
  if (frame.payload.length < 2) return { code: 1005, reason: '' };
  return { code: frame.payload.readUInt16BE(0), reason: frame.payload.toString('utf8', 2) };
}

export const UPGRADE_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
/** The accept value for UPGRADE_KEY (RFC 6455 1.3's example). */
export const UPGRADE_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';

/** An upgrade request; `headers` override or (with undefined) remove defaults. */
export function upgradeRequest(
  path = '/',
  headers: Record<string, string | undefined> = {},
  requestLine?: string,
): string {
  const all: Record<string, string | undefined> = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': UPGRADE_KEY,
    'Sec-WebSocket-Version': '13',
    ...headers,
  };
  let text = `${requestLine ?? `GET ${path} HTTP/1.1`}\r\n`;
  for (const [k, v] of Object.entries(all)) if (v !== undefined) text += `${k}: ${v}\r\n`;
  return `${text}\r\n`;
}

/**
 * A raw TCP client that records everything the server sends and whether the
 * server closed the connection.
 */
export class RawClient {
  readonly socket: net.Socket;
  private buffer = Buffer.alloc(0);
  /** The HTTP response head, once received. */
  response = '';
  private headDone = false;
  ended = false;
  closed = false;
  private waiters: (() => void)[] = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      if (!this.headDone) {
        const end = this.buffer.indexOf('\r\n\r\n');
        if (end !== -1) {
          this.headDone = true;
          this.response = this.buffer.toString('latin1', 0, end + 4);
          this.buffer = this.buffer.subarray(end + 4);
        }
      }
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  static async connect(port: number): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    socket.setNoDelay(true);
    return new RawClient(socket);
  }

  /** Connects and completes a WebSocket handshake, asserting 101. */
  static async open(port: number, path = '/', headers: Record<string, string | undefined> = {}): Promise<RawClient> {
    const client = await RawClient.connect(port);
    client.send(upgradeRequest(path, headers));
    await client.until(() => client.response !== '');
    if (!client.response.startsWith('HTTP/1.1 101 ')) throw new Error(`handshake failed: ${client.response}`);
    return client;
  }

  send(data: Buffer | string): void {
    this.socket.write(data);
  }

  /** Writes `data` one byte per write, to exercise every split of the input. */
  async sendBytewise(data: Buffer): Promise<void> {
    for (let i = 0; i < data.length; i++) {
      this.socket.write(data.subarray(i, i + 1));
      if (i % 64 === 63) await new Promise((r) => setImmediate(r));
    }
  }

  /** Waits (bounded) until `predicate` holds after some socket event. */
  async until(predicate: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!predicate()) {
      if (this.closed && !predicate()) throw new Error('connection closed before the condition held');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${ms} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Frames received so far (after the HTTP head). */
  frames(): ServerFrame[] {
    return parseFrames(this.buffer).frames;
  }

  /** Bytes after the HTTP head, raw. */
  get body(): Buffer {
    return this.buffer;
  }

  /** Waits for the server's close frame and for the TCP close; returns the close frame. */
  async closeFrame(ms = 5000): Promise<{ code: number; reason: string; frame: ServerFrame }> {
    await this.until(() => this.frames().some((f) => f.opcode === 0x8), ms);
    const frame = this.frames().find((f) => f.opcode === 0x8)!;
    return { ...closeOf(frame), frame };
  }

  /** Waits until the server has ended or closed the TCP connection. */
  async serverEnded(ms = 5000): Promise<void> {
    await this.until(() => this.ended || this.closed, ms).catch((e: unknown) => {
      if (!this.closed) throw e;
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}
