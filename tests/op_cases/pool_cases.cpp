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

// A big row (many blocks on CUDA): fewer finite differences.
OpCase big(OpCase c, int fd = 16) {
  c.max_fd_elements = fd;
  return c;
}

// Max pooling over values with many exact ties (a few levels only): the CUDA argmax must follow
// the CPU's rule (first maximum in row-major window order). No gradient check (ties are kinks).
OpCase max_ties_case(const std::string& name, Shape x, Pool2dArgs a) {
  OpCase c = max_case(name, x, a);
  c.check_grad = {false};
  c.init = [](int, const Shape& s, std::mt19937_64& rng) {
    std::vector<double> v = uniform(s, rng, 0, 3);
    for (double& t : v) t = static_cast<double>(static_cast<int>(t));  // 0, 1 or 2
    return v;
  };
  return c;
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
      // 1x1 windows: the strided subsample of the CIFAR ResNets' shortcut (a path of its own on the CPU)
      avg_case("avg_pool2d/k1s2_subsample", {2, 3, 8, 8}, Pool2dArgs::make(1, 2)),
      avg_case("avg_pool2d/k1s2_subsample_odd", {1, 2, 7, 9}, Pool2dArgs::make(1, 2)),
      avg_case("avg_pool2d/k1_rect_stride_ceil", {1, 2, 7, 8}, args(1, 1, 3, 2, 0, 0, true, true)),
      global_case("global_avg_pool/2x3x4x5", {2, 3, 4, 5}),
      global_case("global_avg_pool/batch1_1x1", {1, 4, 1, 1}),
      global_case("global_avg_pool/3x2x3x3", {3, 2, 3, 3}),
      big(max_case("max_pool2d/resnet_k3s2p1_2x8x56x56", {2, 8, 56, 56}, Pool2dArgs::make(3, 2, 1))),
      big(max_case("max_pool2d/batch1_k3s2p1_ceil_odd_37x29", {1, 3, 37, 29}, Pool2dArgs::make(3, 2, 1, true))),
      big(max_case("max_pool2d/k2s2_ceil_odd_33x31", {2, 2, 33, 31}, Pool2dArgs::make(2, 2, 0, true))),
      big(max_case("max_pool2d/rect_k5x3_s3x1_p2x1", {1, 2, 23, 19}, args(5, 3, 3, 1, 2, 1, false, true))),
      max_ties_case("max_pool2d/ties_k3s1p1", {2, 3, 9, 11}, Pool2dArgs::make(3, 1, 1)),
      max_ties_case("max_pool2d/ties_k3s2p1_ceil", {1, 4, 12, 13}, Pool2dArgs::make(3, 2, 1, true)),
      big(avg_case("avg_pool2d/k3s2p1_include_pad_2x8x29x31", {2, 8, 29, 31}, Pool2dArgs::make(3, 2, 1))),
      big(avg_case("avg_pool2d/ceil_exclude_pad_1x3x30x27", {1, 3, 30, 27}, args(3, 3, 2, 2, 1, 1, true, false))),
      big(avg_case("avg_pool2d/k2s2_2x4x56x56", {2, 4, 56, 56}, Pool2dArgs::make(2, 2))),
      big(avg_case("avg_pool2d/overlap_k4s1p2_ceil", {1, 2, 15, 17}, args(4, 4, 1, 1, 2, 2, true, true))),
      big(global_case("global_avg_pool/resnet_tail_2x64x7x7", {2, 64, 7, 7})),
      big(global_case("global_avg_pool/batch1_3x50x50", {1, 3, 50, 50})),
  };
}

}  // namespace sal::test
