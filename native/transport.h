// The native transport: a listening socket and its connections served from
// one epoll set that sits on Node's event loop as a single uv_poll, so a
// connection costs one small struct here and no net.Socket, libuv handle or
// stream state in JS. JS sees a request head, then data, end, drain and close
// events, delivered in batches (one call into JS per loop turn).
//
// Linux only (epoll); elsewhere the addon does not export createTransport
// and the server uses Node's net and http modules.
#ifndef WAVECAST_TRANSPORT_H_
#define WAVECAST_TRANSPORT_H_

#if defined(__linux__)
#define WAVECAST_HAVE_TRANSPORT 1

#include <node_api.h>

namespace wavecast {

// Adds createTransport(callback) and listenSocket(host, port, backlog,
// ipv6Only) to the addon's exports.
napi_status InitTransport(napi_env env, napi_value exports);

}  // namespace wavecast

#endif  // __linux__
#endif  // WAVECAST_TRANSPORT_H_
