// Hand-worked cases and argument errors for the activation ops.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "tests/op_check.h"

using namespace sal;
using sal::test::all_close;

TEST_CASE("relu / relu6 / sigmoid: hand-worked values") {
  Ctx ctx;
  Tensor x = Tensor::from_values({-2, -0.5, 0, 0.5, 3, 7}, Shape{1, 6});
  CHECK(all_close(relu(ctx, x), {0, 0, 0, 0.5, 3, 7}));
  CHECK(all_close(relu6(ctx, x), {0, 0, 0, 0.5, 3, 6}));
  Tensor s = sigmoid(ctx, Tensor::from_values({0, 1000, -1000, std::log(3.0)}, Shape{4}));
  CHECK(all_close(s, {0.5, 1, 0, 0.75}));

  Tensor dy = Tensor::from_values({1, 1, 1, 1, 1, 1}, Shape{1, 6});
  CHECK(all_close(relu_backward(ctx, dy, relu(ctx, x)), {0, 0, 0, 1, 1, 1}));
  CHECK(all_close(relu6_backward(ctx, dy, x), {0, 0, 0, 1, 1, 0}));
  // d sigmoid at 0 is 1/4; at log 3 it is 0.75 * 0.25.
  CHECK(all_close(sigmoid_backward(ctx, Tensor::from_values({2, 4}, Shape{2}), Tensor::from_values({0.5, 0.75}, Shape{2})),
                  {0.5, 0.75}));
}

TEST_CASE("activations: argument errors") {
  Ctx ctx;
  Tensor x = Tensor::from_values({1, 2, 3}, Shape{3});
  CHECK_THROWS_WITH_AS(relu_backward(ctx, Tensor::from_values({1, 2}, Shape{2}), x),
                       doctest::Contains("relu_backward: dy has shape [2], expected [3]"), Error);
  CHECK_THROWS_WITH_AS(relu(ctx, Tensor::from_labels({1, 2})), doctest::Contains("unsupported dtype"), Error);
  CHECK_THROWS_WITH_AS(sigmoid_backward(ctx, x, x.to(DType::F64)), doctest::Contains("mixed dtypes"), Error);
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(relu(gpu, x), doctest::Contains("not on the context's device"), Error);
}

// The activation gradients select with a bit mask (engine/cpu/keep_or_zero.h), not a branch: a NaN or
// infinite dy must still be dropped (+0, not 0 * NaN) where the activation is flat and passed unchanged,
// sign of zero included, where it is not. Every op that applies such a gate, f32 and f64, with more
// elements than one vector so the vectorised loop runs.
TEST_CASE("activation gradients: a non-finite dy is dropped where the activation is flat and kept where it is not") {
  Ctx ctx;
  const double nan = std::nan(""), inf = HUGE_VAL;
  // y (the activation's output) and dy by position: flat for ReLU at y <= 0, for ReLU6 also at y >= 6.
  const std::vector<double> y0 = {-1, 0, 0.5, 3, 6, 7, 2, 0};
  const std::vector<double> dy0 = {nan, inf, nan, -inf, nan, -inf, -0.0, -0.0};
  std::vector<double> yv, dyv;
  for (int rep = 0; rep < 5; ++rep) yv.insert(yv.end(), y0.begin(), y0.end()), dyv.insert(dyv.end(), dy0.begin(), dy0.end());
  const int64_t n = static_cast<int64_t>(yv.size());
  // zero_sign: whether a kept -0 must stay -0 (not through a GEMM, whose sum starts at +0).
  auto check = [&](const std::vector<double>& got, bool relu6, const std::string& what, bool zero_sign = true) {
    INFO(what);
    REQUIRE(got.size() == yv.size());
    for (int64_t i = 0; i < n; ++i) {
      const bool keep = yv[i] > 0 && (!relu6 || yv[i] < 6);
      INFO("element ", i, " y ", yv[i], " dy ", dyv[i], " got ", got[i]);
      if (!keep) {
        CHECK((got[i] == 0 && !std::signbit(got[i])));
      } else if (std::isnan(dyv[i])) {
        CHECK(std::isnan(got[i]));
      } else {
        CHECK(got[i] == dyv[i]);
        if (zero_sign) CHECK(std::signbit(got[i]) == std::signbit(dyv[i]));
      }
    }
  };
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor y = Tensor::from_values(yv, Shape{1, 1, 1, n}, dt);
    Tensor dy = Tensor::from_values(dyv, Shape{1, 1, 1, n}, dt);
    check(relu_backward(ctx, dy, y).values(), false, "relu_backward");
    check(relu6_backward(ctx, dy, y).values(), true, "relu6_backward");
    Tensor one = Tensor::from_values({1}, Shape{1}, dt);
    // gamma 1, var 1, eps 0: the batch norm's scale is exactly 1.
    check(batchnorm2d_infer_act_backward(ctx, dy, y, one, one, 0.0, Activation::ReLU).values(), false,
          "batchnorm2d_infer_act_backward ReLU");
    check(batchnorm2d_infer_act_backward(ctx, dy, y, one, one, 0.0, Activation::ReLU6).values(), true,
          "batchnorm2d_infer_act_backward ReLU6");
    // A 1x1 convolution with weight 1: dx is the gated dy itself.
    Tensor w = Tensor::from_values({1}, Shape{1, 1, 1, 1}, dt);
    const Conv2dArgs a = Conv2dArgs::make(1, 0);
    check(conv2d_dgrad_bn_act(ctx, dy, y, w, one, one, 0.0, Activation::ReLU, y.shape(), a).values(), false,
          "conv2d_dgrad_bn_act ReLU", false);
    check(conv2d_dgrad_bn_act(ctx, dy, y, w, one, one, 0.0, Activation::ReLU6, y.shape(), a).values(), true,
          "conv2d_dgrad_bn_act ReLU6", false);
  }
}
