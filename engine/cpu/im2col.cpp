// im2col / col2im: lowering a convolution to GEMM.
//   x: [nb images][Cg][H][W] (one group, image stride C*H*W)  <->  col: [Cg*R*S][nb*P*Q]
// Row (c, r, s) of col holds, for every output pixel (b, p, q), the input value under tap
// (r, s): x[b, c, p*sh - pt + r*dh, q*sw - pl + s*dw], or 0 in the padding.
//
// Why it is written this way: each col row is produced one output row (Q values) at a time;
// the valid q range of a tap is computed once per row, so the inner loop has no bounds tests
// and, at stride 1, is a plain memcpy of a contiguous input row. im2col parallelises over col
// rows (each thread writes its own rows); col2im over (image, channel) planes (each thread
// scatters into its own plane), so neither needs atomics.
#include "engine/cpu/im2col.h"

#include <algorithm>
#include <cstring>

#include "engine/cpu/dispatch.h"

namespace sal::cpu {

template <class T>
void im2col(const ConvGeom& g, const T* x, int64_t nb, T* col, int64_t ldcol, bool parallel) {
  const int64_t rows = g.crs(), rs = g.R * g.S, hw = g.hw(), pq = g.pq(), img = g.C * hw;
  const int64_t Q = g.Q;
  const bool par = parallel && rows * nb * pq > SAL_OMP_MIN_WORK;
#pragma omp parallel for if (par) schedule(static)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t c = row / rs, r = (row / g.S) % g.R, s = row % g.S;
    const int64_t off_w = s * g.dw - g.pl;
    const QRange qr = valid_q(off_w, g.sw, g.W, Q);
    for (int64_t b = 0; b < nb; ++b) {
      const T* src = x + b * img + c * hw;
      T* dst = col + row * ldcol + b * pq;
      for (int64_t p = 0; p < g.P; ++p, dst += Q) {
        const int64_t h = p * g.sh - g.pt + r * g.dh;
        if (h < 0 || h >= g.H) {
          std::fill(dst, dst + Q, T(0));
          continue;
        }
        const T* srow = src + h * g.W;
        std::fill(dst, dst + qr.lo, T(0));
        if (g.sw == 1) {
          if (qr.hi > qr.lo)
            std::memcpy(dst + qr.lo, srow + qr.lo + off_w, static_cast<size_t>(qr.hi - qr.lo) * sizeof(T));
        } else {
          for (int64_t q = qr.lo; q < qr.hi; ++q) dst[q] = srow[q * g.sw + off_w];
        }
        std::fill(dst + qr.hi, dst + Q, T(0));
      }
    }
  }
}

template <class T>
void col2im(const ConvGeom& g, const T* col, int64_t ldcol, int64_t nb, T* dx, bool parallel) {
  const int64_t hw = g.hw(), pq = g.pq(), img = g.C * hw, planes = nb * g.Cg;
  const bool par = parallel && planes * g.R * g.S * pq > SAL_OMP_MIN_WORK;
#pragma omp parallel for if (par) schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const int64_t b = plane / g.Cg, c = plane % g.Cg;
    T* dst = dx + b * img + c * hw;
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
