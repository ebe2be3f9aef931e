// Harness rows: the abs-ratio mask head (alone and fused with bilinear upsampling) and evidence
// removal (blend).
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

// `c` with a per-row CUDA tolerance and a cap on finite differences (large rows).
OpCase big(OpCase c, double cuda_tol = 1e-4, int max_fd = 8) {
  c.cuda_tol = cuda_tol;
  c.max_fd_elements = max_fd;
  return c;
}

// Only dm and da asked for (dx undefined).
OpCase blend_da_only_case(std::string name, Shape x) {
  OpCase c = blend_case(std::move(name), x);
  c.check_grad = {false, true, true};
  c.backward = [](Ctx& ctx, const Inputs& in, const Tensor&, const Tensor& dy) {
    BlendGrads g = blend_backward(ctx, dy, in[0], in[1], in[2], false, true);
    return std::vector<Tensor>{Tensor(), g.da, g.dm};
  };
  return c;
}

OpCase abs_ratio_upsample_case(std::string name, Shape c, double eps, int64_t out_h, int64_t out_w) {
  return OpCase{.name = std::move(name),
                .shapes = {c},
                .check_grad = {true},
                .init = [](int, const Shape& s, std::mt19937_64& rng) { return away_from_zero(s, rng, 0.1); },
                .forward = [eps, out_h, out_w](Ctx& ctx, const Inputs& in) {
                  return abs_ratio_upsample(ctx, in[0], eps, out_h, out_w);
                },
                .backward = [eps](Ctx& ctx, const Inputs& in, const Tensor&, const Tensor& dy) {
                  return std::vector<Tensor>{abs_ratio_upsample_backward(ctx, dy, in[0], eps)};
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
      // Larger shapes for the CUDA comparison: float4 paths (H*W a multiple of 4), scalar paths
      // (odd H*W), multi-block grids, batch 1.
      big(abs_ratio_case("abs_ratio/large_vec", {3, 2, 40, 64}, 1e-3)),
      big(abs_ratio_case("abs_ratio/large_odd", {2, 2, 37, 41}, 1e-2)),
      big(blend_case("blend/large_vec", {2, 3, 64, 64})),
      big(blend_case("blend/large_odd", {3, 3, 33, 35})),
      big(blend_case("blend/batch1_large_vec", {1, 4, 48, 52})),
      blend_da_only_case("blend/only_da_dm", {2, 3, 3, 5}),
      big(blend_da_only_case("blend/only_da_dm_large_vec", {2, 2, 32, 36})),
      // The fused head + upsampling: 4x (the masker's 56 -> 224 in small), down, non-integer
      // ratios, up in one axis and down in the other, identity, eps = 0, batch 1 at full size.
      abs_ratio_upsample_case("abs_ratio_upsample/4x", {2, 2, 7, 9}, 1e-3, 28, 36),
      abs_ratio_upsample_case("abs_ratio_upsample/down", {2, 2, 17, 13}, 1e-3, 5, 6),
      abs_ratio_upsample_case("abs_ratio_upsample/non_integer_batch1", {1, 2, 10, 7}, 0.0, 23, 16),
      abs_ratio_upsample_case("abs_ratio_upsample/up_down_mixed", {1, 2, 9, 30}, 1e-2, 20, 11),
      abs_ratio_upsample_case("abs_ratio_upsample/same_size", {2, 2, 5, 5}, 1e-3, 5, 5),
      abs_ratio_upsample_case("abs_ratio_upsample/one_pixel_in", {3, 2, 1, 1}, 1e-3, 4, 3),
      big(abs_ratio_upsample_case("abs_ratio_upsample/masker_56_to_224_batch1", {1, 2, 56, 56}, 1e-3, 224, 224)),
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
