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

void CudaDevice::synchronize() const { SAL_CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_))); }

}  // namespace sal
