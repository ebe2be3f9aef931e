// SAL_CUDA_CHECK(call): throws sal::Error naming the failed call, the CUDA error, the file and the line.
#pragma once
#include <cuda_runtime.h>

#include "engine/error.h"

#define SAL_CUDA_CHECK(call)                                                                               \
  do {                                                                                                     \
    cudaError_t sal_err_ = (call);                                                                         \
    if (sal_err_ != cudaSuccess)                                                                           \
      ::sal::fail(#call, " failed: ", cudaGetErrorString(sal_err_), " (", __FILE__, ":", __LINE__, ")"); \
  } while (0)
