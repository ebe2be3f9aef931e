#include "engine/step_graph.h"

#include "engine/error.h"
#include "engine/host_io_guard.h"
#ifdef SAL_WITH_CUDA
#include "cuda/device.h"
#include "cuda/graph.h"
#endif

namespace sal {

StepGraph::StepGraph(const Ctx& ctx, bool capture) : ctx_(ctx), capture_(capture) {
  SAL_CHECK(ctx.arena, "StepGraph: the context needs an arena (the outputs must repeat their addresses)");
  SAL_CHECK(ctx.device == Device::CPU || ctx.cuda, "StepGraph: a CUDA context must come from a CudaDevice (a stream "
            "that can be captured)");
}

StepGraph::~StepGraph() { reset(); }

void StepGraph::reset() {
#ifdef SAL_WITH_CUDA
  cuda::destroy_graph(graph_);
#endif
  graph_ = nullptr;
  outputs_.clear();
  since_reset_ = 0;
}

const std::vector<Tensor>& StepGraph::run(const Fn& fn) {
  ++runs_;
  ++since_reset_;
  Arena& arena = *ctx_.arena;
#ifdef SAL_WITH_CUDA
  if (ctx_.device == Device::CUDA && capture_) {
    void* stream = static_cast<CudaDevice*>(ctx_.cuda)->stream();
    if (graph_) {
      cuda::launch_graph(graph_, stream);
      return outputs_;
    }
    arena.reset();
    if (since_reset_ == 1) {  // eager: sizes the arena, picks algorithms, creates library handles
      outputs_ = fn(ctx_);
      return outputs_;
    }
    const size_t growths = arena.growths();
    graph_ = cuda::capture_graph(stream, [&] {
      HostIoGuard guard("a StepGraph capture");
      outputs_ = fn(ctx_);
    });
    if (arena.growths() != growths) {  // a block allocated inside the capture would be freed by reset()
      reset();
      fail("StepGraph: the arena grew while capturing (the step does not allocate the same way every run)");
    }
    cuda::launch_graph(graph_, stream);
    return outputs_;
  }
#endif
  arena.reset();
  if (capture_ && since_reset_ > 1) {
    // What CUDA would capture: the same contract, checked here so that CPU runs catch a breach.
    HostIoGuard guard("a StepGraph step (run 2 on, where CUDA would capture it)");
    outputs_ = fn(ctx_);
  } else {
    outputs_ = fn(ctx_);
  }
  return outputs_;
}

}  // namespace sal
