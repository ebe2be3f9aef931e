// CPU kernels: softmax, log-softmax, cross-entropy, and the mask regularisers (total
// variation, area). Shapes, dtypes and devices are checked by engine/ops_loss.cpp; data-dependent
// errors (a label out of range, a non-positive base of a fractional power) are raised here.
#pragma once
#include "engine/context.h"

namespace sal::cpu {
// Over the last dimension of [N,K].
void softmax(Ctx&, const Tensor& logits, Tensor& y);
void softmax_backward(Ctx&, const Tensor& dy, const Tensor& y, Tensor& dx);       // y * (dy - <dy, y>)
void log_softmax(Ctx&, const Tensor& logits, Tensor& y);
void log_softmax_backward(Ctx&, const Tensor& dy, const Tensor& y, Tensor& dx);   // dy - exp(y) * sum(dy)
// logits: [N,K], labels: i32[N] -> loss: [N]; backward: dlogits = (softmax - onehot) * dloss[n].
void cross_entropy(Ctx&, const Tensor& logits, const Tensor& labels, Tensor& loss);
void cross_entropy_backward(Ctx&, const Tensor& dloss, const Tensor& logits, const Tensor& labels, Tensor& dlogits);
// m: [N,1,H,W] -> loss: [N]; backward: dloss [N] -> dm [N,1,H,W].
void tv_loss(Ctx&, const Tensor& m, double border_weight, Tensor& loss);
void tv_loss_backward(Ctx&, const Tensor& dloss, const Tensor& m, double border_weight, Tensor& dm);
void area_loss(Ctx&, const Tensor& m, double power, double eps, Tensor& loss);
void area_loss_backward(Ctx&, const Tensor& dloss, const Tensor& m, double power, double eps, Tensor& dm);
}  // namespace sal::cpu
