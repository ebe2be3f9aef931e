// Helpers for kernel files: the stream of a Ctx, grid sizing, launch checking.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/check.cuh"
#include "cuda/device.h"

namespace sal::cuda {

inline cudaStream_t stream_of(const Ctx& ctx) {
  return ctx.cuda ? static_cast<cudaStream_t>(static_cast<const CudaDevice*>(ctx.cuda)->stream()) : cudaStream_t{};
}

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
