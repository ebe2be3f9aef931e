// StepGraph: one computation run many times with the same shapes (masker inference on a stream of
// batches, a benchmark loop). On CUDA the first run() executes it eagerly (the arena finds its peak,
// the convolutions pick their algorithms), the second captures it as a CUDA graph and launches that,
// and every later run() only launches the graph: one launch instead of hundreds of kernel launches,
// which is what batch-1 latency is made of. On the CPU every run() simply calls fn.
//
// The contract of fn, which a capture enforces on CUDA (a breach is an error, not a wrong answer):
//   - it reads its inputs from tensors allocated once outside the arena (their contents may change
//     between runs, their storage may not), and takes everything else from the arena it is given;
//   - it copies nothing between host and device and reads nothing back (values(), item());
//   - it returns the output tensors; they live in the arena, at the same addresses on every run, and
//     stay valid until the next run().
// The host I/O part is enforced on every device from the second run on (engine/host_io_guard.h): on the
// CPU too, where fn is simply called, so a CPU test of a step shows its CUDA run can be captured.
// The arena belongs to the StepGraph: run() resets it, and nobody else may allocate from it.
#pragma once
#include <functional>
#include <vector>

#include "engine/arena.h"
#include "engine/context.h"

namespace sal {

namespace cuda {
struct GraphExec;
}

class StepGraph {
 public:
  using Fn = std::function<std::vector<Tensor>(Ctx&)>;
  // ctx: the context fn runs in; its arena is the StepGraph's. capture = false: every run() resets the
  // arena and calls fn, on CUDA too (a tool's --eager: the same code path without graphs).
  explicit StepGraph(const Ctx& ctx, bool capture = true);
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  // Runs fn (or replays its graph) and returns its outputs. Asynchronous on CUDA, like any op.
  const std::vector<Tensor>& run(const Fn& fn);
  // Forgets the graph: the next run() executes fn eagerly again (e.g. after the batch size changed).
  void reset();

  // The outputs of the last run() (empty before the first).
  const std::vector<Tensor>& outputs() const { return outputs_; }
  bool captured() const { return graph_ != nullptr; }
  long long runs() const { return runs_; }

 private:
  Ctx ctx_;
  bool capture_ = true;
  cuda::GraphExec* graph_ = nullptr;
  std::vector<Tensor> outputs_;
  long long runs_ = 0, since_reset_ = 0;
};

}  // namespace sal
