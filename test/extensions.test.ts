/**
 * `Sec-WebSocket-Extensions` parsing (RFC 6455 9.1) and the permessage-deflate
 * negotiation matrix (RFC 7692 7.1), without sockets. The same matrix on the
 * wire is in deflate-server.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  negotiateDeflate,
  parseExtensions,
  type DeflateNegotiationConfig,
  type DeflateParams,
} from '../src/protocol/extensions.js';

describe('parseExtensions', () => {
  test('parses several offers with bare, token and quoted parameters', () => {
    assert.deepEqual(
      parseExtensions('permessage-deflate; client_max_window_bits; server_max_window_bits="10" , x-foo;a=b,permessage-deflate'),
      [
        { name: 'permessage-deflate', params: [['client_max_window_bits', true], ['server_max_window_bits', '10']] },
        { name: 'x-foo', params: [['a', 'b']] },
        { name: 'permessage-deflate', params: [] },
      ],
    );
  });

  test('allows whitespace around separators and ignores empty list elements', () => {
    assert.deepEqual(parseExtensions(' \tfoo ;\tbar = 1 ;baz , , '), [{ name: 'foo', params: [['bar', '1'], ['baz', true]] }]);
    assert.deepEqual(parseExtensions(''), []);
    assert.deepEqual(parseExtensions(' , '), []);
  });

  test('unescapes quoted values', () => {
    assert.deepEqual(parseExtensions('foo; a="\\1\\0"'), [{ name: 'foo', params: [['a', '10']] }]);
  });

  test('keeps duplicate parameters so the negotiation can decline them', () => {
    assert.deepEqual(parseExtensions('foo; a; a'), [{ name: 'foo', params: [['a', true], ['a', true]] }]);
  });

  for (const bad of [
    ';a',
    'foo;',
    'foo;;a',
    'foo; =1',
    'foo; a=',
    'foo; a="1',
    'foo; a=""',
    'foo; a="1 0"',
    'foo; a="é"',
    'foo; a="x\\',
    'foo bar',
    'foo; a=1 2',
    'foo; a b',
    'fo@o',
    'foo; a="1"x',
    'foo; a=1=2',
  ]) {
    test(`refuses the malformed value ${JSON.stringify(bad)}`, () => {
      assert.equal(parseExtensions(bad), null);
    });
  }
});

const DEFAULTS: DeflateNegotiationConfig = {
  serverNoContextTakeover: false,
  clientNoContextTakeover: false,
  serverMaxWindowBits: 15,
  clientMaxWindowBits: 15,
};

function negotiate(header: string, config: Partial<DeflateNegotiationConfig> = {}) {
  const offers = parseExtensions(header);
  assert.ok(offers !== null, `header parses: ${header}`);
  return negotiateDeflate(offers, { ...DEFAULTS, ...config });
}

function params(p: Partial<DeflateParams>): DeflateParams {
  return {
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: 15,
    clientMaxWindowBits: 15,
    ...p,
  };
}

describe('negotiateDeflate', () => {
  const matrix: [header: string, config: Partial<DeflateNegotiationConfig>, response: string | null, agreed?: Partial<DeflateParams>][] = [
    ['permessage-deflate', {}, 'permessage-deflate', {}],
    // What Chromium and Firefox offer.
    ['permessage-deflate; client_max_window_bits', {}, 'permessage-deflate', {}],
    ['permessage-deflate; client_max_window_bits', { clientMaxWindowBits: 10 }, 'permessage-deflate; client_max_window_bits=10', { clientMaxWindowBits: 10 }],
    ['permessage-deflate; client_max_window_bits=12', {}, 'permessage-deflate; client_max_window_bits=12', { clientMaxWindowBits: 12 }],
    ['permessage-deflate; client_max_window_bits=12', { clientMaxWindowBits: 9 }, 'permessage-deflate; client_max_window_bits=9', { clientMaxWindowBits: 9 }],
    // Without client_max_window_bits in the offer the server must not send it, and must inflate with 15.
    ['permessage-deflate', { clientMaxWindowBits: 9 }, 'permessage-deflate', { clientMaxWindowBits: 15 }],
    ['permessage-deflate; server_max_window_bits=10', {}, 'permessage-deflate; server_max_window_bits=10', { serverMaxWindowBits: 10 }],
    ['permessage-deflate; server_max_window_bits=14', { serverMaxWindowBits: 11 }, 'permessage-deflate; server_max_window_bits=11', { serverMaxWindowBits: 11 }],
    ['permessage-deflate', { serverMaxWindowBits: 12 }, 'permessage-deflate; server_max_window_bits=12', { serverMaxWindowBits: 12 }],
    ['permessage-deflate; server_no_context_takeover', {}, 'permessage-deflate; server_no_context_takeover', { serverNoContextTakeover: true }],
    ['permessage-deflate', { serverNoContextTakeover: true }, 'permessage-deflate; server_no_context_takeover', { serverNoContextTakeover: true }],
    ['permessage-deflate; client_no_context_takeover', {}, 'permessage-deflate; client_no_context_takeover', { clientNoContextTakeover: true }],
    ['permessage-deflate', { clientNoContextTakeover: true }, 'permessage-deflate; client_no_context_takeover', { clientNoContextTakeover: true }],
    [
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=8',
      {},
      'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=8',
      { serverNoContextTakeover: true, clientNoContextTakeover: true, serverMaxWindowBits: 9, clientMaxWindowBits: 8 },
    ],
    // Declined offers: the next acceptable one wins.
    ['permessage-deflate; unknown_param, permessage-deflate', {}, 'permessage-deflate', {}],
    ['permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9', {}, 'permessage-deflate; server_max_window_bits=9', { serverMaxWindowBits: 9 }],
    ['x-webkit-deflate-frame, permessage-deflate; client_max_window_bits', {}, 'permessage-deflate', {}],
    // Declined outright.
    ['permessage-deflate; server_no_context_takeover; server_no_context_takeover', {}, null],
    ['permessage-deflate; server_no_context_takeover=1', {}, null],
    ['permessage-deflate; client_no_context_takeover=true', {}, null],
    ['permessage-deflate; server_max_window_bits', {}, null],
    ['permessage-deflate; server_max_window_bits=16', {}, null],
    ['permessage-deflate; server_max_window_bits=7', {}, null],
    ['permessage-deflate; server_max_window_bits=010', {}, null],
    ['permessage-deflate; server_max_window_bits=8', {}, null],
    ['permessage-deflate; client_max_window_bits=16', {}, null],
    ['permessage-deflate; client_max_window_bits=0x9', {}, null],
    ['permessage-deflate; client_max_window_bits; client_max_window_bits=9', {}, null],
    ['PERMESSAGE-DEFLATE', {}, null],
    ['x-foo', {}, null],
    ['', {}, null],
  ];
  for (const [header, config, response, agreed] of matrix) {
    const label = `${JSON.stringify(header)} with ${JSON.stringify(config)}`;
    test(response === null ? `declines ${label}` : `answers ${label} with ${JSON.stringify(response)}`, () => {
      const result = negotiate(header, config);
      if (response === null) {
        assert.equal(result, null);
        return;
      }
      assert.ok(result !== null);
      assert.equal(result.response, response);
      assert.deepEqual(result.params, params(agreed ?? {}));
    });
  }

  test('a quoted window value is the same as a token', () => {
    assert.equal(negotiate('permessage-deflate; client_max_window_bits="10"')?.response, 'permessage-deflate; client_max_window_bits=10');
  });
});
