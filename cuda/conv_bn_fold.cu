// The fold of a frozen batch norm into the convolution's weights and a bias (cuda/conv_bn_fold.h), for cuDNN's
// fused convolution + bias + activation. Memory-bound and small (the weights once, e.g. 2.4 M floats for
// ResNet-50's largest 3x3 layer); the per-output-channel scale is recomputed per element in double, which costs
// nothing here and keeps the formula in one place.
#include "cuda/conv_bn_fold.h"

#include "cuda/launch.cuh"

namespace sal::cuda {

namespace {

// w: [K, crs] -> wf: [K, crs], bf: [K]; grid-stride over the K * crs elements.
__global__ void bn_fold_kernel(const float* __restrict__ w, const float* __restrict__ gamma,
                               const float* __restrict__ beta, const float* __restrict__ mean,
                               const float* __restrict__ var, double eps, long long total, long long crs,
                               float* __restrict__ wf, float* __restrict__ bf) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x)
    bn_fold_element(i, crs, w, gamma, beta, mean, var, eps, wf, bf);
}

}  // namespace

void bn_fold_conv_weights(Ctx& ctx, const float* w, const float* gamma, const float* beta, const float* mean,
                          const float* var, double eps, int64_t K, int64_t crs, float* wf, float* bf) {
  const long long total = K * crs;
  if (total == 0) return;
  bn_fold_kernel<<<grid_for(total), 256, 0, stream_of(ctx)>>>(w, gamma, beta, mean, var, eps, total, crs, wf, bf);
  SAL_CUDA_LAUNCH_CHECK("batch-norm fold into conv weights");
}

}  // namespace sal::cuda
