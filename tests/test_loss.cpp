// Hand-worked cases and argument errors for softmax, log-softmax, cross-entropy, total
// variation and area losses; plus agreement of tv/area with naive loops on a large mask.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "engine/ops.h"
#include "tests/op_check.h"

using namespace sal;
using sal::test::all_close;

TEST_CASE("softmax / log_softmax: hand-worked values, stability, gradients") {
  Ctx ctx;
  const double l3 = std::log(3.0);
  // Row 0: (0, log 3) -> (1/4, 3/4). Row 1: the same shifted by 1000 (exp would overflow
  // without subtracting the row maximum).
  Tensor z = Tensor::from_values({0, l3, 1000, 1000 + l3}, Shape{2, 2}, DType::F64);
  Tensor p = softmax(ctx, z);
  CHECK(all_close(p, {0.25, 0.75, 0.25, 0.75}, 1e-12));
  CHECK(all_close(log_softmax(ctx, z), {std::log(0.25), std::log(0.75), std::log(0.25), std::log(0.75)}, 1e-12));
  // Equal logits: 1/K each, in f32 too.
  CHECK(all_close(softmax(ctx, Tensor::from_values({7, 7, 7, 7}, Shape{1, 4})), {0.25, 0.25, 0.25, 0.25}));
  // softmax_backward: dx = y (dy - <dy, y>); y = (1/4, 3/4), dy = (1, 0): <dy,y> = 1/4,
  // dx = (1/4 * 3/4, 3/4 * -1/4) = (0.1875, -0.1875).
  Tensor y = Tensor::from_values({0.25, 0.75}, Shape{1, 2});
  CHECK(all_close(softmax_backward(ctx, Tensor::from_values({1, 0}, Shape{1, 2}), y), {0.1875, -0.1875}));
  // log_softmax_backward: dx = dy - p sum(dy); dy = (1, 1): 1 - 2/4, 1 - 2*3/4 = (0.5, -0.5).
  Tensor ly = Tensor::from_values({std::log(0.25), std::log(0.75)}, Shape{1, 2});
  CHECK(all_close(log_softmax_backward(ctx, Tensor::from_values({1, 1}, Shape{1, 2}), ly), {0.5, -0.5}));
}

TEST_CASE("cross_entropy: hand-worked values and gradient") {
  Ctx ctx;
  const double l3 = std::log(3.0);
  // Row 0: equal logits over K = 4, label 2: -log(1/4) = log 4.
  // Row 1: (0, log 3, 0, 0): p = (1,3,1,1)/6, label 1: -log(1/2) = log 2.
  // Row 2: (1000, 0, 0, 0), label 1: 1000 + log(1 + 3 e^-1000) = 1000 (no overflow).
  Tensor z = Tensor::from_values({5, 5, 5, 5, 0, l3, 0, 0, 1000, 0, 0, 0}, Shape{3, 4}, DType::F64);
  Tensor labels = Tensor::from_labels({2, 1, 1});
  Tensor loss = cross_entropy(ctx, z, labels);
  CHECK(loss.shape() == Shape{3});
  CHECK(all_close(loss, {std::log(4.0), std::log(2.0), 1000}, 1e-9));
  // Backward: (softmax - onehot) * dloss[n]. Row 1 with dloss 2: p = (1/6, 1/2, 1/6, 1/6),
  // minus onehot(1) = (1/6, -1/2, 1/6, 1/6), times 2 = (1/3, -1, 1/3, 1/3).
  // Row 0 with dloss 1: (1/4, 1/4, -3/4, 1/4). Row 2 with dloss 0: zeros.
  Tensor d = cross_entropy_backward(ctx, Tensor::from_values({1, 2, 0}, Shape{3}, DType::F64), z, labels);
  CHECK(all_close(d, {0.25, 0.25, -0.75, 0.25, 1.0 / 3, -1, 1.0 / 3, 1.0 / 3, 0, 0, 0, 0}, 1e-12));
}

TEST_CASE("tv_loss: hand-worked values and gradient") {
  Ctx ctx;
  // [[0,1],[1,0]]: vertical (1-0)^2 + (0-1)^2 = 2, horizontal the same: TV = 4. Every pixel is
  // on the ring: sum m^2 = 2, so border weight 0.5 adds 1.
  Tensor m = Tensor::from_values({0, 1, 1, 0}, Shape{1, 1, 2, 2});
  CHECK(all_close(tv_loss(ctx, m, 0), {4}));
  CHECK(all_close(tv_loss(ctx, m, 0.5), {5}));
  // d/dm of 4 + 0.5 sum m^2: at (0,1) (value 1, neighbours (0,0)=0 and (1,1)=0):
  //   2 (1-0) + 2 (1-0) + 0.5 * 2 * 1 = 5; at (0,0) (value 0, neighbours 1 and 1): -4.
  CHECK(all_close(tv_loss_backward(ctx, Tensor::from_values({1}, Shape{1}), m, 0.5), {-4, 5, 5, -4}));
  CHECK(all_close(tv_loss_backward(ctx, Tensor::from_values({2}, Shape{1}), m, 0.5), {-8, 10, 10, -8}));
  // Two 3x3 samples, border weight 0.5:
  //  - a single 1 in the centre: 4 differences of 1 = 4, the ring is all 0: loss 4.
  //  - all ones: no differences; the ring has 8 pixels (the centre is not on it, each corner
  //    counted once): 0.5 * 8 = 4.
  Tensor two = Tensor::from_values({0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1}, Shape{2, 1, 3, 3});
  CHECK(all_close(tv_loss(ctx, two, 0.5), {4, 4}));
  // The same from a context with an arena (the per-row partial sums come from it).
  Arena arena(Device::CPU);
  Ctx actx(Device::CPU, &arena);
  CHECK(all_close(tv_loss(actx, two, 0.5), {4, 4}));
  CHECK(all_close(area_loss(actx, two, 1, 0), {1.0 / 9, 1}));
  CHECK(arena.used() > 0);
  // A single row: the ring is every pixel. (1, 3): diff 4, ring 1 + 9 = 10, weight 0.1 -> 5.
  CHECK(all_close(tv_loss(ctx, Tensor::from_values({1, 3}, Shape{1, 1, 1, 2}), 0.1), {5}));
}

TEST_CASE("area_loss: hand-worked values and gradient") {
  Ctx ctx;
  Tensor m = Tensor::from_values({0.2, 0.95}, Shape{1, 1, 1, 2}, DType::F64);
  // Plain mean area: (0.2 + 0.95) / 2.
  CHECK(all_close(area_loss(ctx, m, 1, 0), {0.575}, 1e-12));
  // With eps = 0.05 and power 0.5: (0.25^0.5 + 1^0.5) / 2 = (0.5 + 1) / 2 = 0.75.
  CHECK(all_close(area_loss(ctx, m, 0.5, 0.05), {0.75}, 1e-12));
  // Backward: dloss / 2 * 0.5 * (m + eps)^-0.5 = 0.25 * (2, 1) = (0.5, 0.25).
  CHECK(all_close(area_loss_backward(ctx, Tensor::from_values({1}, Shape{1}, DType::F64), m, 0.5, 0.05), {0.5, 0.25},
                  1e-12));
  // power 1: the gradient is dloss / (H*W) everywhere.
  CHECK(all_close(area_loss_backward(ctx, Tensor::from_values({3}, Shape{1}, DType::F64), m, 1, 0), {1.5, 1.5}));
  // Integer powers take any sign: ((-1)^2 + 3^2) / 2 = 5.
  Tensor neg = Tensor::from_values({-1, 3}, Shape{1, 1, 1, 2});
  CHECK(all_close(area_loss(ctx, neg, 2, 0), {5}));
  // Two samples, released variant (power 0.3, eps 5e-4): each row its own mean.
  Tensor two = Tensor::from_values({0, 0, 1, 1}, Shape{2, 1, 1, 2}, DType::F64);
  CHECK(all_close(area_loss(ctx, two, 0.3, 5e-4), {std::pow(5e-4, 0.3), std::pow(1 + 5e-4, 0.3)}, 1e-12));
}

TEST_CASE("tv_loss / area_loss agree with naive loops on a large mask (threads)") {
  Ctx ctx;
  const int64_t N = 2, H = 100, W = 90;
  std::mt19937_64 rng(5);
  Tensor m = Tensor::from_values(sal::test::uniform(Shape{N, 1, H, W}, rng, 0, 1), Shape{N, 1, H, W}, DType::F64);
  Tensor g = Tensor::from_values({0.7, -1.3}, Shape{N}, DType::F64);
  const std::vector<double> v = m.values();
  auto at = [&](int64_t n, int64_t i, int64_t j) { return v[static_cast<size_t>((n * H + i) * W + j)]; };
  const double bw = 0.3, p = 0.3, eps = 5e-4;
  std::vector<double> tv(N, 0.0), area(N, 0.0), dtv(v.size()), darea(v.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        const double x = at(n, i, j);
        const bool ring = i == 0 || j == 0 || i == H - 1 || j == W - 1;
        if (i + 1 < H) tv[n] += (at(n, i + 1, j) - x) * (at(n, i + 1, j) - x);
        if (j + 1 < W) tv[n] += (at(n, i, j + 1) - x) * (at(n, i, j + 1) - x);
        if (ring) tv[n] += bw * x * x;
        area[n] += std::pow(x + eps, p) / (H * W);
        double s = ring ? bw * x : 0;
        if (i > 0) s += x - at(n, i - 1, j);
        if (i + 1 < H) s += x - at(n, i + 1, j);
        if (j > 0) s += x - at(n, i, j - 1);
        if (j + 1 < W) s += x - at(n, i, j + 1);
        const size_t k = static_cast<size_t>((n * H + i) * W + j);
        const double gn = n == 0 ? 0.7 : -1.3;
        dtv[k] = 2 * gn * s;
        darea[k] = gn / (H * W) * p * std::pow(x + eps, p - 1);
      }
  CHECK(all_close(tv_loss(ctx, m, bw), tv, 1e-9));
  CHECK(all_close(area_loss(ctx, m, p, eps), area, 1e-12));
  CHECK(all_close(tv_loss_backward(ctx, g, m, bw), dtv, 1e-12));
  CHECK(all_close(area_loss_backward(ctx, g, m, p, eps), darea, 1e-12));
  // f32 agrees to float precision.
  Tensor m32 = m.to(DType::F32), g32 = g.to(DType::F32);
  CHECK(all_close(tv_loss(ctx, m32, bw), tv, 1e-2));
  CHECK(all_close(area_loss(ctx, m32, p, eps), area, 1e-6));
  CHECK(sal::test::max_rel_diff(tv_loss_backward(ctx, g32, m32, bw), Tensor::from_values(dtv, m.shape())) < 1e-5);
}

TEST_CASE("softmax / cross_entropy: argument errors") {
  Ctx ctx;
  Tensor z = Tensor::zeros(Shape{2, 5});
  CHECK_THROWS_WITH_AS(cross_entropy(ctx, z, Tensor::from_labels({0, 5})),
                       doctest::Contains("cross_entropy: labels[1] = 5 is out of range for 5 classes"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(ctx, z, Tensor::from_labels({-2, 0})),
                       doctest::Contains("cross_entropy: labels[0] = -2 is out of range"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(ctx, z, Tensor::from_labels({0, 1, 2})),
                       doctest::Contains("cross_entropy: labels has shape [3], expected [2]"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(ctx, z, Tensor::zeros(Shape{2})),
                       doctest::Contains("cross_entropy: labels must be i32"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy_backward(ctx, Tensor::zeros(Shape{3}), z, Tensor::from_labels({0, 1})),
                       doctest::Contains("cross_entropy_backward: dloss has shape [3], expected [2]"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy_backward(ctx, Tensor::zeros(Shape{2}), z, Tensor::from_labels({0, 9})),
                       doctest::Contains("cross_entropy_backward: labels[1] = 9 is out of range for 5 classes"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy_backward(ctx, Tensor::zeros(Shape{2}, DType::F64), z, Tensor::from_labels({0, 1})),
                       doctest::Contains("cross_entropy_backward: mixed dtypes"), Error);
  CHECK_THROWS_WITH_AS(softmax(ctx, Tensor::zeros(Shape{2, 3, 4})),
                       doctest::Contains("softmax: logits must have 2 dimensions, got f32[2,3,4]@cpu"), Error);
  CHECK_THROWS_WITH_AS(log_softmax(ctx, Tensor::zeros(Shape{2, 0})), doctest::Contains("log_softmax: logits"), Error);
  CHECK_THROWS_WITH_AS(softmax_backward(ctx, Tensor::zeros(Shape{2, 4}), z),
                       doctest::Contains("softmax_backward: dy has shape [2,4], expected [2,5]"), Error);
  CHECK_THROWS_WITH_AS(log_softmax_backward(ctx, z, Tensor::zeros(Shape{10})),
                       doctest::Contains("log_softmax_backward: y must have 2 dimensions"), Error);
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(softmax(gpu, z), doctest::Contains("softmax: tensor f32[2,5]@cpu is not on the context's device"),
                       Error);
}

TEST_CASE("tv_loss / area_loss: argument errors") {
  Ctx ctx;
  Tensor m = Tensor::from_values({0.5, 0.5, 0.5, 0.5}, Shape{1, 1, 2, 2});
  CHECK_THROWS_WITH_AS(tv_loss(ctx, Tensor::zeros(Shape{1, 2, 2, 2}), 0),
                       doctest::Contains("tv_loss: m must be a one-channel mask [N,1,H,W], got f32[1,2,2,2]@cpu"), Error);
  CHECK_THROWS_WITH_AS(tv_loss(ctx, Tensor::zeros(Shape{2, 2}), 0), doctest::Contains("tv_loss: m must have 4 dimensions"),
                       Error);
  CHECK_THROWS_WITH_AS(tv_loss(ctx, m, NAN), doctest::Contains("tv_loss: border_weight must be finite"), Error);
  CHECK_THROWS_WITH_AS(tv_loss_backward(ctx, Tensor::zeros(Shape{2}), m, 0),
                       doctest::Contains("tv_loss_backward: dloss has shape [2], expected [1]"), Error);
  CHECK_THROWS_WITH_AS(area_loss_backward(ctx, Tensor::zeros(Shape{1, 1}), m, 0.3, 5e-4),
                       doctest::Contains("area_loss_backward: dloss has shape [1,1], expected [1]"), Error);
  CHECK_THROWS_WITH_AS(area_loss(ctx, m, INFINITY, 0), doctest::Contains("area_loss: power must be finite"), Error);
  CHECK_THROWS_WITH_AS(area_loss(ctx, Tensor::zeros(Shape{1, 1, 0, 3}), 1, 0),
                       doctest::Contains("area_loss: m f32[1,1,0,3]@cpu has no pixels"), Error);
  // A fractional power of m + eps <= 0 is undefined: the error names the pixel.
  Tensor bad = Tensor::from_values({0.5, 0.5, 0.5, -0.1}, Shape{1, 1, 2, 2});
  CHECK_THROWS_WITH_AS(area_loss(ctx, bad, 0.3, 0.05),
                       doctest::Contains("area_loss: m + eps = -0.05 at sample 0, pixel (1,1) is not > 0"), Error);
  CHECK_THROWS_WITH_AS(area_loss_backward(ctx, Tensor::zeros(Shape{1}), bad, 0.3, 0.05),
                       doctest::Contains("area_loss_backward: m + eps = -0.05 at sample 0, pixel (1,1)"), Error);
  Tensor zero = Tensor::zeros(Shape{1, 1, 1, 2});
  CHECK_THROWS_WITH_AS(area_loss(ctx, zero, 0.3, 0), doctest::Contains("area_loss: m + eps = 0 at sample 0, pixel (0,0)"),
                       Error);
  CHECK(all_close(area_loss(ctx, zero, 2, 0), {0}));  // an integer power is fine at 0
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(tv_loss(gpu, m, 0), doctest::Contains("tv_loss: tensor f32[1,1,2,2]@cpu is not on the context"),
                       Error);
}

#ifdef SAL_WITH_CUDA
#include "cuda/device.h"

TEST_CASE("cuda: bad labels and a bad area base give NaN (kernels cannot throw) - reductions repeat bitwise") {
  if (!cuda_available()) {
    MESSAGE("skipped: no CUDA device");
    return;
  }
  CudaDevice dev;
  Arena arena(Device::CUDA);
  Ctx g = dev.ctx(&arena);
  Ctx cpu;
  // Label 5 of 5 classes: sample 1's loss and gradient row are NaN, sample 0 is right.
  Tensor z = Tensor::from_values({0, std::log(3.0), 0, 0, 0, 1, 2, 3, 4, 5}, Shape{2, 5});
  Tensor labels = Tensor::from_labels({1, 5});
  Tensor loss = cross_entropy(g, z.to(Device::CUDA), labels.to(Device::CUDA));
  Tensor dz = cross_entropy_backward(g, Tensor::from_values({1, 1}, Shape{2}).to(Device::CUDA), z.to(Device::CUDA),
                                     labels.to(Device::CUDA));
  dev.synchronize();
  const std::vector<double> lv = loss.values(), dv = dz.values();
  CHECK(lv[0] == doctest::Approx(std::log(7.0 / 3.0)).epsilon(1e-6));  // -log(3 / (3 + 4))
  CHECK(std::isnan(lv[1]));
  for (int k = 0; k < 5; ++k) {
    CHECK(std::isfinite(dv[static_cast<size_t>(k)]));
    CHECK(std::isnan(dv[static_cast<size_t>(5 + k)]));
  }
  // A fractional power of m + eps <= 0 at sample 0, pixel 3: that loss and that gradient are NaN.
  Tensor bad = Tensor::from_values({0.5, 0.5, 0.5, -0.1, 0.2, 0.2, 0.2, 0.2}, Shape{2, 1, 2, 2});
  Tensor al = area_loss(g, bad.to(Device::CUDA), 0.3, 0.05);
  Tensor ad = area_loss_backward(g, Tensor::from_values({1, 1}, Shape{2}).to(Device::CUDA), bad.to(Device::CUDA), 0.3, 0.05);
  dev.synchronize();
  const std::vector<double> alv = al.values(), adv = ad.values();
  CHECK(std::isnan(alv[0]));
  CHECK(alv[1] == doctest::Approx(std::pow(0.25, 0.3)).epsilon(1e-6));
  for (size_t i = 0; i < adv.size(); ++i) CHECK(std::isnan(adv[i]) == (i == 3));

  // Per-sample reductions split over many blocks: equal to the CPU, and bitwise equal run to run.
  std::mt19937_64 rng(17);
  const Shape ms{3, 1, 224, 224};
  Tensor m = Tensor::from_values(sal::test::uniform(ms, rng, 0, 1), ms);
  Tensor dm = m.to(Device::CUDA);
  Tensor tv1 = tv_loss(g, dm, 0.3), tv2 = tv_loss(g, dm, 0.3);
  Tensor ar1 = area_loss(g, dm, 0.3, 5e-4), ar2 = area_loss(g, dm, 0.3, 5e-4);
  dev.synchronize();
  CHECK(tv1.values() == tv2.values());
  CHECK(ar1.values() == ar2.values());
  CHECK(sal::test::max_rel_diff(tv1, tv_loss(cpu, m, 0.3)) < 1e-5);
  CHECK(sal::test::max_rel_diff(ar1, area_loss(cpu, m, 0.3, 5e-4)) < 1e-5);
}
#endif
