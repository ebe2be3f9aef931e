// The timing event pool of cuda/timing_events.h: events created with timing enabled, handed out in
// order and all reused after a clear. Guarded by a mutex (ops may run on several threads).
#include "cuda/timing_events.h"

#include <cuda_runtime.h>

#include <mutex>
#include <vector>

#include "cuda/check.cuh"

namespace sal::cuda {

namespace {

std::mutex g_mu;
std::vector<cudaEvent_t>& pool() {
  static auto* events = new std::vector<cudaEvent_t>();  // never destroyed: the runtime may be gone at exit
  return *events;
}
size_t g_used = 0;

}  // namespace

int timing_event_record(void* stream) {
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  SAL_CUDA_CHECK(cudaStreamIsCapturing(s, &capturing));
  if (capturing != cudaStreamCaptureStatusNone) return -1;
  std::lock_guard<std::mutex> lock(g_mu);
  std::vector<cudaEvent_t>& events = pool();
  if (g_used == events.size()) {
    cudaEvent_t ev = nullptr;
    SAL_CUDA_CHECK(cudaEventCreate(&ev));
    events.push_back(ev);
  }
  const size_t i = g_used++;
  SAL_CUDA_CHECK(cudaEventRecord(events[i], s));
  return static_cast<int>(i);
}

float timing_event_elapsed_ms(int start, int stop) {
  cudaEvent_t a, b;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    a = pool().at(static_cast<size_t>(start));
    b = pool().at(static_cast<size_t>(stop));
  }
  SAL_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  SAL_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  return ms;
}

void timing_events_clear() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_used = 0;
}

}  // namespace sal::cuda
