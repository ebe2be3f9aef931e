// Adam over flat buffers: a hand-worked first step and convergence on a quadratic.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>

#include "engine/host_io_guard.h"
#include "engine/params.h"
#include "optim/adam.h"
#include "tests/op_check.h"

using namespace sal;

TEST_CASE("adam: first step moves each weight by lr * sign(g) (hand-worked)") {
  // Step 1: m = (1-b1) g, v = (1-b2) g^2; bias-corrected m/sqrt(v) = g/|g|, so w -= lr * sign(g)
  // (up to eps).
  Ctx ctx;
  Tensor w = Tensor::from_values({1, 2, 3}, Shape{3});
  Tensor g = Tensor::from_values({0.5, -4, 0}, Shape{3});
  Tensor m = Tensor::zeros(Shape{3}), v = Tensor::zeros(Shape{3});
  adam_update(ctx, w, g, m, v, AdamConfig{.lr = 0.1}, 1);
  CHECK(sal::test::all_close(w, {0.9, 2.1, 3}, 1e-6));
  CHECK(sal::test::all_close(m, {0.05, -0.4, 0}, 1e-7));
  CHECK(sal::test::all_close(v, {0.00025, 0.016, 0}, 1e-8));
  CHECK_THROWS_WITH_AS(adam_update(ctx, w, Tensor::zeros(Shape{2}), m, v, AdamConfig{}, 1),
                       doctest::Contains("adam_update: grad has shape [2], expected [3]"), Error);
  CHECK_THROWS_WITH_AS(adam_update(ctx, w, g, m, v, AdamConfig{}, 0), doctest::Contains("1-based"), Error);
}

TEST_CASE("adam: minimises a quadratic through the param store, frozen params untouched") {
  ParamStore ps;
  ParamRef a = ps.add("a", Shape{2});
  ParamRef frozen = ps.add("frozen", Shape{2}, false);
  ParamRef b = ps.add("b", Shape{3});
  ps.finalize(Device::CPU);
  ps.value(frozen).fill(5);
  Adam opt(ps, AdamConfig{.lr = 0.05});
  Ctx ctx;
  // f = sum (a - 1)^2 + sum (b + 2)^2
  for (int it = 0; it < 400; ++it) {
    ps.zero_grads();
    float* pa = ps.value(a).data<float>();
    float* pb = ps.value(b).data<float>();
    for (int i = 0; i < 2; ++i) ps.grad(a).data<float>()[i] = 2 * (pa[i] - 1);
    for (int i = 0; i < 3; ++i) ps.grad(b).data<float>()[i] = 2 * (pb[i] + 2);
    opt.step(ctx);
  }
  CHECK(opt.steps() == 400);
  CHECK(sal::test::all_close(ps.value(a), {1, 1}, 1e-3));
  CHECK(sal::test::all_close(ps.value(b), {-2, -2, -2}, 1e-3));
  CHECK(sal::test::all_close(ps.value(frozen), {5, 5}, 0));
}

TEST_CASE("adam: prepare() + apply() is step(), and apply() does no host I/O (a captured step can hold it)") {
  // Two stores from the same values, one stepped with step(), the other with prepare() on the host side
  // and apply() under the guard a StepGraph capture sets (engine/host_io_guard.h).
  ParamRef ref;
  auto make = [&ref] {
    auto ps = std::make_unique<ParamStore>();
    ref = ps->add("w", Shape{5});
    ps->finalize(Device::CPU);
    std::vector<double> w0 = {0.3, -1.2, 2.5, 0, 7};
    for (int i = 0; i < 5; ++i) ps->value("w").data<float>()[i] = static_cast<float>(w0[static_cast<size_t>(i)]);
    return ps;
  };
  auto pa = make(), pb = make();
  Adam a(*pa, AdamConfig{.lr = 0.01, .weight_decay = 0.1}), b(*pb, AdamConfig{.lr = 0.01, .weight_decay = 0.1});
  Ctx ctx;
  for (int it = 1; it <= 5; ++it) {
    for (ParamStore* ps : {pa.get(), pb.get()}) {
      float* g = ps->grad(ref).data<float>();
      const float* w = ps->value("w").data<float>();
      for (int i = 0; i < 5; ++i) g[i] = 2 * w[i] - static_cast<float>(it);  // a gradient that changes per step
    }
    a.step(ctx);
    b.prepare(ctx);
    {
      HostIoGuard guard("the test's captured step");
      b.apply(ctx);
      CHECK_THROWS_WITH_AS(b.prepare(ctx), doctest::Contains("upload_into inside the test's captured step"), Error);
    }
  }
  // The refused prepare() inside the guard did not count a step.
  CHECK(a.steps() == 5);
  CHECK(b.steps() == 5);
  CHECK(pa->value("w").values() == pb->value("w").values());
  CHECK(a.m().values() == b.m().values());
  CHECK(a.v().values() == b.v().values());
  // The constants: bias corrections of step 3 in double, rounded once to the dtype.
  const std::vector<double> k = adam_constants(AdamConfig{.lr = 0.01, .weight_decay = 0.1}, 3, DType::F64).values();
  CHECK(k == std::vector<double>{0.9, 0.999, 1 - 0.9, 1 - 0.999, 0.01 / (1 - std::pow(0.9, 3)),
                                 1 / std::sqrt(1 - std::pow(0.999, 3)), 1e-8, 0.01 * 0.1});
}
