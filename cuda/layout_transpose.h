// Batched matrix transpose on the device: the layout change between NCHW and NHWC (and KCRS filters to KRSC).
// The engine runs NCHW throughout; this feeds cuDNN's NHWC kernels (cuda/cudnn_conv.h's CudnnLayout) where Auto's
// NHWC candidate runs them (cuda/conv_nhwc.h), and bench/conv_cuda_bench times what the conversions cost.
#pragma once
#include <cstdint>

#include "engine/context.h"

namespace sal::cuda {

// x: [batch, rows, cols] -> y: [batch, cols, rows], each matrix transposed; x and y must not overlap.
//   NCHW -> NHWC: (batch, rows, cols) = (N, C, H*W);   NHWC -> NCHW: (N, H*W, C);
//   a filter KCRS -> KRSC: (K, C/G, R*S).
// One kernel on ctx's stream (device pointers); batch and ceil(rows / 32) at most 65535 each (an error names the
// sizes otherwise).
void batched_transpose(Ctx& ctx, const float* x, int64_t batch, int64_t rows, int64_t cols, float* y);

}  // namespace sal::cuda
