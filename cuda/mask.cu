// CUDA kernels (f32) of the mask: the abs-ratio head, the head fused with bilinear upsampling,
// and evidence removal (blend), forward and backward.
//
// abs_ratio: c: [N,2,H,W] -> m: [N,1,H,W], m = |c0| / (|c0| + |c1| + eps); backward as in
//   engine/cpu/mask.cpp: dc0 = dm (|c1| + eps) / s^2 sign(c0), dc1 = -dm |c0| / s^2 sign(c1).
// blend: x, a: [N,C,H,W], m: [N,1,H,W] -> y = a + m (x - a); backward dm = sum_c dy (x - a),
//   dx = dy m, da = dy (1 - m).
// Layout and why: channel planes of H*W contiguous pixels; blockIdx.y is the sample (or the
// plane for blend), the threads sweep the pixels with float4 loads and stores when H*W is a
// multiple of 4 and every pointer is 16-byte aligned (views from slice0 need not be), scalar
// otherwise. All are single passes over memory. blend_backward loops over the channels inside a
// thread, so the channel sum for dm stays in a register and dy, x, a are each read once.
//
// abs_ratio_upsample: c: [N,2,H,W] -> y: [N,1,P,Q] = resize_bilinear(abs_ratio(c), P, Q)
//   (align_corners = false, the weights computed exactly as engine/cpu/resample.cpp does in f32).
//   One thread per output pixel, blockIdx.y = output row (its vertical taps computed once): the
//   four corner ratios are recomputed from c instead of materialising m, so the only traffic is
//   c (read, mostly from cache) and y (written once). The division uses __fdividef (two
//   instructions instead of an IEEE divide; 2 ulp) because four of them per output pixel would
//   otherwise cost as much time as writing y.
// abs_ratio_upsample_backward: dy: [N,1,P,Q], c -> dc: [N,2,H,W]. A gather, not a scatter (no
//   atomics, deterministic): one thread per input pixel (i, j) finds the contiguous ranges of
//   output rows and columns whose taps touch it (taps are monotone in the output index: an
//   estimate from the inverse mapping, then corrected exactly), sums weight * dy over them, and
//   applies the abs-ratio backward to that sum.
#include "cuda/mask.h"

#include <algorithm>
#include <cstdint>

#include "cuda/launch.cuh"

namespace sal::cuda {

namespace {

constexpr int kBlock = 256;

// Threads per block for rows of `len` items: a multiple of 32, at most 256.
int row_block(int64_t len) { return static_cast<int>(std::min<int64_t>(256, (len + 31) / 32 * 32)); }

__device__ __forceinline__ float sign_of(float v) { return static_cast<float>((v > 0.f) - (v < 0.f)); }

__device__ __forceinline__ float ratio(float u, float v, float e) {
  const float a = fabsf(u);
  return a / (a + fabsf(v) + e);
}

// (dc0, dc1) for the mask gradient g at the pixel (u, v) = (c0, c1).
__device__ __forceinline__ float2 ratio_grad(float g, float u, float v, float e) {
  const float a = fabsf(u), b = fabsf(v);
  const float s = a + b + e;
  const float k = g / (s * s);
  return make_float2(k * (b + e) * sign_of(u), -k * a * sign_of(v));
}

// ---------------------------------------------------------------- abs_ratio

// c: [N,2,HW] -> m: [N,HW]; blockIdx.y = sample. VEC: HW % 4 == 0, c and m 16-byte aligned.
template <bool VEC>
__global__ void abs_ratio_kernel(const float* __restrict__ c, float* __restrict__ m, int64_t N, int64_t HW, float eps) {
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const float* c0 = c + n * 2 * HW;
    const float* c1 = c0 + HW;
    float* out = m + n * HW;
    if constexpr (VEC) {
      for (int64_t p = tid; p < HW / 4; p += stride) {
        const float4 u = reinterpret_cast<const float4*>(c0)[p], v = reinterpret_cast<const float4*>(c1)[p];
        reinterpret_cast<float4*>(out)[p] =
            make_float4(ratio(u.x, v.x, eps), ratio(u.y, v.y, eps), ratio(u.z, v.z, eps), ratio(u.w, v.w, eps));
      }
    } else {
      for (int64_t p = tid; p < HW; p += stride) out[p] = ratio(c0[p], c1[p], eps);
    }
  }
}

// dm: [N,HW], c: [N,2,HW] -> dc: [N,2,HW]; blockIdx.y = sample. VEC as above (dm, c, dc aligned).
template <bool VEC>
__global__ void abs_ratio_backward_kernel(const float* __restrict__ dm, const float* __restrict__ c,
                                          float* __restrict__ dc, int64_t N, int64_t HW, float eps) {
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const float* c0 = c + n * 2 * HW;
    const float* c1 = c0 + HW;
    const float* g = dm + n * HW;
    float* d0 = dc + n * 2 * HW;
    float* d1 = d0 + HW;
    if constexpr (VEC) {
      for (int64_t p = tid; p < HW / 4; p += stride) {
        const float4 u = reinterpret_cast<const float4*>(c0)[p], v = reinterpret_cast<const float4*>(c1)[p];
        const float4 w = reinterpret_cast<const float4*>(g)[p];
        const float2 rx = ratio_grad(w.x, u.x, v.x, eps), ry = ratio_grad(w.y, u.y, v.y, eps);
        const float2 rz = ratio_grad(w.z, u.z, v.z, eps), rw = ratio_grad(w.w, u.w, v.w, eps);
        reinterpret_cast<float4*>(d0)[p] = make_float4(rx.x, ry.x, rz.x, rw.x);
        reinterpret_cast<float4*>(d1)[p] = make_float4(rx.y, ry.y, rz.y, rw.y);
      }
    } else {
      for (int64_t p = tid; p < HW; p += stride) {
        const float2 r = ratio_grad(g[p], c0[p], c1[p], eps);
        d0[p] = r.x;
        d1[p] = r.y;
      }
    }
  }
}

// ---------------------------------------------------------------- abs_ratio fused with upsampling

// One output index's taps along an axis: y = l0 * x[i0] + l1 * x[i1]. The arithmetic is that of
// engine/cpu/resample.cpp in f32 (no fused multiply-add, so the same indices and weights).
struct Tap {
  int i0, i1;
  float l0, l1;
};

__device__ __forceinline__ Tap tap_of(int o, int in, float scale) {
  float src = __fsub_rn(__fmul_rn(scale, __fadd_rn(static_cast<float>(o), 0.5f)), 0.5f);
  if (src < 0.f) src = 0.f;
  const int i = min(static_cast<int>(src), in - 1);
  const float lam = fminf(fmaxf(__fsub_rn(src, static_cast<float>(i)), 0.f), 1.f);
  return Tap{i, i < in - 1 ? i + 1 : i, __fsub_rn(1.f, lam), lam};
}

// The weight of input index i in output index o's taps (0 when o does not touch i).
__device__ __forceinline__ float weight_of(const Tap& t, int i) {
  return (t.i0 == i ? t.l0 : 0.f) + (t.i1 == i ? t.l1 : 0.f);
}

// The output indices [lo, hi] whose taps touch input index i (empty when lo > hi). i0 and i1 are
// non-decreasing in o, so they are the o with i1(o) >= i and i0(o) <= i: a contiguous range.
// The inverse mapping only gives a starting point; the loops make the ends exact.
__device__ __forceinline__ void touching(int i, int in, int out, float scale, int& lo, int& hi) {
  lo = static_cast<int>(fminf(fmaxf(floorf((static_cast<float>(i) - 0.5f) / scale - 0.5f), 0.f), static_cast<float>(out - 1)));
  while (lo > 0 && tap_of(lo - 1, in, scale).i1 >= i) --lo;
  while (lo < out && tap_of(lo, in, scale).i1 < i) ++lo;
  hi = static_cast<int>(fminf(fmaxf(ceilf((static_cast<float>(i) + 1.5f) / scale - 0.5f) - 1.f, 0.f), static_cast<float>(out - 1)));
  while (hi < out - 1 && tap_of(hi + 1, in, scale).i0 <= i) ++hi;
  while (hi >= 0 && tap_of(hi, in, scale).i0 > i) --hi;
}

// Ratio with the fast divide (see the file comment); 0/0 is still NaN.
__device__ __forceinline__ float ratio_fast(const float* c0, const float* c1, int64_t k, float e) {
  const float a = fabsf(c0[k]);
  return __fdividef(a, a + fabsf(c1[k]) + e);
}

// c: [N,2,H,W] -> y: [N,1,P,Q]; blockIdx.y = output row n*P + oh, threads over the Q columns.
// sh = H / P, sw = W / Q (f32, as the CPU computes them).
__global__ void abs_ratio_upsample_kernel(const float* __restrict__ c, float* __restrict__ y, int64_t N, int H, int W,
                                          int P, int Q, float sh, float sw, float eps) {
  const int64_t HW = static_cast<int64_t>(H) * W;
  for (int64_t row = blockIdx.y; row < N * P; row += gridDim.y) {
    const int64_t n = row / P;
    const int oh = static_cast<int>(row - n * P);
    const Tap th = tap_of(oh, H, sh);
    const float* c0 = c + n * 2 * HW;
    const float* c1 = c0 + HW;
    const int64_t r0 = static_cast<int64_t>(th.i0) * W, r1 = static_cast<int64_t>(th.i1) * W;
    float* out = y + row * Q;
    for (int64_t ow = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; ow < Q;
         ow += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const Tap tw = tap_of(static_cast<int>(ow), W, sw);
      const float v00 = ratio_fast(c0, c1, r0 + tw.i0, eps), v01 = ratio_fast(c0, c1, r0 + tw.i1, eps);
      const float v10 = ratio_fast(c0, c1, r1 + tw.i0, eps), v11 = ratio_fast(c0, c1, r1 + tw.i1, eps);
      out[ow] = th.l0 * (tw.l0 * v00 + tw.l1 * v01) + th.l1 * (tw.l0 * v10 + tw.l1 * v11);
    }
  }
}

// dy: [N,1,P,Q], c: [N,2,H,W] -> dc: [N,2,H,W]; blockIdx.y = input row n*H + i, threads over the
// W columns. Each thread gathers the dy pixels whose taps touch (i, j).
__global__ void abs_ratio_upsample_backward_kernel(const float* __restrict__ dy, const float* __restrict__ c,
                                                   float* __restrict__ dc, int64_t N, int H, int W, int P, int Q,
                                                   float sh, float sw, float eps) {
  const int64_t HW = static_cast<int64_t>(H) * W;
  for (int64_t row = blockIdx.y; row < N * H; row += gridDim.y) {
    const int64_t n = row / H;
    const int i = static_cast<int>(row - n * H);
    int hlo, hhi;
    touching(i, H, P, sh, hlo, hhi);
    const float* g = dy + n * static_cast<int64_t>(P) * Q;
    for (int64_t jj = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; jj < W;
         jj += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int j = static_cast<int>(jj);
      int wlo, whi;
      touching(j, W, Q, sw, wlo, whi);
      float acc = 0.f;
      for (int oh = hlo; oh <= hhi; ++oh) {
        const float wh = weight_of(tap_of(oh, H, sh), i);
        const float* gr = g + static_cast<int64_t>(oh) * Q;
        float part = 0.f;
        for (int ow = wlo; ow <= whi; ++ow) part += weight_of(tap_of(ow, W, sw), j) * gr[ow];
        acc += wh * part;
      }
      const int64_t k = n * 2 * HW + static_cast<int64_t>(i) * W + j;
      const float2 d = ratio_grad(acc, c[k], c[k + HW], eps);
      dc[k] = d.x;
      dc[k + HW] = d.y;
    }
  }
}

// ---------------------------------------------------------------- blend

// x, a: [N*C planes, HW], m: [N, HW] -> y; blockIdx.y = plane. VEC: HW % 4 == 0, all aligned.
template <bool VEC>
__global__ void blend_kernel(const float* __restrict__ x, const float* __restrict__ a, const float* __restrict__ m,
                             float* __restrict__ y, int64_t planes, int64_t C, int64_t HW) {
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t pl = blockIdx.y; pl < planes; pl += gridDim.y) {
    const float* xs = x + pl * HW;
    const float* as = a + pl * HW;
    const float* ms = m + (pl / C) * HW;
    float* ys = y + pl * HW;
    if constexpr (VEC) {
      for (int64_t p = tid; p < HW / 4; p += stride) {
        const float4 u = reinterpret_cast<const float4*>(xs)[p], v = reinterpret_cast<const float4*>(as)[p];
        const float4 w = reinterpret_cast<const float4*>(ms)[p];
        reinterpret_cast<float4*>(ys)[p] =
            make_float4(v.x + w.x * (u.x - v.x), v.y + w.y * (u.y - v.y), v.z + w.z * (u.z - v.z), v.w + w.w * (u.w - v.w));
      }
    } else {
      for (int64_t p = tid; p < HW; p += stride) ys[p] = as[p] + ms[p] * (xs[p] - as[p]);
    }
  }
}

// dy, x, a: [N,C,HW], m: [N,HW] -> dm: [N,HW], dx, da: [N,C,HW] (each may be null);
// blockIdx.y = sample, the channel loop inside the thread. VEC: HW % 4 == 0, all aligned.
template <bool VEC>
__global__ void blend_backward_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                      const float* __restrict__ a, const float* __restrict__ m, float* __restrict__ dm,
                                      float* __restrict__ dx, float* __restrict__ da, int64_t N, int64_t C,
                                      int64_t HW) {
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    if constexpr (VEC) {
      for (int64_t p = tid; p < HW / 4; p += stride) {
        const float4 w = reinterpret_cast<const float4*>(m + n * HW)[p];
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
        for (int64_t ch = 0; ch < C; ++ch) {
          const int64_t off = (n * C + ch) * HW;
          const float4 g = reinterpret_cast<const float4*>(dy + off)[p];
          const float4 u = reinterpret_cast<const float4*>(x + off)[p];
          const float4 v = reinterpret_cast<const float4*>(a + off)[p];
          acc.x += g.x * (u.x - v.x);
          acc.y += g.y * (u.y - v.y);
          acc.z += g.z * (u.z - v.z);
          acc.w += g.w * (u.w - v.w);
          if (dx) reinterpret_cast<float4*>(dx + off)[p] = make_float4(g.x * w.x, g.y * w.y, g.z * w.z, g.w * w.w);
          if (da)
            reinterpret_cast<float4*>(da + off)[p] =
                make_float4(g.x * (1.f - w.x), g.y * (1.f - w.y), g.z * (1.f - w.z), g.w * (1.f - w.w));
        }
        reinterpret_cast<float4*>(dm + n * HW)[p] = acc;
      }
    } else {
      for (int64_t p = tid; p < HW; p += stride) {
        const float w = m[n * HW + p];
        float acc = 0.f;
        for (int64_t ch = 0; ch < C; ++ch) {
          const int64_t k = (n * C + ch) * HW + p;
          const float g = dy[k];
          acc += g * (x[k] - a[k]);
          if (dx) dx[k] = g * w;
          if (da) da[k] = g * (1.f - w);
        }
        dm[n * HW + p] = acc;
      }
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- entry points

void abs_ratio(Ctx& ctx, const Tensor& c, double eps, Tensor& m) {
  const int64_t N = c.dim(0), HW = c.dim(2) * c.dim(3);
  if (N == 0 || HW == 0) return;
  const float* pc = c.data<float>();
  float* pm = m.data<float>();
  const bool vec = HW % 4 == 0 && aligned16(pc) && aligned16(pm);
  const unsigned gy = grid_y(N);
  const dim3 grid(grid_x(vec ? HW / 4 : HW, gy), gy);
  const float e = static_cast<float>(eps);
  if (vec)
    abs_ratio_kernel<true><<<grid, kBlock, 0, stream_of(ctx)>>>(pc, pm, N, HW, e);
  else
    abs_ratio_kernel<false><<<grid, kBlock, 0, stream_of(ctx)>>>(pc, pm, N, HW, e);
  SAL_CUDA_LAUNCH_CHECK("abs_ratio");
}

void abs_ratio_backward(Ctx& ctx, const Tensor& dm, const Tensor& c, double eps, Tensor& dc) {
  const int64_t N = c.dim(0), HW = c.dim(2) * c.dim(3);
  if (N == 0 || HW == 0) return;
  const float* pg = dm.data<float>();
  const float* pc = c.data<float>();
  float* pd = dc.data<float>();
  const bool vec = HW % 4 == 0 && aligned16(pg) && aligned16(pc) && aligned16(pd);
  const unsigned gy = grid_y(N);
  const dim3 grid(grid_x(vec ? HW / 4 : HW, gy), gy);
  const float e = static_cast<float>(eps);
  if (vec)
    abs_ratio_backward_kernel<true><<<grid, kBlock, 0, stream_of(ctx)>>>(pg, pc, pd, N, HW, e);
  else
    abs_ratio_backward_kernel<false><<<grid, kBlock, 0, stream_of(ctx)>>>(pg, pc, pd, N, HW, e);
  SAL_CUDA_LAUNCH_CHECK("abs_ratio_backward");
}

// Extents fit in int (checked by engine/ops_mask.cpp); H, W, P, Q >= 1.
void abs_ratio_upsample(Ctx& ctx, const Tensor& c, double eps, Tensor& y) {
  const int64_t N = c.dim(0);
  const int H = static_cast<int>(c.dim(2)), W = static_cast<int>(c.dim(3));
  const int P = static_cast<int>(y.dim(2)), Q = static_cast<int>(y.dim(3));
  if (N == 0) return;
  const float sh = static_cast<float>(H) / static_cast<float>(P), sw = static_cast<float>(W) / static_cast<float>(Q);
  const int block = row_block(Q);
  const unsigned gy = grid_y(N * P);
  const dim3 grid(grid_x(Q, gy, block), gy);
  abs_ratio_upsample_kernel<<<grid, block, 0, stream_of(ctx)>>>(c.data<float>(), y.data<float>(), N, H, W, P, Q, sh, sw,
                                                               static_cast<float>(eps));
  SAL_CUDA_LAUNCH_CHECK("abs_ratio_upsample");
}

void abs_ratio_upsample_backward(Ctx& ctx, const Tensor& dy, const Tensor& c, double eps, Tensor& dc) {
  const int64_t N = c.dim(0);
  const int H = static_cast<int>(c.dim(2)), W = static_cast<int>(c.dim(3));
  const int P = static_cast<int>(dy.dim(2)), Q = static_cast<int>(dy.dim(3));
  if (N == 0) return;
  const float sh = static_cast<float>(H) / static_cast<float>(P), sw = static_cast<float>(W) / static_cast<float>(Q);
  const int block = row_block(W);
  const unsigned gy = grid_y(N * H);
  const dim3 grid(grid_x(W, gy, block), gy);
  abs_ratio_upsample_backward_kernel<<<grid, block, 0, stream_of(ctx)>>>(dy.data<float>(), c.data<float>(),
                                                                        dc.data<float>(), N, H, W, P, Q, sh, sw,
                                                                        static_cast<float>(eps));
  SAL_CUDA_LAUNCH_CHECK("abs_ratio_upsample_backward");
}

void blend(Ctx& ctx, const Tensor& x, const Tensor& a, const Tensor& m, Tensor& y) {
  const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
  if (N * C == 0 || HW == 0) return;
  const float *px = x.data<float>(), *pa = a.data<float>(), *pm = m.data<float>();
  float* py = y.data<float>();
  const bool vec = HW % 4 == 0 && aligned16(px) && aligned16(pa) && aligned16(pm) && aligned16(py);
  const unsigned gy = grid_y(N * C);
  const dim3 grid(grid_x(vec ? HW / 4 : HW, gy), gy);
  if (vec)
    blend_kernel<true><<<grid, kBlock, 0, stream_of(ctx)>>>(px, pa, pm, py, N * C, C, HW);
  else
    blend_kernel<false><<<grid, kBlock, 0, stream_of(ctx)>>>(px, pa, pm, py, N * C, C, HW);
  SAL_CUDA_LAUNCH_CHECK("blend");
}

void blend_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Tensor& a, const Tensor& m, Tensor& dm,
                    Tensor* dx, Tensor* da) {
  const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
  if (N == 0 || HW == 0) return;
  const float *pg = dy.data<float>(), *px = x.data<float>(), *pa = a.data<float>(), *pm = m.data<float>();
  float* pdm = dm.data<float>();
  float* pdx = dx ? dx->data<float>() : nullptr;
  float* pda = da ? da->data<float>() : nullptr;
  const bool vec = HW % 4 == 0 && aligned16(pg) && aligned16(px) && aligned16(pa) && aligned16(pm) &&
                   aligned16(pdm) && (!pdx || aligned16(pdx)) && (!pda || aligned16(pda));
  const unsigned gy = grid_y(N);
  const dim3 grid(grid_x(vec ? HW / 4 : HW, gy), gy);
  if (vec)
    blend_backward_kernel<true><<<grid, kBlock, 0, stream_of(ctx)>>>(pg, px, pa, pm, pdm, pdx, pda, N, C, HW);
  else
    blend_backward_kernel<false><<<grid, kBlock, 0, stream_of(ctx)>>>(pg, px, pa, pm, pdm, pdx, pda, N, C, HW);
  SAL_CUDA_LAUNCH_CHECK("blend_backward");
}

}  // namespace sal::cuda
