// CUDA graphs: record the kernels a piece of host code launches on one stream, then replay them
// with a single launch. Plain C++ header (no CUDA types), used by engine/step_graph.cpp.
#pragma once
#include <functional>

namespace sal::cuda {

struct GraphExec;  // an instantiated graph (cudaGraphExec_t and its cudaGraph_t)

// Runs fn with `stream` (a cudaStream_t) in capture mode: nothing executes, every kernel, library
// call and async copy fn issues on that stream is recorded, then instantiated. The capture is
// thread-local and strict, so a synchronous copy, allocation or host read on this thread inside fn is
// an error naming the failed call, never a silently missing step. Throws and leaves no capture open
// when fn throws or the capture is invalidated.
GraphExec* capture_graph(void* stream, const std::function<void()>& fn);
void launch_graph(GraphExec* graph, void* stream);  // asynchronous on `stream`
void destroy_graph(GraphExec* graph);               // null is fine

}  // namespace sal::cuda
