// Where a step's time goes, op by op. With profiling on (SAL_PROFILE_OPS=1 in the environment, read at the
// first op, or set_op_profiling(true)) every op of engine/ops.h records its time under its name: wall clock
// on the CPU, a pair of CUDA events around it on the context's stream on CUDA (read when the report is made,
// which waits for the device). An op called from inside another op counts in the outer one only. Work
// replayed from a CUDA graph runs no op code (one launch), so profile eager runs: sal_train --eager,
// masker_bench's eager rows. Timing every op adds a little to each (a clock read, or two event records), so
// compare profiles with profiles, not with benchmark figures. Off, an op pays one relaxed atomic load.
//
//   SAL_PROFILE_OPS=1 build/masker_bench --benchmark_filter='masker_train/resnet50_released/cuda'
//   -> at exit, on stderr: one line per op (name, device, calls, total ms, mean us, share of the total)
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/context.h"

namespace sal {

namespace detail {
extern std::atomic<int> g_op_profiling;  // -1: the environment not read yet, 0 off, 1 on
bool read_op_profiling_env();
}  // namespace detail

inline bool op_profiling() {
  const int v = detail::g_op_profiling.load(std::memory_order_relaxed);
  return v < 0 ? detail::read_op_profiling_env() : v == 1;
}
void set_op_profiling(bool on);

struct OpTime {
  std::string op;
  Device device = Device::CPU;
  int64_t calls = 0;
  double total_ms = 0;
};
// The times recorded since the last reset, longest total first (waits for the CUDA events it reads).
std::vector<OpTime> op_profile();
void reset_op_profile();
// op_profile() as a table, with each op's share of the summed time.
std::string op_profile_table();
// For tools: prints the table to stderr when profiling is on (nothing otherwise). Call it before the
// CUDA devices are destroyed; the first call registers nothing, so call it once at the end.
void print_op_profile_if_enabled();

// One op's time (SAL_BACKEND opens one around every op's backend call).
class OpScope {
 public:
  OpScope(const Ctx& ctx, const char* op) {
    if (op_profiling()) begin(ctx, op);
  }
  ~OpScope() {
    if (counted_) end();
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  bool counted_ = false;  // begin() ran (the thread's op depth was raised)
  bool active_ = false;   // the outermost op: timed
  const char* op_ = nullptr;
  Device device_ = Device::CPU;
  void* stream_ = nullptr;  // cudaStream_t of a CUDA context
  int start_event_ = -1;    // cuda/timing_events.h index, -1: none (CPU, or a stream being captured)
  std::chrono::steady_clock::time_point t0_;

  void begin(const Ctx& ctx, const char* op);
  void end() noexcept;
};

}  // namespace sal
