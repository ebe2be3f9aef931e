// CUDA kernels (f32): NumPy-broadcasting add/sub/mul, scale, axpy, sum_to (the backward of
// broadcasting), sum/mean, channel concat/slice, and embedding lookup and its backward.
//
// Broadcasting: a, b: any shapes (<= kMaxDims, right-aligned) -> y: the broadcast shape, all
// contiguous row-major. On the host, as in engine/cpu/arith.cpp, extent-1 dimensions are dropped
// and neighbours contiguous in both operands are merged, so the common patterns become
//   equal shapes          -> [n]              (rows = 1),
//   [N,C,H,W] x [N,C,1,1] -> [N*C, H*W]       (b is one scalar per row),
//   [N,C,H,W] x [N,1,H,W] -> [N, C, H*W]      (b's row depends on n only).
// The kernel walks "rows of the last merged dimension": blockIdx.y picks a row (its operand
// offsets are computed once per block from the outer dimensions), the threads sweep the row with
// float4 loads and stores when the row length is a multiple of 4 and the base pointers are
// 16-byte aligned (row offsets are then multiples of 4 too), scalar otherwise. When the last
// merged dimension is short (< 32) rows would leave most threads idle, so a generic kernel
// decomposes every output index instead.
//
// Reductions are deterministic: no atomics, a fixed assignment of elements to threads, fixed
// trees, partial sums in double.
// - sum_to, last dimension kept (e.g. [N,C,H,W] -> [N,1,H,W]): one thread per output element
//   adds its reduced slices in order; when there are few outputs and many slices the slices are
//   split over blockIdx.z into double partials, summed in order by a second kernel.
// - sum_to, last dimension reduced (e.g. -> [N,C,1,1], [1,C,1,1], and sum/mean over everything):
//   block (s, q) reduces slice s of output q's elements with a block tree; with more than one
//   slice a second kernel (one warp per output) adds the slice partials in a fixed tree.
// - concat/slice: one strided row copy per input (float4 when aligned).
// - embedding: a gather, grid.y over samples. Its backward accumulates without atomics: the
//   first sample with a given id ("leader") adds, column by column, the rows of every sample with
//   that id in sample order, so duplicates never race and the result is reproducible.
#include "cuda/arith.h"

#include <algorithm>
#include <cstdint>

#include "cuda/launch.cuh"
#include "engine/broadcast.h"

namespace sal::cuda {

namespace {

constexpr int kBlock = 256;

// ---------------------------------------------------------------- geometry (host side)

// Broadcast geometry (dims merged, operand strides): engine/broadcast.h, shared with the CPU.
using broadcast::collapse;
using broadcast::Dims;  // sum_to's kept / reduced dimensions
using broadcast::Geometry;
using broadcast::split_outer;

// ---------------------------------------------------------------- broadcasting binary ops

// The first k dimensions of a collapsed geometry (row-major, the last fastest).
struct Outer {
  int k = 0;
  int64_t dim[kMaxDims] = {};
  int64_t sa[kMaxDims] = {};
  int64_t sb[kMaxDims] = {};
};

// Unrolled over kMaxDims so the struct is indexed with constants only (a run-time index would
// copy the kernel parameter to local memory).
__device__ __forceinline__ void outer_offsets(const Outer& g, int64_t r, int64_t& oa, int64_t& ob) {
  oa = 0;
  ob = 0;
#pragma unroll
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d < g.k) {
      const int64_t i = r % g.dim[d];
      r /= g.dim[d];
      oa += i * g.sa[d];
      ob += i * g.sb[d];
    }
  }
}

struct AddOp {
  __device__ float operator()(float u, float v) const { return u + v; }
};
struct SubOp {
  __device__ float operator()(float u, float v) const { return u - v; }
};
struct MulOp {
  __device__ float operator()(float u, float v) const { return u * v; }
};

// Element j of a row: contiguous (C) or one scalar for the whole row.
template <bool C>
__device__ __forceinline__ float load1(const float* p, int64_t j) {
  if constexpr (C) return p[j];
  else return p[0];
}
template <bool C>
__device__ __forceinline__ float4 load4(const float* p, int64_t j) {
  if constexpr (C) {
    return reinterpret_cast<const float4*>(p)[j];
  } else {
    const float s = p[0];
    return make_float4(s, s, s, s);
  }
}

// a, b -> y: [rows, inner] (the collapsed output); g: the outer dimensions (rows).
// VEC: inner % 4 == 0 and the contiguous operands' and y's base pointers 16-byte aligned.
template <class F, bool CA, bool CB, bool VEC>
__global__ void broadcast_rows_kernel(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y,
                                      Outer g, int64_t rows, int64_t inner, F f) {
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    int64_t oa, ob;
    outer_offsets(g, r, oa, ob);
    const float* pa = a + oa;
    const float* pb = b + ob;
    float* py = y + r * inner;
    if constexpr (VEC) {
      const int64_t n4 = inner / 4;
      for (int64_t j = tid; j < n4; j += stride) {
        const float4 u = load4<CA>(pa, j), v = load4<CB>(pb, j);
        reinterpret_cast<float4*>(py)[j] = make_float4(f(u.x, v.x), f(u.y, v.y), f(u.z, v.z), f(u.w, v.w));
      }
    } else {
      for (int64_t j = tid; j < inner; j += stride) py[j] = f(load1<CA>(pa, j), load1<CB>(pb, j));
    }
  }
}

// a, b -> y: [n] flat; g: every collapsed dimension (k = nd), offsets decomposed per element.
template <class F>
__global__ void broadcast_any_kernel(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ y,
                                     Outer g, int64_t n, F f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    int64_t oa, ob;
    outer_offsets(g, i, oa, ob);
    y[i] = f(a[oa], b[ob]);
  }
}

template <class F, bool CA, bool CB>
void launch_rows(bool vec, dim3 grid, cudaStream_t st, const float* a, const float* b, float* y, const Outer& g,
                 int64_t rows, int64_t inner, F f) {
  if (vec)
    broadcast_rows_kernel<F, CA, CB, true><<<grid, kBlock, 0, st>>>(a, b, y, g, rows, inner, f);
  else
    broadcast_rows_kernel<F, CA, CB, false><<<grid, kBlock, 0, st>>>(a, b, y, g, rows, inner, f);
}

template <class F>
void broadcast(Ctx& ctx, const char* name, const Tensor& A, const Tensor& B, Tensor& Y, F f) {
  const int64_t n = Y.numel();
  if (n == 0) return;
  const Geometry g = collapse(Y.shape(), A.shape(), B.shape());
  const float* a = A.data<float>();
  const float* b = B.data<float>();
  float* y = Y.data<float>();
  cudaStream_t st = stream_of(ctx);
  const int k = g.nd - 1;
  const int64_t inner = g.dim[k];
  Outer o;
  if (g.nd > 1 && inner < 32) {
    o.k = g.nd;
    for (int d = 0; d < g.nd; ++d) {
      o.dim[d] = g.dim[d];
      o.sa[d] = g.sa[d];
      o.sb[d] = g.sb[d];
    }
    broadcast_any_kernel<<<grid_for(n), kBlock, 0, st>>>(a, b, y, o, n, f);
    SAL_CUDA_LAUNCH_CHECK(name);
    return;
  }
  o.k = k;
  for (int d = 0; d < k; ++d) {
    o.dim[d] = g.dim[d];
    o.sa[d] = g.sa[d];
    o.sb[d] = g.sb[d];
  }
  const int64_t rows = n / inner;
  const bool ca = g.sa[k] != 0, cb = g.sb[k] != 0;
  const bool vec = inner % 4 == 0 && aligned16(y) && (!ca || aligned16(a)) && (!cb || aligned16(b));
  const unsigned gy = grid_y(rows);
  const dim3 grid(grid_x(vec ? inner / 4 : inner, gy), gy);
  if (ca && cb)
    launch_rows<F, true, true>(vec, grid, st, a, b, y, o, rows, inner, f);
  else if (ca)
    launch_rows<F, true, false>(vec, grid, st, a, b, y, o, rows, inner, f);
  else if (cb)
    launch_rows<F, false, true>(vec, grid, st, a, b, y, o, rows, inner, f);
  else
    launch_rows<F, false, false>(vec, grid, st, a, b, y, o, rows, inner, f);
  SAL_CUDA_LAUNCH_CHECK(name);
}

// ---------------------------------------------------------------- scale, axpy (flat)

// x -> y = alpha * x, [n]; VEC: x and y 16-byte aligned (scalar tail after n/4 float4s).
template <bool VEC>
__global__ void scale_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n, float alpha) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t done = 0;
  if constexpr (VEC) {
    const int64_t n4 = n / 4;
    for (int64_t k = i; k < n4; k += stride) {
      const float4 v = reinterpret_cast<const float4*>(x)[k];
      reinterpret_cast<float4*>(y)[k] = make_float4(alpha * v.x, alpha * v.y, alpha * v.z, alpha * v.w);
    }
    done = n4 * 4;
  }
  for (int64_t k = done + i; k < n; k += stride) y[k] = alpha * x[k];
}

// x, y: [n] -> y += alpha * x
template <bool VEC>
__global__ void axpy_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n, float alpha) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t done = 0;
  if constexpr (VEC) {
    const int64_t n4 = n / 4;
    for (int64_t k = i; k < n4; k += stride) {
      const float4 v = reinterpret_cast<const float4*>(x)[k];
      float4 u = reinterpret_cast<float4*>(y)[k];
      u.x += alpha * v.x;
      u.y += alpha * v.y;
      u.z += alpha * v.z;
      u.w += alpha * v.w;
      reinterpret_cast<float4*>(y)[k] = u;
    }
    done = n4 * 4;
  }
  for (int64_t k = done + i; k < n; k += stride) y[k] += alpha * x[k];
}

// ---------------------------------------------------------------- reductions

// Unrolled over kMaxDims (constant indices only, as outer_offsets).
__device__ __forceinline__ int64_t dims_offset(const Dims& d, int64_t idx) {
  if (d.n == 1) return idx * d.stride[0];
  int64_t off = 0;
#pragma unroll
  for (int i = kMaxDims - 1; i >= 0; --i) {
    if (i < d.n) {
      off += (idx % d.dim[i]) * d.stride[i];
      idx /= d.dim[i];
    }
  }
  return off;
}

// Block-wide sum (blockDim.x a multiple of 32, at most 1024), the same tree every call; every
// thread gets the result. smem: 32 doubles.
__device__ double block_sum(double v, double* smem) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();  // smem may still be read by a previous call
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < nw ? smem[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) smem[0] = v;
  }
  __syncthreads();
  return smem[0];
}

// Sum over r in [r0, r1) of p[red(r)], in r order, in double.
__device__ __forceinline__ double sum_slices(const float* p, const Dims& red, int64_t r0, int64_t r1) {
  double acc = 0;
  if (red.n == 1) {
    const int64_t st = red.stride[0];
    for (int64_t r = r0; r < r1; ++r) acc += static_cast<double>(p[r * st]);
  } else {
    for (int64_t r = r0; r < r1; ++r) acc += static_cast<double>(p[dims_offset(red, r)]);
  }
  return acc;
}

// The last dimension is kept: x -> y: [rows, inner] (rows = kept outer dimensions),
// y[q, j] = sum over r of x[kept(q) + red(r) + j]. Slice blockIdx.z covers r in [z*per, z*per+per).
// PARTIAL: the slice sums go to part: [slices, rows*inner] (double); else straight to y.
// FLAT: one flat index over rows*inner (short rows); else blockIdx.y = row, threads over j.
template <bool PARTIAL, bool FLAT>
__global__ void sum_keep_last_kernel(const float* __restrict__ x, float* __restrict__ y, double* __restrict__ part,
                                     Dims kept, Dims red, int64_t rows, int64_t inner, int64_t nred, int64_t per) {
  const int64_t ny = rows * inner;
  const int64_t r0 = blockIdx.z * per, r1 = min(nred, r0 + per);
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  auto put = [&](int64_t t, double v) {
    if constexpr (PARTIAL) part[blockIdx.z * ny + t] = v;
    else y[t] = static_cast<float>(v);
  };
  if constexpr (FLAT) {
    for (int64_t t = tid; t < ny; t += stride) {
      const int64_t q = t / inner, j = t - q * inner;
      put(t, sum_slices(x + dims_offset(kept, q) + j, red, r0, r1));
    }
  } else {
    for (int64_t q = blockIdx.y; q < rows; q += gridDim.y) {
      const float* base = x + dims_offset(kept, q);
      for (int64_t j = tid; j < inner; j += stride) put(q * inner + j, sum_slices(base + j, red, r0, r1));
    }
  }
}

// part: [slices, ny] -> y[t] = sum over slices in order.
__global__ void sum_slices_finalize_kernel(const double* __restrict__ part, float* __restrict__ y, int64_t ny,
                                           int slices) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < ny; t += stride) {
    double acc = 0;
    for (int s = 0; s < slices; ++s) acc += part[s * ny + t];
    y[t] = static_cast<float>(acc);
  }
}

// The last dimension is reduced: output q = scale * sum over e in [0, W) of
// x[kept(q) + red(e / inner) + e % inner], W = nred * inner. Block (s, q) reduces e in
// [s*per, s*per+per): thread t takes e = start + t, t + blockDim, ... (r, j tracked
// incrementally, no per-element division). PARTIAL: part[q * slices + s]; else y[q].
template <bool PARTIAL>
__global__ void sum_reduce_last_kernel(const float* __restrict__ x, float* __restrict__ y, double* __restrict__ part,
                                       Dims kept, Dims red, int64_t ny, int64_t inner, int64_t W, int64_t per,
                                       double scale) {
  __shared__ double smem[32];
  const int64_t e0 = blockIdx.x * per, e1 = min(W, e0 + per);
  const int64_t dr = blockDim.x / inner, dj = blockDim.x % inner;
  for (int64_t q = blockIdx.y; q < ny; q += gridDim.y) {
    const float* xq = x + dims_offset(kept, q);
    double acc = 0;
    int64_t e = e0 + threadIdx.x;
    if (e < e1) {
      int64_t r = e / inner, j = e - r * inner;
      int64_t rcached = r, roff = dims_offset(red, r);
      for (; e < e1; e += blockDim.x) {
        if (r != rcached) {
          rcached = r;
          roff = dims_offset(red, r);
        }
        acc += static_cast<double>(xq[roff + j]);
        j += dj;
        r += dr;
        if (j >= inner) {
          j -= inner;
          ++r;
        }
      }
    }
    acc = block_sum(acc, smem);
    if (threadIdx.x == 0) {
      if constexpr (PARTIAL) part[q * gridDim.x + blockIdx.x] = acc;
      else y[q] = static_cast<float>(acc * scale);
    }
  }
}

// part: [ny, slices] -> y[q] = scale * sum of the row; one warp per output, a fixed tree.
__global__ void sum_rows_finalize_kernel(const double* __restrict__ part, float* __restrict__ y, int64_t ny, int slices,
                                         double scale) {
  for (int64_t q = blockIdx.x; q < ny; q += gridDim.x) {
    double acc = 0;
    for (int s = threadIdx.x; s < slices; s += 32) acc += part[q * slices + s];
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, o);
    if (threadIdx.x == 0) y[q] = static_cast<float>(acc * scale);
  }
}

// Output q (of ny) sums nred runs of `inner` contiguous elements: x + kept(q) + red(r).
void reduce_last(Ctx& ctx, const char* name, const float* x, float* y, const Dims& kept, const Dims& red, int64_t ny,
                 int64_t inner, double scale) {
  cudaStream_t st = stream_of(ctx);
  const int64_t W = red.count() * inner;
  const int64_t target = 4LL * sm_count();
  const int64_t max_slices = std::max<int64_t>(1, W / (kBlock * 8));
  const int64_t slices = std::clamp<int64_t>((target + ny - 1) / ny, 1, std::min<int64_t>(max_slices, 4096));
  const int64_t per = (W + slices - 1) / slices;
  if (slices == 1) {
    sum_reduce_last_kernel<false><<<dim3(1, grid_y(ny)), kBlock, 0, st>>>(x, y, nullptr, kept, red, ny, inner, W, per,
                                                                         scale);
    SAL_CUDA_LAUNCH_CHECK(name);
    return;
  }
  Tensor part = ctx.alloc(Shape{ny * slices}, DType::F64);
  double* p = part.data<double>();
  sum_reduce_last_kernel<true><<<dim3(static_cast<unsigned>(slices), grid_y(ny)), kBlock, 0, st>>>(
      x, y, p, kept, red, ny, inner, W, per, scale);
  SAL_CUDA_LAUNCH_CHECK(name);
  sum_rows_finalize_kernel<<<grid_y(ny), 32, 0, st>>>(p, y, ny, static_cast<int>(slices), scale);
  SAL_CUDA_LAUNCH_CHECK(name);
}

// y: [rows, inner] = sum over nred slices red(r) of x + kept(q) + red(r) + j.
void reduce_keep_last(Ctx& ctx, const char* name, const float* x, float* y, const Dims& kept, const Dims& red,
                      int64_t rows, int64_t inner) {
  cudaStream_t st = stream_of(ctx);
  const int64_t ny = rows * inner, nred = red.count();
  const bool flat = inner < 128;
  // Split the slices when the outputs alone cannot fill the device.
  const int64_t want_threads = 2048LL * sm_count();
  int64_t slices = 1;
  if (ny < want_threads && nred >= 16)
    slices = std::clamp<int64_t>((want_threads + ny - 1) / ny, 1, std::min<int64_t>(nred / 8, 256));
  const int64_t per = (nred + slices - 1) / slices;
  const unsigned gy = flat ? 1u : grid_y(rows);
  const unsigned gx = flat ? grid_x(ny, static_cast<unsigned>(slices)) : grid_x(inner, gy * static_cast<unsigned>(slices));
  const dim3 grid(gx, gy, static_cast<unsigned>(slices));
  if (slices == 1) {
    if (flat)
      sum_keep_last_kernel<false, true><<<grid, kBlock, 0, st>>>(x, y, nullptr, kept, red, rows, inner, nred, per);
    else
      sum_keep_last_kernel<false, false><<<grid, kBlock, 0, st>>>(x, y, nullptr, kept, red, rows, inner, nred, per);
    SAL_CUDA_LAUNCH_CHECK(name);
    return;
  }
  Tensor part = ctx.alloc(Shape{ny * slices}, DType::F64);
  double* p = part.data<double>();
  if (flat)
    sum_keep_last_kernel<true, true><<<grid, kBlock, 0, st>>>(x, y, p, kept, red, rows, inner, nred, per);
  else
    sum_keep_last_kernel<true, false><<<grid, kBlock, 0, st>>>(x, y, p, kept, red, rows, inner, nred, per);
  SAL_CUDA_LAUNCH_CHECK(name);
  sum_slices_finalize_kernel<<<grid_for(ny), kBlock, 0, st>>>(p, y, ny, static_cast<int>(slices));
  SAL_CUDA_LAUNCH_CHECK(name);
}

// x: [n] -> y: [1] = scale * sum
void total(Ctx& ctx, const char* name, const Tensor& X, Tensor& Y, double scale) {
  const int64_t n = X.numel();
  if (n == 0) {
    SAL_CUDA_CHECK(cudaMemsetAsync(Y.raw(), 0, sizeof(float), stream_of(ctx)));
    return;
  }
  reduce_last(ctx, name, X.data<float>(), Y.data<float>(), Dims{}, Dims{}, 1, n, scale);
}

// ---------------------------------------------------------------- copies, embedding

// src rows (stride src_stride) -> dst rows (stride dst_stride), `len` floats each.
// VEC: len and both strides multiples of 4, both pointers 16-byte aligned.
template <bool VEC>
__global__ void copy_rows_kernel(const float* __restrict__ src, int64_t src_stride, float* __restrict__ dst,
                                 int64_t dst_stride, int64_t rows, int64_t len) {
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const float* s = src + r * src_stride;
    float* d = dst + r * dst_stride;
    if constexpr (VEC) {
      for (int64_t j = tid; j < len / 4; j += stride)
        reinterpret_cast<float4*>(d)[j] = reinterpret_cast<const float4*>(s)[j];
    } else {
      for (int64_t j = tid; j < len; j += stride) d[j] = s[j];
    }
  }
}

void copy_rows(Ctx& ctx, const char* name, const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
               int64_t rows, int64_t len) {
  if (rows == 0 || len == 0) return;
  const bool vec = len % 4 == 0 && src_stride % 4 == 0 && dst_stride % 4 == 0 && aligned16(src) && aligned16(dst);
  const unsigned gy = grid_y(rows);
  const dim3 grid(grid_x(vec ? len / 4 : len, gy), gy);
  if (vec)
    copy_rows_kernel<true><<<grid, kBlock, 0, stream_of(ctx)>>>(src, src_stride, dst, dst_stride, rows, len);
  else
    copy_rows_kernel<false><<<grid, kBlock, 0, stream_of(ctx)>>>(src, src_stride, dst, dst_stride, rows, len);
  SAL_CUDA_LAUNCH_CHECK(name);
}

// table: [V,D], ids: i32[N] -> y: [N,D]; an id outside [0, V) gives a NaN row.
// blockIdx.y = sample, threads over columns. VEC: D % 4 == 0, table and y 16-byte aligned.
template <bool VEC>
__global__ void embedding_kernel(const float* __restrict__ table, const int32_t* __restrict__ ids,
                                 float* __restrict__ y, int64_t N, int64_t V, int64_t D) {
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const int64_t id = ids[n];
    const bool ok = id >= 0 && id < V;
    const float* src = table + (ok ? id : 0) * D;
    float* dst = y + n * D;
    if constexpr (VEC) {
      const float q = qnan();
      for (int64_t j = tid; j < D / 4; j += stride)
        reinterpret_cast<float4*>(dst)[j] = ok ? reinterpret_cast<const float4*>(src)[j] : make_float4(q, q, q, q);
    } else {
      for (int64_t j = tid; j < D; j += stride) dst[j] = ok ? src[j] : qnan();
    }
  }
}

// dy: [N,D], ids: i32[N] -> dtable: [V,D] += rows of dy. blockIdx.y = sample n, threads over
// columns. Only the first sample of each row (its "leader") writes: it adds, in sample order,
// the dy rows of every sample with that row to dtable. Invalid ids count as row 0 and add NaN.
__global__ void embedding_backward_kernel(const float* __restrict__ dy, const int32_t* __restrict__ ids,
                                          float* __restrict__ dtable, int64_t N, int64_t V, int64_t D) {
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  auto row_of = [V](int32_t id) -> int64_t { return id >= 0 && id < V ? id : 0; };
  for (int64_t n = blockIdx.y; n < N; n += gridDim.y) {
    const int64_t row = row_of(ids[n]);
    bool leader = true;
    for (int64_t m = 0; m < n && leader; ++m) leader = row_of(ids[m]) != row;
    if (!leader) continue;
    for (int64_t j = tid; j < D; j += stride) {
      float acc = dtable[row * D + j];
      for (int64_t m = n; m < N; ++m) {
        const int32_t id = ids[m];
        if (row_of(id) != row) continue;
        acc += (id >= 0 && id < V) ? dy[m * D + j] : qnan();
      }
      dtable[row * D + j] = acc;
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- entry points

void add(Ctx& ctx, const Tensor& a, const Tensor& b, Tensor& y) { broadcast(ctx, "add", a, b, y, AddOp{}); }
void sub(Ctx& ctx, const Tensor& a, const Tensor& b, Tensor& y) { broadcast(ctx, "sub", a, b, y, SubOp{}); }
void mul(Ctx& ctx, const Tensor& a, const Tensor& b, Tensor& y) { broadcast(ctx, "mul", a, b, y, MulOp{}); }

void scale(Ctx& ctx, const Tensor& x, double alpha, Tensor& y) {
  const int64_t n = x.numel();
  if (n == 0) return;
  const float* px = x.data<float>();
  float* py = y.data<float>();
  const float al = static_cast<float>(alpha);
  if (aligned16(px) && aligned16(py))
    scale_kernel<true><<<grid_for((n + 3) / 4), kBlock, 0, stream_of(ctx)>>>(px, py, n, al);
  else
    scale_kernel<false><<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(px, py, n, al);
  SAL_CUDA_LAUNCH_CHECK("scale");
}

void axpy(Ctx& ctx, double alpha, const Tensor& x, Tensor& y) {
  const int64_t n = x.numel();
  if (n == 0) return;
  const float* px = x.data<float>();
  float* py = y.data<float>();
  const float al = static_cast<float>(alpha);
  if (aligned16(px) && aligned16(py))
    axpy_kernel<true><<<grid_for((n + 3) / 4), kBlock, 0, stream_of(ctx)>>>(px, py, n, al);
  else
    axpy_kernel<false><<<grid_for(n), kBlock, 0, stream_of(ctx)>>>(px, py, n, al);
  SAL_CUDA_LAUNCH_CHECK("axpy");
}

// x: any shape -> y: a shape that broadcasts to x's
void sum_to(Ctx& ctx, const Tensor& X, Tensor& Y) {
  const int64_t nx = X.numel(), ny = Y.numel();
  if (ny == 0) return;
  if (nx == 0) {
    SAL_CUDA_CHECK(cudaMemsetAsync(Y.raw(), 0, Y.nbytes(), stream_of(ctx)));
    return;
  }
  // "a" = x itself, "b" = y (stride 0 on the reduced dimensions).
  const Geometry g = collapse(X.shape(), X.shape(), Y.shape());
  const int k = g.nd - 1;
  const int64_t inner = g.dim[k];
  Dims kept, red;  // outer dimensions [0, k), strides into x
  split_outer(g, kept, red);
  const float* x = X.data<float>();
  float* y = Y.data<float>();
  if (g.sb[k] != 0 || nx == ny)
    reduce_keep_last(ctx, "sum_to", x, y, kept, red, kept.count(), inner);
  else
    reduce_last(ctx, "sum_to", x, y, kept, red, ny, inner, 1.0);
}

void sum(Ctx& ctx, const Tensor& x, Tensor& y) { total(ctx, "sum", x, y, 1.0); }
void mean(Ctx& ctx, const Tensor& x, Tensor& y) {
  total(ctx, "mean", x, y, 1.0 / static_cast<double>(std::max<int64_t>(x.numel(), 1)));
}

// xs[i]: [N,C_i,H,W] -> y: [N,sum C_i,H,W]: per input, N rows of C_i*H*W floats.
void concat_channels(Ctx& ctx, std::span<const Tensor> xs, Tensor& y) {
  const int64_t N = y.dim(0), HW = y.dim(2) * y.dim(3), Cy = y.dim(1);
  float* dst = y.data<float>();
  int64_t c0 = 0;
  for (const Tensor& x : xs) {
    const int64_t ci = x.dim(1);
    copy_rows(ctx, "concat_channels", x.data<float>(), ci * HW, dst + c0 * HW, Cy * HW, N, ci * HW);
    c0 += ci;
  }
}

// x: [N,C,H,W] -> y: [N,count,H,W]: N rows of count*H*W floats.
void slice_channels(Ctx& ctx, const Tensor& x, int64_t begin, Tensor& y) {
  const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3), count = y.dim(1);
  copy_rows(ctx, "slice_channels", x.data<float>() + begin * HW, C * HW, y.data<float>(), count * HW, N, count * HW);
}

void embedding(Ctx& ctx, const Tensor& table, const Tensor& ids, Tensor& y) {
  const int64_t V = table.dim(0), D = table.dim(1), N = ids.numel();
  if (N == 0 || D == 0) return;
  const float* t = table.data<float>();
  float* py = y.data<float>();
  const bool vec = D % 4 == 0 && aligned16(t) && aligned16(py);
  const unsigned gy = grid_y(N);
  const dim3 grid(grid_x(vec ? D / 4 : D, gy), gy);
  if (vec)
    embedding_kernel<true><<<grid, kBlock, 0, stream_of(ctx)>>>(t, ids.data<int32_t>(), py, N, V, D);
  else
    embedding_kernel<false><<<grid, kBlock, 0, stream_of(ctx)>>>(t, ids.data<int32_t>(), py, N, V, D);
  SAL_CUDA_LAUNCH_CHECK("embedding");
}

void embedding_backward(Ctx& ctx, const Tensor& dy, const Tensor& ids, Tensor& dtable) {
  const int64_t V = dtable.dim(0), D = dtable.dim(1), N = ids.numel();
  if (N == 0 || D == 0 || V == 0) return;
  const unsigned gy = grid_y(N);
  const dim3 grid(grid_x(D, gy), gy);
  embedding_backward_kernel<<<grid, kBlock, 0, stream_of(ctx)>>>(dy.data<float>(), ids.data<int32_t>(),
                                                                 dtable.data<float>(), N, V, D);
  SAL_CUDA_LAUNCH_CHECK("embedding_backward");
}

}  // namespace sal::cuda
