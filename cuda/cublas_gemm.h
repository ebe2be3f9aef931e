// The cuBLAS wrapper (the only translation unit that includes cublas_v2.h).
// Row-major GEMM on the context's stream: C[M,N] = alpha * op(A) op(B) + beta * C, where
// op(A) is A[M,K] or, with trans_a, A stored as [K,M] (likewise B: [K,N] or, with trans_b, [N,K]).
// f32 tensors; tf32=true lets cuBLAS use TF32 tensor cores.
#pragma once
#include <string>

#include "engine/context.h"

namespace sal::cuda {

void gemm(Ctx& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, bool tf32 = true);

// Strided-batched variant: batch count `batch`, element strides between matrices.
void gemm_batched(Ctx& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta, float* C,
                  int64_t ldc, int64_t stride_c, int64_t batch, bool tf32 = true);

// Opens cuBLAS now if no GEMM has (it is loaded with dlopen on first use, not linked) and returns
// the file opened; throws, naming every file tried, when it cannot be opened. Needs no GPU.
std::string cublas_library_path();

}  // namespace sal::cuda
