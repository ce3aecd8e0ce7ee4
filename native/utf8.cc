// UTF-8 validation with the lookup-table method of Keiser and Lemire
// ("Validating UTF-8 In Less Than One Instruction Per Byte", 2021): three
// 16-entry tables indexed by nibbles of each byte and the byte before it flag
// every error class at once, and a saturating subtraction finds the bytes
// that must be the 2nd or 3rd continuation of a 3- or 4-byte sequence. AVX2
// and SSSE3 paths are chosen at run time on x86-64, NEON on arm64, and a
// scalar loop runs elsewhere and for short inputs. A 64-byte block that is
// all ASCII costs one OR and one test. The last partial block is copied into
// a zeroed stack buffer so that nothing past p + n is ever read.
#include "utf8.h"

#include <cstring>

#include "simd.h"

namespace wavecast {
namespace {

// Length of the sequence a lead byte starts, or 0 if it cannot lead one:
// continuation bytes, C0 / C1 (always overlong) and F5..FF (above U+10FFFF,
// or the 5- and 6-byte forms RFC 3629 removed).
inline int SequenceLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead < 0xc2) return 0;
  if (lead < 0xe0) return 2;
  if (lead < 0xf0) return 3;
  if (lead < 0xf5) return 4;
  return 0;
}

// Whether `byte` may stand at position `index` (1..3) of a sequence led by
// `lead`. The second byte carries the rules against overlongs (E0, F0),
// surrogates U+D800..DFFF (ED) and values above U+10FFFF (F4).
inline bool Continues(uint8_t lead, int index, uint8_t byte) {
  if (index == 1) {
    if (lead == 0xe0) return byte >= 0xa0 && byte <= 0xbf;
    if (lead == 0xed) return byte >= 0x80 && byte <= 0x9f;
    if (lead == 0xf0) return byte >= 0x90 && byte <= 0xbf;
    if (lead == 0xf4) return byte >= 0x80 && byte <= 0x8f;
  }
  return byte >= 0x80 && byte <= 0xbf;
}

bool ValidScalar(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (i + 16 <= n) {
      uint64_t a;
      uint64_t b;
      std::memcpy(&a, p + i, 8);
      std::memcpy(&b, p + i + 8, 8);
      if (((a | b) & 0x8080808080808080ull) == 0) {
        i += 16;
        continue;
      }
    }
    const uint8_t lead = p[i];
    if (lead < 0x80) {
      i++;
      continue;
    }
    const int len = SequenceLength(lead);
    if (len == 0 || n - i < static_cast<size_t>(len)) return false;
    for (int k = 1; k < len; k++) {
      if (!Continues(lead, k, p[i + k])) return false;
    }
    i += len;
  }
  return true;
}

// Error classes of Keiser and Lemire; a bit set in all three lookups of a
// byte pair names an error of that pair.
constexpr uint8_t kTooShort = 1 << 0;   // 11______ 0_______ or 11______ 11______
constexpr uint8_t kTooLong = 1 << 1;    // 0_______ 10______
constexpr uint8_t kOverlong3 = 1 << 2;  // 11100000 100_____
constexpr uint8_t kTooLarge = 1 << 3;   // 11110100 1001____ and above
constexpr uint8_t kSurrogate = 1 << 4;  // 11101101 101_____
constexpr uint8_t kOverlong2 = 1 << 5;  // 1100000_ 10______
constexpr uint8_t kTooLarge1000 = 1 << 6;  // 11110101 1000____ and above
constexpr uint8_t kOverlong4 = 1 << 6;     // 11110000 1000____
constexpr uint8_t kTwoConts = 1 << 7;      // 10______ 10______
constexpr uint8_t kCarry = kTooShort | kTooLong | kTwoConts;

// Indexed by the high nibble of the previous byte.
alignas(16) constexpr uint8_t kByte1High[16] = {
    kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong, kTooLong,
    kTwoConts, kTwoConts, kTwoConts, kTwoConts,
    kTooShort | kOverlong2,
    kTooShort,
    kTooShort | kOverlong3 | kSurrogate,
    kTooShort | kTooLarge | kTooLarge1000 | kOverlong4,
};

// Indexed by the low nibble of the previous byte.
alignas(16) constexpr uint8_t kByte1Low[16] = {
    kCarry | kOverlong3 | kOverlong2 | kOverlong4,
    kCarry | kOverlong2,
    kCarry,
    kCarry,
    kCarry | kTooLarge,
    kCarry | kTooLarge | kTooLarge1000,
    kCarry | kTooLarge | kTooLarge1000,
    kCarry | kTooLarge | kTooLarge1000,
    kCarry | kTooLarge | kTooLarge1000,
    kCarry | kTooLarge | kTooLarge1000,
    kCarry | kTooLarge | kTooLarge1000,
    kCarry | kTooLarge | kTooLarge1000,
    kCarry | kTooLarge | kTooLarge1000,
    kCarry | kTooLarge | kTooLarge1000 | kSurrogate,
    kCarry | kTooLarge | kTooLarge1000,
    kCarry | kTooLarge | kTooLarge1000,
};

// Indexed by the high nibble of the current byte.
alignas(16) constexpr uint8_t kByte2High[16] = {
    kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort, kTooShort,
    kTooLong | kOverlong2 | kTwoConts | kOverlong3 | kTooLarge1000 | kOverlong4,
    kTooLong | kOverlong2 | kTwoConts | kOverlong3 | kTooLarge,
    kTooLong | kOverlong2 | kTwoConts | kSurrogate | kTooLarge,
    kTooLong | kOverlong2 | kTwoConts | kSurrogate | kTooLarge,
    kTooShort, kTooShort, kTooShort, kTooShort,
};

// A block whose last bytes exceed these ends inside a sequence: its last byte
// is a lead of 2+ bytes, its second last of 3+, its third last of 4.
alignas(32) constexpr uint8_t kIncompleteMax[32] = {
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0xf0 - 1, 0xe0 - 1, 0xc0 - 1,
};

#if defined(WAVECAST_X86)

#define WAVECAST_SSSE3 __attribute__((target("ssse3")))
#define WAVECAST_AVX2 __attribute__((target("avx2")))

struct Sse {
  __m128i prev;        // the vector before the current one
  __m128i incomplete;  // nonzero where `prev` ends inside a sequence
  __m128i error;       // nonzero once any error was seen
};

WAVECAST_SSSE3 inline __m128i Nibbles(__m128i table, __m128i index) {
  return _mm_shuffle_epi8(table, index);
}

WAVECAST_SSSE3 inline __m128i CheckSse(__m128i input, __m128i prev) {
  const __m128i low4 = _mm_set1_epi8(0x0f);
  const __m128i prev1 = _mm_alignr_epi8(input, prev, 15);
  const __m128i b1h = Nibbles(_mm_load_si128(reinterpret_cast<const __m128i*>(kByte1High)),
                              _mm_and_si128(_mm_srli_epi16(prev1, 4), low4));
  const __m128i b1l = Nibbles(_mm_load_si128(reinterpret_cast<const __m128i*>(kByte1Low)),
                              _mm_and_si128(prev1, low4));
  const __m128i b2h = Nibbles(_mm_load_si128(reinterpret_cast<const __m128i*>(kByte2High)),
                              _mm_and_si128(_mm_srli_epi16(input, 4), low4));
  const __m128i special = _mm_and_si128(_mm_and_si128(b1h, b1l), b2h);
  const __m128i prev2 = _mm_alignr_epi8(input, prev, 14);
  const __m128i prev3 = _mm_alignr_epi8(input, prev, 13);
  const __m128i third = _mm_subs_epu8(prev2, _mm_set1_epi8(static_cast<char>(0xe0 - 0x80)));
  const __m128i fourth = _mm_subs_epu8(prev3, _mm_set1_epi8(static_cast<char>(0xf0 - 0x80)));
  const __m128i must23 =
      _mm_and_si128(_mm_or_si128(third, fourth), _mm_set1_epi8(static_cast<char>(0x80)));
  return _mm_xor_si128(must23, special);
}

WAVECAST_SSSE3 inline void BlockSse(const uint8_t* q, Sse* s) {
  const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16));
  const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 32));
  const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 48));
  if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d))) == 0) {
    s->error = _mm_or_si128(s->error, s->incomplete);
    s->incomplete = _mm_setzero_si128();
  } else {
    s->error = _mm_or_si128(s->error, _mm_or_si128(_mm_or_si128(CheckSse(a, s->prev), CheckSse(b, a)),
                                                   _mm_or_si128(CheckSse(c, b), CheckSse(d, c))));
    s->incomplete =
        _mm_subs_epu8(d, _mm_load_si128(reinterpret_cast<const __m128i*>(kIncompleteMax + 16)));
  }
  s->prev = d;
}

WAVECAST_SSSE3 bool ValidSsse3(const uint8_t* p, size_t n) {
  Sse s{_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()};
  size_t i = 0;
  for (; i + 64 <= n; i += 64) BlockSse(p + i, &s);
  if (i < n) {
    alignas(16) uint8_t tail[64] = {};
    std::memcpy(tail, p + i, n - i);
    BlockSse(tail, &s);
  }
  const __m128i error = _mm_or_si128(s.error, s.incomplete);
  return _mm_movemask_epi8(_mm_cmpeq_epi8(error, _mm_setzero_si128())) == 0xffff;
}

struct Avx {
  __m256i prev;
  __m256i incomplete;
  __m256i error;
};

WAVECAST_AVX2 inline __m256i CheckAvx(__m256i input, __m256i prev) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  // The last 16 bytes of prev, then the first 16 of input: the vector that
  // alignr needs to shift bytes across the 128-bit lane boundary.
  const __m256i carry = _mm256_permute2x128_si256(prev, input, 0x21);
  const __m256i prev1 = _mm256_alignr_epi8(input, carry, 15);
  const __m256i t1h = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(kByte1High)));
  const __m256i t1l = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(kByte1Low)));
  const __m256i t2h = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(kByte2High)));
  const __m256i b1h = _mm256_shuffle_epi8(t1h, _mm256_and_si256(_mm256_srli_epi16(prev1, 4), low4));
  const __m256i b1l = _mm256_shuffle_epi8(t1l, _mm256_and_si256(prev1, low4));
  const __m256i b2h = _mm256_shuffle_epi8(t2h, _mm256_and_si256(_mm256_srli_epi16(input, 4), low4));
  const __m256i special = _mm256_and_si256(_mm256_and_si256(b1h, b1l), b2h);
  const __m256i prev2 = _mm256_alignr_epi8(input, carry, 14);
  const __m256i prev3 = _mm256_alignr_epi8(input, carry, 13);
  const __m256i third = _mm256_subs_epu8(prev2, _mm256_set1_epi8(static_cast<char>(0xe0 - 0x80)));
  const __m256i fourth = _mm256_subs_epu8(prev3, _mm256_set1_epi8(static_cast<char>(0xf0 - 0x80)));
  const __m256i must23 = _mm256_and_si256(_mm256_or_si256(third, fourth),
                                          _mm256_set1_epi8(static_cast<char>(0x80)));
  return _mm256_xor_si256(must23, special);
}

WAVECAST_AVX2 inline void BlockAvx(const uint8_t* q, Avx* s) {
  const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
  const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32));
  if (_mm256_movemask_epi8(_mm256_or_si256(a, b)) == 0) {
    s->error = _mm256_or_si256(s->error, s->incomplete);
    s->incomplete = _mm256_setzero_si256();
  } else {
    s->error = _mm256_or_si256(s->error, _mm256_or_si256(CheckAvx(a, s->prev), CheckAvx(b, a)));
    s->incomplete =
        _mm256_subs_epu8(b, _mm256_load_si256(reinterpret_cast<const __m256i*>(kIncompleteMax)));
  }
  s->prev = b;
}

WAVECAST_AVX2 bool ValidAvx2(const uint8_t* p, size_t n) {
  Avx s{_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
  size_t i = 0;
  for (; i + 64 <= n; i += 64) BlockAvx(p + i, &s);
  if (i < n) {
    alignas(32) uint8_t tail[64] = {};
    std::memcpy(tail, p + i, n - i);
    BlockAvx(tail, &s);
  }
  const __m256i error = _mm256_or_si256(s.error, s.incomplete);
  return _mm256_testz_si256(error, error) != 0;
}

enum class Impl { kScalar, kSsse3, kAvx2 };

Impl Detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) return Impl::kAvx2;
  if (__builtin_cpu_supports("ssse3")) return Impl::kSsse3;
  return Impl::kScalar;
}

const Impl kImpl = Detect();

#elif defined(WAVECAST_NEON)

struct Neon {
  uint8x16_t prev;
  uint8x16_t incomplete;
  uint8x16_t error;
};

inline uint8x16_t CheckNeon(uint8x16_t input, uint8x16_t prev) {
  const uint8x16_t prev1 = vextq_u8(prev, input, 15);
  const uint8x16_t b1h = vqtbl1q_u8(vld1q_u8(kByte1High), vshrq_n_u8(prev1, 4));
  const uint8x16_t b1l = vqtbl1q_u8(vld1q_u8(kByte1Low), vandq_u8(prev1, vdupq_n_u8(0x0f)));
  const uint8x16_t b2h = vqtbl1q_u8(vld1q_u8(kByte2High), vshrq_n_u8(input, 4));
  const uint8x16_t special = vandq_u8(vandq_u8(b1h, b1l), b2h);
  const uint8x16_t prev2 = vextq_u8(prev, input, 14);
  const uint8x16_t prev3 = vextq_u8(prev, input, 13);
  const uint8x16_t third = vqsubq_u8(prev2, vdupq_n_u8(0xe0 - 0x80));
  const uint8x16_t fourth = vqsubq_u8(prev3, vdupq_n_u8(0xf0 - 0x80));
  const uint8x16_t must23 = vandq_u8(vorrq_u8(third, fourth), vdupq_n_u8(0x80));
  return veorq_u8(must23, special);
}

inline void BlockNeon(const uint8_t* q, Neon* s) {
  const uint8x16_t a = vld1q_u8(q);
  const uint8x16_t b = vld1q_u8(q + 16);
  const uint8x16_t c = vld1q_u8(q + 32);
  const uint8x16_t d = vld1q_u8(q + 48);
  if (vmaxvq_u8(vorrq_u8(vorrq_u8(a, b), vorrq_u8(c, d))) < 0x80) {
    s->error = vorrq_u8(s->error, s->incomplete);
    s->incomplete = vdupq_n_u8(0);
  } else {
    s->error = vorrq_u8(s->error, vorrq_u8(vorrq_u8(CheckNeon(a, s->prev), CheckNeon(b, a)),
                                           vorrq_u8(CheckNeon(c, b), CheckNeon(d, c))));
    s->incomplete = vqsubq_u8(d, vld1q_u8(kIncompleteMax + 16));
  }
  s->prev = d;
}

bool ValidNeon(const uint8_t* p, size_t n) {
  Neon s{vdupq_n_u8(0), vdupq_n_u8(0), vdupq_n_u8(0)};
  size_t i = 0;
  for (; i + 64 <= n; i += 64) BlockNeon(p + i, &s);
  if (i < n) {
    alignas(16) uint8_t tail[64] = {};
    std::memcpy(tail, p + i, n - i);
    BlockNeon(tail, &s);
  }
  return vmaxvq_u8(vorrq_u8(s.error, s.incomplete)) == 0;
}

#endif

// Below this many bytes the scalar loop wins over a vector pass, which always
// handles at least one padded 64-byte block.
constexpr size_t kScalarMax = 32;

}  // namespace

bool Utf8Valid(const uint8_t* p, size_t n) {
  if (n < kScalarMax) return ValidScalar(p, n);
#if defined(WAVECAST_X86)
  switch (kImpl) {
    case Impl::kAvx2:
      return ValidAvx2(p, n);
    case Impl::kSsse3:
      return ValidSsse3(p, n);
    case Impl::kScalar:
      break;
  }
  return ValidScalar(p, n);
#elif defined(WAVECAST_NEON)
  return ValidNeon(p, n);
#else
  return ValidScalar(p, n);
#endif
}

const char* Utf8Implementation() {
#if defined(WAVECAST_X86)
  switch (kImpl) {
    case Impl::kAvx2:
      return "avx2";
    case Impl::kSsse3:
      return "ssse3";
    case Impl::kScalar:
      break;
  }
  return "scalar";
#elif defined(WAVECAST_NEON)
  return "neon";
#else
  return "scalar";
#endif
}

bool Utf8StateValid(int32_t state) {
  if (state == 0 || state == kUtf8Invalid) return true;
  if (state < 0) return false;
  const int held = state >> 24;
  const uint8_t lead = static_cast<uint8_t>(state >> 16);
  const int len = SequenceLength(lead);
  if (held < 1 || len < 2 || held >= len) return false;
  for (int k = 1; k < 3; k++) {
    const uint8_t byte = static_cast<uint8_t>(state >> (16 - 8 * k));
    if (k < held ? !Continues(lead, k, byte) : byte != 0) return false;
  }
  return true;
}

int32_t Utf8Continue(int32_t state, const uint8_t* p, size_t n) {
  if (state < 0) return kUtf8Invalid;
  size_t i = 0;
  if (state != 0) {
    // Finish the code point held over from the previous fragment.
    int held = state >> 24;
    int32_t packed = state & 0xffffff;
    const uint8_t lead = static_cast<uint8_t>(packed >> 16);
    const int len = SequenceLength(lead);
    while (held < len && i < n) {
      const uint8_t byte = p[i];
      if (!Continues(lead, held, byte)) return kUtf8Invalid;
      packed |= static_cast<int32_t>(byte) << (16 - 8 * held);
      held++;
      i++;
    }
    if (held < len) return (held << 24) | packed;
  }
  // Find where an unfinished code point begins in the last three bytes.
  size_t tail = n;
  for (size_t k = n; k > i && n - k < 3;) {
    const uint8_t byte = p[--k];
    if (byte < 0x80) break;
    if (byte >= 0xc0) {
      const int len = SequenceLength(byte);
      if (len != 0 && k + static_cast<size_t>(len) > n) tail = k;
      break;
    }
  }
  if (!Utf8Valid(p + i, tail - i)) return kUtf8Invalid;
  if (tail == n) return 0;
  // The held bytes must be a valid prefix, so a bad fragment fails now.
  const uint8_t lead = p[tail];
  int32_t packed = static_cast<int32_t>(lead) << 16;
  for (size_t k = 1; tail + k < n; k++) {
    const uint8_t byte = p[tail + k];
    if (!Continues(lead, static_cast<int>(k), byte)) return kUtf8Invalid;
    packed |= static_cast<int32_t>(byte) << (16 - 8 * k);
  }
  return static_cast<int32_t>((n - tail) << 24) | packed;
}

int64_t Utf8InvalidAt(int32_t state, const uint8_t* p, size_t n) {
  size_t i = 0;
  if (state > 0) {
    int held = state >> 24;
    const uint8_t lead = static_cast<uint8_t>((state >> 16) & 0xff);
    const int len = SequenceLength(lead);
    for (; held < len && i < n; held++, i++) {
      if (!Continues(lead, held, p[i])) return static_cast<int64_t>(i);
    }
  }
  while (i < n) {
    const uint8_t lead = p[i];
    if (lead < 0x80) {
      i++;
      continue;
    }
    const int len = SequenceLength(lead);
    if (len == 0) return static_cast<int64_t>(i);
    for (int k = 1; k < len; k++) {
      if (i + static_cast<size_t>(k) >= n) return -1;
      if (!Continues(lead, k, p[i + k])) return static_cast<int64_t>(i + k);
    }
    i += static_cast<size_t>(len);
  }
  return -1;
}

}  // namespace wavecast
