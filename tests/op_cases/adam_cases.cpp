// Harness rows: the Adam update (optim/adam.h). Not differentiable: the rows only feed the
// CUDA-vs-CPU comparison (check_grad is false everywhere and the backward returns nothing).
// The forward runs three steps on copies of w, m, v that are views into one [3,P] output, so a P
// that is not a multiple of 4 puts m and v at unaligned addresses (the scalar CUDA path).
#include "optim/adam.h"
#include "tests/op_check.h"

namespace sal::test {

namespace {

OpCase adam_case(std::string name, int64_t P, AdamConfig cfg) {
  return OpCase{.name = std::move(name),
                .shapes = {{P}, {P}, {P}, {P}},  // w, g, m, v
                .check_grad = {false, false, false, false},
                .init = [](int i, const Shape& s, std::mt19937_64& rng) {
                  return i == 3 ? uniform(s, rng, 0, 0.01) : uniform(s, rng, -1, 1);  // v >= 0
                },
                .forward =
                    [cfg, P](Ctx& c, const Inputs& in) {
                      Tensor out = c.alloc(Shape{3, P}, in[0].dtype());
                      Tensor w = out.slice0(0, 1).reshape(Shape{P});
                      Tensor m = out.slice0(1, 1).reshape(Shape{P});
                      Tensor v = out.slice0(2, 1).reshape(Shape{P});
                      w.copy_from(in[0]);
                      m.copy_from(in[2]);
                      v.copy_from(in[3]);
                      for (int64_t step = 1; step <= 3; ++step) adam_update(c, w, in[1], m, v, cfg, step);
                      return out;
                    },
                .backward = [](Ctx&, const Inputs&, const Tensor&, const Tensor&) { return std::vector<Tensor>{}; }};
}

}  // namespace

SAL_OP_CASES {
  return {
      adam_case("adam_update/unaligned_37", 37, AdamConfig{.lr = 0.01}),
      adam_case("adam_update/vec_4096_adamw", 4096, AdamConfig{.lr = 0.003, .weight_decay = 0.1}),
      adam_case("adam_update/large_odd", 100003, AdamConfig{.lr = 1e-3, .beta1 = 0.8, .beta2 = 0.99}),
  };
}

}  // namespace sal::test
