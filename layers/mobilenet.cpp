// MobileNet v1 0.75 over the op API (see mobilenet.h for the architecture and names).
#include "layers/mobilenet.h"

#include "layers/networks.h"

namespace sal {

namespace {

// Output channels of conv_pw_1..13 and strides of conv_dw_1..13 (width multiplier 0.75).
constexpr int64_t kPwChannels[MobileNetV1::kBlocks] = {48, 96, 96, 192, 192, 384, 384, 384, 384, 384, 384, 768, 768};
constexpr int kDwStrides[MobileNetV1::kBlocks] = {1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1};
constexpr int64_t kStemChannels = 24;

// TF "same" padding of a 3x3 conv for the size of x.
Conv2dArgs same_3x3(const Tensor& x, int stride, int groups) {
  return Conv2dArgs::tf_same(x.dim(2), x.dim(3), 3, 3, stride, groups);
}

}  // namespace

MobileNetV1::MobileNetV1(const InputSpec& spec, Device device) : Network(spec) {
  SAL_CHECK(spec.num_classes >= 1, spec.arch, ": num_classes must be positive, got ", spec.num_classes);
  const double eps = spec.bn_eps;
  const bool trainable = false;  // a black box / encoder: no parameter gradients
  using Act = ConvBnAct::Act;
  // The padding given here is a placeholder: forward() sets TF "same" padding for each input size.
  conv1_ =
      ConvBnAct(params_, "conv1", "conv1_bn", 3, kStemChannels, 3, Conv2dArgs::make(2, 0), eps, Act::ReLU6, trainable);
  blocks_.resize(kBlocks);
  int64_t c = kStemChannels;
  for (int i = 0; i < kBlocks; ++i) {
    const std::string dw = "conv_dw_" + std::to_string(i + 1), pw = "conv_pw_" + std::to_string(i + 1);
    Block& b = blocks_[static_cast<size_t>(i)];
    b.stride = kDwStrides[i];
    b.channels_in = c;
    b.dw = ConvBnAct(params_, dw, dw + "_bn", c, c, 3, Conv2dArgs::make(b.stride, 0, 1, static_cast<int>(c)), eps,
                     Act::ReLU6, trainable);
    b.pw = ConvBnAct(params_, pw, pw + "_bn", c, kPwChannels[i], 1, Conv2dArgs::make(1, 0), eps, Act::ReLU6, trainable);
    c = kPwChannels[i];
  }
  preds_ = Conv2d(params_, "conv_preds", c, spec.num_classes, 1, 1, Conv2dArgs::make(1, 0), /*bias=*/true, trainable);
  finish(device);
}

Tensor MobileNetV1::forward(Ctx& ctx, const Tensor& input) {
  SAL_CHECK(input.ndim() == 4 && input.dim(1) == 3, spec_.arch, ": input must be [N,3,H,W], got ", input.desc());
  features_.clear();
  conv1_.conv().set_args(same_3x3(input, 2, 1));
  Tensor x = conv1_.forward(ctx, input);  // [N,24,H/2,W/2]
  size_t next_feature = 0;
  for (int i = 0; i < kBlocks; ++i) {
    Block& b = blocks_[static_cast<size_t>(i)];
    b.dw.conv().set_args(same_3x3(x, b.stride, static_cast<int>(b.channels_in)));
    x = b.pw.forward(ctx, b.dw.forward(ctx, x));
    if (next_feature < 4 && i + 1 == kFeatureBlocks[next_feature]) {
      features_.push_back(x);
      ++next_feature;
    }
  }
  pooled_shape_ = x.shape();
  Tensor pooled = global_avg_pool(ctx, x);      // [N,768,1,1]
  Tensor logits = preds_.forward(ctx, pooled);  // [N,classes,1,1]
  return logits.reshape(Shape{logits.dim(0), logits.dim(1)});
}

Tensor MobileNetV1::backward_input(Ctx& ctx, const Tensor& dlogits) {
  SAL_CHECK(!features_.empty(), spec_.arch, ": backward_input before forward");
  SAL_CHECK(dlogits.ndim() == 2 && dlogits.dim(0) == pooled_shape_[0] && dlogits.dim(1) == spec_.num_classes,
            spec_.arch, ": dlogits must be [", pooled_shape_[0], ",", spec_.num_classes, "], got ", dlogits.desc());
  Tensor d = preds_.backward(ctx, dlogits.reshape(Shape{dlogits.dim(0), dlogits.dim(1), 1, 1}), false);
  d = global_avg_pool_backward(ctx, d, pooled_shape_);
  for (int i = kBlocks - 1; i >= 0; --i) {
    Block& b = blocks_[static_cast<size_t>(i)];
    d = b.dw.backward(ctx, b.pw.backward(ctx, d, false), false);
  }
  return conv1_.backward(ctx, d, false);
}

std::unique_ptr<Network> make_mobilenet_v1(const InputSpec& spec, Device device) {
  return std::make_unique<MobileNetV1>(spec, device);
}

}  // namespace sal
