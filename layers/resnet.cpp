// torchvision ResNet-50 v1.5 and the Bottleneck block (see resnet.h for the structure).
#include "layers/resnet.h"

#include "layers/networks.h"

namespace sal {

Bottleneck::Bottleneck(ParamStore& ps, const std::string& name, int64_t in, int64_t width, int64_t out, int stride,
                       double bn_eps, bool trainable)
    : in_(in), out_(out) {
  SAL_CHECK(in > 0 && width > 0 && out > 0 && stride >= 1, "Bottleneck '", name, "': bad geometry in=", in,
            " width=", width, " out=", out, " stride=", stride);
  using Act = ConvBnAct::Act;
  const std::string p = name + ".";
  c1_ = ConvBnAct(ps, p + "conv1", p + "bn1", in, width, 1, Conv2dArgs::make(1, 0), bn_eps, Act::ReLU, trainable);
  c2_ = ConvBnAct(ps, p + "conv2", p + "bn2", width, width, 3, Conv2dArgs::make(stride, 1), bn_eps, Act::ReLU,
                  trainable);
  c3_ = ConvBnAct(ps, p + "conv3", p + "bn3", width, out, 1, Conv2dArgs::make(1, 0), bn_eps, Act::None, trainable);
  has_down_ = stride != 1 || in != out;
  if (has_down_)
    down_ = ConvBnAct(ps, p + "downsample.0", p + "downsample.1", in, out, 1, Conv2dArgs::make(stride, 0), bn_eps,
                      Act::None, trainable);
}

Tensor Bottleneck::forward(Ctx& ctx, const Tensor& x, bool training) {
  SAL_CHECK(x.ndim() == 4 && x.dim(1) == in_, "Bottleneck: input must be [N,", in_, ",H,W], got ", x.desc());
  const Tensor h = c2_.forward(ctx, c1_.forward(ctx, x, training), training);
  const Tensor shortcut = has_down_ ? down_.forward(ctx, x, training) : x;
  return c3_.forward_add_relu(ctx, h, shortcut, training);  // bn3 + shortcut + ReLU: one pass in inference
}

Tensor Bottleneck::backward(Ctx& ctx, const Tensor& dy, bool param_grads) {
  Tensor dsum;  // d(main + shortcut), the same for both branches
  Tensor dx = c1_.backward(ctx, c2_.backward(ctx, c3_.backward_add_relu(ctx, dy, dsum, param_grads), param_grads),
                           param_grads);
  Tensor dshort = has_down_ ? down_.backward(ctx, dsum, param_grads) : dsum;
  axpy(ctx, 1.0, dshort, dx);  // in place into the conv's fresh input gradient
  return dx;
}

namespace {
constexpr int kBlocks[4] = {3, 4, 6, 3};
constexpr int64_t kWidth[4] = {64, 128, 256, 512};
}  // namespace

ResNet50::ResNet50(const InputSpec& spec, Device device, DType dtype)
    : Network(spec), pool_(Pool2dArgs::make(3, 2, 1)) {
  SAL_CHECK(spec.num_classes > 0, spec.arch, ": num_classes must be positive, got ", spec.num_classes);
  SAL_CHECK(dtype == DType::F32 || (dtype == DType::F64 && device == Device::CPU), spec.arch,
            ": parameters are F32 (or F64 on the CPU), got ", dtype_name(dtype), " on ", device_name(device));
  const double eps = spec.bn_eps;
  stem_ = ConvBnAct(params_, "conv1", "bn1", 3, 64, 7, Conv2dArgs::make(2, 3), eps, ConvBnAct::Act::ReLU,
                    /*trainable=*/false);
  int64_t in = 64;
  for (int l = 0; l < 4; ++l) {
    const int64_t out = kWidth[l] * 4;
    for (int b = 0; b < kBlocks[l]; ++b) {
      const int stride = (b == 0 && l > 0) ? 2 : 1;
      layers_[l].emplace_back(params_, "layer" + std::to_string(l + 1) + "." + std::to_string(b), in, kWidth[l], out,
                              stride, eps, /*trainable=*/false);
      in = out;
    }
  }
  fc_ = Linear(params_, "fc", in, spec.num_classes, /*bias=*/true, /*trainable=*/false);
  finish(device, dtype);
}

Tensor ResNet50::forward(Ctx& ctx, const Tensor& input) {
  SAL_CHECK(input.ndim() == 4 && input.dim(1) == 3, spec_.arch, ": input must be [N,3,H,W], got ", input.desc());
  Tensor x = pool_.forward(ctx, stem_.forward(ctx, input));  // [N,64,H/4,W/4]
  feats_.clear();
  for (auto& layer : layers_) {
    for (Bottleneck& block : layer) x = block.forward(ctx, x);
    feats_.push_back(x);  // [N,256,H/4,W/4], [N,512,H/8,..], [N,1024,H/16,..], [N,2048,H/32,..]
  }
  last_shape_ = x.shape();
  Tensor pooled = global_avg_pool(ctx, x);  // [N,2048,1,1]
  pooled_shape_ = pooled.shape();
  return fc_.forward(ctx, pooled.reshape(Shape{x.dim(0), x.dim(1)}));  // [N,num_classes]
}

Tensor ResNet50::backward_input(Ctx& ctx, const Tensor& dlogits) {
  SAL_CHECK(!feats_.empty(), spec_.arch, ": backward_input before forward");
  Tensor d = fc_.backward(ctx, dlogits, /*param_grads=*/false).reshape(pooled_shape_);
  d = global_avg_pool_backward(ctx, d, last_shape_);
  for (int l = 3; l >= 0; --l)
    for (auto it = layers_[l].rbegin(); it != layers_[l].rend(); ++it) d = it->backward(ctx, d, false);
  return stem_.backward(ctx, pool_.backward(ctx, d), false);
}

std::unique_ptr<Network> make_resnet50(const InputSpec& spec, Device device) {
  return std::make_unique<ResNet50>(spec, device);
}

}  // namespace sal
