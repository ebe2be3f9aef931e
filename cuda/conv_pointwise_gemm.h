// A 1x1 convolution with stride 1, no padding and one group is, in NCHW, one GEMM per image:
//   forward  y[n] (K x HW)  = w (K x C)     * x[n] (C x HW)
//   dgrad    dx[n] (C x HW) = w^T (C x K)   * dy[n] (K x HW)
// with every image's matrices contiguous and a fixed distance apart, so a whole batch is one strided-batched
// GEMM (cuBLAS) reading the weights with stride 0. This header maps a ConvGeom to that GEMM's row-major
// description (cuda/cublas_gemm.h's gemm_batched arguments), checked on the CPU against the CPU's
// convolutions (tests/test_conv_pointwise_gemm.cpp), and hands it to the cuBLAS wrapper (cublas_pointwise,
// run on the CPU against a stand-in for cuBLAS's library by tests/cublas_stand_in_test.cpp).
//
// Why: cuDNN's NCHW kernels ran the ResNet-50 1x1 layers at a fraction of what their arithmetic and
// memory traffic allow (H200, batch 64, conv_cuda_bench: 64->256 at 56x56 in 123 us, more than twice the
// 53 us its 256 MB of traffic need at 4.8 TB/s). Auto (cuda/conv_backend.h) times cuBLAS beside the custom kernels and
// cuDNN for these shapes and keeps the fastest. The weight gradient sums over the images as well, which
// one strided-batched GEMM cannot do, so it stays with the other backends.
#pragma once
#include <climits>
#include <cstdint>

#include "cuda/conv_igemm.h"
#include "cuda/cublas_gemm.h"

namespace sal::cuda {

// Row-major C[b] = op(A[b]) op(B[b]) for b < batch, matrices stride_* elements apart (the arguments of
// gemm_batched with alpha 1 and beta 0).
struct PointwiseGemm {
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  int64_t lda = 0, stride_a = 0, ldb = 0, stride_b = 0, ldc = 0, stride_c = 0;
  int64_t batch = 0;
};

// The shapes the mapping covers: 1x1 kernel, stride 1, no padding (the output plane is the input plane),
// one group, and every GEMM size within cuBLAS's 32-bit integers.
inline bool pointwise_gemm_applies(const ConvGeom& g) {
  const auto fits = [](int64_t v) { return v > 0 && v <= INT_MAX; };
  return g.R == 1 && g.S == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 && g.G == 1 && g.P == g.H &&
         g.Q == g.W && fits(g.N) && fits(g.C) && fits(g.K) && fits(g.hw());
}

// x: [N,C,H,W] (*) w: [K,C,1,1] -> y: [N,K,H,W]: A = w, B = x, C = y.
inline PointwiseGemm pointwise_forward_gemm(const ConvGeom& g) {
  PointwiseGemm m;
  m.M = g.K, m.N = g.hw(), m.K = g.C;
  m.lda = g.C, m.stride_a = 0;
  m.ldb = g.hw(), m.stride_b = g.C * g.hw();
  m.ldc = g.hw(), m.stride_c = g.K * g.hw();
  m.batch = g.N;
  return m;
}

// dy: [N,K,H,W] (*) w: [K,C,1,1] -> dx: [N,C,H,W]: A = w read as its transpose, B = dy, C = dx.
inline PointwiseGemm pointwise_dgrad_gemm(const ConvGeom& g) {
  PointwiseGemm m;
  m.trans_a = true;
  m.M = g.C, m.N = g.hw(), m.K = g.K;
  m.lda = g.C, m.stride_a = 0;  // w stored [K, C]: op(A) = w^T
  m.ldb = g.hw(), m.stride_b = g.K * g.hw();
  m.ldc = g.hw(), m.stride_c = g.C * g.hw();
  m.batch = g.N;
  return m;
}

// The forward (A = w, B = x) or input gradient (A = w transposed, B = dy) of a 1x1 convolution on cuBLAS:
// one GEMM for one image, else one strided-batched GEMM.
inline void cublas_pointwise(Ctx& ctx, const PointwiseGemm& m, const float* w, const float* in, float* out,
                             bool tf32) {
  if (m.batch == 1)
    gemm(ctx, m.trans_a, m.trans_b, m.M, m.N, m.K, 1.f, w, m.lda, in, m.ldb, 0.f, out, m.ldc, tf32);
  else
    gemm_batched(ctx, m.trans_a, m.trans_b, m.M, m.N, m.K, 1.f, w, m.lda, m.stride_a, in, m.ldb, m.stride_b, 0.f, out,
                 m.ldc, m.stride_c, m.batch, tf32);
}

}  // namespace sal::cuda
