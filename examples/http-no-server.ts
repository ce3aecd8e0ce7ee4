/**
 * wavecast with Node's plain `http` and `noServer`: the app owns the HTTP
 * server and decides, in its own `upgrade` listener, which requests become
 * WebSockets (here: those to `/ws` with the right token), as with `ws`'s
 * `noServer`.
 *
 * ```sh
 * npm run build && node dist/examples/http-no-server.js  # then connect to ws://127.0.0.1:3000/ws?token=let-me-in
 * ```
 */
import http from 'node:http';
import { OPCODE, Server } from '../src/index.js';

const TOKEN = process.env.TOKEN ?? 'let-me-in';

const server = new Server({ noServer: true });
server.on('message', (frame) => {
  if (frame.opcode === OPCODE.TEXT) server.push(frame.fd, `echo: ${frame.data}`);
  else server.push(frame.fd, frame);
});
await server.start();

const httpServer = http.createServer((_req, res) => {
  res.setHeader('Content-Type', 'text/plain');
  res.end('plain http here; WebSockets at /ws?token=...');
});
httpServer.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname !== '/ws' || url.searchParams.get('token') !== TOKEN) {
    socket.end('HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  server.handleUpgrade(req, socket, head);
});
httpServer.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  const { port } = httpServer.address() as { port: number };
  console.log(`listening on http://127.0.0.1:${port} (WebSockets at ws://127.0.0.1:${port}/ws?token=${TOKEN})`);
});

process.once('SIGTERM', async () => {
  await server.stop(); // closes the WebSockets with 1001 first
  httpServer.close();
});
