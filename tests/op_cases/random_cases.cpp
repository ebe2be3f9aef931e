// Harness rows for random_normal: the CUDA-vs-CPU comparison of the same counter-based numbers (the
// input only gives the shape and dtype; a random source has no gradient to check, so no input is
// differentiated). Sizes cover a partial last Philox block and many grid-stride blocks.
#include "engine/device_session.h"
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

// The overload that reads its seed from device memory (uploaded here, as a captured step refills it).
OpCase normal_seed_tensor_case(const std::string& name, Shape shape, uint64_t seed) {
  OpCase c = normal_case(name, std::move(shape), seed);
  c.forward = [=](Ctx& ctx, const Inputs& in) {
    return random_normal(ctx, in[0].shape(), in[0].dtype(), upload(ctx, seed_tensor(seed)));
  };
  return c;
}

}  // namespace

SAL_OP_CASES {
  return {
      normal_case("random_normal/7_elements", {7}, 1),
      normal_case("random_normal/2x3x5x5_seed_2^40", {2, 3, 5, 5}, uint64_t{1} << 40),
      normal_case("random_normal/8x3x224x224", {8, 3, 224, 224}, 0x243F6A8885A308D3ull),
      normal_seed_tensor_case("random_normal/seed_tensor/2x3x5x5_seed_high_bits", {2, 3, 5, 5}, 0xFEDCBA9876543210ull),
  };
}

}  // namespace sal::test
