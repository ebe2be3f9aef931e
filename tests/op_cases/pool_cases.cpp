// Harness rows for pooling: max (distinct inputs, so no window has a tie the finite difference
// could flip), average (with and without the padding in the divisor, ceil mode) and global average.
#include "tests/op_check.h"

namespace sal::test {

namespace {

auto distinct_values = [](int, const Shape& s, std::mt19937_64& rng) { return distinct(s, rng, 0.01); };

OpCase max_case(const std::string& name, Shape x, Pool2dArgs a) {
  return OpCase{.name = name,
                .shapes = {x},
                .check_grad = {true},
                .init = distinct_values,
                .forward = [a](Ctx& c, const Inputs& in) { return max_pool2d(c, in[0], a); },
                .backward = [a](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
                  return std::vector<Tensor>{max_pool2d_backward(c, dy, in[0], a)};
                }};
}

OpCase avg_case(const std::string& name, Shape x, Pool2dArgs a) {
  return OpCase{.name = name,
                .shapes = {x},
                .check_grad = {true},
                .forward = [a](Ctx& c, const Inputs& in) { return avg_pool2d(c, in[0], a); },
                .backward = [a](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
                  return std::vector<Tensor>{avg_pool2d_backward(c, dy, in[0].shape(), a)};
                }};
}

OpCase global_case(const std::string& name, Shape x) {
  return OpCase{.name = name,
                .shapes = {x},
                .check_grad = {true},
                .forward = [](Ctx& c, const Inputs& in) { return global_avg_pool(c, in[0]); },
                .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
                  return std::vector<Tensor>{global_avg_pool_backward(c, dy, in[0].shape())};
                }};
}

// kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, ceil_mode, count_include_pad
Pool2dArgs args(int kh, int kw, int sh, int sw, int ph, int pw, bool ceil, bool include_pad) {
  return Pool2dArgs{kh, kw, sh, sw, ph, pw, ceil, include_pad};
}

}  // namespace

SAL_OP_CASES {
  return {
      max_case("max_pool2d/k3s2p1", {2, 2, 5, 5}, Pool2dArgs::make(3, 2, 1)),
      max_case("max_pool2d/k2s2_ceil_odd", {1, 3, 5, 7}, Pool2dArgs::make(2, 2, 0, true)),
      max_case("max_pool2d/k3s1p1_overlap", {1, 1, 4, 6}, Pool2dArgs::make(3, 1, 1)),
      max_case("max_pool2d/rect_k2x3_s1x2", {2, 1, 5, 6}, args(2, 3, 1, 2, 1, 1, false, true)),
      max_case("max_pool2d/k3s2p1_ceil", {1, 2, 6, 6}, Pool2dArgs::make(3, 2, 1, true)),
      avg_case("avg_pool2d/k3s2p1_include_pad", {2, 2, 5, 5}, Pool2dArgs::make(3, 2, 1)),
      avg_case("avg_pool2d/k3s2p1_exclude_pad", {1, 2, 5, 5}, args(3, 3, 2, 2, 1, 1, false, false)),
      avg_case("avg_pool2d/k2s2_ceil_odd", {1, 2, 5, 7}, Pool2dArgs::make(2, 2, 0, true)),
      avg_case("avg_pool2d/k3s2p1_ceil_include_pad", {1, 1, 6, 6}, Pool2dArgs::make(3, 2, 1, true)),
      avg_case("avg_pool2d/rect_ceil_exclude_pad", {1, 1, 4, 7}, args(1, 3, 1, 2, 0, 1, true, false)),
      global_case("global_avg_pool/2x3x4x5", {2, 3, 4, 5}),
      global_case("global_avg_pool/batch1_1x1", {1, 4, 1, 1}),
      global_case("global_avg_pool/3x2x3x3", {3, 2, 3, 3}),
  };
}

}  // namespace sal::test
