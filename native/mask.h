// Masking and unmasking of WebSocket payloads (RFC 6455 5.3).
#ifndef WAVECAST_MASK_H_
#define WAVECAST_MASK_H_

#include <cstddef>
#include <cstdint>

namespace wavecast {

// Writes src[0, n) XOR the masking key into dst[0, n). `mask` holds the four
// key bytes as a big-endian uint32; its most significant byte applies to
// src[0]. dst may equal src (unmask in place) or start before it; it must not
// start inside (src, src + n), which the caller checks.
void MaskBytes(const uint8_t* src, uint8_t* dst, size_t n, uint32_t mask);

// The implementation MaskBytes picked for this CPU: "avx2", "sse2", "neon" or
// "scalar".
const char* MaskImplementation();

}  // namespace wavecast

#endif  // WAVECAST_MASK_H_
