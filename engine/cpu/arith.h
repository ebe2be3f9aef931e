// CPU kernels: broadcasting arithmetic, reductions, channel concat/slice, embedding.
// Shapes, dtypes and devices are checked by engine/ops_arith.cpp; these write into outputs
// the caller allocated (embedding_backward accumulates into dtable).
#pragma once
#include <span>

#include "engine/context.h"

namespace sal::cpu {
// a, b broadcast (NumPy rules) to y's shape.
void add(Ctx&, const Tensor& a, const Tensor& b, Tensor& y);
void sub(Ctx&, const Tensor& a, const Tensor& b, Tensor& y);
void mul(Ctx&, const Tensor& a, const Tensor& b, Tensor& y);
void scale(Ctx&, const Tensor& x, double alpha, Tensor& y);
void axpy(Ctx&, double alpha, const Tensor& x, Tensor& y);  // y += alpha * x
// y has a shape that broadcasts to x's; y = x summed over the broadcast dimensions.
void sum_to(Ctx&, const Tensor& x, Tensor& y);
void sum(Ctx&, const Tensor& x, Tensor& y);   // y: [1]
void mean(Ctx&, const Tensor& x, Tensor& y);  // y: [1]
void concat_channels(Ctx&, std::span<const Tensor> xs, Tensor& y);
void slice_channels(Ctx&, const Tensor& x, int64_t begin, Tensor& y);  // y's channel count is the slice length
// Throw (naming the id) when an id is outside [0, V).
void embedding(Ctx&, const Tensor& table, const Tensor& ids, Tensor& y);
void embedding_backward(Ctx&, const Tensor& dy, const Tensor& ids, Tensor& dtable);
}  // namespace sal::cpu
