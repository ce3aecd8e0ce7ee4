/**
 * What a handshake looked like, as the `handshake` hook and the `open`
 * listeners see it (Swoole's `$request`): a small copy of the request's
 * fields, so a connection keeps no `IncomingMessage` alive.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

export class UpgradeRequest<Data = unknown> {
  #query: URLSearchParams | undefined;

  constructor(
    /** The fd the connection gets if the handshake is accepted. */
    readonly fd: number,
    /** The request target, e.g. `/chat?room=1`. */
    readonly url: string,
    readonly headers: IncomingHttpHeaders,
    readonly remoteAddress: string,
    readonly remotePort: number,
    /** Subprotocols the client offered, in its order of preference. */
    readonly protocols: readonly string[],
    /** The chosen subprotocol ('' for none); the hook may change it. */
    public protocol: string,
    /** Per-connection user data; the hook may set it. */
    public data: Data,
  ) {}

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
