// Helpers for kernel files: the stream of a Ctx, grid sizing, launch checking.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda/check.cuh"
#include "cuda/device.h"

namespace sal::cuda {

inline cudaStream_t stream_of(const Ctx& ctx) {
  return ctx.cuda ? static_cast<cudaStream_t>(static_cast<const CudaDevice*>(ctx.cuda)->stream()) : cudaStream_t{};
}

// Multiprocessors of the current device, cached on first use (cuda/runtime.cu); 132 (an H100
// SXM's count) when the query fails.
int sm_count();

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Grids of [x, y] blocks for row-wise kernels: y rows (capped at the hardware's 65535), x blocks of
// `block` threads over `work` items per row, keeping x * y below about a million blocks.
inline unsigned grid_y(int64_t rows) { return static_cast<unsigned>(std::clamp<int64_t>(rows, 1, 65535)); }
inline unsigned grid_x(int64_t work, unsigned gy, int block = 256) {
  const int64_t cap = std::max<int64_t>(1, (int64_t{1} << 20) / gy);
  return static_cast<unsigned>(std::clamp<int64_t>((work + block - 1) / block, 1, cap));
}

#ifdef __CUDACC__
__device__ __forceinline__ float qnan() { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ float neg_inf() { return __int_as_float(static_cast<int>(0xff800000u)); }

// i -> (plane, r, c) for a [planes, rows, cols] layout; 32-bit division when i fits.
__device__ __forceinline__ void split3(int64_t i, int rows, int cols, int64_t& plane, int& r, int& c) {
  if (i <= 0xffffffffLL) {
    const uint32_t u = static_cast<uint32_t>(i);
    const uint32_t t = u / static_cast<uint32_t>(cols);
    c = static_cast<int>(u - t * static_cast<uint32_t>(cols));
    const uint32_t pl = t / static_cast<uint32_t>(rows);
    r = static_cast<int>(t - pl * static_cast<uint32_t>(rows));
    plane = pl;
  } else {
    const int64_t t = i / cols;
    c = static_cast<int>(i - t * cols);
    plane = t / rows;
    r = static_cast<int>(t - plane * rows);
  }
}
#endif

// Blocks for n threads of `block` each, capped so grid-stride loops cover the rest.
inline unsigned grid_for(int64_t n, int block = 256, int64_t cap = 65535LL * 32) {
  int64_t g = (n + block - 1) / block;
  if (g < 1) g = 1;
  return static_cast<unsigned>(g < cap ? g : cap);
}

}  // namespace sal::cuda

// After a kernel launch: reports a bad launch configuration with the kernel's name and place.
#define SAL_CUDA_LAUNCH_CHECK(name)                                                                  \
  do {                                                                                               \
    cudaError_t sal_err_ = cudaGetLastError();                                                       \
    if (sal_err_ != cudaSuccess)                                                                     \
      ::sal::fail("kernel ", name, " failed to launch: ", cudaGetErrorString(sal_err_), " (", __FILE__, ":", \
                  __LINE__, ")");                                                                    \
  } while (0)
