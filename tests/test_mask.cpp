// Hand-worked cases and argument errors for the abs-ratio mask head and blend; plus agreement
// with naive loops on a shape large enough for several pixel chunks and threads.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "engine/ops.h"
#include "tests/op_check.h"

using namespace sal;
using sal::test::all_close;

TEST_CASE("abs_ratio: hand-worked values and gradients") {
  Ctx ctx;
  // Pixels (c0, c1) = (3,-1), (0,0), (-2,2), one sample, a 1x3 image.
  Tensor c = Tensor::from_values({3, 0, -2, -1, 0, 2}, Shape{1, 2, 1, 3});
  // eps = 0: 3/(3+1) = 0.75; the (0,0) pixel is 0/0 (documented); 2/(2+2) = 0.5.
  Tensor m0 = abs_ratio(ctx, c, 0);
  CHECK(m0.shape() == Shape{1, 1, 1, 3});
  std::vector<double> v0 = m0.values();
  CHECK(v0[0] == doctest::Approx(0.75));
  CHECK(std::isnan(v0[1]));
  CHECK(v0[2] == doctest::Approx(0.5));
  // eps = 1: 3/5 = 0.6, 0/1 = 0, 2/5 = 0.4.
  CHECK(all_close(abs_ratio(ctx, c, 1), {0.6, 0, 0.4}));
  // Backward with dm = 1, eps = 1, s = |c0| + |c1| + 1:
  //   dc0 = (|c1| + 1)/s^2 * sign(c0), dc1 = -|c0|/s^2 * sign(c1).
  //   (3,-1): s = 5: dc0 = 2/25 = 0.08, dc1 = -3/25 * -1 = 0.12.
  //   (0,0):  sign(0) = 0: both 0.
  //   (-2,2): s = 5: dc0 = 3/25 * -1 = -0.12, dc1 = -2/25 = -0.08.
  Tensor dc = abs_ratio_backward(ctx, Tensor::from_values({1, 1, 1}, Shape{1, 1, 1, 3}), c, 1);
  CHECK(dc.shape() == c.shape());
  CHECK(all_close(dc, {0.08, 0, -0.12, 0.12, 0, -0.08}));
}

TEST_CASE("blend: hand-worked values and gradients") {
  Ctx ctx;
  // x = {1,2 | 3,4}, a = {10,20 | 30,40} (two channels of a 1x2 image), m = {0.25, 1}.
  Tensor x = Tensor::from_values({1, 2, 3, 4}, Shape{1, 2, 1, 2});
  Tensor a = Tensor::from_values({10, 20, 30, 40}, Shape{1, 2, 1, 2});
  Tensor m = Tensor::from_values({0.25, 1}, Shape{1, 1, 1, 2});
  // y = x m + a (1-m): 0.25 + 7.5 = 7.75; 2; 0.75 + 22.5 = 23.25; 4.
  CHECK(all_close(blend(ctx, x, a, m), {7.75, 2, 23.25, 4}));
  // dy = {1,2 | 3,4}: dm = sum_c dy (x-a) = {1*(-9) + 3*(-27), 2*(-18) + 4*(-36)} = {-90, -180};
  // dx = dy m = {0.25, 2, 0.75, 4}; da = dy (1-m) = {0.75, 0, 2.25, 0}.
  Tensor dy = Tensor::from_values({1, 2, 3, 4}, Shape{1, 2, 1, 2});
  BlendGrads g = blend_backward(ctx, dy, x, a, m, true, true);
  CHECK(g.dm.shape() == m.shape());
  CHECK(all_close(g.dm, {-90, -180}));
  CHECK(all_close(g.dx, {0.25, 2, 0.75, 4}));
  CHECK(all_close(g.da, {0.75, 0, 2.25, 0}));
  BlendGrads only_dm = blend_backward(ctx, dy, x, a, m, false, false);
  CHECK(all_close(only_dm.dm, {-90, -180}));
  CHECK_FALSE(only_dm.dx.defined());
  CHECK_FALSE(only_dm.da.defined());
}

TEST_CASE("abs_ratio / blend agree with naive loops on a large batch (chunks, threads)") {
  Ctx ctx;
  const int64_t N = 2, C = 3, H = 64, W = 100, HW = H * W;
  std::mt19937_64 rng(11);
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor c = Tensor::from_values(sal::test::uniform(Shape{N, 2, H, W}, rng), Shape{N, 2, H, W}, dt);
    Tensor x = Tensor::from_values(sal::test::uniform(Shape{N, C, H, W}, rng), Shape{N, C, H, W}, dt);
    Tensor a = Tensor::from_values(sal::test::uniform(Shape{N, C, H, W}, rng), Shape{N, C, H, W}, dt);
    Tensor dy = Tensor::from_values(sal::test::uniform(Shape{N, C, H, W}, rng), Shape{N, C, H, W}, dt);
    const std::vector<double> cv = c.values(), xv = x.values(), av = a.values(), gv = dy.values();
    const double eps = 1e-3, tol = dt == DType::F32 ? 1e-4 : 1e-12;

    Tensor m = abs_ratio(ctx, c, eps);
    const std::vector<double> mv = m.values();
    std::vector<double> want_m(static_cast<size_t>(N * HW));
    for (int64_t n = 0; n < N; ++n)
      for (int64_t p = 0; p < HW; ++p) {
        const double u = std::abs(cv[static_cast<size_t>(n * 2 * HW + p)]);
        const double v = std::abs(cv[static_cast<size_t>(n * 2 * HW + HW + p)]);
        want_m[static_cast<size_t>(n * HW + p)] = u / (u + v + eps);
      }
    CHECK(all_close(m, want_m, tol));

    std::vector<double> want_y(xv.size()), want_dx(xv.size()), want_da(xv.size()), want_dm(mv.size(), 0.0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t ch = 0; ch < C; ++ch)
        for (int64_t p = 0; p < HW; ++p) {
          const size_t i = static_cast<size_t>((n * C + ch) * HW + p), k = static_cast<size_t>(n * HW + p);
          want_y[i] = xv[i] * mv[k] + av[i] * (1 - mv[k]);
          want_dx[i] = gv[i] * mv[k];
          want_da[i] = gv[i] * (1 - mv[k]);
          want_dm[k] += gv[i] * (xv[i] - av[i]);
        }
    CHECK(all_close(blend(ctx, x, a, m), want_y, tol));
    BlendGrads g = blend_backward(ctx, dy, x, a, m, true, true);
    CHECK(all_close(g.dx, want_dx, tol));
    CHECK(all_close(g.da, want_da, tol));
    CHECK(all_close(g.dm, want_dm, tol));
  }
}

TEST_CASE("abs_ratio / blend: argument errors") {
  Ctx ctx;
  Tensor c = Tensor::zeros(Shape{1, 2, 1, 3});
  CHECK_THROWS_WITH_AS(abs_ratio(ctx, Tensor::zeros(Shape{1, 3, 1, 3}), 1e-3),
                       doctest::Contains("abs_ratio: c must have 2 channels (c0, c1), got f32[1,3,1,3]@cpu"), Error);
  CHECK_THROWS_WITH_AS(abs_ratio(ctx, Tensor::zeros(Shape{2, 1, 3}), 1e-3),
                       doctest::Contains("abs_ratio: c must have 4 dimensions"), Error);
  CHECK_THROWS_WITH_AS(abs_ratio(ctx, c, -1e-3), doctest::Contains("abs_ratio: eps must be finite and >= 0"), Error);
  CHECK_THROWS_WITH_AS(abs_ratio_backward(ctx, Tensor::zeros(Shape{1, 2, 1, 3}), c, 1e-3),
                       doctest::Contains("abs_ratio_backward: dm has shape [1,2,1,3], expected [1,1,1,3]"), Error);
  CHECK_THROWS_WITH_AS(abs_ratio_backward(ctx, Tensor::zeros(Shape{1, 1, 1, 3}, DType::F64), c, 1e-3),
                       doctest::Contains("abs_ratio_backward: mixed dtypes"), Error);

  Tensor x = Tensor::zeros(Shape{2, 3, 4, 4});
  Tensor m = Tensor::zeros(Shape{2, 1, 4, 4});
  CHECK_THROWS_WITH_AS(blend(ctx, x, Tensor::zeros(Shape{2, 3, 4, 5}), m),
                       doctest::Contains("blend: a has shape [2,3,4,5], expected [2,3,4,4]"), Error);
  CHECK_THROWS_WITH_AS(blend(ctx, x, x, Tensor::zeros(Shape{2, 3, 4, 4})),
                       doctest::Contains("blend: m has shape [2,3,4,4], expected [2,1,4,4]"), Error);
  CHECK_THROWS_WITH_AS(blend(ctx, Tensor::zeros(Shape{3, 4, 4}), x, m), doctest::Contains("blend: x must have 4 dimensions"),
                       Error);
  CHECK_THROWS_WITH_AS(blend_backward(ctx, Tensor::zeros(Shape{2, 3, 4, 3}), x, x, m, true, true),
                       doctest::Contains("blend_backward: dy has shape [2,3,4,3], expected [2,3,4,4]"), Error);
  CHECK_THROWS_WITH_AS(blend(ctx, x, x, m.to(DType::F64)), doctest::Contains("blend: mixed dtypes"), Error);
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(blend(gpu, x, x, m), doctest::Contains("blend: tensor f32[2,3,4,4]@cpu is not on the context's"),
                       Error);
  CHECK_THROWS_WITH_AS(abs_ratio(gpu, c, 1e-3), doctest::Contains("abs_ratio: tensor f32[1,2,1,3]@cpu is not on"), Error);
}

TEST_CASE("abs_ratio_upsample: hand-worked values and gradient, equal to the composition") {
  Ctx ctx;
  // One sample, a 1x2 image: (c0, c1) = (3, 1) and (-1, 1): m = (0.75, 0.5) with eps = 0.
  Tensor c = Tensor::from_values({3, -1, 1, 1}, Shape{1, 2, 1, 2});
  // 2 -> 4 columns (scale 0.5): src = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (the last column
  // clamps to i0 = i1 = 1): 0.75, 0.75*0.75 + 0.25*0.5, 0.25*0.75 + 0.75*0.5, 0.5.
  Tensor y = abs_ratio_upsample(ctx, c, 0, 1, 4);
  CHECK(y.shape() == Shape{1, 1, 1, 4});
  CHECK(all_close(y, {0.75, 0.6875, 0.5625, 0.5}));
  // dy = 1 everywhere: each input column collects weights 1 + 0.75 + 0.25 = 2 and
  // 0.25 + 0.75 + 1 = 2. Then the abs-ratio backward with eps = 0:
  //   (3, 1):  s = 4: dc0 = 2 * 1/16 = 0.125, dc1 = -2 * 3/16 = -0.375;
  //   (-1, 1): s = 2: dc0 = 2 * 1/4 * -1 = -0.5, dc1 = -2 * 1/4 = -0.5.
  Tensor dc = abs_ratio_upsample_backward(ctx, Tensor::from_values({1, 1, 1, 1}, Shape{1, 1, 1, 4}), c, 0);
  CHECK(dc.shape() == c.shape());
  CHECK(all_close(dc, {0.125, -0.5, -0.375, -0.5}));

  // A larger case against resize_bilinear(abs_ratio(c)) and its adjoint, both dtypes, with an arena.
  Arena arena(Device::CPU);
  Ctx actx(Device::CPU, &arena);
  std::mt19937_64 rng(3);
  for (DType dt : {DType::F32, DType::F64}) {
    const Shape cs{2, 2, 7, 9};
    Tensor cc = Tensor::from_values(sal::test::away_from_zero(cs, rng, 0.1), cs, dt);
    Tensor fused = abs_ratio_upsample(actx, cc, 1e-3, 28, 20);
    Tensor composed = resize_bilinear(actx, abs_ratio(actx, cc, 1e-3), 28, 20);
    CHECK(fused.shape() == Shape{2, 1, 28, 20});
    CHECK(sal::test::max_rel_diff(fused, composed) == 0);
    Tensor g = Tensor::from_values(sal::test::uniform(fused.shape(), rng), fused.shape(), dt);
    Tensor dfused = abs_ratio_upsample_backward(actx, g, cc, 1e-3);
    Tensor dcomposed = abs_ratio_backward(actx, resize_bilinear_backward(actx, g, Shape{2, 1, 7, 9}), cc, 1e-3);
    CHECK(sal::test::max_rel_diff(dfused, dcomposed) == 0);
  }
  CHECK(arena.used() > 0);
}

TEST_CASE("abs_ratio_upsample: argument errors") {
  Ctx ctx;
  Tensor c = Tensor::zeros(Shape{2, 2, 3, 3});
  CHECK_THROWS_WITH_AS(abs_ratio_upsample(ctx, Tensor::zeros(Shape{2, 3, 3, 3}), 1e-3, 8, 8),
                       doctest::Contains("abs_ratio_upsample: c must have 2 channels (c0, c1), got f32[2,3,3,3]@cpu"),
                       Error);
  CHECK_THROWS_WITH_AS(abs_ratio_upsample(ctx, Tensor::zeros(Shape{2, 2, 9}), 1e-3, 8, 8),
                       doctest::Contains("abs_ratio_upsample: c must have 4 dimensions"), Error);
  CHECK_THROWS_WITH_AS(abs_ratio_upsample(ctx, c, -1, 8, 8),
                       doctest::Contains("abs_ratio_upsample: eps must be finite and >= 0"), Error);
  CHECK_THROWS_WITH_AS(abs_ratio_upsample(ctx, c, 1e-3, 0, 8),
                       doctest::Contains("abs_ratio_upsample: the output size must be at least 1x1 (and below 2^31), got 0x8"),
                       Error);
  CHECK_THROWS_WITH_AS(abs_ratio_upsample(ctx, Tensor::zeros(Shape{2, 2, 0, 3}), 1e-3, 8, 8),
                       doctest::Contains("abs_ratio_upsample: c's H x W must be at least 1x1"), Error);
  CHECK_THROWS_WITH_AS(abs_ratio_upsample_backward(ctx, Tensor::zeros(Shape{2, 2, 8, 8}), c, 1e-3),
                       doctest::Contains("abs_ratio_upsample_backward: dm f32[2,2,8,8]@cpu must be [N,1,P,Q] with the N = 2"),
                       Error);
  CHECK_THROWS_WITH_AS(abs_ratio_upsample_backward(ctx, Tensor::zeros(Shape{3, 1, 8, 8}), c, 1e-3),
                       doctest::Contains("abs_ratio_upsample_backward: dm f32[3,1,8,8]@cpu must be [N,1,P,Q]"), Error);
  CHECK_THROWS_WITH_AS(abs_ratio_upsample_backward(ctx, Tensor::zeros(Shape{2, 1, 8}), c, 1e-3),
                       doctest::Contains("abs_ratio_upsample_backward: dm must have 4 dimensions"), Error);
  CHECK_THROWS_WITH_AS(abs_ratio_upsample_backward(ctx, Tensor::zeros(Shape{2, 1, 0, 8}), c, 1e-3),
                       doctest::Contains("abs_ratio_upsample_backward: dm's H x W must be at least 1x1"), Error);
  CHECK_THROWS_WITH_AS(abs_ratio_upsample_backward(ctx, Tensor::zeros(Shape{2, 1, 8, 8}, DType::F64), c, 1e-3),
                       doctest::Contains("abs_ratio_upsample_backward: mixed dtypes"), Error);
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(abs_ratio_upsample(gpu, c, 1e-3, 8, 8),
                       doctest::Contains("abs_ratio_upsample: tensor f32[2,2,3,3]@cpu is not on the context's device"),
                       Error);
}
