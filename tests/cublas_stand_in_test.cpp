// The engine's cuBLAS wrapper (cuda/cublas_gemm.cpp) and the 1x1-convolution GEMMs it runs
// (cuda/conv_pointwise_gemm.h's cublas_pointwise), run without a GPU against a CPU stand-in for cuBLAS's
// library (tests/cublas_stand_in/, found first through LD_LIBRARY_PATH, which ctest sets): the wrapper's
// own code runs as on a GPU (dlopen, the entry points, the row-major to column-major swap, the math mode,
// errors), the arithmetic is the stand-in's. What the stand-in cannot show (cuBLAS's kernels, streams,
// the workspace under a graph) is checked on a GPU by tests/cuda_conv_backends.cpp.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/conv_pointwise_gemm.h"
#include "cuda/cublas_gemm.h"
#include "engine/ops.h"
#include "tests/stand_in_util.h"

using namespace sal;

namespace {

// The stand-in's record of its calls (tests/cublas_stand_in/libcublas_stand_in.cpp; same layout).
struct SalCublasStandInLog {
  int64_t gemm_calls;
  int64_t handles_alive;
  int tf32_math;
  int transa, transb;
  int m, n, k, lda, ldb, ldc, batch;
  long long stride_a, stride_b, stride_c;
};

// The log of the library the wrapper opened (opening it, as the first GEMM would).
const SalCublasStandInLog& stand_in_log() {
  return test::stand_in_log<SalCublasStandInLog>(cuda::cublas_library_path(), "sal_cublas_stand_in_log",
                                                 "tests/cublas_stand_in");
}

std::vector<float> as_f32(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

double max_abs_diff(const std::vector<float>& got, const std::vector<double>& want) {
  double m = got.size() == want.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) m = std::fmax(m, std::fabs(got[i] - want[i]));
  return m;
}

}  // namespace

TEST_CASE("the wrapper opens the stand-in and resolves every entry point") {
  const SalCublasStandInLog& log = stand_in_log();
  CHECK(cuda::cublas_library_path().find("libcublas.so.") != std::string::npos);
  CHECK(log.handles_alive <= 1);  // at most the process-wide handle of a context without a CudaDevice
}

TEST_CASE("1x1 convolutions through cublas_pointwise equal the CPU's conv2d and conv2d_dgrad") {
  const SalCublasStandInLog& log = stand_in_log();
  Ctx cpu(Device::CPU);
  Ctx cuda_ctx(Device::CUDA);  // no CudaDevice: the wrapper's process-wide handle (nothing of the GPU is touched)
  const struct {
    int64_t N, C, H, W, K;
  } shapes[] = {{1, 68, 7, 7, 129}, {3, 40, 9, 11, 24}, {2, 5, 1, 1, 3}, {4, 3, 5, 5, 7}, {1, 1, 1, 1, 1}};
  uint64_t seed = 1;
  for (const auto& s : shapes) {
    for (const bool tf32 : {true, false}) {
      INFO("x ", s.N, "x", s.C, "x", s.H, "x", s.W, ", ", s.K, " filters, tf32 ", tf32);
      const Shape xs{s.N, s.C, s.H, s.W}, ws{s.K, s.C, 1, 1}, ys{s.N, s.K, s.H, s.W};
      const std::vector<double> x = test::uniform_f32_values(xs.numel(), seed++),
                                w = test::uniform_f32_values(ws.numel(), seed++),
                                dy = test::uniform_f32_values(ys.numel(), seed++);
      const Tensor x64 = Tensor::from_values(x, xs, DType::F64), w64 = Tensor::from_values(w, ws, DType::F64),
                   dy64 = Tensor::from_values(dy, ys, DType::F64);
      const Conv2dArgs args;
      const std::vector<double> y_cpu = conv2d(cpu, x64, w64, nullptr, args).values();
      const std::vector<double> dx_cpu = conv2d_dgrad(cpu, dy64, w64, xs, args).values();

      const cuda::ConvGeom g = cuda::conv_geom(xs, ws, ys, args);
      REQUIRE(cuda::pointwise_gemm_applies(g));
      const std::vector<float> xf = as_f32(x), wf = as_f32(w), dyf = as_f32(dy);
      std::vector<float> y(static_cast<size_t>(ys.numel()), NAN), dx(static_cast<size_t>(xs.numel()), NAN);
      const int64_t calls = log.gemm_calls;

      cuda::cublas_pointwise(cuda_ctx, cuda::pointwise_forward_gemm(g), wf.data(), xf.data(), y.data(), tf32);
      CHECK(log.gemm_calls == calls + 1);  // one call for the whole batch
      CHECK(log.tf32_math == (tf32 ? 1 : 0));
      CHECK(log.batch == (s.N == 1 ? 0 : s.N));  // cublasSgemm for one image, else strided-batched
      if (s.N > 1) {
        CHECK(log.stride_b == 0);  // column-major B is the weights: one matrix for every image
        CHECK(log.stride_a == s.C * s.H * s.W);
        CHECK(log.stride_c == s.K * s.H * s.W);
      }
      CHECK(max_abs_diff(y, y_cpu) < 1e-5);

      cuda::cublas_pointwise(cuda_ctx, cuda::pointwise_dgrad_gemm(g), wf.data(), dyf.data(), dx.data(), tf32);
      CHECK(log.gemm_calls == calls + 2);
      CHECK(max_abs_diff(dx, dx_cpu) < 1e-5);
    }
  }
  CHECK(log.handles_alive == 1);  // a context without a CudaDevice: one handle for the process, made once
}

TEST_CASE("a status other than success is an error naming the call and cuBLAS's message") {
  const SalCublasStandInLog& log = stand_in_log();
  Ctx cuda_ctx(Device::CUDA);
  std::vector<float> a(12, 1.f), b(12, 1.f), c(12, 0.f);
  const int64_t calls = log.gemm_calls;
  // Row-major C[3,4] = A[3,2] B[2,4] with lda 1 < 2: cuBLAS (column-major, A as B^T) refuses ldb < k.
  CHECK_THROWS_WITH(cuda::gemm(cuda_ctx, false, false, 3, 4, 2, 1.f, a.data(), 1, b.data(), 4, 0.f, c.data(), 4),
                    doctest::Contains("CUBLAS_STATUS_INVALID_VALUE"));
  CHECK_THROWS_WITH(cuda::gemm_batched(cuda_ctx, false, false, 3, 4, 2, 1.f, a.data(), 2, 6, b.data(), 4, 8, 0.f,
                                       c.data(), 3, 12, 1),
                    doctest::Contains("sgemm_strided_batched(h, op(trans_b)"));
  CHECK(log.gemm_calls == calls);  // neither computed
  // The same call with valid leading dimensions computes: every C element is k = 2.
  cuda::gemm(cuda_ctx, false, false, 3, 4, 2, 1.f, a.data(), 2, b.data(), 4, 0.f, c.data(), 4);
  CHECK(log.gemm_calls == calls + 1);
  CHECK(c[0] == 2.f);
  CHECK(c[11] == 2.f);
}

TEST_CASE("sizes beyond cuBLAS's 32-bit integers are refused before any call") {
  const SalCublasStandInLog& log = stand_in_log();
  Ctx cuda_ctx(Device::CUDA);
  float one = 1.f;
  const int64_t calls = log.gemm_calls;
  const int64_t big = int64_t{1} << 31;
  CHECK_THROWS_WITH(cuda::gemm(cuda_ctx, false, false, big, 1, 1, 1.f, &one, 1, &one, 1, 0.f, &one, 1),
                    doctest::Contains("does not fit cuBLAS's 32-bit sizes"));
  CHECK_THROWS_WITH(cuda::gemm_batched(cuda_ctx, false, false, 1, 1, 1, 1.f, &one, 1, 0, &one, 1, 0, 0.f, &one, 1, 0,
                                       big),
                    doctest::Contains("batch"));
  CHECK(log.gemm_calls == calls);
}
