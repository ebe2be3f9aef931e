// Hand-worked cases and argument errors for the Gaussian blur and its adjoint.
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "engine/ops.h"
#include "tests/op_check.h"

using namespace sal;
using sal::test::all_close;

namespace {

// With sigma^2 = 1 / (2 ln 2), exp(-d^2 / (2 sigma^2)) = 2^(-d^2): the 7 raw taps are
// 1/512, 1/16, 1/2, 1, 1/2, 1/16, 1/512, summing to Z = 1 + 2 * (0.5 + 0.0625 + 0.001953125)
// = 2.12890625. All exact in binary.
const double kSigma2 = 1.0 / std::sqrt(2.0 * std::log(2.0));
constexpr double r0 = 1, r1 = 0.5, r2 = 0.0625, r3 = 0.001953125, kZ = 2.12890625;

double dot(const Tensor& a, const Tensor& b) {
  std::vector<double> av = a.values(), bv = b.values();
  return std::inner_product(av.begin(), av.end(), bv.begin(), 0.0);
}

}  // namespace

TEST_CASE("gaussian_blur: a constant image stays constant") {
  Ctx ctx;
  // Normalised taps and reflect padding: every output is a convex combination of equal values,
  // also when the kernel is much wider than the image.
  Tensor c = Tensor::from_values(std::vector<double>(2 * 5 * 4, 2.5), Shape{1, 2, 5, 4});
  CHECK(all_close(gaussian_blur(ctx, c, 1.5, 5), c.values(), 1e-6));
  Tensor small = Tensor::from_values(std::vector<double>(6, -1.25), Shape{1, 1, 3, 2});
  CHECK(all_close(gaussian_blur(ctx, small, 10.0, 55), small.values(), 1e-6));
}

TEST_CASE("gaussian_blur: an impulse gives the normalised taps") {
  Ctx ctx;
  // ksize 3, sigma 1: raw taps e^-0.5, 1, e^-0.5; Z = 1 + 2 e^-0.5 = 2.2130613;
  // w_side = 0.27406862, w_mid = 0.45186276. An impulse at the centre of 5x5 spreads into the
  // 3x3 outer product: corners w_side^2 = 0.07511361, edges w_side*w_mid = 0.12384140,
  // centre w_mid^2 = 0.20417996; everything else stays 0.
  std::vector<double> v(25, 0.0);
  v[12] = 1;
  Tensor y = gaussian_blur(ctx, Tensor::from_values(v, Shape{1, 1, 5, 5}), 1.0, 3);
  const double c = 0.07511360795411152, e = 0.12384140315297398, m = 0.2041799555716581;
  CHECK(all_close(y, {0, 0, 0, 0, 0,  //
                      0, c, e, c, 0,  //
                      0, e, m, e, 0,  //
                      0, c, e, c, 0,  //
                      0, 0, 0, 0, 0},
                  1e-7));
  // ksize 7 with the power-of-two sigma on a 9-pixel row (height 1 folds every row onto itself,
  // so the vertical pass is the identity): the taps themselves, r_|d| / Z.
  std::vector<double> row(9, 0.0);
  row[4] = 1;
  Tensor yr = gaussian_blur(ctx, Tensor::from_values(row, Shape{1, 1, 1, 9}, DType::F64), kSigma2, 7);
  CHECK(all_close(yr, {0, r3 / kZ, r2 / kZ, r1 / kZ, r0 / kZ, r1 / kZ, r2 / kZ, r3 / kZ, 0}, 1e-12));
}

TEST_CASE("gaussian_blur: reflect folding of a 7-tap kernel on a 3-pixel image") {
  Ctx ctx;
  // x = {a, b, c} = {1, 10, 100}, half = 3. Reflect indices fold with period 2(n-1) = 4:
  //   -3 -> 1, -2 -> 2, -1 -> 1, 3 -> 1, 4 -> 0.
  // Output 0 reads indices -3..3 -> b c b a b c b: r0 a + (2 r1 + 2 r3) b + 2 r2 c
  //   = (1 + 10 * 1.00390625 + 100 * 0.125) / Z = 23.5390625 / Z
  // Output 1 reads -2..4 -> c b a b c b a: (r1 + r3) a + (r0 + 2 r2) b + (r1 + r3) c
  //   = (0.501953125 + 11.25 + 50.1953125) / Z = 61.947265625 / Z
  // Output 2 mirrors output 0: 2 r2 a + (2 r1 + 2 r3) b + r0 c = 110.1640625 / Z.
  const std::vector<double> want = {23.5390625 / kZ, 61.947265625 / kZ, 110.1640625 / kZ};
  Tensor xw = Tensor::from_values({1, 10, 100}, Shape{1, 1, 1, 3}, DType::F64);
  CHECK(all_close(gaussian_blur(ctx, xw, kSigma2, 7), want, 1e-12));
  // The same along H (the vertical pass).
  Tensor xh = Tensor::from_values({1, 10, 100}, Shape{1, 1, 3, 1}, DType::F64);
  CHECK(all_close(gaussian_blur(ctx, xh, kSigma2, 7), want, 1e-12));
  // 2-D: a separable image u v^T blurs to (M u)(M v)^T.
  Tensor x2 = Tensor::from_values({1, 10, 100, 2, 20, 200, 3, 30, 300}, Shape{1, 1, 3, 3}, DType::F64);
  const double mu[3] = {(r0 * 1 + (2 * r1 + 2 * r3) * 2 + 2 * r2 * 3) / kZ, ((r1 + r3) * 4 + (r0 + 2 * r2) * 2) / kZ,
                        (2 * r2 * 1 + (2 * r1 + 2 * r3) * 2 + r0 * 3) / kZ};
  std::vector<double> want2;
  for (double a : mu)
    for (double b : want) want2.push_back(a * b);
  CHECK(all_close(gaussian_blur(ctx, x2, kSigma2, 7), want2, 1e-11));
  // A single pixel folds every tap onto itself: unchanged.
  CHECK(all_close(gaussian_blur(ctx, Tensor::from_values({4}, Shape{1, 1, 1, 1}), 2.0, 9), {4}, 1e-6));
}

TEST_CASE("gaussian_blur_backward: the transpose, worked by hand and checked as an adjoint") {
  Ctx ctx;
  // On the 3-pixel image the forward matrix M has rows
  //   (r0, 2r1+2r3, 2r2), (r1+r3, r0+2r2, r1+r3), (2r2, 2r1+2r3, r0)   (all / Z),
  // which is not symmetric. The forward of an impulse e_j is column j of M; the backward (M^T)
  // of e_j is row j. So forward(e0) = (r0, r1+r3, 2r2)/Z but backward(e0) = (r0, 2r1+2r3, 2r2)/Z.
  Tensor e0 = Tensor::from_values({1, 0, 0}, Shape{1, 1, 1, 3}, DType::F64);
  CHECK(all_close(gaussian_blur(ctx, e0, kSigma2, 7), {r0 / kZ, (r1 + r3) / kZ, 2 * r2 / kZ}, 1e-12));
  CHECK(all_close(gaussian_blur_backward(ctx, e0, kSigma2, 7), {r0 / kZ, (2 * r1 + 2 * r3) / kZ, 2 * r2 / kZ}, 1e-12));
  // Along H (the vertical transpose): forward(e1) = column 1, backward(e1) = row 1.
  Tensor e1 = Tensor::from_values({0, 1, 0}, Shape{1, 1, 3, 1}, DType::F64);
  CHECK(all_close(gaussian_blur(ctx, e1, kSigma2, 7),
                  {(2 * r1 + 2 * r3) / kZ, (r0 + 2 * r2) / kZ, (2 * r1 + 2 * r3) / kZ}, 1e-12));
  CHECK(all_close(gaussian_blur_backward(ctx, e1, kSigma2, 7), {(r1 + r3) / kZ, (r0 + 2 * r2) / kZ, (r1 + r3) / kZ},
                  1e-12));
  // Vertical transpose at the edge: backward(e0) along H is row 0 too.
  Tensor e0h = Tensor::from_values({1, 0, 0}, Shape{1, 1, 3, 1}, DType::F64);
  CHECK(all_close(gaussian_blur_backward(ctx, e0h, kSigma2, 7), {r0 / kZ, (2 * r1 + 2 * r3) / kZ, 2 * r2 / kZ},
                  1e-12));
  // <blur(x), g> = <x, blur_backward(g)> on random data, with repeated folding (ksize 9 on 3x4)
  // and without (ksize 5 on 7x9).
  std::mt19937_64 rng(5);
  for (auto [h, w, k] : {std::array<int, 3>{3, 4, 9}, std::array<int, 3>{7, 9, 5}}) {
    Shape s{2, 3, h, w};
    Tensor x = Tensor::from_values(sal::test::uniform(s, rng), s, DType::F64);
    Tensor g = Tensor::from_values(sal::test::uniform(s, rng), s, DType::F64);
    CHECK(dot(gaussian_blur(ctx, x, 1.7, k), g) ==
          doctest::Approx(dot(x, gaussian_blur_backward(ctx, g, 1.7, k))).epsilon(1e-12));
  }
}

TEST_CASE("gaussian_blur: f32 large image takes the threaded path and matches f64") {
  // 3 x 64 x 80 planes: above the OpenMP threshold. f32 and f64 agree to f32 precision.
  Ctx ctx;
  std::mt19937_64 rng(9);
  Shape s{1, 3, 64, 80};
  std::vector<double> v = sal::test::uniform(s, rng);
  Tensor y32 = gaussian_blur(ctx, Tensor::from_values(v, s, DType::F32), 11.0, 55);
  Tensor y64 = gaussian_blur(ctx, Tensor::from_values(v, s, DType::F64), 11.0, 55);
  CHECK(sal::test::max_rel_diff(y32, y64) < 1e-5);
  Tensor g32 = gaussian_blur_backward(ctx, Tensor::from_values(v, s, DType::F32), 11.0, 55);
  Tensor g64 = gaussian_blur_backward(ctx, Tensor::from_values(v, s, DType::F64), 11.0, 55);
  CHECK(sal::test::max_rel_diff(g32, g64) < 1e-5);
}

TEST_CASE("gaussian_blur: argument errors") {
  Ctx ctx;
  Tensor x = Tensor::from_values(std::vector<double>(16, 1.0), Shape{1, 1, 4, 4});
  CHECK_THROWS_WITH_AS(gaussian_blur(ctx, x, 1.0, 4), doctest::Contains("gaussian_blur: ksize must be odd and positive, got 4"),
                       Error);
  CHECK_THROWS_WITH_AS(gaussian_blur(ctx, x, 1.0, -3), doctest::Contains("gaussian_blur: ksize must be odd and positive"),
                       Error);
  CHECK_THROWS_WITH_AS(gaussian_blur(ctx, x, 0.0, 3), doctest::Contains("gaussian_blur: sigma must be positive and finite, got 0"),
                       Error);
  CHECK_THROWS_WITH_AS(gaussian_blur(ctx, x, -2.0, 3), doctest::Contains("gaussian_blur: sigma must be positive"), Error);
  CHECK_THROWS_WITH_AS(gaussian_blur_backward(ctx, x, 1.0, 2),
                       doctest::Contains("gaussian_blur_backward: ksize must be odd and positive, got 2"), Error);
  CHECK_THROWS_WITH_AS(gaussian_blur(ctx, x.reshape(Shape{4, 4}), 1.0, 3),
                       doctest::Contains("gaussian_blur: x must have 4 dimensions"), Error);
  CHECK_THROWS_WITH_AS(gaussian_blur_backward(ctx, Tensor::empty(Shape{1, 1, 0, 3}), 1.0, 3),
                       doctest::Contains("gaussian_blur_backward: dy must have H, W >= 1"), Error);
  CHECK_THROWS_WITH_AS(gaussian_blur(ctx, Tensor::from_labels({1, 2, 3, 4}).reshape(Shape{1, 1, 2, 2}), 1.0, 3),
                       doctest::Contains("gaussian_blur: tensor i32[1,1,2,2]@cpu has an unsupported dtype"), Error);
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(gaussian_blur(gpu, x, 1.0, 3), doctest::Contains("gaussian_blur: tensor f32[1,1,4,4]@cpu is not on"),
                       Error);
}
