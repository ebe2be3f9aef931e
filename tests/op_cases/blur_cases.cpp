// Harness rows for the Gaussian blur: its backward (the adjoint) against finite differences of
// the forward, including kernels wider than the image (repeated reflection), and the backward
// op on its own (its own adjoint is the forward).
#include "tests/op_check.h"

namespace sal::test {

namespace {

OpCase blur_case(const std::string& name, Shape x, double sigma, int ksize) {
  return OpCase{.name = name,
                .shapes = {x},
                .check_grad = {true},
                .forward = [=](Ctx& c, const Inputs& in) { return gaussian_blur(c, in[0], sigma, ksize); },
                .backward = [=](Ctx& c, const Inputs&, const Tensor&, const Tensor& dy) {
                  return std::vector<Tensor>{gaussian_blur_backward(c, dy, sigma, ksize)};
                }};
}

OpCase blur_backward_case(const std::string& name, Shape x, double sigma, int ksize) {
  return OpCase{.name = name,
                .shapes = {x},
                .check_grad = {true},
                .forward = [=](Ctx& c, const Inputs& in) { return gaussian_blur_backward(c, in[0], sigma, ksize); },
                .backward = [=](Ctx& c, const Inputs&, const Tensor&, const Tensor& dy) {
                  return std::vector<Tensor>{gaussian_blur(c, dy, sigma, ksize)};
                }};
}

}  // namespace

SAL_OP_CASES {
  return {
      blur_case("gaussian_blur/k5_s1.2", {1, 2, 5, 6}, 1.2, 5),
      blur_case("gaussian_blur/k7_wider_than_3x4", {2, 1, 3, 4}, 2.0, 7),
      blur_case("gaussian_blur/k3_single_row", {1, 1, 1, 5}, 0.8, 3),
      blur_case("gaussian_blur/k9_on_2x2", {1, 2, 2, 2}, 3.0, 9),
      blur_case("gaussian_blur/k1_identity", {1, 1, 3, 2}, 1.0, 1),
      blur_backward_case("gaussian_blur_backward/k5_on_4x3", {1, 2, 4, 3}, 1.5, 5),
      blur_backward_case("gaussian_blur_backward/k7_on_5x2", {2, 1, 5, 2}, 0.9, 7),
  };
}

}  // namespace sal::test
