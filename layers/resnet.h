// torchvision ResNet-50 ("v1.5") and its Bottleneck block, over the op API.
//
// Bottleneck (torchvision names under `<name>.`):
//   x:[N,in,H,W] -> conv1 1x1 -> bn1 -> ReLU -> conv2 3x3 stride s pad 1 -> bn2 -> ReLU
//                -> conv3 1x1 -> bn3 -> (+ shortcut) -> ReLU -> y:[N,out,H/s,W/s]
//   shortcut = x, or downsample.0 (1x1 conv, stride s) + downsample.1 (BN) when s != 1 or in != out.
// v1.5 puts the stride on the 3x3 conv2 (v1 had it on conv1). The block is reused by the masker's
// decoder with trainable parameters and training-mode batch norm, hence the `trainable` flag and
// forward(ctx, x, training) / backward(ctx, dy, param_grads).
//
// ResNet50: conv1 7x7/2 pad 3 + bn1 + ReLU, max-pool 3x3/2 pad 1, layer1..layer4 of 3/4/6/3
// bottlenecks (width 64/128/256/512, out 256/512/1024/2048, first-block stride 1/2/2/2), global
// average pool, fc. Features: the outputs of layer1..layer4 (1/4..1/32 of the input).
#pragma once
#include <memory>
#include <vector>

#include "layers/modules.h"
#include "layers/network.h"

namespace sal {

class Bottleneck {
 public:
  Bottleneck() = default;
  // `width` is the channel count of conv1/conv2 (torchvision: planes), `out` that of conv3
  // (torchvision: planes * 4). A downsample branch is made when stride != 1 or in != out.
  Bottleneck(ParamStore& ps, const std::string& name, int64_t in, int64_t width, int64_t out, int stride,
             double bn_eps, bool trainable);
  // training=true: batch norm uses (and updates the running) batch statistics.
  Tensor forward(Ctx& ctx, const Tensor& x, bool training = false);
  // dy:[N,out,P,Q] -> dx:[N,in,H,W]; accumulates parameter gradients when trainable and asked for.
  Tensor backward(Ctx& ctx, const Tensor& dy, bool param_grads = true);

  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  bool has_downsample() const { return has_down_; }

 private:
  int64_t in_ = 0, out_ = 0;
  ConvBnAct c1_, c2_, c3_;  // conv1/bn1 + ReLU, conv2/bn2 + ReLU, conv3/bn3
  bool has_down_ = false;
  ConvBnAct down_;          // downsample.0 / downsample.1, no activation
};

class ResNet50 : public Network {
 public:
  // Zero parameters (all frozen) on `device`; load() fills them. spec.bn_eps is every BN's eps.
  // dtype F64 (CPU) is for gradient checks: the parameters, and so every activation, are double.
  ResNet50(const InputSpec& spec, Device device, DType dtype = DType::F32);
  Tensor forward(Ctx& ctx, const Tensor& input) override;
  std::vector<Tensor> features() const override { return feats_; }
  Tensor backward_input(Ctx& ctx, const Tensor& dlogits) override;

 private:
  ConvBnAct stem_;
  MaxPool2d pool_;
  std::vector<Bottleneck> layers_[4];
  Linear fc_;
  std::vector<Tensor> feats_;
  Shape pooled_shape_;  // [N,2048,1,1] of the last forward
  Shape last_shape_;    // layer4's output shape of the last forward
};

}  // namespace sal
