// The opening handshake answered without a round through JS, for the
// common case: a server with no `handshake` hook and a request that is
// plainly valid. Plainly valid is a strict subset of what the JS decision
// (src/upgrade.ts, src/protocol/http-head.ts, src/protocol/handshake.ts)
// accepts: anything else (an offered subprotocol or extension, a repeated
// field the JS parser would combine, obs-text, HTTP/1.0, an absolute-form
// target, a body, a path other than the server's) goes to JS as before,
// which answers it as it always did. test/handshake-fast.test.ts checks the
// subset against the JS decision over generated requests.
#ifndef WAVECAST_HANDSHAKE_FAST_H_
#define WAVECAST_HANDSHAKE_FAST_H_

#include <cstddef>
#include <cstdint>

namespace wavecast {

// The 101 for a key is this long: status line, Upgrade, Connection and
// Sec-WebSocket-Accept lines, blank line (as acceptResponse() writes it).
constexpr size_t kFastResponseLength = 129;

struct FastRules {
  // The path a request must have ('' for any), as the `path` option.
  const char* path = "";
  size_t path_length = 0;
  // Longer heads go to JS (Node's maxHeaderSize, at most 4 KiB here).
  size_t max_head = 4096;
};

// Whether `head` (a complete request head ending in CRLF CRLF, every LF
// after a CR) is a plainly valid upgrade under `rules`. If so, writes the
// complete 101 response (kFastResponseLength bytes) to `response`.
bool FastUpgrade(const uint8_t* head, size_t length, const FastRules& rules, uint8_t* response);

}  // namespace wavecast

#endif  // WAVECAST_HANDSHAKE_FAST_H_
