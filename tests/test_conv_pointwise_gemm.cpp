// The GEMM that cuBLAS runs for a 1x1 convolution (cuda/conv_pointwise_gemm.h), checked without a GPU:
// the description it gives is replayed image by image through the CPU's row-major GEMM, which has the
// same arguments as cuda::gemm_batched, and must give what the CPU's conv2d / conv2d_dgrad ops give; and
// the shapes it claims are exactly the 1x1, stride-1, unpadded, ungrouped ones. (The cuBLAS call itself is
// checked against the CPU on a GPU by tests/cuda_conv_backends.cpp.)
#include <doctest/doctest.h>

#include <random>

#include "cuda/conv_pointwise_gemm.h"
#include "engine/cpu/gemm.h"
#include "tests/op_check.h"

using namespace sal;
using sal::cuda::PointwiseGemm;

namespace {

// C[b] = op(A[b]) op(B[b]) for every b, as gemm_batched would, through the CPU's GEMM (double).
void replay(const PointwiseGemm& m, const double* a, const double* b, double* c) {
  for (int64_t i = 0; i < m.batch; ++i)
    cpu::gemm<double>(m.trans_a, m.trans_b, m.M, m.N, m.K, 1.0, a + i * m.stride_a, m.lda, b + i * m.stride_b,
                      m.ldb, 0.0, c + i * m.stride_c, m.ldc);
}

Tensor random_f64(const Shape& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  return Tensor::from_values(test::uniform(s, rng), s, DType::F64);
}

cuda::ConvGeom geom(const Shape& x, const Shape& w, const Conv2dArgs& a) {
  return cuda::conv_geom(x, w, conv2d_out_shape(x, w, a), a);
}

}  // namespace

TEST_CASE("pointwise GEMM: the forward and input gradient of a 1x1 conv, replayed on the CPU, equal the CPU ops") {
  Ctx ctx(Device::CPU);
  const struct {
    Shape x, w;
  } shapes[] = {
      {{1, 68, 7, 7}, {129, 68, 1, 1}},     // batch 1 (one plain GEMM on the GPU)
      {{3, 40, 9, 11}, {24, 40, 1, 1}},     // several images, a plane that is no multiple of anything
      {{2, 256, 14, 14}, {64, 256, 1, 1}},  // a ResNet-50 bottleneck's reduction
      {{4, 3, 5, 5}, {7, 3, 1, 1}},         // fewer channels than the plane has rows
  };
  int seed = 0;
  for (const auto& s : shapes) {
    const Conv2dArgs a = Conv2dArgs::make(1, 0);
    const cuda::ConvGeom g = geom(s.x, s.w, a);
    INFO("x ", s.x.str(), " w ", s.w.str());
    REQUIRE(cuda::pointwise_gemm_applies(g));
    const Tensor x = random_f64(s.x, ++seed), w = random_f64(s.w, ++seed);
    const Tensor want_y = conv2d(ctx, x, w, nullptr, a);
    const Tensor dy = random_f64(want_y.shape(), ++seed);
    const Tensor want_dx = conv2d_dgrad(ctx, dy, w, s.x, a);

    const PointwiseGemm fwd = cuda::pointwise_forward_gemm(g);
    CHECK(fwd.batch == s.x[0]);
    Tensor y = Tensor::zeros(want_y.shape(), DType::F64);
    replay(fwd, w.data<double>(), x.data<double>(), y.data<double>());
    CHECK(test::max_rel_diff(y, want_y) <= 1e-13);

    const PointwiseGemm bwd = cuda::pointwise_dgrad_gemm(g);
    Tensor dx = Tensor::zeros(s.x, DType::F64);
    replay(bwd, w.data<double>(), dy.data<double>(), dx.data<double>());
    CHECK(test::max_rel_diff(dx, want_dx) <= 1e-13);
  }
}

TEST_CASE("pointwise GEMM: only 1x1, stride-1, unpadded, ungrouped convolutions are claimed") {
  const Shape x{2, 16, 8, 8};
  CHECK(cuda::pointwise_gemm_applies(geom(x, {32, 16, 1, 1}, Conv2dArgs::make(1, 0))));
  CHECK_FALSE(cuda::pointwise_gemm_applies(geom(x, {32, 16, 3, 3}, Conv2dArgs::make(1, 1))));     // 3x3
  CHECK_FALSE(cuda::pointwise_gemm_applies(geom(x, {32, 16, 1, 1}, Conv2dArgs::make(2, 0))));     // stride 2
  CHECK_FALSE(cuda::pointwise_gemm_applies(geom(x, {32, 16, 1, 1}, Conv2dArgs::make(1, 1))));     // padded
  CHECK_FALSE(cuda::pointwise_gemm_applies(geom(x, {32, 8, 1, 1}, Conv2dArgs::make(1, 0, 1, 2))));  // 2 groups
  CHECK_FALSE(cuda::pointwise_gemm_applies(geom(x, {16, 1, 1, 1}, Conv2dArgs::make(1, 0, 1, 16))));  // depthwise
  // A stride-2 1x1 conv over a 1x1 plane has the plane it reads, but its stride is still not 1: not claimed.
  CHECK_FALSE(cuda::pointwise_gemm_applies(geom({2, 16, 1, 1}, {32, 16, 1, 1}, Conv2dArgs::make(2, 0))));
  // A transposed 1x1 conv with stride 1 is the input gradient of a 1x1 conv: claimed in its conv2d view.
  const Shape tx{2, 16, 8, 8}, tw{16, 24, 1, 1};
  const ConvTranspose2dArgs ta = ConvTranspose2dArgs::make(1, 0);
  CHECK(cuda::pointwise_gemm_applies(cuda::transpose_geom(tx, tw, conv_transpose2d_out_shape(tx, tw, ta), ta)));
}
