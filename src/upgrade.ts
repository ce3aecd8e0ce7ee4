/**
 * The upgrade decision, the same on every road a handshake arrives by (a
 * Node socket or a native transport slot, see `handshake-io.ts`): checks
 * the request (RFC 6455 4.2), the path, the connection limit and the
 * extensions, runs the `handshake` hook, and answers 101 (then `open`) or
 * an HTTP error.
 */
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { Connection } from './connection.js';
import { PerMessageDeflate } from './deflate.js';
import type { Handshake } from './handshake-io.js';
import type { Wire } from './wire.js';
import { negotiateDeflate, parseExtensions, type DeflateAgreement } from './protocol/extensions.js';
import { acceptResponse, checkUpgrade, rejectResponse } from './protocol/handshake.js';
import type { RequestHead } from './protocol/http-head.js';
import type { ServerCore } from './server-core.js';
import { HandshakeResponse, UpgradeRequest } from './upgrade-request.js';

/** The path part of a request target. */
export function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/**
 * Runs a handshake to its answer; an unexpected failure before the 101 (a
 * throwing `handshake` hook) answers 500 and goes to `error` listeners, or,
 * without any, is reported once per server with `process.emitWarning` so
 * it is never silent.
 */
export function decide<Data>(core: ServerCore<Data>, req: RequestHead | IncomingMessage, handshake: Handshake): void {
  upgrade(core, req, handshake).catch((thrown: unknown) => {
    reject(core, handshake, 500);
    const error = thrown instanceof Error ? thrown : new Error(String(thrown));
    if (core.events.listenerCount('error') > 0) {
      core.events.emit('error', error);
    } else if (!core.handshakeFailureWarned) {
      core.handshakeFailureWarned = true;
      process.emitWarning(
        `a handshake failed with an exception, so the client got 500: ${error.message} ` +
          "(listen to the server's 'error' event to handle these; this warning is given once per server)",
        { type: 'WavecastWarning', code: 'WAVECAST_HANDSHAKE_FAILED', detail: error.stack },
      );
    }
  });
}

async function upgrade<Data>(core: ServerCore<Data>, req: RequestHead | IncomingMessage, handshake: Handshake): Promise<void> {
  const options = core.settings.options;
  if (core.stopping) return reject(core, handshake, 503, 'server shutting down');
  const check = checkUpgrade(req);
  if (!check.ok) return reject(core, handshake, check.status, check.message, check.headers);
  if (options.path !== undefined && pathOf(req.url) !== options.path) {
    return reject(core, handshake, 400, `no WebSocket endpoint at ${pathOf(req.url)}`);
  }
  if (core.registry.size + core.upgrading >= core.settings.maxConnections) {
    return reject(core, handshake, 503, 'too many connections');
  }
  let extensions: DeflateAgreement | null = null;
  // Only set-cookie is ever an array.
  const offered = req.headers['sec-websocket-extensions'] as string | undefined;
  if (core.deflateShared !== null && offered !== undefined) {
    const offers = parseExtensions(offered);
    if (offers === null) return reject(core, handshake, 400, 'malformed Sec-WebSocket-Extensions header');
    extensions = negotiateDeflate(offers, core.deflateShared.options);
  }
  const supported = options.subprotocols;
  const protocol = supported ? (check.protocols.find((p) => supported.includes(p)) ?? '') : '';
  const request = UpgradeRequest.lazy<Data>(core.registry.allocate(), req.url ?? '/', req.headers as IncomingHttpHeaders, handshake, check.protocols, protocol);
  let extraHeaders: OutgoingHttpHeaders | undefined;
  const hook = core.events.listeners('handshake')[0];
  if (hook !== undefined) {
    const response = new HandshakeResponse<Data>(request);
    core.upgrading++;
    try {
      const result: unknown = hook.call(core.events, request, response);
      if (result instanceof Promise) await result;
    } finally {
      core.upgrading--;
    }
    if (response.rejection !== null) {
      const { status, body, headers } = response.rejection;
      return reject(core, handshake, status, body, headers);
    }
    if (handshake.destroyed || core.stopping) return reject(core, handshake, 503, 'server shutting down');
    extraHeaders = response.headers;
  }
  accept(core, handshake, request, check.key, extraHeaders, extensions);
}

function accept<Data>(
  core: ServerCore<Data>,
  handshake: Handshake,
  request: UpgradeRequest<Data>,
  key: string,
  headers: OutgoingHttpHeaders | undefined,
  extensions: DeflateAgreement | null,
): void {
  const response = acceptResponse(key, request.protocol, headers, extensions?.response);
  const wire = handshake.open(response);
  // Gone before the 101 went out: nothing was opened.
  if (wire === null) return;
  const deflate = extensions === null ? null : new PerMessageDeflate(core.deflateShared!, extensions.params);
  const connection = establish(core, wire, request, deflate);
  // A resting connection is native: its bytes after the head are still in the kernel.
  if (connection !== null) handshake.started(connection);
}

/**
 * The connection for a handshake whose 101 is out (written here, or by the
 * native transport itself: `listen-native.ts`), announced with `open`; null
 * when it rests (native, nothing of its own: no objects until it is used,
 * see `registry.ts`) or when an `open` listener threw, which closes it.
 */
export function establish<Data>(
  core: ServerCore<Data>,
  wire: Wire,
  request: UpgradeRequest<Data>,
  deflate: PerMessageDeflate | null,
): Connection<Data> | null {
  const fd = request.fd;
  const rests = deflate === null && request.protocol === '' && request.data === undefined && core.registry.rest(fd, wire);
  const connection = rests ? null : new Connection<Data>(fd, wire, core, request.protocol, request.data, deflate);
  if (connection !== null) core.registry.add(fd, connection);
  core.counters.accepted++;
  core.router?.opened(fd);
  try {
    core.events.emit('open', fd, request);
  } catch (error) {
    // After the 101 this is a WebSocket: never an HTTP 500 (decide()'s catch).
    const failed = connection ?? core.registry.get(fd);
    if (failed !== undefined) core.listenerFailed(failed, error);
    return null;
  }
  return connection;
}

/** Refuses a handshake with an HTTP error (counted in `rejected`). */
export function reject<Data>(
  core: ServerCore<Data>,
  handshake: Handshake,
  status: number,
  body?: string,
  headers?: OutgoingHttpHeaders,
): void {
  core.counters.rejected++;
  if (handshake.destroyed) {
    handshake.abandon();
    return;
  }
  let response: string;
  try {
    response = rejectResponse(status, body, headers);
  } catch (error) {
    // A hook's invalid header: answer without it.
    response = rejectResponse(500);
    core.reportError(error as Error);
  }
  handshake.refuse(response);
}
