/**
 * A strict parser for an HTTP/1.x request head (RFC 9112), the gate of the
 * native fast path: the C++ transport hands over the bytes up to the first
 * CRLFCRLF and this decides whether JS may take the request itself.
 *
 * The contract is one-sided. A non-null result must equal what Node's own
 * `http.Server` would have put in the `IncomingMessage` (method, url, version,
 * headers), checked on the wire in test/http-head.test.ts. Null is always safe:
 * the bytes go to Node, which parses and answers them itself. So anything odd
 * gives null, including requests that are valid HTTP but that Node's parser
 * (llhttp) refuses or rewrites, and a rule here never has to guess.
 *
 * Speed: one latin1 decode, then `indexOf` and `charCodeAt` over the string
 * with byte-class tables; no regular expressions, no closures per field.
 */
import { METHODS, maxHeaderSize } from 'node:http';

/** A request head, with the fields `IncomingMessage` has under the same names. */
export interface RequestHead {
  method: string;
  /** The request-target as sent (origin-form or absolute-form). */
  url: string;
  httpVersionMajor: number;
  httpVersionMinor: number;
  /** Lowercased names; repeated fields combined as `IncomingMessage.headers` combines them. */
  headers: Record<string, string | string[]>;
}

type FieldMap = RequestHead['headers'];

const HTAB = 0x09;
const SP = 0x20;
const SLASH = 0x2f;
const COLON = 0x3a;
const QUESTION = 0x3f;

/** Byte classes, one bit each in `CLASS`. */
const TCHAR = 1;
const TARGET = 2;
const AUTHORITY = 4;
const FIELD_VALUE = 8;
const ALPHA = 16;

/** Class bits of every latin1 code unit (the decoded head has no other). */
const CLASS = new Uint8Array(256);
const mark = (chars: string, bit: number): void => {
  for (let i = 0; i < chars.length; i++) CLASS[chars.charCodeAt(i)] |= bit;
};
const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
// RFC 9110 5.6.2: tchar.
mark("!#$%&'*+-.^_`|~0123456789" + LETTERS, TCHAR);
mark(LETTERS, ALPHA);
// RFC 3986 3.2: unreserved / pct-encoded / sub-delims / ":" / "@", and "[ ]" for
// IP literals. llhttp refuses `"#<>\^`{|}` in an authority; none of them is here.
mark("-._~%!$&'()*+,;=:@[]0123456789" + LETTERS, AUTHORITY);
for (let code = 0x21; code < 0x7f; code++) CLASS[code] |= TARGET | FIELD_VALUE;
// RFC 9110 5.5: field-vchar = VCHAR / obs-text, with SP and HTAB inside a value.
for (let code = 0x80; code < 0x100; code++) CLASS[code] |= FIELD_VALUE;
CLASS[SP] |= FIELD_VALUE;
CLASS[HTAB] |= FIELD_VALUE;

const isOws = (code: number): boolean => code === SP || code === HTAB;

/**
 * Methods llhttp knows (`http.METHODS`); Node answers 400 to any other token,
 * `get` included. CONNECT is left out: Node routes it to `'connect'`, not
 * `'request'` or `'upgrade'`, and its target is authority-form.
 */
const KNOWN_METHODS = new Set(METHODS.filter((method) => method !== 'CONNECT'));

/**
 * By default `IncomingMessage.headers` keeps only the first 1000 field lines
 * (the parser's `maxHeaderPairs` is 2000 names and values) and drops the rest
 * silently; a longer head would not give the same headers.
 */
const MAX_FIELD_LINES = 1000;

/**
 * Fields of which `IncomingMessage.headers` keeps the first value and drops
 * the repeats (`matchKnownFields` in Node's lib/_http_incoming.js).
 */
const FIRST_VALUE_WINS = new Set([
  'host',
  'content-type',
  'content-length',
  'user-agent',
  'referer',
  'authorization',
  'proxy-authorization',
  'if-modified-since',
  'if-unmodified-since',
  'from',
  'location',
  'max-forwards',
  'retry-after',
  'etag',
  'last-modified',
  'server',
  'age',
  'expires',
]);

/** "HTTP/1.x", the only versions taken (llhttp refuses 1.2 to 1.9; 0.9 and 2.0 are no upgrade). */
const VERSION_PREFIX = 'HTTP/1.';
const VERSION_LENGTH = VERSION_PREFIX.length + 1;

/**
 * Parses `head` (bytes up to and including the first CRLFCRLF). Returns null
 * unless it is a well-formed request head without a body, which Node 20's
 * `http.Server` (default options) would parse to the same method, url,
 * version and headers.
 *
 * Null as well, because Node would answer or read the request differently:
 * a head longer than `http.maxHeaderSize` (Node may answer 431), more than
 * 1000 field lines, a method llhttp does not know, CONNECT, HTTP versions
 * other than 1.0 and 1.1, a target neither origin-form nor absolute-form, a
 * `__proto__` field (Node drops it). An `http.Server` created with a smaller
 * `maxHeaderSize` or `maxHeadersCount`, or with `joinDuplicateHeaders`, would
 * need its own check.
 */
export function parseRequestHead(head: Buffer): RequestHead | null {
  const length = head.length;
  if (length > maxHeaderSize || !endsWithBlankLine(head)) return null;
  return parseRequestText(head.toString('latin1'));
}

/** {@link parseRequestHead} of a head already read as latin1 text (its length and blank line checked). */
export function parseRequestText(text: string): RequestHead | null {
  const length = text.length;
  const lineEnd = text.indexOf('\r\n');
  const request = parseRequestLine(text, lineEnd);
  // The field lines run up to the blank line, the last two bytes.
  if (request === null || !parseFieldLines(text, lineEnd + 2, length - 2, request.headers)) return null;
  // RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host (Node does).
  if (request.httpVersionMinor === 1 && request.headers['host'] === undefined) return null;
  return request;
}

/** Whether the head ends with CRLFCRLF: the fast path's framing, and no body bytes after it. */
function endsWithBlankLine(head: Buffer): boolean {
  const n = head.length;
  return n >= 4 && head[n - 4] === 0x0d && head[n - 3] === 0x0a && head[n - 2] === 0x0d && head[n - 1] === 0x0a;
}

/**
 * RFC 9112 3: `method SP request-target SP HTTP-version`, exactly one SP
 * each (llhttp tolerates more; a clean client never sends them). `end` is
 * the index of the line's CRLF.
 */
function parseRequestLine(text: string, end: number): RequestHead | null {
  const methodEnd = text.indexOf(' ');
  if (methodEnd <= 0 || methodEnd >= end) return null;
  const method = text.slice(0, methodEnd);
  if (!KNOWN_METHODS.has(method)) return null;
  const targetEnd = end - VERSION_LENGTH - 1;
  if (targetEnd <= methodEnd + 1 || text.charCodeAt(targetEnd) !== SP) return null;
  if (!text.startsWith(VERSION_PREFIX, targetEnd + 1)) return null;
  const minor = text.charCodeAt(end - 1) - 0x30;
  if (minor !== 0 && minor !== 1) return null;
  if (!isRequestTarget(text, methodEnd + 1, targetEnd)) return null;
  return { method, url: text.slice(methodEnd + 1, targetEnd), httpVersionMajor: 1, httpVersionMinor: minor, headers: {} };
}

/**
 * RFC 9112 3.2: origin-form (`/path?query`) or absolute-form
 * (`scheme://authority/path?query`), visible ASCII only. A scheme is letters
 * only, as llhttp wants (RFC 3986 would also allow digits, `+ - .`).
 * Asterisk-form is for OPTIONS and authority-form for CONNECT: neither is
 * taken. `#` passes after the authority, as Node keeps it in `url`.
 */
function isRequestTarget(text: string, start: number, end: number): boolean {
  if (text.charCodeAt(start) === SLASH) return allOfClass(text, start + 1, end, TARGET);
  let pos = start;
  while (pos < end && (CLASS[text.charCodeAt(pos)] & ALPHA) !== 0) pos++;
  if (pos === start || pos + 3 > end || !text.startsWith('://', pos)) return false;
  pos += 3;
  while (pos < end && (CLASS[text.charCodeAt(pos)] & AUTHORITY) !== 0) pos++;
  if (pos < end && text.charCodeAt(pos) !== SLASH && text.charCodeAt(pos) !== QUESTION) return false;
  return allOfClass(text, pos, end, TARGET);
}

function allOfClass(text: string, start: number, end: number, bit: number): boolean {
  for (let i = start; i < end; i++) if ((CLASS[text.charCodeAt(i)] & bit) === 0) return false;
  return true;
}

/**
 * The field lines between `start` and `end` (the blank line). Each ends at
 * the next CRLF, so a bare CR or LF stays inside a line, where no byte class
 * allows it; an empty line before `end` (CRLFCRLF then more bytes) fails as a
 * line without a name.
 */
function parseFieldLines(text: string, start: number, end: number, headers: FieldMap): boolean {
  let count = 0;
  for (let pos = start; pos < end; ) {
    if (++count > MAX_FIELD_LINES) return false;
    const lineEnd = text.indexOf('\r\n', pos);
    if (!parseFieldLine(text, pos, lineEnd, headers)) return false;
    pos = lineEnd + 2;
  }
  return true;
}

/**
 * RFC 9112 5: `field-name ":" OWS field-value OWS`. No whitespace before
 * the colon (RFC 9112 5.1: a server MUST reject it) and no obs-fold (a line
 * starting with SP or HTAB has no name here).
 */
function parseFieldLine(text: string, start: number, end: number, headers: FieldMap): boolean {
  let colon = start;
  while (colon < end && (CLASS[text.charCodeAt(colon)] & TCHAR) !== 0) colon++;
  if (colon === start || colon === end || text.charCodeAt(colon) !== COLON) return false;
  let valueStart = colon + 1;
  let valueEnd = end;
  while (valueStart < valueEnd && isOws(text.charCodeAt(valueStart))) valueStart++;
  while (valueEnd > valueStart && isOws(text.charCodeAt(valueEnd - 1))) valueEnd--;
  if (!allOfClass(text, valueStart, valueEnd, FIELD_VALUE)) return false;
  const name = text.slice(start, colon).toLowerCase();
  const value = text.slice(valueStart, valueEnd);
  if (!isCleanField(headers, name, value)) return false;
  addField(headers, name, value);
  return true;
}

/** Whether a field leaves the request clean, given the fields before it. */
function isCleanField(headers: FieldMap, name: string, value: string): boolean {
  switch (name) {
    case 'transfer-encoding':
      // RFC 9112 6.1: a body follows.
      return false;
    case 'content-length':
      // Anything but 0 announces a body; llhttp refuses a repeat, even of the same value.
      return value === '0' && headers[name] === undefined;
    case 'host':
      // RFC 9112 3.2: a server MUST answer 400 to more than one Host line (Node keeps the first).
      return headers[name] === undefined;
    case '__proto__':
      // Node's plain-object assignment drops it; ours would too, but such a request is no browser's.
      return false;
    default:
      return true;
  }
}

/**
 * Adds a field as `IncomingMessage#_addHeaderLine` does: set-cookie always an
 * array, cookie joined with '; ', FIRST_VALUE_WINS fields keep the first
 * value, others joined with ', '. The `typeof` test is Node's too: a name
 * such as `constructor` finds an inherited non-string and is assigned.
 */
function addField(headers: FieldMap, name: string, value: string): void {
  const previous = headers[name];
  if (name === 'set-cookie') {
    if (previous === undefined) headers[name] = [value];
    else (previous as string[]).push(value);
  } else if (FIRST_VALUE_WINS.has(name)) {
    if (previous === undefined) headers[name] = value;
  } else if (typeof previous === 'string') {
    headers[name] = previous + (name === 'cookie' ? '; ' : ', ') + value;
  } else {
    headers[name] = value;
  }
}
