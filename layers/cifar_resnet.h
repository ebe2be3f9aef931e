// The CIFAR ResNet of depth 6n+2 (He et al. 2016, section 4.2; the akamaster/pytorch_resnet_cifar10
// layout and key names, weights/README.md), over the op API.
//
//   conv1 3x3 16ch pad 1 + bn1 + ReLU                       [N,16,H,W]
//   layer1: n BasicBlocks, 16 ch, stride 1                  [N,16,H,W]     feature 1
//   layer2: n BasicBlocks, 32 ch, first stride 2            [N,32,H/2,W/2] feature 2
//   layer3: n BasicBlocks, 64 ch, first stride 2            [N,64,H/4,W/4] feature 3
//   global average pool, linear 64 -> num_classes
// BasicBlock: relu(bn1(conv1 x)), bn2(conv2 .), + shortcut(x), ReLU; convs 3x3 pad 1, the stride
// on conv1. Shortcut option A (no parameters) when the shape changes: x[:, :, ::s, ::s] with
// (planes - in)/2 zero channels on each side (akamaster: planes/4); identity otherwise.
#pragma once
#include <memory>
#include <vector>

#include "layers/modules.h"
#include "layers/network.h"

namespace sal {

class CifarBasicBlock {
 public:
  CifarBasicBlock() = default;
  // `<name>.conv1`, `.bn1`, `.conv2`, `.bn2`.
  CifarBasicBlock(ParamStore& ps, const std::string& name, int64_t in, int64_t planes, int stride, double bn_eps,
                  bool trainable);
  Tensor forward(Ctx& ctx, const Tensor& x, bool training = false);  // [N,in,H,W] -> [N,planes,H/s,W/s]
  Tensor backward(Ctx& ctx, const Tensor& dy, bool param_grads = true);

 private:
  int64_t in_ = 0, planes_ = 0;
  int stride_ = 1;
  ConvBnAct c1_, c2_;  // conv1/bn1 + ReLU, conv2/bn2 (+ shortcut + ReLU)
  bool option_a_ = false;  // the shortcut subsamples and pads channels
  Shape x_shape_;          // the input shape of the last forward (for the shortcut's backward)
};

class CifarResNet : public Network {
 public:
  // depth = 6n+2 >= 8. Zero parameters (all frozen) on `device`; load() fills them. dtype F64
  // (CPU) is for gradient checks: the parameters, and so every activation, are then double.
  CifarResNet(const InputSpec& spec, Device device, int depth, DType dtype = DType::F32);
  Tensor forward(Ctx& ctx, const Tensor& input) override;
  std::vector<Tensor> features() const override { return feats_; }
  Tensor backward_input(Ctx& ctx, const Tensor& dlogits) override;
  int depth() const { return depth_; }

 private:
  int depth_ = 0;
  ConvBnAct stem_;
  std::vector<CifarBasicBlock> layers_[3];
  Linear linear_;
  std::vector<Tensor> feats_;
  Shape pooled_shape_, last_shape_;
};

}  // namespace sal
