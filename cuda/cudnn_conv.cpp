// The cuDNN wrapper (the only translation unit that includes cudnn.h): the handle of a
// CudaDevice. The convolution entry points (forward, data and filter gradients, algorithm
// choice cached per shape) belong here too.
#include <cudnn.h>

#include "cuda/device.h"
#include "cuda/libraries.h"

namespace sal::cuda {

void release_cudnn(CudaDevice& dev) {
  if (dev.cudnn) cudnnDestroy(static_cast<cudnnHandle_t>(dev.cudnn));
  dev.cudnn = nullptr;
}

}  // namespace sal::cuda
