// The main() of a benchmark program that registers its benchmarks at run time: Google Benchmark's
// initialisation, an unknown-flag check, the run and the shutdown. `before_run` (optional) runs after
// the flags are parsed and before the first benchmark (printing the device, adding context).
#pragma once
#include <benchmark/benchmark.h>

#include <functional>

#include "engine/op_profile.h"

namespace sal::bench {

inline int run_benchmarks(int argc, char** argv, const std::function<void()>& before_run = {}) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (before_run) before_run();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  ::sal::print_op_profile_if_enabled();  // SAL_PROFILE_OPS=1: where the eager rows' time went, op by op
  return 0;
}

}  // namespace sal::bench
