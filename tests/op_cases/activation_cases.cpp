#include "tests/op_check.h"

namespace sal::test {

SAL_OP_CASES {
  auto kinks = [](int, const Shape& s, std::mt19937_64& rng) { return away_from_zero(s, rng, 0.05); };
  return {
      OpCase{.name = "relu",
             .shapes = {{2, 3, 5, 4}},
             .check_grad = {true},
             .init = kinks,
             .forward = [](Ctx& c, const Inputs& in) { return relu(c, in[0]); },
             .backward = [](Ctx& c, const Inputs&, const Tensor& y, const Tensor& dy) {
               return std::vector<Tensor>{relu_backward(c, dy, y)};
             }},
      OpCase{.name = "relu6",
             .shapes = {{2, 3, 5, 4}},
             .check_grad = {true},
             // Values around both kinks (0 and 6), never within 0.05 of them.
             .init = [](int, const Shape& s, std::mt19937_64& rng) {
               std::vector<double> v = away_from_zero(s, rng, 0.05);
               for (size_t i = 0; i < v.size(); i += 2) v[i] = 6 + 2 * v[i];
               return v;
             },
             .forward = [](Ctx& c, const Inputs& in) { return relu6(c, in[0]); },
             .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
               return std::vector<Tensor>{relu6_backward(c, dy, in[0])};
             }},
      OpCase{.name = "sigmoid",
             .shapes = {{3, 7}},
             .check_grad = {true},
             .init = [](int, const Shape& s, std::mt19937_64& rng) { return uniform(s, rng, -6, 6); },
             .forward = [](Ctx& c, const Inputs& in) { return sigmoid(c, in[0]); },
             .backward = [](Ctx& c, const Inputs&, const Tensor& y, const Tensor& dy) {
               return std::vector<Tensor>{sigmoid_backward(c, dy, y)};
             }},
  };
}

}  // namespace sal::test
