// cuBLAS wrapper. cuBLAS is column-major: a row-major C = A B is computed as the column-major
// C^T = B^T A^T, i.e. by swapping the operands (and M with N); no data is transposed.
//
// cuBLAS is opened with dlopen on first use instead of being linked: a process linked with
// libcublas runs libcublasLt's static initialisers at start-up, CPU-only runs and --help included
// (measured on the development machine: an empty main linked with -lcublas takes 60-80 ms and 217 MB
// of resident memory, against under 10 ms and 1.5 MB with -lcudart alone).
#include "cuda/cublas_gemm.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <string>
#include <vector>

#include "cuda/device.h"
#include "cuda/libraries.h"
#include "cuda/runtime.h"

// The entry points used, as (member, function). cublas_v2.h maps several names to versioned symbols
// (cublasCreate is cublasCreate_v2): the types and the dlsym names are taken after that expansion.
#define SAL_CUBLAS_FUNCTIONS(X)                         \
  X(create, cublasCreate)                               \
  X(destroy, cublasDestroy)                             \
  X(set_stream, cublasSetStream)                        \
  X(set_workspace, cublasSetWorkspace)                  \
  X(set_math_mode, cublasSetMathMode)                   \
  X(sgemm, cublasSgemm)                                 \
  X(sgemm_strided_batched, cublasSgemmStridedBatched)   \
  X(status_string, cublasGetStatusString)

#define SAL_STRINGIZE(x) #x
#define SAL_STRINGIZE_EXPANDED(x) SAL_STRINGIZE(x)

#define SAL_CUBLAS_CHECK(call)                                                                  \
  do {                                                                                          \
    cublasStatus_t sal_st_ = (call);                                                            \
    if (sal_st_ != CUBLAS_STATUS_SUCCESS)                                                       \
      ::sal::fail(#call, " failed: ", lib().status_string(sal_st_), " (", __FILE__, ":", __LINE__, ")"); \
  } while (0)

namespace sal::cuda {

namespace {

struct CublasLibrary {
  std::string path;  // the file dlopen opened
#define SAL_CUBLAS_MEMBER(member, fn) decltype(&fn) member = nullptr;
  SAL_CUBLAS_FUNCTIONS(SAL_CUBLAS_MEMBER)
#undef SAL_CUBLAS_MEMBER
};

CublasLibrary open_cublas() {
  // The soname of the headers' major version, first through the loader's search (LD_LIBRARY_PATH,
  // the executable's run path, the ld.so cache), then in the folder CMake found cuBLAS in.
  const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
  std::vector<std::string> tried = {soname};
#ifdef SAL_CUBLAS_DIR
  tried.push_back(std::string(SAL_CUBLAS_DIR) + "/" + soname);
#endif
  std::string errors;
  void* handle = nullptr;
  CublasLibrary lib;
  for (const std::string& name : tried) {
    handle = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle) {
      lib.path = name;
      break;
    }
    const char* e = ::dlerror();
    errors += "\n  " + (e ? std::string(e) : name + ": unknown error");  // dlerror names the file
  }
  SAL_CHECK(handle, "cuBLAS: cannot open ", soname, " (the CUDA Toolkit's cuBLAS ", CUBLAS_VER_MAJOR,
            "; put its lib folder on LD_LIBRARY_PATH):", errors);
#define SAL_CUBLAS_RESOLVE(member, fn)                                                                         \
  {                                                                                                            \
    void* sym = ::dlsym(handle, SAL_STRINGIZE_EXPANDED(fn));                                                  \
    SAL_CHECK(sym, "cuBLAS: ", lib.path, " has no symbol ", SAL_STRINGIZE_EXPANDED(fn), " (built against cuBLAS ", \
              CUBLAS_VER_MAJOR, ".", CUBLAS_VER_MINOR, ")");                                                   \
    lib.member = reinterpret_cast<decltype(lib.member)>(sym);                                                  \
  }
  SAL_CUBLAS_FUNCTIONS(SAL_CUBLAS_RESOLVE)
#undef SAL_CUBLAS_RESOLVE
  return lib;
}

// Opened once per process (thread-safe static initialisation); a failure throws every time.
const CublasLibrary& lib() {
  static const CublasLibrary opened = open_cublas();
  return opened;
}

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

// The handle of the context's device, bound to its stream. A CUDA Ctx without a CudaDevice
// uses one process-wide handle on the default stream.
cublasHandle_t handle_for(Ctx& ctx) {
  auto* dev = static_cast<CudaDevice*>(ctx.cuda);
  if (!dev) {
    static cublasHandle_t shared = [] {
      cublasHandle_t h;
      SAL_CUBLAS_CHECK(lib().create(&h));
      return h;
    }();
    return shared;
  }
  if (!dev->cublas) {
    cublasHandle_t h;
    SAL_CUBLAS_CHECK(lib().create(&h));
    void* workspace = nullptr;
    try {
      SAL_CUBLAS_CHECK(lib().set_stream(h, static_cast<cudaStream_t>(dev->stream())));
      // An explicit workspace, so that cuBLAS never allocates one while a CUDA graph is being captured
      // (the size NVIDIA recommends for Hopper).
      workspace = malloc_device(kWorkspaceBytes);
      SAL_CUBLAS_CHECK(lib().set_workspace(h, workspace, kWorkspaceBytes));
    } catch (...) {  // neither the handle nor the workspace outlives a failed set-up (the next call tries again)
      lib().destroy(h);
      if (workspace) free_device(workspace);
      throw;
    }
    dev->cublas = h;
    dev->cublas_workspace = workspace;
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
  SAL_CUBLAS_CHECK(lib().set_math_mode(h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  // Row-major C[M,N] = op(A) op(B)  <=>  column-major C^T[N,M] = op(B)^T op(A)^T.
  SAL_CUBLAS_CHECK(lib().sgemm(h, op(trans_b), op(trans_a), as_int(N, "N"), as_int(M, "M"), as_int(K, "K"), &alpha, B,
                               as_int(ldb, "ldb"), A, as_int(lda, "lda"), &beta, C, as_int(ldc, "ldc")));
}

void gemm_batched(Ctx& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, int64_t stride_a, const float* B, int64_t ldb, int64_t stride_b, float beta, float* C,
                  int64_t ldc, int64_t stride_c, int64_t batch, bool tf32) {
  cublasHandle_t h = handle_for(ctx);
  SAL_CUBLAS_CHECK(lib().set_math_mode(h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  SAL_CUBLAS_CHECK(lib().sgemm_strided_batched(h, op(trans_b), op(trans_a), as_int(N, "N"), as_int(M, "M"),
                                             as_int(K, "K"), &alpha, B, as_int(ldb, "ldb"), stride_b, A,
                                             as_int(lda, "lda"), stride_a, &beta, C, as_int(ldc, "ldc"), stride_c,
                                             as_int(batch, "batch")));
}

std::string cublas_library_path() { return lib().path; }

void release_cublas(CudaDevice& dev) {
  if (dev.cublas) lib().destroy(static_cast<cublasHandle_t>(dev.cublas));
  dev.cublas = nullptr;
  if (dev.cublas_workspace) free_device(dev.cublas_workspace);
  dev.cublas_workspace = nullptr;
}

}  // namespace sal::cuda
