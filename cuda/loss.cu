// CUDA kernels (f32): softmax / log-softmax over the last dimension, cross-entropy, and the mask
// regularisers (total variation with an optional border term, area as a mean of a power).
//
// softmax family: logits [N,K] row-major. One thread block per row (grid-stride over rows), the
//   block's threads stride over the row: a block max, then a block sum of exp(z - max), then the
//   outputs. Block reductions are warp shuffles and one shared-memory step, the same tree every
//   time (deterministic). expf/logf (not the fast intrinsics) to stay close to the CPU's
//   std::exp. cross_entropy = max + log(sum exp(z - max)) - z[label]; its backward
//   (softmax - onehot) * dloss[n] recomputes the row's max and sum from the logits. A label
//   outside [0, K) writes NaN (the sample's loss or its gradient row): kernels cannot throw.
// tv_loss / area_loss: m [N,1,H,W] -> [N], a per-sample reduction done in two deterministic
//   passes: block (s, n) reduces slice s of sample n's pixels (thread partials in double, a block
//   tree) into part[n, s]; then one warp per sample adds its slices in a fixed tree. The slices
//   are sized so that a batch of a few large masks still fills the device. Every pixel reads its
//   right and lower neighbours (coalesced, the neighbours come from cache). The backwards are
//   elementwise, one thread per pixel, blockIdx.y = sample. area_loss with a non-integer power and
//   a base m + eps <= 0 gives NaN (the loss of that sample, the gradient of that pixel).
#include "cuda/loss.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "cuda/launch.cuh"

namespace sal::cuda {

namespace {

constexpr int kBlock = 256;

struct SumOp {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Block-wide reduction (blockDim.x a multiple of 32, at most 1024), the same tree every call;
// every thread gets the result. smem: 32 elements.
template <class T, class Op>
__device__ T block_reduce(T v, Op op, T identity, T* smem) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();  // smem may still be read by a previous call
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < nw ? smem[lane] : identity;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
    if (lane == 0) smem[0] = v;
  }
  __syncthreads();
  return smem[0];
}

// Threads per row block: enough for K, a multiple of 32, at most 256.
int row_threads(int64_t K) { return K >= 1024 ? 256 : K >= 256 ? 128 : K >= 64 ? 64 : 32; }
unsigned row_blocks(int64_t N) { return static_cast<unsigned>(std::clamp<int64_t>(N, 1, int64_t{1} << 20)); }

// ---------------------------------------------------------------- softmax family

// Row max and sum of exp(z - max) of zr[0..K), every thread of the block gets both.
__device__ __forceinline__ float2 row_max_sum(const float* zr, int64_t K, float* smem) {
  float mx = neg_inf();
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) mx = fmaxf(mx, zr[k]);
  mx = block_reduce(mx, MaxOp{}, neg_inf(), smem);
  float s = 0.f;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) s += expf(zr[k] - mx);
  s = block_reduce(s, SumOp{}, 0.f, smem);
  return make_float2(mx, s);
}

// z: [N,K] -> y: [N,K], softmax (LOG: log-softmax) of each row; one block per row.
template <bool LOG>
__global__ void softmax_kernel(const float* __restrict__ z, float* __restrict__ y, int64_t N, int64_t K) {
  __shared__ float smem[32];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const float* zr = z + n * K;
    float* yr = y + n * K;
    const float2 ms = row_max_sum(zr, K, smem);
    if constexpr (LOG) {
      const float shift = ms.x + logf(ms.y);
      for (int64_t k = threadIdx.x; k < K; k += blockDim.x) yr[k] = zr[k] - shift;
    } else {
      const float inv = 1.f / ms.y;
      for (int64_t k = threadIdx.x; k < K; k += blockDim.x) yr[k] = expf(zr[k] - ms.x) * inv;
    }
  }
}

// dy, y: [N,K] -> dx. softmax: dx = y (dy - <dy, y>); LOG (y = log-probabilities):
// dx = dy - exp(y) sum(dy). One block per row.
template <bool LOG>
__global__ void softmax_backward_kernel(const float* __restrict__ dy, const float* __restrict__ y,
                                        float* __restrict__ dx, int64_t N, int64_t K) {
  __shared__ float smem[32];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const float* gr = dy + n * K;
    const float* yr = y + n * K;
    float* dr = dx + n * K;
    float s = 0.f;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) s += LOG ? gr[k] : gr[k] * yr[k];
    s = block_reduce(s, SumOp{}, 0.f, smem);
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
      if constexpr (LOG) dr[k] = gr[k] - expf(yr[k]) * s;
      else dr[k] = yr[k] * (gr[k] - s);
    }
  }
}

// z: [N,K], labels: i32[N] -> loss: [N]. One block per row.
__global__ void cross_entropy_kernel(const float* __restrict__ z, const int32_t* __restrict__ labels,
                                     float* __restrict__ loss, int64_t N, int64_t K) {
  __shared__ float smem[32];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const float* zr = z + n * K;
    const float2 ms = row_max_sum(zr, K, smem);
    if (threadIdx.x == 0) {
      const int32_t l = labels[n];
      loss[n] = (l >= 0 && l < K) ? (ms.x - zr[l]) + logf(ms.y) : qnan();
    }
  }
}

// dloss: [N], z: [N,K], labels: i32[N] -> d: [N,K] = (softmax - onehot) * dloss[n]. One block per row.
__global__ void cross_entropy_backward_kernel(const float* __restrict__ dloss, const float* __restrict__ z,
                                              const int32_t* __restrict__ labels, float* __restrict__ d, int64_t N,
                                              int64_t K) {
  __shared__ float smem[32];
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    const float* zr = z + n * K;
    float* dr = d + n * K;
    const float2 ms = row_max_sum(zr, K, smem);
    const int32_t l = labels[n];
    const bool ok = l >= 0 && l < K;
    const float g = dloss[n];
    const float w = g / ms.y;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
      float v = expf(zr[k] - ms.x) * w;
      if (k == l) v -= g;
      dr[k] = ok ? v : qnan();
    }
  }
}

// ---------------------------------------------------------------- per-sample mask losses

__device__ double block_sum(double v, double* smem) { return block_reduce(v, SumOp{}, 0.0, smem); }

// m: [N,H,W] -> part: [N, gridDim.x] (double); block (s, n) covers pixels [s*per, s*per+per).
// Per pixel: squared differences with the right and lower neighbours, plus bw * m^2 on the ring.
__global__ void tv_partial_kernel(const float* __restrict__ m, double* __restrict__ part, int64_t N, int H, int W,
                                  int64_t per, double bw) {
  __shared__ double smem[32];
  const int64_t HW = static_cast<int64_t>(H) * W;
  const int64_t p0 = blockIdx.x * per, p1 = min(HW, p0 + per);
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const float* mp = m + n * HW;
    double diff = 0, ring = 0;
    for (int64_t p = p0 + threadIdx.x; p < p1; p += blockDim.x) {
      const unsigned up = static_cast<unsigned>(p);  // HW < 2^31 (checked on the host)
      const int i = static_cast<int>(up / static_cast<unsigned>(W)), j = static_cast<int>(up - static_cast<unsigned>(i) * W);
      const float v = mp[p];
      if (j + 1 < W) {
        const double d = static_cast<double>(mp[p + 1]) - v;
        diff += d * d;
      }
      if (i + 1 < H) {
        const double d = static_cast<double>(mp[p + W]) - v;
        diff += d * d;
      }
      if (i == 0 || i == H - 1 || j == 0 || j == W - 1) ring += static_cast<double>(v) * v;
    }
    const double total = block_sum(diff + bw * ring, smem);
    if (threadIdx.x == 0) part[n * gridDim.x + blockIdx.x] = total;
  }
}

// m: [N,HW] -> part: [N, gridDim.x] (double), slices as above. PLAIN (power 1): sum of m + eps in
// double; else sum of powf(m + eps, power), NaN for a base <= 0 when need_positive.
template <bool PLAIN>
__global__ void area_partial_kernel(const float* __restrict__ m, double* __restrict__ part, int64_t N, int64_t HW,
                                    int64_t per, double eps, float te, float tp, bool need_positive) {
  __shared__ double smem[32];
  const int64_t p0 = blockIdx.x * per, p1 = min(HW, p0 + per);
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const float* mp = m + n * HW;
    double acc = 0;
    for (int64_t p = p0 + threadIdx.x; p < p1; p += blockDim.x) {
      if constexpr (PLAIN) {
        acc += static_cast<double>(mp[p]) + eps;
      } else {
        const float b = mp[p] + te;
        acc += (need_positive && !(b > 0.f)) ? static_cast<double>(qnan()) : static_cast<double>(powf(b, tp));
      }
    }
    const double total = block_sum(acc, smem);
    if (threadIdx.x == 0) part[n * gridDim.x + blockIdx.x] = total;
  }
}

// part: [N, slices] -> loss[n] = scale * sum of the row; one warp per sample, a fixed tree.
__global__ void finalize_kernel(const double* __restrict__ part, float* __restrict__ loss, int64_t N, int slices,
                                double scale) {
  for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    double acc = 0;
    for (int s = threadIdx.x; s < slices; s += 32) acc += part[n * slices + s];
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
    if (threadIdx.x == 0) loss[n] = static_cast<float>(acc * scale);
  }
}

// dloss: [N], m: [N,H,W] -> dm = 2 dloss[n] (sum over the 4-neighbours of (m - neighbour) + bw m on the ring).
__global__ void tv_backward_kernel(const float* __restrict__ dloss, const float* __restrict__ m, float* __restrict__ dm,
                                   int64_t N, int H, int W, float bw) {
  const int64_t HW = static_cast<int64_t>(H) * W;
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const float* mp = m + n * HW;
    float* d = dm + n * HW;
    const float k = 2.f * dloss[n];
    for (int64_t p = tid; p < HW; p += stride) {
      const unsigned up = static_cast<unsigned>(p);
      const int i = static_cast<int>(up / static_cast<unsigned>(W)), j = static_cast<int>(up - static_cast<unsigned>(i) * W);
      const float v = mp[p];
      float s = 0.f;
      if (i > 0) s += v - mp[p - W];
      if (i + 1 < H) s += v - mp[p + W];
      if (j > 0) s += v - mp[p - 1];
      if (j + 1 < W) s += v - mp[p + 1];
      if (i == 0 || i == H - 1 || j == 0 || j == W - 1) s += bw * v;
      d[p] = k * s;
    }
  }
}

// dloss: [N], m: [N,HW] -> dm = dloss[n] / HW * power * (m + eps)^(power - 1) (CONSTANT: power 0
// or 1, the derivative does not depend on m).
template <bool CONSTANT>
__global__ void area_backward_kernel(const float* __restrict__ dloss, const float* __restrict__ m,
                                     float* __restrict__ dm, int64_t N, int64_t HW, double power, float te, float tp1,
                                     bool need_positive) {
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const float tk = static_cast<float>(static_cast<double>(dloss[n]) / static_cast<double>(HW) * power);
    const float* mp = m + n * HW;
    float* d = dm + n * HW;
    for (int64_t p = tid; p < HW; p += stride) {
      if constexpr (CONSTANT) {
        d[p] = tk;
      } else {
        const float b = mp[p] + te;
        d[p] = (need_positive && !(b > 0.f)) ? qnan() : tk * powf(b, tp1);
      }
    }
  }
}

bool is_integer(double p) { return std::floor(p) == p; }

// Slices per sample for a per-sample reduction of HW pixels over N samples.
int64_t slices_for(int64_t N, int64_t HW) {
  const int64_t target = 4LL * sm_count();
  const int64_t max_slices = std::max<int64_t>(1, HW / (kBlock * 4));
  return std::clamp<int64_t>((target + N - 1) / N, 1, std::min<int64_t>(max_slices, 1024));
}

void check_pixels(const char* op, int64_t HW) {
  SAL_CHECK(HW <= INT_MAX, op, ": a mask of ", HW, " pixels is too large for the CUDA kernel (at most 2^31 - 1)");
}

}  // namespace

// ---------------------------------------------------------------- entry points

void softmax(Ctx& ctx, const Tensor& logits, Tensor& y) {
  const int64_t N = logits.dim(0), K = logits.dim(1);
  if (N == 0) return;
  softmax_kernel<false><<<row_blocks(N), row_threads(K), 0, stream_of(ctx)>>>(logits.data<float>(), y.data<float>(), N, K);
  SAL_CUDA_LAUNCH_CHECK("softmax");
}

void log_softmax(Ctx& ctx, const Tensor& logits, Tensor& y) {
  const int64_t N = logits.dim(0), K = logits.dim(1);
  if (N == 0) return;
  softmax_kernel<true><<<row_blocks(N), row_threads(K), 0, stream_of(ctx)>>>(logits.data<float>(), y.data<float>(), N, K);
  SAL_CUDA_LAUNCH_CHECK("log_softmax");
}

void softmax_backward(Ctx& ctx, const Tensor& dy, const Tensor& y, Tensor& dx) {
  const int64_t N = y.dim(0), K = y.dim(1);
  if (N == 0) return;
  softmax_backward_kernel<false><<<row_blocks(N), row_threads(K), 0, stream_of(ctx)>>>(dy.data<float>(), y.data<float>(),
                                                                                        dx.data<float>(), N, K);
  SAL_CUDA_LAUNCH_CHECK("softmax_backward");
}

void log_softmax_backward(Ctx& ctx, const Tensor& dy, const Tensor& y, Tensor& dx) {
  const int64_t N = y.dim(0), K = y.dim(1);
  if (N == 0) return;
  softmax_backward_kernel<true><<<row_blocks(N), row_threads(K), 0, stream_of(ctx)>>>(dy.data<float>(), y.data<float>(),
                                                                                       dx.data<float>(), N, K);
  SAL_CUDA_LAUNCH_CHECK("log_softmax_backward");
}

void cross_entropy(Ctx& ctx, const Tensor& logits, const Tensor& labels, Tensor& loss) {
  const int64_t N = logits.dim(0), K = logits.dim(1);
  if (N == 0) return;
  cross_entropy_kernel<<<row_blocks(N), row_threads(K), 0, stream_of(ctx)>>>(
      logits.data<float>(), labels.data<int32_t>(), loss.data<float>(), N, K);
  SAL_CUDA_LAUNCH_CHECK("cross_entropy");
}

void cross_entropy_backward(Ctx& ctx, const Tensor& dloss, const Tensor& logits, const Tensor& labels, Tensor& dlogits) {
  const int64_t N = logits.dim(0), K = logits.dim(1);
  if (N == 0) return;
  cross_entropy_backward_kernel<<<row_blocks(N), row_threads(K), 0, stream_of(ctx)>>>(
      dloss.data<float>(), logits.data<float>(), labels.data<int32_t>(), dlogits.data<float>(), N, K);
  SAL_CUDA_LAUNCH_CHECK("cross_entropy_backward");
}

void tv_loss(Ctx& ctx, const Tensor& m, double border_weight, Tensor& loss) {
  const int64_t N = m.dim(0), H = m.dim(2), W = m.dim(3), HW = H * W;
  if (N == 0) return;
  cudaStream_t st = stream_of(ctx);
  if (HW == 0) {
    SAL_CUDA_CHECK(cudaMemsetAsync(loss.raw(), 0, loss.nbytes(), st));
    return;
  }
  check_pixels("tv_loss", HW);
  const int64_t slices = slices_for(N, HW), per = (HW + slices - 1) / slices;
  Tensor part = ctx.alloc(Shape{N * slices}, DType::F64);
  tv_partial_kernel<<<dim3(static_cast<unsigned>(slices), grid_y(N)), kBlock, 0, st>>>(
      m.data<float>(), part.data<double>(), N, static_cast<int>(H), static_cast<int>(W), per, border_weight);
  SAL_CUDA_LAUNCH_CHECK("tv_loss");
  finalize_kernel<<<grid_y(N), 32, 0, st>>>(part.data<double>(), loss.data<float>(), N, static_cast<int>(slices), 1.0);
  SAL_CUDA_LAUNCH_CHECK("tv_loss");
}

void tv_loss_backward(Ctx& ctx, const Tensor& dloss, const Tensor& m, double border_weight, Tensor& dm) {
  const int64_t N = m.dim(0), H = m.dim(2), W = m.dim(3), HW = H * W;
  if (N == 0 || HW == 0) return;
  check_pixels("tv_loss_backward", HW);
  const unsigned gy = grid_y(N);
  tv_backward_kernel<<<dim3(grid_x(HW, gy), gy), kBlock, 0, stream_of(ctx)>>>(
      dloss.data<float>(), m.data<float>(), dm.data<float>(), N, static_cast<int>(H), static_cast<int>(W),
      static_cast<float>(border_weight));
  SAL_CUDA_LAUNCH_CHECK("tv_loss_backward");
}

// HW > 0 (checked by engine/ops_loss.cpp).
void area_loss(Ctx& ctx, const Tensor& m, double power, double eps, Tensor& loss) {
  const int64_t N = m.dim(0), HW = m.dim(2) * m.dim(3);
  if (N == 0) return;
  cudaStream_t st = stream_of(ctx);
  const int64_t slices = slices_for(N, HW), per = (HW + slices - 1) / slices;
  Tensor part = ctx.alloc(Shape{N * slices}, DType::F64);
  const dim3 grid(static_cast<unsigned>(slices), grid_y(N));
  const float te = static_cast<float>(eps), tp = static_cast<float>(power);
  if (power == 1)
    area_partial_kernel<true><<<grid, kBlock, 0, st>>>(m.data<float>(), part.data<double>(), N, HW, per, eps, te, tp, false);
  else
    area_partial_kernel<false><<<grid, kBlock, 0, st>>>(m.data<float>(), part.data<double>(), N, HW, per, eps, te, tp,
                                                        !is_integer(power));
  SAL_CUDA_LAUNCH_CHECK("area_loss");
  finalize_kernel<<<grid_y(N), 32, 0, st>>>(part.data<double>(), loss.data<float>(), N, static_cast<int>(slices),
                                            1.0 / static_cast<double>(HW));
  SAL_CUDA_LAUNCH_CHECK("area_loss");
}

void area_loss_backward(Ctx& ctx, const Tensor& dloss, const Tensor& m, double power, double eps, Tensor& dm) {
  const int64_t N = m.dim(0), HW = m.dim(2) * m.dim(3);
  if (N == 0) return;
  const unsigned gy = grid_y(N);
  const dim3 grid(grid_x(HW, gy), gy);
  const float te = static_cast<float>(eps), tp1 = static_cast<float>(power - 1);
  if (power == 0 || power == 1)
    area_backward_kernel<true><<<grid, kBlock, 0, stream_of(ctx)>>>(dloss.data<float>(), m.data<float>(),
                                                                   dm.data<float>(), N, HW, power, te, tp1, false);
  else
    area_backward_kernel<false><<<grid, kBlock, 0, stream_of(ctx)>>>(dloss.data<float>(), m.data<float>(),
                                                                    dm.data<float>(), N, HW, power, te, tp1,
                                                                    !is_integer(power));
  SAL_CUDA_LAUNCH_CHECK("area_loss_backward");
}

}  // namespace sal::cuda
