// Hand-worked cases and argument errors for bilinear resizing and pixel (un)shuffle.
#include <doctest/doctest.h>

#include <array>
#include <numeric>
#include <random>

#include "engine/ops.h"
#include "tests/op_check.h"

using namespace sal;
using sal::test::all_close;

namespace {
double dot(const Tensor& a, const Tensor& b) {
  std::vector<double> av = a.values(), bv = b.values();
  return std::inner_product(av.begin(), av.end(), bv.begin(), 0.0);
}
}  // namespace

TEST_CASE("resize_bilinear: 2x2 -> 4x4 by PyTorch's align_corners=false formula") {
  Ctx ctx;
  // Along each axis in = 2, out = 4, scale 0.5, src = 0.5 * (dst + 0.5) - 0.5:
  //   dst 0: -0.25 -> clamped to 0: x0
  //   dst 1:  0.25: 0.75 x0 + 0.25 x1
  //   dst 2:  0.75: 0.25 x0 + 0.75 x1
  //   dst 3:  1.25: i0 = 1 = in-1, so i1 = 1 too: x1
  // x = [[0,1],[2,3]] is f(h,w) = 2h + w at the pixels; rows become [0, .25, .75, 1] and
  // [2, 2.25, 2.75, 3], then mixed the same way down the columns.
  Tensor x = Tensor::from_values({0, 1, 2, 3}, Shape{1, 1, 2, 2});
  Tensor y = resize_bilinear(ctx, x, 4, 4);
  CHECK(y.shape() == Shape{1, 1, 4, 4});
  CHECK(all_close(y, {0, 0.25, 0.75, 1,  //
                      0.5, 0.75, 1.25, 1.5,  //
                      1.5, 1.75, 2.25, 2.5,  //
                      2, 2.25, 2.75, 3}));
  // An impulse gives the outer product of the weights of x0: {1, .75, .25, 0}.
  Tensor e = Tensor::from_values({1, 0, 0, 0}, Shape{1, 1, 2, 2});
  std::vector<double> prof = {1, 0.75, 0.25, 0}, want;
  for (double a : prof)
    for (double b : prof) want.push_back(a * b);
  CHECK(all_close(resize_bilinear(ctx, e, 4, 4), want));
}

TEST_CASE("resize_bilinear: downsampling and non-integer factors, no antialiasing") {
  Ctx ctx;
  // 4 -> 2: scale 2, src = 2 * (dst + 0.5) - 0.5 = 0.5, 2.5: averages of pairs {1,2}, {3,4}.
  CHECK(all_close(resize_bilinear(ctx, Tensor::from_values({1, 2, 3, 4}, Shape{1, 1, 1, 4}), 1, 2), {1.5, 3.5}));
  // 8 -> 2: scale 4, src = 1.5, 5.5: only x1, x2 and x5, x6 contribute (no antialias filter).
  Tensor r8 = Tensor::from_values({0, 1, 2, 3, 4, 5, 6, 7}, Shape{1, 1, 8, 1});
  CHECK(all_close(resize_bilinear(ctx, r8, 2, 1), {1.5, 5.5}));
  // 3 -> 2: scale 1.5, src = 0.25, 1.75: 0.75*0 + 0.25*4 = 1, 0.25*4 + 0.75*8 = 7.
  CHECK(all_close(resize_bilinear(ctx, Tensor::from_values({0, 4, 8}, Shape{1, 1, 1, 3}), 1, 2), {1, 7}));
  // 5 -> 3: scale 5/3, src = 1/3, 2, 11/3 on the ramp 0,3,..,12: 1, 6, 11.
  CHECK(all_close(resize_bilinear(ctx, Tensor::from_values({0, 3, 6, 9, 12}, Shape{1, 1, 1, 5}), 1, 3), {1, 6, 11},
                  1e-5));
  // 1x1 -> 2x3: every output is the single pixel.
  CHECK(all_close(resize_bilinear(ctx, Tensor::from_values({7}, Shape{1, 1, 1, 1}), 2, 3), {7, 7, 7, 7, 7, 7}));
  // Same size is the identity (src = dst exactly).
  Tensor id = Tensor::from_values({1, -2, 3, 4, 5, -6}, Shape{1, 2, 1, 3});
  CHECK(all_close(resize_bilinear(ctx, id, 1, 3), id.values()));
}

TEST_CASE("resize_bilinear_backward: the adjoint of the forward") {
  Ctx ctx;
  // 2 -> 4 along W with dy = {1,2,3,4}: x0 receives 1*1 + .75*2 + .25*3 = 3.25,
  // x1 receives .25*2 + .75*3 + 1*4 = 6.75.
  Tensor dy = Tensor::from_values({1, 2, 3, 4}, Shape{1, 1, 1, 4});
  CHECK(all_close(resize_bilinear_backward(ctx, dy, Shape{1, 1, 1, 2}), {3.25, 6.75}));
  // 2x2 -> 4x4 with dy = ones: each pixel's weights sum to 2 per axis: 4.
  Tensor ones = Tensor::from_values(std::vector<double>(16, 1.0), Shape{1, 1, 4, 4});
  CHECK(all_close(resize_bilinear_backward(ctx, ones, Shape{1, 1, 2, 2}), {4, 4, 4, 4}));
  // <resize(x), g> = <x, resize_backward(g)> for random data, up and down.
  std::mt19937_64 rng(3);
  for (auto [h, w, p, q] : {std::array<int64_t, 4>{5, 3, 8, 7}, std::array<int64_t, 4>{9, 6, 4, 2}}) {
    Tensor xr = Tensor::from_values(sal::test::uniform(Shape{2, 3, h, w}, rng), Shape{2, 3, h, w}, DType::F64);
    Tensor gr = Tensor::from_values(sal::test::uniform(Shape{2, 3, p, q}, rng), Shape{2, 3, p, q}, DType::F64);
    CHECK(dot(resize_bilinear(ctx, xr, p, q), gr) == doctest::Approx(dot(xr, resize_bilinear_backward(ctx, gr, xr.shape()))).epsilon(1e-12));
  }
}

TEST_CASE("pixel_shuffle / pixel_unshuffle: PyTorch channel ordering") {
  Ctx ctx;
  // x [1,8,1,2] with x[k,0,w] = 10k + w, r = 2 -> [1,2,2,4]:
  // out[c, i, w*2 + j] = x[c*4 + i*2 + j, 0, w].
  //   c0 row 0 (i=0): k = 0,1 interleaved over w: 0, 10, 1, 11; row 1 (i=1): k = 2,3: 20, 30, 21, 31
  //   c1 row 0: k = 4,5: 40, 50, 41, 51;                     row 1: k = 6,7: 60, 70, 61, 71
  std::vector<double> v;
  for (int k = 0; k < 8; ++k)
    for (int w = 0; w < 2; ++w) v.push_back(10 * k + w);
  Tensor x = Tensor::from_values(v, Shape{1, 8, 1, 2});
  Tensor y = pixel_shuffle(ctx, x, 2);
  CHECK(y.shape() == Shape{1, 2, 2, 4});
  CHECK(all_close(y, {0, 10, 1, 11, 20, 30, 21, 31, 40, 50, 41, 51, 60, 70, 61, 71}));
  // Unshuffle inverts it exactly.
  Tensor back = pixel_unshuffle(ctx, y, 2);
  CHECK(back.shape() == x.shape());
  CHECK(all_close(back, v));
  // [1,4,1,1] -> [1,1,2,2]: channels become the 2x2 block in row-major order.
  CHECK(all_close(pixel_shuffle(ctx, Tensor::from_values({1, 2, 3, 4}, Shape{1, 4, 1, 1}), 2), {1, 2, 3, 4}));
  // Unshuffle of a 3x3 image with r = 3: channel i*3 + j holds pixel (i, j).
  Tensor img = Tensor::from_values({1, 2, 3, 4, 5, 6, 7, 8, 9}, Shape{1, 1, 3, 3});
  Tensor u = pixel_unshuffle(ctx, img, 3);
  CHECK(u.shape() == Shape{1, 9, 1, 1});
  CHECK(all_close(u, {1, 2, 3, 4, 5, 6, 7, 8, 9}));
  // r = 1 is the identity.
  CHECK(all_close(pixel_shuffle(ctx, x, 1), v));
}

TEST_CASE("resampling: argument errors") {
  Ctx ctx;
  Tensor x = Tensor::from_values(std::vector<double>(12, 1.0), Shape{1, 3, 2, 2});
  CHECK_THROWS_WITH_AS(resize_bilinear(ctx, x, 0, 4),
                       doctest::Contains("resize_bilinear: the output size must be at least 1x1"), Error);
  CHECK_THROWS_WITH_AS(resize_bilinear(ctx, x.reshape(Shape{3, 4}), 2, 2),
                       doctest::Contains("resize_bilinear: x must have 4 dimensions"), Error);
  CHECK_THROWS_WITH_AS(resize_bilinear(ctx, Tensor::empty(Shape{1, 1, 0, 2}), 2, 2),
                       doctest::Contains("resize_bilinear: the input's H x W must be at least 1x1"), Error);
  CHECK_THROWS_WITH_AS(resize_bilinear_backward(ctx, x, Shape{1, 2, 2, 2}),
                       doctest::Contains("resize_bilinear_backward: dy f32[1,3,2,2]@cpu must have the batch and channels"),
                       Error);
  CHECK_THROWS_WITH_AS(resize_bilinear_backward(ctx, x, Shape{1, 3, 2}),
                       doctest::Contains("resize_bilinear_backward: x_shape must be [N,C,H,W], got [1,3,2]"), Error);
  CHECK_THROWS_WITH_AS(pixel_shuffle(ctx, x, 2),
                       doctest::Contains("pixel_shuffle: channels of x f32[1,3,2,2]@cpu must be divisible by r*r = 4"),
                       Error);
  CHECK_THROWS_WITH_AS(pixel_shuffle(ctx, x, 0), doctest::Contains("pixel_shuffle: upscale factor r must be >= 1, got 0"),
                       Error);
  CHECK_THROWS_WITH_AS(pixel_unshuffle(ctx, x, 3),
                       doctest::Contains("pixel_unshuffle: H and W of x f32[1,3,2,2]@cpu must be divisible by r = 3"),
                       Error);
  CHECK_THROWS_WITH_AS(pixel_unshuffle(ctx, Tensor::from_labels({1, 2, 3, 4}).reshape(Shape{1, 1, 2, 2}), 2),
                       doctest::Contains("pixel_unshuffle: tensor i32[1,1,2,2]@cpu has an unsupported dtype"), Error);
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(resize_bilinear(gpu, x, 4, 4), doctest::Contains("resize_bilinear: tensor f32[1,3,2,2]@cpu is not on"),
                       Error);
}
