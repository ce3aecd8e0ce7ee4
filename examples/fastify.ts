/**
 * wavecast with Fastify: Fastify serves the HTTP routes, wavecast the
 * WebSockets at `/ws`, on one port. Give wavecast `fastify.server` (Node's
 * `http.Server` under Fastify).
 *
 * ```sh
 * npm run build && node dist/examples/fastify.js     # PORT=8080 for another port
 * ```
 */
import Fastify from 'fastify';
import { OPCODE, Server } from '../src/index.js';

const fastify = Fastify();
fastify.get('/', async () => 'Fastify here; WebSockets at /ws');

const server = new Server({ server: fastify.server, path: '/ws' });
server.on('message', (frame) => {
  if (frame.opcode === OPCODE.TEXT) server.push(frame.fd, `echo: ${frame.data}`);
  else server.push(frame.fd, frame);
});
await server.start();

await fastify.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' });
console.log(`listening on http://127.0.0.1:${server.port} (WebSockets at ws://127.0.0.1:${server.port}/ws)`);

process.once('SIGTERM', async () => {
  await server.stop(); // closes the WebSockets with 1001 first
  await fastify.close();
});
