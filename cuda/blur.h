// CUDA kernels: separable Gaussian blur of every plane with reflect padding, and its adjoint, f32,
// same signatures and semantics as engine/cpu/blur.h. Arguments (odd ksize, sigma > 0) are
// validated by engine/ops_blur.cpp; ksize is limited to kMaxBlurTaps here.
#pragma once
#include "engine/context.h"

namespace sal::cuda {

constexpr int kMaxBlurTaps = 255;

// x: [N,C,H,W] -> y: [N,C,H,W]
void gaussian_blur(Ctx&, const Tensor& x, double sigma, int ksize, Tensor& y);
// dy: [N,C,H,W] -> dx: [N,C,H,W] (the transpose of the linear map gaussian_blur applies)
void gaussian_blur_backward(Ctx&, const Tensor& dy, double sigma, int ksize, Tensor& dx);

}  // namespace sal::cuda
