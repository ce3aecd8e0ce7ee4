// UTF-8 validation, whole-buffer and incremental (RFC 3629 as RFC 6455 8.1
// requires for text messages).
#ifndef WAVECAST_UTF8_H_
#define WAVECAST_UTF8_H_

#include <cstddef>
#include <cstdint>

namespace wavecast {

// State of a stream that is known not to be UTF-8; matches UTF8_INVALID in
// src/fallback/utf8.ts.
constexpr int32_t kUtf8Invalid = -1;

// Whether p[0, n) is well-formed UTF-8 in its entirety.
bool Utf8Valid(const uint8_t* p, size_t n);

// Continues an incremental check with p[0, n). The state encoding is the one
// documented in src/fallback/utf8.ts, so the JS fallback and this function can
// take turns within one message:
//   0                   at a code point boundary;
//   (held << 24) | bytes  1..3 bytes of an unfinished code point, the first in
//                       bits 16..23, the second in 8..15, the third in 0..7;
//   -1                  the stream is not UTF-8.
int32_t Utf8Continue(int32_t state, const uint8_t* p, size_t n);

// Where the stream continued from `state` with p[0, n) first stops being
// UTF-8: the index in p of the first byte that cannot follow what came before
// it, or -1 when p is valid (an unfinished code point at the end is valid).
// Scalar: it runs once, to report a failure that Utf8Continue found.
int64_t Utf8InvalidAt(int32_t state, const uint8_t* p, size_t n);

// Whether `state` is one Utf8Continue can return (and so may be passed in).
bool Utf8StateValid(int32_t state);

// The implementation Utf8Valid picked for this CPU: "avx2", "ssse3", "neon"
// or "scalar".
const char* Utf8Implementation();

}  // namespace wavecast

#endif  // WAVECAST_UTF8_H_
