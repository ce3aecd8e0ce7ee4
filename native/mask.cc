// Masking: SSE2 baseline and an AVX2 path chosen at run time on x86-64, NEON
// on arm64, a 64-bit scalar loop elsewhere and for every tail. No load or
// store ever reaches past src + n or dst + n: Node Buffers have no padding.
#include "mask.h"

#include <cstring>

#include "simd.h"

namespace wavecast {
namespace {

// The key as it lies in memory (m0 m1 m2 m3), as a native-endian word.
inline uint32_t KeyWord(uint32_t mask) {
  const uint8_t bytes[4] = {static_cast<uint8_t>(mask >> 24), static_cast<uint8_t>(mask >> 16),
                            static_cast<uint8_t>(mask >> 8), static_cast<uint8_t>(mask)};
  uint32_t word;
  std::memcpy(&word, bytes, 4);
  return word;
}

// The key as it applies `phase` bytes later (same as rotateMask in JS).
inline uint32_t Rotate(uint32_t mask, size_t phase) {
  const unsigned shift = static_cast<unsigned>(phase & 3) * 8;
  return shift == 0 ? mask : (mask << shift) | (mask >> (32 - shift));
}

void MaskScalar(const uint8_t* src, uint8_t* dst, size_t n, uint32_t mask) {
  const uint64_t word = KeyWord(mask);
  const uint64_t key = word | (word << 32);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, src + i, 8);
    v ^= key;
    std::memcpy(dst + i, &v, 8);
  }
  // i is a multiple of 8 here, so the key phase is still 0.
  for (; i < n; i++) dst[i] = src[i] ^ static_cast<uint8_t>(mask >> (24 - 8 * (i & 3)));
}

// Bytes to process one by one so that dst + head is 32-byte aligned; worth it
// only for long runs, where split stores would otherwise cost more.
inline size_t AlignHead(const uint8_t* dst, size_t n) {
  if (n < 512) return 0;
  return static_cast<size_t>(-reinterpret_cast<uintptr_t>(dst)) & 31;
}

#if defined(WAVECAST_X86)

void MaskSse2(const uint8_t* src, uint8_t* dst, size_t n, uint32_t mask) {
  const size_t head = AlignHead(dst, n);
  MaskScalar(src, dst, head, mask);
  src += head;
  dst += head;
  n -= head;
  mask = Rotate(mask, head);
  const __m128i key = _mm_set1_epi32(static_cast<int>(KeyWord(mask)));
  size_t i = 0;
  // Every load of a group comes before its stores, so dst may start before
  // src even when the two overlap.
  for (; i + 64 <= n; i += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 32));
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 48));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_xor_si128(a, key));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 16), _mm_xor_si128(b, key));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 32), _mm_xor_si128(c, key));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i + 48), _mm_xor_si128(d, key));
  }
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_xor_si128(a, key));
  }
  MaskScalar(src + i, dst + i, n - i, mask);
}

__attribute__((target("avx2"))) void MaskAvx2(const uint8_t* src, uint8_t* dst, size_t n,
                                               uint32_t mask) {
  const size_t head = AlignHead(dst, n);
  MaskScalar(src, dst, head, mask);
  src += head;
  dst += head;
  n -= head;
  mask = Rotate(mask, head);
  const __m256i key = _mm256_set1_epi32(static_cast<int>(KeyWord(mask)));
  size_t i = 0;
  for (; i + 128 <= n; i += 128) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 32));
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 64));
    const __m256i d = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 96));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_xor_si256(a, key));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 32), _mm256_xor_si256(b, key));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 64), _mm256_xor_si256(c, key));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i + 96), _mm256_xor_si256(d, key));
  }
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_xor_si256(a, key));
  }
  if (i + 16 <= n) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm_xor_si128(a, _mm256_castsi256_si128(key)));
    i += 16;
  }
  MaskScalar(src + i, dst + i, n - i, mask);
}

bool HasAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}

const bool kAvx2 = HasAvx2();

#elif defined(WAVECAST_NEON)

void MaskNeon(const uint8_t* src, uint8_t* dst, size_t n, uint32_t mask) {
  const uint8x16_t key = vreinterpretq_u8_u32(vdupq_n_u32(KeyWord(mask)));
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const uint8x16_t a = vld1q_u8(src + i);
    const uint8x16_t b = vld1q_u8(src + i + 16);
    const uint8x16_t c = vld1q_u8(src + i + 32);
    const uint8x16_t d = vld1q_u8(src + i + 48);
    vst1q_u8(dst + i, veorq_u8(a, key));
    vst1q_u8(dst + i + 16, veorq_u8(b, key));
    vst1q_u8(dst + i + 32, veorq_u8(c, key));
    vst1q_u8(dst + i + 48, veorq_u8(d, key));
  }
  for (; i + 16 <= n; i += 16) vst1q_u8(dst + i, veorq_u8(vld1q_u8(src + i), key));
  MaskScalar(src + i, dst + i, n - i, mask);
}

#endif

}  // namespace

void MaskBytes(const uint8_t* src, uint8_t* dst, size_t n, uint32_t mask) {
#if defined(WAVECAST_X86)
  if (kAvx2) {
    MaskAvx2(src, dst, n, mask);
  } else {
    MaskSse2(src, dst, n, mask);
  }
#elif defined(WAVECAST_NEON)
  MaskNeon(src, dst, n, mask);
#else
  MaskScalar(src, dst, n, mask);
#endif
}

const char* MaskImplementation() {
#if defined(WAVECAST_X86)
  return kAvx2 ? "avx2" : "sse2";
#elif defined(WAVECAST_NEON)
  return "neon";
#else
  return "scalar";
#endif
}

}  // namespace wavecast
