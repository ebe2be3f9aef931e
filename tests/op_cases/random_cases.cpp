// Harness rows for random_normal: the CUDA-vs-CPU comparison of the same counter-based numbers (the
// input only gives the shape and dtype; a random source has no gradient to check, so no input is
// differentiated). Sizes cover a partial last Philox block and many grid-stride blocks.
#include "tests/op_check.h"

namespace sal::test {

namespace {

OpCase normal_case(const std::string& name, Shape shape, uint64_t seed) {
  return OpCase{.name = name,
                .shapes = {shape},
                .check_grad = {false},
                .forward = [=](Ctx& c, const Inputs& in) { return random_normal(c, in[0].shape(), in[0].dtype(), seed); },
                .backward = [](Ctx&, const Inputs&, const Tensor&, const Tensor&) {
                  return std::vector<Tensor>{Tensor()};
                },
                // Box-Muller's log and sin/cos round differently on the two backends (a few ulps of
                // numbers up to ~6).
                .cuda_tol = 1e-5};
}

}  // namespace

SAL_OP_CASES {
  return {
      normal_case("random_normal/7_elements", {7}, 1),
      normal_case("random_normal/2x3x5x5_seed_2^40", {2, 3, 5, 5}, uint64_t{1} << 40),
      normal_case("random_normal/8x3x224x224", {8, 3, 224, 224}, 0x243F6A8885A308D3ull),
  };
}

}  // namespace sal::test
