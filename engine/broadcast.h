// Host-side broadcast geometry shared by the CPU (engine/cpu/arith.cpp) and CUDA (cuda/arith.cu)
// elementwise kernels: right-aligned element strides of two contiguous row-major operands
// against an output shape, with extent-1 dimensions dropped and neighbours contiguous in both
// operands merged, and the split of the outer dimensions that sum_to reduces. Plain C++ (no device code), so .cu host code can include it.
#pragma once
#include <cstdint>

#include "engine/shape.h"

namespace sal::broadcast {

// Up to kMaxDims dimensions with the element strides of two operands (0 = broadcast / reduced).
struct Geometry {
  int nd = 0;
  int64_t dim[kMaxDims] = {};
  int64_t sa[kMaxDims] = {};
  int64_t sb[kMaxDims] = {};
};

// Element strides of `s` right-aligned against `out`; 0 where s has extent 1 or no dimension.
inline void aligned_strides(const Shape& s, const Shape& out, int64_t* st) {
  const int off = out.nd - s.nd;
  int64_t stride = 1;
  for (int i = out.nd - 1; i >= 0; --i) {
    const int j = i - off;
    const int64_t ext = j >= 0 ? s.d[j] : 1;
    st[i] = ext == 1 ? 0 : stride;
    stride *= ext;
  }
}

// Drops extent-1 dimensions of `out` and merges neighbours contiguous in both a and b.
inline Geometry collapse(const Shape& out, const Shape& a, const Shape& b) {
  int64_t sa[kMaxDims], sb[kMaxDims];
  aligned_strides(a, out, sa);
  aligned_strides(b, out, sb);
  Geometry g;
  for (int i = 0; i < out.nd; ++i) {
    if (out.d[i] == 1) continue;
    if (g.nd > 0) {
      const int k = g.nd - 1;
      if (g.sa[k] == sa[i] * out.d[i] && g.sb[k] == sb[i] * out.d[i]) {
        g.dim[k] *= out.d[i];
        g.sa[k] = sa[i];
        g.sb[k] = sb[i];
        continue;
      }
    }
    g.dim[g.nd] = out.d[i];
    g.sa[g.nd] = sa[i];
    g.sb[g.nd] = sb[i];
    ++g.nd;
  }
  if (g.nd == 0) {  // a single element
    g.nd = 1;
    g.dim[0] = 1;
  }
  return g;
}

// Dimensions (extents and strides into one tensor) enumerated in row-major order.
struct Dims {
  int n = 0;
  int64_t dim[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};
  int64_t count() const {
    int64_t c = 1;
    for (int i = 0; i < n; ++i) c *= dim[i];
    return c;
  }
  // Offset of element idx (host side; the CUDA kernels use their own unrolled walk).
  int64_t offset(int64_t idx) const {
    int64_t off = 0;
    for (int i = n - 1; i >= 0; --i) {
      off += (idx % dim[i]) * stride[i];
      idx /= dim[i];
    }
    return off;
  }
};

// sum_to on g = collapse(x, x, y) ("a" = x, "b" = y, stride 0 on the reduced dimensions): the
// outer dimensions [0, g.nd - 1) go to `kept` where y has them and to `reduced` where it does
// not, with x's strides.
inline void split_outer(const Geometry& g, Dims& kept, Dims& reduced) {
  const int k = g.nd - 1;
  for (int d = 0; d < k; ++d) {
    Dims& into = g.sb[d] ? kept : reduced;
    into.dim[into.n] = g.dim[d];
    into.stride[into.n] = g.sa[d];
    ++into.n;
  }
}

}  // namespace sal::broadcast
