// Auto's convolution backend choices kept in a file between processes (SAL_CONV_AUTO_CACHE=<file>,
// cuda/conv_backend.h). Auto times the custom kernels against cuDNN (and cuBLAS) once per (pass, shape) in each
// process, and two processes may choose differently: then their results differ in the last bits (on an
// H200 two sal_mask runs over the same images wrote different bytes in every mask file). With a cache
// file the first process's choices are written to it and every later process on the same GPU model runs
// those, so the runs agree bit for bit and skip the timing.
//
// The file is text: a first line naming the format, a second naming the GPU ("device <name>"), then one
// line per choice: the pass and the 17 geometry numbers of the key (cuda/conv_backend.cpp key_of), then
// "custom", "cublas", "cudnn" (cuDNN's heuristic algorithm) or "cudnn:N" (cuDNN's algorithm N, timed fastest),
// and for conv2d_bn_act's forward with ReLU or no activation (passes fwd_fused_relu, fwd_fused_none, and with a
// shortcut sum fwd_fused_relu_res, fwd_fused_none_res; ReLU6's is fwd_fused) in TF32 also "cudnn+fold" or
// "cudnn+fold:N" (the batch norm folded into the weights, cuDNN's fused convolution + bias + activation:
// cuda/conv_bn_fold.h; with no activation only "cudnn+fold:1", the one algorithm cuDNN runs that with), and for
// the plain passes (fwd, dgrad, wgrad) in TF32 also "cudnn+nhwc" or "cudnn+nhwc:N" (cuDNN in NHWC, the tensors
// converted in and out around it: cuda/conv_nhwc.h; N numbers one of cuDNN's NHWC algorithms). A file in an older
// format (v1, before session 15; v2, before session 16) counts as empty and is replaced by the next write.
// Nothing here touches the GPU: the formatting and parsing are tested on any machine.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "cuda/conv_backend.h"

namespace sal::cuda {

using ConvChoiceKey = std::array<int64_t, 18>;

// The passes of key[0] that the batch-norm fold can run (conv2d_bn_act's forward with ReLU or no activation, with or
// without a shortcut sum: cuda/conv_backend.cpp's Pass, numbered as the file names them), and of those the ones with
// no activation, which cuDNN runs fused only with kCudnnFusedNoActivationAlgo (cuda/cudnn_conv.h).
inline bool conv_pass_can_fold(int64_t pass) { return pass >= 4 && pass <= 7; }
inline bool conv_pass_has_no_activation(int64_t pass) { return pass == 5 || pass == 7; }
// The passes cuDNN may run in NHWC with the conversions around it (cuda/conv_nhwc.h): the plain forward, the input
// gradient and the weight gradient (fwd, dgrad, wgrad).
inline bool conv_pass_can_nhwc(int64_t pass) { return pass == 0 || pass == 2 || pass == 3; }

// One of Auto's choices: a backend and, for cuDNN, the algorithm that was timed fastest (-1: cuDNN's own
// heuristic choice, as when cuDNN is set) and, for conv2d_bn_act's forward, whether the batch norm is folded into
// the weights and run by cuDNN's fused convolution + bias + activation (else it is a pass after the conv), and, for
// the plain passes, whether cuDNN runs in NHWC with the tensors converted around it (cudnn_algo then numbers one of
// its NHWC algorithms).
struct ConvChoice {
  ConvBackend backend = ConvBackend::Custom;
  int cudnn_algo = -1;
  bool fold_bn = false;
  bool nhwc = false;
  bool operator==(const ConvChoice&) const = default;
};
using ConvChoices = std::map<ConvChoiceKey, ConvChoice>;
// "custom", "cublas", "cudnn", "cudnn:N", "cudnn+fold", "cudnn+fold:N", "cudnn+nhwc" or "cudnn+nhwc:N" (the file's
// words)
std::string conv_choice_name(const ConvChoice& c);

// The file's text for the GPU named `device` (Custom, Cudnn and Cublas choices: Auto is not a choice; an
// algorithm, the fold and NHWC only with Cudnn, the fold only for conv2d_bn_act's forward with ReLU or none in TF32,
// NHWC only for the plain passes in TF32).
std::string format_conv_choices(const std::string& device, const ConvChoices& choices);

struct ParsedConvChoices {
  std::string device;  // the GPU the choices were timed on
  ConvChoices choices;
};
// Parses format_conv_choices's text; `path` names the file in errors, which give the line and what is
// wrong with it (and say that deleting the file makes the next run time again).
ParsedConvChoices parse_conv_choices(const std::string& text, const std::string& path);

// The choices stored in `path` for `device`: empty when the file does not exist, was written for another GPU or
// is in an older format; an error when it cannot be read or is malformed.
ConvChoices read_conv_choices(const std::string& path, const std::string& device);
// Adds `choices` to those `path` holds for `device` (ours win where both have a key; a file written for
// another GPU is replaced) and writes the result atomically (a temporary file, then a rename), so a
// reader never sees half a file.
void write_conv_choices(const std::string& path, const std::string& device, const ConvChoices& choices);

}  // namespace sal::cuda
