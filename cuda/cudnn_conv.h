// cuDNN convolutions (cuda/cudnn_conv.cpp, the only translation unit that includes cudnn.h):
// forward, backward data and backward filter of one convolution in its conv2d orientation
// (cuda/conv_igemm.h's ConvGeom), f32 tensors, TF32 tensor-core math allowed (cuDNN's default on
// Ampere and later) or, when ConvGeom::tf32 is false, FMA kernels only (CUDNN_FMA_MATH). The
// algorithm of each (pass, shape, math) is chosen once with cuDNN's heuristics
// (cudnnGetConvolution*Algorithm_v7: no trial runs, no synchronisation), preferring deterministic
// algorithms for the two gradients, and cached with its descriptors; workspaces come from ctx.alloc.
// Every cuDNN status is checked; a failure names the call, the file and the line.
#pragma once
#include "cuda/conv_igemm.h"

namespace sal::cuda {

// cuDNN takes one symmetric padding per axis and derives the output size from it. A shape is
// supported when the output size that formula gives with the top/left padding equals P and Q:
// the result is then the same (rows past the input read zeros whatever the bottom padding, and the
// output size is P either way). So extra bottom/right padding that no window reaches passes, as do
// transposed convs whose output_padding is below the stride; TF "same" padding of an even size
// with stride 2 (one more pixel at the bottom/right, always reached) does not and runs on the
// custom kernels. Also rejects empty tensors and sizes beyond cuDNN's int dimensions.
bool cudnn_conv_supported(const ConvGeom& g);

// y = conv(x, w) (no bias: the caller adds it)
void cudnn_conv_forward(Ctx& ctx, const ConvGeom& g, const float* x, const float* w, float* y);
// dx = the input gradient of dy (overwritten)
void cudnn_conv_dgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* w, float* dx);
// dw += the weight gradient of (dy, x)
void cudnn_conv_wgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* x, float* dw);
// The cuDNN library's version number as it reports it at run time (e.g. 91000 for 9.10.0).
size_t cudnn_runtime_version();

}  // namespace sal::cuda
