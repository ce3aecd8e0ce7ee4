/**
 * `parseRequestHead`, the gate of the native fast path. Node is the oracle:
 * every head the parser accepts is also sent over TCP to a real
 * `http.Server`, and its `IncomingMessage` must say the same (method, url,
 * version, headers). Byte sweeps put every byte value at four places of a
 * head. Malformed or unclean heads, each one change away from a clean
 * upgrade, must give null.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { parseRequestHead, type RequestHead } from '../src/protocol/http-head.js';

/** Upper bound for one request to reach Node's parser and be reported. */
const NODE_TIMEOUT = 2000;

/**
 * A real `http.Server` on 127.0.0.1. `parse` sends raw bytes on a fresh
 * connection and resolves with what the server's IncomingMessage says, or a
 * sentence saying why there was none.
 */
class NodeParser {
  private readonly server = http.createServer();
  /** Pending parses by the client's local port (the server socket's remote port). */
  private readonly waiting = new Map<number, (result: RequestHead | string) => void>();

  constructor() {
    this.server.on('request', (req: http.IncomingMessage) => this.settle(req.socket, fields(req)));
    this.server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => this.settle(socket, fields(req)));
    this.server.on('connect', (_req: http.IncomingMessage, socket: net.Socket) => this.settle(socket, "a 'connect' event"));
    this.server.on('clientError', (error: NodeJS.ErrnoException, socket: net.Socket) =>
      this.settle(socket, `a clientError ${error.code}`),
    );
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  parse(bytes: Buffer): Promise<RequestHead | string> {
    const { port } = this.server.address() as net.AddressInfo;
    return new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      const finish = (result: RequestHead | string): void => {
        clearTimeout(timer);
        if (socket.localPort !== undefined) this.waiting.delete(socket.localPort);
        socket.destroy();
        resolve(result);
      };
      const timer = setTimeout(() => finish(`no request within ${NODE_TIMEOUT} ms`), NODE_TIMEOUT);
      socket.on('error', () => {});
      socket.once('connect', () => {
        this.waiting.set(socket.localPort!, finish);
        socket.write(bytes);
      });
      // Node answers some heads itself (400 for HTTP/1.1 without Host) and closes.
      socket.once('close', () => finish('no request: Node closed the connection'));
    });
  }

  private settle(socket: net.Socket, result: RequestHead | string): void {
    const finish = this.waiting.get(socket.remotePort!);
    socket.destroy();
    finish?.(result);
  }
}

function fields(req: http.IncomingMessage): RequestHead {
  return {
    method: req.method!,
    url: req.url!,
    httpVersionMajor: req.httpVersionMajor,
    httpVersionMinor: req.httpVersionMinor,
    headers: req.headers as RequestHead['headers'],
  };
}

/** A head from its lines: CRLF after each, then the blank line. Latin1, so '\xe9' is one byte. */
function head(...lines: string[]): Buffer {
  return Buffer.from(lines.map((line) => line + '\r\n').join('') + '\r\n', 'latin1');
}

/** `count` distinct short field lines: 1000 of them stay well under http.maxHeaderSize. */
function fieldLines(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `F${i}: ${i % 10}`);
}

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** What Chromium sends for `new WebSocket('ws://localhost:8080/chat?room=lobby')`. */
const CHROMIUM_LINES = [
  'GET /chat?room=lobby HTTP/1.1',
  'Host: localhost:8080',
  'Connection: Upgrade',
  'Pragma: no-cache',
  'Cache-Control: no-cache',
  'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
  'Upgrade: websocket',
  'Origin: http://localhost:8080',
  'Sec-WebSocket-Version: 13',
  'Accept-Encoding: gzip, deflate, br, zstd',
  'Accept-Language: en-US,en;q=0.9',
  `Sec-WebSocket-Key: ${KEY}`,
  'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits',
];

/** Heads the parser must accept, each checked against Node on the wire. */
const VALID: [name: string, bytes: Buffer][] = [
  [
    'a ws client upgrade',
    head(
      'GET /chat HTTP/1.1',
      'Sec-WebSocket-Version: 13',
      `Sec-WebSocket-Key: ${KEY}`,
      'Connection: Upgrade',
      'Upgrade: websocket',
      'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits',
      'Host: 127.0.0.1:8080',
    ),
  ],
  ['a Chromium upgrade', head(...CHROMIUM_LINES)],
  ['a single Set-Cookie (an array of one)', head('GET / HTTP/1.1', 'Host: a', 'Set-Cookie: a=1')],
  ['repeated Set-Cookie (an array)', head('GET / HTTP/1.1', 'Host: a', 'Set-Cookie: a=1', 'set-cookie: b=2', 'SET-COOKIE: c=3')],
  ['repeated Cookie (joined with "; ")', head('GET / HTTP/1.1', 'Cookie: a=1', 'Host: a', 'cookie: b=2; c=3', 'Cookie: d=4')],
  [
    'repeated fields of which Node keeps the first value',
    head(
      'GET / HTTP/1.1',
      'Host: a',
      ...[
        'Content-Type',
        'User-Agent',
        'Referer',
        'Authorization',
        'Proxy-Authorization',
        'If-Modified-Since',
        'If-Unmodified-Since',
        'From',
        'Location',
        'Max-Forwards',
        'Retry-After',
        'ETag',
        'Last-Modified',
        'Server',
        'Age',
        'Expires',
      ].flatMap((name) => [`${name}: first`, `${name.toLowerCase()}: second`]),
    ),
  ],
  [
    'repeated other fields (joined with ", ")',
    head('GET / HTTP/1.1', 'Host: a', 'Accept: text/html', 'X-Custom: 1', 'accept: */*', 'X-CUSTOM: 2', 'x-custom: 3', 'Sec-WebSocket-Protocol: chat', 'Sec-WebSocket-Protocol: superchat'),
  ],
  ['repeated fields with empty values', head('GET / HTTP/1.1', 'Host: a', 'X-E:', 'X-E: b', 'X-E:', 'Cookie:', 'Cookie: b', 'Set-Cookie:', 'User-Agent:', 'User-Agent: b')],
  ['an empty value and a value of only whitespace', head('GET / HTTP/1.1', 'Host: a', 'X-Empty:', 'X-Blank: \t  \t')],
  ['OWS around values, whitespace inside kept', head('GET / HTTP/1.1', 'Host:a', 'X-A: \t a  b\tc \t ', 'X-B:\tx', 'X-C:y  ')],
  ['obs-text in a value, decoded as latin1', head('GET / HTTP/1.1', 'Host: a', 'X-Latin1: caf\xe9 \x80\xff', 'X-Only: \xa0')],
  ['an empty Host', head('GET / HTTP/1.1', 'Host:')],
  ['HTTP/1.0 without Host', head('GET /chat HTTP/1.0', 'Connection: Upgrade', 'Upgrade: websocket')],
  ['an absolute-form target', head('GET http://example.com:8080/chat?room=1 HTTP/1.1', 'Host: example.com:8080')],
  ['an absolute-form ws target with userinfo and an IPv6 literal', head("GET ws://u:p@[::1]:9000/a;b?c=d&e=f#g HTTP/1.1", 'Host: [::1]:9000')],
  ['an absolute-form target without a path', head('GET https://example.com HTTP/1.1', 'Host: example.com')],
  ['an absolute-form target with a query but no path', head('GET http://example.com?x=1 HTTP/1.1', 'Host: example.com')],
  ['a query, escapes and a fragment', head('GET /chat/%20x;p?room=1&name=a%2Fb+c/?d#frag HTTP/1.1', 'Host: a')],
  ['visible ASCII that RFC 3986 would escape', head('GET /p|{}^"<>\\`[]?q={"a":1}|x HTTP/1.1', 'Host: a')],
  ['Content-Length: 0 with OWS', head('GET /chat HTTP/1.1', 'Host: a', 'Connection: Upgrade', 'Upgrade: websocket', 'Content-Length:  0 ')],
  ['a plain POST without a body', head('POST /form HTTP/1.1', 'Host: a', 'Content-Length: 0', 'Content-Type: text/plain')],
  ['a method with a hyphen', head('M-SEARCH / HTTP/1.1', 'Host: a')],
  ['names Object.prototype has', head('GET / HTTP/1.1', 'Host: a', 'Constructor: a', 'constructor: b', 'toString: c', 'hasOwnProperty: d', 'valueOf: e')],
  ['exactly 1000 field lines', head('GET / HTTP/1.1', 'Host: a', ...fieldLines(999))],
  [
    'exactly http.maxHeaderSize bytes',
    (() => {
      const short = head('GET / HTTP/1.1', 'Host: a', 'X-Pad: ');
      return head('GET / HTTP/1.1', 'Host: a', 'X-Pad: ' + 'p'.repeat(http.maxHeaderSize - short.length));
    })(),
  ],
];

/** A clean upgrade head; each refusal below changes one thing in it. */
const BASE = head(
  'GET /chat HTTP/1.1',
  'Host: example.com',
  'Upgrade: websocket',
  'Connection: Upgrade',
  `Sec-WebSocket-Key: ${KEY}`,
  'Sec-WebSocket-Version: 13',
).toString('latin1');

/** BASE with `from` (which must occur in it) replaced by `to`. */
function broken(from: string, to: string): Buffer {
  if (!BASE.includes(from)) throw new Error(`fixture error: ${JSON.stringify(from)} is not in BASE`);
  return Buffer.from(BASE.replace(from, to), 'latin1');
}

/** Heads the parser must refuse. */
const INVALID: [name: string, bytes: Buffer][] = [
  ['an empty buffer', Buffer.alloc(0)],
  ['a head without the final CRLFCRLF', Buffer.from(BASE.slice(0, -2), 'latin1')],
  ['a head cut inside the final CRLFCRLF', Buffer.from(BASE.slice(0, -1), 'latin1')],
  ['a head ending with LFLF', broken('13\r\n\r\n', '13\n\n')],
  ['bytes after the final CRLFCRLF', Buffer.from(BASE + 'x', 'latin1')],
  ['a pipelined second request', Buffer.from(BASE + BASE, 'latin1')],
  ['a blank line before the end', broken('Host: example.com\r\n', 'Host: example.com\r\n\r\n')],
  ['a CRLF before the request line', Buffer.from('\r\n' + BASE, 'latin1')],
  ['a bare LF ending the request line', broken('HTTP/1.1\r\n', 'HTTP/1.1\n')],
  ['a bare LF ending a field line', broken('Host: example.com\r\n', 'Host: example.com\n')],
  ['a bare LF inside a field value', broken('Upgrade: websocket', 'Upgrade: web\nsocket')],
  ['a bare CR ending a field line', broken('Upgrade: websocket\r\n', 'Upgrade: websocket\r')],
  ['a bare CR inside a field value', broken('Upgrade: websocket', 'Upgrade: web\rsocket')],
  ['a bare CR inside the request line', broken('GET /chat', 'GET /ch\rat')],
  ['an obs-fold line (SP)', broken('Upgrade: websocket\r\n', 'Upgrade: websocket\r\n  , h2c\r\n')],
  ['an obs-fold line (HTAB)', broken('Upgrade: websocket\r\n', 'Upgrade: websocket\r\n\t, h2c\r\n')],
  ['a space before the colon', broken('Upgrade: ', 'Upgrade : ')],
  ['a tab before the colon', broken('Upgrade: ', 'Upgrade\t: ')],
  ['a field line without a colon', broken('Upgrade: websocket', 'Upgrade websocket')],
  ['an empty field name', broken('Upgrade: websocket\r\n', 'Upgrade: websocket\r\n: x\r\n')],
  ['a non-token byte in a field name', broken('Upgrade: ', 'Up(grade: ')],
  ['a NUL in a field value', broken('Upgrade: websocket', 'Upgrade: web\x00socket')],
  ['a control character in a field value', broken('Upgrade: websocket', 'Upgrade: web\x01socket')],
  ['a vertical tab in a field value', broken('Upgrade: websocket', 'Upgrade: web\x0bsocket')],
  ['DEL in a field value', broken('Upgrade: websocket', 'Upgrade: web\x7fsocket')],
  ['a non-token method', broken('GET ', 'G(T ')],
  ['a method Node does not know', broken('GET ', 'FETCH ')],
  ['a lowercase method', broken('GET ', 'get ')],
  ['CONNECT', broken('GET /chat', 'CONNECT example.com:443')],
  ['no method', broken('GET /chat', '/chat')],
  ['two spaces after the method', broken('GET /chat', 'GET  /chat')],
  ['an empty target', broken('GET /chat HTTP', 'GET  HTTP')],
  ['a space in the target', broken('/chat', '/ch at')],
  ['a tab in the target', broken('/chat', '/ch\tat')],
  ['a control character in the target', broken('/chat', '/ch\x01at')],
  ['DEL in the target', broken('/chat', '/ch\x7fat')],
  ['a byte >= 0x80 in the target', broken('/chat', '/ch\xe9at')],
  ['an asterisk-form target', broken('/chat', '*')],
  ['a target that is neither origin- nor absolute-form', broken('/chat', 'chat')],
  ['a target starting with "?"', broken('/chat', '?chat')],
  ['an authority-form target', broken('/chat', 'example.com:80')],
  ['a scheme with a digit (llhttp refuses it)', broken('/chat', 'h2://example.com/chat')],
  ['a scheme without "//"', broken('/chat', 'http:/chat')],
  ['"{" in an authority (llhttp refuses it)', broken('/chat', 'http://exa{mple.com/chat')],
  ['"#" in an authority (llhttp refuses it)', broken('/chat', 'http://example.com#chat')],
  ['the version "HTTP/1"', broken('HTTP/1.1', 'HTTP/1')],
  ['the version "HTTP/x.y"', broken('HTTP/1.1', 'HTTP/x.y')],
  ['the version "HTTPS/1.1"', broken('HTTP/1.1', 'HTTPS/1.1')],
  ['the version "http/1.1"', broken('HTTP/1.1', 'http/1.1')],
  ['the version "HTTP/1.2" (llhttp refuses it)', broken('HTTP/1.1', 'HTTP/1.2')],
  ['the version "HTTP/2.0"', broken('HTTP/1.1', 'HTTP/2.0')],
  ['the version "HTTP/0.9"', broken('HTTP/1.1', 'HTTP/0.9')],
  ['the version "HTTP/11.1"', broken('HTTP/1.1', 'HTTP/11.1')],
  ['a space after the version', broken('HTTP/1.1\r\n', 'HTTP/1.1 \r\n')],
  ['a Transfer-Encoding', broken('Upgrade: websocket', 'Transfer-Encoding: chunked\r\nUpgrade: websocket')],
  ['an empty Transfer-Encoding', broken('Upgrade: websocket', 'Transfer-Encoding:\r\nUpgrade: websocket')],
  ['Content-Length: 5', broken('Upgrade: websocket', 'Content-Length: 5\r\nUpgrade: websocket')],
  ['Content-Length: 00', broken('Upgrade: websocket', 'Content-Length: 00\r\nUpgrade: websocket')],
  ['an empty Content-Length', broken('Upgrade: websocket', 'Content-Length:\r\nUpgrade: websocket')],
  ['Content-Length: 0 twice (llhttp refuses it)', broken('Upgrade: websocket', 'Content-Length: 0\r\ncontent-length: 0\r\nUpgrade: websocket')],
  ['an HTTP/1.1 request without Host (Node answers 400)', broken('Host: example.com\r\n', '')],
  ['two Host lines', broken('Host: example.com\r\n', 'Host: example.com\r\nhost: example.org\r\n')],
  ['a __proto__ field (Node drops it)', broken('Upgrade: websocket', '__proto__: x\r\nUpgrade: websocket')],
  ['more than 1000 field lines (Node drops the rest)', head('GET / HTTP/1.1', 'Host: a', ...fieldLines(1000))],
  [
    'one byte more than http.maxHeaderSize',
    (() => {
      const short = head('GET / HTTP/1.1', 'Host: a', 'X-Pad: ');
      return head('GET / HTTP/1.1', 'Host: a', 'X-Pad: ' + 'p'.repeat(http.maxHeaderSize - short.length + 1));
    })(),
  ],
];

/** RFC 9110 5.6.2 tchar. */
const TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const isTchar = (byte: number): boolean => TCHARS.includes(String.fromCharCode(byte));
const isVisible = (byte: number): boolean => byte >= 0x21 && byte <= 0x7e;

/** Places of a head where every byte value is tried, and which bytes should be taken there. */
const SWEEPS: [place: string, build: (byte: string) => Buffer, accepted: (byte: number) => boolean][] = [
  ['the path', (b) => head(`GET /a${b}b HTTP/1.1`, 'Host: a'), isVisible],
  [
    'an absolute-form authority',
    (b) => head(`GET http://a${b}b/ HTTP/1.1`, 'Host: a'),
    // RFC 3986 3.2 authority characters, plus "/" and "?" which end it.
    (byte) => /[-A-Za-z0-9._~%!$&'()*+,;=:@[\]/?]/.test(String.fromCharCode(byte)),
  ],
  ['the start of a field name', (b) => head('GET / HTTP/1.1', 'Host: a', `${b}x: 1`), isTchar],
  [
    'the middle of a field value',
    (b) => head('GET / HTTP/1.1', 'Host: a', `X-Sweep: a${b}b`),
    // RFC 9110 5.5: VCHAR, obs-text, SP and HTAB.
    (byte) => byte === 0x09 || (byte >= 0x20 && byte !== 0x7f),
  ],
];

describe('parseRequestHead', () => {
  const node = new NodeParser();
  before(() => node.listen());
  after(() => node.close());

  test('lowercases names, trims OWS and combines repeats into the shape of IncomingMessage.headers', () => {
    const parsed = parseRequestHead(
      head('GET /x?y HTTP/1.1', 'Host: a', 'X-A: \t1 ', 'x-a: 2', 'Cookie: c=1', 'COOKIE: d=2', 'Set-Cookie: s', 'User-Agent: u1', 'user-agent: u2'),
    );
    assert.deepEqual(parsed, {
      method: 'GET',
      url: '/x?y',
      httpVersionMajor: 1,
      httpVersionMinor: 1,
      headers: { host: 'a', 'x-a': '1, 2', cookie: 'c=1; d=2', 'set-cookie': ['s'], 'user-agent': 'u1' },
    });
  });

  for (const [name, bytes] of VALID) {
    test(`parses ${name} exactly as Node's http.Server does`, async () => {
      const parsed = parseRequestHead(bytes);
      assert.notEqual(parsed, null, 'the parser refused it');
      assert.deepEqual(parsed, await node.parse(bytes));
    });
  }

  test('the clean upgrade the refusals are made from parses', () => {
    assert.notEqual(parseRequestHead(Buffer.from(BASE, 'latin1')), null);
  });

  for (const [name, bytes] of INVALID) {
    test(`returns null for ${name}`, () => {
      assert.equal(parseRequestHead(bytes), null);
    });
  }

  for (const [place, build, accepted] of SWEEPS) {
    test(`takes at ${place} exactly the bytes the grammar allows, each parsed as Node parses it`, async () => {
      const taken: Buffer[] = [];
      for (let byte = 0; byte < 256; byte++) {
        const bytes = build(String.fromCharCode(byte));
        const parsed = parseRequestHead(bytes);
        assert.equal(parsed !== null, accepted(byte), `byte 0x${byte.toString(16).padStart(2, '0')}`);
        if (parsed !== null) taken.push(bytes);
      }
      // A few dozen connections at a time: quick, and far below the listen backlog.
      for (let i = 0; i < taken.length; i += 32) {
        const batch = taken.slice(i, i + 32);
        const results = await Promise.all(batch.map((bytes) => node.parse(bytes)));
        batch.forEach((bytes, j) => assert.deepEqual(parseRequestHead(bytes), results[j], bytes.toString('latin1')));
      }
    });
  }
});
