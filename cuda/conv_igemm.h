// CUDA convolution kernels written here (cuda/conv_igemm.cu): conv2d forward, input gradient
// (dgrad) and weight gradient (wgrad) as implicit GEMMs on TF32 tensor cores (or, with
// ConvGeom::tf32 = false, on f32 FMA units), direct kernels for depthwise convolutions, and the bias
// add / bias-gradient reductions. Plain C++ header.
//
// Every function takes one convolution in its conv2d orientation (ConvGeom, like the CPU's):
// input [N,C,H,W], weight [K,C/G,R,S], output [N,K,P,Q]. A transposed convolution is the same
// struct with the roles swapped (its output is the struct's input), so its forward is a dgrad.
// f32 device pointers, contiguous NCHW; everything runs on stream_of(ctx), temporaries come from
// ctx.alloc (the arena when the context has one). Input gradients are overwritten, weight and
// bias gradients are ACCUMULATED (+=). Results are deterministic: no atomics anywhere.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/context.h"
#include "engine/ops.h"

namespace sal::cuda {

struct ConvGeom {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t K = 0, P = 0, Q = 0;         // output (from the output tensor, never from a formula)
  int64_t R = 0, S = 0, G = 1;         // kernel, groups
  int sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1;
  // How the products are computed (conv_backend.h's ConvMath): true: TF32 tensor cores allowed (10-bit
  // mantissa operands, f32 accumulation); false: f32 FMA only, as accurate as the CPU backend.
  bool tf32 = true;

  int64_t Cg() const { return G ? C / G : 0; }
  int64_t Kg() const { return G ? K / G : 0; }
  int64_t hw() const { return H * W; }
  int64_t pq() const { return P * Q; }
  int64_t rs() const { return R * S; }
  int64_t crs() const { return Cg() * R * S; }
  // One input and one output channel per group: the direct kernels, not the GEMM.
  bool depthwise() const { return Cg() == 1 && Kg() == 1; }
};

// x:[N,C,H,W] w:[K,C/G,R,S] y:[N,K,P,Q]
inline ConvGeom conv_geom(const Shape& x, const Shape& w, const Shape& y, const Conv2dArgs& a) {
  ConvGeom g{x[0], x[1], x[2], x[3], y[1], y[2], y[3], w[2], w[3], a.groups};
  g.sh = a.stride_h, g.sw = a.stride_w, g.pt = a.pad_top, g.pl = a.pad_left, g.dh = a.dil_h, g.dw = a.dil_w;
  return g;
}
// Transposed conv x:[N,C,H,W] w:[C,K/G,R,S] y:[N,K,P,Q]: the conv2d whose input is y and output x.
inline ConvGeom transpose_geom(const Shape& x, const Shape& w, const Shape& y, const ConvTranspose2dArgs& a) {
  ConvGeom g{y[0], y[1], y[2], y[3], x[1], x[2], x[3], w[2], w[3], a.groups};
  g.sh = a.stride_h, g.sw = a.stride_w, g.pt = a.pad_h, g.pl = a.pad_w, g.dh = a.dil_h, g.dw = a.dil_w;
  return g;
}

// Temporaries of one op call: from the arena (released, back to the mark, when this goes out of
// scope; later work on the same stream is ordered after the kernels that used them) or owning.
class DeviceScratch {
 public:
  explicit DeviceScratch(Ctx& ctx) : ctx_(ctx) {
    if (ctx_.arena) mark_ = ctx_.arena->mark();
  }
  ~DeviceScratch() {
    if (ctx_.arena) ctx_.arena->release(mark_);
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;

  float* floats(int64_t n) {
    if (n <= 0) return nullptr;
    Tensor t = ctx_.alloc(Shape{n}, DType::F32);
    if (!ctx_.arena) owned_.push_back(t);
    return t.data<float>();
  }

 private:
  Ctx& ctx_;
  Arena::Mark mark_{};
  std::vector<Tensor> owned_;
};

// What a forward applies where it stores its output v at channel k:
//   y = act(bn(v + bias[k]) + residual),  bn(u) = (u - mean[k]) * scale[k] + beta[k]
// each part optional (bias, scale (then no bn) and residual null, act None: the plain convolution);
// residual is indexed like y ([N,K,P,Q]). scale[k] = gamma[k] / sqrt(var[k] + eps), computed once per call
// in double and rounded once (bn_epilogue_scale), as the CPU epilogue and the batch-norm kernels do.
struct ConvEpilogue {
  const float* bias = nullptr;
  const float *mean = nullptr, *scale = nullptr, *beta = nullptr;
  const float* residual = nullptr;
  Activation act = Activation::None;
  bool any() const { return bias || scale || residual || act != Activation::None; }
};

// y = epi(conv(x, w)), the epilogue applied by the kernel that writes y (or the split-K sum)
void custom_conv_forward(Ctx& ctx, const ConvGeom& g, const float* x, const float* w, const ConvEpilogue& epi,
                         float* y);
// dx = the input gradient of dy (overwritten); bias[C] (nullable) is added to dx, which is the
// forward of a transposed convolution with bias.
void custom_conv_dgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* w, const float* bias, float* dx);
// dw[K,C/G,R,S] += the weight gradient of (dy, x)
void custom_conv_wgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* x, float* dw);

// y[n, k, i] += bias[k] for y:[n, k, plane]
void channel_bias_add(Ctx& ctx, float* y, const float* bias, int64_t n, int64_t k, int64_t plane);
// scale[k] = gamma[k] / sqrt(var[k] + eps) for k < K, in double, rounded once (ConvEpilogue's scale)
void bn_epilogue_scale(Ctx& ctx, const float* gamma, const float* var, double eps, int64_t k, float* scale);
// y = epi(y) in place for y:[n, k, plane], in one pass (after cuDNN's convolution)
void channel_epilogue(Ctx& ctx, float* y, const ConvEpilogue& epi, int64_t n, int64_t k, int64_t plane);
// db[k] += sum over n and i of dy[n, k, i] for dy:[n, k, plane] (block reductions, fixed order)
void channel_sum_add(Ctx& ctx, const float* dy, int64_t n, int64_t k, int64_t plane, float* db);

}  // namespace sal::cuda
