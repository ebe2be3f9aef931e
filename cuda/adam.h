// CUDA kernel of the Adam update (optim/adam.cpp validates and dispatches), f32 only.
#pragma once
#include "engine/context.h"

namespace sal::cuda {

// The step's constants, computed on the host in double exactly as the CPU kernel does.
struct AdamScalars {
  float b1, b2;        // beta1, beta2
  float c_b1, c_b2;    // 1 - beta1, 1 - beta2 (in double before rounding)
  float lr_t;          // lr / (1 - beta1^t)
  float inv_sqrt_c2;   // 1 / sqrt(1 - beta2^t)
  float eps, decay;    // eps, lr * weight_decay
};

// w, g, m, v: [P] (any shape, same numel); m, v, w updated in place.
void adam_update(Ctx&, Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const AdamScalars& s);

}  // namespace sal::cuda
