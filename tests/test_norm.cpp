// Hand-worked cases and argument errors for the batch-norm ops.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/ops.h"
#include "tests/op_check.h"

using namespace sal;
using sal::test::all_close;

namespace {

// The hand-worked case of the inference tests: x [1,2,1,2] = {3, 5 | -2, 10}, gamma, beta, mean, var [2].
struct HandBn {
  Tensor x, gamma, beta, mean, var;
};
HandBn hand_bn() {
  return {Tensor::from_values({3, 5, -2, 10}, Shape{1, 2, 1, 2}), Tensor::from_values({2, 0.5}, Shape{2}),
          Tensor::from_values({0.5, -1}, Shape{2}), Tensor::from_values({1, 2}, Shape{2}),
          Tensor::from_values({3, 15}, Shape{2})};
}

}  // namespace

TEST_CASE("batchnorm2d_infer: hand-worked values, backward and accumulation") {
  Ctx ctx;
  // x [1,2,1,2]: channel 0 = {3, 5}, channel 1 = {-2, 10}.
  // mean {1, 2}, var {3, 15}, eps 1 -> sqrt(var + eps) = {2, 4}; gamma {2, 0.5}, beta {0.5, -1}.
  // c0: (3-1)/2*2+0.5 = 2.5, (5-1)/2*2+0.5 = 4.5; c1: (-2-2)/4*0.5-1 = -1.5, (10-2)/4*0.5-1 = 0.
  auto [x, gamma, beta, mean, var] = hand_bn();
  CHECK(all_close(batchnorm2d_infer(ctx, x, gamma, beta, mean, var, 1.0), {2.5, 4.5, -1.5, 0}));

  // dy {1, 2 | 3, 4}: dx = dy * gamma / sqrt(var + eps) = dy * {1 | 0.125}.
  // dgamma = sum dy * (x - mean) / sqrt(var+eps): c0 1*1 + 2*2 = 5, c1 3*(-1) + 4*2 = 5.
  // dbeta = sum dy: {3, 7}. Both accumulate onto what is there.
  Tensor dy = Tensor::from_values({1, 2, 3, 4}, Shape{1, 2, 1, 2});
  Tensor dgamma = Tensor::from_values({1, 1}, Shape{2});
  Tensor dbeta = Tensor::from_values({0, 10}, Shape{2});
  Tensor dx = batchnorm2d_infer_backward(ctx, dy, x, gamma, mean, var, 1.0, &dgamma, &dbeta);
  CHECK(all_close(dx, {1, 2, 0.375, 0.5}));
  CHECK(all_close(dgamma, {6, 6}));
  CHECK(all_close(dbeta, {3, 17}));
  // Without parameter gradients only dx is computed.
  CHECK(all_close(batchnorm2d_infer_backward(ctx, dy, x, gamma, mean, var, 1.0, nullptr, nullptr), {1, 2, 0.375, 0.5}));
}

TEST_CASE("batchnorm2d_train: batch statistics and running-stat update worked by hand") {
  Ctx ctx;
  // x [2,2,1,2] (NCHW): n0 = {c0: 1, 2 | c1: 4, 15}, n1 = {c0: 3, 6 | c1: 11, 10}.
  // Channel 0 values {1,2,3,6}: mean 3, squared deviations 4+1+0+9 = 14, biased var 3.5,
  //   unbiased 14/3; eps 0.5 -> invstd 1/sqrt(4) = 0.5.
  // Channel 1 values {4,15,11,10}: mean 10, squared deviations 36+25+1+0 = 62, biased var 15.5,
  //   unbiased 62/3; invstd 1/sqrt(16) = 0.25.
  // gamma {2, 4}, beta {1, -1}: c0 y = (x-3)*0.5*2 + 1 = x - 2; c1 y = (x-10)*0.25*4 - 1 = x - 11.
  Tensor x = Tensor::from_values({1, 2, 4, 15, 3, 6, 11, 10}, Shape{2, 2, 1, 2});
  Tensor gamma = Tensor::from_values({2, 4}, Shape{2});
  Tensor beta = Tensor::from_values({1, -1}, Shape{2});
  Tensor rm = Tensor::from_values({0, 0}, Shape{2});
  Tensor rv = Tensor::from_values({1, 1}, Shape{2});
  Tensor sm = Tensor::empty(Shape{2}), si = Tensor::empty(Shape{2});
  Tensor y = batchnorm2d_train(ctx, x, gamma, beta, 0.5, 0.1, &rm, &rv, sm, si);
  CHECK(all_close(y, {-1, 0, -7, 4, 1, 4, 0, -1}, 1e-5));
  CHECK(all_close(sm, {3, 10}, 1e-6));
  CHECK(all_close(si, {0.5, 0.25}, 1e-6));
  // running = 0.9 * running + 0.1 * batch, with the UNBIASED variance:
  // mean {0.3, 1.0}; var {0.9 + 0.1*14/3, 0.9 + 0.1*62/3} = {1.3666667, 2.9666667}.
  CHECK(all_close(rm, {0.3, 1.0}, 1e-6));
  CHECK(all_close(rv, {0.9 + 1.4 / 3, 0.9 + 6.2 / 3}, 1e-6));
  // A second step moves them again from where they are.
  batchnorm2d_train(ctx, x, gamma, beta, 0.5, 0.1, &rm, &rv, sm, si);
  CHECK(all_close(rm, {0.57, 1.9}, 1e-6));

  // Without running statistics nothing else changes.
  Tensor y2 = batchnorm2d_train(ctx, x, gamma, beta, 0.5, 0.1, nullptr, nullptr, sm, si);
  CHECK(all_close(y2, {-1, 0, -7, 4, 1, 4, 0, -1}, 1e-5));

  // Backward with dy = xhat + 1, xhat = (x - mean) * invstd:
  //   c0 xhat {-1, -0.5 | 0, 1.5}, c1 xhat {-1.5, 1.25 | 0.25, 0}.
  // sum(dy) = M = 4 per channel (sum xhat = 0); sum(dy * xhat) = sum xhat^2 = {3.5, 3.875}.
  // dx = gamma*invstd * (dy - sum(dy)/M - xhat * sum(dy xhat)/M) = gamma*invstd * xhat * (1 - S/M):
  //   c0: 1 * (1 - 0.875) = 0.125 * xhat; c1: 1 * (1 - 0.96875) = 0.03125 * xhat.
  // dgamma += {3.5, 3.875}, dbeta += {4, 4}.
  Tensor dy = Tensor::from_values({0, 0.5, -0.5, 2.25, 1, 2.5, 1.25, 1}, Shape{2, 2, 1, 2});
  Tensor dgamma = Tensor::from_values({1, 1}, Shape{2});
  Tensor dbeta = Tensor::from_values({0, -1}, Shape{2});
  Tensor dx = batchnorm2d_train_backward(ctx, dy, x, gamma, sm, si, &dgamma, &dbeta);
  CHECK(all_close(dx, {-0.125, -0.0625, -0.046875, 0.0390625, 0, 0.1875, 0.0078125, 0}, 1e-6));
  CHECK(all_close(dgamma, {4.5, 4.875}, 1e-6));
  CHECK(all_close(dbeta, {4, 3}, 1e-6));
}

TEST_CASE("batchnorm2d_train: large mean, f64, output has the batch's mean and variance") {
  // A channel offset far from zero must not lose its variance to cancellation.
  Ctx ctx;
  std::vector<double> v;
  for (int i = 0; i < 2 * 3 * 4 * 4; ++i) v.push_back(1000.0 + (i % 7) * 0.25 - (i % 3) * 0.5);
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor x = Tensor::from_values(v, Shape{2, 3, 4, 4}, dt);
    Tensor g = Tensor::from_values({1, 1, 1}, Shape{3}, dt), b = Tensor::from_values({0, 0, 0}, Shape{3}, dt);
    Tensor sm = Tensor::empty(Shape{3}, dt), si = Tensor::empty(Shape{3}, dt);
    Tensor y = batchnorm2d_train(ctx, x, g, b, 0.0, 0.1, nullptr, nullptr, sm, si);
    std::vector<double> yv = y.values();
    for (int c = 0; c < 3; ++c) {
      double s = 0, s2 = 0;
      for (int n = 0; n < 2; ++n)
        for (int i = 0; i < 16; ++i) {
          double t = yv[static_cast<size_t>((n * 3 + c) * 16 + i)];
          s += t;
          s2 += t * t;
        }
      CHECK(std::abs(s / 32) < (dt == DType::F32 ? 2e-4 : 1e-9));
      CHECK(std::abs(s2 / 32 - 1) < (dt == DType::F32 ? 2e-3 : 1e-9));
    }
  }
}

TEST_CASE("batch norm: argument errors") {
  Ctx ctx;
  Tensor x = Tensor::from_values({1, 2, 3, 4}, Shape{1, 2, 1, 2});
  Tensor c2 = Tensor::from_values({1, 1}, Shape{2});
  Tensor c3 = Tensor::from_values({1, 1, 1}, Shape{3});
  CHECK_THROWS_WITH_AS(batchnorm2d_infer(ctx, x, c3, c2, c2, c2, 1e-5),
                       doctest::Contains("batchnorm2d_infer: gamma has shape [3], expected [2]"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer(ctx, x.reshape(Shape{2, 2}), c2, c2, c2, c2, 1e-5),
                       doctest::Contains("batchnorm2d_infer: x must have 4 dimensions"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer(ctx, x, c2, c2, c2, c2.to(DType::F64), 1e-5),
                       doctest::Contains("batchnorm2d_infer: mixed dtypes"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer(ctx, x, c2, c2, c2, c2, -1),
                       doctest::Contains("batchnorm2d_infer: eps must be finite and >= 0"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer(ctx, Tensor::from_values({1, 2}, Shape{1, 2, 1, 1}, DType::I32), c2, c2, c2, c2, 1e-5),
                       doctest::Contains("batchnorm2d_infer: tensor i32[1,2,1,1]@cpu has an unsupported dtype"), Error);
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer(gpu, x, c2, c2, c2, c2, 1e-5),
                       doctest::Contains("batchnorm2d_infer: tensor f32[1,2,1,2]@cpu is not on the context's device"),
                       Error);

  Tensor dy3 = Tensor::from_values({1, 2, 3}, Shape{1, 3, 1, 1});
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_backward(ctx, dy3, x, c2, c2, c2, 1e-5, nullptr, nullptr),
                       doctest::Contains("batchnorm2d_infer_backward: dy has shape [1,3,1,1], expected [1,2,1,2]"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_backward(ctx, x, x, c2, c2, c2, 1e-5, &c3, nullptr),
                       doctest::Contains("batchnorm2d_infer_backward: dgamma has shape [3], expected [2]"), Error);

  Tensor sm = Tensor::empty(Shape{2}), si = Tensor::empty(Shape{2});
  Tensor one = Tensor::from_values({1, 2}, Shape{1, 2, 1, 1});
  CHECK_THROWS_WITH_AS(batchnorm2d_train(ctx, one, c2, c2, 1e-5, 0.1, nullptr, nullptr, sm, si),
                       doctest::Contains("batchnorm2d_train: expected more than 1 value per channel"), Error);
  Tensor rm = c2.clone();
  CHECK_THROWS_WITH_AS(batchnorm2d_train(ctx, x, c2, c2, 1e-5, 0.1, &rm, nullptr, sm, si),
                       doctest::Contains("batchnorm2d_train: running_mean and running_var must be given together"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_train(ctx, x, c2, c2, 1e-5, 0.1, &rm, &c3, sm, si),
                       doctest::Contains("batchnorm2d_train: running_var has shape [3], expected [2]"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_train(ctx, x, c2, c2, 1e-5, 1.5, nullptr, nullptr, sm, si),
                       doctest::Contains("batchnorm2d_train: momentum must be in [0, 1], got 1.5"), Error);
  Tensor undefined;
  CHECK_THROWS_WITH_AS(batchnorm2d_train(ctx, x, c2, c2, 1e-5, 0.1, nullptr, nullptr, undefined, si),
                       doctest::Contains("batchnorm2d_train: save_mean is undefined"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_train(ctx, x, c2, c2, 1e-5, 0.1, nullptr, nullptr, sm, c3),
                       doctest::Contains("batchnorm2d_train: save_invstd has shape [3], expected [2]"), Error);

  Tensor db64 = Tensor::zeros(Shape{2}, DType::F64);
  CHECK_THROWS_WITH_AS(batchnorm2d_train_backward(ctx, x, x, c2, sm, si, nullptr, &db64),
                       doctest::Contains("batchnorm2d_train_backward: mixed dtypes"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_train_backward(ctx, x, x, c2, c3, si, nullptr, nullptr),
                       doctest::Contains("batchnorm2d_train_backward: save_mean has shape [3], expected [2]"), Error);
}

TEST_CASE("batchnorm2d_infer_act: hand-worked values, and its backward composed of existing ops") {
  Ctx ctx;
  // The batchnorm2d_infer hand case: bn(x) = {2.5, 4.5 | -1.5, 0}; residual {1, -5 | 0.5, 7}
  // gives z = bn(x) + residual = {3.5, -0.5 | -1, 7}.
  auto [x, gamma, beta, mean, var] = hand_bn();
  Tensor res = Tensor::from_values({1, -5, 0.5, 7}, Shape{1, 2, 1, 2});
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor xd = x.to(dt), g = gamma.to(dt), b = beta.to(dt), m = mean.to(dt), v = var.to(dt), r = res.to(dt);
    CHECK(all_close(batchnorm2d_infer_act(ctx, xd, g, b, m, v, 1.0, nullptr, Activation::None), {2.5, 4.5, -1.5, 0}));
    CHECK(all_close(batchnorm2d_infer_act(ctx, xd, g, b, m, v, 1.0, nullptr, Activation::ReLU), {2.5, 4.5, 0, 0}));
    CHECK(all_close(batchnorm2d_infer_act(ctx, xd, g, b, m, v, 1.0, &r, Activation::None), {3.5, -0.5, -1, 7}));
    CHECK(all_close(batchnorm2d_infer_act(ctx, xd, g, b, m, v, 1.0, &r, Activation::ReLU), {3.5, 0, 0, 7}));
    CHECK(all_close(batchnorm2d_infer_act(ctx, xd, g, b, m, v, 1.0, &r, Activation::ReLU6), {3.5, 0, 0, 6}));
  }

  // Backward of y = relu6(bn(x) + residual) with dy {1, 2 | 3, 4}: y = {3.5, 0 | 0, 6}, so
  // dz = relu6_backward(dy, y) = {1, 0 | 0, 0} (y is in (0, 6) only where z is);
  // dx = dz * gamma / sqrt(var + eps) = {1, 0 | 0, 0}; dresidual = dz; dgamma = sum dz * xhat:
  // c0: 1 * (3 - 1) / 2 = 1; dbeta = sum dz = {1, 0}.
  Tensor y = batchnorm2d_infer_act(ctx, x, gamma, beta, mean, var, 1.0, &res, Activation::ReLU6);
  Tensor dy = Tensor::from_values({1, 2, 3, 4}, Shape{1, 2, 1, 2});
  Tensor dz = relu6_backward(ctx, dy, y);
  CHECK(all_close(dz, {1, 0, 0, 0}));
  Tensor dgamma = Tensor::zeros(Shape{2}), dbeta = Tensor::zeros(Shape{2});
  CHECK(all_close(batchnorm2d_infer_backward(ctx, dz, x, gamma, mean, var, 1.0, &dgamma, &dbeta), {1, 0, 0, 0}));
  CHECK(all_close(dgamma, {1, 0}));
  CHECK(all_close(dbeta, {1, 0}));

  // The ReLU kink and NaN follow engine/cpu/activation.cpp: relu(NaN) = 0, relu6 passes NaN.
  Tensor nan_x = Tensor::from_values({std::nan(""), 1}, Shape{1, 1, 1, 2});
  Tensor one = Tensor::from_values({1}, Shape{1}), zero = Tensor::from_values({0}, Shape{1});
  std::vector<double> r1 = batchnorm2d_infer_act(ctx, nan_x, one, zero, zero, one, 0.0, nullptr, Activation::ReLU).values();
  CHECK(r1[0] == 0);
  std::vector<double> r6 = batchnorm2d_infer_act(ctx, nan_x, one, zero, zero, one, 0.0, nullptr, Activation::ReLU6).values();
  CHECK(std::isnan(r6[0]));
}

TEST_CASE("batchnorm2d_infer_act_inplace: the hand-worked values written over x, the out-of-place op's bits") {
  Ctx ctx;
  auto [x, gamma, beta, mean, var] = hand_bn();  // as above: bn(x) = {2.5, 4.5 | -1.5, 0}
  Tensor res = Tensor::from_values({1, -5, 0.5, 7}, Shape{1, 2, 1, 2});
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor g = gamma.to(dt), b = beta.to(dt), m = mean.to(dt), v = var.to(dt), r = res.to(dt);
    Tensor t = x.to(dt);
    batchnorm2d_infer_act_inplace(ctx, t, g, b, m, v, 1.0, &r, Activation::ReLU6);
    CHECK(all_close(t, {3.5, 0, 0, 6}));
    t = x.to(dt);
    batchnorm2d_infer_act_inplace(ctx, t, g, b, m, v, 1.0, nullptr, Activation::None);
    CHECK(all_close(t, {2.5, 4.5, -1.5, 0}));
  }
  // Bit for bit the out-of-place op, on planes long enough for the vectorised loops, every activation.
  std::mt19937_64 rng(5);
  const Shape s{2, 3, 9, 13};
  const Tensor big = Tensor::from_values(test::uniform(s, rng, -4, 8), s);
  const Tensor resid = Tensor::from_values(test::uniform(s, rng), s);
  const Tensor g3 = Tensor::from_values(test::uniform(Shape{3}, rng, 0.5, 1.5), Shape{3});
  const Tensor b3 = Tensor::from_values(test::uniform(Shape{3}, rng), Shape{3});
  for (const Activation act : {Activation::None, Activation::ReLU, Activation::ReLU6})
    for (const Tensor* rp : {static_cast<const Tensor*>(nullptr), &resid}) {
      const Tensor want = batchnorm2d_infer_act(ctx, big, g3, b3, b3, g3, 1e-3, rp, act);
      Tensor t = big.clone();
      batchnorm2d_infer_act_inplace(ctx, t, g3, b3, b3, g3, 1e-3, rp, act);
      CHECK(test::max_rel_diff(t, want) == 0);
    }
  // A residual overlapping x would be read after its elements were written: refused.
  Tensor flat = Tensor::from_values(std::vector<double>(5, 1.0), Shape{5});
  Tensor a = flat.slice0(0, 4).reshape(Shape{1, 2, 1, 2}), shifted = flat.slice0(1, 4).reshape(Shape{1, 2, 1, 2});
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_act_inplace(ctx, a, gamma, beta, mean, var, 1.0, &shifted, Activation::ReLU),
                       doctest::Contains("batchnorm2d_infer_act_inplace: the residual overlaps x"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_act_inplace(ctx, a, gamma, beta, mean, var, 1.0, &a, Activation::ReLU),
                       doctest::Contains("the residual overlaps x"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_act_inplace(ctx, a, gamma, beta, mean, var, -1.0, nullptr, Activation::ReLU),
                       doctest::Contains("batchnorm2d_infer_act_inplace: eps must be finite and >= 0"), Error);
}

TEST_CASE("batchnorm2d_infer_act: argument errors") {
  Ctx ctx;
  Tensor x = Tensor::from_values({1, 2, 3, 4}, Shape{1, 2, 1, 2});
  Tensor c2 = Tensor::from_values({1, 1}, Shape{2});
  Tensor c3 = Tensor::from_values({1, 1, 1}, Shape{3});
  Tensor short_res = Tensor::from_values({1, 2}, Shape{1, 2, 1, 1});
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_act(ctx, x, c2, c2, c2, c2, 1e-5, &short_res, Activation::ReLU),
                       doctest::Contains("batchnorm2d_infer_act: residual has shape [1,2,1,1], expected [1,2,1,2]"),
                       Error);
  Tensor res64 = x.to(DType::F64);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_act(ctx, x, c2, c2, c2, c2, 1e-5, &res64, Activation::ReLU),
                       doctest::Contains("batchnorm2d_infer_act: mixed dtypes"), Error);
  Tensor undefined;
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_act(ctx, x, c2, c2, c2, c2, 1e-5, &undefined, Activation::ReLU),
                       doctest::Contains("batchnorm2d_infer_act: residual is undefined"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_act(ctx, x, c2, c3, c2, c2, 1e-5, nullptr, Activation::None),
                       doctest::Contains("batchnorm2d_infer_act: beta has shape [3], expected [2]"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_act(ctx, x, c2, c2, c2, c2, -1, nullptr, Activation::None),
                       doctest::Contains("batchnorm2d_infer_act: eps must be finite and >= 0"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_act(ctx, x, c2, c2, c2, c2, 1e-5, nullptr, static_cast<Activation>(7)),
                       doctest::Contains("batchnorm2d_infer_act: unknown activation 7"), Error);
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_act(gpu, x, c2, c2, c2, c2, 1e-5, nullptr, Activation::ReLU),
                       doctest::Contains("batchnorm2d_infer_act: tensor f32[1,2,1,2]@cpu is not on the context's device"),
                       Error);
}

TEST_CASE("batchnorm2d_infer_act_backward: hand-worked, the composition it replaces bit for bit, and errors") {
  Ctx ctx;
  // Without a residual: bn(x) = {2.5, 4.5 | -1.5, 0} (the hand case above), gamma / sqrt(var + 1) =
  // {1 | 0.125}; y = relu6(bn(x)) = {2.5, 4.5 | 0, 0}; dy = {1, 2 | 3, 4} -> dx = {1, 2 | 0, 0}.
  auto [x, gamma, beta, mean, var] = hand_bn();
  Tensor dy = Tensor::from_values({1, 2, 3, 4}, Shape{1, 2, 1, 2});
  Tensor y6 = batchnorm2d_infer_act(ctx, x, gamma, beta, mean, var, 1.0, nullptr, Activation::ReLU6);
  CHECK(all_close(y6, {2.5, 4.5, 0, 0}));
  CHECK(all_close(batchnorm2d_infer_act_backward(ctx, dy, y6, gamma, var, 1.0, Activation::ReLU6), {1, 2, 0, 0}));
  // None: every dy scaled: {1, 2 | 0.375, 0.5}; an output of exactly 6 stops ReLU6's gradient, 0 stops ReLU's.
  CHECK(all_close(batchnorm2d_infer_act_backward(ctx, dy, y6, gamma, var, 1.0, Activation::None), {1, 2, 0.375, 0.5}));
  Tensor edges = Tensor::from_values({6, 0, 5.999, 1e-30}, Shape{1, 2, 1, 2});
  CHECK(all_close(batchnorm2d_infer_act_backward(ctx, dy, edges, gamma, var, 1.0, Activation::ReLU6),
                  {0, 0, 0.375, 0.5}));
  CHECK(all_close(batchnorm2d_infer_act_backward(ctx, dy, edges, gamma, var, 1.0, Activation::ReLU), {1, 0, 0.375, 0.5}));

  // Random tensors, both float types and activations: exactly relu(6)_backward then batchnorm2d_infer_backward.
  std::mt19937_64 rng(3);
  const Shape s{2, 3, 5, 7};
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor g = Tensor::from_values(sal::test::uniform(Shape{3}, rng, 0.5, 1.5), Shape{3}, dt);
    Tensor b = Tensor::from_values(sal::test::uniform(Shape{3}, rng), Shape{3}, dt);
    Tensor m = Tensor::from_values(sal::test::uniform(Shape{3}, rng), Shape{3}, dt);
    Tensor v = Tensor::from_values(sal::test::uniform(Shape{3}, rng, 0.5, 1.5), Shape{3}, dt);
    Tensor xs = Tensor::from_values(sal::test::uniform(s, rng, -8, 8), s, dt);
    Tensor d = Tensor::from_values(sal::test::uniform(s, rng), s, dt);
    for (Activation a : {Activation::None, Activation::ReLU, Activation::ReLU6}) {
      CAPTURE(static_cast<int>(a));
      Tensor y = batchnorm2d_infer_act(ctx, xs, g, b, m, v, 1e-3, nullptr, a);
      Tensor dz = a == Activation::ReLU ? relu_backward(ctx, d, y) : a == Activation::ReLU6 ? relu6_backward(ctx, d, y) : d;
      const std::vector<double> want = batchnorm2d_infer_backward(ctx, dz, xs, g, m, v, 1e-3, nullptr, nullptr).values();
      CHECK(batchnorm2d_infer_act_backward(ctx, d, y, g, v, 1e-3, a).values() == want);
    }
  }

  Tensor c3 = Tensor::from_values({1, 1, 1}, Shape{3});
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_act_backward(ctx, dy, y6, c3, var, 1.0, Activation::ReLU),
                       doctest::Contains("batchnorm2d_infer_act_backward: gamma has shape [3], expected [2]"), Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_act_backward(ctx, Tensor::zeros(Shape{1, 2, 1, 1}), y6, gamma, var, 1.0,
                                                      Activation::ReLU),
                       doctest::Contains("batchnorm2d_infer_act_backward: dy has shape [1,2,1,1], expected [1,2,1,2]"),
                       Error);
  CHECK_THROWS_WITH_AS(batchnorm2d_infer_act_backward(ctx, dy, y6, gamma, var, 1.0, static_cast<Activation>(9)),
                       doctest::Contains("unknown activation 9"), Error);
}
