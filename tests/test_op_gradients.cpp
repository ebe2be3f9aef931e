// Finite-difference gradient check, in double precision, of every registered op case.
#include <doctest/doctest.h>

#include "tests/op_check.h"

using namespace sal;
using namespace sal::test;

TEST_CASE("every op case has a registered gradient check") {
  REQUIRE(registry().size() > 0);
  for (const OpCase& c : registry()) {
    INFO(c.name);
    CHECK(c.forward);
    CHECK(c.backward);
  }
}

TEST_CASE("finite-difference gradients of every op case (f64)") {
  for (const OpCase& c : registry()) {
    GradReport r = check_gradients(c);
    INFO(r.message);
    CHECK_MESSAGE(r.ok, c.name);
  }
}

TEST_CASE("the gradient check catches a wrong backward") {
  OpCase wrong{.name = "harness/wrong_sigmoid_backward",
               .shapes = {{4}},
               .check_grad = {true},
               .forward = [](Ctx& c, const Inputs& in) { return sigmoid(c, in[0]); },
               .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
                 // d sigmoid computed from x instead of y: wrong.
                 return std::vector<Tensor>{sigmoid_backward(c, dy, in[0])};
               }};
  GradReport r = check_gradients(wrong);
  CHECK_FALSE(r.ok);
  CHECK(r.message.find("harness/wrong_sigmoid_backward") != std::string::npos);
}
