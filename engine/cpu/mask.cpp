// CPU kernels of the mask: abs-ratio head and evidence removal (blend), forward and backward.
//
// abs_ratio: c: [N,2,H,W] -> m: [N,1,H,W], m = |c0| / (|c0| + |c1| + eps).
//   With s = |c0| + |c1| + eps: dm/d|c0| = (|c1| + eps) / s^2, dm/d|c1| = -|c0| / s^2, times
//   sign(c) with sign(0) = 0 (the subgradient that keeps an exactly-zero channel at zero).
// abs_ratio_upsample: resize_bilinear(abs_ratio(c)) composed from the two CPU kernels through a
//   temporary mask from the context (the fused single pass is the CUDA kernel's business); its
//   backward likewise composes the two adjoints.
// blend: x, a: [N,C,H,W], m: [N,1,H,W] -> y = x*m + a*(1-m), computed as a + m*(x - a).
//   Backward: dm = sum_c dy*(x - a) ([N,1,H,W]), dx = dy*m, da = dy*(1-m).
//
// Layout: channel planes of H*W contiguous pixels. Every kernel is one pass over memory; the
// work is split into (sample or plane, pixel chunk) tasks so a batch of one large mask still uses
// every thread. blend_backward walks the channels inside a pixel chunk, so the channel sum for
// dm stays in a small double accumulator on the stack and x, a, dy are each read once.
#include "engine/cpu/mask.h"

#include <algorithm>
#include <cmath>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/resample.h"

namespace sal::cpu {

namespace {

constexpr int64_t kChunk = 1024;  // pixels per task

// Branch-free so the backward loop vectorises.
template <class T>
inline T sign_of(T v) {
  return static_cast<T>(static_cast<int>(v > T(0)) - static_cast<int>(v < T(0)));
}

}  // namespace

// c: [N,2,H,W] -> m: [N,1,H,W]
void abs_ratio(Ctx&, const Tensor& c, double eps, Tensor& m) {
  const int64_t N = c.dim(0), HW = c.dim(2) * c.dim(3);
  const int64_t chunks = (HW + kChunk - 1) / kChunk;
  dispatch_float(c.dtype(), "abs_ratio", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pc = c.data<T>();
    T* pm = m.data<T>();
    const T e = static_cast<T>(eps);
#pragma omp parallel for if (N * HW > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t t = 0; t < N * chunks; ++t) {
      const int64_t n = t / chunks, p0 = (t % chunks) * kChunk, p1 = std::min(HW, p0 + kChunk);
      const T* c0 = pc + n * 2 * HW;
      const T* c1 = c0 + HW;
      T* out = pm + n * HW;
      for (int64_t p = p0; p < p1; ++p) {
        const T a = std::abs(c0[p]);
        out[p] = a / (a + std::abs(c1[p]) + e);
      }
    }
  });
}

// dm: [N,1,H,W], c: [N,2,H,W] -> dc: [N,2,H,W]
void abs_ratio_backward(Ctx&, const Tensor& dm, const Tensor& c, double eps, Tensor& dc) {
  const int64_t N = c.dim(0), HW = c.dim(2) * c.dim(3);
  const int64_t chunks = (HW + kChunk - 1) / kChunk;
  dispatch_float(c.dtype(), "abs_ratio_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pc = c.data<T>();
    const T* pg = dm.data<T>();
    T* pd = dc.data<T>();
    const T e = static_cast<T>(eps);
#pragma omp parallel for if (N * HW > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t t = 0; t < N * chunks; ++t) {
      const int64_t n = t / chunks, p0 = (t % chunks) * kChunk, p1 = std::min(HW, p0 + kChunk);
      const T* c0 = pc + n * 2 * HW;
      const T* c1 = c0 + HW;
      const T* g = pg + n * HW;
      T* d0 = pd + n * 2 * HW;
      T* d1 = d0 + HW;
      for (int64_t p = p0; p < p1; ++p) {
        const T a = std::abs(c0[p]), b = std::abs(c1[p]);
        const T s = a + b + e;
        const T k = g[p] / (s * s);
        d0[p] = k * (b + e) * sign_of(c0[p]);
        d1[p] = -k * a * sign_of(c1[p]);
      }
    }
  });
}

// c: [N,2,H,W] -> m: [N,1,H,W] (temporary) -> y: [N,1,P,Q]
void abs_ratio_upsample(Ctx& ctx, const Tensor& c, double eps, Tensor& y) {
  Tensor m = ctx.alloc(Shape{c.dim(0), 1, c.dim(2), c.dim(3)}, c.dtype());
  abs_ratio(ctx, c, eps, m);
  resize_bilinear(ctx, m, y);
}

// dy: [N,1,P,Q] -> dm: [N,1,H,W] (temporary) -> dc: [N,2,H,W]
void abs_ratio_upsample_backward(Ctx& ctx, const Tensor& dy, const Tensor& c, double eps, Tensor& dc) {
  Tensor dm = ctx.alloc(Shape{c.dim(0), 1, c.dim(2), c.dim(3)}, c.dtype());
  resize_bilinear_backward(ctx, dy, dm);
  abs_ratio_backward(ctx, dm, c, eps, dc);
}

// x, a: [N,C,H,W], m: [N,1,H,W] -> y: [N,C,H,W]
void blend(Ctx&, const Tensor& x, const Tensor& a, const Tensor& m, Tensor& y) {
  const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
  const int64_t chunks = (HW + kChunk - 1) / kChunk;
  dispatch_float(x.dtype(), "blend", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    const T* pa = a.data<T>();
    const T* pm = m.data<T>();
    T* py = y.data<T>();
#pragma omp parallel for if (N * C * HW > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t t = 0; t < N * C * chunks; ++t) {
      const int64_t plane = t / chunks, p0 = (t % chunks) * kChunk, p1 = std::min(HW, p0 + kChunk);
      const int64_t n = plane / C;
      const T* xs = px + plane * HW;
      const T* as = pa + plane * HW;
      const T* ms = pm + n * HW;
      T* ys = py + plane * HW;
      for (int64_t p = p0; p < p1; ++p) ys[p] = as[p] + ms[p] * (xs[p] - as[p]);
    }
  });
}

// dy, x, a: [N,C,H,W], m: [N,1,H,W] -> dm: [N,1,H,W], dx, da: [N,C,H,W] (optional)
void blend_backward(Ctx&, const Tensor& dy, const Tensor& x, const Tensor& a, const Tensor& m, Tensor& dm,
                    Tensor* dx, Tensor* da) {
  const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
  constexpr int64_t kPix = 256;  // pixels per task: the dm accumulator lives on the stack
  const int64_t chunks = (HW + kPix - 1) / kPix;
  dispatch_float(x.dtype(), "blend_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pg = dy.data<T>();
    const T* px = x.data<T>();
    const T* pa = a.data<T>();
    const T* pm = m.data<T>();
    T* pdm = dm.data<T>();
    T* pdx = dx ? dx->data<T>() : nullptr;
    T* pda = da ? da->data<T>() : nullptr;
#pragma omp parallel for if (N * C * HW > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t t = 0; t < N * chunks; ++t) {
      const int64_t n = t / chunks, p0 = (t % chunks) * kPix, len = std::min(HW - p0, kPix);
      double acc[kPix];
      std::fill_n(acc, len, 0.0);
      const T* ms = pm + n * HW + p0;
      for (int64_t c = 0; c < C; ++c) {
        const int64_t off = (n * C + c) * HW + p0;
        const T* g = pg + off;
        const T* xs = px + off;
        const T* as = pa + off;
        for (int64_t j = 0; j < len; ++j) acc[j] += static_cast<double>(g[j] * (xs[j] - as[j]));
        if (pdx)
          for (int64_t j = 0; j < len; ++j) pdx[off + j] = g[j] * ms[j];
        if (pda)
          for (int64_t j = 0; j < len; ++j) pda[off + j] = g[j] * (T(1) - ms[j]);
      }
      T* out = pdm + n * HW + p0;
      for (int64_t j = 0; j < len; ++j) out[j] = static_cast<T>(acc[j]);
    }
  });
}

}  // namespace sal::cpu
