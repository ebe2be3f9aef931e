// CUDA linear layer: cuBLAS GEMMs (f32) plus the bias kernels of cuda/conv_igemm.cu. See cuda/linear.h.
#include "cuda/linear.h"

#include <cuda_runtime.h>

#include "cuda/check.cuh"
#include "cuda/conv_igemm.h"
#include "cuda/cublas_gemm.h"
#include "cuda/launch.cuh"

namespace sal::cuda {

namespace {
constexpr bool kTf32 = false;
}

void linear(Ctx& ctx, const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  const int64_t n = x.dim(0), k = x.dim(1), m = w.dim(0);
  if (n == 0 || m == 0) return;
  float* out = y.data<float>();
  if (k == 0) {  // an empty sum: cuBLAS rejects a zero leading dimension
    SAL_CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<size_t>(n * m) * sizeof(float), stream_of(ctx)));
  } else {
    gemm(ctx, false, true, n, m, k, 1.f, x.data<float>(), k, w.data<float>(), k, 0.f, out, m, kTf32);
  }
  if (b) channel_bias_add(ctx, out, b->data<float>(), n, m, 1);
}

void linear_dgrad(Ctx& ctx, const Tensor& dy, const Tensor& w, Tensor& dx) {
  const int64_t n = dy.dim(0), m = dy.dim(1), k = w.dim(1);
  if (n == 0 || k == 0) return;
  if (m == 0) {
    SAL_CUDA_CHECK(cudaMemsetAsync(dx.data<float>(), 0, static_cast<size_t>(n * k) * sizeof(float), stream_of(ctx)));
    return;
  }
  gemm(ctx, false, false, n, k, m, 1.f, dy.data<float>(), m, w.data<float>(), k, 0.f, dx.data<float>(), k, kTf32);
}

void linear_wgrad(Ctx& ctx, const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db) {
  const int64_t n = dy.dim(0), m = dy.dim(1), k = x.dim(1);
  if (n == 0 || m == 0) return;
  if (k > 0)
    gemm(ctx, true, false, m, k, n, 1.f, dy.data<float>(), m, x.data<float>(), k, 1.f, dw.data<float>(), k, kTf32);
  if (db) channel_sum_add(ctx, dy.data<float>(), n, m, 1, db->data<float>());
}

}  // namespace sal::cuda
