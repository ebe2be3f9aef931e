// im2col / col2im: lowering a convolution to GEMM.
//   x: [nb images][Cg][H][W] (one group, image stride C*H*W)  <->  col: [Cg*R*S][nb*P*Q]
// Row (c, r, s) of col holds, for every output pixel (b, p, q), the input value under tap
// (r, s): x[b, c, p*sh - pt + r*dh, q*sw - pl + s*dw], or 0 in the padding.
//
// Why it is written this way: the valid output rows and columns of a tap are computed once per
// col row, so the inner loops have no bounds tests; on AVX-512 machines each output row of a
// tap is one masked load and store per 16 floats (a gather at column stride > 1), the masks
// supplying the padding zeros. col2im is computed as a gather (each dx row summed in registers
// over the taps and stored once) rather than a scatter. im2col parallelises over col rows,
// col2im over (image, channel) planes: each thread writes its own memory, no atomics.
#include "engine/cpu/im2col.h"

#include <algorithm>
#include <immintrin.h>
#include <omp.h>

#include <cstdint>
#include <type_traits>

#include "engine/cpu/dispatch.h"

namespace sal::cpu {

namespace {

// Rows [row_begin, row_end) of col. Inlined into the per-ISA clones below.
template <class T>
inline __attribute__((always_inline)) void im2col_rows(const ConvGeom& g, const T* x, int64_t nb, T* col,
                                                       int64_t ldcol, int64_t row_begin, int64_t row_end) {
  const int64_t rs = g.R * g.S, hw = g.hw(), pq = g.pq(), img = g.C * hw, Q = g.Q;
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t c = row / rs, r = (row / g.S) % g.R, s = row % g.S;
    const int64_t off_w = s * g.dw - g.pl;
    const QRange qr = valid_q(off_w, g.sw, g.W, Q);
    // Output rows p in [pr.lo, pr.hi) read an input row inside the image.
    const int64_t off_h = r * g.dh - g.pt;
    const QRange pr = valid_q(off_h, g.sh, g.H, g.P);
    for (int64_t b = 0; b < nb; ++b) {
      const T* src = x + b * img + c * hw;
      T* dst = col + row * ldcol + b * pq;
      for (int64_t i = 0; i < pr.lo * Q; ++i) dst[i] = T(0);
      for (int64_t p = pr.lo; p < pr.hi; ++p) {
        T* d = dst + p * Q;
        const T* srow = src + (p * g.sh + off_h) * g.W;
        for (int64_t q = 0; q < qr.lo; ++q) d[q] = T(0);
        if (g.sw == 1) {
          const T* sp = srow + off_w;
          for (int64_t q = qr.lo; q < qr.hi; ++q) d[q] = sp[q];
        } else {
          for (int64_t q = qr.lo; q < qr.hi; ++q) d[q] = srow[q * g.sw + off_w];
        }
        for (int64_t q = qr.hi; q < Q; ++q) d[q] = T(0);
      }
      for (int64_t i = pr.hi * Q; i < pq; ++i) dst[i] = T(0);
    }
  }
}

// The build targets baseline x86-64 (SSE2); these copies of the row loop are also compiled for
// AVX2 and AVX-512 and picked at load time. GCC would turn the short copy and zero loops into
// memcpy/memset calls; with rows of 8 to 32 floats (small images) the calls cost more than the
// copies (perf on a 16x16 conv: 40% of the time in memcpy/memset and their PLT stubs), so that
// pattern replacement is off here.
#define SAL_IM2COL_CLONES \
  __attribute__((target_clones("avx512f", "avx2", "default"), optimize("no-tree-loop-distribute-patterns")))

SAL_IM2COL_CLONES void im2col_rows_isa(const ConvGeom& g, const float* x, int64_t nb, float* col, int64_t ldcol,
                                       int64_t row_begin, int64_t row_end) {
  im2col_rows<float>(g, x, nb, col, ldcol, row_begin, row_end);
}
SAL_IM2COL_CLONES void im2col_rows_isa(const ConvGeom& g, const double* x, int64_t nb, double* col, int64_t ldcol,
                                       int64_t row_begin, int64_t row_end) {
  im2col_rows<double>(g, x, nb, col, ldcol, row_begin, row_end);
}

// Lanes j of a 16-float vector with lo <= j < hi.
inline uint32_t lane_mask(int64_t lo, int64_t hi) {
  lo = std::clamp<int64_t>(lo, 0, 16);
  hi = std::clamp<int64_t>(hi, 0, 16);
  return hi <= lo ? 0u : ((1u << hi) - 1u) & ~((1u << lo) - 1u);
}

// AVX-512 im2col rows: each output row of a tap is one masked load per 16 floats (zeros in the
// padding come from the mask, no bounds branches), or at column stride > 1 one masked gather.
// The masks depend only on the tap, so they are computed once per col row.
__attribute__((target("avx512f"))) void im2col_rows_avx512(const ConvGeom& g, const float* x, int64_t nb,
                                                             float* col, int64_t ldcol, int64_t row_begin,
                                                             int64_t row_end) {
  const int64_t rs = g.R * g.S, hw = g.hw(), pq = g.pq(), img = g.C * hw, Q = g.Q;
  const int64_t chunks = (Q + 15) / 16;
  constexpr int64_t kMaxChunks = 64;  // rows up to 1024 columns keep their masks on the stack
  __mmask16 keep[kMaxChunks], valid[kMaxChunks];
  const __m512i lane_step = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                               _mm512_set1_epi32(static_cast<int>(g.sw)));
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t c = row / rs, r = (row / g.S) % g.R, s = row % g.S;
    const int64_t off_w = s * g.dw - g.pl;
    const QRange qr = valid_q(off_w, g.sw, g.W, Q);
    const int64_t off_h = r * g.dh - g.pt;
    const QRange pr = valid_q(off_h, g.sh, g.H, g.P);
    const int64_t nm = std::min(chunks, kMaxChunks);
    for (int64_t k = 0; k < nm; ++k) {
      keep[k] = static_cast<__mmask16>(lane_mask(0, Q - 16 * k));
      valid[k] = static_cast<__mmask16>(lane_mask(qr.lo - 16 * k, qr.hi - 16 * k)) & keep[k];
    }
    for (int64_t b = 0; b < nb; ++b) {
      const float* src = x + b * img + c * hw;
      float* dst = col + row * ldcol + b * pq;
      for (int64_t i = 0; i < pr.lo * Q; ++i) dst[i] = 0.f;
      // sp[q * sw] is the input under output column q (only read where valid).
      const float* sp = src + (pr.lo * g.sh + off_h) * g.W + off_w;
      float* d = dst + pr.lo * Q;
      const int64_t sstep = g.sh * g.W;
      if (g.sw == 1 && Q <= 16) {  // small images: one vector per output row
        for (int64_t p = pr.lo; p < pr.hi; ++p, sp += sstep, d += Q)
          _mm512_mask_storeu_ps(d, keep[0], _mm512_maskz_loadu_ps(valid[0], sp));
      } else {
        for (int64_t p = pr.lo; p < pr.hi; ++p, sp += sstep, d += Q) {
          for (int64_t k = 0; k < chunks; ++k) {
            const int64_t q0 = 16 * k;
            const __mmask16 kp = k < kMaxChunks ? keep[k] : static_cast<__mmask16>(lane_mask(0, Q - q0));
            const __mmask16 vl =
                k < kMaxChunks ? valid[k]
                               : static_cast<__mmask16>(lane_mask(qr.lo - q0, qr.hi - q0)) & kp;
            __m512 v;
            if (g.sw == 1) {
              v = _mm512_maskz_loadu_ps(vl, sp + q0);
            } else {
              v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), vl, lane_step, sp + q0 * g.sw, 4);
            }
            _mm512_mask_storeu_ps(d + q0, kp, v);
          }
        }
      }
      for (int64_t i = pr.hi * Q; i < pq; ++i) dst[i] = 0.f;
    }
  }
}

// One dx plane of width W <= 16*NW (NW vectors per row, kept in registers), S <= 16.
template <int NW>
__attribute__((target("avx512f"))) inline void col2im_plane_small(const ConvGeom& g, const float* cbase,
                                                                    int64_t ldcol, float* dst) {
  const int64_t Q = g.Q, W = g.W;
  __mmask16 ms[16][NW];
  for (int64_t s = 0; s < g.S; ++s) {
    const int64_t qoff = g.pl - s * g.dw;
    for (int k = 0; k < NW; ++k)
      ms[s][k] = static_cast<__mmask16>(lane_mask(-qoff - 16 * k, Q - qoff - 16 * k) & lane_mask(0, W - 16 * k));
  }
  for (int64_t h = 0; h < g.H; ++h) {
    __m512 acc[NW];
    for (int k = 0; k < NW; ++k) acc[k] = _mm512_setzero_ps();
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t t = h + g.pt - r * g.dh;
      if (t < 0) break;  // t only falls as r grows
      int64_t p = t;
      if (g.sh != 1) {
        if (t % g.sh != 0) continue;
        p = t / g.sh;
      }
      if (p >= g.P) continue;
      // Lane j of vector k is w = 16k + j, reading q = w + pl - s*dw of tap row (c, r, s).
      const float* crow = cbase + r * g.S * ldcol + p * Q + g.pl;
      for (int64_t s = 0; s < g.S; ++s) {
        const float* cs = crow + s * (ldcol - g.dw);
        for (int k = 0; k < NW; ++k) acc[k] = _mm512_add_ps(acc[k], _mm512_maskz_loadu_ps(ms[s][k], cs + 16 * k));
      }
    }
    for (int k = 0; k < NW; ++k)
      _mm512_mask_storeu_ps(dst + h * W + 16 * k, static_cast<__mmask16>(lane_mask(0, W - 16 * k)), acc[k]);
  }
}

// The adjoint for stride-1 columns, written as a gather so that dx is stored once and never
// read back: dx[h, w] = sum over taps (r, s) of col[(c,r,s), p, q] with p*sh = h + pt - r*dh,
// q = w + pl - s*dw, for the taps where p and q exist. (A scatter form, dx += col row by row,
// measured 3x slower on 8x8 planes: each masked store was read back by the next tap's load.)
// Overwrites planes [plane_begin, plane_end) of nb*Cg (image, channel).
__attribute__((target("avx512f"))) void col2im_planes_w1_avx512(const ConvGeom& g, const float* col, int64_t ldcol,
                                                                  float* dx, int64_t plane_begin, int64_t plane_end) {
  const int64_t hw = g.hw(), pq = g.pq(), img = g.C * hw, Q = g.Q, W = g.W;
  for (int64_t plane = plane_begin; plane < plane_end; ++plane) {
    const int64_t b = plane / g.Cg, c = plane % g.Cg;
    float* dst = dx + b * img + c * hw;
    const float* cbase = col + c * g.R * g.S * ldcol + b * pq;
    if (W <= 64 && g.S <= 16) {
      const int64_t nw = (W + 15) / 16;
      if (nw == 1) col2im_plane_small<1>(g, cbase, ldcol, dst);
      else if (nw == 2) col2im_plane_small<2>(g, cbase, ldcol, dst);
      else if (nw == 3) col2im_plane_small<3>(g, cbase, ldcol, dst);
      else col2im_plane_small<4>(g, cbase, ldcol, dst);
      continue;
    }
    for (int64_t h = 0; h < g.H; ++h) {
      for (int64_t w0 = 0; w0 < W; w0 += 16) {
        __m512 acc = _mm512_setzero_ps();
        for (int64_t r = 0; r < g.R; ++r) {
          const int64_t t = h + g.pt - r * g.dh;
          if (t < 0 || t % g.sh != 0 || t / g.sh >= g.P) continue;
          const float* crow = cbase + r * g.S * ldcol + (t / g.sh) * Q;
          for (int64_t s = 0; s < g.S; ++s) {
            // Lane j is w = w0 + j, reading q = w + pl - s*dw, valid for 0 <= q < Q and w < W.
            const int64_t qoff = w0 + g.pl - s * g.dw;
            const __mmask16 m = static_cast<__mmask16>(lane_mask(-qoff, Q - qoff) & lane_mask(0, W - w0));
            acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(m, crow + s * ldcol + qoff));
          }
        }
        _mm512_mask_storeu_ps(dst + h * W + w0, static_cast<__mmask16>(lane_mask(0, W - w0)), acc);
      }
    }
  }
}

bool have_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

}  // namespace

template <class T>
void im2col(const ConvGeom& g, const T* x, int64_t nb, T* col, int64_t ldcol, bool parallel) {
  const int64_t rows = g.crs();
  auto run = [&](int64_t begin, int64_t end) {
    if constexpr (std::is_same_v<T, float>) {
      if (have_avx512()) return im2col_rows_avx512(g, x, nb, col, ldcol, begin, end);
    }
    im2col_rows_isa(g, x, nb, col, ldcol, begin, end);
  };
  if (!(parallel && rows * nb * g.pq() > SAL_OMP_MIN_WORK)) return run(0, rows);
#pragma omp parallel
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    run(rows * t / nt, rows * (t + 1) / nt);
  }
}

template <class T>
void col2im(const ConvGeom& g, const T* col, int64_t ldcol, int64_t nb, T* dx, bool parallel) {
  const int64_t hw = g.hw(), pq = g.pq(), img = g.C * hw, planes = nb * g.Cg;
  const bool par = parallel && planes * g.R * g.S * pq > SAL_OMP_MIN_WORK;
  if constexpr (std::is_same_v<T, float>) {
    if (g.sw == 1 && have_avx512()) {
      if (!par) return col2im_planes_w1_avx512(g, col, ldcol, dx, 0, planes);
#pragma omp parallel
      {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        col2im_planes_w1_avx512(g, col, ldcol, dx, planes * t / nt, planes * (t + 1) / nt);
      }
      return;
    }
  }
#pragma omp parallel for if (par) schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const int64_t b = plane / g.Cg, c = plane % g.Cg;
    T* dst = dx + b * img + c * hw;
    std::fill(dst, dst + hw, T(0));
    for (int64_t r = 0; r < g.R; ++r) {
      for (int64_t s = 0; s < g.S; ++s) {
        const int64_t off_w = s * g.dw - g.pl;
        const QRange qr = valid_q(off_w, g.sw, g.W, g.Q);
        const T* src = col + ((c * g.R + r) * g.S + s) * ldcol + b * pq;
        for (int64_t p = 0; p < g.P; ++p) {
          const int64_t h = p * g.sh - g.pt + r * g.dh;
          if (h < 0 || h >= g.H) continue;
          const T* crow = src + p * g.Q;
          T* drow = dst + h * g.W;
          if (g.sw == 1) {
            for (int64_t q = qr.lo; q < qr.hi; ++q) drow[q + off_w] += crow[q];
          } else {
            for (int64_t q = qr.lo; q < qr.hi; ++q) drow[q * g.sw + off_w] += crow[q];
          }
        }
      }
    }
  }
}

template void im2col<float>(const ConvGeom&, const float*, int64_t, float*, int64_t, bool);
template void im2col<double>(const ConvGeom&, const double*, int64_t, double*, int64_t, bool);
template void col2im<float>(const ConvGeom&, const float*, int64_t, int64_t, float*, bool);
template void col2im<double>(const ConvGeom&, const double*, int64_t, int64_t, double*, bool);

}  // namespace sal::cpu
