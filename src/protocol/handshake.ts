/**
 * The opening handshake, server side (RFC 6455 4.2): validating an upgrade
 * request, computing `Sec-WebSocket-Accept`, negotiating the subprotocol and
 * writing the HTTP responses. Pure functions over parsed request fields; the
 * server does the I/O.
 */
import { Buffer } from 'node:buffer';
import { hash } from 'node:crypto';
import { STATUS_CODES, validateHeaderName, validateHeaderValue, type OutgoingHttpHeaders } from 'node:http';

/** The GUID every accept key is derived with (RFC 6455 1.3). */
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Base64 of exactly 16 bytes (RFC 6455 4.2.1 item 5). */
const KEY = /^[+/0-9A-Za-z]{21}[AQgw]==$/;

/** An HTTP token (RFC 9110 5.6.2), the grammar of a subprotocol name. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The fields of a parsed request that the handshake looks at. */
export interface UpgradeRequestLike {
  method?: string | undefined;
  httpVersionMajor: number;
  httpVersionMinor: number;
  headers: Record<string, string | string[] | undefined>;
}

/** Result of checking an upgrade request. */
export type UpgradeCheck =
  | { ok: true; key: string; protocols: string[] }
  | { ok: false; status: number; message: string; headers?: OutgoingHttpHeaders };

function header(req: UpgradeRequestLike, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/** Whether a comma-separated header value lists `token` (ASCII case-insensitive). */
export function hasToken(value: string | undefined, token: string): boolean {
  if (value === undefined) return false;
  for (const part of value.split(',')) if (part.trim().toLowerCase() === token) return true;
  return false;
}

/**
 * Parses `Sec-WebSocket-Protocol`: a list of distinct tokens. Returns null when
 * the header is malformed (an empty or non-token element, or a duplicate).
 */
export function parseProtocols(value: string | undefined): string[] | null {
  if (value === undefined) return [];
  const protocols: string[] = [];
  for (const part of value.split(',')) {
    const name = part.trim();
    if (!TOKEN.test(name) || protocols.includes(name)) return null;
    protocols.push(name);
  }
  return protocols;
}

/** Checks an upgrade request against RFC 6455 4.2.1; failures carry the HTTP status to answer. */
export function checkUpgrade(req: UpgradeRequestLike): UpgradeCheck {
  const bad = (message: string): UpgradeCheck => ({ ok: false, status: 400, message });
  if (req.method !== 'GET') return bad('the method must be GET');
  if (req.httpVersionMajor < 1 || (req.httpVersionMajor === 1 && req.httpVersionMinor < 1)) {
    return bad('HTTP/1.1 or later is required');
  }
  if (!header(req, 'host')) return bad('missing Host header');
  if (!hasToken(header(req, 'upgrade'), 'websocket')) return bad('the Upgrade header must be "websocket"');
  if (!hasToken(header(req, 'connection'), 'upgrade')) return bad('the Connection header must contain "Upgrade"');
  const key = header(req, 'sec-websocket-key')?.trim();
  if (key === undefined || !KEY.test(key)) return bad('Sec-WebSocket-Key must be base64 of 16 bytes');
  // RFC 6455 4.2.2: an unsupported version gets 426 and the versions we speak.
  if (header(req, 'sec-websocket-version')?.trim() !== '13') {
    return {
      ok: false,
      status: 426,
      message: 'unsupported WebSocket version',
      headers: { 'Sec-WebSocket-Version': '13' },
    };
  }
  const protocols = parseProtocols(header(req, 'sec-websocket-protocol'));
  if (protocols === null) return bad('malformed Sec-WebSocket-Protocol header');
  return { ok: true, key, protocols };
}

/** `Sec-WebSocket-Accept` for a client key (RFC 6455 4.2.2 item 5.4). */
export function acceptKey(key: string): string {
  // One-shot: no Hash object per handshake (a third of createHash's time).
  return hash('sha1', key + GUID, 'base64');
}

function headerLines(headers: OutgoingHttpHeaders | undefined): string {
  if (headers === undefined) return '';
  let lines = '';
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    validateHeaderName(name);
    for (const item of Array.isArray(value) ? value : [value]) {
      const one = String(item);
      validateHeaderValue(name, one);
      lines += `${name}: ${one}\r\n`;
    }
  }
  return lines;
}

/**
 * The 101 response, with the agreed extensions (a `Sec-WebSocket-Extensions`
 * value) if any. Throws `TypeError` on an invalid extra header (a hook's
 * mistake), before anything is written.
 */
export function acceptResponse(key: string, protocol?: string, headers?: OutgoingHttpHeaders, extensions?: string): string {
  return (
    'HTTP/1.1 101 Switching Protocols\r\n' +
    'Upgrade: websocket\r\n' +
    'Connection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n` +
    (protocol ? `Sec-WebSocket-Protocol: ${protocol}\r\n` : '') +
    (extensions ? `Sec-WebSocket-Extensions: ${extensions}\r\n` : '') +
    headerLines(headers) +
    '\r\n'
  );
}

/** A complete refusal: status line, headers, a short text body; the connection then closes. */
export function rejectResponse(status: number, body?: string, headers?: OutgoingHttpHeaders): string {
  const text = body ?? STATUS_CODES[status] ?? '';
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n` +
    'Connection: close\r\n' +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(text)}\r\n` +
    headerLines(headers) +
    '\r\n' +
    text
  );
}
