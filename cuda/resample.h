// CUDA kernels: bilinear resizing (PyTorch align_corners=false) and pixel (un)shuffle, f32, same
// signatures and semantics as engine/cpu/resample.h. Arguments are validated (and output shapes
// computed) by engine/ops_resample.cpp.
#pragma once
#include "engine/context.h"

namespace sal::cuda {

// x: [N,C,H,W] -> y: [N,C,P,Q] (P, Q from y's shape)
void resize_bilinear(Ctx&, const Tensor& x, Tensor& y);
// dy: [N,C,P,Q] -> dx: [N,C,H,W] (H, W from dx's shape)
void resize_bilinear_backward(Ctx&, const Tensor& dy, Tensor& dx);
// x: [N,C*r*r,H,W] -> y: [N,C,H*r,W*r]
void pixel_shuffle(Ctx&, const Tensor& x, int r, Tensor& y);
// x: [N,C,H*r,W*r] -> y: [N,C*r*r,H,W]
void pixel_unshuffle(Ctx&, const Tensor& x, int r, Tensor& y);

}  // namespace sal::cuda
