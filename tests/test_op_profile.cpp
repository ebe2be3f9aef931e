// engine/op_profile.h: with profiling on, every op records its calls and time under its name (an op
// inside another counts in the outer one only); off, nothing is recorded. CUDA ops are timed by events on
// the device's stream, and ops recorded into a CUDA graph are not ops of their own (the last case, on a GPU).
#include <doctest/doctest.h>

#include <map>
#include <thread>

#include "engine/op_profile.h"
#include "engine/ops.h"
#include "engine/step_graph.h"
#ifdef SAL_WITH_CUDA
#include "cuda/device.h"
#endif

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

#ifdef SAL_WITH_CUDA
TEST_CASE("cuda: op profile times ops by events on the device's stream, not a graph's capture or its replays") {
  if (!cuda_available()) {
    MESSAGE("skipped: no CUDA device");
    return;
  }
  CudaDevice dev;
  Arena arena(Device::CUDA);
  Ctx c = dev.ctx(&arena);
  const Tensor x = Tensor::from_values({-1, 2, -3, 4}, Shape{1, 1, 2, 2}).to(Device::CUDA);
  set_op_profiling(true);
  reset_op_profile();
  relu(c, x);
  relu(c, x);
  std::map<std::string, OpTime> m = by_name();
  REQUIRE(m.count("relu"));
  CHECK(m.size() == 1);
  CHECK(m["relu"].calls == 2);
  CHECK(m["relu"].device == Device::CUDA);
  CHECK(m["relu"].total_ms >= 0);

  // Run 1 is eager (one relu), run 2 captures the graph and replays it, run 3 replays it: one call in all.
  reset_op_profile();
  Arena graph_arena(Device::CUDA);
  StepGraph g(dev.ctx(&graph_arena));
  const StepGraph::Fn fn = [&](Ctx& gc) { return std::vector<Tensor>{relu(gc, x)}; };
  for (int run = 0; run < 3; ++run) g.run(fn);
  CHECK(g.captured());
  m = by_name();
  REQUIRE(m.count("relu"));
  CHECK(m["relu"].calls == 1);
  // The capture left this thread's op depth balanced: an eager op afterwards is timed on its own.
  relu(c, x);
  CHECK(by_name()["relu"].calls == 2);
  dev.synchronize();

  set_op_profiling(false);
  reset_op_profile();
}
#endif
