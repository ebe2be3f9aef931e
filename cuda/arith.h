// CUDA kernels: broadcasting arithmetic, reductions, channel concat/slice, embedding (same
// signatures as engine/cpu/arith.h; f32 only). Shapes are checked by engine/ops_arith.cpp.
#pragma once
#include <span>

#include "engine/context.h"

namespace sal::cuda {
// a, b broadcast (NumPy rules) to y's shape.
void add(Ctx&, const Tensor& a, const Tensor& b, Tensor& y);
void sub(Ctx&, const Tensor& a, const Tensor& b, Tensor& y);
void mul(Ctx&, const Tensor& a, const Tensor& b, Tensor& y);
void scale(Ctx&, const Tensor& x, double alpha, Tensor& y);
void axpy(Ctx&, double alpha, const Tensor& x, Tensor& y);  // y += alpha * x
// y has a shape that broadcasts to x's; y = x summed over the broadcast dimensions (deterministic).
void sum_to(Ctx&, const Tensor& x, Tensor& y);
void sum(Ctx&, const Tensor& x, Tensor& y);   // y: [1], deterministic two-pass
void mean(Ctx&, const Tensor& x, Tensor& y);  // y: [1]
void concat_channels(Ctx&, std::span<const Tensor> xs, Tensor& y);
void slice_channels(Ctx&, const Tensor& x, int64_t begin, Tensor& y);
// An id outside [0, V) cannot throw from a kernel: its row of y is NaN.
void embedding(Ctx&, const Tensor& table, const Tensor& ids, Tensor& y);
// Deterministic (no atomics). An id outside [0, V) makes row 0 of dtable NaN.
void embedding_backward(Ctx&, const Tensor& dy, const Tensor& ids, Tensor& dtable);
}  // namespace sal::cuda
