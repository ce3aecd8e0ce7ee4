/**
 * wavecast's published types as a consumer sees them: this file imports
 * `wavecast` (the package's own `exports`, so the built `.d.ts` files) and
 * is checked by `tsc --noEmit` from `test/types.test.ts`. Lines that must
 * not compile carry `@ts-expect-error`: if one compiled, tsc would fail on
 * the unused directive. Not part of the main build (tsconfig excludes it).
 */
import http from 'node:http';
import {
  OPCODE,
  Server,
  Frame,
  HandshakeResponse,
  UpgradeRequest,
  WebSocketError,
  RedisAdapter,
  type BinaryFrame,
  type BroadcastOptions,
  type ClientInfo,
  type PublishOptions,
  type PushData,
  type ServerEvents,
  type ServerOptions,
  type ServerStats,
  type StopOptions,
  type TextFrame,
  type PerMessageDeflateOptions,
  type Adapter,
  type Backend,
} from 'wavecast';

interface User {
  name: string;
}

const options: ServerOptions = { port: 0, path: '/chat', perMessageDeflate: { threshold: 0 } satisfies PerMessageDeflateOptions };
const server = new Server<User>(options);

// --- Frame narrows on its opcode -------------------------------------------------

server.on('message', (frame) => {
  if (frame.opcode === OPCODE.TEXT) {
    const text: string = frame.data;
    void text;
  } else {
    const bytes: Buffer = frame.data;
    void bytes;
  }
  // @ts-expect-error: before narrowing, data may be a Buffer
  const unknownKind: string = frame.data;
  void unknownKind;
  switch (frame.opcode) {
    case OPCODE.BINARY:
      frame.data.readUInt8(0);
      break;
    case OPCODE.TEXT:
      frame.data.toUpperCase();
      break;
  }
});

function relay(frame: Frame): void {
  if (frame.opcode === OPCODE.BINARY) {
    const bytes: Buffer = frame.data;
    void bytes;
    // @ts-expect-error: a binary frame's data is not a string
    const text: string = frame.data;
    void text;
  }
  server.push(frame.fd, frame);
}
void relay;
const text: TextFrame | BinaryFrame = new Frame(1, OPCODE.TEXT, Buffer.from('hi'));
const asPushData: PushData = text;
void asPushData;
const maybe: unknown = text;
if (maybe instanceof Frame) server.broadcast(maybe);

// --- every type of a public signature is exported ---------------------------------

const broadcastOptions: BroadcastOptions = { except: [1, 2], compress: false, local: true };
const publishOptions: PublishOptions = { except: 1, opcode: OPCODE.BINARY };
const stopOptions: StopOptions = { timeout: 100 };
server.broadcast('hi', broadcastOptions);
server.publish('room', 'hi', publishOptions);
void server.stop(stopOptions);
server.on('handshake', (request: UpgradeRequest<User>, response: HandshakeResponse<User>) => {
  response.data = { name: request.query.get('name') ?? 'anonymous' };
  // @ts-expect-error: data is typed by the server's Data parameter
  response.data = { nickname: 'x' };
});
const info: ClientInfo | undefined = server.getClientInfo(1);
const stats: ServerStats = server.stats();
const backend: Backend = stats.backend;
void info;
void backend;
const closeEvent: ServerEvents<User>['close'] = [1, 1000, '', true];
void closeEvent;
const user: User | undefined = server.getData(1);
void user;
server.on('error', (error, fd) => {
  if (error instanceof WebSocketError) console.log(error.code, error.closeCode, fd);
});
const adapter: Adapter = new RedisAdapter({ port: 6379 });
void adapter;
new Server({ server: http.createServer() });

// --- internals are not part of the published types --------------------------------

// @ts-expect-error: the connection callbacks are internal
server.onMessage;
// @ts-expect-error: the connection callbacks are internal
server.onClosed;
// @ts-expect-error: the write batcher is internal
server.batcher;
// @ts-expect-error: backpressure settings are read from the options, not the server
server.maxBackpressure;
// @ts-expect-error: a handshake's rejection is internal
new HandshakeResponse(new UpgradeRequest(1, '/', {}, '', 0, [], '', undefined)).rejection;

// --- mistakes the compiler catches ------------------------------------------------

// @ts-expect-error: an unknown option
new Server({ maxPayLoad: 1 });
// @ts-expect-error: port is a number
new Server({ port: '0' });
// @ts-expect-error: broadcast takes no topic option
server.broadcast('x', { topic: 'room' });
// @ts-expect-error: push takes an fd first
server.push('hello');
// @ts-expect-error: no such event
server.on('connection', () => {});
