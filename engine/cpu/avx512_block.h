// CPU backend: pieces shared by the AVX-512 convolution kernels (conv_direct.cpp, conv_winograd.cpp).
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace sal::cpu {

// Lanes [0, n) of a 16-lane mask, n clamped to [0, 16] (a vector's share of a row's last elements).
inline __mmask16 first_lanes(int64_t n) {
  return static_cast<__mmask16>(n >= 16 ? 0xFFFFu : n <= 0 ? 0u : (1u << n) - 1u);
}

// acc[k][j] += w[k] * v_j: one input value pair (two vectors of 16 positions) into a block of 8 output
// channels, the step both kernels repeat over their taps or channels (16 FMAs on 16 accumulators).
__attribute__((target("avx512f"), always_inline)) inline void fma_8x32(__m512 (&acc)[8][2], const float* w, __m512 v0,
                                                                      __m512 v1) {
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) {
    const __m512 wv = _mm512_set1_ps(w[k]);
    acc[k][0] = _mm512_fmadd_ps(wv, v0, acc[k][0]);
    acc[k][1] = _mm512_fmadd_ps(wv, v1, acc[k][1]);
  }
}

}  // namespace sal::cpu
