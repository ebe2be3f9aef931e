// Hand-worked cases and argument errors for the activation ops.
#include <doctest/doctest.h>

#include <cmath>

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
