/** Frame opcodes (RFC 6455 5.2), as `OPCODE.TEXT` or Swoole's constant names. */
export const OPCODE = {
  CONTINUATION: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
} as const;

/** One of the six defined opcodes. */
export type Opcode = (typeof OPCODE)[keyof typeof OPCODE];

export const WEBSOCKET_OPCODE_CONTINUATION = OPCODE.CONTINUATION;
export const WEBSOCKET_OPCODE_TEXT = OPCODE.TEXT;
export const WEBSOCKET_OPCODE_BINARY = OPCODE.BINARY;
export const WEBSOCKET_OPCODE_CLOSE = OPCODE.CLOSE;
export const WEBSOCKET_OPCODE_PING = OPCODE.PING;
export const WEBSOCKET_OPCODE_PONG = OPCODE.PONG;
