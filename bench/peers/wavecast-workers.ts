/**
 * wavecast with `workerNum` workers (default 2, `BENCH_WORKERS=N`; 1 is a
 * lone process). The primary prints the ready line; the workers share the
 * port (one inherited native listening socket, or with `BENCH_NATIVE=0`
 * `nativeTransport: false`: node:cluster's round-robin to Node's sockets)
 * and run the handlers. Broadcast: the sender's worker calls `server.broadcast(frame)`,
 * which delivers to its own receivers and crosses once to each other worker
 * for theirs. Echo: `push(frame.fd, frame)`, always local.
 */
import { Server, backend } from '../../src/index.js';
import { onStop, parseArgs, ready } from './common.js';

const { scenario, port } = parseArgs();
const workerNum = Number(process.env.BENCH_WORKERS ?? 2);
const nativeTransport = process.env.BENCH_NATIVE !== '0';
const server = new Server({ host: '127.0.0.1', port, maxPayload: 2 * 1024 * 1024, workerNum, nativeTransport });
const receivers = new Set<number>();

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
    server.broadcast(frame);
  });
}

await server.start();
if (server.workerId === -1 || workerNum === 1) {
  ready(server.port, { peer: 'wavecast-workers', backend, workers: workerNum, transport: nativeTransport ? 'native' : 'node' });
  onStop(() => server.stop());
}
