// torchvision GoogLeNet (Inception v1) as a frozen Network, with torchvision's key names and
// without the auxiliary heads (they only run in training).
//
//   [transform_input]  x_c' = x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5 (ImageNet mean/std)
//   conv1 7x7/2 pad 3 (64) -> maxpool1 3x3/2 -> conv2 1x1 (64) -> conv3 3x3 pad 1 (192)
//   -> maxpool2 3x3/2 -> inception3a, 3b -> maxpool3 3x3/2 -> inception4a..4e
//   -> maxpool4 2x2/2 -> inception5a, 5b -> global average pool -> fc (1024 -> classes)
// Every conv is BasicConv2d: conv without bias, BN (eps from the file: 1e-3), ReLU. Every
// max-pool uses ceil_mode. Inception: concat of branch1 (1x1), branch2 (1x1, 3x3 pad 1),
// branch3 (1x1, 3x3 pad 1: torchvision's 3x3 where the paper has 5x5), branch4 (max-pool 3x3/1
// pad 1, 1x1). Dropout is an identity (eval).
// Feature maps: conv3 (192 ch, 1/4), inception3b (480, 1/8), inception4e (832, 1/16),
// inception5b (1024, 1/32).
#pragma once
#include <array>
#include <vector>

#include "layers/modules.h"
#include "layers/network.h"

namespace sal {

class GoogLeNet : public Network {
 public:
  GoogLeNet(const InputSpec& spec, Device device);

  Tensor forward(Ctx& ctx, const Tensor& input) override;
  std::vector<Tensor> features() const override { return features_; }
  Tensor backward_input(Ctx& ctx, const Tensor& dlogits) override;

 private:
  // BasicConv2d: `<name>.conv.weight`, `<name>.bn.*`.
  static ConvBnAct basic_conv(ParamStore& ps, const std::string& name, int64_t in, int64_t out, int k, int pad,
                              int stride, double eps);

  class Inception {
   public:
    Inception() = default;
    // Output channels: ch1x1 + ch3x3 + ch5x5 + pool_proj (branch3's "5x5" is a 3x3 in torchvision).
    Inception(ParamStore& ps, const std::string& name, int64_t in, int64_t ch1x1, int64_t ch3x3red, int64_t ch3x3,
              int64_t ch5x5red, int64_t ch5x5, int64_t pool_proj, double eps);
    Tensor forward(Ctx& ctx, const Tensor& x);  // [N,in,H,W] -> [N,out,H,W]
    Tensor backward(Ctx& ctx, const Tensor& dy);

   private:
    ConvBnAct b1_, b2a_, b2b_, b3a_, b3b_, b4_;
    MaxPool2d pool_;
    std::array<int64_t, 4> widths_{};
  };

  bool transform_ = false;
  Tensor ti_scale_, ti_shift_;  // [1,3,1,1]: transform_input's per-channel affine
  ConvBnAct conv1_, conv2_, conv3_;
  MaxPool2d pool1_, pool2_, pool3_, pool4_;
  Inception i3a_, i3b_, i4a_, i4b_, i4c_, i4d_, i4e_, i5a_, i5b_;
  Linear fc_;
  Shape pooled_shape_;  // inception5b's output shape, for the global-pool backward
  std::vector<Tensor> features_;
};

}  // namespace sal
