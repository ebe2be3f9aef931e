// Convolutions on CUDA: the choice between the hand-written kernels (cuda/conv_igemm.h), cuDNN
// (cuda/cudnn_conv.h) and cuBLAS, and the op-level entry points that engine/ops_conv.cpp dispatches to (same
// signatures as engine/cpu/conv.h; tensors already validated, f32, on the device).
//
// The backend is a per-process setting: ConvBackend::Custom, Cudnn, Cublas or Auto, read once from the
// environment variable SAL_CONV_BACKEND ("custom", "cudnn", "cublas" or "auto"; default auto) and changed
// with set_conv_backend(). cuBLAS takes only the passes that are one strided-batched GEMM: the forward and
// the input gradient of 1x1, stride-1, unpadded, ungrouped convolutions (cuda/conv_pointwise_gemm.h);
// "cublas" runs those on cuBLAS and everything else as "cudnn" does. "cudnn" runs the algorithm cuDNN's
// heuristics pick. Auto times every backend that can take a pass, and in TF32 cuDNN's first few algorithms
// (the heuristic one and up to three more: cudnn_conv_algorithms; PyTorch's cudnn.benchmark, which its
// eager comparison runs with, times them all), once per (pass, shape) with CUDA events the first time that
// shape is seen (forward, dgrad and wgrad separately; into scratch outputs, so a weight gradient is not
// accumulated twice), keeps the fastest in a map keyed by the full geometry, and runs it from then on. That
// first call waits for the device (it reads the timing events); later calls never do. conv2d_bn_act's forward
// has cuDNN's algorithms timed twice, with the batch norm as a pass after the conv and folded into the weights
// (conv_fold_bn, below), and with SAL_CONV_NHWC=1 the plain passes have them timed in NHWC too (conv_nhwc, below).
// Shapes cuDNN cannot
// take (asymmetric padding that changes the output size, see cudnn_conv_supported) run the custom kernels
// in every mode.
// The arithmetic is a second per-process setting, ConvMath: TF32 (the default: tensor cores with
// operands rounded to a 10-bit mantissa, f32 accumulation, as PyTorch's cuDNN convolutions by default)
// or F32 (FMA units only: cuDNN restricted to CUDNN_FMA_MATH, the custom GEMMs on CUDA cores), read
// once from SAL_CONV_MATH ("tf32" or "f32") and changed with set_conv_math(). TF32 is several times
// faster; F32 is what to compare against the CPU backend. The difference matters more than the
// 2^-11 operand rounding suggests: gradients of the saliency objective through a classifier are
// ill-conditioned, and TF32 moves them by ~10% relative L2 (measured on the CPU by emulating TF32
// operands, engine/cpu/gemm.h set_emulate_tf32; tests/test_masker.cpp).
// Every backend is deterministic run to run (the custom kernels use no atomics; cuDNN's gradient
// algorithms are picked among its deterministic ones when it has one; cuBLAS is, on one GPU model with
// its own workspace per handle), but Auto's choice comes from timings and may differ between processes:
// set custom, cudnn or cublas for bit-identical runs, or give Auto a file to keep its choices in
// (SAL_CONV_AUTO_CACHE, below), so that later runs repeat the first's.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/context.h"
#include "engine/ops.h"

namespace sal::cuda {

enum class ConvBackend { Custom, Cudnn, Cublas, Auto };

ConvBackend conv_backend();  // the current setting (the environment is read on the first call)
void set_conv_backend(ConvBackend backend);
// "custom" | "cudnn" | "cublas" | "auto" (any case); throws otherwise
ConvBackend parse_conv_backend(std::string_view name);
const char* conv_backend_name(ConvBackend backend);

enum class ConvMath { TF32, F32 };

ConvMath conv_math();  // the current setting (SAL_CONV_MATH is read on the first call; default TF32)
void set_conv_math(ConvMath math);
ConvMath parse_conv_math(std::string_view name);  // "tf32" | "f32" (any case); throws otherwise
const char* conv_math_name(ConvMath math);

// conv2d_bn_act's frozen batch norm folded into the weights (cuda/conv_bn_fold.h) so that one cuDNN call
// (cudnnConvolutionBiasActivationForward) runs conv, batch norm, shortcut sum and ReLU: a third per-process
// setting, whether Auto may time that too (in TF32, for ReLU and no activation; cuDNN has no ReLU6 there).
// SAL_CONV_FOLD_BN ("1"/"on", the default, or "0"/"off"), read once; set_conv_fold_bn() changes it. In TF32 the
// folded weights w * gamma / sqrt(var + eps) round differently from w: results move about as much as TF32 moves
// them from f32, and are no further from f32 (measured on the CPU, bench/RESULTS.md). Pinned backends and f32
// math never fold; with the fold not allowed, a choice that folds (made earlier in the process, or
// a choices file's "cudnn+fold", below) is timed again without it.
bool conv_fold_bn();
void set_conv_fold_bn(bool allowed);
bool parse_conv_fold_bn(std::string_view value);  // "1" | "on" | "0" | "off" (any case); throws otherwise

// Whether Auto may also run the plain passes (conv2d's forward, input and weight gradients) on cuDNN in NHWC, with
// the tensors converted to NHWC and the result back around each call (cuda/conv_nhwc.h): it then times cuDNN's first
// few NHWC algorithms too, the conversions included, and keeps one where that is the fastest. SAL_CONV_NHWC ("1"/"on"
// or "0"/"off", the default until a GPU run measures it: bench/RESULTS.md), read once; set_conv_nhwc() changes it. In
// TF32 only, never with a pinned backend; with it off, a choice in NHWC (made earlier in the process, or a choices
// file's "cudnn+nhwc") is timed again without it. The results are cuDNN's, in another kernel: TF32's rounding.
bool conv_nhwc();
void set_conv_nhwc(bool allowed);
bool parse_conv_nhwc(std::string_view value);  // as parse_conv_fold_bn

// How many convolution passes each backend has run (timing runs excluded; `folded`: of cuDNN's, those with the
// batch norm folded; `nhwc`: of cuDNN's, those in NHWC), and how many (pass, shape) pairs Auto has timed. For tests
// and benchmarks.
struct ConvBackendCounts {
  int64_t custom = 0, cudnn = 0, cublas = 0, folded = 0, nhwc = 0, timed = 0;
};
ConvBackendCounts conv_backend_counts();
void reset_conv_backend_counts();
// Forgets Auto's decisions: the next call of each shape times again, unless a choices file (below) has it.
void clear_conv_auto_choices();
// The file that keeps Auto's choices between processes (cuda/conv_auto_cache.h): SAL_CONV_AUTO_CACHE,
// read once, or set here ("" for none, the default). Its choices for this GPU and cuDNN are loaded on the
// first lookup after it is set (or after clear_conv_auto_choices) and win over timing; each newly timed
// shape is added to it at once. A malformed file is an error; a file that cannot be written is a warning
// on stderr, after which this process stops writing it. A choice read from the file is run as it is
// (a cuDNN that refuses it at run time is an error, where timing would have fallen back to custom).
void set_conv_auto_cache(const std::string& path);
std::string conv_auto_cache();

// ---- op entry points (engine/ops_conv.cpp)
void conv2d(Ctx&, const Tensor& x, const Tensor& w, const Tensor* b, const Conv2dArgs& a, Tensor& y);
void conv2d_bn_act(Ctx&, const Tensor& x, const Tensor& w, const ConvBn& bn, const Tensor* residual, Activation act,
                   const Conv2dArgs& a, Tensor& y);
void conv2d_dgrad(Ctx&, const Tensor& dy, const Tensor& w, const Conv2dArgs& a, Tensor& dx);
void conv2d_dgrad_bn_act(Ctx&, const Tensor& dy, const Tensor& w, const ConvBnGate& gate, const Conv2dArgs& a,
                         Tensor& dx);
void conv2d_wgrad(Ctx&, const Tensor& dy, const Tensor& x, const Conv2dArgs& a, Tensor& dw, Tensor* db);
void conv_transpose2d(Ctx&, const Tensor& x, const Tensor& w, const Tensor* b, const ConvTranspose2dArgs& a, Tensor& y);
void conv_transpose2d_dgrad(Ctx&, const Tensor& dy, const Tensor& w, const ConvTranspose2dArgs& a, Tensor& dx);
void conv_transpose2d_wgrad(Ctx&, const Tensor& dy, const Tensor& x, const ConvTranspose2dArgs& a, Tensor& dw,
                            Tensor* db);

}  // namespace sal::cuda
