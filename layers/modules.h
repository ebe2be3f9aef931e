// Layers written once over the op API: they run on whichever device their Ctx names.
//
// Each module remembers, as views, the tensors its backward needs from the last forward
// (caffe-style); the views live in the context's arena until it is reset, so a forward and its
// backward must share one arena step. backward() returns the input gradient and, when the
// module's parameters are trainable (they have gradient slices in the ParamStore) and
// `param_grads` is true, accumulates their gradients. Frozen networks (black boxes, encoders)
// never compute weight gradients.
#pragma once
#include <string>

#include "engine/ops.h"
#include "engine/params.h"

namespace sal {

class Conv2d {
 public:
  Conv2d() = default;
  // Registers `<name>.weight` [out, in/groups, kh, kw] and, with bias, `<name>.bias` [out].
  Conv2d(ParamStore& ps, const std::string& name, int64_t in, int64_t out, int kh, int kw, const Conv2dArgs& args,
         bool bias, bool trainable);
  Tensor forward(Ctx& ctx, const Tensor& x);
  Tensor backward(Ctx& ctx, const Tensor& dy, bool param_grads = true);
  const Conv2dArgs& args() const { return args_; }
  // TF "same" padding depends on the input size: set the args for the size at hand.
  void set_args(const Conv2dArgs& a) { args_ = a; }
  Tensor weight() const { return ps_->value(w_); }
  bool trainable() const { return ps_->trainable(w_) || (b_.valid() && ps_->trainable(b_)); }

 private:
  ParamStore* ps_ = nullptr;
  ParamRef w_, b_;
  Conv2dArgs args_;
  Tensor x_;
};

class ConvTranspose2d {
 public:
  ConvTranspose2d() = default;
  // `<name>.weight` [in, out/groups, kh, kw], `<name>.bias` [out].
  ConvTranspose2d(ParamStore& ps, const std::string& name, int64_t in, int64_t out, int kh, int kw,
                  const ConvTranspose2dArgs& args, bool bias, bool trainable);
  Tensor forward(Ctx& ctx, const Tensor& x);
  Tensor backward(Ctx& ctx, const Tensor& dy, bool param_grads = true);

 private:
  ParamStore* ps_ = nullptr;
  ParamRef w_, b_;
  ConvTranspose2dArgs args_;
  Tensor x_;
};

// BatchNorm2d with PyTorch names: `<name>.weight`, `.bias` (trainable when the layer is),
// `.running_mean`, `.running_var` (never trainable).
class BatchNorm2d {
 public:
  BatchNorm2d() = default;
  BatchNorm2d(ParamStore& ps, const std::string& name, int64_t channels, double eps, bool trainable,
              double momentum = 0.1);
  // training=true: batch statistics, running statistics updated; false: running statistics.
  Tensor forward(Ctx& ctx, const Tensor& x, bool training = false);
  // Inference only: act(bn(x) + residual) in one pass (batchnorm2d_infer_act). backward() then
  // expects the gradient with respect to bn(x), i.e. after the caller has undone the activation.
  Tensor forward_infer_act(Ctx& ctx, const Tensor& x, const Tensor* residual, Activation act);
  // The same written over x (batchnorm2d_infer_act_inplace), for a frozen BN whose input nothing else reads
  // (a conv's output): x then holds y and is returned. Only backward_from_act may follow (it needs only y).
  Tensor forward_infer_act_inplace(Ctx& ctx, Tensor& x, const Tensor* residual, Activation act);
  Tensor backward(Ctx& ctx, const Tensor& dy, bool param_grads = true);
  // After forward_infer_act without a residual: the gradient with respect to x from dy with respect
  // to its output y (the activation undone here). A frozen BN without parameter gradients takes one
  // fused pass (batchnorm2d_infer_act_backward), else the activation's backward and backward().
  Tensor backward_from_act(Ctx& ctx, const Tensor& dy, const Tensor& y, Activation act, bool param_grads = true);
  double eps() const { return eps_; }
  bool trainable() const { return ps_->trainable(gamma_) || ps_->trainable(beta_); }
  // Inference as the epilogue of the conv before it: act(bn(conv2d(x, w)) + residual) in one op
  // (conv2d_bn_act). backward_from_act then gives the gradient with respect to the conv's output.
  Tensor conv_forward_infer_act(Ctx& ctx, const Tensor& x, const Tensor& w, const Conv2dArgs& a,
                                const Tensor* residual, Activation act);
  // Its backward through the conv too, frozen: the gradient with respect to the conv's input x_shape from
  // dy with respect to its output y (conv2d_dgrad_bn_act).
  Tensor conv_backward_infer_act(Ctx& ctx, const Tensor& dy, const Tensor& y, const Tensor& w, const Shape& x_shape,
                                 const Conv2dArgs& a, Activation act);

 private:
  ParamStore* ps_ = nullptr;
  ParamRef gamma_, beta_, mean_, var_;
  double eps_ = 1e-5, momentum_ = 0.1;
  bool trained_ = false;  // the last forward used batch statistics
  Tensor x_, save_mean_, save_invstd_;
};

class Linear {
 public:
  Linear() = default;
  // `<name>.weight` [out, in], `<name>.bias` [out].
  Linear(ParamStore& ps, const std::string& name, int64_t in, int64_t out, bool bias, bool trainable);
  Tensor forward(Ctx& ctx, const Tensor& x);  // x: [N, in] -> [N, out]
  Tensor backward(Ctx& ctx, const Tensor& dy, bool param_grads = true);

 private:
  ParamStore* ps_ = nullptr;
  ParamRef w_, b_;
  Tensor x_;
};

// Activations that remember what their backward needs.
class ReLU {
 public:
  Tensor forward(Ctx& ctx, const Tensor& x) { return y_ = relu(ctx, x); }
  Tensor backward(Ctx& ctx, const Tensor& dy) { return relu_backward(ctx, dy, y_); }

 private:
  Tensor y_;
};

class ReLU6 {
 public:
  Tensor forward(Ctx& ctx, const Tensor& x) {
    x_ = x;
    return relu6(ctx, x);
  }
  Tensor backward(Ctx& ctx, const Tensor& dy) { return relu6_backward(ctx, dy, x_); }

 private:
  Tensor x_;
};

class MaxPool2d {
 public:
  explicit MaxPool2d(const Pool2dArgs& a = {}) : args_(a) {}
  Tensor forward(Ctx& ctx, const Tensor& x) {
    x_ = x;
    return max_pool2d(ctx, x, args_);
  }
  Tensor backward(Ctx& ctx, const Tensor& dy) { return max_pool2d_backward(ctx, dy, x_, args_); }

 private:
  Pool2dArgs args_;
  Tensor x_;
};

// Whether ConvBnAct layers on `device` run conv + BN + activation as one conv2d_bn_act in inference.
// By default on for the CPU (6-16% more images/s and half the arena, bench/RESULTS.md) and off for CUDA:
// on the H200 the masker's ResNet-50 inference at batch 64 took 12.3-12.8 ms fused against 9.6-10.0
// unfused, and nothing was measurably faster fused (there the unfused layer is the convolution, then one
// batchnorm2d_infer_act pass for BN, shortcut and activation). SAL_FUSE_CONV_BN=1 or =0 in the
// environment turns it on or off for both devices (another value is an error). Process-wide:
// set_conv_bn_fusion overrides it for tests and comparisons, reset_conv_bn_fusion goes back to the
// environment's choice; each applies to the forwards that come after.
bool conv_bn_fusion(Device device);
void set_conv_bn_fusion(bool on);
void reset_conv_bn_fusion();
// How many fused forwards (conv2d_bn_act calls by ConvBnAct) the process has run: for tests and benchmarks.
int64_t conv_bn_fused_forwards();

// Conv2d -> BatchNorm2d -> ReLU or ReLU6 (activation optional): the unit most networks repeat.
//
// In inference, with the fusion on (conv_bn_fusion above: the CPU's default), every layer is one
// conv2d_bn_act: BN, activation (and a residual block's shortcut sum) in the convolution's epilogue, so
// the activation is written once instead of the conv's output plus a BN pass over it. Its backward
// gives the input gradient from y alone (conv2d_dgrad_bn_act); the parameter gradients of a trainable
// layer would need the conv's output, so asking for them after an inference forward is an error (the
// masker trains in training mode; its inference, the decoder included, is fused where the fusion is on).
// Unfused inference (CUDA's default) is the conv, then BN + activation (+ sum) in one pass, written over the
// conv's output when the BN is frozen (the black box, the encoder: one tensor per layer, not two); in
// training mode conv, BN and activation are separate ops.
class ConvBnAct {
 public:
  enum class Act { None, ReLU, ReLU6 };
  ConvBnAct() = default;
  // Names `<conv_name>.weight` and `<bn_name>.*` (torchvision: "conv1"/"bn1"; Keras: "conv1"/"conv1_bn").
  ConvBnAct(ParamStore& ps, const std::string& conv_name, const std::string& bn_name, int64_t in, int64_t out, int k,
            const Conv2dArgs& args, double bn_eps, Act act, bool trainable);
  Tensor forward(Ctx& ctx, const Tensor& x, bool training = false);
  Tensor backward(Ctx& ctx, const Tensor& dy, bool param_grads = true);
  // A residual block's last conv (act None): y = relu(bn(conv(x)) + residual). In inference BN, the
  // sum and the ReLU are one pass (batchnorm2d_infer_act with the residual); in training BN uses the
  // batch statistics, then the sum and the ReLU. Its backward returns dx and sets dsum, the gradient
  // of the sum (which is also the residual's).
  Tensor forward_add_relu(Ctx& ctx, const Tensor& x, const Tensor& residual, bool training = false);
  Tensor backward_add_relu(Ctx& ctx, const Tensor& dy, Tensor& dsum, bool param_grads = true);
  Conv2d& conv() { return conv_; }

 private:
  Conv2d conv_;
  BatchNorm2d bn_;
  Act act_ = Act::None;
  ReLU relu_;
  ReLU6 relu6_;
  Tensor fused_y_;  // inference: the fused BN + activation output (its backward needs only y)
  Tensor sum_y_;    // forward_add_relu's output (the ReLU's backward needs only y)
  // The fused path (see above): whether the last forward took it, and its input's shape (the conv's
  // backward needs only that and the weights).
  bool last_fused_ = false;
  Shape fused_x_shape_;
  bool last_inplace_ = false;  // forward_add_relu wrote BN + sum + ReLU over the conv's output (frozen BN)

  bool use_fusion(const Ctx& ctx, bool training) const;
  void check_fused_backward(bool param_grads) const;  // throws when a trainable layer's gradients are asked for
  Tensor fused_forward(Ctx& ctx, const Tensor& x, const Tensor* residual, Activation act);
};

}  // namespace sal
