// engine/op_profile.h: with profiling on, every op records its calls and time under its name (an op
// inside another counts in the outer one only); off, nothing is recorded. CUDA ops are timed by events on
// the device (tests/cuda_vs_cpu.cpp and the benchmarks run them; here the CPU).
#include <doctest/doctest.h>

#include <map>
#include <thread>

#include "engine/op_profile.h"
#include "engine/ops.h"

using namespace sal;

namespace {

std::map<std::string, OpTime> by_name() {
  std::map<std::string, OpTime> m;
  for (const OpTime& t : op_profile()) m[t.op] = t;
  return m;
}

}  // namespace

TEST_CASE("op profile: calls and times per op, nested ops in the outer one, nothing when off") {
  Ctx ctx;
  const Tensor x = Tensor::from_values({-1, 2, -3, 4}, Shape{1, 1, 2, 2});
  const Tensor w = Tensor::from_values({1}, Shape{1, 1, 1, 1});

  set_op_profiling(true);
  reset_op_profile();
  relu(ctx, x);
  relu(ctx, x);
  conv2d(ctx, x, w, nullptr, Conv2dArgs::make(1, 0));
  {
    const OpScope outer(ctx, "outer_op");  // as SAL_BACKEND opens one: the relu inside is its time
    relu(ctx, x);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::map<std::string, OpTime> m = by_name();
  REQUIRE(m.count("relu"));
  REQUIRE(m.count("conv2d"));
  REQUIRE(m.count("outer_op"));
  CHECK(m.size() == 3);
  CHECK(m["relu"].calls == 2);
  CHECK(m["conv2d"].calls == 1);
  CHECK(m["outer_op"].calls == 1);
  CHECK(m["relu"].device == Device::CPU);
  CHECK(m["outer_op"].total_ms >= 19.0);  // the sleep inside it
  CHECK(m["relu"].total_ms < m["outer_op"].total_ms);
  CHECK(op_profile().front().op == "outer_op");  // longest first
  const std::string table = op_profile_table();
  CHECK(table.find("outer_op") != std::string::npos);
  CHECK(table.find("(all ops)") != std::string::npos);

  set_op_profiling(false);
  reset_op_profile();
  relu(ctx, x);
  CHECK(op_profile().empty());
}
