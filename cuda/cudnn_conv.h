// cuDNN convolutions (cuda/cudnn_conv.cpp, the only translation unit that includes cudnn.h):
// forward, backward data and backward filter of one convolution in its conv2d orientation
// (cuda/conv_igemm.h's ConvGeom), f32 tensors, TF32 tensor-core math allowed (cuDNN's default on
// Ampere and later) or, when ConvGeom::tf32 is false, FMA kernels only (CUDNN_FMA_MATH). By default
// (algo < 0) the algorithm of each (pass, shape, math) is chosen once with cuDNN's heuristics
// (cudnnGetConvolution*Algorithm_v7: no trial runs, no synchronisation), preferring deterministic
// algorithms for the two gradients; a caller that times them (Auto, cuda/conv_backend.h, as PyTorch's
// cudnn.benchmark does) asks for the candidates (cudnn_conv_algorithms) and runs one by number. Plans
// (descriptors, algorithm, math type, workspace size) are cached per (pass, shape, math, algorithm);
// workspaces come from ctx.alloc. Every cuDNN status is checked; a failure names the call, the file and
// the line.
#pragma once
#include <vector>

#include "cuda/conv_igemm.h"

namespace sal::cuda {

enum class CudnnPass { Fwd, Dgrad, Wgrad };

// How the tensors lie in memory. The engine's layout everywhere is NCHW (x:[N,C,H,W], w:[K,C/G,R,S],
// y:[N,K,P,Q]). NHWC (x:[N,H,W,C], w:[K,R,S,C/G], y:[N,P,Q,K]) is what cuDNN's tensor-core kernels work in
// natively. Used by Auto's NHWC candidate (cuda/conv_nhwc.h: the tensors converted around the call, SAL_CONV_NHWC)
// and measured per layer by bench/conv_cuda_bench; no op keeps its tensors in NHWC. Plans are kept per layout.
enum class CudnnLayout { NCHW, NHWC };

// cuDNN takes one symmetric padding per axis and derives the output size from it. A shape is
// supported when the output size that formula gives with the top/left padding equals P and Q:
// the result is then the same (rows past the input read zeros whatever the bottom padding, and the
// output size is P either way). So extra bottom/right padding that no window reaches passes, as do
// transposed convs whose output_padding is below the stride; TF "same" padding of an even size
// with stride 2 (one more pixel at the bottom/right, always reached) does not and runs on the
// custom kernels. Also rejects empty tensors and sizes beyond cuDNN's int dimensions.
bool cudnn_conv_supported(const ConvGeom& g);

// The algorithms worth timing for a pass of g, the heuristics' order, at most `max`: those the heuristic
// choice would accept (no conversion below TF32; for the gradients deterministic ones when there are any)
// whose workspace is at most the larger of the heuristic choice's and 64 MB (a timed candidate's workspace
// stays in the arena's peak). The heuristic choice is the first. With ConvGeom::tf32 false, only it: the f32
// math is what is compared with the CPU, and the transform-based algorithms round differently.
std::vector<int> cudnn_conv_algorithms(Ctx& ctx, CudnnPass pass, const ConvGeom& g, int max,
                                       CudnnLayout layout = CudnnLayout::NCHW);

// y = conv(x, w) (no bias: the caller adds it); algo < 0: the heuristic choice, else that algorithm (one
// of cudnn_conv_algorithms for the same layout; another is an error naming it)
void cudnn_conv_forward(Ctx& ctx, const ConvGeom& g, const float* x, const float* w, float* y, int algo = -1,
                        CudnnLayout layout = CudnnLayout::NCHW);
// cuDNN's forward algorithm IMPLICIT_PRECOMP_GEMM, the one it runs fused with no activation (below; checked
// against cuDNN's enum in cuda/cudnn_conv.cpp)
constexpr int kCudnnFusedNoActivationAlgo = 1;
// y = act(conv(x, w) + bias[K] + z) in one cuDNN call (cudnnConvolutionBiasActivationForward), act ReLU
// (relu true) or none; z: [N,K,P,Q] or null (no residual). For conv2d_bn_act with the batch norm folded into w and
// bias (cuda/conv_bn_fold.h). cuDNN runs "no activation" only with its IMPLICIT_PRECOMP_GEMM algorithm: with
// another this is an error (as is any shape or algorithm this cuDNN's fused path refuses), which Auto, the one
// caller, counts as "not a candidate". algo as for cudnn_conv_forward (the forward's candidates). NCHW only.
void cudnn_conv_bias_act_forward(Ctx& ctx, const ConvGeom& g, const float* x, const float* w, const float* bias,
                                 const float* z, bool relu, float* y, int algo = -1);
// dx = the input gradient of dy (overwritten)
void cudnn_conv_dgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* w, float* dx, int algo = -1,
                      CudnnLayout layout = CudnnLayout::NCHW);
// dw += the weight gradient of (dy, x)
void cudnn_conv_wgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* x, float* dw, int algo = -1,
                      CudnnLayout layout = CudnnLayout::NCHW);
// The cuDNN library's version number as it reports it at run time (e.g. 91000 for 9.10.0).
size_t cudnn_runtime_version();

}  // namespace sal::cuda
