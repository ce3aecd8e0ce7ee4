/**
 * The chat demo that `npm start` runs: a page at `/` (examples/public/) and a
 * WebSocket endpoint on the same port that sends every message to every
 * connected client, as in Swoole's WebSocket tutorial.
 *
 * ```sh
 * npm start                   # http://127.0.0.1:9501/
 * PORT=8080 npm start         # or: npm start -- --port 8080
 * HOST=0.0.0.0 npm start      # listen on every interface
 * ```
 *
 * What travels on the socket: the page sends plain text; the server sends JSON
 * text messages, one of {@link ChatEvent}.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { OPCODE, Server } from '../src/index.js';

/** A message from the server to the page (JSON in a text frame). */
export type ChatEvent =
  /** Sent to a client right after it connects: its own fd and who is here. */
  | { type: 'welcome'; fd: number; online: number[] }
  /** Someone connected (sent to everyone else). */
  | { type: 'join'; fd: number }
  /** Someone left (sent to everyone still here). */
  | { type: 'leave'; fd: number }
  /** A chat message, sent to everyone including its sender. */
  | { type: 'message'; from: number; text: string }
  /** Something the sender did wrong (sent to the sender only). */
  | { type: 'error'; text: string };

/** Settings of the demo server. */
export interface ChatOptions {
  /** Interface to listen on. Default `127.0.0.1`. */
  host?: string;
  /** Port to listen on; 0 picks a free one (read `server.port`). Default 9501. */
  port?: number;
  /** Where the server's log lines go. Default `console.log`; tests pass a no-op. */
  log?: (line: string) => void;
}

/** Default port, the one Swoole's examples use. */
export const DEFAULT_PORT = 9501;

/**
 * Longest chat message accepted, in UTF-16 units. Relayed as JSON, where one
 * unit escapes to at most 6 bytes, so a relayed message always stays far
 * below the server's `maxPayload` and `push` never throws.
 */
export const MAX_TEXT_LENGTH = 4096;

/** The page's files, served from memory; anything else is a 404. */
const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/chat.js': { file: 'chat.js', type: 'text/javascript; charset=utf-8' },
  '/chat.css': { file: 'chat.css', type: 'text/css; charset=utf-8' },
};

// The page loads nothing from elsewhere; the policy makes a stray external
// URL fail loudly in the browser (and in test/browser.test.ts).
const SECURITY_HEADERS = {
  'Content-Security-Policy':
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; base-uri 'none'; form-action 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Cache-Control': 'no-cache',
};

/**
 * Finds examples/public/ whether this file runs compiled
 * (dist/examples/chat-server.js) or from source (examples/chat-server.ts).
 */
function findPublicDir(): string {
  const candidates = [new URL('../../examples/public/', import.meta.url), new URL('./public/', import.meta.url)];
  for (const url of candidates) {
    const dir = fileURLToPath(url);
    if (existsSync(`${dir}index.html`)) return dir;
  }
  throw new Error(
    `chat page not found: looked for index.html in ${candidates.map((url) => fileURLToPath(url)).join(' and ')}`,
  );
}

/** Reads the page's files once, at startup: a missing file fails there, not on the first visit. */
function loadAssets(): Map<string, { body: Buffer; type: string }> {
  const dir = findPublicDir();
  const loaded = new Map<string, { body: Buffer; type: string }>();
  for (const [path, { file, type }] of Object.entries(ASSETS)) {
    loaded.set(path, { body: readFileSync(`${dir}${file}`), type });
  }
  return loaded;
}

/**
 * Builds the chat server (not started): static page on plain HTTP, every
 * text message relayed to all clients as a {@link ChatEvent}.
 */
export function createChatServer(options: ChatOptions = {}): Server {
  const { host = '127.0.0.1', port = DEFAULT_PORT, log = console.log } = options;
  const assets = loadAssets();
  const server = new Server({ host, port });

  const send = (fd: number, event: ChatEvent): boolean => server.push(fd, JSON.stringify(event));

  /** Sends `event` to every established client but `except`; encoded once. */
  const broadcast = (event: ChatEvent, except?: number): void => {
    const text = JSON.stringify(event);
    for (const fd of server.connections) {
      if (fd !== except) server.push(fd, text);
    }
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const asset = assets.get(path);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('method not allowed\n');
      return;
    }
    if (asset === undefined) {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('not found\n');
      return;
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'Content-Type': asset.type, 'Content-Length': asset.body.length });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
  });

  server.on('open', (fd, request) => {
    log(`server: handshake success with fd${fd} from ${request.remoteAddress}`);
    send(fd, { type: 'welcome', fd, online: [...server.connections] });
    broadcast({ type: 'join', fd }, fd);
  });

  server.on('message', (frame) => {
    const { fd, opcode, finish } = frame;
    if (opcode !== OPCODE.TEXT) {
      log(`receive from ${fd}: binary message of ${frame.payload.length} bytes, ignored`);
      send(fd, { type: 'error', text: 'only text messages are relayed' });
      return;
    }
    const text = frame.data as string;
    log(`receive from ${fd}:${text},opcode:${opcode},fin:${finish}`);
    if (text.length > MAX_TEXT_LENGTH) {
      send(fd, { type: 'error', text: `message too long (at most ${MAX_TEXT_LENGTH} characters)` });
      return;
    }
    broadcast({ type: 'message', from: fd, text });
  });

  server.on('close', (fd, code) => {
    log(`client ${fd} closed (${code})`);
    broadcast({ type: 'leave', fd });
  });

  return server;
}

/** Creates and starts the chat server; resolves once it is listening. */
export async function startChat(options: ChatOptions = {}): Promise<Server> {
  const server = createChatServer(options);
  await server.start();
  return server;
}

/** The URL to open for a server listening on `host`:`port`. */
export function chatUrl(host: string, port: number): string {
  const shown = host === '0.0.0.0' || host === '::' || host === '' ? '127.0.0.1' : host;
  return `http://${shown.includes(':') ? `[${shown}]` : shown}:${port}/`;
}

function parsePort(value: string, source: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) {
    throw new RangeError(`${source} must be a port number (0-65535), got ${JSON.stringify(value)}`);
  }
  return port;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { port: { type: 'string', short: 'p' }, host: { type: 'string' } },
    strict: true,
  });
  // --port wins over PORT, which wins over the default; same for the host.
  const port =
    values.port !== undefined
      ? parsePort(values.port, '--port')
      : process.env.PORT !== undefined && process.env.PORT !== ''
        ? parsePort(process.env.PORT, 'PORT')
        : DEFAULT_PORT;
  const host = values.host ?? (process.env.HOST || '127.0.0.1');

  const server = await startChat({ host, port });
  console.log(`wavecast chat demo: open ${chatUrl(host, server.port)} in two browser tabs (Ctrl+C to stop)`);

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // A second Ctrl+C does not wait for slow clients.
      process.exit(130);
    }
    stopping = true;
    console.log(`${signal}: closing connections...`);
    server.stop().then(
      () => console.log('stopped'),
      (error: unknown) => {
        console.error(error);
        process.exitCode = 1;
      },
    );
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

/** True when this file is the program node runs, not a module imported by a test. */
function isMain(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return import.meta.url === pathToFileURL(realpathSync(entry)).href;
  } catch {
    return false;
  }
}

if (isMain()) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
