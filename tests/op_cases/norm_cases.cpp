// Harness rows for batch normalisation: inference (x, gamma, beta checked; the running
// statistics are constants) and training (x through the batch statistics, gamma, beta).
#include "tests/op_check.h"

namespace sal::test {

namespace {

constexpr double kInferEps = 1e-3;
constexpr double kTrainEps = 1e-5;

// Inputs: x, gamma, beta, mean, var (var positive).
OpCase infer_case(const std::string& name, Shape x) {
  const int64_t c = x[1];
  return OpCase{
      .name = name,
      .shapes = {x, {c}, {c}, {c}, {c}},
      .check_grad = {true, true, true, false, false},
      .init = [](int i, const Shape& s, std::mt19937_64& rng) {
        return i == 4 ? uniform(s, rng, 0.5, 1.5) : uniform(s, rng);
      },
      .forward = [](Ctx& ctx, const Inputs& in) {
        return batchnorm2d_infer(ctx, in[0], in[1], in[2], in[3], in[4], kInferEps);
      },
      .backward = [](Ctx& ctx, const Inputs& in, const Tensor&, const Tensor& dy) {
        Tensor dg = ctx.alloc_zeros(in[1].shape(), in[1].dtype());
        Tensor db = ctx.alloc_zeros(in[2].shape(), in[2].dtype());
        Tensor dx = batchnorm2d_infer_backward(ctx, dy, in[0], in[1], in[3], in[4], kInferEps, &dg, &db);
        return std::vector<Tensor>{dx, dg, db, Tensor(), Tensor()};
      }};
}

// Inputs: x, gamma, beta. with_running also passes running statistics (they must not change y).
OpCase train_case(const std::string& name, Shape x, bool with_running) {
  const int64_t c = x[1];
  auto run = [with_running](Ctx& ctx, const Inputs& in, Tensor& sm, Tensor& si) {
    const Shape cs{in[0].dim(1)};
    sm = ctx.alloc(cs, in[0].dtype());
    si = ctx.alloc(cs, in[0].dtype());
    Tensor rm = ctx.alloc_zeros(cs, in[0].dtype()), rv = ctx.alloc_zeros(cs, in[0].dtype());
    return batchnorm2d_train(ctx, in[0], in[1], in[2], kTrainEps, 0.1, with_running ? &rm : nullptr,
                             with_running ? &rv : nullptr, sm, si);
  };
  return OpCase{
      .name = name,
      .shapes = {x, {c}, {c}},
      .check_grad = {true, true, true},
      .init = [](int i, const Shape& s, std::mt19937_64& rng) {
        return i == 1 ? uniform(s, rng, 0.5, 2) : uniform(s, rng);
      },
      .forward = [run](Ctx& ctx, const Inputs& in) {
        Tensor sm, si;
        return run(ctx, in, sm, si);
      },
      .backward = [run](Ctx& ctx, const Inputs& in, const Tensor&, const Tensor& dy) {
        Tensor sm, si;
        run(ctx, in, sm, si);  // the saved statistics of this forward
        Tensor dg = ctx.alloc_zeros(in[1].shape(), in[1].dtype());
        Tensor db = ctx.alloc_zeros(in[2].shape(), in[2].dtype());
        Tensor dx = batchnorm2d_train_backward(ctx, dy, in[0], in[1], sm, si, &dg, &db);
        return std::vector<Tensor>{dx, dg, db};
      }};
}

}  // namespace

SAL_OP_CASES {
  return {
      infer_case("batchnorm2d_infer/2x3x4x3", {2, 3, 4, 3}),
      infer_case("batchnorm2d_infer/batch1_odd", {1, 2, 3, 5}),
      infer_case("batchnorm2d_infer/1x1_spatial", {3, 1, 1, 1}),
      train_case("batchnorm2d_train/2x3x3x3", {2, 3, 3, 3}, false),
      train_case("batchnorm2d_train/batch1_odd_running", {1, 2, 3, 5}, true),
      train_case("batchnorm2d_train/1x1_spatial", {4, 2, 1, 1}, false),
      train_case("batchnorm2d_train/3x1x2x5", {3, 1, 2, 5}, true),
  };
}

}  // namespace sal::test
