// Which SIMD family this build targets (the instructions themselves are
// chosen at run time where the CPU may lack them): WAVECAST_X86 with the
// Intel intrinsics, WAVECAST_NEON on arm64, neither elsewhere.
#ifndef WAVECAST_SIMD_H_
#define WAVECAST_SIMD_H_

#if defined(__x86_64__) || defined(_M_X64)
#define WAVECAST_X86 1
#include <immintrin.h>
#elif defined(__aarch64__)
#define WAVECAST_NEON 1
#include <arm_neon.h>
#endif

#endif  // WAVECAST_SIMD_H_
