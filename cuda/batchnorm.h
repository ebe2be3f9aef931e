// CUDA kernels: 2-D batch normalisation (per channel of NCHW), f32, same signatures and semantics
// as engine/cpu/batchnorm.h. Arguments are validated by engine/ops_norm.cpp; outputs are
// preallocated by the caller; dgamma / dbeta (nullable) are ACCUMULATED (+=).
#pragma once
#include "engine/ops.h"

namespace sal::cuda {

// x: [N,C,H,W]; gamma, beta, mean, var: [C] -> y: [N,C,H,W]
void batchnorm2d_infer(Ctx&, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                       const Tensor& var, double eps, Tensor& y);
// y = act(bn(x) + residual); residual (nullable): [N,C,H,W]
void batchnorm2d_infer_act(Ctx&, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                           const Tensor& var, double eps, const Tensor* residual, Activation act, Tensor& y);
// dy, x: [N,C,H,W] -> dx: [N,C,H,W]; dgamma, dbeta: [C] +=
void batchnorm2d_infer_backward(Ctx&, const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                const Tensor& var, double eps, Tensor& dx, Tensor* dgamma, Tensor* dbeta);
// dy, y: [N,C,H,W] -> dx = act'(y) * dy * gamma / sqrt(var + eps): [N,C,H,W] (no parameter gradients)
void batchnorm2d_infer_act_backward(Ctx&, const Tensor& dy, const Tensor& y, const Tensor& gamma, const Tensor& var,
                                    double eps, Activation act, Tensor& dx);
// x: [N,C,H,W] -> y: [N,C,H,W]; save_mean, save_invstd: [C] written; running_mean/var: [C] updated (nullable)
void batchnorm2d_train(Ctx&, const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps, double momentum,
                       Tensor* running_mean, Tensor* running_var, Tensor& save_mean, Tensor& save_invstd, Tensor& y);
// dy, x: [N,C,H,W]; save_mean, save_invstd: [C] -> dx: [N,C,H,W]; dgamma, dbeta: [C] +=
void batchnorm2d_train_backward(Ctx&, const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx, Tensor* dgamma,
                                Tensor* dbeta);

}  // namespace sal::cuda
