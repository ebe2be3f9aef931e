// CPU kernels: convolution, transposed convolution and linear. Shapes, dtypes and devices are
// checked by engine/ops_conv.cpp; these write into preallocated outputs. Input gradients (dx)
// are overwritten, parameter gradients (dw, db) are ACCUMULATED (+=).
#pragma once
#include "engine/context.h"
#include "engine/ops.h"

namespace sal::cpu {

// x:[N,C,H,W] w:[K,C/g,R,S] b:[K] (nullable) -> y:[N,K,P,Q]
void conv2d(Ctx&, const Tensor& x, const Tensor& w, const Tensor* b, const Conv2dArgs& a, Tensor& y);
// y = act(batchnorm2d_infer(conv(x, w)) + residual); residual:[N,K,P,Q] nullable. The epilogue runs on
// each block of output rows right after its GEMM (still in cache), not as a pass of its own, with
// batchnorm2d_infer_act's arithmetic (the same result bit for bit).
void conv2d_bn_act(Ctx&, const Tensor& x, const Tensor& w, const ConvBn& bn, const Tensor* residual, Activation act,
                   const Conv2dArgs& a, Tensor& y);
// dy:[N,K,P,Q] w:[K,C/g,R,S] -> dx:[N,C,H,W]
void conv2d_dgrad(Ctx&, const Tensor& dy, const Tensor& w, const Conv2dArgs& a, Tensor& dx);
// dy, gate.y:[N,K,P,Q] w:[K,C/g,R,S] -> dx:[N,C,H,W] = conv2d_dgrad(batchnorm2d_infer_act_backward(dy, ...)), the
// gate applied to each block of dy rows as it is gathered for the GEMM (bit-equal to the two ops)
void conv2d_dgrad_bn_act(Ctx&, const Tensor& dy, const Tensor& w, const ConvBnGate& gate, const Conv2dArgs& a,
                         Tensor& dx);
// dy:[N,K,P,Q] x:[N,C,H,W] -> dw:[K,C/g,R,S] +=, db:[K] += (nullable)
void conv2d_wgrad(Ctx&, const Tensor& dy, const Tensor& x, const Conv2dArgs& a, Tensor& dw, Tensor* db);

// x:[N,C,H,W] w:[C,K/g,R,S] b:[K] (nullable) -> y:[N,K,P,Q] (the conv2d input-gradient of x)
void conv_transpose2d(Ctx&, const Tensor& x, const Tensor& w, const Tensor* b, const ConvTranspose2dArgs& a,
                      Tensor& y);
// dy:[N,K,P,Q] w:[C,K/g,R,S] -> dx:[N,C,H,W] (a conv2d of dy)
void conv_transpose2d_dgrad(Ctx&, const Tensor& dy, const Tensor& w, const ConvTranspose2dArgs& a, Tensor& dx);
// dy:[N,K,P,Q] x:[N,C,H,W] -> dw:[C,K/g,R,S] +=, db:[K] += (nullable)
void conv_transpose2d_wgrad(Ctx&, const Tensor& dy, const Tensor& x, const ConvTranspose2dArgs& a, Tensor& dw,
                            Tensor* db);

// x:[N,K] w:[M,K] b:[M] (nullable) -> y:[N,M]
void linear(Ctx&, const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y);
// dy:[N,M] w:[M,K] -> dx:[N,K]
void linear_dgrad(Ctx&, const Tensor& dy, const Tensor& w, Tensor& dx);
// dy:[N,M] x:[N,K] -> dw:[M,K] +=, db:[M] += (nullable)
void linear_wgrad(Ctx&, const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db);

}  // namespace sal::cpu
