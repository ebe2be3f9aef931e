// Separable Gaussian blur of every plane of an NCHW f32 tensor on CUDA, and its adjoint (the
// backward), as engine/cpu/blur.cpp: y = V(Hz(x)) with Hz[h, w] = sum_k t[k] x[h, fold(w+k-half)]
// and V likewise along H; reflect padding that keeps folding when the kernel is wider than the
// image. x, y, dy, dx: [N,C,H,W] contiguous; the intermediate image comes from the arena.
//
// Taps: computed on the host exactly as the CPU does (in double, normalised, then rounded to
// float) and passed by value in a __grid_constant__ argument struct (no constant-memory symbol
// to race on between streams); each block copies them to shared memory. ksize <= kMaxBlurTaps.
//
// Why it is written this way:
// - Two passes, each a tiled correlation from shared memory. The 55-tap blur does 110 FMAs per
//   pixel against 8 bytes of compulsory traffic, more than an H100 does per byte of HBM, so the
//   passes are written to keep the FMA pipes busy: register blocking with few shared loads.
// - Horizontal pass: one warp per row, in segments of 128 outputs (4 consecutive per lane). A
//   segment plus its halo (128 + ksize rounded up to 4 values, folded or zero-extended once at
//   the edges) is staged in shared memory; each lane then slides an 8-value window through it
//   with 16-byte loads (conflict-free: consecutive lanes, consecutive 16 bytes) and does 16 FMAs
//   per window step, the taps read 4 at a time (a broadcast).
// - Vertical pass: blocks of 32 columns x 64 output rows; the tile plus its 2*half halo rows is
//   staged in shared memory (folded rows), each thread owns 8 consecutive output rows of one
//   column and slides an 8-row register window down the taps: one conflict-free shared load per
//   8 FMAs. Global loads and stores are 128-byte rows of a warp.
// - The adjoint uses the same two kernels: with m = o + k - half the forward reads
//   x[fold(m)], so the transpose is
//       xbar[j] = sum over m in [-half, n-1+half] with fold(m) == j of
//                 sum_k tf[k] * ybar_z[m - half + k],       tf[k] = t[ksize-1-k],
//   ybar_z being ybar extended by zeros. The m == j term is the forward correlation with zero
//   extension and flipped taps; the other images of j (m = -j + p*2(n-1) or j + p*2(n-1), p != 0,
//   which exist only within half of an edge or when the kernel is wider than the image) add a
//   short per-output loop at the edges. Every value these terms read lies in the tile already
//   staged (the images of an output within half of the left edge need rows [0, 2*half], and
//   such an output sits in a tile starting at or before half). No atomics: deterministic.
//   The CPU runs the backward as V^T then H^T; so does this.
#include <cmath>
#include <cstdint>

#include "cuda/blur.h"
#include "cuda/launch.cuh"

namespace sal::cuda {

namespace {

struct Taps {
  int ksize, half;
  float t[kMaxBlurTaps];
};

// The CPU's make_taps (engine/cpu/blur.cpp), flipped for the adjoint.
Taps make_taps(double sigma, int ksize, bool flip) {
  Taps tp{};
  tp.ksize = ksize;
  tp.half = ksize / 2;
  const int half = tp.half;
  double sum = 0;
  for (int k = 0; k < ksize; ++k) sum += std::exp(-double(k - half) * double(k - half) / (2 * sigma * sigma));
  for (int k = 0; k < ksize; ++k)
    tp.t[flip ? ksize - 1 - k : k] =
        static_cast<float>(std::exp(-double(k - half) * double(k - half) / (2 * sigma * sigma)) / sum);
  return tp;
}

__host__ __device__ constexpr int round4(int k) { return (k + 3) & ~3; }

// Index i folded into [0, n) by repeated reflection about the edge pixels (the CPU's fold).
__device__ __forceinline__ int fold(int i, int n) {
  if (n == 1) return 0;
  const int period = 2 * (n - 1);
  int m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - m;
}

__device__ __forceinline__ int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
__device__ __forceinline__ int ceil_div(int a, int b) { return -floor_div(-a, b); }

// The adjoint's extra terms for output o of an axis of length n: over every m != o in
// [-half, n-1+half] with fold(m, n) == o, sum_k taps[k] * at(m - half + k) for the k that keep
// m - half + k inside [0, n) (outside, the extended gradient is zero). at(p) reads position p.
// Out of line: it runs only at the edges, and inlined it would bloat the main loop's registers.
template <class At>
__device__ __noinline__ float mirror_terms(int o, int n, int half, int ksize, const float* taps, At at) {
  float sum = 0.f;
  auto add = [&](int m) {
    const int k0 = max(0, half - m), k1 = min(ksize - 1, n - 1 + half - m);
    for (int k = k0; k <= k1; ++k) sum = fmaf(taps[k], at(m - half + k), sum);
  };
  const int lo = -half, hi = n - 1 + half;
  if (n == 1) {
    for (int m = lo; m <= hi; ++m)
      if (m != 0) add(m);
    return sum;
  }
  const int period = 2 * (n - 1);
  for (int p = ceil_div(lo - o, period); p <= floor_div(hi - o, period); ++p)
    if (p != 0) add(o + p * period);  // m = o (mod period)
  if (o > 0 && o < n - 1)
    for (int p = ceil_div(lo + o, period); p <= floor_div(hi + o, period); ++p) add(p * period - o);  // m = -o
  return sum;
}

// Outputs o that can have mirror terms: within half of an edge.
__device__ __forceinline__ bool near_edge(int o, int n, int half) { return o <= half || o >= n - 1 - half; }

// ---------------------------------------------------------------- horizontal pass

constexpr int kRowWarps = 8;  // rows in flight per block, one per warp
constexpr int kSeg = 128;     // outputs per warp step: 32 lanes x 4

// acc[j] += sum over kk < count of t[kk] * w[j + kk], w = (a, b) the 8 values from 4*lane + k.
__device__ __forceinline__ void taps4(float (&acc)[4], const float4& a, const float4& b, const float4& t, int count) {
  const float w[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
  const float tt[4] = {t.x, t.y, t.z, t.w};
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    if (kk < count) {
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[j] = fmaf(tt[kk], w[j + kk], acc[j]);
    }
  }
}

size_t rows_smem(int ksize) { return sizeof(float) * (round4(ksize) + kRowWarps * (kSeg + round4(ksize))); }

// x: [rows, n] -> y: [rows, n], correlated along the last axis (rows = N*C*H, n = W).
// Forward: reflect-folded input, taps t. Adjoint: zero-extended input, flipped taps, mirror terms.
template <bool Adjoint>
__global__ void __launch_bounds__(kRowWarps * 32)
    blur_rows_kernel(const __grid_constant__ Taps taps, const float* __restrict__ x, float* __restrict__ y,
                     int64_t rows, int n, bool vec_out) {
  extern __shared__ float4 smem4[];
  float* st = reinterpret_cast<float*>(smem4);  // taps, zero-padded to k4
  const int ksize = taps.ksize, half = taps.half, k4 = round4(ksize), len = kSeg + k4;
  for (int i = threadIdx.x; i < k4; i += blockDim.x) st[i] = i < ksize ? taps.t[i] : 0.f;
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* buf = st + k4 + warp * len;  // positions [w0 - half, w0 - half + len) of the row
  const float4* b4 = reinterpret_cast<const float4*>(buf) + lane;
  const float4* t4 = reinterpret_cast<const float4*>(st);
  const int kfull = ksize & ~3, rem = ksize - kfull;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kRowWarps + warp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kRowWarps) {
    const float* src = x + row * n;
    float* dst = y + row * n;
    for (int w0 = 0; w0 < n; w0 += kSeg) {
      __syncwarp();  // the previous segment's reads are done
      for (int i = lane; i < len; i += 32) {
        const int m = w0 - half + i;
        float v;
        if (m >= 0 && m < n)
          v = src[m];
        else
          v = Adjoint ? 0.f : src[fold(m, n)];
        buf[i] = v;
      }
      __syncwarp();
      // Outputs o = w0 + 4*lane + j read buf[4*lane + j + k], k < ksize.
      float acc[4] = {0.f, 0.f, 0.f, 0.f};
      float4 a = b4[0];
      int k = 0;
      for (; k < kfull; k += 4) {
        const float4 b = b4[k / 4 + 1];
        taps4(acc, a, b, t4[k / 4], 4);
        a = b;
      }
      if (rem) taps4(acc, a, b4[k / 4 + 1], t4[k / 4], rem);
      const int o0 = w0 + 4 * lane;
      if (Adjoint) {
        auto at = [buf, off = w0 - half](int p) { return buf[p - off]; };  // by value: no stack copies
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (o0 + j < n && near_edge(o0 + j, n, half)) acc[j] += mirror_terms(o0 + j, n, half, ksize, st, at);
      }
      if (vec_out && o0 < n) {  // n % 4 == 0: all four are inside
        *reinterpret_cast<float4*>(dst + o0) = make_float4(acc[0], acc[1], acc[2], acc[3]);
      } else {
#pragma unroll
        for (int j = 0; j < 4; ++j)
          if (o0 + j < n) dst[o0 + j] = acc[j];
      }
    }
  }
}

// ---------------------------------------------------------------- vertical pass

constexpr int kColW = 32;          // columns per block (blockDim.x)
constexpr int kColThreadRows = 8;  // blockDim.y
constexpr int kRowsPerThread = 8;  // consecutive output rows per thread
constexpr int kTileRows = kColThreadRows * kRowsPerThread;

size_t cols_smem(int ksize) { return sizeof(float) * (round4(ksize) + (kTileRows + ksize - 1) * kColW); }

// x: [planes, n, width] -> y: [planes, n, width], correlated along the middle axis (n = H).
template <bool Adjoint>
__global__ void __launch_bounds__(kColW * kColThreadRows)
    blur_cols_kernel(const __grid_constant__ Taps taps, const float* __restrict__ x, float* __restrict__ y,
                     int64_t planes, int n, int width) {
  extern __shared__ float4 smem4[];
  float* st = reinterpret_cast<float*>(smem4);
  const int ksize = taps.ksize, half = taps.half, k4 = round4(ksize);
  float* tile = st + k4;  // [kTileRows + ksize - 1][kColW]: positions h0 - half + r of the columns
  const int tx = threadIdx.x, ty = threadIdx.y;
  for (int i = ty * kColW + tx; i < k4; i += kColW * kColThreadRows) st[i] = i < ksize ? taps.t[i] : 0.f;
  const int col = blockIdx.x * kColW + tx;
  const int h0 = blockIdx.y * kTileRows;
  const int trows = kTileRows + ksize - 1;
  const int r0 = ty * kRowsPerThread;  // this thread's first output row in the tile
  const float* tc = tile + tx;
  for (int64_t plane = blockIdx.z; plane < planes; plane += gridDim.z) {
    const int64_t base = plane * n * width;
    __syncthreads();  // the taps are stored; the previous plane's tile is read
    for (int r = ty; r < trows; r += kColThreadRows) {
      const int m = h0 - half + r;
      float v = 0.f;
      if (col < width) {
        if (m >= 0 && m < n)
          v = x[base + static_cast<int64_t>(m) * width + col];
        else if (!Adjoint)
          v = x[base + static_cast<int64_t>(fold(m, n)) * width + col];
      }
      tile[r * kColW + tx] = v;
    }
    __syncthreads();
    // Output row r0 + j reads tile rows r0 + j + k; win[j] holds row r0 + j + k at tap k.
    float acc[kRowsPerThread], win[kRowsPerThread];
#pragma unroll
    for (int j = 0; j < kRowsPerThread; ++j) acc[j] = 0.f;
#pragma unroll
    for (int j = 0; j < kRowsPerThread - 1; ++j) win[j] = tc[(r0 + j) * kColW];
#pragma unroll 8
    for (int k = 0; k < ksize; ++k) {
      win[kRowsPerThread - 1] = tc[(r0 + k + kRowsPerThread - 1) * kColW];
      const float t = st[k];
#pragma unroll
      for (int j = 0; j < kRowsPerThread; ++j) acc[j] = fmaf(t, win[j], acc[j]);
#pragma unroll
      for (int j = 0; j < kRowsPerThread - 1; ++j) win[j] = win[j + 1];
    }
    if (col < width) {
      auto at = [tc, off = h0 - half](int p) { return tc[(p - off) * kColW]; };  // by value: no stack copies
#pragma unroll
      for (int j = 0; j < kRowsPerThread; ++j) {
        const int o = h0 + r0 + j;
        if (o < n) {
          float v = acc[j];
          if (Adjoint && near_edge(o, n, half)) v += mirror_terms(o, n, half, ksize, st, at);
          y[base + static_cast<int64_t>(o) * width + col] = v;
        }
      }
    }
  }
}

// ---------------------------------------------------------------- launches


template <bool Adjoint>
void rows_pass(Ctx& ctx, const char* op, const Taps& taps, const float* in, float* out, int64_t planes, int h, int w) {
  const int64_t rows = planes * h;
  const bool vec_out = w % 4 == 0 && aligned16(out);
  blur_rows_kernel<Adjoint><<<grid_for(rows, kRowWarps), kRowWarps * 32, rows_smem(taps.ksize), stream_of(ctx)>>>(
      taps, in, out, rows, w, vec_out);
  SAL_CUDA_LAUNCH_CHECK(op);
}

template <bool Adjoint>
void cols_pass(Ctx& ctx, const char* op, const Taps& taps, const float* in, float* out, int64_t planes, int h, int w) {
  const dim3 block(kColW, kColThreadRows);
  const dim3 grid(static_cast<unsigned>((w + kColW - 1) / kColW), static_cast<unsigned>((h + kTileRows - 1) / kTileRows),
                  static_cast<unsigned>(planes < 65535 ? planes : 65535));
  blur_cols_kernel<Adjoint><<<grid, block, cols_smem(taps.ksize), stream_of(ctx)>>>(taps, in, out, planes, h, w);
  SAL_CUDA_LAUNCH_CHECK(op);
}

void blur(Ctx& ctx, const char* op, const Tensor& in, double sigma, int ksize, bool adjoint, Tensor& out) {
  SAL_CHECK(ksize <= kMaxBlurTaps, op, ": the CUDA kernels take ksize up to ", kMaxBlurTaps, ", got ", ksize);
  if (in.numel() == 0) return;
  const int64_t planes = in.dim(0) * in.dim(1);
  const int h = static_cast<int>(in.dim(2)), w = static_cast<int>(in.dim(3));  // < 2^30 (checked by the op)
  SAL_CHECK((h + kTileRows - 1) / kTileRows <= 65535 && (w + kColW - 1) / kColW <= INT32_MAX, op, ": ", in.desc(),
            " is too large for the CUDA kernels");
  const Taps taps = make_taps(sigma, ksize, adjoint);
  Tensor tmp = ctx.alloc(in.shape(), DType::F32);
  if (!adjoint) {
    rows_pass<false>(ctx, op, taps, in.data<float>(), tmp.data<float>(), planes, h, w);
    cols_pass<false>(ctx, op, taps, tmp.data<float>(), out.data<float>(), planes, h, w);
  } else {
    cols_pass<true>(ctx, op, taps, in.data<float>(), tmp.data<float>(), planes, h, w);
    rows_pass<true>(ctx, op, taps, tmp.data<float>(), out.data<float>(), planes, h, w);
  }
}

}  // namespace

void gaussian_blur(Ctx& ctx, const Tensor& x, double sigma, int ksize, Tensor& y) {
  blur(ctx, "gaussian_blur", x, sigma, ksize, false, y);
}

void gaussian_blur_backward(Ctx& ctx, const Tensor& dy, double sigma, int ksize, Tensor& dx) {
  blur(ctx, "gaussian_blur_backward", dy, sigma, ksize, true, dx);
}

}  // namespace sal::cuda
