// MobileNet v1 (width 0.75, the TF.js / Keras model of weights/README.md) as a frozen Network.
//
//   input [N,3,H,W] in [-1,1]
//   conv1 3x3/2 -> 24 ch, then 13 pairs: conv_dw_i (depthwise 3x3, stride 1 or 2) and
//   conv_pw_i (1x1) -> 48, 96, 96, 192, 192, 384 x6, 768, 768 ch; every conv is followed by
//   BN (eps from the file, 1e-3) and ReLU6; global average pool; conv_preds 1x1 with bias;
//   flatten -> logits [N,num_classes].
// Padding is TensorFlow "same", worked out for the input size at hand on every forward (a
// stride-2 3x3 conv on an even size pads 0 top/left and 1 bottom/right).
// Feature maps (after BN + ReLU6): conv_pw_3 (1/4), conv_pw_5 (1/8), conv_pw_11 (1/16),
// conv_pw_13 (1/32).
#pragma once
#include <vector>

#include "layers/modules.h"
#include "layers/network.h"

namespace sal {

class MobileNetV1 : public Network {
 public:
  MobileNetV1(const InputSpec& spec, Device device);

  Tensor forward(Ctx& ctx, const Tensor& input) override;
  std::vector<Tensor> features() const override { return features_; }
  Tensor backward_input(Ctx& ctx, const Tensor& dlogits) override;

  static constexpr int kBlocks = 13;
  // 1-based block indices whose conv_pw output is a feature map (1/4, 1/8, 1/16, 1/32).
  static constexpr int kFeatureBlocks[4] = {3, 5, 11, 13};

 private:
  struct Block {
    ConvBnAct dw, pw;
    int stride = 1;
    int64_t channels_in = 0;
  };
  ConvBnAct conv1_;
  std::vector<Block> blocks_;
  Conv2d preds_;
  Shape pooled_shape_;  // conv_pw_13's output shape, for the global-pool backward
  std::vector<Tensor> features_;
};

}  // namespace sal
