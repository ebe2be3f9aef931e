#include "cuda/check.cuh"
#include "cuda/launch.cuh"
#include "cuda/runtime.h"

namespace sal::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error so later checks are not confused
    return 0;
  }
  return n;
}

void* malloc_device(size_t bytes) {
  void* p = nullptr;
  SAL_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void free_device(void* ptr) { cudaFree(ptr); }  // never throws: called from destructors

void copy(void* dst, bool dst_on_device, const void* src, bool src_on_device, size_t bytes) {
  cudaMemcpyKind kind = dst_on_device ? (src_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                      : (src_on_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  SAL_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
}

void memset_zero(void* ptr, size_t bytes) { SAL_CUDA_CHECK(cudaMemset(ptr, 0, bytes)); }

void memset_zero_async(void* ptr, size_t bytes, void* stream) {
  SAL_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, static_cast<cudaStream_t>(stream)));
}

void copy_device_async(void* dst, const void* src, size_t bytes, void* stream) {
  SAL_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(stream)));
}

void synchronize() { SAL_CUDA_CHECK(cudaDeviceSynchronize()); }

int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();  // clear the error: the fallback is used instead
      v = 0;
    }
    return v > 0 ? v : 132;
  }();
  return n;
}

}  // namespace sal::cuda
