/**
 * What a handshake looked like, as the `handshake` hook and the `open`
 * listeners see it (Swoole's `$request`): a small copy of the request's
 * fields, so a connection keeps no `IncomingMessage` alive.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { parseRequestText } from './protocol/http-head.js';

/** Where a request's client address is read when first asked (the handshake's socket or slot). */
export interface PeerSource {
  readonly remoteAddress: string;
  readonly remotePort: number;
}

const NO_PROTOCOLS: readonly string[] = Object.freeze([]);

export class UpgradeRequest<Data = unknown> {
  #query: URLSearchParams | undefined;
  #address: string;
  #port: number;
  #peer: PeerSource | null = null;
  #headers: IncomingHttpHeaders | null;
  /** The request head (latin1), until `headers` is first read. */
  #head: string | null = null;

  constructor(
    /** The fd the connection gets if the handshake is accepted. */
    readonly fd: number,
    /** The request target, e.g. `/chat?room=1`. */
    readonly url: string,
    headers: IncomingHttpHeaders,
    remoteAddress: string,
    remotePort: number,
    /** Subprotocols the client offered, in its order of preference. */
    readonly protocols: readonly string[],
    /** The chosen subprotocol ('' for none); the hook may change it. */
    public protocol: string,
    /** Per-connection user data; the hook may set it. */
    public data: Data,
  ) {
    this.#headers = headers;
    this.#address = remoteAddress;
    this.#port = remotePort;
  }

  /** The request's header fields (lowercased names, repeats combined, as `IncomingMessage.headers`). */
  get headers(): IncomingHttpHeaders {
    if (this.#headers === null) {
      // The transport wrote the 101 only for a head this parser accepts (test/handshake-fast.test.ts).
      this.#headers = (parseRequestText(this.#head!)?.headers ?? {}) as IncomingHttpHeaders;
      this.#head = null;
    }
    return this.#headers;
  }

  /**
   * @internal A handshake the native transport answered itself: the target
   * is read now, the header fields when first asked for.
   */
  static fromHead<Data>(fd: number, head: string, peer: PeerSource): UpgradeRequest<Data> {
    // "GET " target " HTTP/1.1": the target is visible ASCII (native/handshake-fast.cc).
    const request = new UpgradeRequest<Data>(fd, head.slice(4, head.indexOf(' ', 4)), {}, '', 0, NO_PROTOCOLS, '', undefined as Data);
    request.#headers = null;
    request.#head = head;
    request.#peer = peer;
    return request;
  }

  /** @internal The address is read from `peer` when first asked, not when the request is made. */
  static lazy<Data>(fd: number, url: string, headers: IncomingHttpHeaders, peer: PeerSource, protocols: readonly string[], protocol: string): UpgradeRequest<Data> {
    const request = new UpgradeRequest<Data>(fd, url, headers, '', 0, protocols, protocol, undefined as Data);
    request.#peer = peer;
    return request;
  }

  /** The client's address (as the socket gave it; '' if it was gone before anyone asked). */
  get remoteAddress(): string {
    return this.#peer !== null ? this.#peer.remoteAddress : this.#address;
  }
  get remotePort(): number {
    return this.#peer !== null ? this.#peer.remotePort : this.#port;
  }

  /** The path part of `url`. */
  get path(): string {
    const q = this.url.indexOf('?');
    return q === -1 ? this.url : this.url.slice(0, q);
  }

  /** The query string of `url`, parsed. */
  get query(): URLSearchParams {
    if (this.#query === undefined) {
      const q = this.url.indexOf('?');
      this.#query = new URLSearchParams(q === -1 ? '' : this.url.slice(q + 1));
    }
    return this.#query;
  }

  /** The `Origin` header, which browsers always send (RFC 6455 10.2). */
  get origin(): string | undefined {
    return this.headers.origin;
  }
}

/** A refusal decided by the `handshake` hook. */
export interface HandshakeRejection {
  status: number;
  body: string | undefined;
  headers: OutgoingHttpHeaders | undefined;
}

/**
 * The hook's answer, given as the listener's second argument. Doing nothing
 * accepts; `reject()` refuses; `protocol`, `data` and `headers` shape the
 * accepted connection.
 */
export class HandshakeResponse<Data = unknown> {
  /** Extra headers for the 101 response. */
  headers: OutgoingHttpHeaders = {};
  /** @internal */
  rejection: HandshakeRejection | null = null;

  constructor(private readonly request: UpgradeRequest<Data>) {}

  /** The subprotocol to answer with: one the client offered, or '' for none. */
  get protocol(): string {
    return this.request.protocol;
  }
  set protocol(value: string) {
    if (value !== '' && !this.request.protocols.includes(value)) {
      throw new TypeError(`subprotocol "${value}" was not offered by the client`);
    }
    this.request.protocol = value;
  }

  /** Per-connection data, typed by the server's `Data` parameter. */
  get data(): Data {
    return this.request.data;
  }
  set data(value: Data) {
    this.request.data = value;
  }

  /** Refuses the upgrade with an HTTP status (400..599), an optional text body and headers. */
  reject(status = 403, body?: string, headers?: OutgoingHttpHeaders): void {
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      throw new RangeError(`reject status must be an integer from 400 to 599, got ${status}`);
    }
    this.rejection = { status, body, headers };
  }
}
