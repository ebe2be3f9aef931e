// HostStaging: page-locked (pinned) host memory through which a CudaDevice uploads host tensors.
// A copy from pageable memory (cudaMemcpy) first goes through a driver bounce buffer and returns only
// when the data has left the caller's memory; a copy from pinned memory is one DMA, queued on the
// device's stream with cudaMemcpyAsync. upload() copies the source into staging memory on the host
// (so the caller may reuse it at once) and queues the DMA behind the work already on the stream.
//
// Staging memory is handed out as a bump allocator over pinned blocks and reused once every copy
// queued so far has finished (an event recorded after the last one; checked without waiting at the
// next upload). A training step uploads a batch and a few small tensors and reads its losses back
// (which waits for the stream), so from the second step on every upload finds the memory free and the
// blocks have merged into one of the step's size: no allocation in the steady state. An upload during
// CUDA graph capture is an error: the graph would replay the DMA of stale staging memory.
//
// Plain C++ header (no CUDA types). One per CudaDevice, used from that device's thread.
#pragma once
#include <cstddef>
#include <vector>

namespace sal::cuda {

class HostStaging {
 public:
  explicit HostStaging(void* stream);  // cudaStream_t the copies are queued on
  ~HostStaging();                      // waits for the queued copies, then frees the blocks
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;

  // dst (device memory) <- bytes of host memory at src, asynchronously on the stream.
  void upload(void* dst, const void* src, size_t bytes);

  size_t capacity() const;                      // pinned bytes held now
  size_t allocations() const { return allocs_; }  // pinned blocks allocated so far (for tests)

 private:
  struct Block {
    char* ptr = nullptr;
    size_t size = 0;
  };
  void* stream_ = nullptr;
  void* done_ = nullptr;  // cudaEvent_t recorded after the last queued copy
  bool pending_ = false;  // copies queued since the memory was last free
  std::vector<Block> blocks_;
  size_t used_ = 0;  // bytes handed out from the last block
  size_t allocs_ = 0;

  void recycle();  // every copy has finished: merge the blocks into one, hand out from its start
};

}  // namespace sal::cuda
