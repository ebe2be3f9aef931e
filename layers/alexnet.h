// torchvision AlexNet as a frozen Network, with torchvision's key names.
//
//   features.0  conv 11x11/4 pad 2 (64) + bias, ReLU (features.1), max-pool 3x3/2 (features.2)
//   features.3  conv 5x5 pad 2 (192), ReLU (.4), max-pool 3x3/2 (.5)
//   features.6  conv 3x3 pad 1 (384), ReLU; features.8 conv 3x3 pad 1 (256), ReLU;
//   features.10 conv 3x3 pad 1 (256), ReLU (.11), max-pool 3x3/2 (.12)   (pools: floor mode)
//   avgpool     adaptive average pool to 6x6 (an identity at 224, where the map is 6x6)
//   classifier  flatten (C,H,W order, 9216) -> .1 Linear 4096, ReLU -> .4 Linear 4096, ReLU
//               -> .6 Linear classes; the dropouts are identities (eval)
// Feature maps (the golden fixtures' choice): features.1 (64 ch, 55x55 at 224), features.4
// (192, 27), features.11 (256, 13), features.12 (256, 6).
#pragma once
#include <vector>

#include "layers/modules.h"
#include "layers/network.h"

namespace sal {

// torch.nn.AdaptiveAvgPool2d: output cell (i,j) averages input rows [floor(i*H/oh), ceil((i+1)*H/oh))
// and the same for columns. Computed as one linear op with a constant pooling matrix
// [oh*ow, H*W] (built once per input size on the parameters' device), so it runs on any device
// and its backward is the matrix's transpose. An input already of the output size passes through.
class AdaptiveAvgPool2d {
 public:
  explicit AdaptiveAvgPool2d(int64_t out_h = 1, int64_t out_w = 1) : out_h_(out_h), out_w_(out_w) {}
  Tensor forward(Ctx& ctx, const Tensor& x);  // [N,C,H,W] -> [N,C,out_h,out_w]
  Tensor backward(Ctx& ctx, const Tensor& dy);

  // The pooling matrix for an h x w input (CPU, F32): row i*out_w+j averages cell (i,j)'s window.
  Tensor pooling_matrix(int64_t h, int64_t w) const;

 private:
  int64_t out_h_, out_w_;
  Shape x_shape_;
  Tensor matrix_;  // for x_shape_'s H,W on the device of the last input (undefined for a pass-through)
};

class AlexNet : public Network {
 public:
  AlexNet(const InputSpec& spec, Device device);

  Tensor forward(Ctx& ctx, const Tensor& input) override;
  std::vector<Tensor> features() const override { return features_; }
  Tensor backward_input(Ctx& ctx, const Tensor& dlogits) override;

 private:
  Conv2d conv0_, conv3_, conv6_, conv8_, conv10_;
  ReLU relu1_, relu4_, relu7_, relu9_, relu11_, fc_relu1_, fc_relu2_;
  MaxPool2d pool2_, pool5_, pool12_;
  AdaptiveAvgPool2d avgpool_{6, 6};
  Linear fc1_, fc4_, fc6_;
  Shape pooled_shape_;  // avgpool's output [N,256,6,6], for un-flattening in the backward
  std::vector<Tensor> features_;
};

}  // namespace sal
