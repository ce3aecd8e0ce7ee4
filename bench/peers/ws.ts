/**
 * ws peer. Run with `WS_NO_BUFFER_UTIL=1 WS_NO_UTF_8_VALIDATE=1` for plain ws,
 * without them for ws with bufferutil (ws 8 on Node 20 validates UTF-8 with
 * `buffer.isUtf8` either way, so utf-8-validate is not loaded).
 * Broadcast is ws's idiom: a loop of `send` over the receivers.
 *
 * With `BENCH_DEFLATE=1`, `perMessageDeflate: true`: ws's defaults (threshold
 * 1024 bytes, zlib level 6, 10 zlib jobs at once). ws has no shared
 * compression: each `send` compresses the message again for its receiver.
 */
import { WebSocketServer } from 'ws';
import type { WebSocket, RawData } from 'ws';
import { deflate, onStop, parseArgs, ready } from './common.js';

const { scenario, port } = parseArgs();
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  maxPayload: 2 * 1024 * 1024,
  clientTracking: false,
  perMessageDeflate: deflate,
});
const receivers = new Set<WebSocket>();

wss.on('connection', (socket, request) => {
  if (scenario === 'echo') {
    socket.on('message', (data: RawData, isBinary: boolean) => {
      socket.send(data, { binary: isBinary });
    });
    return;
  }
  if (request.url === '/recv') {
    receivers.add(socket);
    socket.on('close', () => receivers.delete(socket));
  } else {
    socket.on('message', (data: RawData, isBinary: boolean) => {
      for (const r of receivers) r.send(data, { binary: isBinary });
    });
  }
});

wss.on('listening', () => {
  const address = wss.address();
  ready(typeof address === 'object' && address !== null ? address.port : port, {
    peer: 'ws',
    bufferutil: !process.env.WS_NO_BUFFER_UTIL,
    perMessageDeflate: deflate,
  });
});
onStop(() => new Promise<void>((resolve) => wss.close(() => resolve())));
