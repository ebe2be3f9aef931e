// Release hooks of the library wrappers (each library is wrapped in one translation unit:
// cuBLAS in cuda/cublas_gemm.cpp, cuDNN in cuda/cudnn_conv.cpp). Called by ~CudaDevice.
#pragma once

namespace sal {
class CudaDevice;
namespace cuda {
void release_cublas(CudaDevice& dev);
void release_cudnn(CudaDevice& dev);
}  // namespace cuda
}  // namespace sal
