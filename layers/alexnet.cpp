// torchvision AlexNet over the op API (see alexnet.h for the architecture and names), and the
// adaptive average pool it ends its feature extractor with.
#include "layers/alexnet.h"

#include "layers/networks.h"

namespace sal {

// ---------------------------------------------------------------- AdaptiveAvgPool2d

Tensor AdaptiveAvgPool2d::pooling_matrix(int64_t h, int64_t w) const {
  SAL_CHECK(h >= 1 && w >= 1, "AdaptiveAvgPool2d: input size ", h, "x", w, " is empty");
  // A constant of the layer (like a normalisation table), not activation data: built on the host.
  std::vector<double> m(static_cast<size_t>(out_h_ * out_w_ * h * w), 0.0);
  for (int64_t i = 0; i < out_h_; ++i) {
    const int64_t h0 = i * h / out_h_, h1 = ((i + 1) * h + out_h_ - 1) / out_h_;
    for (int64_t j = 0; j < out_w_; ++j) {
      const int64_t w0 = j * w / out_w_, w1 = ((j + 1) * w + out_w_ - 1) / out_w_;
      const double inv = 1.0 / static_cast<double>((h1 - h0) * (w1 - w0));
      double* row = m.data() + (i * out_w_ + j) * h * w;
      for (int64_t r = h0; r < h1; ++r)
        for (int64_t c = w0; c < w1; ++c) row[r * w + c] = inv;
    }
  }
  return Tensor::from_values(m, Shape{out_h_ * out_w_, h * w});
}

Tensor AdaptiveAvgPool2d::forward(Ctx& ctx, const Tensor& x) {
  SAL_CHECK(x.ndim() == 4, "AdaptiveAvgPool2d: input must be [N,C,H,W], got ", x.desc());
  const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
  const bool same_matrix = matrix_.defined() && x_shape_.nd == 4 && x_shape_[2] == h && x_shape_[3] == w &&
                           matrix_.device() == x.device() && matrix_.dtype() == x.dtype();
  x_shape_ = x.shape();
  if (h == out_h_ && w == out_w_) {
    matrix_ = Tensor();
    return x;
  }
  if (!same_matrix) matrix_ = pooling_matrix(h, w).to(x.dtype()).to(x.device());
  // [N*C, H*W] x [oh*ow, H*W]^T -> [N*C, oh*ow]
  Tensor y = linear(ctx, x.reshape(Shape{n * c, h * w}), matrix_, nullptr);
  return y.reshape(Shape{n, c, out_h_, out_w_});
}

Tensor AdaptiveAvgPool2d::backward(Ctx& ctx, const Tensor& dy) {
  SAL_CHECK(x_shape_.nd == 4, "AdaptiveAvgPool2d: backward before forward");
  const int64_t n = x_shape_[0], c = x_shape_[1];
  SAL_CHECK(dy.shape() == Shape({n, c, out_h_, out_w_}), "AdaptiveAvgPool2d: dy must be ",
            Shape({n, c, out_h_, out_w_}).str(), ", got ", dy.desc());
  if (!matrix_.defined()) return dy;
  Tensor dx = linear_dgrad(ctx, dy.reshape(Shape{n * c, out_h_ * out_w_}), matrix_);  // [N*C, H*W]
  return dx.reshape(x_shape_);
}

// ---------------------------------------------------------------- AlexNet

namespace {
constexpr bool kTrainable = false;                            // a black box / encoder: no parameter gradients
Pool2dArgs max_pool_3s2() { return Pool2dArgs::make(3, 2); }  // floor mode
}  // namespace

AlexNet::AlexNet(const InputSpec& spec, Device device)
    : Network(spec), pool2_(max_pool_3s2()), pool5_(max_pool_3s2()), pool12_(max_pool_3s2()) {
  SAL_CHECK(spec.num_classes >= 1, spec.arch, ": num_classes must be positive, got ", spec.num_classes);
  ParamStore& ps = params_;
  conv0_ = Conv2d(ps, "features.0", 3, 64, 11, 11, Conv2dArgs::make(4, 2), true, kTrainable);
  conv3_ = Conv2d(ps, "features.3", 64, 192, 5, 5, Conv2dArgs::make(1, 2), true, kTrainable);
  conv6_ = Conv2d(ps, "features.6", 192, 384, 3, 3, Conv2dArgs::make(1, 1), true, kTrainable);
  conv8_ = Conv2d(ps, "features.8", 384, 256, 3, 3, Conv2dArgs::make(1, 1), true, kTrainable);
  conv10_ = Conv2d(ps, "features.10", 256, 256, 3, 3, Conv2dArgs::make(1, 1), true, kTrainable);
  fc1_ = Linear(ps, "classifier.1", 256 * 6 * 6, 4096, true, kTrainable);
  fc4_ = Linear(ps, "classifier.4", 4096, 4096, true, kTrainable);
  fc6_ = Linear(ps, "classifier.6", 4096, spec.num_classes, true, kTrainable);
  finish(device);
}

Tensor AlexNet::forward(Ctx& ctx, const Tensor& input) {
  SAL_CHECK(input.ndim() == 4 && input.dim(1) == 3, spec_.arch, ": input must be [N,3,H,W], got ", input.desc());
  SAL_CHECK(input.dim(2) >= 63 && input.dim(3) >= 63, spec_.arch, ": input ", input.desc(),
            " is too small (at least 63x63: the last max-pool needs a 3x3 map)");
  features_.clear();
  Tensor f4 = relu1_.forward(ctx, conv0_.forward(ctx, input));                    // [N,64,55,55] at 224
  Tensor f8 = relu4_.forward(ctx, conv3_.forward(ctx, pool2_.forward(ctx, f4)));  // [N,192,27,27]
  Tensor x = relu7_.forward(ctx, conv6_.forward(ctx, pool5_.forward(ctx, f8)));   // [N,384,13,13]
  x = relu9_.forward(ctx, conv8_.forward(ctx, x));
  Tensor f16 = relu11_.forward(ctx, conv10_.forward(ctx, x));  // [N,256,13,13]
  Tensor f32 = pool12_.forward(ctx, f16);                      // [N,256,6,6]
  features_ = {f4, f8, f16, f32};
  x = avgpool_.forward(ctx, f32);  // [N,256,6,6]
  pooled_shape_ = x.shape();
  x = x.reshape(Shape{x.dim(0), x.dim(1) * x.dim(2) * x.dim(3)});  // [N,9216], C,H,W order
  x = fc_relu1_.forward(ctx, fc1_.forward(ctx, x));
  x = fc_relu2_.forward(ctx, fc4_.forward(ctx, x));
  return fc6_.forward(ctx, x);
}

Tensor AlexNet::backward_input(Ctx& ctx, const Tensor& dlogits) {
  SAL_CHECK(!features_.empty(), spec_.arch, ": backward_input before forward");
  SAL_CHECK(dlogits.ndim() == 2 && dlogits.dim(0) == pooled_shape_[0] && dlogits.dim(1) == spec_.num_classes,
            spec_.arch, ": dlogits must be [", pooled_shape_[0], ",", spec_.num_classes, "], got ", dlogits.desc());
  Tensor d = fc6_.backward(ctx, dlogits, false);
  d = fc4_.backward(ctx, fc_relu2_.backward(ctx, d), false);
  d = fc1_.backward(ctx, fc_relu1_.backward(ctx, d), false);  // [N,9216]
  d = pool12_.backward(ctx, avgpool_.backward(ctx, d.reshape(pooled_shape_)));
  d = conv10_.backward(ctx, relu11_.backward(ctx, d), false);
  d = conv8_.backward(ctx, relu9_.backward(ctx, d), false);
  d = conv6_.backward(ctx, relu7_.backward(ctx, d), false);
  d = conv3_.backward(ctx, relu4_.backward(ctx, pool5_.backward(ctx, d)), false);
  return conv0_.backward(ctx, relu1_.backward(ctx, pool2_.backward(ctx, d)), false);
}

std::unique_ptr<Network> make_alexnet(const InputSpec& spec, Device device) {
  return std::make_unique<AlexNet>(spec, device);
}

}  // namespace sal
