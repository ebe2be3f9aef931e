#include "layers/modules.h"

#include <atomic>
#include <cstdlib>
#include <string>

namespace sal {

namespace {
// Parameter gradients are accumulated only for trainable parameters, and only when asked for.
Tensor* grad_or_null(ParamStore& ps, ParamRef p, bool wanted, Tensor& slot) {
  if (!wanted || !p.valid() || !ps.trainable(p)) return nullptr;
  slot = ps.grad(p);
  return &slot;
}

// The gradient before an activation from the one after it and its output y: relu and relu6 backwards
// take y (0 < y < 6 exactly when 0 < pre-activation < 6).
Tensor activation_backward(Ctx& ctx, const Tensor& dy, const Tensor& y, Activation act) {
  switch (act) {
    case Activation::ReLU: return relu_backward(ctx, dy, y);
    case Activation::ReLU6: return relu6_backward(ctx, dy, y);
    case Activation::None: return dy;
  }
  return dy;
}

Activation activation_of(ConvBnAct::Act a) {
  switch (a) {
    case ConvBnAct::Act::ReLU: return Activation::ReLU;
    case ConvBnAct::Act::ReLU6: return Activation::ReLU6;
    case ConvBnAct::Act::None: return Activation::None;
  }
  return Activation::None;
}

// What decides the conv + BN fusion: not read yet (SAL_FUSE_CONV_BN is read on first use), off, on, or
// the per-device default.
enum FusionSetting : int { kFusionUnread = -1, kFusionOff = 0, kFusionOn = 1, kFusionDefault = 2 };
std::atomic<int> g_fusion{kFusionUnread};
std::atomic<int64_t> g_fused_forwards{0};

int fusion_from_environment() {
  const char* e = std::getenv("SAL_FUSE_CONV_BN");
  if (!e || !*e) return kFusionDefault;
  const std::string v(e);
  SAL_CHECK(v == "0" || v == "1", "SAL_FUSE_CONV_BN='", v, "': expected 0 (off), 1 (on), or unset (on for the CPU, ",
            "off for CUDA)");
  return v == "1" ? kFusionOn : kFusionOff;
}
}  // namespace

bool conv_bn_fusion(Device device) {
  int v = g_fusion.load();
  if (v == kFusionUnread) {
    int expected = kFusionUnread;
    g_fusion.compare_exchange_strong(expected, fusion_from_environment());  // unless set meanwhile
    v = g_fusion.load();
  }
  return v == kFusionOn || (v == kFusionDefault && device == Device::CPU);
}

void set_conv_bn_fusion(bool on) { g_fusion.store(on ? kFusionOn : kFusionOff); }

void reset_conv_bn_fusion() { g_fusion.store(kFusionUnread); }

int64_t conv_bn_fused_forwards() { return g_fused_forwards.load(); }

Conv2d::Conv2d(ParamStore& ps, const std::string& name, int64_t in, int64_t out, int kh, int kw,
               const Conv2dArgs& args, bool bias, bool trainable)
    : ps_(&ps), args_(args) {
  SAL_CHECK(args.groups >= 1 && in % args.groups == 0 && out % args.groups == 0, "Conv2d '", name, "': ", in, " -> ",
            out, " channels do not divide into ", args.groups, " groups");
  w_ = ps.add(name + ".weight", Shape{out, in / args.groups, kh, kw}, trainable);
  if (bias) b_ = ps.add(name + ".bias", Shape{out}, trainable);
}

Tensor Conv2d::forward(Ctx& ctx, const Tensor& x) {
  x_ = x;
  Tensor b = b_.valid() ? ps_->value(b_) : Tensor();
  return conv2d(ctx, x, ps_->value(w_), b_.valid() ? &b : nullptr, args_);
}

Tensor Conv2d::backward(Ctx& ctx, const Tensor& dy, bool param_grads) {
  Tensor w = ps_->value(w_);
  Tensor dw, db;
  Tensor* pdw = grad_or_null(*ps_, w_, param_grads, dw);
  Tensor* pdb = grad_or_null(*ps_, b_, param_grads, db);
  if (pdw) conv2d_wgrad(ctx, dy, x_, *pdw, pdb, args_);
  return conv2d_dgrad(ctx, dy, w, x_.shape(), args_);
}

ConvTranspose2d::ConvTranspose2d(ParamStore& ps, const std::string& name, int64_t in, int64_t out, int kh, int kw,
                                 const ConvTranspose2dArgs& args, bool bias, bool trainable)
    : ps_(&ps), args_(args) {
  SAL_CHECK(args.groups >= 1 && in % args.groups == 0 && out % args.groups == 0, "ConvTranspose2d '", name, "': ",
            in, " -> ", out, " channels do not divide into ", args.groups, " groups");
  w_ = ps.add(name + ".weight", Shape{in, out / args.groups, kh, kw}, trainable);
  if (bias) b_ = ps.add(name + ".bias", Shape{out}, trainable);
}

Tensor ConvTranspose2d::forward(Ctx& ctx, const Tensor& x) {
  x_ = x;
  Tensor b = b_.valid() ? ps_->value(b_) : Tensor();
  return conv_transpose2d(ctx, x, ps_->value(w_), b_.valid() ? &b : nullptr, args_);
}

Tensor ConvTranspose2d::backward(Ctx& ctx, const Tensor& dy, bool param_grads) {
  Tensor dw, db;
  Tensor* pdw = grad_or_null(*ps_, w_, param_grads, dw);
  Tensor* pdb = grad_or_null(*ps_, b_, param_grads, db);
  if (pdw) conv_transpose2d_wgrad(ctx, dy, x_, *pdw, pdb, args_);
  return conv_transpose2d_dgrad(ctx, dy, ps_->value(w_), x_.shape(), args_);
}

BatchNorm2d::BatchNorm2d(ParamStore& ps, const std::string& name, int64_t channels, double eps, bool trainable,
                         double momentum)
    : ps_(&ps), eps_(eps), momentum_(momentum) {
  gamma_ = ps.add(name + ".weight", Shape{channels}, trainable);
  beta_ = ps.add(name + ".bias", Shape{channels}, trainable);
  mean_ = ps.add(name + ".running_mean", Shape{channels}, false);
  var_ = ps.add(name + ".running_var", Shape{channels}, false);
}

Tensor BatchNorm2d::forward(Ctx& ctx, const Tensor& x, bool training) {
  x_ = x;
  trained_ = training;
  Tensor gamma = ps_->value(gamma_), beta = ps_->value(beta_), mean = ps_->value(mean_), var = ps_->value(var_);
  if (!training) return batchnorm2d_infer(ctx, x, gamma, beta, mean, var, eps_);
  save_mean_ = ctx.alloc(Shape{x.dim(1)}, x.dtype());
  save_invstd_ = ctx.alloc(Shape{x.dim(1)}, x.dtype());
  return batchnorm2d_train(ctx, x, gamma, beta, eps_, momentum_, &mean, &var, save_mean_, save_invstd_);
}

Tensor BatchNorm2d::forward_infer_act(Ctx& ctx, const Tensor& x, const Tensor* residual, Activation act) {
  x_ = x;
  trained_ = false;
  return batchnorm2d_infer_act(ctx, x, ps_->value(gamma_), ps_->value(beta_), ps_->value(mean_), ps_->value(var_),
                               eps_, residual, act);
}

Tensor BatchNorm2d::forward_infer_act_inplace(Ctx& ctx, Tensor& x, const Tensor* residual, Activation act) {
  SAL_CHECK(!trainable(), "BatchNorm2d::forward_infer_act_inplace: a trainable batch norm's backward needs its input");
  x_ = Tensor();  // overwritten: backward() would need it, backward_from_act needs only y
  trained_ = false;
  batchnorm2d_infer_act_inplace(ctx, x, ps_->value(gamma_), ps_->value(beta_), ps_->value(mean_), ps_->value(var_),
                                eps_, residual, act);
  return x;
}

Tensor BatchNorm2d::backward(Ctx& ctx, const Tensor& dy, bool param_grads) {
  SAL_CHECK(trained_ || x_.defined(), "BatchNorm2d::backward: no forward kept its input (after an in-place or fused "
                                      "inference forward only backward_from_act applies)");
  Tensor dg, db;
  Tensor* pdg = grad_or_null(*ps_, gamma_, param_grads, dg);
  Tensor* pdb = grad_or_null(*ps_, beta_, param_grads, db);
  Tensor gamma = ps_->value(gamma_);
  if (trained_) return batchnorm2d_train_backward(ctx, dy, x_, gamma, save_mean_, save_invstd_, pdg, pdb);
  return batchnorm2d_infer_backward(ctx, dy, x_, gamma, ps_->value(mean_), ps_->value(var_), eps_, pdg, pdb);
}

Tensor BatchNorm2d::backward_from_act(Ctx& ctx, const Tensor& dy, const Tensor& y, Activation act, bool param_grads) {
  SAL_CHECK(!trained_, "BatchNorm2d::backward_from_act: the last forward was in training mode");
  Tensor dg, db;
  if (!grad_or_null(*ps_, gamma_, param_grads, dg) && !grad_or_null(*ps_, beta_, param_grads, db))
    return batchnorm2d_infer_act_backward(ctx, dy, y, ps_->value(gamma_), ps_->value(var_), eps_, act);
  return backward(ctx, activation_backward(ctx, dy, y, act), param_grads);
}

Tensor BatchNorm2d::conv_forward_infer_act(Ctx& ctx, const Tensor& x, const Tensor& w, const Conv2dArgs& a,
                                           const Tensor* residual, Activation act) {
  x_ = Tensor();  // the conv's output is never materialised: backward_from_act needs only y
  trained_ = false;
  return conv2d_bn_act(ctx, x, w, ps_->value(gamma_), ps_->value(beta_), ps_->value(mean_), ps_->value(var_), eps_,
                       residual, act, a);
}

Tensor BatchNorm2d::conv_backward_infer_act(Ctx& ctx, const Tensor& dy, const Tensor& y, const Tensor& w,
                                            const Shape& x_shape, const Conv2dArgs& a, Activation act) {
  SAL_CHECK(!trained_, "BatchNorm2d::conv_backward_infer_act: the last forward was in training mode");
  return conv2d_dgrad_bn_act(ctx, dy, y, w, ps_->value(gamma_), ps_->value(var_), eps_, act, x_shape, a);
}

Linear::Linear(ParamStore& ps, const std::string& name, int64_t in, int64_t out, bool bias, bool trainable)
    : ps_(&ps) {
  w_ = ps.add(name + ".weight", Shape{out, in}, trainable);
  if (bias) b_ = ps.add(name + ".bias", Shape{out}, trainable);
}

Tensor Linear::forward(Ctx& ctx, const Tensor& x) {
  x_ = x;
  Tensor b = b_.valid() ? ps_->value(b_) : Tensor();
  return linear(ctx, x, ps_->value(w_), b_.valid() ? &b : nullptr);
}

Tensor Linear::backward(Ctx& ctx, const Tensor& dy, bool param_grads) {
  Tensor dw, db;
  Tensor* pdw = grad_or_null(*ps_, w_, param_grads, dw);
  Tensor* pdb = grad_or_null(*ps_, b_, param_grads, db);
  if (pdw) linear_wgrad(ctx, dy, x_, *pdw, pdb);
  return linear_dgrad(ctx, dy, ps_->value(w_));
}

ConvBnAct::ConvBnAct(ParamStore& ps, const std::string& conv_name, const std::string& bn_name, int64_t in,
                     int64_t out, int k, const Conv2dArgs& args, double bn_eps, Act act, bool trainable)
    : conv_(ps, conv_name, in, out, k, k, args, /*bias=*/false, trainable),
      bn_(ps, bn_name, out, bn_eps, trainable),
      act_(act) {}

bool ConvBnAct::use_fusion(const Ctx& ctx, bool training) const { return !training && conv_bn_fusion(ctx.device); }

void ConvBnAct::check_fused_backward(bool param_grads) const {
  SAL_CHECK(!param_grads || !(conv_.trainable() || bn_.trainable()),
            "ConvBnAct: parameter gradients after an inference forward (the conv and its batch norm ran as one op, "
            "without the conv output their gradients need): run the forward in training mode, or set "
            "SAL_FUSE_CONV_BN=0");
}

Tensor ConvBnAct::fused_forward(Ctx& ctx, const Tensor& x, const Tensor* residual, Activation act) {
  last_fused_ = true;
  fused_x_shape_ = x.shape();
  g_fused_forwards.fetch_add(1);
  return bn_.conv_forward_infer_act(ctx, x, conv_.weight(), conv_.args(), residual, act);
}

Tensor ConvBnAct::forward(Ctx& ctx, const Tensor& x, bool training) {
  fused_y_ = Tensor();
  last_fused_ = false;
  const Activation a = activation_of(act_);
  if (use_fusion(ctx, training)) return fused_y_ = fused_forward(ctx, x, nullptr, a);
  if (!training && !bn_.trainable()) {
    // Frozen: BN + activation written over the conv's output, which nothing else reads (the backward needs
    // only y), so inference keeps one tensor per layer, not two.
    Tensor c = conv_.forward(ctx, x);
    fused_y_ = bn_.forward_infer_act_inplace(ctx, c, nullptr, a);
    return fused_y_;
  }
  if (!training && act_ != Act::None) {
    // One pass for BN + activation; relu and relu6 backwards can be computed from y alone
    // (0 < y < 6 exactly when 0 < pre-activation < 6).
    fused_y_ = bn_.forward_infer_act(ctx, conv_.forward(ctx, x), nullptr, a);
    return fused_y_;
  }
  Tensor y = bn_.forward(ctx, conv_.forward(ctx, x), training);
  switch (act_) {
    case Act::ReLU: return relu_.forward(ctx, y);
    case Act::ReLU6: return relu6_.forward(ctx, y);
    case Act::None: return y;
  }
  return y;
}

Tensor ConvBnAct::forward_add_relu(Ctx& ctx, const Tensor& x, const Tensor& residual, bool training) {
  SAL_CHECK(act_ == Act::None, "ConvBnAct::forward_add_relu: the conv has its own activation");
  fused_y_ = Tensor();
  last_fused_ = false;
  last_inplace_ = false;
  if (use_fusion(ctx, training)) return sum_y_ = fused_forward(ctx, x, &residual, Activation::ReLU);
  Tensor c = conv_.forward(ctx, x);
  if (!training && !bn_.trainable()) {  // frozen: written over the conv's output, as in forward()
    last_inplace_ = true;
    sum_y_ = bn_.forward_infer_act_inplace(ctx, c, &residual, Activation::ReLU);
    return sum_y_;
  }
  if (!training) {
    sum_y_ = bn_.forward_infer_act(ctx, c, &residual, Activation::ReLU);
    return sum_y_;
  }
  Tensor main = bn_.forward(ctx, c, true);
  axpy(ctx, 1.0, residual, main);  // in place: BN's output is kept by no module for its backward
  sum_y_ = relu(ctx, main);
  return sum_y_;
}

Tensor ConvBnAct::backward_add_relu(Ctx& ctx, const Tensor& dy, Tensor& dsum, bool param_grads) {
  SAL_CHECK(sum_y_.defined(), "ConvBnAct::backward_add_relu before forward_add_relu");
  dsum = relu_backward(ctx, dy, sum_y_);
  if (last_fused_) {  // BN's and the conv's input gradients in one op
    check_fused_backward(param_grads);
    return bn_.conv_backward_infer_act(ctx, dsum, sum_y_, conv_.weight(), fused_x_shape_, conv_.args(),
                                       Activation::None);
  }
  if (last_inplace_)  // BN's input was overwritten: its gradient from y (frozen: no BN parameter gradients)
    return conv_.backward(ctx, bn_.backward_from_act(ctx, dsum, sum_y_, Activation::None, param_grads), param_grads);
  return conv_.backward(ctx, bn_.backward(ctx, dsum, param_grads), param_grads);
}

Tensor ConvBnAct::backward(Ctx& ctx, const Tensor& dy, bool param_grads) {
  const Activation a = activation_of(act_);
  // Fused: the activation's, BN's and the conv's input gradients in one op (from y).
  if (last_fused_) {
    check_fused_backward(param_grads);
    return bn_.conv_backward_infer_act(ctx, dy, fused_y_, conv_.weight(), fused_x_shape_, conv_.args(), a);
  }
  if (fused_y_.defined())  // inference: the activation and BN backward in one pass when BN is frozen
    return conv_.backward(ctx, bn_.backward_from_act(ctx, dy, fused_y_, a, param_grads), param_grads);
  Tensor d = dy;
  if (act_ == Act::ReLU) {
    d = relu_.backward(ctx, dy);
  } else if (act_ == Act::ReLU6) {
    d = relu6_.backward(ctx, dy);
  }
  return conv_.backward(ctx, bn_.backward(ctx, d, param_grads), param_grads);
}

}  // namespace sal
