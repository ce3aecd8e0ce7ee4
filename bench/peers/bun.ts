/**
 * Bun peer, run by Bun itself (`bun bench/peers/bun.ts echo|broadcast`), not
 * by Node: the runner finds the binary of the devDependency `bun` (see
 * `bench/bun-binary.ts`) and skips this peer only where none runs. Broadcast is Bun's
 * idiom: receivers subscribe to a topic, the sender's message is published.
 * The declarations below are the few Bun APIs used, so that `tsc` (which
 * compiles this file for Node too) stays happy without `bun-types`.
 */
interface BunSocket {
  data: { path: string };
  send(message: string | Uint8Array): number;
  subscribe(topic: string): void;
}
interface BunServer {
  port: number;
  upgrade(request: Request, options: { data: { path: string } }): boolean;
  publish(topic: string, message: string | Uint8Array, compress?: boolean): number;
  stop(force?: boolean): void;
}
declare const Bun: {
  serve(options: {
    hostname: string;
    port: number;
    fetch(request: Request, server: BunServer): Response | undefined;
    websocket: {
      maxPayloadLength: number;
      idleTimeout: number;
      backpressureLimit: number;
      perMessageDeflate: boolean;
      open?(ws: BunSocket): void;
      message(ws: BunSocket, message: string | Uint8Array): void;
    };
  }): BunServer;
};

const args = process.argv.slice(2);
// BENCH_DEFLATE=1: Bun's permessage-deflate, and publish compressed (see common.ts).
const deflate = process.env.BENCH_DEFLATE === '1';
const scenario = args[0];
const portIndex = args.indexOf('--port');
const port = portIndex >= 0 ? Number(args[portIndex + 1]) : 0;
if (scenario !== 'echo' && scenario !== 'broadcast') {
  process.stderr.write('usage: bun bench/peers/bun.ts echo|broadcast [--port N]\n');
  process.exit(2);
}

let server: BunServer | undefined;
server = Bun.serve({
  hostname: '127.0.0.1',
  port,
  fetch(request, srv) {
    const path = new URL(request.url).pathname;
    if (srv.upgrade(request, { data: { path } })) return undefined;
    return new Response('upgrade required', { status: 426 });
  },
  websocket: {
    maxPayloadLength: 2 * 1024 * 1024,
    idleTimeout: 0,
    backpressureLimit: 64 * 1024 * 1024,
    perMessageDeflate: deflate,
    open(ws) {
      if (scenario === 'broadcast' && ws.data.path === '/recv') ws.subscribe('all');
    },
    message(ws, message) {
      if (scenario === 'echo') ws.send(message);
      else if (ws.data.path === '/send') server?.publish('all', message, deflate);
    },
  },
});
process.stdout.write(JSON.stringify({ ready: true, port: server.port, pid: process.pid, peer: 'bun', perMessageDeflate: deflate }) + '\n');
process.on('SIGTERM', () => {
  server?.stop(true);
  process.exit(0);
});
