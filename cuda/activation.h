// CUDA kernels: elementwise activations (same signatures as engine/cpu/activation.h).
#pragma once
#include "engine/context.h"

namespace sal::cuda {
void relu(Ctx&, const Tensor& x, Tensor& y);
void relu_backward(Ctx&, const Tensor& dy, const Tensor& y, Tensor& dx);
void relu6(Ctx&, const Tensor& x, Tensor& y);
void relu6_backward(Ctx&, const Tensor& dy, const Tensor& x, Tensor& dx);
void sigmoid(Ctx&, const Tensor& x, Tensor& y);
void sigmoid_backward(Ctx&, const Tensor& dy, const Tensor& y, Tensor& dx);
}  // namespace sal::cuda
