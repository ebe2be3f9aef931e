// The per-channel scale of an inference batch norm, gamma / sqrt(var + eps), computed in double and rounded once
// to f32: the one text of it on CUDA, for the batch-norm kernels (cuda/batchnorm.cu), the custom convolutions'
// epilogue (cuda/conv_igemm.cu) and the fold into a convolution's weights (cuda/conv_bn_fold.h), so that all of
// them scale by the same float (the CPU's batch norm and conv epilogue compute the same expression).
#pragma once
#include <cmath>

#include "engine/host_device.h"

namespace sal::cuda {

SAL_HD float bn_infer_scale(float gamma, float var, double eps) {
  return static_cast<float>(static_cast<double>(gamma) / sqrt(static_cast<double>(var) + eps));
}

}  // namespace sal::cuda
