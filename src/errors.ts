/**
 * The one table of WebSocket errors. Each protocol error has a string code and
 * the close code it fails the connection with (RFC 6455 7.4.1); the parser
 * reports a `WebSocketError`, the connection closes with its `closeCode` and
 * `message` as the reason. Bad arguments to the API throw `TypeError` or
 * `RangeError` instead, at once.
 */

/** Close status codes (RFC 6455 7.4.1 and the IANA registry). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  /** Reported, never sent: the close frame had no status code. */
  NO_STATUS: 1005,
  /** Reported, never sent: the connection closed without a close frame. */
  ABNORMAL: 1006,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  MANDATORY_EXTENSION: 1010,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  BAD_GATEWAY: 1014,
} as const;

const TABLE = {
  RSV_BITS_SET: [CloseCode.PROTOCOL_ERROR, 'RSV bits set with no extension negotiated'],
  RSV1_NOT_FIRST: [CloseCode.PROTOCOL_ERROR, 'RSV1 set on a continuation or control frame'],
  RESERVED_OPCODE: [CloseCode.PROTOCOL_ERROR, 'reserved opcode'],
  CONTROL_FRAGMENTED: [CloseCode.PROTOCOL_ERROR, 'fragmented control frame'],
  CONTROL_TOO_LONG: [CloseCode.PROTOCOL_ERROR, 'control frame payload over 125 bytes'],
  UNMASKED_FRAME: [CloseCode.PROTOCOL_ERROR, 'client frame not masked'],
  UNEXPECTED_CONTINUATION: [CloseCode.PROTOCOL_ERROR, 'continuation frame with no message to continue'],
  EXPECTED_CONTINUATION: [CloseCode.PROTOCOL_ERROR, 'new data frame inside a fragmented message'],
  INVALID_LENGTH: [CloseCode.PROTOCOL_ERROR, '64-bit payload length with the top bit set'],
  INVALID_CLOSE_PAYLOAD: [CloseCode.PROTOCOL_ERROR, 'close frame payload of 1 byte'],
  INVALID_CLOSE_CODE: [CloseCode.PROTOCOL_ERROR, 'invalid close code'],
  INVALID_CLOSE_REASON: [CloseCode.INVALID_PAYLOAD, 'close reason is not valid UTF-8'],
  INVALID_UTF8: [CloseCode.INVALID_PAYLOAD, 'text message is not valid UTF-8'],
  MESSAGE_TOO_BIG: [CloseCode.MESSAGE_TOO_BIG, 'message larger than maxPayload'],
  INVALID_COMPRESSED_DATA: [CloseCode.INVALID_PAYLOAD, 'compressed message could not be inflated'],
} as const satisfies Record<string, readonly [number, string]>;

/** The string code of a protocol error. */
export type WebSocketErrorCode = keyof typeof TABLE;

/** A protocol violation by the peer, with the close code it earns. */
export class WebSocketError extends Error {
  override readonly name = 'WebSocketError';
  /** Close status sent to the peer. */
  readonly closeCode: number;

  /**
   * @param offset For `INVALID_UTF8`: where in the message (bytes from its
   *   start, as reassembled) the first invalid byte is; it also goes in the
   *   message, and so in the close reason.
   */
  constructor(
    readonly code: WebSocketErrorCode,
    readonly offset?: number,
  ) {
    const [closeCode, message] = TABLE[code];
    super(offset === undefined ? message : `${message} (byte ${offset})`);
    this.closeCode = closeCode;
  }
}

/**
 * Whether a peer may send this close code (RFC 6455 7.4.1-7.4.2): the defined
 * codes except 1004-1006 and 1015 (reserved, or never on the wire), and the
 * 3000-4999 range for libraries and applications.
 */
export function isValidCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)
  );
}
