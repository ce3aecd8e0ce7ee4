/**
 * wavecast with Express: Express serves the HTTP routes, wavecast the
 * WebSockets at `/ws`, on one port. Give wavecast the `http.Server` that
 * `app.listen()` returns, not the app.
 *
 * ```sh
 * npm run build && node dist/examples/express.js     # PORT=8080 for another port
 * ```
 */
import express from 'express';
import { OPCODE, Server } from '../src/index.js';

const app = express();
app.get('/', (_req, res) => {
  res.type('text').send('Express here; WebSockets at /ws');
});

const httpServer = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  const { port } = httpServer.address() as { port: number };
  console.log(`listening on http://127.0.0.1:${port} (WebSockets at ws://127.0.0.1:${port}/ws)`);
});

const server = new Server({ server: httpServer, path: '/ws' });
server.on('message', (frame) => {
  // frame.data is a string after this check, a Buffer otherwise.
  if (frame.opcode === OPCODE.TEXT) server.push(frame.fd, `echo: ${frame.data}`);
  else server.push(frame.fd, frame);
});
await server.start();

process.once('SIGTERM', async () => {
  await server.stop(); // closes the WebSockets with 1001 first
  httpServer.close();
});
