/**
 * wavecast: a WebSocket server for Node.js with Swoole's API.
 *
 * @packageDocumentation
 */
export { Server } from './server.js';
export type { BroadcastOptions, ClientInfo, Presence, PresenceOptions, PublishOptions, PushData, ServerEvents, ServerOptions, ServerStats, StopOptions } from './server-types.js';
export type { Adapter, AdapterHost } from './adapter.js';
export { RedisAdapter } from './redis-adapter.js';
export type { RedisAdapterEvents, RedisAdapterOptions } from './redis-adapter.js';
export { Frame, FrameExpiredError } from './received-frame.js';
export type { BinaryFrame, FrameConstructor, FrameFields, TextFrame } from './received-frame.js';
export type { PerMessageDeflateOptions } from './deflate.js';
export { HandshakeResponse, UpgradeRequest } from './upgrade-request.js';
export { CloseCode, WebSocketError, isValidCloseCode } from './errors.js';
export type { WebSocketErrorCode } from './errors.js';
export * from './protocol/opcode.js';
export { backend, nativeStatus } from './native.js';
export type { Backend, NativeState, NativeStatus } from './native.js';
