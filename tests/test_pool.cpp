// Hand-worked cases and argument errors for the pooling ops.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "engine/ops.h"
#include "tests/op_check.h"

using namespace sal;
using sal::test::all_close;

namespace {
Tensor iota(const Shape& s, double start = 1, double step = 1) {
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = start + step * static_cast<double>(i);
  return Tensor::from_values(v, s);
}
}  // namespace

TEST_CASE("pool2d_out_shape: floor and ceil mode sizes PyTorch gives") {
  // GoogLeNet's max pools are k3 s2 ceil_mode: 112 -> 56 (floor mode would give 55), 56 -> 28,
  // 28 -> 14, and its k2 s2 ceil pool 14 -> 7. (112 + 2*0 - 3 + 1)/2 + 1 = 56.
  CHECK(pool2d_out_shape(Shape{1, 64, 112, 112}, Pool2dArgs::make(3, 2, 0, true)) == Shape{1, 64, 56, 56});
  CHECK(pool2d_out_shape(Shape{1, 64, 112, 112}, Pool2dArgs::make(3, 2, 0, false)) == Shape{1, 64, 55, 55});
  CHECK(pool2d_out_shape(Shape{1, 1, 56, 28}, Pool2dArgs::make(3, 2, 0, true)) == Shape{1, 1, 28, 14});
  CHECK(pool2d_out_shape(Shape{1, 1, 14, 14}, Pool2dArgs::make(2, 2, 0, true)) == Shape{1, 1, 7, 7});
  // ResNet stem: k3 s2 p1 on 112 -> 56 (floor((112 + 2 - 3)/2) + 1).
  CHECK(pool2d_out_shape(Shape{2, 64, 112, 112}, Pool2dArgs::make(3, 2, 1)) == Shape{2, 64, 56, 56});
  // 7 with k2 s2: floor 5/2 + 1 = 3, ceil 6/2 + 1 = 4 (the 4th window starts at 6, inside the input).
  CHECK(pool2d_out_shape(Shape{1, 1, 7, 7}, Pool2dArgs::make(2, 2)) == Shape{1, 1, 3, 3});
  CHECK(pool2d_out_shape(Shape{1, 1, 7, 7}, Pool2dArgs::make(2, 2, 0, true)) == Shape{1, 1, 4, 4});
  // 6 with k3 s4 p1 ceil: ceil((6 + 2 - 3)/4) + 1 = 3, but the 3rd window would start at
  // 2*4 - 1 = 7 >= 6 + 1 (inside the right padding only), so it is dropped: 2.
  CHECK(pool2d_out_shape(Shape{1, 1, 6, 6}, Pool2dArgs::make(3, 4, 1, true)) == Shape{1, 1, 2, 2});
  // Rectangular: H 5 with kh 1 sh 1 -> 5; W 7 with kw 3 sw 2 pw 1 -> floor(6/2)+1 = 4.
  CHECK(pool2d_out_shape(Shape{1, 1, 5, 7}, Pool2dArgs{1, 3, 1, 2, 0, 1, false, true}) == Shape{1, 1, 5, 4});
}

TEST_CASE("max_pool2d: padding acts as -inf, first maximum wins, backward to the argmax") {
  Ctx ctx;
  // x = -(1..9) on 3x3, k3 s2 p1 -> 2x2. With zero padding every output would be 0; with -inf
  // padding: window (0,0) covers x rows 0-1, cols 0-1 = {-1,-2,-4,-5} -> -1; (0,1) cols 1-2 ->
  // {-2,-3,-5,-6} -> -2; (1,0) rows 1-2 -> {-4,-5,-7,-8} -> -4; (1,1) -> -5.
  Tensor x = iota(Shape{1, 1, 3, 3}, -1, -1);
  Pool2dArgs a = Pool2dArgs::make(3, 2, 1);
  CHECK(all_close(max_pool2d(ctx, x, a), {-1, -2, -4, -5}));
  // Each output's gradient lands on its argmax: -1 at (0,0), -2 at (0,1), -4 at (1,0), -5 at (1,1).
  Tensor dy = Tensor::from_values({1, 2, 3, 4}, Shape{1, 1, 2, 2});
  CHECK(all_close(max_pool2d_backward(ctx, dy, x, a), {1, 2, 0, 3, 4, 0, 0, 0, 0}));

  // Ties: a row of equal values, windows of width 2 stride 1: window 0 = {x0, x1} picks x0,
  // window 1 = {x1, x2} picks x1 (the first of its own window).
  Tensor flat = Tensor::from_values({5, 5, 5}, Shape{1, 1, 1, 3});
  Pool2dArgs row{1, 2, 1, 1, 0, 0, false, true};
  CHECK(all_close(max_pool2d(ctx, flat, row), {5, 5}));
  CHECK(all_close(max_pool2d_backward(ctx, Tensor::from_values({1, 10}, Shape{1, 1, 1, 2}), flat, row), {1, 10, 0}));

  // Ceil mode: 1..9 on 3x3, k2 s2 -> 2x2; the last row/column windows hold one row/column of x:
  // {1,2,4,5} -> 5, {3,6} -> 6, {7,8} -> 8, {9} -> 9.
  Tensor y = iota(Shape{1, 1, 3, 3});
  CHECK(all_close(max_pool2d(ctx, y, Pool2dArgs::make(2, 2, 0, true)), {5, 6, 8, 9}));
  CHECK(all_close(max_pool2d(ctx, y, Pool2dArgs::make(2, 2, 0, false)), {5}));

  // A NaN propagates to every window that holds it (as in PyTorch), and only to those.
  Tensor withnan = Tensor::from_values({1, std::nan(""), 3, 4, 5, 6}, Shape{1, 1, 1, 6});
  std::vector<double> mv = max_pool2d(ctx, withnan, Pool2dArgs{1, 2, 1, 2, 0, 0, false, true}).values();
  REQUIRE(mv.size() == 3);
  CHECK(std::isnan(mv[0]));
  CHECK(mv[1] == 4);
  CHECK(mv[2] == 6);

  // Planes are independent: a second channel and sample.
  Tensor x2 = iota(Shape{2, 2, 2, 2});
  CHECK(all_close(max_pool2d(ctx, x2, Pool2dArgs::make(2, 2)), {4, 8, 12, 16}));
}

TEST_CASE("avg_pool2d: count_include_pad and the ceil-mode divisor, forward and backward") {
  Ctx ctx;
  // x = [[1,2],[3,4]], k2 s1 p1 -> 3x3 windows starting at (i-1, j-1).
  // With the padding counted every divisor is 4: {1}/4, {1,2}/4, {2}/4, {1,3}/4, 10/4, {2,4}/4, ...
  Tensor x = iota(Shape{1, 1, 2, 2});
  Pool2dArgs inc = Pool2dArgs::make(2, 1, 1);
  Pool2dArgs exc = inc;
  exc.count_include_pad = false;
  CHECK(all_close(avg_pool2d(ctx, x, inc), {0.25, 0.75, 0.5, 1, 2.5, 1.5, 0.75, 1.75, 1}));
  // Without it the divisor counts input pixels only: 1/1, 3/2, 2/1, 4/2, 10/4, 6/2, 3/1, 7/2, 4/1.
  CHECK(all_close(avg_pool2d(ctx, x, exc), {1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4}));
  // Backward of ones: every pixel is in 4 windows; with padding counted each gives 1/4 -> 1.
  // Without: pixel (0,0) is in windows of 1, 2, 2, 4 input pixels: 1 + 1/2 + 1/2 + 1/4 = 2.25,
  // and by symmetry so is every pixel.
  Tensor ones = Tensor::from_values(std::vector<double>(9, 1.0), Shape{1, 1, 3, 3});
  CHECK(all_close(avg_pool2d_backward(ctx, ones, x.shape(), inc), {1, 1, 1, 1}));
  CHECK(all_close(avg_pool2d_backward(ctx, ones, x.shape(), exc), {2.25, 2.25, 2.25, 2.25}));

  // Ceil mode, PyTorch's divisor: x = 1..6 in one row, kernel 1x3, stride 1x2, pad 0x1, ceil:
  // width ceil((6 + 2 - 3)/2) + 1 = 4, windows [-1,2) [1,4) [3,6) [5,8). The last window is
  // counted only up to W + pad = 7, so with the padding counted its divisor is 2, not 3:
  //   counted:  (0+1+2)/3 = 1, 9/3 = 3, 15/3 = 5, (6+0)/2 = 3
  //   excluded: 3/2 = 1.5, 3, 5, 6/1 = 6
  Tensor r = iota(Shape{1, 1, 1, 6});
  Pool2dArgs ceil_inc{1, 3, 1, 2, 0, 1, true, true};
  Pool2dArgs ceil_exc{1, 3, 1, 2, 0, 1, true, false};
  CHECK(all_close(avg_pool2d(ctx, r, ceil_inc), {1, 3, 5, 3}));
  CHECK(all_close(avg_pool2d(ctx, r, ceil_exc), {1.5, 3, 5, 6}));
  // The same along H.
  Tensor col = r.reshape(Shape{1, 1, 6, 1});
  CHECK(all_close(avg_pool2d(ctx, col, Pool2dArgs{3, 1, 2, 1, 1, 0, true, true}), {1, 3, 5, 3}));
  CHECK(all_close(avg_pool2d(ctx, col, Pool2dArgs{3, 1, 2, 1, 1, 0, true, false}), {1.5, 3, 5, 6}));
  // Backward of dy = {1,2,3,4} with the padding counted: x0 gets 1/3; x1 1/3 + 2/3; x2 2/3;
  // x3 2/3 + 3/3; x4 3/3; x5 3/3 + 4/2.
  Tensor dy = Tensor::from_values({1, 2, 3, 4}, Shape{1, 1, 1, 4});
  CHECK(all_close(avg_pool2d_backward(ctx, dy, r.shape(), ceil_inc), {1.0 / 3, 1, 2.0 / 3, 5.0 / 3, 1, 3}));
}

TEST_CASE("avg_pool2d with a 1x1 window picks x[::s, ::s] and gives each dy to its one element") {
  Ctx ctx;
  // x = 1..20 as 4 rows of 5, stride 2: rows 0, 2 and columns 0, 2, 4 -> 1, 3, 5, 11, 13, 15.
  Tensor x = iota(Shape{1, 1, 4, 5});
  const Pool2dArgs s2 = Pool2dArgs::make(1, 2);
  CHECK(all_close(avg_pool2d(ctx, x, s2), {1, 3, 5, 11, 13, 15}));
  Tensor dy = Tensor::from_values({1, 2, 3, 4, 5, 6}, Shape{1, 1, 2, 3});
  CHECK(all_close(avg_pool2d_backward(ctx, dy, x.shape(), s2),
                  {1, 0, 2, 0, 3, 0, 0, 0, 0, 0, 4, 0, 5, 0, 6, 0, 0, 0, 0, 0}));
  // Ceil mode with stride 3 over 5 columns: windows start at 0 and 3 (PyTorch drops a window that would
  // start past the input), rows 0 and 3.
  CHECK(all_close(avg_pool2d(ctx, x, Pool2dArgs::make(1, 3, 0, true)), {1, 4, 16, 19}));
}

TEST_CASE("global_avg_pool: plane means and the even spread back") {
  Ctx ctx;
  // Two planes of 3: (1+2+3)/3 = 2, (4+5+6)/3 = 5. Backward spreads dy/3.
  Tensor x = iota(Shape{1, 2, 1, 3});
  Tensor y = global_avg_pool(ctx, x);
  CHECK(y.shape() == Shape{1, 2, 1, 1});
  CHECK(all_close(y, {2, 5}));
  CHECK(all_close(global_avg_pool_backward(ctx, Tensor::from_values({3, 6}, Shape{1, 2, 1, 1}), x.shape()),
                  {1, 1, 1, 2, 2, 2}));
}

TEST_CASE("pooling: argument errors") {
  Ctx ctx;
  Tensor x = iota(Shape{1, 1, 4, 4});
  CHECK_THROWS_WITH_AS(max_pool2d(ctx, x, Pool2dArgs::make(0, 1)),
                       doctest::Contains("max_pool2d: kernel must be positive, got 0x0"), Error);
  CHECK_THROWS_WITH_AS(avg_pool2d(ctx, x, Pool2dArgs::make(2, 0)),
                       doctest::Contains("avg_pool2d: stride must be positive"), Error);
  CHECK_THROWS_WITH_AS(max_pool2d(ctx, x, Pool2dArgs::make(3, 1, 2)),
                       doctest::Contains("max_pool2d: padding 2x2 must be at most half the kernel 3x3"), Error);
  CHECK_THROWS_WITH_AS(max_pool2d(ctx, x, Pool2dArgs::make(5, 1)),
                       doctest::Contains("max_pool2d: input [1,1,4,4] with kernel 5x5"), Error);
  CHECK_THROWS_WITH_AS(pool2d_out_shape(Shape{1, 4, 4}, Pool2dArgs::make(2, 2)),
                       doctest::Contains("pool2d_out_shape: x must be [N,C,H,W], got [1,4,4]"), Error);
  CHECK_THROWS_WITH_AS(max_pool2d(ctx, x.reshape(Shape{4, 4}), Pool2dArgs::make(2, 2)),
                       doctest::Contains("max_pool2d: x must have 4 dimensions"), Error);
  CHECK_THROWS_WITH_AS(avg_pool2d(ctx, Tensor::from_values({1, 2, 3, 4}, Shape{1, 1, 2, 2}, DType::I32),
                                  Pool2dArgs::make(2, 2)),
                       doctest::Contains("avg_pool2d: tensor i32[1,1,2,2]@cpu has an unsupported dtype"), Error);
  Tensor dy = iota(Shape{1, 1, 3, 3});
  CHECK_THROWS_WITH_AS(max_pool2d_backward(ctx, dy, x, Pool2dArgs::make(2, 2)),
                       doctest::Contains("max_pool2d_backward: dy has shape [1,1,3,3], expected [1,1,2,2]"), Error);
  CHECK_THROWS_WITH_AS(max_pool2d_backward(ctx, dy.to(DType::F64), x, Pool2dArgs::make(2, 1)),
                       doctest::Contains("max_pool2d_backward: mixed dtypes"), Error);
  CHECK_THROWS_WITH_AS(avg_pool2d_backward(ctx, dy, x.shape(), Pool2dArgs::make(2, 2)),
                       doctest::Contains("avg_pool2d_backward: dy has shape [1,1,3,3], expected [1,1,2,2]"), Error);
  CHECK_THROWS_WITH_AS(global_avg_pool_backward(ctx, dy, x.shape()),
                       doctest::Contains("global_avg_pool_backward: dy has shape [1,1,3,3], expected [1,1,1,1]"), Error);
  CHECK_THROWS_WITH_AS(global_avg_pool(ctx, Tensor::empty(Shape{1, 1, 0, 3})),
                       doctest::Contains("global_avg_pool: x must have H, W >= 1"), Error);
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(global_avg_pool(gpu, x), doctest::Contains("global_avg_pool: tensor f32[1,1,4,4]@cpu is not on"),
                       Error);
}
