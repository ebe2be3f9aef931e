// SAL_HD marks a function compiled both by the C++ compiler (CPU code, CPU tests) and by nvcc for kernels,
// so that a formula shared by the two backends has one text (engine/philox.h, cuda/conv_bn_fold.h).
#pragma once

#ifdef __CUDACC__
#define SAL_HD __host__ __device__ __forceinline__
#else
#define SAL_HD inline
#endif
