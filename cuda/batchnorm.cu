// Batch normalisation over the N, H, W of each channel of an NCHW f32 tensor on CUDA: inference
// (optionally fused with a residual add and ReLU / ReLU6), training with batch statistics, and
// both backwards. Same arithmetic as engine/cpu/batchnorm.cpp.
//
// x, y, dy, dx, residual: [N,C,H,W] contiguous; gamma, beta, mean, var, save_mean, save_invstd,
// running_mean, running_var, dgamma, dbeta: [C].
//
// Why it is written this way:
// - Memory-bound. Every pass walks the N*C planes (H*W contiguous values of one channel of one
//   sample), split into segments of up to 4 items per thread (an item is a float4 when H*W is a
//   multiple of 4 and every pointer is 16-byte aligned, else one float; views from slice0 can be
//   unaligned). Each thread issues all its loads (up to 4 x 16 bytes per tensor) before it uses
//   any, so many bytes are in flight per SM. One block per (plane, segment): the channel is a
//   per-block constant, so there is no per-element index division, and the per-channel
//   constants are computed once per block (in double, as the CPU does, while the loads are in
//   flight) and broadcast through shared memory. Small planes (7x7) get blocks of as few as 32
//   threads instead of idle lanes.
// - Per-channel sums are deterministic two-pass reductions, no atomics: each block reduces its
//   segment (per-thread float sums, combined in double with a fixed shuffle tree) into a partial
//   of its own; then one warp per channel adds that channel's partials in a fixed order. The
//   result does not depend on scheduling and is the same run to run.
// - Training statistics use the CPU's shifted sums: (x - K) and (x - K)^2 with K = x[0,c,0,0],
//   so the variance does not cancel when |mean| >> std. The finalising warp also writes
//   save_mean / save_invstd, updates the running statistics (unbiased variance), accumulates
//   dgamma / dbeta, and turns the sums into per-channel coefficients for the elementwise pass.
// - batchnorm2d_infer_act fuses y = act(bn(x) + residual) into one read of x (and residual) and
//   one write of y: ResNet's bn3 + identity + ReLU and MobileNet's BN + ReLU6.
// - batchnorm2d_infer_backward computes dx and the dgamma / dbeta partial sums in one pass;
//   batchnorm2d_infer_act_backward is its dx pass with the activation's derivative (from y) folded in.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cuda/batchnorm.h"
#include "cuda/bn_infer_scale.h"
#include "cuda/launch.cuh"

namespace sal::cuda {

namespace {

constexpr int kMaxThreads = 256;  // threads per block of the plane passes (a multiple of 32)
constexpr int kItems = 4;         // items per thread per segment


// How the planes are cut into blocks: block b covers plane b / segs, elements
// [(b % segs) * seg_len, min(+seg_len, hw)) of it.
struct PlaneGrid {
  int64_t planes = 0, hw = 0, channels = 0;
  int64_t seg_len = 0, segs = 0;
  int threads = 0;
  bool vec = false;  // float4 items
};

PlaneGrid plane_grid(const char* op, const Tensor& x, bool all_aligned) {
  PlaneGrid g;
  g.channels = x.dim(1);
  g.planes = x.dim(0) * x.dim(1);
  g.hw = x.dim(2) * x.dim(3);
  g.vec = all_aligned && g.hw % 4 == 0;
  const int64_t units = g.vec ? g.hw / 4 : g.hw;
  g.threads = units >= kMaxThreads ? kMaxThreads : static_cast<int>(std::max<int64_t>(32, (units + 31) / 32 * 32));
  g.seg_len = static_cast<int64_t>(g.threads) * (g.vec ? 4 : 1) * kItems;
  g.segs = std::max<int64_t>(1, (g.hw + g.seg_len - 1) / g.seg_len);
  SAL_CHECK(g.planes * g.segs <= INT32_MAX, op, ": ", x.desc(), " needs more than 2^31 blocks");
  return g;
}

// The (plane, segment) of this block.
struct Segment {
  int64_t base;        // offset of the plane
  int64_t begin, end;  // element range inside the plane
  int64_t channel;
};

__device__ __forceinline__ Segment segment_of(const PlaneGrid& g) {
  const int64_t b = blockIdx.x;
  const int64_t plane = b / g.segs;
  Segment s;
  s.base = plane * g.hw;
  s.begin = (b - plane * g.segs) * g.seg_len;
  s.end = min(s.begin + g.seg_len, g.hw);
  s.channel = plane % g.channels;
  return s;
}

// Item u of this thread covers the elements [i, i + width) of its plane, width = 4 (float4) or 1,
// i = begin + (u * blockDim.x + threadIdx.x) * width; it exists while i < end. The segment is
// exactly kItems items per thread, so every load of a thread can be issued before the first use.
template <bool Vec>
__device__ __forceinline__ int64_t item_at(const Segment& s, int u) {
  return s.begin + (static_cast<int64_t>(u) * blockDim.x + threadIdx.x) * (Vec ? 4 : 1);
}

template <bool Vec>
__device__ __forceinline__ void load_items(const float* p, const Segment& s, float4 (&v)[kItems]) {
#pragma unroll
  for (int u = 0; u < kItems; ++u) {
    const int64_t i = item_at<Vec>(s, u);
    if (i < s.end) v[u] = Vec ? *reinterpret_cast<const float4*>(p + i) : make_float4(p[i], 0.f, 0.f, 0.f);
  }
}

template <bool Vec>
__device__ __forceinline__ void store_item(float* p, int64_t i, const float4& v) {
  if (Vec)
    *reinterpret_cast<float4*>(p + i) = v;
  else
    p[i] = v.x;
}

// f applied to the live components of an item (all four, or .x).
template <bool Vec, class F>
__device__ __forceinline__ float4 map2(const float4& a, const float4& b, F f) {
  return Vec ? make_float4(f(a.x, b.x), f(a.y, b.y), f(a.z, b.z), f(a.w, b.w)) : make_float4(f(a.x, b.x), 0.f, 0.f, 0.f);
}

// Sum of f over the live components of an item.
template <bool Vec, class F>
__device__ __forceinline__ float sum2(const float4& a, const float4& b, F f) {
  return Vec ? (f(a.x, b.x) + f(a.y, b.y)) + (f(a.z, b.z) + f(a.w, b.w)) : f(a.x, b.x);
}

// Sums of a and b over the block; the result is valid in thread 0. blockDim.x is a multiple of
// 32 and at most kMaxThreads; every thread of the block must call it. Fixed order.
__device__ void block_sum2(double& a, double& b) {
  __shared__ double sa[kMaxThreads / 32], sb[kMaxThreads / 32];
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_down_sync(0xffffffffu, a, o);
    b += __shfl_down_sync(0xffffffffu, b, o);
  }
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) {
    sa[warp] = a;
    sb[warp] = b;
  }
  __syncthreads();
  if (warp == 0) {
    const int nw = blockDim.x >> 5;
    a = lane < nw ? sa[lane] : 0.0;
    b = lane < nw ? sb[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) {
      a += __shfl_down_sync(0xffffffffu, a, o);
      b += __shfl_down_sync(0xffffffffu, b, o);
    }
  }
}

// Sums over channel c of the per-block partials part[(n*C + c)*segs + seg][2], in a fixed order;
// every lane of the calling warp gets the result.
__device__ void channel_sums(const double* part, const PlaneGrid& g, int64_t c, double& s0, double& s1) {
  const int lane = threadIdx.x & 31;
  const int64_t n = g.planes / g.channels, count = n * g.segs;
  s0 = 0;
  s1 = 0;
  for (int64_t e = lane; e < count; e += 32) {
    const int64_t ni = e / g.segs, seg = e - ni * g.segs;
    const int64_t b = (ni * g.channels + c) * g.segs + seg;
    s0 += part[2 * b];
    s1 += part[2 * b + 1];
  }
  for (int o = 16; o > 0; o >>= 1) {
    s0 += __shfl_xor_sync(0xffffffffu, s0, o);
    s1 += __shfl_xor_sync(0xffffffffu, s1, o);
  }
}

// ---------------------------------------------------------------- y = act((x - center) * scale + shift [+ r])

enum ActKind { kActNone = 0, kActRelu = 1, kActRelu6 = 2 };

template <int Act>
__device__ __forceinline__ float activate(float v) {
  if constexpr (Act == kActRelu) return v > 0.f ? v : 0.f;
  if constexpr (Act == kActRelu6) return v < 0.f ? 0.f : (v > 6.f ? 6.f : v);  // NaN passes, as on the CPU
  return v;
}

// Where the per-channel affine constants come from: the running statistics (inference), or the
// (center, scale) pairs the training statistics pass wrote (coef != null).
struct AffineParams {
  const float *gamma, *beta, *mean, *var;
  double eps;
  const float* coef;  // [C][2] or null
};

struct Affine {
  float center, scale, shift;
};

// x, r: [N,C,H,W] -> y: [N,C,H,W]; one block per (plane, segment). y may be x
// (batchnorm2d_infer_act_inplace): every element is loaded by the thread that stores it, all loads before the
// barrier and all stores after it, so x and y carry no __restrict__.
template <int Act, bool HasRes, bool Vec>
__global__ void bn_affine_kernel(PlaneGrid g, const float* x, const float* __restrict__ r, float* y, AffineParams p) {
  const Segment s = segment_of(g);
  float4 v[kItems] = {}, w[kItems] = {};
  load_items<Vec>(x + s.base, s, v);
  if constexpr (HasRes) load_items<Vec>(r + s.base, s, w);
  // The channel's constants, once per block (in double, as the CPU), while the loads are in flight.
  __shared__ Affine sk;
  if (threadIdx.x == 0) {
    const int64_t c = s.channel;
    Affine k;
    if (p.coef) {
      k.center = p.coef[2 * c];
      k.scale = p.coef[2 * c + 1];
    } else {
      k.center = p.mean[c];
      k.scale = bn_infer_scale(p.gamma[c], p.var[c], p.eps);
    }
    k.shift = p.beta[c];
    sk = k;
  }
  __syncthreads();
  const Affine k = sk;
  auto f = [k](float a, float b) {
    float t = (a - k.center) * k.scale + k.shift;
    if (HasRes) t += b;
    return activate<Act>(t);
  };
  float* ys = y + s.base;
#pragma unroll
  for (int u = 0; u < kItems; ++u) {
    const int64_t i = item_at<Vec>(s, u);
    if (i < s.end) store_item<Vec>(ys, i, map2<Vec>(v[u], w[u], f));
  }
}

// ---------------------------------------------------------------- training statistics

// x: [N,C,H,W] -> part: [blocks][2], sums of (x - K) and (x - K)^2 over the block's segment,
// K = x[0,c,0,0].
template <bool Vec>
__global__ void bn_stats_kernel(PlaneGrid g, const float* __restrict__ x, double* __restrict__ part) {
  const Segment s = segment_of(g);
  float4 v[kItems] = {};
  load_items<Vec>(x + s.base, s, v);
  const float k = x[s.channel * g.hw];
  float a = 0.f, b = 0.f;
#pragma unroll
  for (int u = 0; u < kItems; ++u) {
    if (item_at<Vec>(s, u) < s.end) {
      a += sum2<Vec>(v[u], v[u], [k](float t, float) { return t - k; });
      b += sum2<Vec>(v[u], v[u], [k](float t, float) { return (t - k) * (t - k); });
    }
  }
  double da = a, db = b;
  block_sum2(da, db);
  if (threadIdx.x == 0) {
    part[2 * blockIdx.x] = da;
    part[2 * blockIdx.x + 1] = db;
  }
}

struct StatsArgs {
  const float *x, *gamma;
  const double* part;
  float *save_mean, *save_invstd, *running_mean, *running_var;  // running_* nullable
  float* coef;                                                  // [C][2]: center, scale
  double eps, momentum;
};

// part: [blocks][2] -> save_mean, save_invstd, running stats, coef: [C]; one warp per channel.
__global__ void bn_stats_finalize_kernel(PlaneGrid g, StatsArgs a) {
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (c >= g.channels) return;  // whole warps leave together
  double s1, s2;
  channel_sums(a.part, g, c, s1, s2);
  if ((threadIdx.x & 31) != 0) return;
  const double m = static_cast<double>((g.planes / g.channels) * g.hw);
  const double k = static_cast<double>(a.x[c * g.hw]);
  const double mu = k + s1 / m;
  const double var = fmax(0.0, (s2 - s1 * s1 / m) / m);
  const double invstd = 1.0 / sqrt(var + a.eps);
  a.save_mean[c] = static_cast<float>(mu);
  a.save_invstd[c] = static_cast<float>(invstd);
  if (a.running_mean) {
    a.running_mean[c] = static_cast<float>((1 - a.momentum) * static_cast<double>(a.running_mean[c]) + a.momentum * mu);
    const double unbiased = var * m / (m - 1);
    a.running_var[c] =
        static_cast<float>((1 - a.momentum) * static_cast<double>(a.running_var[c]) + a.momentum * unbiased);
  }
  a.coef[2 * c] = static_cast<float>(mu);
  a.coef[2 * c + 1] = static_cast<float>(static_cast<double>(a.gamma[c]) * invstd);
}

// ---------------------------------------------------------------- backward sums

// The activation's derivative from its output y: 1, [y > 0] (ReLU), [0 < y < 6] (ReLU6).
template <int Act>
__device__ __forceinline__ bool passes(float y) {
  if constexpr (Act == kActRelu) return y > 0.f;
  if constexpr (Act == kActRelu6) return y > 0.f && y < 6.f;
  return true;
}

// dy, x: [N,C,H,W] -> part: [blocks][2], sums of dy and dy * (x - mean[c]) (when Sums);
// dx = dy * gamma / sqrt(var + eps) (when WriteDx: the inference backward), times the activation's
// derivative at x when Act is not kActNone (x is then the activation's output y: the fused
// batchnorm2d_infer_act_backward; never with Sums).
template <bool Sums, bool WriteDx, int Act, bool Vec>
__global__ void bn_grad_pass_kernel(PlaneGrid g, const float* __restrict__ dy, const float* __restrict__ x,
                                    const float* __restrict__ mean, const float* __restrict__ gamma,
                                    const float* __restrict__ var, double eps, float* __restrict__ dx,
                                    double* __restrict__ part) {
  static_assert(!(Sums && Act != kActNone), "the parameter sums need x, not an activation's output");
  const Segment s = segment_of(g);
  float4 d[kItems] = {}, v[kItems] = {};
  load_items<Vec>(dy + s.base, s, d);
  if constexpr (Sums || Act != kActNone) load_items<Vec>(x + s.base, s, v);
  if constexpr (WriteDx) {
    __shared__ float sscale;
    if (threadIdx.x == 0) {
      const double invstd = 1.0 / sqrt(static_cast<double>(var[s.channel]) + eps);
      sscale = static_cast<float>(static_cast<double>(gamma[s.channel]) * invstd);
    }
    __syncthreads();
    const float scale = sscale;
    float* dxs = dx + s.base;
#pragma unroll
    for (int u = 0; u < kItems; ++u) {
      const int64_t i = item_at<Vec>(s, u);
      if (i < s.end)
        store_item<Vec>(dxs, i, map2<Vec>(d[u], v[u], [scale](float t, float yv) {
                          return passes<Act>(yv) ? t * scale : 0.f;
                        }));
    }
  }
  if constexpr (Sums) {
    const float mu = mean[s.channel];
    float a = 0.f, b = 0.f;
#pragma unroll
    for (int u = 0; u < kItems; ++u) {
      if (item_at<Vec>(s, u) < s.end) {
        a += sum2<Vec>(d[u], v[u], [](float t, float) { return t; });
        b += sum2<Vec>(d[u], v[u], [mu](float t, float xv) { return t * (xv - mu); });
      }
    }
    double da = a, db = b;
    block_sum2(da, db);
    if (threadIdx.x == 0) {
      part[2 * blockIdx.x] = da;
      part[2 * blockIdx.x + 1] = db;
    }
  }
}

struct GradFinalizeArgs {
  const double* part;
  const float *gamma, *var, *save_invstd;  // var (inference) or save_invstd (training)
  double eps;
  float *dgamma, *dbeta;  // nullable, accumulated
  float* coef;            // [C][3] for the training dx pass, or null
};

// part: [blocks][2] -> dgamma, dbeta: [C] +=, coef: [C][3]; one warp per channel.
__global__ void bn_grad_finalize_kernel(PlaneGrid g, GradFinalizeArgs a) {
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  if (c >= g.channels) return;  // whole warps leave together
  double sdy, sdyx;
  channel_sums(a.part, g, c, sdy, sdyx);
  if ((threadIdx.x & 31) != 0) return;
  const double invstd = a.save_invstd ? static_cast<double>(a.save_invstd[c])
                                      : 1.0 / sqrt(static_cast<double>(a.var[c]) + a.eps);
  if (a.dgamma) a.dgamma[c] = static_cast<float>(static_cast<double>(a.dgamma[c]) + sdyx * invstd);
  if (a.dbeta) a.dbeta[c] = static_cast<float>(static_cast<double>(a.dbeta[c]) + sdy);
  if (a.coef) {
    const double m = static_cast<double>((g.planes / g.channels) * g.hw);
    const double k = static_cast<double>(a.gamma[c]) * invstd;
    a.coef[3 * c] = static_cast<float>(k);
    a.coef[3 * c + 1] = static_cast<float>(-k * invstd * invstd * sdyx / m);
    a.coef[3 * c + 2] = static_cast<float>(-k * sdy / m);
  }
}

// dy, x: [N,C,H,W] -> dx: [N,C,H,W], dx = a*dy + cx*(x - mean) + cb with coef [C][3] = (a, cx, cb).
template <bool Vec>
__global__ void bn_train_dx_kernel(PlaneGrid g, const float* __restrict__ dy, const float* __restrict__ x,
                                   const float* __restrict__ mean, const float* __restrict__ coef,
                                   float* __restrict__ dx) {
  const Segment s = segment_of(g);
  float4 d[kItems] = {}, v[kItems] = {};
  load_items<Vec>(dy + s.base, s, d);
  load_items<Vec>(x + s.base, s, v);
  const float k = coef[3 * s.channel], cx = coef[3 * s.channel + 1], cb = coef[3 * s.channel + 2];
  const float mu = mean[s.channel];
  auto f = [=](float t, float xv) { return k * t + cx * (xv - mu) + cb; };
  float* dxs = dx + s.base;
#pragma unroll
  for (int u = 0; u < kItems; ++u) {
    const int64_t i = item_at<Vec>(s, u);
    if (i < s.end) store_item<Vec>(dxs, i, map2<Vec>(d[u], v[u], f));
  }
}

// ---------------------------------------------------------------- launch helpers

unsigned blocks_of(const PlaneGrid& g) { return static_cast<unsigned>(g.planes * g.segs); }
unsigned warp_blocks(int64_t channels) { return static_cast<unsigned>((channels + 3) / 4); }  // 4 warps a block

template <int Act, bool HasRes>
void launch_affine(Ctx& ctx, const PlaneGrid& g, const float* x, const float* r, float* y, const AffineParams& p) {
  if (g.vec)
    bn_affine_kernel<Act, HasRes, true><<<blocks_of(g), g.threads, 0, stream_of(ctx)>>>(g, x, r, y, p);
  else
    bn_affine_kernel<Act, HasRes, false><<<blocks_of(g), g.threads, 0, stream_of(ctx)>>>(g, x, r, y, p);
}

template <int Act>
void launch_affine(Ctx& ctx, const PlaneGrid& g, const float* x, const float* r, float* y, const AffineParams& p) {
  if (r)
    launch_affine<Act, true>(ctx, g, x, r, y, p);
  else
    launch_affine<Act, false>(ctx, g, x, r, y, p);
}

void affine(Ctx& ctx, const char* op, const Tensor& x, const Tensor* residual, Activation act, Tensor& y,
            const AffineParams& p) {
  if (x.numel() == 0) return;
  const bool al = aligned16(x.raw()) && aligned16(y.raw()) && (!residual || aligned16(residual->raw()));
  const PlaneGrid g = plane_grid(op, x, al);
  const float* r = residual ? residual->data<float>() : nullptr;
  switch (act) {
    case Activation::None: launch_affine<kActNone>(ctx, g, x.data<float>(), r, y.data<float>(), p); break;
    case Activation::ReLU: launch_affine<kActRelu>(ctx, g, x.data<float>(), r, y.data<float>(), p); break;
    case Activation::ReLU6: launch_affine<kActRelu6>(ctx, g, x.data<float>(), r, y.data<float>(), p); break;
  }
  SAL_CUDA_LAUNCH_CHECK(op);
}

template <bool Sums, bool WriteDx, int Act = kActNone>
void launch_grad_pass(Ctx& ctx, const PlaneGrid& g, const float* dy, const float* x, const float* mean,
                      const float* gamma, const float* var, double eps, float* dx, double* part) {
  if (g.vec)
    bn_grad_pass_kernel<Sums, WriteDx, Act, true>
        <<<blocks_of(g), g.threads, 0, stream_of(ctx)>>>(g, dy, x, mean, gamma, var, eps, dx, part);
  else
    bn_grad_pass_kernel<Sums, WriteDx, Act, false>
        <<<blocks_of(g), g.threads, 0, stream_of(ctx)>>>(g, dy, x, mean, gamma, var, eps, dx, part);
}

float* opt(Tensor* t) { return t ? t->data<float>() : nullptr; }

}  // namespace

void batchnorm2d_infer(Ctx& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                       const Tensor& var, double eps, Tensor& y) {
  batchnorm2d_infer_act(ctx, x, gamma, beta, mean, var, eps, nullptr, Activation::None, y);
}

void batchnorm2d_infer_act(Ctx& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                           const Tensor& var, double eps, const Tensor* residual, Activation act, Tensor& y) {
  const AffineParams p{gamma.data<float>(), beta.data<float>(), mean.data<float>(), var.data<float>(), eps, nullptr};
  affine(ctx, "batchnorm2d_infer_act", x, residual, act, y, p);
}

void batchnorm2d_infer_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                const Tensor& var, double eps, Tensor& dx, Tensor* dgamma, Tensor* dbeta) {
  const char* op = "batchnorm2d_infer_backward";
  if (x.numel() == 0) return;
  const bool want_params = dgamma || dbeta;
  const bool al = aligned16(dy.raw()) && aligned16(dx.raw()) && (!want_params || aligned16(x.raw()));
  const PlaneGrid g = plane_grid(op, x, al);
  const cudaStream_t st = stream_of(ctx);
  if (!want_params) {
    launch_grad_pass<false, true>(ctx, g, dy.data<float>(), x.data<float>(), mean.data<float>(), gamma.data<float>(),
                                  var.data<float>(), eps, dx.data<float>(), nullptr);
    SAL_CUDA_LAUNCH_CHECK(op);
    return;
  }
  Tensor part = ctx.alloc(Shape{2 * g.planes * g.segs}, DType::F64);
  launch_grad_pass<true, true>(ctx, g, dy.data<float>(), x.data<float>(), mean.data<float>(), gamma.data<float>(),
                               var.data<float>(), eps, dx.data<float>(), part.data<double>());
  SAL_CUDA_LAUNCH_CHECK(op);
  const GradFinalizeArgs fa{part.data<double>(), gamma.data<float>(), var.data<float>(), nullptr, eps,
                            opt(dgamma), opt(dbeta), nullptr};
  bn_grad_finalize_kernel<<<warp_blocks(g.channels), 128, 0, st>>>(g, fa);
  SAL_CUDA_LAUNCH_CHECK(op);
}

void batchnorm2d_infer_act_backward(Ctx& ctx, const Tensor& dy, const Tensor& y, const Tensor& gamma, const Tensor& var,
                                    double eps, Activation act, Tensor& dx) {
  const char* op = "batchnorm2d_infer_act_backward";
  if (y.numel() == 0) return;
  const bool al = aligned16(dy.raw()) && aligned16(dx.raw()) && aligned16(y.raw());
  const PlaneGrid g = plane_grid(op, y, al);
  const float *pdy = dy.data<float>(), *py = y.data<float>(), *pg = gamma.data<float>(), *pv = var.data<float>();
  float* pdx = dx.data<float>();
  switch (act) {
    case Activation::None:
      launch_grad_pass<false, true, kActNone>(ctx, g, pdy, py, nullptr, pg, pv, eps, pdx, nullptr);
      break;
    case Activation::ReLU:
      launch_grad_pass<false, true, kActRelu>(ctx, g, pdy, py, nullptr, pg, pv, eps, pdx, nullptr);
      break;
    case Activation::ReLU6:
      launch_grad_pass<false, true, kActRelu6>(ctx, g, pdy, py, nullptr, pg, pv, eps, pdx, nullptr);
      break;
  }
  SAL_CUDA_LAUNCH_CHECK(op);
}

void batchnorm2d_train(Ctx& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, double momentum,
                       Tensor* running_mean, Tensor* running_var, Tensor& save_mean, Tensor& save_invstd, Tensor& y) {
  const char* op = "batchnorm2d_train";
  if (x.numel() == 0) return;  // the op has checked N*H*W > 1, so this never happens
  const PlaneGrid g = plane_grid(op, x, aligned16(x.raw()) && aligned16(y.raw()));
  const cudaStream_t st = stream_of(ctx);
  Tensor part = ctx.alloc(Shape{2 * g.planes * g.segs}, DType::F64);
  Tensor coef = ctx.alloc(Shape{2 * g.channels}, DType::F32);
  if (g.vec)
    bn_stats_kernel<true><<<blocks_of(g), g.threads, 0, st>>>(g, x.data<float>(), part.data<double>());
  else
    bn_stats_kernel<false><<<blocks_of(g), g.threads, 0, st>>>(g, x.data<float>(), part.data<double>());
  SAL_CUDA_LAUNCH_CHECK(op);
  const StatsArgs sa{x.data<float>(),     gamma.data<float>(), part.data<double>(), save_mean.data<float>(),
                     save_invstd.data<float>(), opt(running_mean), opt(running_var), coef.data<float>(),
                     eps,                 momentum};
  bn_stats_finalize_kernel<<<warp_blocks(g.channels), 128, 0, st>>>(g, sa);
  SAL_CUDA_LAUNCH_CHECK(op);
  const AffineParams p{gamma.data<float>(), beta.data<float>(), nullptr, nullptr, eps, coef.data<float>()};
  launch_affine<kActNone, false>(ctx, g, x.data<float>(), nullptr, y.data<float>(), p);
  SAL_CUDA_LAUNCH_CHECK(op);
}

void batchnorm2d_train_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx, Tensor* dgamma,
                                Tensor* dbeta) {
  const char* op = "batchnorm2d_train_backward";
  if (x.numel() == 0) return;
  const PlaneGrid g = plane_grid(op, x, aligned16(dy.raw()) && aligned16(x.raw()) && aligned16(dx.raw()));
  const cudaStream_t st = stream_of(ctx);
  Tensor part = ctx.alloc(Shape{2 * g.planes * g.segs}, DType::F64);
  Tensor coef = ctx.alloc(Shape{3 * g.channels}, DType::F32);
  launch_grad_pass<true, false>(ctx, g, dy.data<float>(), x.data<float>(), save_mean.data<float>(), nullptr, nullptr,
                                0.0, nullptr, part.data<double>());
  SAL_CUDA_LAUNCH_CHECK(op);
  const GradFinalizeArgs fa{part.data<double>(), gamma.data<float>(), nullptr, save_invstd.data<float>(), 0.0,
                            opt(dgamma), opt(dbeta), coef.data<float>()};
  bn_grad_finalize_kernel<<<warp_blocks(g.channels), 128, 0, st>>>(g, fa);
  SAL_CUDA_LAUNCH_CHECK(op);
  if (g.vec)
    bn_train_dx_kernel<true><<<blocks_of(g), g.threads, 0, st>>>(g, dy.data<float>(), x.data<float>(),
                                                                 save_mean.data<float>(), coef.data<float>(),
                                                                 dx.data<float>());
  else
    bn_train_dx_kernel<false><<<blocks_of(g), g.threads, 0, st>>>(g, dy.data<float>(), x.data<float>(),
                                                                  save_mean.data<float>(), coef.data<float>(),
                                                                  dx.data<float>());
  SAL_CUDA_LAUNCH_CHECK(op);
}

}  // namespace sal::cuda
