// Harness rows: the abs-ratio mask head and evidence removal (blend).
#include "tests/op_check.h"

namespace sal::test {

namespace {

OpCase abs_ratio_case(std::string name, Shape c, double eps) {
  return OpCase{.name = std::move(name),
                .shapes = {c},
                .check_grad = {true},
                // |c| has a kink at 0: keep every value at least 0.1 away from it.
                .init = [](int, const Shape& s, std::mt19937_64& rng) { return away_from_zero(s, rng, 0.1); },
                .forward = [eps](Ctx& ctx, const Inputs& in) { return abs_ratio(ctx, in[0], eps); },
                .backward = [eps](Ctx& ctx, const Inputs& in, const Tensor&, const Tensor& dy) {
                  return std::vector<Tensor>{abs_ratio_backward(ctx, dy, in[0], eps)};
                }};
}

OpCase blend_case(std::string name, Shape x) {
  const Shape m{x[0], 1, x[2], x[3]};
  return OpCase{.name = std::move(name),
                .shapes = {x, x, m},
                .check_grad = {true, true, true},
                .init = [](int i, const Shape& s, std::mt19937_64& rng) {
                  return i == 2 ? uniform(s, rng, 0, 1) : uniform(s, rng, -1, 1);
                },
                .forward = [](Ctx& ctx, const Inputs& in) { return blend(ctx, in[0], in[1], in[2]); },
                .backward = [](Ctx& ctx, const Inputs& in, const Tensor&, const Tensor& dy) {
                  BlendGrads g = blend_backward(ctx, dy, in[0], in[1], in[2], true, true);
                  return std::vector<Tensor>{g.dx, g.da, g.dm};
                }};
}

}  // namespace

SAL_OP_CASES {
  return {
      abs_ratio_case("abs_ratio/eps1e-3", {2, 2, 3, 4}, 1e-3),
      abs_ratio_case("abs_ratio/batch1_odd_eps0", {1, 2, 5, 3}, 0.0),
      abs_ratio_case("abs_ratio/large_eps", {3, 2, 1, 2}, 0.5),
      blend_case("blend/nchw", {2, 3, 4, 3}),
      blend_case("blend/batch1_odd", {1, 2, 3, 5}),
      blend_case("blend/one_channel", {3, 1, 2, 2}),
      // The mask pipeline: m = abs_ratio(c), y = blend(x, a, m), gradients to c through both.
      OpCase{.name = "abs_ratio_then_blend",
             .shapes = {{2, 2, 2, 3}, {2, 3, 2, 3}, {2, 3, 2, 3}},
             .check_grad = {true, true, true},
             .init = [](int i, const Shape& s, std::mt19937_64& rng) {
               return i == 0 ? away_from_zero(s, rng, 0.1) : uniform(s, rng);
             },
             .forward = [](Ctx& ctx, const Inputs& in) {
               return blend(ctx, in[1], in[2], abs_ratio(ctx, in[0], 1e-2));
             },
             .backward = [](Ctx& ctx, const Inputs& in, const Tensor&, const Tensor& dy) {
               Tensor m = abs_ratio(ctx, in[0], 1e-2);
               BlendGrads g = blend_backward(ctx, dy, in[1], in[2], m, true, true);
               return std::vector<Tensor>{abs_ratio_backward(ctx, g.dm, in[0], 1e-2), g.dx, g.da};
             }},
  };
}

}  // namespace sal::test
