#include <cstring>

#include "cuda/check.cuh"
#include "cuda/device.h"
#include "cuda/host_staging.h"
#include "cuda/launch.cuh"
#include "cuda/libraries.h"
#include "cuda/runtime.h"

namespace sal {

CudaDevice::CudaDevice(int ordinal) : ordinal_(ordinal) {
  int n = cuda::device_count();
  SAL_CHECK(ordinal >= 0 && ordinal < n, "CudaDevice(", ordinal, "): ", n, " CUDA device(s) present");
  SAL_CUDA_CHECK(cudaSetDevice(ordinal));
  cudaDeviceProp prop{};
  SAL_CUDA_CHECK(cudaGetDeviceProperties(&prop, ordinal));
  std::strncpy(name_, prop.name, sizeof(name_) - 1);
  cudaStream_t s = nullptr;
  // A blocking stream: it orders itself after the legacy default stream, which Tensor::zero()
  // and the explicit copies (no Ctx, hence no stream) use.
  SAL_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamDefault));
  stream_ = s;
}

CudaDevice::~CudaDevice() {
  staging_.reset();  // waits for its copies, while the stream still exists
  copy_staging_.reset();
  if (compute_mark_) cudaEventDestroy(static_cast<cudaEvent_t>(compute_mark_));
  if (copies_done_) cudaEventDestroy(static_cast<cudaEvent_t>(copies_done_));
  if (copy_stream_) cudaStreamDestroy(static_cast<cudaStream_t>(copy_stream_));
  cuda::release_cublas(*this);
  cuda::release_cudnn(*this);
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

Ctx CudaDevice::ctx(Arena* arena) {
  Ctx c(Device::CUDA, arena);
  c.cuda = this;
  return c;
}

void CudaDevice::upload(void* dst, const void* src, size_t bytes) {
  if (!staging_) staging_ = std::make_unique<cuda::HostStaging>(stream_);
  staging_->upload(dst, src, bytes);
}

void CudaDevice::make_copy_stream() {
  if (copy_stream_) return;
  SAL_CUDA_CHECK(cudaSetDevice(ordinal_));
  cudaStream_t s = nullptr;
  // Non-blocking: it must not wait for the legacy default stream (nor the compute stream, which waits
  // for that); the handshakes order it where it matters.
  SAL_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  copy_stream_ = s;
  cudaEvent_t a = nullptr, b = nullptr;
  SAL_CUDA_CHECK(cudaEventCreateWithFlags(&a, cudaEventDisableTiming));
  SAL_CUDA_CHECK(cudaEventCreateWithFlags(&b, cudaEventDisableTiming));
  compute_mark_ = a;
  copies_done_ = b;
  copy_staging_ = std::make_unique<cuda::HostStaging>(copy_stream_);
}

void CudaDevice::upload_on_copy_stream(void* dst, const void* src, size_t bytes) {
  make_copy_stream();
  copy_staging_->upload(dst, src, bytes);
}

namespace {

// The copy-stream handshakes order work that really runs: inside a capture the compute stream's record and
// wait would become graph nodes unrelated to the copy stream's work (or fail as a cross-capture wait).
void refuse_while_capturing(void* stream, const char* what) {
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  SAL_CUDA_CHECK(cudaStreamIsCapturing(static_cast<cudaStream_t>(stream), &capturing));
  SAL_CHECK(capturing == cudaStreamCaptureStatusNone, "CudaDevice::", what,
            " during CUDA graph capture: the copy-stream handshake runs between replays, not inside one");
}

}  // namespace

void CudaDevice::mark_compute() {
  make_copy_stream();
  refuse_while_capturing(stream_, "mark_compute");
  SAL_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(compute_mark_), static_cast<cudaStream_t>(stream_)));
}

void CudaDevice::copy_waits_for_mark() {
  make_copy_stream();
  SAL_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(copy_stream_), static_cast<cudaEvent_t>(compute_mark_), 0));
}

void CudaDevice::compute_waits_for_copies() {
  make_copy_stream();
  refuse_while_capturing(stream_, "compute_waits_for_copies");
  SAL_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(copies_done_), static_cast<cudaStream_t>(copy_stream_)));
  SAL_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream_), static_cast<cudaEvent_t>(copies_done_), 0));
}

void CudaDevice::synchronize() const { SAL_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_))); }

}  // namespace sal
