// CUDA kernel of the Adam update (optim/adam.cpp validates and dispatches), f32 only.
#pragma once
#include "engine/context.h"

namespace sal::cuda {

// w, g, m, v: [P] (any shape, same numel); m, v, w updated in place. constants: device memory, the 8
// floats of optim/adam.h's adam_constants, read by the kernel (so a captured graph sees new ones).
void adam_update(Ctx&, Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const float* constants);

}  // namespace sal::cuda
