/**
 * wavecast peer. The backend is whatever `src/native.ts` picked at load: the
 * addon, or the pure-JS fallback with `WAVECAST_NO_NATIVE=1`; the ready line
 * says which, and the runner checks it.
 *
 * Echo relays the received frame (`push(fd, frame)`), wavecast's idiom for
 * "send these validated bytes back", so text is never decoded, as in the ws
 * and uWS peers. Broadcast uses `server.broadcast` when the server has it
 * (issue 4) and a loop of `push` over the receivers otherwise.
 *
 * With `BENCH_DEFLATE=1` the server runs with `perMessageDeflate: true`, its
 * defaults: threshold 1024 bytes, no context takeover either way, so a
 * broadcast is compressed once and the same frame goes to every receiver.
 *
 * With `BENCH_BORROW=1` (the `wavecast-borrow` peer) the server runs with
 * `borrowFrames: true`: frames valid only inside their listener, as uWS.js's
 * messages are, which both idioms here respect.
 */
import { Server, backend } from '../../src/index.js';
import type { Frame } from '../../src/index.js';
import { deflate, onStop, parseArgs, ready } from './common.js';

/** The broadcast call as the benchmark uses it (issue 4 may add options). */
type Broadcast = (data: Frame) => unknown;

const { scenario, port } = parseArgs();
const borrowFrames = process.env.BENCH_BORROW === '1';
const server = new Server({ host: '127.0.0.1', port, maxPayload: 2 * 1024 * 1024, perMessageDeflate: deflate, borrowFrames });
const receivers = new Set<number>();
const broadcast = (server as unknown as { broadcast?: Broadcast }).broadcast;

if (scenario === 'echo') {
  server.on('message', (frame) => {
    server.push(frame.fd, frame);
  });
} else {
  server.on('open', (fd, request) => {
    if (request.url === '/recv') receivers.add(fd);
  });
  server.on('close', (fd) => {
    receivers.delete(fd);
  });
  server.on('message', (frame) => {
    if (receivers.has(frame.fd)) return;
    if (typeof broadcast === 'function') {
      // Reaches every connection, the sender too: the load generator drops
      // what the sender gets, and it is one copy in 1,001 or 10,001.
      broadcast.call(server, frame);
    } else {
      for (const fd of receivers) server.push(fd, frame);
    }
  });
}

await server.start();
ready(server.port, {
  peer: 'wavecast',
  backend,
  borrowFrames,
  broadcast: typeof broadcast === 'function' ? 'broadcast' : 'push loop',
  perMessageDeflate: deflate,
});
onStop(() => server.stop());
