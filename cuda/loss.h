// CUDA kernels: softmax, log-softmax, cross-entropy, and the mask regularisers (total variation,
// area); same signatures as engine/cpu/loss.h, f32 only. Shapes are checked by
// engine/ops_loss.cpp. Data-dependent errors cannot be thrown from a kernel: a label outside
// [0, K) makes that sample's loss (or gradient row) NaN, and so does a base m + eps <= 0 of a
// non-integer area power (the whole sample's loss, or that pixel's gradient).
#pragma once
#include "engine/context.h"

namespace sal::cuda {
// Over the last dimension of [N,K].
void softmax(Ctx&, const Tensor& logits, Tensor& y);
void softmax_backward(Ctx&, const Tensor& dy, const Tensor& y, Tensor& dx);
void log_softmax(Ctx&, const Tensor& logits, Tensor& y);
void log_softmax_backward(Ctx&, const Tensor& dy, const Tensor& y, Tensor& dx);
void cross_entropy(Ctx&, const Tensor& logits, const Tensor& labels, Tensor& loss);
void cross_entropy_backward(Ctx&, const Tensor& dloss, const Tensor& logits, const Tensor& labels, Tensor& dlogits);
// m: [N,1,H,W] -> loss: [N] (deterministic per-sample reductions); backward: dloss [N] -> dm.
void tv_loss(Ctx&, const Tensor& m, double border_weight, Tensor& loss);
void tv_loss_backward(Ctx&, const Tensor& dloss, const Tensor& m, double border_weight, Tensor& dm);
void area_loss(Ctx&, const Tensor& m, double power, double eps, Tensor& loss);
void area_loss_backward(Ctx&, const Tensor& dloss, const Tensor& m, double power, double eps, Tensor& dm);
}  // namespace sal::cuda
