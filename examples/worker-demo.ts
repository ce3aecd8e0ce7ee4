/**
 * Two workers, one port: a message for a client of one worker is pushed from
 * the other. Run `npm run build && node dist/examples/worker-demo.js`
 * (`--once` to exit after the demonstration; PORT / HOST as for the chat demo).
 *
 * Every client is told its fd and its worker. A client sends `<fd> <text>`
 * and its worker pushes the text to `<fd>`, wherever that client is. The
 * primary shows it with two clients of its own, one on each worker, and then
 * keeps serving (try it with any WebSocket client, e.g. `npx wscat -c ws://127.0.0.1:9502`).
 */
import WebSocket from 'ws';
import { Server } from '../src/index.js';

const port = Number(process.env.PORT ?? 9502);
const host = process.env.HOST ?? '127.0.0.1';
const server = new Server({ host, port, workerNum: 2 });

server.on('open', (fd) => {
  server.push(fd, `you are fd ${fd} on worker ${server.workerId} (pid ${process.pid})`);
});

server.on('message', (frame) => {
  const text = String(frame.data);
  const space = text.indexOf(' ');
  const to = Number(text.slice(0, space));
  if (space < 0 || !Number.isSafeInteger(to)) {
    server.push(frame.fd, 'send "<fd> <text>"');
    return;
  }
  const where = server.exist(to) ? 'known to this worker' : 'unknown';
  const handed = server.push(to, `from fd ${frame.fd}, pushed by worker ${server.workerId}: ${text.slice(space + 1)}`);
  server.push(frame.fd, `worker ${server.workerId}: fd ${to} is ${where}; handed over: ${handed}`);
});

await server.start();

if (server.workerId === -1) {
  console.log(`worker demo on ws://${host}:${server.port}/ (primary pid ${process.pid})`);
  await demonstrate(server.port);
  if (process.argv.includes('--once')) {
    await server.stop();
  } else {
    process.once('SIGINT', () => void server.stop().then(() => process.exit(0)));
    process.once('SIGTERM', () => void server.stop().then(() => process.exit(0)));
  }
}

/** Connects until there is a client on each worker, then has the one on worker 1 message the one on worker 0. */
async function demonstrate(listenPort: number): Promise<void> {
  const byWorker = new Map<number, { ws: WebSocket; fd: number; next: () => Promise<string> }>();
  for (let i = 0; i < 10 && byWorker.size < 2; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${listenPort}/`);
    const queue: string[] = [];
    const waiting: ((text: string) => void)[] = [];
    ws.on('message', (data: Buffer) => {
      const text = data.toString();
      const wake = waiting.shift();
      if (wake) wake(text);
      else queue.push(text);
    });
    const next = (): Promise<string> =>
      queue.length > 0 ? Promise.resolve(queue.shift()!) : new Promise((resolve) => waiting.push(resolve));
    const greeting = await next();
    const match = /fd (\d+) on worker (\d+)/.exec(greeting)!;
    const worker = Number(match[2]);
    if (byWorker.has(worker)) {
      ws.close();
      continue;
    }
    console.log(`client ${byWorker.size + 1}: ${greeting}`);
    byWorker.set(worker, { ws, fd: Number(match[1]), next });
  }
  const a = byWorker.get(0)!;
  const b = byWorker.get(1)!;
  b.ws.send(`${a.fd} hello from the other worker`);
  console.log(`client on worker 1 got:  ${await b.next()}`);
  console.log(`client on worker 0 got:  ${await a.next()}`);
  a.ws.close();
  b.ws.close();
}
