// The batch-norm fold (cuda/conv_bn_fold.h) that cuDNN's fused convolution + bias + activation runs
// conv2d_bn_act with on a GPU, checked without one: the per-element formula the kernel runs, applied on the CPU
// to every element, gives weights and a bias with which conv2d + bias + residual + activation equals
// conv2d_bn_act (to f32 rounding: the fold rounds each product w * s once more). A wrong row (output channel) for
// an element, a scale from the wrong statistics or a bias with the wrong sign fails it. The cuDNN call itself is
// compared with the CPU on a GPU by tests/cuda_conv_backends.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "cuda/conv_bn_fold.h"
#include "tests/op_check.h"

using namespace sal;

namespace {

struct Folded {
  Tensor w, b;
};

// The fold of (w, bn) on the CPU, element by element as bn_fold_kernel does.
Folded fold(const Tensor& w, const Tensor& gamma, const Tensor& beta, const Tensor& mean, const Tensor& var,
            double eps) {
  const int64_t K = w.shape()[0], crs = w.numel() / K;
  Folded f{Tensor::zeros(w.shape(), DType::F32), Tensor::zeros(Shape{K}, DType::F32)};
  for (int64_t i = 0; i < K * crs; ++i)
    cuda::bn_fold_element(i, crs, w.data<float>(), gamma.data<float>(), beta.data<float>(), mean.data<float>(),
                          var.data<float>(), eps, f.w.data<float>(), f.b.data<float>());
  return f;
}

Tensor random_f32(const Shape& s, std::mt19937_64& rng, double lo = -1, double hi = 1) {
  return Tensor::from_values(test::uniform(s, rng, lo, hi), s, DType::F32);
}

}  // namespace

TEST_CASE("batch-norm fold: a hand-worked channel") {
  // w = [2, -1], gamma 3, var 3, eps 1 (s = 3 / sqrt(4) = 1.5), mean 1, beta 0.5: wf = [3, -1.5], bf = 0.5 - 1.5 = -1
  const Tensor w = Tensor::from_values({2, -1}, Shape{1, 2, 1, 1});
  const Tensor gamma = Tensor::from_values({3}, Shape{1}), var = Tensor::from_values({3}, Shape{1});
  const Tensor mean = Tensor::from_values({1}, Shape{1}), beta = Tensor::from_values({0.5}, Shape{1});
  const Folded f = fold(w, gamma, beta, mean, var, 1.0);
  CHECK(f.w.values() == std::vector<double>{3, -1.5});
  CHECK(f.b.values() == std::vector<double>{-1});
  CHECK(cuda::bn_infer_scale(3.f, 3.f, 1.0) == 1.5f);
}

TEST_CASE("batch-norm fold: conv2d with the folded weights and bias equals conv2d_bn_act") {
  Ctx ctx(Device::CPU);
  const struct {
    const char* name;
    Shape x, w;
    Conv2dArgs a;
  } cases[] = {
      {"3x3 pad 1", {2, 5, 9, 8}, {7, 5, 3, 3}, Conv2dArgs::make(1, 1)},
      {"1x1", {3, 16, 6, 6}, {24, 16, 1, 1}, Conv2dArgs::make(1, 0)},
      {"3x3 stride 2, 2 groups", {2, 6, 11, 11}, {8, 3, 3, 3}, Conv2dArgs::make(2, 1, 1, 2)},
      {"depthwise 3x3", {2, 12, 7, 7}, {12, 1, 3, 3}, Conv2dArgs::make(1, 1, 1, 12)},
  };
  std::mt19937_64 rng(7);
  for (const auto& c : cases) {
    const Tensor x = random_f32(c.x, rng), w = random_f32(c.w, rng);
    const Shape ks{c.w[0]};
    // channel statistics as a trained network has them: var in [0.01, 2], |gamma| up to 2, means off zero
    const Tensor gamma = random_f32(ks, rng, -2, 2), beta = random_f32(ks, rng, -1, 1);
    const Tensor mean = random_f32(ks, rng, -3, 3), var = random_f32(ks, rng, 0.01, 2);
    const Tensor r = random_f32(conv2d_out_shape(c.x, c.w, c.a), rng);
    const Folded f = fold(w, gamma, beta, mean, var, 1e-5);
    const Tensor conv = conv2d(ctx, x, f.w, &f.b, c.a);  // conv(x, wf) + bf
    for (const Tensor* residual : {static_cast<const Tensor*>(nullptr), &r}) {
      for (const Activation act : {Activation::None, Activation::ReLU}) {
        INFO(c.name, residual ? " + residual" : "", act == Activation::ReLU ? ", ReLU" : ", no activation");
        const Tensor want = conv2d_bn_act(ctx, x, w, gamma, beta, mean, var, 1e-5, residual, act, c.a);
        std::vector<double> got = conv.values();
        const std::vector<double> res = residual ? residual->values() : std::vector<double>(got.size(), 0.0);
        for (size_t i = 0; i < got.size(); ++i) {
          got[i] += res[i];
          if (act == Activation::ReLU) got[i] = std::max(got[i], 0.0);
        }
        const double e = test::max_rel_diff(Tensor::from_values(got, want.shape()), want);
        CHECK(e < 2e-5);
      }
    }
  }
}
