// The CIFAR ResNet 6n+2 with option-A shortcuts (see cifar_resnet.h for the structure).
#include "layers/cifar_resnet.h"

#include <array>

#include "layers/networks.h"

namespace sal {

namespace {
// x[:, :, ::s, ::s] is exactly a 1x1 average pool with stride s: (H-1)/s + 1 = ceil(H/s) outputs.
Pool2dArgs subsample_args(int stride) { return Pool2dArgs::make(1, stride, 0); }
}  // namespace

CifarBasicBlock::CifarBasicBlock(ParamStore& ps, const std::string& name, int64_t in, int64_t planes, int stride,
                                 double bn_eps, bool trainable)
    : in_(in), planes_(planes), stride_(stride) {
  SAL_CHECK(in > 0 && planes > 0 && stride >= 1, "CifarBasicBlock '", name, "': bad geometry in=", in,
            " planes=", planes, " stride=", stride);
  using Act = ConvBnAct::Act;
  const std::string p = name + ".";
  c1_ = ConvBnAct(ps, p + "conv1", p + "bn1", in, planes, 3, Conv2dArgs::make(stride, 1), bn_eps, Act::ReLU,
                  trainable);
  c2_ = ConvBnAct(ps, p + "conv2", p + "bn2", planes, planes, 3, Conv2dArgs::make(1, 1), bn_eps, Act::None,
                  trainable);
  option_a_ = stride != 1 || in != planes;
  SAL_CHECK(!option_a_ || (planes >= in && (planes - in) % 2 == 0), "CifarBasicBlock '", name,
            "': option-A shortcut pads channels equally on both sides, cannot go from ", in, " to ", planes,
            " channels");
}

Tensor CifarBasicBlock::forward(Ctx& ctx, const Tensor& x, bool training) {
  SAL_CHECK(x.ndim() == 4 && x.dim(1) == in_, "CifarBasicBlock: input must be [N,", in_, ",H,W], got ", x.desc());
  x_shape_ = x.shape();
  const Tensor h = c1_.forward(ctx, x, training);
  Tensor shortcut = x;
  if (option_a_) {
    Tensor sub = stride_ > 1 ? avg_pool2d(ctx, x, subsample_args(stride_)) : x;  // [N,in,H/s,W/s]
    const int64_t pad = (planes_ - in_) / 2;
    if (pad > 0) {
      Tensor zeros = ctx.alloc_zeros(Shape{sub.dim(0), pad, sub.dim(2), sub.dim(3)}, sub.dtype());
      const std::array<Tensor, 3> parts{zeros, sub, zeros};
      shortcut = concat_channels(ctx, parts);  // [N,planes,H/s,W/s]
    } else {
      shortcut = sub;
    }
  }
  return c2_.forward_add_relu(ctx, h, shortcut, training);  // [N,planes,H/s,W/s]; one pass in inference
}

Tensor CifarBasicBlock::backward(Ctx& ctx, const Tensor& dy, bool param_grads) {
  Tensor dsum;
  Tensor dx = c1_.backward(ctx, c2_.backward_add_relu(ctx, dy, dsum, param_grads), param_grads);
  Tensor dshort = dsum;
  if (option_a_) {
    const int64_t pad = (planes_ - in_) / 2;
    if (pad > 0) dshort = slice_channels(ctx, dsum, pad, in_);  // the zero channels have no input
    if (stride_ > 1) dshort = avg_pool2d_backward(ctx, dshort, x_shape_, subsample_args(stride_));
  }
  axpy(ctx, 1.0, dshort, dx);  // in place into the conv's fresh input gradient
  return dx;
}

CifarResNet::CifarResNet(const InputSpec& spec, Device device, int depth, DType dtype)
    : Network(spec), depth_(depth) {
  SAL_CHECK(depth >= 8 && (depth - 2) % 6 == 0, spec.arch, ": a CIFAR ResNet has depth 6n+2 >= 8, got ", depth);
  SAL_CHECK(spec.num_classes > 0, spec.arch, ": num_classes must be positive, got ", spec.num_classes);
  SAL_CHECK(dtype == DType::F32 || (dtype == DType::F64 && device == Device::CPU), spec.arch,
            ": parameters are F32 (or F64 on the CPU), got ", dtype_name(dtype), " on ", device_name(device));
  const double eps = spec.bn_eps;
  const int n = (depth - 2) / 6;
  stem_ = ConvBnAct(params_, "conv1", "bn1", 3, 16, 3, Conv2dArgs::make(1, 1), eps, ConvBnAct::Act::ReLU,
                    /*trainable=*/false);
  int64_t in = 16;
  for (int l = 0; l < 3; ++l) {
    const int64_t planes = int64_t{16} << l;
    for (int b = 0; b < n; ++b) {
      const int stride = (b == 0 && l > 0) ? 2 : 1;
      layers_[l].emplace_back(params_, "layer" + std::to_string(l + 1) + "." + std::to_string(b), in, planes, stride,
                              eps, /*trainable=*/false);
      in = planes;
    }
  }
  linear_ = Linear(params_, "linear", in, spec.num_classes, /*bias=*/true, /*trainable=*/false);
  finish(device, dtype);
}

Tensor CifarResNet::forward(Ctx& ctx, const Tensor& input) {
  SAL_CHECK(input.ndim() == 4 && input.dim(1) == 3, spec_.arch, ": input must be [N,3,H,W], got ", input.desc());
  Tensor x = stem_.forward(ctx, input);  // [N,16,H,W]
  feats_.clear();
  for (auto& layer : layers_) {
    for (CifarBasicBlock& block : layer) x = block.forward(ctx, x);
    feats_.push_back(x);  // [N,16,H,W], [N,32,H/2,W/2], [N,64,H/4,W/4]
  }
  last_shape_ = x.shape();
  Tensor pooled = global_avg_pool(ctx, x);  // [N,64,1,1]
  pooled_shape_ = pooled.shape();
  return linear_.forward(ctx, pooled.reshape(Shape{x.dim(0), x.dim(1)}));  // [N,num_classes]
}

Tensor CifarResNet::backward_input(Ctx& ctx, const Tensor& dlogits) {
  SAL_CHECK(!feats_.empty(), spec_.arch, ": backward_input before forward");
  Tensor d = linear_.backward(ctx, dlogits, /*param_grads=*/false).reshape(pooled_shape_);
  d = global_avg_pool_backward(ctx, d, last_shape_);
  for (int l = 2; l >= 0; --l)
    for (auto it = layers_[l].rbegin(); it != layers_[l].rend(); ++it) d = it->backward(ctx, d, false);
  return stem_.backward(ctx, d, false);
}

std::unique_ptr<Network> make_cifar_resnet(const InputSpec& spec, Device device, int depth) {
  return std::make_unique<CifarResNet>(spec, device, depth);
}

}  // namespace sal
