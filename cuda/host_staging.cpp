// Pinned staging memory for uploads. See cuda/host_staging.h.
#include "cuda/host_staging.h"

#include <algorithm>
#include <cstring>

#include "cuda/check.cuh"

namespace sal::cuda {

namespace {

constexpr size_t kAlign = 256;               // each upload starts on a 256-byte boundary (DMA-friendly)
constexpr size_t kMinBlock = size_t{1} << 20;  // 1 MiB

size_t round_up(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

char* alloc_pinned(size_t bytes) {
  void* p = nullptr;
  SAL_CUDA_CHECK(cudaHostAlloc(&p, bytes, cudaHostAllocDefault));
  return static_cast<char*>(p);
}

}  // namespace

HostStaging::HostStaging(void* stream) : stream_(stream) {
  cudaEvent_t ev = nullptr;
  SAL_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  done_ = ev;
}

HostStaging::~HostStaging() {
  if (pending_) cudaEventSynchronize(static_cast<cudaEvent_t>(done_));  // never throws: a destructor
  for (Block& b : blocks_) cudaFreeHost(b.ptr);
  if (done_) cudaEventDestroy(static_cast<cudaEvent_t>(done_));
}

size_t HostStaging::capacity() const {
  size_t n = 0;
  for (const Block& b : blocks_) n += b.size;
  return n;
}

void HostStaging::recycle() {
  if (blocks_.size() > 1) {  // the last step needed more than one block: one block of the total from now on
    const size_t total = capacity();
    for (Block& b : blocks_) cudaFreeHost(b.ptr);
    blocks_.clear();
    blocks_.push_back(Block{alloc_pinned(total), total});
    ++allocs_;
  }
  used_ = 0;
  pending_ = false;
}

void HostStaging::upload(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_);
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  SAL_CUDA_CHECK(cudaStreamIsCapturing(stream, &capturing));
  SAL_CHECK(capturing == cudaStreamCaptureStatusNone,
            "upload during CUDA graph capture: a replay would copy stale staging memory (upload the step's "
            "inputs before running it; engine/step_graph.h)");
  if (pending_) {
    const cudaError_t q = cudaEventQuery(static_cast<cudaEvent_t>(done_));
    if (q == cudaSuccess) {
      recycle();
    } else if (q != cudaErrorNotReady) {
      SAL_CUDA_CHECK(q);
    }
  }
  const size_t need = round_up(bytes);
  if (blocks_.empty() || used_ + need > blocks_.back().size) {
    // In-flight copies may still read the current blocks: add one (twice what is held, at least 1 MiB).
    const size_t size = std::max({need, 2 * capacity(), kMinBlock});
    blocks_.push_back(Block{alloc_pinned(size), size});
    ++allocs_;
    used_ = 0;
  }
  char* stage = blocks_.back().ptr + used_;
  used_ += need;
  std::memcpy(stage, src, bytes);
  SAL_CUDA_CHECK(cudaMemcpyAsync(dst, stage, bytes, cudaMemcpyHostToDevice, stream));
  SAL_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(done_), stream));
  pending_ = true;
}

}  // namespace sal::cuda
