// CUDA kernels: 2-D max / average pooling and global average pooling, f32, forward and backward,
// same signatures and semantics as engine/cpu/pool.h. Arguments are validated (and output
// shapes computed) by engine/ops_pool.cpp.
#pragma once
#include "engine/ops.h"

namespace sal::cuda {

// x: [N,C,H,W] -> y: [N,C,P,Q]
void max_pool2d(Ctx&, const Tensor& x, const Pool2dArgs& a, Tensor& y);
// dy: [N,C,P,Q], x: [N,C,H,W] -> dx: [N,C,H,W]
void max_pool2d_backward(Ctx&, const Tensor& dy, const Tensor& x, const Pool2dArgs& a, Tensor& dx);
// x: [N,C,H,W] -> y: [N,C,P,Q]
void avg_pool2d(Ctx&, const Tensor& x, const Pool2dArgs& a, Tensor& y);
// dy: [N,C,P,Q] -> dx: [N,C,H,W]
void avg_pool2d_backward(Ctx&, const Tensor& dy, const Pool2dArgs& a, Tensor& dx);
// x: [N,C,H,W] -> y: [N,C,1,1]
void global_avg_pool(Ctx&, const Tensor& x, Tensor& y);
// dy: [N,C,1,1] -> dx: [N,C,H,W]
void global_avg_pool_backward(Ctx&, const Tensor& dy, Tensor& dx);

}  // namespace sal::cuda
