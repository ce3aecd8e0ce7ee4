/**
 * uWebSockets.js peer (npm package `uwebsockets@3.0.6`, the uWS.js binaries).
 * Broadcast is uWS's idiom: receivers subscribe to a topic and the sender
 * publishes to it. `maxBackpressure` is raised so that uWS never drops a
 * message in these runs (its default, 64 KiB, is less than an echo
 * connection's 10 x 16 KiB in flight).
 *
 * With `BENCH_DEFLATE=1`, `compression: SHARED_COMPRESSOR` (uWS's one
 * compressor for every socket, no context takeover) and `publish(..., true)`
 * so that published messages are compressed.
 */
import { createRequire } from 'node:module';
import { deflate, onStop, parseArgs, ready } from './common.js';

interface UwsSocket {
  send(message: ArrayBuffer, isBinary: boolean): number;
  subscribe(topic: string): boolean;
}
interface UwsBehavior {
  compression: number;
  maxPayloadLength: number;
  maxBackpressure: number;
  idleTimeout: number;
  open?: (ws: UwsSocket) => void;
  message?: (ws: UwsSocket, message: ArrayBuffer, isBinary: boolean) => void;
}
interface UwsApp {
  ws(pattern: string, behavior: UwsBehavior): UwsApp;
  publish(topic: string, message: ArrayBuffer, isBinary: boolean, compress?: boolean): boolean;
  listen(host: string, port: number, cb: (token: unknown) => void): UwsApp;
}
interface Uws {
  App(): UwsApp;
  us_socket_local_port(token: unknown): number;
  us_listen_socket_close(token: unknown): void;
  SHARED_COMPRESSOR: number;
}

const require = createRequire(import.meta.url);
const uws = require('uwebsockets') as Uws;
const { scenario, port } = parseArgs();

const base = { compression: deflate ? uws.SHARED_COMPRESSOR : 0, maxPayloadLength: 2 * 1024 * 1024, maxBackpressure: 64 * 1024 * 1024, idleTimeout: 0 };
const app = uws.App();
if (scenario === 'echo') {
  app.ws('/*', { ...base, message: (ws, message, isBinary) => void ws.send(message, isBinary) });
} else {
  app.ws('/recv', { ...base, open: (ws) => void ws.subscribe('all') });
  // App.publish, not ws.publish: in this build a socket that is subscribed to
  // nothing gets `false` from ws.publish and nothing is delivered.
  app.ws('/send', { ...base, message: (_ws, message, isBinary) => void app.publish('all', message, isBinary, deflate) });
}
app.listen('127.0.0.1', port, (token) => {
  if (!token) {
    process.stderr.write('uws: listen failed\n');
    process.exit(1);
  }
  ready(uws.us_socket_local_port(token), { peer: 'uws', perMessageDeflate: deflate });
  onStop(() => uws.us_listen_socket_close(token));
});
