// cuBLAS wrapper. cuBLAS is column-major: a row-major C = A B is computed as the column-major
// C^T = B^T A^T, i.e. by swapping the operands (and M with N); no data is transposed.
#include "cuda/cublas_gemm.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda/device.h"
#include "cuda/libraries.h"
#include "cuda/runtime.h"

#define SAL_CUBLAS_CHECK(call)                                                                         \
  do {                                                                                                 \
    cublasStatus_t sal_st_ = (call);                                                                   \
    if (sal_st_ != CUBLAS_STATUS_SUCCESS)                                                              \
      ::sal::fail(#call, " failed: ", cublasGetStatusString(sal_st_), " (", __FILE__, ":", __LINE__, ")"); \
  } while (0)

namespace sal::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

// The handle of the context's device, bound to its stream. A CUDA Ctx without a CudaDevice
// uses one process-wide handle on the default stream.
cublasHandle_t handle_for(Ctx& ctx) {
  auto* dev = static_cast<CudaDevice*>(ctx.cuda);
  if (!dev) {
    static cublasHandle_t shared = [] {
      cublasHandle_t h;
      SAL_CUBLAS_CHECK(cublasCreate(&h));
      return h;
    }();
    return shared;
  }
  if (!dev->cublas) {
    cublasHandle_t h;
    SAL_CUBLAS_CHECK(cublasCreate(&h));
    SAL_CUBLAS_CHECK(cublasSetStream(h, static_cast<cudaStream_t>(dev->stream())));
    // An explicit workspace, so that cuBLAS never allocates one while a CUDA graph is being captured
    // (the size NVIDIA recommends for Hopper).
    dev->cublas_workspace = malloc_device(kWorkspaceBytes);
    SAL_CUBLAS_CHECK(cublasSetWorkspace(h, dev->cublas_workspace, kWorkspaceBytes));
    dev->cublas = h;
  }
  return static_cast<cublasHandle_t>(dev->cublas);
}

cublasOperation_t op(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

int as_int(int64_t v, const char* what) {
  SAL_CHECK(v >= 0 && v <= INT32_MAX, "cuda::gemm: ", what, " = ", v, " does not fit cuBLAS's 32-bit sizes");
  return static_cast<int>(v);
}

}  // namespace

void gemm(Ctx& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, bool tf32) {
  cublasHandle_t h = handle_for(ctx);
  SAL_CUBLAS_CHECK(cublasSetMathMode(h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  // Row-major C[M,N] = op(A) op(B)  <=>  column-major C^T[N,M] = op(B)^T op(A)^T.
  SAL_CUBLAS_CHECK(cublasSgemm(h, op(trans_b), op(trans_a), as_int(N, "N"), as_int(M, "M"), as_int(K, "K"), &alpha, B,
                               as_int(ldb, "ldb"), A, as_int(lda, "lda"), &beta, C, as_int(ldc, "ldc")));
}

void gemm_batched(Ctx& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta, float* C,
                  int64_t ldc, int64_t stride_c, int64_t batch, bool tf32) {
  cublasHandle_t h = handle_for(ctx);
  SAL_CUBLAS_CHECK(cublasSetMathMode(h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  SAL_CUBLAS_CHECK(cublasSgemmStridedBatched(h, op(trans_b), op(trans_a), as_int(N, "N"), as_int(M, "M"),
                                             as_int(K, "K"), &alpha, B, as_int(ldb, "ldb"), stride_b, A,
                                             as_int(lda, "lda"), stride_a, &beta, C, as_int(ldc, "ldc"), stride_c,
                                             as_int(batch, "batch")));
}

void release_cublas(CudaDevice& dev) {
  if (dev.cublas) cublasDestroy(static_cast<cublasHandle_t>(dev.cublas));
  dev.cublas = nullptr;
  if (dev.cublas_workspace) free_device(dev.cublas_workspace);
  dev.cublas_workspace = nullptr;
}

}  // namespace sal::cuda
