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

// A big row (many blocks, several tiles per plane on CUDA): fewer finite differences.
OpCase big(OpCase c, int fd = 8) {
  c.max_fd_elements = fd;
  return c;
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
      // The CUDA kernels: horizontal segments of 128 columns, vertical tiles of 64 rows, mirror
      // terms of the adjoint at the edges and everywhere when the kernel is wider than the image.
      big(blur_case("gaussian_blur/k55_s11_70x300", {1, 2, 70, 300}, 11.0, 55)),
      big(blur_backward_case("gaussian_blur_backward/k55_s11_70x300", {1, 2, 70, 300}, 11.0, 55)),
      big(blur_case("gaussian_blur/k55_s11_batch2_odd_67x131", {2, 1, 67, 131}, 10.5, 55)),
      big(blur_backward_case("gaussian_blur_backward/k55_s10_odd_67x131", {2, 1, 67, 131}, 10.0, 55)),
      big(blur_case("gaussian_blur/k55_wider_than_20x24", {2, 3, 20, 24}, 11.0, 55)),
      big(blur_backward_case("gaussian_blur_backward/k55_wider_than_20x24", {2, 3, 20, 24}, 11.0, 55)),
      big(blur_case("gaussian_blur/k21_single_row_1x301", {1, 1, 1, 301}, 4.0, 21)),
      big(blur_backward_case("gaussian_blur_backward/k21_single_column_150x1", {1, 2, 150, 1}, 4.0, 21)),
      big(blur_case("gaussian_blur/k255_s40_70x140", {1, 1, 70, 140}, 40.0, 255)),
      big(blur_backward_case("gaussian_blur_backward/k255_s40_70x140", {1, 1, 70, 140}, 40.0, 255)),
      big(blur_case("gaussian_blur/k13_many_planes_4x5x17x33", {4, 5, 17, 33}, 2.5, 13)),
      big(blur_backward_case("gaussian_blur_backward/k11_129x129", {1, 1, 129, 129}, 2.0, 11)),
  };
}

}  // namespace sal::test
