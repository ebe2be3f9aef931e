// CPU backend: pieces shared by the AVX-512 convolution kernels (conv_direct.cpp, conv_winograd.cpp): lane
// masks, the 8 x 32 FMA step, and the stride-2 split and merge of a row.
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

// The 32 values a|b split by position: even[l] = (a|b)[2l], odd[l] = (a|b)[2l + 1] (stride-2 columns of a row).
__attribute__((target("avx512f"), always_inline)) inline void even_odd(__m512 a, __m512 b, __m512& even, __m512& odd) {
  const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  even = _mm512_permutex2var_ps(a, ie, b), odd = _mm512_permutex2var_ps(a, io, b);
}

// The inverse of even_odd: lo|hi = e[0] o[0] e[1] o[1] ... (lo from lanes 0-7 of e and o, hi from 8-15).
__attribute__((target("avx512f"), always_inline)) inline void zip(__m512 e, __m512 o, __m512& lo, __m512& hi) {
  const __m512i il = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i ih = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  lo = _mm512_permutex2var_ps(e, il, o), hi = _mm512_permutex2var_ps(e, ih, o);
}

}  // namespace sal::cpu
