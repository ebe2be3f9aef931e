// CUDA linear layer (same signatures as engine/cpu/conv.h's linear functions): the GEMMs through
// cuBLAS (cuda/cublas_gemm.h) in full f32 (no TF32: these layers are small here, a classifier or
// an embedding projection, and full precision keeps their logits and gradients as the CPU's),
// the bias add and the deterministic bias-gradient reduction from cuda/conv_igemm.h.
#pragma once
#include "engine/context.h"

namespace sal::cuda {

// x:[N,K] w:[M,K] b:[M] (nullable) -> y:[N,M] = x w^T + b
void linear(Ctx&, const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y);
// dy:[N,M] w:[M,K] -> dx:[N,K] = dy w
void linear_dgrad(Ctx&, const Tensor& dy, const Tensor& w, Tensor& dx);
// dy:[N,M] x:[N,K] -> dw:[M,K] += dy^T x, db:[M] += column sums of dy (nullable)
void linear_wgrad(Ctx&, const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db);

}  // namespace sal::cuda
