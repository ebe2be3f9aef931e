// CudaDevice: the CUDA backend's per-device state: the device ordinal, one stream that every
// kernel and library call of a Ctx runs on, and the cuBLAS / cuDNN handles (created lazily by
// their wrappers, each in its own translation unit). A Ctx on Device::CUDA points to one through
// Ctx::cuda; a CUDA Ctx without one runs on the legacy default stream of device 0. Uploads go
// through pinned staging memory, asynchronously on the stream (cuda/host_staging.h).
//
// This header is plain C++ (no CUDA types), so engine code compiled by g++ can use it.
#pragma once
#include <cstddef>
#include <memory>

#include "engine/context.h"

namespace sal {

namespace cuda {
class HostStaging;
}

class CudaDevice {
 public:
  explicit CudaDevice(int ordinal = 0);
  ~CudaDevice();
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;

  // A context whose ops run on this device's stream, outputs from `arena` (a CUDA arena) or owning.
  Ctx ctx(Arena* arena = nullptr);
  void synchronize() const;  // waits for the stream; throws on an asynchronous kernel error
  int ordinal() const { return ordinal_; }
  void* stream() const { return stream_; }  // cudaStream_t
  const char* name() const { return name_; }
  // dst (device memory) <- bytes at host src, queued on the stream through pinned staging memory (the
  // caller may reuse src at once). Created on first use; not during a CUDA graph capture.
  void upload(void* dst, const void* src, size_t bytes);
  const cuda::HostStaging* staging() const { return staging_.get(); }  // null before the first upload

  // Uploads that overlap the kernels: the same through a second stream (the copy stream, with staging
  // memory of its own), ordered with the compute stream only through the two handshakes below. For a
  // buffer the compute stream reads: mark_compute() after the work that reads the old contents, then
  // copy_waits_for_mark() and upload_on_copy_stream() for the new ones, then compute_waits_for_copies()
  // before the work that reads them. Created on first use; not during a CUDA graph capture.
  void upload_on_copy_stream(void* dst, const void* src, size_t bytes);
  void mark_compute();              // an event at this point of the compute stream's queue
  void copy_waits_for_mark();       // the copy stream's later work waits for that event
  void compute_waits_for_copies();  // the compute stream's later work waits for the copies queued so far

  // Library handles, created on first use by cuda/cublas_gemm.cpp and cuda/cudnn_conv.cpp.
  void* cublas = nullptr;
  void* cublas_workspace = nullptr;  // device memory cuBLAS works in (set on the handle: no allocation in a capture)
  void* cudnn = nullptr;

 private:
  int ordinal_ = 0;
  void* stream_ = nullptr;
  char name_[256] = {};
  std::unique_ptr<cuda::HostStaging> staging_;
  void* copy_stream_ = nullptr;                      // cudaStream_t, created by the first copy-stream call
  void* compute_mark_ = nullptr;                     // cudaEvent_t recorded by mark_compute()
  void* copies_done_ = nullptr;                      // cudaEvent_t recorded after the copy stream's work
  std::unique_ptr<cuda::HostStaging> copy_staging_;  // destroyed before the copy stream
  void make_copy_stream();
};

}  // namespace sal
