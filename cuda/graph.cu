#include "cuda/check.cuh"
#include "cuda/graph.h"

namespace sal::cuda {

struct GraphExec {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
};

GraphExec* capture_graph(void* stream, const std::function<void()>& fn) {
  const auto s = static_cast<cudaStream_t>(stream);
  SAL_CHECK(s != nullptr, "capture_graph: the legacy default stream cannot be captured (use a CudaDevice context)");
  SAL_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  try {
    fn();
  } catch (...) {
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(s, &g);  // closes the capture; its error (if any) is the one already thrown
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
    throw;
  }
  auto* out = new GraphExec;
  try {
    SAL_CUDA_CHECK(cudaStreamEndCapture(s, &out->graph));  // cudaErrorStreamCaptureInvalidated: see above
    SAL_CUDA_CHECK(cudaGraphInstantiate(&out->exec, out->graph, 0));
  } catch (...) {
    destroy_graph(out);
    throw;
  }
  return out;
}

void launch_graph(GraphExec* graph, void* stream) {
  SAL_CHECK(graph && graph->exec, "launch_graph: no instantiated graph");
  SAL_CUDA_CHECK(cudaGraphLaunch(graph->exec, static_cast<cudaStream_t>(stream)));
}

void destroy_graph(GraphExec* graph) {
  if (!graph) return;
  if (graph->exec) cudaGraphExecDestroy(graph->exec);
  if (graph->graph) cudaGraphDestroy(graph->graph);
  delete graph;
}

}  // namespace sal::cuda
