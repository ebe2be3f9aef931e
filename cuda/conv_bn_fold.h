// A frozen batch norm folded into the convolution before it, for cuDNN's fused convolution + bias + activation
// (cudnn_conv_bias_act_forward, cuda/cudnn_conv.h), which has a bias but no per-channel scale:
//   bn(conv(x, w)) = (conv(x, w) - mean) * s + beta = conv(x, w * s) + (beta - mean * s),  s = gamma / sqrt(var + eps)
// per output channel k: row k of w [K, C/G*R*S] is scaled by s[k]. Equal in exact arithmetic; in f32 the products
// w * s are one more rounding (masks move by 1e-6 relative L2), in TF32, where Auto uses the fold
// (cuda/conv_backend.h), the folded weights round differently from w (bench/RESULTS.md has both measured). The
// per-element formula is written once here, for the kernel (cuda/conv_bn_fold.cu) and for the CPU test that checks
// it against conv2d_bn_act (tests/test_conv_bn_fold.cpp).
#pragma once
#include <cmath>
#include <cstdint>

#include "cuda/bn_infer_scale.h"
#include "engine/context.h"
#include "engine/host_device.h"

namespace sal::cuda {

// Element i of the folded weights wf [K, crs] and, for the first element of a row, that row's bias bf[k]
// (beta - mean * s in double, rounded once; s = bn_infer_scale, the batch-norm kernels' scale). w: [K, crs];
// gamma, beta, mean, var: [K].
SAL_HD void bn_fold_element(int64_t i, int64_t crs, const float* w, const float* gamma, const float* beta,
                            const float* mean, const float* var, double eps, float* wf, float* bf) {
  const int64_t k = i / crs;
  const float s = bn_infer_scale(gamma[k], var[k], eps);
  wf[i] = w[i] * s;
  if (i - k * crs == 0)
    bf[k] = static_cast<float>(static_cast<double>(beta[k]) - static_cast<double>(mean[k]) * static_cast<double>(s));
}

// wf, bf = the fold of (w [K, crs], the batch norm's gamma, beta, mean, var [K], eps), one kernel on ctx's stream
// (CUDA builds only; device pointers).
void bn_fold_conv_weights(Ctx& ctx, const float* w, const float* gamma, const float* beta, const float* mean,
                          const float* var, double eps, int64_t K, int64_t crs, float* wf, float* bf);

}  // namespace sal::cuda
