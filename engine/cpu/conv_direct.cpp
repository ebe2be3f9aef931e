// CPU backend: the direct 3x3 convolution (see conv_direct.h).
#include "engine/cpu/conv_direct.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace sal::cpu {

namespace {

constexpr int kKB = static_cast<int>(kDirectBlockK);
constexpr int kSpan = 32;  // output positions per block: two 16-lane vectors of the flattened plane

std::atomic<int64_t> g_runs{0};

// Read from SAL_CPU_DIRECT_CONV at the first use, then only changed by set_direct3x3_enabled.
std::atomic<bool>& enabled_flag() {
  static std::atomic<bool> flag{[] {
    const char* e = std::getenv("SAL_CPU_DIRECT_CONV");
    return !(e && std::strcmp(e, "0") == 0);
  }()};
  return flag;
}

// The 18 masks of the block at o0, [r][s][j]: lane l of vector j is output position o = o0 + 16j + l of the
// flattened [H,W] plane (row p = o / W, column q = o % W) and reads tap (r, s) inside the image when row
// p + r - 1 is in [0, H) and column q + s - 1 in [0, W); positions past the plane read nothing.
void block_masks(int64_t o0, int64_t H, int64_t W, int32_t* m) {
  std::fill(m, m + 18, 0);
  int64_t p = o0 / W, q = o0 % W;
  for (int l = 0; l < kSpan; ++l) {
    if (p < H) {
      for (int r = 0; r < 3; ++r) {
        const int64_t h = p + r - 1;
        if (h < 0 || h >= H) continue;
        for (int s = 0; s < 3; ++s) {
          const int64_t c = q + s - 1;
          if (c >= 0 && c < W) m[(r * 3 + s) * 2 + l / 16] |= 1 << (l % 16);
        }
      }
    }
    if (++q == W) q = 0, ++p;
  }
}

// Positions [o0, o0 + 32) of the plane, 8 output channels: acc[k][j] over all C*9 taps.
// mask: this block's 18 lane masks, [r][s][j].
__attribute__((target("avx512f"))) void block_span(const ConvGeom& g, const int32_t* mask, const float* x,
                                                   const float* wp, int64_t o0, float* y, int kn) {
  const int64_t W = g.W, hw = g.H * W, C = g.C;
  __m512 acc[kKB][2];
#pragma GCC unroll 8
  for (int k = 0; k < kKB; ++k) acc[k][0] = acc[k][1] = _mm512_setzero_ps();
  for (int64_t c = 0; c < C; ++c) {
    const float* xc = x + c * hw + o0;
    const float* wc = wp + c * 9 * kKB;
#pragma GCC unroll 3
    for (int r = 0; r < 3; ++r) {
#pragma GCC unroll 3
      for (int s = 0; s < 3; ++s) {
        // Lane l of vector j reads x[c][p + r - 1][q + s - 1] = xc[16j + l + (r - 1) W + s - 1]; masked-out
        // lanes are not read (masked loads do not fault).
        const float* src = xc + (r - 1) * W + (s - 1);
        const __m512 v0 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(mask[(r * 3 + s) * 2]), src);
        const __m512 v1 = _mm512_maskz_loadu_ps(static_cast<__mmask16>(mask[(r * 3 + s) * 2 + 1]), src + 16);
        const float* wt = wc + (r * 3 + s) * kKB;
#pragma GCC unroll 8
        for (int k = 0; k < kKB; ++k) {
          const __m512 wv = _mm512_set1_ps(wt[k]);
          acc[k][0] = _mm512_fmadd_ps(wv, v0, acc[k][0]);
          acc[k][1] = _mm512_fmadd_ps(wv, v1, acc[k][1]);
        }
      }
    }
  }
  const int64_t left = hw - o0;  // positions of the plane from o0 on
  const __mmask16 st0 = static_cast<__mmask16>(left >= 16 ? 0xFFFFu : (1u << left) - 1u);
  const __mmask16 st1 = static_cast<__mmask16>(left >= 32 ? 0xFFFFu : left <= 16 ? 0u : (1u << (left - 16)) - 1u);
  for (int k = 0; k < kn; ++k) {
    float* yk = y + k * hw + o0;
    _mm512_mask_storeu_ps(yk, st0, acc[k][0]);
    _mm512_mask_storeu_ps(yk + 16, st1, acc[k][1]);
  }
}

}  // namespace

bool direct3x3_available() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

void set_direct3x3_enabled(bool on) { enabled_flag().store(on); }

bool direct3x3_enabled() { return enabled_flag().load(); }

bool direct3x3_applies(const ConvGeom& g) {
  const bool shape = g.R == 3 && g.S == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.pt == 1 &&
                     g.pl == 1 && g.P == g.H && g.Q == g.W && g.G == 1;
  const int64_t lanes = (g.hw() + kSpan - 1) / kSpan * kSpan;
  const bool plane = g.hw() > 0 && g.hw() * 8 >= lanes * 7;
  const bool channels = g.C >= 8 && g.C <= 128 && g.K >= 8 && g.K <= 128;
  return shape && plane && channels && direct3x3_available() && direct3x3_enabled();
}

int64_t direct3x3_packed_size(const ConvGeom& g) { return (g.K + kKB - 1) / kKB * g.C * 9 * kKB; }

int64_t direct3x3_runs() { return g_runs.load(); }

void direct3x3_pack(const ConvGeom& g, const float* w, bool flip, float* wp) {
  g_runs.fetch_add(1);
  std::fill(wp, wp + direct3x3_packed_size(g), 0.f);
  for (int64_t k = 0; k < g.K; ++k)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t t = 0; t < 9; ++t) {
        // forward: w[k][c][t]; flipped: the transposed conv's w[c][k][8 - t] (r, s -> 2 - r, 2 - s)
        const float v = flip ? w[(c * g.K + k) * 9 + (8 - t)] : w[(k * g.C + c) * 9 + t];
        wp[(((k / kKB) * g.C + c) * 9 + t) * kKB + k % kKB] = v;
      }
}

int64_t direct3x3_mask_count(const ConvGeom& g) { return (g.hw() + kSpan - 1) / kSpan * 18; }

void direct3x3_masks(const ConvGeom& g, int32_t* masks) {
  for (int64_t b = 0; b * kSpan < g.hw(); ++b) block_masks(b * kSpan, g.H, g.W, masks + b * 18);
}

void direct3x3_block(const ConvGeom& g, const int32_t* masks, const float* x, const float* wp, int64_t kb, float* y) {
  const int kn = static_cast<int>(std::min<int64_t>(kKB, g.K - kb * kKB));
  const float* wpk = wp + kb * g.C * 9 * kKB;
  float* yk = y + kb * kKB * g.hw();
  for (int64_t b = 0; b * kSpan < g.hw(); ++b) block_span(g, masks + b * 18, x, wpk, b * kSpan, yk, kn);
}

}  // namespace sal::cpu
