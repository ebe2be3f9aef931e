// A CPU stand-in for cuBLAS's shared library, built as libcublas.so.<major> in its own folder for
// tests/cublas_stand_in_test.cpp. It exports the entry points cuda/cublas_gemm.cpp resolves, with cuBLAS's
// signatures (cublas_v2.h) and the argument checks cuBLAS documents for them, and computes on host memory
// (in double, rounded to f32 once). With its folder first on LD_LIBRARY_PATH the engine's wrapper opens it
// instead of cuBLAS, so that the wrapper's own code runs without a GPU: dlopen and the symbol names, the
// row-major to column-major swap, the math mode, the strided batch, and how a failed status is reported.
// Nothing of the GPU is modelled (streams and the workspace are only recorded).
#include <cublas_v2.h>

#include <cstdint>

extern "C" {

// What the last calls asked for, read by the test through dlsym (the library's own copy, not the test's).
struct SalCublasStandInLog {
  int64_t gemm_calls = 0;            // cublasSgemm and cublasSgemmStridedBatched calls that computed
  int64_t handles_alive = 0;         // created and not yet destroyed
  int tf32_math = -1;                // the handle's math mode at the last GEMM: 1 TF32, 0 default, 2 another
  int transa = -1, transb = -1;      // column-major, as cuBLAS got them
  int m = -1, n = -1, k = -1, lda = -1, ldb = -1, ldc = -1, batch = -1;  // batch 0 for cublasSgemm
  long long stride_a = -1, stride_b = -1, stride_c = -1;
};
__attribute__((visibility("default"))) SalCublasStandInLog sal_cublas_stand_in_log;

}  // extern "C"

namespace {

constexpr uint32_t kMagic = 0x5a1cb1a5;

struct StandInHandle {
  uint32_t magic = kMagic;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;
};

StandInHandle* from(cublasHandle_t h) {
  auto* s = reinterpret_cast<StandInHandle*>(h);
  return s && s->magic == kMagic ? s : nullptr;
}

bool valid_op(cublasOperation_t t) { return t == CUBLAS_OP_N || t == CUBLAS_OP_T || t == CUBLAS_OP_C; }
int at_least_1(int v) { return v > 1 ? v : 1; }

// Column-major C[b] (m x n) = alpha op(A[b]) op(B[b]) + beta C[b], b < batch, with cublas<t>gemm's checks:
// INVALID_VALUE for m, n, k or batch < 0, an unknown operation, lda < max(1, m) (N) or max(1, k) (T),
// ldb < max(1, k) (N) or max(1, n) (T), ldc < max(1, m), or a null alpha or beta. With beta == 0, C is
// not read (cuBLAS: "C does not have to be a valid input").
cublasStatus_t gemm(cublasHandle_t handle, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                    const float* alpha, const float* A, int lda, long long sa, const float* B, int ldb, long long sb,
                    const float* beta, float* C, int ldc, long long sc, int batch, bool batched) {
  StandInHandle* h = from(handle);
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (m < 0 || n < 0 || k < 0 || batch < 0 || !valid_op(ta) || !valid_op(tb) || !alpha || !beta)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (lda < at_least_1(ta == CUBLAS_OP_N ? m : k) || ldb < at_least_1(tb == CUBLAS_OP_N ? k : n) ||
      ldc < at_least_1(m))
    return CUBLAS_STATUS_INVALID_VALUE;
  SalCublasStandInLog& log = sal_cublas_stand_in_log;
  log.gemm_calls += 1;
  log.tf32_math = h->math == CUBLAS_TF32_TENSOR_OP_MATH ? 1 : h->math == CUBLAS_DEFAULT_MATH ? 0 : 2;
  log.transa = static_cast<int>(ta), log.transb = static_cast<int>(tb);
  log.m = m, log.n = n, log.k = k, log.lda = lda, log.ldb = ldb, log.ldc = ldc, log.batch = batched ? batch : 0;
  log.stride_a = sa, log.stride_b = sb, log.stride_c = sc;
  for (int b = 0; b < batch; ++b) {
    const float* a = A + b * sa;
    const float* bm = B + b * sb;
    float* c = C + b * sc;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        double acc = 0;
        for (int p = 0; p < k; ++p) {
          const long long ia = ta == CUBLAS_OP_N ? i + 1LL * p * lda : p + 1LL * i * lda;
          const long long ib = tb == CUBLAS_OP_N ? p + 1LL * j * ldb : j + 1LL * p * ldb;
          acc += static_cast<double>(a[ia]) * bm[ib];
        }
        float& out = c[i + 1LL * j * ldc];
        out = static_cast<float>(*alpha * acc + (*beta == 0.f ? 0.0 : *beta * static_cast<double>(out)));
      }
  }
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = reinterpret_cast<cublasHandle_t>(new StandInHandle);
  sal_cublas_stand_in_log.handles_alive += 1;
  return CUBLAS_STATUS_SUCCESS;
}

__attribute__((visibility("default"))) cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  StandInHandle* h = from(handle);
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->magic = 0;
  delete h;
  sal_cublas_stand_in_log.handles_alive -= 1;
  return CUBLAS_STATUS_SUCCESS;
}

// cublasSetStream also puts the handle back on cuBLAS's own workspace pool (its documentation): recorded so.
__attribute__((visibility("default"))) cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  StandInHandle* h = from(handle);
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->stream = stream;
  h->workspace = nullptr;
  return CUBLAS_STATUS_SUCCESS;
}

// The workspace must be aligned to at least 256 bytes (cublasSetWorkspace's documentation).
__attribute__((visibility("default"))) cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void* workspace,
                                                                           size_t bytes) {
  StandInHandle* h = from(handle);
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0 || (bytes && !workspace)) return CUBLAS_STATUS_INVALID_VALUE;
  h->workspace = workspace;
  return CUBLAS_STATUS_SUCCESS;
}

__attribute__((visibility("default"))) cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  StandInHandle* h = from(handle);
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  h->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

__attribute__((visibility("default"))) cublasStatus_t cublasSgemm_v2(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, const float* alpha,
    const float* A, int lda, const float* B, int ldb, const float* beta, float* C, int ldc) {
  return gemm(handle, transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1, false);
}

__attribute__((visibility("default"))) cublasStatus_t cublasSgemmStridedBatched(
    cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, const float* alpha,
    const float* A, int lda, long long int strideA, const float* B, int ldb, long long int strideB, const float* beta,
    float* C, int ldc, long long int strideC, int batchCount) {
  return gemm(handle, transa, transb, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC,
              batchCount, true);
}

__attribute__((visibility("default"))) const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS (stand-in)";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED (stand-in)";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE (stand-in)";
    default: return "another status (stand-in)";
  }
}

}  // extern "C"
