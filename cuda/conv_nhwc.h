// cuDNN in NHWC inside the NCHW engine: one of Auto's candidates for the plain convolution passes (forward, input
// gradient, weight gradient; cuda/conv_backend.h, SAL_CONV_NHWC). Each call converts its NCHW inputs to NHWC
// (filters KCRS to KRSC) in arena temporaries with cuda/layout_transpose.h, runs cuDNN in NHWC (cuda/cudnn_conv.h's
// CudnnLayout) and converts the result back, so the caller sees NCHW as from any backend. Auto times it with the
// conversions, so it runs only where cuDNN's NHWC kernels gain more than the conversions cost (bench/conv_cuda_bench's
// conv_layout rows measure the same per ResNet-50 layer: with_transposes/nchw).
#pragma once
#include "cuda/conv_igemm.h"

namespace sal::cuda {

// x:[N,C,H,W] w:[K,C/G,R,S] -> y:[N,K,P,Q] = conv(x, w) (overwritten); algo: cuDNN's NHWC algorithm (-1: its
// heuristic choice), as cudnn_conv_forward's with CudnnLayout::NHWC.
void cudnn_nhwc_forward(Ctx& ctx, const ConvGeom& g, const float* x, const float* w, float* y, int algo);
// dy:[N,K,P,Q] w:[K,C/G,R,S] -> dx:[N,C,H,W], the input gradient (overwritten).
void cudnn_nhwc_dgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* w, float* dx, int algo);
// dy:[N,K,P,Q] x:[N,C,H,W] -> dw:[K,C/G,R,S] += the weight gradient (dw converted to KRSC, accumulated there, and
// converted back).
void cudnn_nhwc_wgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* x, float* dw, int algo);

}  // namespace sal::cuda
