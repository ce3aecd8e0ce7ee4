#!/usr/bin/env node
/**
 * The `wavecast` command of an installed package:
 *
 * ```sh
 * npx wavecast chat --port 9501        # the chat demo: a page and a WebSocket relay
 * npx wavecast echo --port 9000        # every message back to its sender
 * npx wavecast broadcast --port 9000   # every message to every client
 * ```
 *
 * The echo and broadcast servers are there to try a client against. Exit
 * status 2 for a bad command line, 1 when the server cannot start. This file
 * is only ever run, never imported: it reads `process.argv` at load.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { chatUrl, DEFAULT_PORT, startChat } from '../examples/chat-server.js';
import { nativeStatus } from './native.js';
import { Server } from './server.js';

/** The commands, with the line `--help` prints for each. */
const COMMANDS = {
  chat: 'the chat demo: a page at http://HOST:PORT/ whose WebSocket relays every message to everyone',
  echo: 'a WebSocket server that sends every message back to its sender',
  broadcast: 'a WebSocket server that sends every message to every connected client',
} as const;

type Command = keyof typeof COMMANDS;

const USAGE = `Usage: wavecast <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, what]) => `  ${name.padEnd(10)} ${what}`)
  .join('\n')}

Options:
  -p, --port N       port to listen on (default ${DEFAULT_PORT}; 0 picks a free one)
  -H, --host ADDR    address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  -q, --quiet        no line per connection and message
  -h, --help         this text
  -v, --version      the version of wavecast

WAVECAST_DEBUG=1 says whether the native addon loaded, and why not.
`;

/** A command line that cannot run: printed with a pointer to --help, exit status 2. */
class UsageError extends Error {
  override name = 'UsageError';
}

/** What a command line asks for. */
type Invocation =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'serve'; command: Command; host: string; port: number; quiet: boolean };

function parsePort(value: string): number {
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) {
    throw new UsageError(`--port must be a port number (0-65535), got ${JSON.stringify(value)}`);
  }
  return port;
}

/** Reads `argv` (without node and the script); throws {@link UsageError} for anything it cannot run. */
function parseCommandLine(argv: string[]): Invocation {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        port: { type: 'string', short: 'p' },
        host: { type: 'string', short: 'H' },
        quiet: { type: 'boolean', short: 'q' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    // parseArgs says which flag is unknown or lacks its value; for an unknown
    // one it goes on about positionals that start with '-', which no command takes.
    const { message, code } = error as Error & { code?: string };
    throw new UsageError(code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? message.split('. ')[0] : message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };
  if (positionals.length === 0) throw new UsageError('no command given');
  const [command, ...extra] = positionals;
  if (!Object.hasOwn(COMMANDS, command)) {
    throw new UsageError(`unknown command ${JSON.stringify(command)} (one of: ${Object.keys(COMMANDS).join(', ')})`);
  }
  if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
  if (values.host === '') throw new UsageError('--host must not be empty');
  return {
    kind: 'serve',
    command: command as Command,
    host: values.host ?? '127.0.0.1',
    port: values.port === undefined ? DEFAULT_PORT : parsePort(values.port),
    quiet: values.quiet ?? false,
  };
}

/** A message for the log: short, on one line. */
function preview(data: string | Buffer): string {
  if (typeof data !== 'string') return `binary, ${data.length} bytes`;
  const line = JSON.stringify(data.length > 60 ? `${data.slice(0, 60)}...` : data);
  return `text ${line}`;
}

/** Starts the echo or broadcast server. */
async function startRelay(command: 'echo' | 'broadcast', host: string, port: number, log: (line: string) => void): Promise<Server> {
  const server = new Server({ host, port });
  server.on('open', (fd, request) => log(`fd ${fd} open from ${request.remoteAddress} (${request.path})`));
  server.on('close', (fd, code) => log(`fd ${fd} closed (${code})`));
  server.on('message', (frame) => {
    log(`fd ${frame.fd}: ${preview(frame.data)}`);
    // A received frame is relayed from its bytes, with its own opcode.
    if (command === 'echo') server.push(frame.fd, frame);
    else server.broadcast(frame);
  });
  await server.start();
  return server;
}

function wsUrl(host: string, port: number): string {
  return chatUrl(host, port).replace(/^http:/, 'ws:');
}

/** Runs one invocation; resolves with the server (for `serve`) once it listens. */
async function run(invocation: Invocation): Promise<Server | null> {
  if (invocation.kind === 'help') {
    process.stdout.write(USAGE);
    return null;
  }
  if (invocation.kind === 'version') {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    console.log(pkg.version);
    return null;
  }
  const { command, host, port, quiet } = invocation;
  const log = quiet ? () => {} : (line: string) => console.log(line);
  let server: Server;
  let url: string;
  if (command === 'chat') {
    server = await startChat({ host, port, log });
    url = chatUrl(host, server.port);
  } else {
    server = await startRelay(command, host, port, log);
    url = wsUrl(host, server.port);
  }
  const { backend, transport } = server.stats();
  const why = backend === 'native' ? '' : ` (${nativeStatus.reason})`;
  // The first line names the URL with the real port (--port 0 picks one): scripts and tests read it.
  console.log(`wavecast ${command}: listening on ${url} (backend ${backend}${why}, transport ${transport}); Ctrl+C stops`);
  return server;
}

async function main(): Promise<void> {
  let invocation: Invocation;
  try {
    invocation = parseCommandLine(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`wavecast: ${error.message}\nRun 'wavecast --help' for the commands and options.\n`);
    process.exitCode = 2;
    return;
  }
  const server = await run(invocation);
  if (server === null) return;

  let stopping = false;
  const shutdown = (): void => {
    // A second Ctrl+C does not wait for slow clients.
    if (stopping) process.exit(130);
    stopping = true;
    server.stop().then(
      () => {
        process.exitCode = 0;
      },
      (error: unknown) => {
        console.error(`wavecast: ${error instanceof Error ? error.message : String(error)}`);
        process.exitCode = 1;
      },
    );
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

main().catch((error: unknown) => {
  // A server that cannot start (port taken, address not available).
  console.error(`wavecast: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
