// CPU kernels: elementwise activations. Shapes are checked by engine/ops_activation.cpp.
#pragma once
#include "engine/context.h"

namespace sal::cpu {
void relu(Ctx&, const Tensor& x, Tensor& y);
void relu_backward(Ctx&, const Tensor& dy, const Tensor& y, Tensor& dx);
void relu6(Ctx&, const Tensor& x, Tensor& y);
void relu6_backward(Ctx&, const Tensor& dy, const Tensor& x, Tensor& dx);
void sigmoid(Ctx&, const Tensor& x, Tensor& y);
void sigmoid_backward(Ctx&, const Tensor& dy, const Tensor& y, Tensor& dx);
}  // namespace sal::cpu
