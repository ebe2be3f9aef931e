// CPU backend: the thin BLAS wrapper (row-major C = alpha*op(A)*op(B) + beta*C).
//
// Why BLAS runs single-threaded here and OpenMP does the parallel work: the OpenBLAS on the
// target machines is the pthreads build. Its worker threads and the OpenMP team both busy-wait
// after their parallel sections, so alternating an OpenMP im2col with a BLAS-threaded GEMM on 2
// cores measured 4x slower than either alone (the two pools steal each other's cores), and a
// threaded OpenBLAS called from inside an OpenMP region oversubscribes. So on first use the
// wrapper sets OpenBLAS to one thread, and every caller parallelises with OpenMP: per image
// (each thread its own single-threaded GEMM) or, for one big GEMM, gemm_parallel() below,
// which gives each thread a slab of C. Measured on 2 cores (M=64, N=3136, K=576): BLAS-threaded
// sgemm 202 GFLOP/s, two OpenMP threads each a half-N single-threaded sgemm 215 GFLOP/s.
#include "engine/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <type_traits>
#include <vector>

#include "engine/dtype.h"
#include "engine/error.h"

namespace sal::cpu {

namespace {

void blas_single_threaded() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

int to_int(int64_t v, const char* what) {
  SAL_CHECK(v >= 0 && v <= INT_MAX, "gemm: ", what, " = ", v, " does not fit the BLAS integer type");
  return static_cast<int>(v);
}

std::once_flag g_tf32_env_once;
std::atomic<bool> g_emulate_tf32{false}, g_emulate_bf16{false};

void read_tf32_env_once() {
  std::call_once(g_tf32_env_once, [] {
    auto on = [](const char* name) {
      const char* e = std::getenv(name);
      return e && *e && std::strcmp(e, "0") != 0;
    };
    if (on("SAL_CPU_EMULATE_TF32")) g_emulate_tf32.store(true);
    if (on("SAL_CPU_EMULATE_BF16")) g_emulate_bf16.store(true);
  });
}

// The rows x cols matrix at p (row stride ld) with its operands rounded (to_narrow: round_to_tf32 or
// round_to_bf16) into this thread's buffer `slot`, with the same stride (the gaps between rows are left
// as they were: BLAS never reads them).
template <float (*to_narrow)(float)>
const float* narrow_copy(const float* p, int rows, int cols, int ld, int slot) {
  thread_local std::vector<float> buf[2];
  std::vector<float>& b = buf[slot];
  const size_t need = static_cast<size_t>(rows - 1) * static_cast<size_t>(ld) + static_cast<size_t>(cols);
  if (b.size() < need) b.resize(need);  // grows to the largest GEMM once, then reused
  for (int r = 0; r < rows; ++r) {
    const float* src = p + static_cast<size_t>(r) * ld;
    float* dst = b.data() + static_cast<size_t>(r) * ld;
    for (int c = 0; c < cols; ++c) dst[c] = to_narrow(src[c]);
  }
  return b.data();
}

template <class T>
void blas_call(bool ta, bool tb, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb, T beta,
               T* c, int ldc) {
  const CBLAS_TRANSPOSE tra = ta ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE trb = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    if (emulate_bf16()) {  // row-major: op(A) is m x k, so A is k x m when transposed; likewise B
      a = ta ? narrow_copy<round_to_bf16>(a, k, m, lda, 0) : narrow_copy<round_to_bf16>(a, m, k, lda, 0);
      b = tb ? narrow_copy<round_to_bf16>(b, n, k, ldb, 1) : narrow_copy<round_to_bf16>(b, k, n, ldb, 1);
    } else if (emulate_tf32()) {
      a = ta ? narrow_copy<round_to_tf32>(a, k, m, lda, 0) : narrow_copy<round_to_tf32>(a, m, k, lda, 0);
      b = tb ? narrow_copy<round_to_tf32>(b, n, k, ldb, 1) : narrow_copy<round_to_tf32>(b, k, n, ldb, 1);
    }
    cblas_sgemm(CblasRowMajor, tra, trb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {
    cblas_dgemm(CblasRowMajor, tra, trb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // BLAS would reject lda = 0; the product is empty, so C = beta * C.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    return;
  }
  blas_single_threaded();
  blas_call<T>(trans_a, trans_b, to_int(m, "M"), to_int(n, "N"), to_int(k, "K"), alpha, a, to_int(lda, "lda"), b,
               to_int(ldb, "ldb"), beta, c, to_int(ldc, "ldc"));
}

template <class T>
void gemm_parallel(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                   int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads <= 1 || m * n * k < kGemmParallelMinWork) {
    gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // Split the wider side of C; column slabs are kept a multiple of 16 elements (64 bytes).
  const bool split_n = n >= m;
  const int64_t extent = split_n ? n : m;
  const int64_t align = split_n ? 16 : 4;
  const int parts = static_cast<int>(std::min<int64_t>(threads, (extent + align - 1) / align));
#pragma omp parallel num_threads(parts)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t per = (extent + nt - 1) / nt;
    const int64_t slab = (per + align - 1) / align * align;
    const int64_t lo = std::min(extent, t * slab), hi = std::min(extent, lo + slab);
    if (hi > lo) {
      if (split_n) {
        const T* bp = trans_b ? b + lo * ldb : b + lo;
        gemm(trans_a, trans_b, m, hi - lo, k, alpha, a, lda, bp, ldb, beta, c + lo, ldc);
      } else {
        const T* ap = trans_a ? a + lo : a + lo * lda;
        gemm(trans_a, trans_b, hi - lo, n, k, alpha, ap, lda, b, ldb, beta, c + lo * ldc, ldc);
      }
    }
  }
}

void set_emulate_tf32(bool on) {
  read_tf32_env_once();  // so that a later first read cannot override this
  g_emulate_tf32.store(on);
}

bool emulate_tf32() {
  read_tf32_env_once();
  return g_emulate_tf32.load(std::memory_order_relaxed);
}

void set_emulate_bf16(bool on) {
  read_tf32_env_once();
  g_emulate_bf16.store(on);
}

bool emulate_bf16() {
  read_tf32_env_once();
  return g_emulate_bf16.load(std::memory_order_relaxed);
}

float round_to_bf16(float v) { return static_cast<float>(bf16(v)); }  // engine/dtype.h: nearest even, NaN kept

float round_to_tf32(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  if ((u & 0x7f800000u) == 0x7f800000u) return v;  // Inf and NaN as they are
  u += 0xfffu + ((u >> 13) & 1u);                   // round to nearest even at bit 13 (may carry into the exponent)
  u &= 0xffffe000u;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                          float, float*, int64_t);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t);
template void gemm_parallel<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                                   int64_t, float, float*, int64_t);
template void gemm_parallel<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                                    const double*, int64_t, double, double*, int64_t);

}  // namespace sal::cpu
