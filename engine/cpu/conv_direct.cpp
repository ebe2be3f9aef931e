// CPU backend: the direct 3x3 convolution (see conv_direct.h).
#include "engine/cpu/conv_direct.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>

#include "engine/cpu/avx512_block.h"
#include "engine/cpu/gemm.h"

namespace sal::cpu {

namespace {

constexpr int kKB = static_cast<int>(kDirectBlockK);
static_assert(kKB == 8, "fma_8x32 (avx512_block.h) adds blocks of 8 output channels");
constexpr int kSpan = 32;  // output positions per block: two 16-lane vectors of the flattened plane

std::atomic<int64_t> g_runs{0};

// Read from SAL_CPU_DIRECT_CONV at the first use, then only changed by set_direct3x3_enabled.
PathSwitch& path_switch() {
  static PathSwitch sw("SAL_CPU_DIRECT_CONV");
  return sw;
}

// Whether an AVX-512 CPU runs the AVX-512 kernel (else the AVX2 one): SAL_CPU_DIRECT_AVX512=0 or
// set_direct3x3_avx512_enabled.
PathSwitch& avx512_switch() {
  static PathSwitch sw("SAL_CPU_DIRECT_AVX512");
  return sw;
}

bool cpu_has_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

bool cpu_has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

bool stride2(const ConvGeom& g) { return g.sh == 2; }

// The taps of one phase of a pass, in the order they are added: tap t reads the input channel's planes at
// off[t] from the block's output position (a phase plane and a row and column shift), with the lane masks
// of its shift (mask[t] = (dr + 1) * 3 + ds + 1), and multiplies by the weight w[..][..][wt[t] / 3][wt[t] % 3].
struct Taps {
  int n = 0;
  int64_t off[9];
  int mask[9], wt[9];
  void add(int64_t plane_off, int dr, int ds, int64_t Q, int r, int s) {
    off[n] = plane_off + dr * Q + ds, mask[n] = (dr + 1) * 3 + ds + 1, wt[n] = r * 3 + s;
    ++n;
  }
};

// Phases of a pass: one, except the stride-2 input gradient's four (phase a*2+b of dx).
int phase_count(const ConvGeom& g, Direct3x3Pass pass) { return stride2(g) && pass == Direct3x3Pass::dgrad ? 4 : 1; }

// The stride-2 input gradient's taps in one dimension for output phase a: (tap, shift of dy).
struct Tap1 {
  int r, d;
};
int taps1(int a, Tap1* t) {
  if (a == 0) return t[0] = {1, 0}, 1;
  return t[0] = {0, 1}, t[1] = {2, 0}, 2;
}

Taps phase_taps(const ConvGeom& g, Direct3x3Pass pass, int phase) {
  Taps t;
  const int64_t Q = g.Q, pq = g.pq();
  const bool fwd = pass == Direct3x3Pass::forward;
  if (!stride2(g)) {
    // forward: tap r reads row p + r - 1; dgrad: tap r of the flipped kernel (added in the order r' = 2 - r,
    // the order of a forward conv with the flipped weights) reads row h + 1 - r.
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) {
        if (fwd) t.add(0, i - 1, j - 1, Q, i, j);
        else t.add(0, i - 1, j - 1, Q, 2 - i, 2 - j);
      }
  } else if (fwd) {
    // row 2p + r - 1: r = 0 -> phase 1 at p - 1, r = 1 -> phase 0 at p, r = 2 -> phase 1 at p
    for (int r = 0; r < 3; ++r)
      for (int s = 0; s < 3; ++s) t.add(((r != 1) * 2 + (s != 1)) * pq, -(r == 0), -(s == 0), Q, r, s);
  } else {
    Tap1 tr[2], ts[2];
    const int nr = taps1(phase / 2, tr), ns = taps1(phase % 2, ts);
    for (int i = 0; i < nr; ++i)
      for (int j = 0; j < ns; ++j) t.add(0, tr[i].d, ts[j].d, Q, tr[i].r, ts[j].r);
  }
  return t;
}

// The 18 masks of the block at o0, [dr][ds][j]: lane l of vector j is output position o = o0 + 16j + l of
// the flattened [P,Q] plane (row p = o / Q, column q = o % Q) and reads shift (dr, ds) inside the plane when
// p + dr is in [0, P) and q + ds in [0, Q); positions past the plane read nothing.
void block_masks(int64_t o0, int64_t P, int64_t Q, int32_t* m) {
  std::fill(m, m + 18, 0);
  int64_t p = o0 / Q, q = o0 % Q;
  for (int l = 0; l < kSpan; ++l) {
    if (p < P) {
      for (int dr = -1; dr <= 1; ++dr) {
        if (p + dr < 0 || p + dr >= P) continue;
        for (int ds = -1; ds <= 1; ++ds)
          if (q + ds >= 0 && q + ds < Q) m[((dr + 1) * 3 + ds + 1) * 2 + l / 16] |= 1 << (l % 16);
      }
    }
    if (++q == Q) q = 0, ++p;
  }
}

// Positions [o0, o0 + 32) of the P x Q plane, 8 output channels: acc[k][j] over all cin * T taps.
// x: the input's first channel (channel stride cstride), wp: [cin][T][8]; mask: this block's 18 lane masks;
// y: the first output channel's plane (channel stride ostride), kn of its 8 channels stored.
template <int T>
__attribute__((target("avx512f"))) void block_span(const Taps& tp, int64_t cin, int64_t cstride, const int32_t* mask,
                                                   const float* x, const float* wp, int64_t o0, int64_t pq, float* y,
                                                   int64_t ostride, int kn) {
  int64_t off[T];
  __mmask16 m0[T], m1[T];
  for (int t = 0; t < T; ++t) {
    off[t] = o0 + tp.off[t];
    m0[t] = static_cast<__mmask16>(mask[tp.mask[t] * 2]);
    m1[t] = static_cast<__mmask16>(mask[tp.mask[t] * 2 + 1]);
  }
  __m512 acc[kKB][2];
#pragma GCC unroll 8
  for (int k = 0; k < kKB; ++k) acc[k][0] = acc[k][1] = _mm512_setzero_ps();
  for (int64_t c = 0; c < cin; ++c) {
    const float* xc = x + c * cstride;
    const float* wc = wp + c * T * kKB;
#pragma GCC unroll 9
    for (int t = 0; t < T; ++t) {
      // Lane l of vector j reads xc[off[t] + 16j + l]; masked-out lanes are not read (masked loads do not
      // fault).
      const float* src = xc + off[t];
      const __m512 v0 = _mm512_maskz_loadu_ps(m0[t], src);
      const __m512 v1 = _mm512_maskz_loadu_ps(m1[t], src + 16);
      fma_8x32(acc, wc + t * kKB, v0, v1);
    }
  }
  const int64_t left = pq - o0;  // positions of the plane from o0 on
  const __mmask16 st0 = first_lanes(left), st1 = first_lanes(left - 16);
  for (int k = 0; k < kn; ++k) {
    float* yk = y + k * ostride + o0;
    _mm512_mask_storeu_ps(yk, st0, acc[k][0]);
    _mm512_mask_storeu_ps(yk + 16, st1, acc[k][1]);
  }
}

// The AVX2 + FMA kernel (16 registers of 8 lanes). Eight accumulators (8 channels x 8 positions) would be a
// single FMA chain per register, which the FMA latency (4 cycles, 2 per cycle) leaves no slack in: measured at
// 42-53% of the cores' peak. So a step is 4 output channels x 24 positions (three vectors): 12 accumulators,
// 3 input vectors and a broadcast weight. Its lane masks come per span of 24 positions, kMaskShifts shifts of
// 24 lanes each (-1: read), from direct3x3_masks. The sums run in the order of block_span (c, then the taps,
// from zero), so both kernels give the same bits.
constexpr int kSpan2 = 24;      // positions per AVX2 step
constexpr int kMaskShifts = 9;  // (dr + 1) * 3 + ds + 1

// Positions [o0, o0 + 24) of the P x Q plane, output channels [4h, 4h + kn) of the block (kn <= 4);
// masks: this span's [9][24]; wp, y, x as in block_span.
template <int T>
__attribute__((target("avx2,fma"))) void span_avx2(const Taps& tp, int64_t cin, int64_t cstride, const int32_t* masks,
                                                   const float* x, const float* wp, int h, int64_t o0, int64_t pq,
                                                   float* y, int64_t ostride, int kn) {
  int64_t off[T];
  const int32_t* m[T];
  for (int t = 0; t < T; ++t) off[t] = o0 + tp.off[t], m[t] = masks + tp.mask[t] * kSpan2;
  __m256 acc[4][3];
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) acc[k][0] = acc[k][1] = acc[k][2] = _mm256_setzero_ps();
  for (int64_t c = 0; c < cin; ++c) {
    const float* xc = x + c * cstride;
    const float* wc = wp + c * T * kKB + 4 * h;
#pragma GCC unroll 9
    for (int t = 0; t < T; ++t) {
      // masked-out lanes are not read (padding, row ends, past the plane)
      const float* src = xc + off[t];
      const __m256 v0 = _mm256_maskload_ps(src, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m[t])));
      const __m256 v1 = _mm256_maskload_ps(src + 8, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m[t] + 8)));
      const __m256 v2 = _mm256_maskload_ps(src + 16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m[t] + 16)));
      const float* wt = wc + t * kKB;
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const __m256 wv = _mm256_broadcast_ss(wt + k);
        acc[k][0] = _mm256_fmadd_ps(wv, v0, acc[k][0]);
        acc[k][1] = _mm256_fmadd_ps(wv, v1, acc[k][1]);
        acc[k][2] = _mm256_fmadd_ps(wv, v2, acc[k][2]);
      }
    }
  }
  const int64_t left = pq - o0;  // positions of the plane from o0 on
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int v = 0; v < 3; ++v) {
    const __m256i st = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(left - 8 * v, 8))), lane);
    for (int k = 0; k < kn; ++k) _mm256_maskstore_ps(y + (4 * h + k) * ostride + o0 + 8 * v, st, acc[k][v]);
  }
}

// The AVX2 masks of the span at o0 -> m:[9][24] (as block_masks, one int32 per lane).
void span_masks(int64_t o0, int64_t P, int64_t Q, int32_t* m) {
  std::fill(m, m + kMaskShifts * kSpan2, 0);
  int64_t p = o0 / Q, q = o0 % Q;
  for (int l = 0; l < kSpan2 && p < P; ++l) {
    for (int dr = -1; dr <= 1; ++dr) {
      if (p + dr < 0 || p + dr >= P) continue;
      for (int ds = -1; ds <= 1; ++ds)
        if (q + ds >= 0 && q + ds < Q) m[((dr + 1) * 3 + ds + 1) * kSpan2 + l] = -1;
    }
    if (++q == Q) q = 0, ++p;
  }
}

// Every block of the P x Q plane for one phase: kn output channels from in (cin channels, stride cstride).
void phase_blocks(const ConvGeom& g, const Taps& tp, const int32_t* masks, int64_t cin, int64_t cstride,
                  const float* in, const float* wp, float* out, int64_t ostride, int kn) {
  const int64_t pq = g.pq();
  if (direct3x3_isa() != DirectIsa::Avx512) {
    for (int64_t b = 0; b * kSpan2 < pq; ++b) {
      const int32_t* m = masks + b * kMaskShifts * kSpan2;
      for (int h = 0; 4 * h < kn; ++h) {
        const int n4 = std::min(4, kn - 4 * h);
        switch (tp.n) {
          case 9: span_avx2<9>(tp, cin, cstride, m, in, wp, h, b * kSpan2, pq, out, ostride, n4); break;
          case 4: span_avx2<4>(tp, cin, cstride, m, in, wp, h, b * kSpan2, pq, out, ostride, n4); break;
          case 2: span_avx2<2>(tp, cin, cstride, m, in, wp, h, b * kSpan2, pq, out, ostride, n4); break;
          default: span_avx2<1>(tp, cin, cstride, m, in, wp, h, b * kSpan2, pq, out, ostride, n4); break;
        }
      }
    }
    return;
  }
  for (int64_t b = 0; b * kSpan < pq; ++b) {
    const int32_t* m = masks + b * 18;
    const int64_t o0 = b * kSpan;
    switch (tp.n) {
      case 9: block_span<9>(tp, cin, cstride, m, in, wp, o0, pq, out, ostride, kn); break;
      case 4: block_span<4>(tp, cin, cstride, m, in, wp, o0, pq, out, ostride, kn); break;
      case 2: block_span<2>(tp, cin, cstride, m, in, wp, o0, pq, out, ostride, kn); break;
      default: block_span<1>(tp, cin, cstride, m, in, wp, o0, pq, out, ostride, kn); break;
    }
  }
}

// row:[2n] -> even:[n], odd:[n] (even[j] = row[2j], odd[j] = row[2j + 1])
__attribute__((target("avx512f"))) void deinterleave_avx512(const float* row, int64_t n, float* even, float* odd) {
  for (int64_t j = 0; j < n; j += 16) {
    const int64_t m = std::min<int64_t>(16, n - j);
    const __m512 a = _mm512_maskz_loadu_ps(first_lanes(2 * m), row + 2 * j);
    const __m512 b = _mm512_maskz_loadu_ps(first_lanes(2 * m - 16), row + 2 * j + 16);
    __m512 e, o;
    even_odd(a, b, e, o);
    _mm512_mask_storeu_ps(even + j, first_lanes(m), e);
    _mm512_mask_storeu_ps(odd + j, first_lanes(m), o);
  }
}

// even:[n], odd:[n] -> row:[2n] (the inverse of deinterleave)
__attribute__((target("avx512f"))) void interleave_avx512(const float* even, const float* odd, int64_t n, float* row) {
  for (int64_t j = 0; j < n; j += 16) {
    const int64_t m = std::min<int64_t>(16, n - j);
    __m512 lo, hi;
    zip(_mm512_maskz_loadu_ps(first_lanes(m), even + j), _mm512_maskz_loadu_ps(first_lanes(m), odd + j), lo, hi);
    _mm512_mask_storeu_ps(row + 2 * j, first_lanes(2 * m), lo);
    _mm512_mask_storeu_ps(row + 2 * j + 16, first_lanes(2 * m - 16), hi);
  }
}

// The same two on any CPU (the AVX2 kernel's; the loops are a small part of a layer's time).
void deinterleave(const float* row, int64_t n, float* even, float* odd) {
  if (direct3x3_isa() == DirectIsa::Avx512) return deinterleave_avx512(row, n, even, odd);
  for (int64_t j = 0; j < n; ++j) even[j] = row[2 * j], odd[j] = row[2 * j + 1];
}

void interleave(const float* even, const float* odd, int64_t n, float* row) {
  if (direct3x3_isa() == DirectIsa::Avx512) return interleave_avx512(even, odd, n, row);
  for (int64_t j = 0; j < n; ++j) row[2 * j] = even[j], row[2 * j + 1] = odd[j];
}

}  // namespace

DirectIsa direct3x3_isa() {
  if (cpu_has_avx512() && avx512_switch().on()) return DirectIsa::Avx512;
  return cpu_has_avx2() ? DirectIsa::Avx2 : DirectIsa::None;
}

bool direct3x3_available() { return direct3x3_isa() != DirectIsa::None; }

void set_direct3x3_avx512_enabled(bool on) { avx512_switch().set(on); }

bool direct3x3_avx512_enabled() { return avx512_switch().on(); }

void set_direct3x3_enabled(bool on) { path_switch().set(on); }

bool direct3x3_enabled() { return path_switch().on(); }

bool direct3x3_applies(const ConvGeom& g) {
  const bool kernel = g.R == 3 && g.S == 3 && g.dh == 1 && g.dw == 1 && g.pt == 1 && g.pl == 1 && g.G == 1;
  const bool same = g.sh == 1 && g.sw == 1 && g.P == g.H && g.Q == g.W;
  const bool halving = g.sh == 2 && g.sw == 2 && g.H == 2 * g.P && g.W == 2 * g.Q;
  const int64_t lanes = (g.pq() + kSpan - 1) / kSpan * kSpan;
  const bool plane = g.pq() > 0 && g.pq() * 8 >= lanes * 7;
  // At stride 2 the GEMM path catches up by 128 channels (each tap's loads come from one of four phase
  // planes, more cache lines per FMA than at stride 1): ResNet-50's 128-channel halving layer runs 0.8x.
  int64_t most = halving ? 64 : 128;
  // The AVX2 kernel (2-core AMD EPYC, Zen 3; conv_cpu_bench) beat the GEMM path by 1.1-2.0x at 16 to 32 channels
  // on every plane tried (8x8 to 112x112) and at 64 on 8x8 to 16x16 planes (CIFAR's), and lost at 64 on 28x28
  // (0.83x forward) and 56x56 (0.72x) and at 128 (0.65x): OpenBLAS's AVX2 GEMM is closer to its peak there.
  if (direct3x3_isa() == DirectIsa::Avx2) most = g.pq() <= 256 ? 64 : 32;
  const bool channels = g.C >= 8 && g.C <= most && g.K >= 8 && g.K <= most;
  // Emulated TF32 / bf16 operands (engine/cpu/gemm.h) are rounded in the GEMMs, which this kernel is not: with
  // either on, every conv goes the GEMM way, so the emulation covers the layers this kernel (and Winograd, which
  // asks here first) would take. (From session 8 to 15 it did not: CIFAR's 3x3 layers ran unrounded.)
  const bool exact = !emulate_tf32() && !emulate_bf16();
  return kernel && (same || halving) && plane && channels && exact && direct3x3_available() && direct3x3_enabled();
}

int64_t direct3x3_blocks(const ConvGeom& g, Direct3x3Pass pass) {
  return ((pass == Direct3x3Pass::forward ? g.K : g.C) + kKB - 1) / kKB;
}

int64_t direct3x3_packed_size(const ConvGeom& g, Direct3x3Pass pass) {
  return direct3x3_blocks(g, pass) * (pass == Direct3x3Pass::forward ? g.C : g.K) * 9 * kKB;
}

int64_t direct3x3_runs() { return g_runs.load(); }

void direct3x3_pack(const ConvGeom& g, Direct3x3Pass pass, const float* w, float* wp) {
  g_runs.fetch_add(1);
  const bool fwd = pass == Direct3x3Pass::forward;
  const int64_t cout = fwd ? g.K : g.C, cin = fwd ? g.C : g.K;
  std::fill(wp, wp + direct3x3_packed_size(g, pass), 0.f);
  float* dst = wp;
  for (int64_t b = 0; b < direct3x3_blocks(g, pass); ++b)
    for (int ph = 0; ph < phase_count(g, pass); ++ph) {
      const Taps tp = phase_taps(g, pass, ph);
      for (int64_t i = 0; i < cin; ++i)
        for (int t = 0; t < tp.n; ++t, dst += kKB)
          for (int64_t j = 0; j < kKB && b * kKB + j < cout; ++j) {
            const int64_t o = b * kKB + j, k = fwd ? o : i, c = fwd ? i : o;  // w[k][c] of the forward conv
            dst[j] = w[(k * g.C + c) * 9 + tp.wt[t]];
          }
    }
}

int64_t direct3x3_mask_count(const ConvGeom& g) {
  if (direct3x3_isa() != DirectIsa::Avx512) return (g.pq() + kSpan2 - 1) / kSpan2 * kMaskShifts * kSpan2;
  return (g.pq() + kSpan - 1) / kSpan * 18;
}

void direct3x3_masks(const ConvGeom& g, int32_t* masks) {
  if (direct3x3_isa() != DirectIsa::Avx512) {
    for (int64_t b = 0; b * kSpan2 < g.pq(); ++b) span_masks(b * kSpan2, g.P, g.Q, masks + b * kMaskShifts * kSpan2);
    return;
  }
  for (int64_t b = 0; b * kSpan < g.pq(); ++b) block_masks(b * kSpan, g.P, g.Q, masks + b * 18);
}

bool direct3x3_splits_input(const ConvGeom& g, Direct3x3Pass pass) {
  return stride2(g) && pass == Direct3x3Pass::forward;
}

// x:[H,W] -> xs:[4][P][Q], xs[a*2+b][i][j] = x[2i+a][2j+b]
void direct3x3_split_plane(const ConvGeom& g, const float* x, float* xs) {
  const int64_t P = g.P, Q = g.Q, pq = g.pq(), W = g.W;
  for (int64_t i = 0; i < P; ++i)
    for (int a = 0; a < 2; ++a) {
      const float* row = x + (2 * i + a) * W;
      float* even = xs + (a * 2) * pq + i * Q;  // phase (a, 0); phase (a, 1) is a plane further
      deinterleave(row, Q, even, even + pq);
    }
}

int64_t direct3x3_task_scratch(const ConvGeom& g, Direct3x3Pass pass) {
  return phase_count(g, pass) == 4 ? kKB * 4 * g.pq() : 0;
}

void direct3x3_block(const ConvGeom& g, Direct3x3Pass pass, const int32_t* masks, const float* in, const float* wp,
                     int64_t b, float* out, float* scratch) {
  const bool fwd = pass == Direct3x3Pass::forward;
  const int64_t cout = fwd ? g.K : g.C, cin = fwd ? g.C : g.K, pq = g.pq();
  const int64_t cstride = fwd ? g.hw() : pq, out_plane = fwd ? pq : g.hw();
  const int kn = static_cast<int>(std::min<int64_t>(kKB, cout - b * kKB));
  const float* wpb = wp + b * cin * 9 * kKB;
  float* ob = out + b * kKB * out_plane;
  const int phases = phase_count(g, pass);
  if (phases == 1) return phase_blocks(g, phase_taps(g, pass, 0), masks, cin, cstride, in, wpb, ob, out_plane, kn);
  // The stride-2 input gradient: phase a*2+b of channel j into scratch[j][a*2+b], then dx[2i+a][2j+b].
  for (int ph = 0; ph < 4; ++ph) {
    const Taps tp = phase_taps(g, pass, ph);
    phase_blocks(g, tp, masks, cin, cstride, in, wpb, scratch + ph * pq, 4 * pq, kn);
    wpb += cin * tp.n * kKB;
  }
  const int64_t P = g.P, Q = g.Q, W = g.W;
  for (int j = 0; j < kn; ++j)
    for (int64_t i = 0; i < P; ++i)
      for (int a = 0; a < 2; ++a) {
        const float* even = scratch + (j * 4 + a * 2) * pq + i * Q;
        interleave(even, even + pq, Q, ob + j * out_plane + (2 * i + a) * W);
      }
}

}  // namespace sal::cpu
