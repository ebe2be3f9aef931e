// Pooling over the H, W of every plane of an NCHW f32 tensor on CUDA: max and average pooling
// with PyTorch's padding / ceil_mode / divisor rules, global average pooling; forwards and
// backwards. Same results as engine/cpu/pool.cpp (bit for bit where the CPU's order of float
// operations can be kept: max, average and both pooling backwards).
//
// x, dx: [N,C,H,W]; y, dy: [N,C,P,Q]; global: y, dy: [N,C,1,1]. The window of output (oh, ow)
// covers rows [oh*sh - ph, oh*sh - ph + kh) and the matching columns, clipped to the input.
//
// Why it is written this way:
// - Forwards are gathers, one thread per output element (consecutive threads take consecutive
//   ow, so each window row is read by a warp in a few cache lines; overlapping windows hit L1).
//   Padding never wins a max (the window is clipped), a NaN wins, as on the CPU.
// - Backwards are gathers too, one thread per input element, so nothing needs atomics and the
//   result is deterministic: the windows that contain (h, w) are oh in
//   [floor((h + ph - kh) / sh) + 1, floor((h + ph) / sh)] (clipped to [0, P)), likewise ow, and
//   each thread adds their contributions in (oh, ow) order, the order in which the CPU scatters
//   them, so the float sums are identical.
// - The max backward first recomputes every window's argmax (the CPU's rule: the first maximum in
//   row-major window order, or the last NaN) into an i32 scratch tensor of dy's shape (one pass
//   like the forward), so the gather compares one index per window instead of rescanning it.
// - Global average pooling: one warp per plane, double accumulation (as the CPU), fixed shuffle
//   tree. Its backward is a broadcast over each plane.
// - Flat indices are split with 32-bit division while they fit (int64 division is a slow
//   subroutine on the GPU); plane offsets stay 64-bit.
#include <climits>
#include <cstdint>

#include "cuda/launch.cuh"
#include "cuda/pool.h"

namespace sal::cuda {

namespace {

struct Geom {
  int64_t planes;
  int h, w, p, q;
  int kh, kw, sh, sw, ph, pw;
  bool include_pad;
};

Geom geom_of(const char* op, const Tensor& in, const Tensor& out, const Pool2dArgs& a) {
  SAL_CHECK(in.dim(2) * in.dim(3) <= INT_MAX && out.dim(2) * out.dim(3) <= INT_MAX, op, ": planes of ", in.desc(),
            " / ", out.desc(), " are too large for the CUDA kernels (H*W must stay below 2^31)");
  return Geom{in.dim(0) * in.dim(1),
              static_cast<int>(in.dim(2)),
              static_cast<int>(in.dim(3)),
              static_cast<int>(out.dim(2)),
              static_cast<int>(out.dim(3)),
              a.kernel_h,
              a.kernel_w,
              a.stride_h,
              a.stride_w,
              a.pad_h,
              a.pad_w,
              a.count_include_pad};
}

__device__ __forceinline__ int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The window of output (oh, ow) clipped to the input: rows [h0, h1), cols [w0, w1).
struct Window {
  int h0, h1, w0, w1;
};

__device__ __forceinline__ Window clipped(const Geom& g, int oh, int ow) {
  const int hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
  return Window{max(hs, 0), min(hs + g.kh, g.h), max(ws, 0), min(ws + g.kw, g.w)};
}

// PyTorch's average-pooling divisor (the CPU's avg_divisor); 0 for an empty window.
__device__ __forceinline__ int avg_divisor(const Geom& g, int oh, int ow, const Window& win) {
  if (win.h0 >= win.h1 || win.w0 >= win.w1) return 0;
  if (!g.include_pad) return (win.h1 - win.h0) * (win.w1 - win.w0);
  const int hs = oh * g.sh - g.ph, ws = ow * g.sw - g.pw;
  const int he = min(hs + g.kh, g.h + g.ph), we = min(ws + g.kw, g.w + g.pw);
  return (he - hs) * (we - ws);
}

// The outputs whose windows contain input (h, w): rows [lo.x, hi.x], cols [lo.y, hi.y] (may be empty).
struct Range {
  int oh0, oh1, ow0, ow1;  // inclusive
};

__device__ __forceinline__ Range windows_containing(const Geom& g, int h, int w) {
  return Range{max(0, floor_div(h + g.ph - g.kh, g.sh) + 1), min(g.p - 1, (h + g.ph) / g.sh),
               max(0, floor_div(w + g.pw - g.kw, g.sw) + 1), min(g.q - 1, (w + g.pw) / g.sw)};
}

// x: [N,C,H,W] -> y: [N,C,P,Q], the window maxima (a NaN wins).
__global__ void max_pool_kernel(Geom g, const float* __restrict__ x, float* __restrict__ y) {
  const int64_t total = g.planes * g.p * g.q;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t plane;
    int oh, ow;
    split3(i, g.p, g.q, plane, oh, ow);
    const Window win = clipped(g, oh, ow);
    const float* pl = x + plane * g.h * g.w;
    float m = pl[win.h0 * g.w + win.w0];
    for (int h = win.h0; h < win.h1; ++h) {
      const float* row = pl + h * g.w;
      for (int w = win.w0; w < win.w1; ++w) {
        const float v = row[w];
        if (v > m || v != v) m = v;
      }
    }
    y[i] = m;
  }
}

// x: [N,C,H,W] -> arg: i32 [N,C,P,Q], the in-plane offset h*W + w of each window's maximum:
// the first maximum in row-major window order, or the last NaN (the CPU's window_argmax).
__global__ void max_pool_argmax_kernel(Geom g, const float* __restrict__ x, int32_t* __restrict__ arg) {
  const int64_t total = g.planes * g.p * g.q;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t plane;
    int oh, ow;
    split3(i, g.p, g.q, plane, oh, ow);
    const Window win = clipped(g, oh, ow);
    const float* pl = x + plane * g.h * g.w;
    int best_i = win.h0 * g.w + win.w0;
    float best = pl[best_i];
    for (int h = win.h0; h < win.h1; ++h) {
      const float* row = pl + h * g.w;
      for (int w = win.w0; w < win.w1; ++w) {
        const float v = row[w];
        if (v > best || v != v) {
          best = v;
          best_i = h * g.w + w;
        }
      }
    }
    arg[i] = best_i;
  }
}

// dy: [N,C,P,Q], arg: i32 [N,C,P,Q] -> dx: [N,C,H,W]; each input gathers dy of the windows whose
// argmax it is.
__global__ void max_pool_backward_kernel(Geom g, const float* __restrict__ dy, const int32_t* __restrict__ arg,
                                         float* __restrict__ dx) {
  const int64_t total = g.planes * g.h * g.w;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t plane;
    int h, w;
    split3(i, g.h, g.w, plane, h, w);
    const Range r = windows_containing(g, h, w);
    const int me = h * g.w + w;
    const int64_t off = plane * g.p * g.q;
    float acc = 0.f;
    for (int oh = r.oh0; oh <= r.oh1; ++oh)
      for (int ow = r.ow0; ow <= r.ow1; ++ow) {
        const int64_t j = off + oh * g.q + ow;
        if (arg[j] == me) acc += dy[j];
      }
    dx[i] = acc;
  }
}

// x: [N,C,H,W] -> y: [N,C,P,Q], window sums in row-major order divided by the divisor.
__global__ void avg_pool_kernel(Geom g, const float* __restrict__ x, float* __restrict__ y) {
  const int64_t total = g.planes * g.p * g.q;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t plane;
    int oh, ow;
    split3(i, g.p, g.q, plane, oh, ow);
    const Window win = clipped(g, oh, ow);
    const int div = avg_divisor(g, oh, ow, win);
    const float* pl = x + plane * g.h * g.w;
    float sum = 0.f;
    for (int h = win.h0; h < win.h1; ++h) {
      const float* row = pl + h * g.w;
      for (int w = win.w0; w < win.w1; ++w) sum += row[w];
    }
    y[i] = div ? sum / static_cast<float>(div) : 0.f;
  }
}

// dy: [N,C,P,Q] -> dx: [N,C,H,W]; each input gathers dy / divisor of the windows containing it.
__global__ void avg_pool_backward_kernel(Geom g, const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t total = g.planes * g.h * g.w;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t plane;
    int h, w;
    split3(i, g.h, g.w, plane, h, w);
    const Range r = windows_containing(g, h, w);
    const float* grad = dy + plane * g.p * g.q;
    float acc = 0.f;
    for (int oh = r.oh0; oh <= r.oh1; ++oh)
      for (int ow = r.ow0; ow <= r.ow1; ++ow) {
        const int div = avg_divisor(g, oh, ow, clipped(g, oh, ow));  // > 0: the window holds (h, w)
        acc += grad[oh * g.q + ow] / static_cast<float>(div);
      }
    dx[i] = acc;
  }
}

// x: [planes, hw] -> y: [planes], one warp per plane, double sums.
__global__ void global_avg_pool_kernel(int64_t planes, int64_t hw, const float* __restrict__ x,
                                       float* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t pl = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5; pl < planes; pl += warps) {
    const float* src = x + pl * hw;
    double s = 0;
    for (int64_t i = lane; i < hw; i += 32) s += static_cast<double>(src[i]);
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) y[pl] = static_cast<float>(s / static_cast<double>(hw));
  }
}

// dy: [planes] -> dx: [planes, hw], dx = dy / hw.
__global__ void global_avg_pool_backward_kernel(int64_t planes, int hw, const float* __restrict__ dy,
                                                float* __restrict__ dx) {
  const int64_t total = planes * hw;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t pl;
    int r, c;
    split3(i, 1, hw, pl, r, c);
    dx[i] = dy[pl] / static_cast<float>(hw);
  }
}

constexpr int kThreads = 256;

}  // namespace

void max_pool2d(Ctx& ctx, const Tensor& x, const Pool2dArgs& a, Tensor& y) {
  const Geom g = geom_of("max_pool2d", x, y, a);
  if (y.numel() == 0) return;
  max_pool_kernel<<<grid_for(y.numel(), kThreads), kThreads, 0, stream_of(ctx)>>>(g, x.data<float>(),
                                                                                  y.data<float>());
  SAL_CUDA_LAUNCH_CHECK("max_pool2d");
}

void max_pool2d_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Pool2dArgs& a, Tensor& dx) {
  const char* op = "max_pool2d_backward";
  const Geom g = geom_of(op, x, dy, a);
  if (dx.numel() == 0) return;  // else dy is not empty either (P, Q >= 1)
  Tensor arg = ctx.alloc(dy.shape(), DType::I32);
  max_pool_argmax_kernel<<<grid_for(dy.numel(), kThreads), kThreads, 0, stream_of(ctx)>>>(g, x.data<float>(),
                                                                                          arg.data<int32_t>());
  SAL_CUDA_LAUNCH_CHECK(op);
  max_pool_backward_kernel<<<grid_for(dx.numel(), kThreads), kThreads, 0, stream_of(ctx)>>>(
      g, dy.data<float>(), arg.data<int32_t>(), dx.data<float>());
  SAL_CUDA_LAUNCH_CHECK(op);
}

void avg_pool2d(Ctx& ctx, const Tensor& x, const Pool2dArgs& a, Tensor& y) {
  const Geom g = geom_of("avg_pool2d", x, y, a);
  if (y.numel() == 0) return;
  avg_pool_kernel<<<grid_for(y.numel(), kThreads), kThreads, 0, stream_of(ctx)>>>(g, x.data<float>(),
                                                                                  y.data<float>());
  SAL_CUDA_LAUNCH_CHECK("avg_pool2d");
}

void avg_pool2d_backward(Ctx& ctx, const Tensor& dy, const Pool2dArgs& a, Tensor& dx) {
  const char* op = "avg_pool2d_backward";
  const Geom g = geom_of(op, dx, dy, a);
  if (dx.numel() == 0) return;  // else dy is not empty either (P, Q >= 1)
  avg_pool_backward_kernel<<<grid_for(dx.numel(), kThreads), kThreads, 0, stream_of(ctx)>>>(g, dy.data<float>(),
                                                                                            dx.data<float>());
  SAL_CUDA_LAUNCH_CHECK(op);
}

void global_avg_pool(Ctx& ctx, const Tensor& x, Tensor& y) {
  const int64_t planes = x.dim(0) * x.dim(1), hw = x.dim(2) * x.dim(3);
  if (planes == 0) return;
  global_avg_pool_kernel<<<grid_for(planes * 32, kThreads), kThreads, 0, stream_of(ctx)>>>(
      planes, hw, x.data<float>(), y.data<float>());
  SAL_CUDA_LAUNCH_CHECK("global_avg_pool");
}

void global_avg_pool_backward(Ctx& ctx, const Tensor& dy, Tensor& dx) {
  const int64_t planes = dx.dim(0) * dx.dim(1), hw = dx.dim(2) * dx.dim(3);
  if (dx.numel() == 0) return;
  SAL_CHECK(hw <= INT_MAX, "global_avg_pool_backward: planes of ", dx.desc(), " are too large for the CUDA kernel");
  global_avg_pool_backward_kernel<<<grid_for(dx.numel(), kThreads), kThreads, 0, stream_of(ctx)>>>(
      planes, static_cast<int>(hw), dy.data<float>(), dx.data<float>());
  SAL_CUDA_LAUNCH_CHECK("global_avg_pool_backward");
}

}  // namespace sal::cuda
