// Resampling of every plane of an NCHW f32 tensor on CUDA, as engine/cpu/resample.cpp:
// - resize_bilinear: x [N,C,H,W] -> y [N,C,P,Q], torch interpolate(mode='bilinear',
//   align_corners=False), no antialiasing. Along each axis src = (dst + 0.5) * in/out - 0.5,
//   clamped at 0; i0 = floor(src) (at most in-1), i1 = min(i0+1, in-1), weights 1-l and l.
// - resize_bilinear_backward: dy [N,C,P,Q] -> dx [N,C,H,W], the adjoint.
// - pixel_shuffle: [N,C*r*r,H,W] -> [N,C,H*r,W*r], out[n,c,h*r+i,w*r+j] = in[n,c*r*r+i*r+j,h,w];
//   pixel_unshuffle is its inverse.
//
// Why it is written this way:
// - Every kernel is a gather with one thread per output element (consecutive threads write
//   consecutive memory); flat indices are split with 32-bit division while they fit.
// - The per-axis index and weight are recomputed per element from (in, out) with the CPU's float
//   operations, rounded one by one (__fmul_rn / __fadd_rn: no fused multiply-adds), so indices,
//   weights and the forward's result match the CPU bit for bit; this is cheaper than tables for
//   a memory-bound kernel and needs no scratch.
// - The backward is a deterministic gather, not an atomic scatter. i0(o) is non-decreasing in o,
//   so the outputs that touch input index i along an axis (i0(o) == i or i1(o) == i, i.e.
//   i0(o) in {i-1, i}) form one contiguous range [lower_bound(i-1), lower_bound(i+1) - 1]. A
//   small kernel finds these ranges for both axes by binary search over i0(o), then each dx
//   element sums w_h(oh) * w_w(ow) * dy[oh, ow] over its ranges, where the weight of o on i is
//   l0 [i0 == i] + l1 [i1 == i] (both at the last index, where i0 == i1).
// - The shuffles are permutations: one read and one write per element.
#include <cstdint>

#include "cuda/launch.cuh"
#include "cuda/resample.h"

namespace sal::cuda {

namespace {

constexpr int kThreads = 256;

// One axis of the resize: in -> out samples, scale = float(in) / float(out) computed on the host.
struct Axis {
  int in, out;
  float scale;
};

Axis axis(int64_t in, int64_t out) {
  return Axis{static_cast<int>(in), static_cast<int>(out), static_cast<float>(in) / static_cast<float>(out)};
}

struct Tap {
  int i0, i1;
  float l0, l1;
};

// The CPU's fill_axis for output o, operation by operation.
__device__ __forceinline__ Tap tap_at(const Axis& a, int o) {
  float src = __fsub_rn(__fmul_rn(a.scale, __fadd_rn(static_cast<float>(o), 0.5f)), 0.5f);
  if (src < 0.f) src = 0.f;
  const int i = min(static_cast<int>(src), a.in - 1);  // floor: src >= 0
  const float lam = fminf(fmaxf(__fsub_rn(src, static_cast<float>(i)), 0.f), 1.f);
  return Tap{i, i < a.in - 1 ? i + 1 : i, __fsub_rn(1.f, lam), lam};
}

// The first output o in [0, out) with i0(o) >= v (out when there is none).
__device__ int lower_bound_i0(const Axis& a, int v) {
  int lo = 0, hi = a.out;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (tap_at(a, mid).i0 >= v)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

// Weight of output o's tap on input index i along an axis.
__device__ __forceinline__ float weight_on(const Tap& t, int i) {
  return (t.i0 == i ? t.l0 : 0.f) + (t.i1 == i ? t.l1 : 0.f);
}

// x: [N,C,H,W] -> y: [N,C,P,Q]
__global__ void resize_kernel(int64_t planes, Axis ah, Axis aw, const float* __restrict__ x, float* __restrict__ y) {
  const int64_t total = planes * ah.out * aw.out;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t plane;
    int oh, ow;
    split3(i, ah.out, aw.out, plane, oh, ow);
    const Tap th = tap_at(ah, oh), tw = tap_at(aw, ow);
    const float* pl = x + plane * ah.in * aw.in;
    const float* r0 = pl + static_cast<int64_t>(th.i0) * aw.in;
    const float* r1 = pl + static_cast<int64_t>(th.i1) * aw.in;
    const float v0 = __fadd_rn(__fmul_rn(tw.l0, r0[tw.i0]), __fmul_rn(tw.l1, r0[tw.i1]));
    const float v1 = __fadd_rn(__fmul_rn(tw.l0, r1[tw.i0]), __fmul_rn(tw.l1, r1[tw.i1]));
    y[i] = __fadd_rn(__fmul_rn(th.l0, v0), __fmul_rn(th.l1, v1));
  }
}

// -> ranges: int2 [H + W]: for input row ih, the output rows [x, y] that touch it (entry ih), for
// input column iw the output columns (entry H + iw). Empty when x > y.
__global__ void resize_ranges_kernel(Axis ah, Axis aw, int2* __restrict__ ranges) {
  const int total = ah.in + aw.in;
  for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < total; t += gridDim.x * blockDim.x) {
    const bool rows = t < ah.in;
    const Axis& a = rows ? ah : aw;
    const int i = rows ? t : t - ah.in;
    ranges[t] = make_int2(lower_bound_i0(a, i - 1), lower_bound_i0(a, i + 1) - 1);
  }
}

// dy: [N,C,P,Q], ranges -> dx: [N,C,H,W]
__global__ void resize_backward_kernel(int64_t planes, Axis ah, Axis aw, const int2* __restrict__ ranges,
                                       const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t total = planes * ah.in * aw.in;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t plane;
    int ih, iw;
    split3(i, ah.in, aw.in, plane, ih, iw);
    const int2 rh = ranges[ih], rw = ranges[ah.in + iw];
    const float* g = dy + plane * ah.out * aw.out;
    float acc = 0.f;
    for (int oh = rh.x; oh <= rh.y; ++oh) {
      const float wh = weight_on(tap_at(ah, oh), ih);
      const float* grow = g + static_cast<int64_t>(oh) * aw.out;
      float row = 0.f;
      for (int ow = rw.x; ow <= rw.y; ++ow) row += weight_on(tap_at(aw, ow), iw) * grow[ow];
      acc += wh * row;
    }
    dx[i] = acc;
  }
}

// x: [N,C*r*r,H,W] -> y: [N,C,H*r,W*r]
__global__ void pixel_shuffle_kernel(int64_t nc, int h, int w, int r, const float* __restrict__ x,
                                     float* __restrict__ y) {
  const int hr = h * r, wr = w * r;
  const int64_t total = nc * hr * wr;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t plane;  // n*C + c
    int oh, ow;
    split3(i, hr, wr, plane, oh, ow);
    const int hi = oh / r, si = oh - hi * r, wi = ow / r, sj = ow - wi * r;
    const int64_t sub = plane * r * r + si * r + sj;  // n*C*r*r + c*r*r + i*r + j
    y[i] = x[(sub * h + hi) * w + wi];
  }
}

// x: [N,C,H*r,W*r] -> y: [N,C*r*r,H,W]
__global__ void pixel_unshuffle_kernel(int64_t planes_out, int h, int w, int r, const float* __restrict__ x,
                                       float* __restrict__ y) {
  const int64_t total = planes_out * h * w;
  const int rr = r * r;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t oc;  // n*C*r*r + c*r*r + i*r + j
    int hi, wi;
    split3(i, h, w, oc, hi, wi);
    const int64_t nc = oc / rr;
    const int sub = static_cast<int>(oc - nc * rr), si = sub / r, sj = sub - si * r;
    y[i] = x[((nc * h + hi) * r + si) * static_cast<int64_t>(w) * r + static_cast<int64_t>(wi) * r + sj];
  }
}

}  // namespace

void resize_bilinear(Ctx& ctx, const Tensor& x, Tensor& y) {
  if (y.numel() == 0) return;
  const Axis ah = axis(x.dim(2), y.dim(2)), aw = axis(x.dim(3), y.dim(3));
  resize_kernel<<<grid_for(y.numel(), kThreads), kThreads, 0, stream_of(ctx)>>>(x.dim(0) * x.dim(1), ah, aw,
                                                                                x.data<float>(), y.data<float>());
  SAL_CUDA_LAUNCH_CHECK("resize_bilinear");
}

void resize_bilinear_backward(Ctx& ctx, const Tensor& dy, Tensor& dx) {
  const char* op = "resize_bilinear_backward";
  if (dx.numel() == 0) return;
  const Axis ah = axis(dx.dim(2), dy.dim(2)), aw = axis(dx.dim(3), dy.dim(3));
  SAL_CHECK(dx.dim(2) + dx.dim(3) <= INT32_MAX, op, ": ", dx.desc(), " is too large for the CUDA kernel");
  Tensor ranges = ctx.alloc(Shape{2 * (dx.dim(2) + dx.dim(3))}, DType::I32);
  int2* pr = reinterpret_cast<int2*>(ranges.data<int32_t>());  // the arena aligns to 256 bytes
  resize_ranges_kernel<<<grid_for(dx.dim(2) + dx.dim(3), kThreads), kThreads, 0, stream_of(ctx)>>>(ah, aw, pr);
  SAL_CUDA_LAUNCH_CHECK(op);
  resize_backward_kernel<<<grid_for(dx.numel(), kThreads), kThreads, 0, stream_of(ctx)>>>(
      dx.dim(0) * dx.dim(1), ah, aw, pr, dy.data<float>(), dx.data<float>());
  SAL_CUDA_LAUNCH_CHECK(op);
}

void pixel_shuffle(Ctx& ctx, const Tensor& x, int r, Tensor& y) {
  if (y.numel() == 0) return;
  SAL_CHECK(y.dim(2) <= INT32_MAX && y.dim(3) <= INT32_MAX, "pixel_shuffle: ", y.desc(), " is too large for the CUDA kernel");
  pixel_shuffle_kernel<<<grid_for(y.numel(), kThreads), kThreads, 0, stream_of(ctx)>>>(
      y.dim(0) * y.dim(1), static_cast<int>(x.dim(2)), static_cast<int>(x.dim(3)), r, x.data<float>(),
      y.data<float>());
  SAL_CUDA_LAUNCH_CHECK("pixel_shuffle");
}

void pixel_unshuffle(Ctx& ctx, const Tensor& x, int r, Tensor& y) {
  if (y.numel() == 0) return;
  SAL_CHECK(x.dim(2) <= INT32_MAX && x.dim(3) <= INT32_MAX, "pixel_unshuffle: ", x.desc(), " is too large for the CUDA kernel");
  pixel_unshuffle_kernel<<<grid_for(y.numel(), kThreads), kThreads, 0, stream_of(ctx)>>>(
      y.dim(0) * y.dim(1), static_cast<int>(y.dim(2)), static_cast<int>(y.dim(3)), r, x.data<float>(),
      y.data<float>());
  SAL_CUDA_LAUNCH_CHECK("pixel_unshuffle");
}

}  // namespace sal::cuda
