// The op API: the only thing layers and models call. Each op validates its arguments (shapes,
// dtypes, and that every tensor is on the context's device: mixing devices is an error, never a
// silent copy), allocates its output from the context (arena or owning), and dispatches to the
// CPU backend (engine/cpu/) or the CUDA backend (cuda/).
//
// Conventions
// - Layout is contiguous NCHW. Float ops take F32 (and F64 on the CPU, for gradient checks);
//   labels and ids are I32. Every tensor of one call has the same float dtype.
// - Backward ops return input gradients as new tensors. Parameter gradients (`dw`, `db`,
//   `dgamma`, `dbeta`, `dtable`) are ACCUMULATED into the tensors passed in (+=), so a flat
//   gradient buffer is zeroed once per step and shared parameters add up.
// - Per-sample losses return [N]; their backward takes dloss [N] (the weight of each sample).
#pragma once
#include <span>
#include <vector>

#include "engine/context.h"

namespace sal {

// The activations fused into convolution and batch-norm epilogues.
enum class Activation { None, ReLU, ReLU6 };

// ---------------------------------------------------------------- convolution
// On CUDA these compute in TF32 (f32 tensors, 10-bit-mantissa products, f32 sums) with the
// hand-written kernels, cuDNN or (1x1 convolutions) cuBLAS, chosen per shape: cuda/conv_backend.h,
// SAL_CONV_BACKEND.
struct Conv2dArgs {
  int stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;  // asymmetric for TF "same"
  int dil_h = 1, dil_w = 1;
  int groups = 1;

  static Conv2dArgs make(int stride, int pad, int dilation = 1, int groups = 1) {
    return Conv2dArgs{stride, stride, pad, pad, pad, pad, dilation, dilation, groups};
  }
  // TensorFlow "SAME": output = ceil(in / stride), the odd padding pixel at the bottom/right.
  static Conv2dArgs tf_same(int64_t in_h, int64_t in_w, int kh, int kw, int stride, int groups = 1);
};

// x:[N,C,H,W] w:[K,C/g,R,S] b:[K] -> y:[N,K,P,Q], P = (H + pt + pb - dil*(R-1) - 1)/stride + 1
Shape conv2d_out_shape(const Shape& x, const Shape& w, const Conv2dArgs& a);
Tensor conv2d(Ctx& ctx, const Tensor& x, const Tensor& w, const Tensor* b, const Conv2dArgs& a);
// A convolution with frozen batch norm, residual and activation as its epilogue, in the same pass:
// y = act(batchnorm2d_infer(conv2d(x, w)) + residual), residual (same shape as y) nullable; gamma,
// beta, mean, var [K]. For layers in inference (black boxes, encoders, the masker's decoder): ResNet's
// conv3 + bn3 + identity + ReLU and MobileNet's conv + BN + ReLU6 write the activation once instead of
// the conv output plus a BN pass over it. The BN is applied in its own order, (conv - mean) * scale + beta with scale =
// gamma / sqrt(var + eps), not folded into the weights: folding rounds differently where conv and
// mean nearly cancel (dead channels with var ~ 0), and the input gradient of a trained MobileNet then
// moved by 1e-2 of its scale (measured against float64) where this order keeps 5e-7. On the CPU the
// result equals batchnorm2d_infer_act(conv2d(x, w, nullptr), ...) bit for bit. On CUDA the custom
// kernels apply it where they store the output; after cuDNN it is one pass over the output. Its input
// gradient is conv2d_dgrad_bn_act (below; with the residual, from dsum = relu_backward(dy, y)), which is
// batchnorm2d_infer_act_backward then conv2d_dgrad; the weight gradient, were one wanted, conv2d_wgrad
// of that dz.
Tensor conv2d_bn_act(Ctx& ctx, const Tensor& x, const Tensor& w, const Tensor& gamma, const Tensor& beta,
                     const Tensor& mean, const Tensor& var, double eps, const Tensor* residual, Activation act,
                     const Conv2dArgs& a);
// dy:[N,K,P,Q] w:[K,C/g,R,S] -> dx:[N,C,H,W] (x_shape gives H,W: several H map to one P)
Tensor conv2d_dgrad(Ctx& ctx, const Tensor& dy, const Tensor& w, const Shape& x_shape, const Conv2dArgs& a);
// The input gradient of conv2d_bn_act in one op: dx = conv2d_dgrad(dz, w) with dz =
// batchnorm2d_infer_act_backward(dy, y, gamma, var, eps, act), y the forward's output [N,K,P,Q] (act' from
// it). With a residual the caller passes dsum (relu_backward(dy, y)) and act None, and dsum is the
// residual's gradient. On the CPU the frozen BN and activation are undone per block of rows right before
// the GEMM that reads them (no dz tensor; bit-equal to the two ops); on CUDA it is the two ops' kernels.
Tensor conv2d_dgrad_bn_act(Ctx& ctx, const Tensor& dy, const Tensor& y, const Tensor& w, const Tensor& gamma,
                           const Tensor& var, double eps, Activation act, const Shape& x_shape, const Conv2dArgs& a);
// The frozen batch norm of those two ops as the backends take it (engine/cpu/conv.h, cuda/conv_backend.h).
struct ConvBn {
  const Tensor *gamma, *beta, *mean, *var;
  double eps;
};
struct ConvBnGate {  // conv2d_dgrad_bn_act's: y, the forward's output, for the activation's derivative
  const Tensor *y, *gamma, *var;
  double eps;
  Activation act;
};
// dw:[K,C/g,R,S] += dy (*) x ; db:[K] += sum of dy over N,P,Q (db may be null)
void conv2d_wgrad(Ctx& ctx, const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db, const Conv2dArgs& a);

// PyTorch ConvTranspose2d: symmetric padding, output_padding adds rows/cols at the bottom/right.
struct ConvTranspose2dArgs {
  int stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  int out_pad_h = 0, out_pad_w = 0, dil_h = 1, dil_w = 1, groups = 1;
  static ConvTranspose2dArgs make(int stride, int pad, int out_pad = 0, int dilation = 1, int groups = 1) {
    return ConvTranspose2dArgs{stride, stride, pad, pad, out_pad, out_pad, dilation, dilation, groups};
  }
};
// x:[N,C,H,W] w:[C,K/g,R,S] b:[K] -> y:[N,K,P,Q], P = (H-1)*stride - 2*pad + dil*(R-1) + out_pad + 1
Shape conv_transpose2d_out_shape(const Shape& x, const Shape& w, const ConvTranspose2dArgs& a);
Tensor conv_transpose2d(Ctx& ctx, const Tensor& x, const Tensor& w, const Tensor* b, const ConvTranspose2dArgs& a);
Tensor conv_transpose2d_dgrad(Ctx& ctx, const Tensor& dy, const Tensor& w, const Shape& x_shape,
                              const ConvTranspose2dArgs& a);
void conv_transpose2d_wgrad(Ctx& ctx, const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db,
                            const ConvTranspose2dArgs& a);

// ---------------------------------------------------------------- linear
// x:[N,K] w:[M,K] b:[M] -> y:[N,M] (y = x w^T + b, PyTorch nn.Linear); full f32 on CUDA (cuBLAS).
Tensor linear(Ctx& ctx, const Tensor& x, const Tensor& w, const Tensor* b);
Tensor linear_dgrad(Ctx& ctx, const Tensor& dy, const Tensor& w);                   // -> dx:[N,K]
void linear_wgrad(Ctx& ctx, const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db);  // dw:[M,K] +=, db:[M] +=

// ---------------------------------------------------------------- batch norm (per channel of NCHW)
// Inference with running statistics: y = (x - mean) / sqrt(var + eps) * gamma + beta. All params [C].
Tensor batchnorm2d_infer(Ctx& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                         const Tensor& var, double eps);
// Fused inference epilogue in one pass: y = act(batchnorm2d_infer(x) + residual), residual
// (nullable) of x's shape: ResNet's bn3 + identity + ReLU, MobileNet's BN + ReLU6. No backward op
// of its own: dz = relu_backward(dy, y) / relu6_backward(dy, y) (y is in (0, 6) exactly when the
// pre-activation is) / dy for None; then dx = batchnorm2d_infer_backward(dz, ...) and
// dresidual = dz.
Tensor batchnorm2d_infer_act(Ctx& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                             const Tensor& var, double eps, const Tensor* residual, Activation act);
// The same written over x: x = act(batchnorm2d_infer(x) + residual), the same values bit for bit. For a
// frozen layer whose conv output nothing else reads (its backward needs only y: batchnorm2d_infer_act_backward),
// so that inference keeps one tensor per layer instead of two. The residual must not overlap x.
void batchnorm2d_infer_act_inplace(Ctx& ctx, Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                                   const Tensor& var, double eps, const Tensor* residual, Activation act);
// The input gradient of batchnorm2d_infer_act without a residual, from its output y, in one pass:
// dx = act'(y) * dy * gamma / sqrt(var + eps), act' = [y > 0] (ReLU) or [0 < y < 6] (ReLU6) or 1 (None).
// The same values as relu_backward / relu6_backward then batchnorm2d_infer_backward (frozen BN: no
// dgamma / dbeta), one read of dy and y and one write instead of two of each.
Tensor batchnorm2d_infer_act_backward(Ctx& ctx, const Tensor& dy, const Tensor& y, const Tensor& gamma,
                                      const Tensor& var, double eps, Activation act);
// dx = dy * gamma / sqrt(var + eps); dgamma/dbeta (nullable) accumulate.
Tensor batchnorm2d_infer_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                  const Tensor& mean, const Tensor& var, double eps, Tensor* dgamma, Tensor* dbeta);
// Training mode: normalises with the batch statistics (biased variance), writes them to
// save_mean / save_invstd [C] for the backward, and (when given) updates the running statistics
// as PyTorch does: running = (1 - momentum) * running + momentum * batch (unbiased variance).
Tensor batchnorm2d_train(Ctx& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps,
                         double momentum, Tensor* running_mean, Tensor* running_var, Tensor& save_mean,
                         Tensor& save_invstd);
Tensor batchnorm2d_train_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                  const Tensor& save_mean, const Tensor& save_invstd, Tensor* dgamma, Tensor* dbeta);

// ---------------------------------------------------------------- activations (elementwise, any shape)
Tensor relu(Ctx& ctx, const Tensor& x);
Tensor relu_backward(Ctx& ctx, const Tensor& dy, const Tensor& y);  // dy * (y > 0)
Tensor relu6(Ctx& ctx, const Tensor& x);
Tensor relu6_backward(Ctx& ctx, const Tensor& dy, const Tensor& x);  // dy * (0 < x < 6)
Tensor sigmoid(Ctx& ctx, const Tensor& x);
Tensor sigmoid_backward(Ctx& ctx, const Tensor& dy, const Tensor& y);  // dy * y * (1 - y)

// ---------------------------------------------------------------- arithmetic with broadcasting
// NumPy broadcasting over up to kMaxDims dims (b may be e.g. [N,C,1,1] against a's [N,C,H,W]).
Shape broadcast_shape(const Shape& a, const Shape& b);
Tensor add(Ctx& ctx, const Tensor& a, const Tensor& b);
Tensor sub(Ctx& ctx, const Tensor& a, const Tensor& b);
Tensor mul(Ctx& ctx, const Tensor& a, const Tensor& b);
Tensor scale(Ctx& ctx, const Tensor& x, double alpha);        // alpha * x
void axpy(Ctx& ctx, double alpha, const Tensor& x, Tensor& y);  // y += alpha * x (same shape)
// Sums x over the broadcast dimensions so the result has `shape` (the backward of broadcasting).
Tensor sum_to(Ctx& ctx, const Tensor& x, const Shape& shape);

// ---------------------------------------------------------------- reductions
Tensor sum(Ctx& ctx, const Tensor& x);   // -> [1]
Tensor mean(Ctx& ctx, const Tensor& x);  // -> [1]

// ---------------------------------------------------------------- channel concat / slice
// xs[i]:[N,C_i,H,W] -> [N,sum C_i,H,W]
Tensor concat_channels(Ctx& ctx, std::span<const Tensor> xs);
// x:[N,C,H,W] -> [N,count,H,W], channels [begin, begin+count) (the backward of concat)
Tensor slice_channels(Ctx& ctx, const Tensor& x, int64_t begin, int64_t count);

// ---------------------------------------------------------------- pooling
struct Pool2dArgs {
  int kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  bool ceil_mode = false;          // PyTorch ceil_mode (a window must start inside the input or left padding)
  bool count_include_pad = true;   // average pooling divisor
  static Pool2dArgs make(int kernel, int stride, int pad = 0, bool ceil_mode = false) {
    return Pool2dArgs{kernel, kernel, stride, stride, pad, pad, ceil_mode, true};
  }
};
Shape pool2d_out_shape(const Shape& x, const Pool2dArgs& a);
Tensor max_pool2d(Ctx& ctx, const Tensor& x, const Pool2dArgs& a);
// Recomputes each window's argmax from x (the first maximum in row-major window order wins).
Tensor max_pool2d_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Pool2dArgs& a);
Tensor avg_pool2d(Ctx& ctx, const Tensor& x, const Pool2dArgs& a);
Tensor avg_pool2d_backward(Ctx& ctx, const Tensor& dy, const Shape& x_shape, const Pool2dArgs& a);
Tensor global_avg_pool(Ctx& ctx, const Tensor& x);  // [N,C,H,W] -> [N,C,1,1]
Tensor global_avg_pool_backward(Ctx& ctx, const Tensor& dy, const Shape& x_shape);

// ---------------------------------------------------------------- resampling
// Bilinear, align_corners=false, no antialiasing: matches torch.nn.functional.interpolate.
Tensor resize_bilinear(Ctx& ctx, const Tensor& x, int64_t out_h, int64_t out_w);
Tensor resize_bilinear_backward(Ctx& ctx, const Tensor& dy, const Shape& x_shape);
// [N,C*r*r,H,W] -> [N,C,H*r,W*r] (torch.nn.PixelShuffle); unshuffle is its inverse and its backward.
Tensor pixel_shuffle(Ctx& ctx, const Tensor& x, int r);
Tensor pixel_unshuffle(Ctx& ctx, const Tensor& x, int r);

// ---------------------------------------------------------------- blur
// Separable Gaussian blur of every channel: weights exp(-d^2 / (2 sigma^2)) normalised to sum 1
// over the odd ksize taps, reflect padding (torch 'reflect': the edge pixel is not repeated;
// indices are folded repeatedly when the kernel is wider than the image). On CUDA, ksize <= 255.
Tensor gaussian_blur(Ctx& ctx, const Tensor& x, double sigma, int ksize);
Tensor gaussian_blur_backward(Ctx& ctx, const Tensor& dy, double sigma, int ksize);  // the adjoint

// ---------------------------------------------------------------- masks
// c:[N,2,H,W] -> m:[N,1,H,W], m = |c0| / (|c0| + |c1| + eps); eps >= 0 (eps = 0 gives NaN where c0 = c1 = 0).
// The backward uses sign(c) with sign(0) = 0.
Tensor abs_ratio(Ctx& ctx, const Tensor& c, double eps);
Tensor abs_ratio_backward(Ctx& ctx, const Tensor& dm, const Tensor& c, double eps);
// The head fused with its upsampling: resize_bilinear(abs_ratio(c, eps), out_h, out_w) -> [N,1,out_h,out_w],
// one pass on CUDA (no intermediate mask). The backward takes dm:[N,1,P,Q] and returns dc:[N,2,H,W].
Tensor abs_ratio_upsample(Ctx& ctx, const Tensor& c, double eps, int64_t out_h, int64_t out_w);
Tensor abs_ratio_upsample_backward(Ctx& ctx, const Tensor& dm, const Tensor& c, double eps);
// Evidence removal: y = x*m + a*(1-m); x,a:[N,C,H,W], m:[N,1,H,W] (broadcast over channels).
Tensor blend(Ctx& ctx, const Tensor& x, const Tensor& a, const Tensor& m);
struct BlendGrads {
  Tensor dx, da, dm;  // dx, da undefined unless asked for
};
BlendGrads blend_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Tensor& a, const Tensor& m,
                          bool need_dx, bool need_da);

// ---------------------------------------------------------------- softmax and losses
// Over the last dimension of logits [N,K].
Tensor softmax(Ctx& ctx, const Tensor& logits);
Tensor softmax_backward(Ctx& ctx, const Tensor& dy, const Tensor& y);
Tensor log_softmax(Ctx& ctx, const Tensor& logits);
Tensor log_softmax_backward(Ctx& ctx, const Tensor& dy, const Tensor& y);
// logits:[N,K], labels:I32[N] -> [N], -log softmax(logits)[label]
// A label outside [0, K) throws on the CPU; on CUDA that sample's loss (gradient row) is NaN.
Tensor cross_entropy(Ctx& ctx, const Tensor& logits, const Tensor& labels);
Tensor cross_entropy_backward(Ctx& ctx, const Tensor& dloss, const Tensor& logits, const Tensor& labels);
// m:[N,1,H,W] -> [N]: sum of squared differences of vertical and horizontal neighbours, plus
// border_weight * sum of squared values on the outermost ring of pixels (0 for the paper's TV).
Tensor tv_loss(Ctx& ctx, const Tensor& m, double border_weight);
Tensor tv_loss_backward(Ctx& ctx, const Tensor& dloss, const Tensor& m, double border_weight);
// m:[N,1,H,W] -> [N]: mean over pixels of (m + eps)^power. power=1, eps=0 is the plain mean area;
// the released variant is power=0.3, eps=5e-4. A non-integer power of m + eps <= 0 throws on the
// CPU; on CUDA it makes that sample's loss (that pixel's gradient) NaN.
Tensor area_loss(Ctx& ctx, const Tensor& m, double power, double eps);
Tensor area_loss_backward(Ctx& ctx, const Tensor& dloss, const Tensor& m, double power, double eps);

// ---------------------------------------------------------------- random numbers
// -> y: `shape` of N(0,1) numbers, y[i] a pure function of (seed, i): Philox4x32-10 (engine/philox.h),
// counter i / 4, key seed, Box-Muller on pairs of words. The CPU and CUDA give the same numbers (f32:
// to the rounding of log/sin/cos), whatever the thread count; new numbers need a new seed.
Tensor random_normal(Ctx& ctx, const Shape& shape, DType dtype, uint64_t seed);
// The same numbers with the seed read from device memory when the kernel runs: seed is i32[2] on ctx's
// device, {low 32 bits, high 32 bits}. A captured step (engine/step_graph.h) draws new numbers on every
// replay when its seed tensor is refilled before it (a seed argument would be frozen into the graph).
Tensor random_normal(Ctx& ctx, const Shape& shape, DType dtype, const Tensor& seed);
// The i32[2] host tensor of a seed, for the overload above (upload it, or upload_into a fixed buffer).
Tensor seed_tensor(uint64_t seed);

// ---------------------------------------------------------------- embedding
// table:[V,D], ids:I32[N] -> [N,D]; backward accumulates rows into dtable (deterministically on CUDA).
// An id outside [0, V) throws on the CPU; on CUDA its row of the output is NaN (backward: row 0 of dtable).
Tensor embedding(Ctx& ctx, const Tensor& table, const Tensor& ids);
void embedding_backward(Ctx& ctx, const Tensor& dy, const Tensor& ids, Tensor& dtable);

}  // namespace sal
