/**
 * `Sec-WebSocket-Extensions` (RFC 6455 9.1) and the permessage-deflate
 * negotiation (RFC 7692 section 7). Pure functions: a header value in, the
 * offers or the agreed parameters and the response value out.
 *
 * ```
 * Sec-WebSocket-Extensions = extension-list
 * extension-list = 1#extension
 * extension      = extension-token *( ";" extension-param )
 * extension-param = token [ "=" (token | quoted-string) ]
 * ```
 */

/** One offered extension with its parameters in the order given (duplicates kept). */
export interface ExtensionOffer {
  name: string;
  /** `[name, value]`; `true` for a parameter without a value. */
  params: [name: string, value: string | true][];
}

/** What a server is willing to agree to (resolved `perMessageDeflate` settings). */
export interface DeflateNegotiationConfig {
  serverNoContextTakeover: boolean;
  clientNoContextTakeover: boolean;
  /** 9..15: zlib cannot produce raw deflate with an 8-bit window. */
  serverMaxWindowBits: number;
  /** 8..15 */
  clientMaxWindowBits: number;
}

/** The parameters both sides agreed on for one connection. */
export interface DeflateParams {
  /** The server resets its compressor after every message. */
  serverNoContextTakeover: boolean;
  /** The client resets its compressor after every message: the server may drop its inflater. */
  clientNoContextTakeover: boolean;
  /** Window the server compresses with. */
  serverMaxWindowBits: number;
  /** Window the client compresses with at most (the server's inflater needs no more). */
  clientMaxWindowBits: number;
}

/** The result of a successful negotiation: the parameters and the response header value. */
export interface DeflateAgreement {
  params: DeflateParams;
  response: string;
}

export const PERMESSAGE_DEFLATE = 'permessage-deflate';

/** tchar (RFC 9110 5.6.2). */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  TCHAR[c.charCodeAt(0)] = 1;
}
const isTchar = (code: number): boolean => code < 128 && TCHAR[code] === 1;
const isSpace = (code: number): boolean => code === 0x20 || code === 0x09;

/** A window bits value: 8..15 written without leading zeros (RFC 7692 7.1.2.1). */
const WINDOW_BITS = /^(?:[89]|1[0-5])$/;

/**
 * Parses a `Sec-WebSocket-Extensions` value into offers, in order. Returns
 * null when the value is malformed (the handshake then answers 400): a
 * missing extension name, a parameter that is not a token, a quoted value
 * that is not a token once unescaped (RFC 6455 9.1), stray characters.
 * Empty list elements are ignored, as HTTP lists allow (RFC 9110 5.6.1).
 */
export function parseExtensions(value: string): ExtensionOffer[] | null {
  const offers: ExtensionOffer[] = [];
  const end = value.length;
  let pos = 0;
  const skipSpace = (): void => {
    while (pos < end && isSpace(value.charCodeAt(pos))) pos++;
  };
  const token = (): string => {
    const start = pos;
    while (pos < end && isTchar(value.charCodeAt(pos))) pos++;
    return value.slice(start, pos);
  };
  for (;;) {
    skipSpace();
    if (pos === end) return offers;
    if (value.charCodeAt(pos) === 0x2c /* , */) {
      pos++;
      continue;
    }
    const name = token();
    if (name === '') return null;
    const offer: ExtensionOffer = { name, params: [] };
    offers.push(offer);
    skipSpace();
    while (pos < end && value.charCodeAt(pos) === 0x3b /* ; */) {
      pos++;
      skipSpace();
      const param = token();
      if (param === '') return null;
      skipSpace();
      let paramValue: string | true = true;
      if (pos < end && value.charCodeAt(pos) === 0x3d /* = */) {
        pos++;
        skipSpace();
        if (pos < end && value.charCodeAt(pos) === 0x22 /* " */) {
          pos++;
          let unquoted = '';
          for (;;) {
            if (pos === end) return null;
            const code = value.charCodeAt(pos++);
            if (code === 0x22) break;
            if (code === 0x5c /* \ */) {
              if (pos === end) return null;
              unquoted += value[pos++];
            } else {
              unquoted += String.fromCharCode(code);
            }
          }
          // RFC 6455 9.1: the value after quoted-string unescaping MUST conform to 'token'.
          if (unquoted === '' || ![...unquoted].every((c) => isTchar(c.charCodeAt(0)))) return null;
          paramValue = unquoted;
        } else {
          paramValue = token();
          if (paramValue === '') return null;
        }
        skipSpace();
      }
      offer.params.push([param, paramValue]);
    }
    if (pos === end) return offers;
    if (value.charCodeAt(pos) !== 0x2c) return null;
    pos++;
  }
}

/**
 * Picks the first acceptable permessage-deflate offer (RFC 7692 7.1), or
 * null to decline them all (the connection then runs uncompressed). An offer
 * is declined when it has an unknown parameter, a parameter twice, or a bad
 * value (RFC 7692 7: the server MUST decline such an offer), or asks for a
 * server window of 8 bits, which zlib's raw deflate cannot keep to.
 */
export function negotiateDeflate(
  offers: readonly ExtensionOffer[],
  config: DeflateNegotiationConfig,
): DeflateAgreement | null {
  for (const offer of offers) {
    if (offer.name !== PERMESSAGE_DEFLATE) continue;
    const agreed = acceptOffer(offer, config);
    if (agreed !== null) return { params: agreed, response: deflateResponse(agreed, offer) };
  }
  return null;
}

function acceptOffer(offer: ExtensionOffer, config: DeflateNegotiationConfig): DeflateParams | null {
  const seen = new Set<string>();
  let serverNoContextTakeover = config.serverNoContextTakeover;
  let clientNoContextTakeover = config.clientNoContextTakeover;
  let serverMaxWindowBits = config.serverMaxWindowBits;
  // RFC 7692 7.1.2.2: without client_max_window_bits in the offer the client may use 15.
  let clientMaxWindowBits = 15;
  for (const [name, value] of offer.params) {
    if (seen.has(name)) return null;
    seen.add(name);
    switch (name) {
      case 'server_no_context_takeover':
        // RFC 7692 7.1.1.1: no value; a server that accepts the offer MUST honour it.
        if (value !== true) return null;
        serverNoContextTakeover = true;
        break;
      case 'client_no_context_takeover':
        // RFC 7692 7.1.1.2: a hint that the client will not use context takeover anyway.
        if (value !== true) return null;
        clientNoContextTakeover = true;
        break;
      case 'server_max_window_bits': {
        // RFC 7692 7.1.2.1: the server answers with a value no larger than the offered one.
        if (value === true || !WINDOW_BITS.test(value)) return null;
        serverMaxWindowBits = Math.min(serverMaxWindowBits, Number(value));
        if (serverMaxWindowBits < 9) return null;
        break;
      }
      case 'client_max_window_bits':
        // RFC 7692 7.1.2.2: bare = the client accepts any value the server sends back.
        if (value !== true && !WINDOW_BITS.test(value)) return null;
        clientMaxWindowBits = Math.min(config.clientMaxWindowBits, value === true ? 15 : Number(value));
        break;
      default:
        return null;
    }
  }
  return { serverNoContextTakeover, clientNoContextTakeover, serverMaxWindowBits, clientMaxWindowBits };
}

/** The response header value for an accepted offer. */
function deflateResponse(params: DeflateParams, offer: ExtensionOffer): string {
  let response = PERMESSAGE_DEFLATE;
  if (params.serverNoContextTakeover) response += '; server_no_context_takeover';
  if (params.clientNoContextTakeover) response += '; client_no_context_takeover';
  const offered = new Map(offer.params);
  if (params.serverMaxWindowBits < 15 || offered.has('server_max_window_bits')) {
    response += `; server_max_window_bits=${params.serverMaxWindowBits}`;
  }
  // RFC 7692 7.1.2.2: the server MUST NOT send client_max_window_bits unless offered.
  if (offered.has('client_max_window_bits') && params.clientMaxWindowBits < 15) {
    response += `; client_max_window_bits=${params.clientMaxWindowBits}`;
  }
  return response;
}
