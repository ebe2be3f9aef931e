// torchvision GoogLeNet over the op API (see googlenet.h for the architecture and names).
#include "layers/googlenet.h"

#include "layers/networks.h"

namespace sal {

namespace {

// torchvision's _transform_input uses these constants whatever the weights' metadata says.
constexpr double kImageNetMean[3] = {0.485, 0.456, 0.406};
constexpr double kImageNetStd[3] = {0.229, 0.224, 0.225};

// Every GoogLeNet max-pool rounds its output size up (ceil_mode).
Pool2dArgs ceil_pool(int kernel, int stride, int pad) { return Pool2dArgs::make(kernel, stride, pad, true); }

constexpr bool kTrainable = false;  // a black box / encoder: no parameter gradients

}  // namespace

ConvBnAct GoogLeNet::basic_conv(ParamStore& ps, const std::string& name, int64_t in, int64_t out, int k, int pad,
                                int stride, double eps) {
  return ConvBnAct(ps, name + ".conv", name + ".bn", in, out, k, Conv2dArgs::make(stride, pad), eps,
                   ConvBnAct::Act::ReLU, kTrainable);
}

GoogLeNet::Inception::Inception(ParamStore& ps, const std::string& name, int64_t in, int64_t ch1x1, int64_t ch3x3red,
                                int64_t ch3x3, int64_t ch5x5red, int64_t ch5x5, int64_t pool_proj, double eps)
    : b1_(basic_conv(ps, name + ".branch1", in, ch1x1, 1, 0, 1, eps)),
      b2a_(basic_conv(ps, name + ".branch2.0", in, ch3x3red, 1, 0, 1, eps)),
      b2b_(basic_conv(ps, name + ".branch2.1", ch3x3red, ch3x3, 3, 1, 1, eps)),
      b3a_(basic_conv(ps, name + ".branch3.0", in, ch5x5red, 1, 0, 1, eps)),
      b3b_(basic_conv(ps, name + ".branch3.1", ch5x5red, ch5x5, 3, 1, 1, eps)),
      b4_(basic_conv(ps, name + ".branch4.1", in, pool_proj, 1, 0, 1, eps)),
      pool_(ceil_pool(3, 1, 1)),
      widths_{ch1x1, ch3x3, ch5x5, pool_proj} {}

Tensor GoogLeNet::Inception::forward(Ctx& ctx, const Tensor& x) {
  const Tensor branches[4] = {
      b1_.forward(ctx, x),
      b2b_.forward(ctx, b2a_.forward(ctx, x)),
      b3b_.forward(ctx, b3a_.forward(ctx, x)),
      b4_.forward(ctx, pool_.forward(ctx, x)),
  };
  return concat_channels(ctx, branches);
}

Tensor GoogLeNet::Inception::backward(Ctx& ctx, const Tensor& dy) {
  // dy splits by channel into the four branches; their input gradients add up.
  int64_t begin = 0;
  Tensor d[4];
  for (int i = 0; i < 4; ++i) {
    d[i] = slice_channels(ctx, dy, begin, widths_[static_cast<size_t>(i)]);
    begin += widths_[static_cast<size_t>(i)];
  }
  Tensor dx = b1_.backward(ctx, d[0], false);
  dx = add(ctx, dx, b2a_.backward(ctx, b2b_.backward(ctx, d[1], false), false));
  dx = add(ctx, dx, b3a_.backward(ctx, b3b_.backward(ctx, d[2], false), false));
  return add(ctx, dx, pool_.backward(ctx, b4_.backward(ctx, d[3], false)));
}

GoogLeNet::GoogLeNet(const InputSpec& spec, Device device)
    : Network(spec),
      pool1_(ceil_pool(3, 2, 0)),
      pool2_(ceil_pool(3, 2, 0)),
      pool3_(ceil_pool(3, 2, 0)),
      pool4_(ceil_pool(2, 2, 0)) {
  SAL_CHECK(spec.num_classes >= 1, spec.arch, ": num_classes must be positive, got ", spec.num_classes);
  const double eps = spec.bn_eps;
  ParamStore& ps = params_;
  conv1_ = basic_conv(ps, "conv1", 3, 64, 7, 3, 2, eps);
  conv2_ = basic_conv(ps, "conv2", 64, 64, 1, 0, 1, eps);
  conv3_ = basic_conv(ps, "conv3", 64, 192, 3, 1, 1, eps);
  i3a_ = Inception(ps, "inception3a", 192, 64, 96, 128, 16, 32, 32, eps);
  i3b_ = Inception(ps, "inception3b", 256, 128, 128, 192, 32, 96, 64, eps);
  i4a_ = Inception(ps, "inception4a", 480, 192, 96, 208, 16, 48, 64, eps);
  i4b_ = Inception(ps, "inception4b", 512, 160, 112, 224, 24, 64, 64, eps);
  i4c_ = Inception(ps, "inception4c", 512, 128, 128, 256, 24, 64, 64, eps);
  i4d_ = Inception(ps, "inception4d", 512, 112, 144, 288, 32, 64, 64, eps);
  i4e_ = Inception(ps, "inception4e", 528, 256, 160, 320, 32, 128, 128, eps);
  i5a_ = Inception(ps, "inception5a", 832, 256, 160, 320, 32, 128, 128, eps);
  i5b_ = Inception(ps, "inception5b", 832, 384, 192, 384, 48, 128, 128, eps);
  fc_ = Linear(ps, "fc", 1024, spec.num_classes, /*bias=*/true, kTrainable);
  finish(device);

  transform_ = spec.transform_input;
  std::vector<double> scale(3), shift(3);
  for (int c = 0; c < 3; ++c) {
    scale[static_cast<size_t>(c)] = kImageNetStd[c] / 0.5;
    shift[static_cast<size_t>(c)] = (kImageNetMean[c] - 0.5) / 0.5;
  }
  ti_scale_ = Tensor::from_values(scale, Shape{1, 3, 1, 1}).to(device);
  ti_shift_ = Tensor::from_values(shift, Shape{1, 3, 1, 1}).to(device);
}

Tensor GoogLeNet::forward(Ctx& ctx, const Tensor& input) {
  SAL_CHECK(input.ndim() == 4 && input.dim(1) == 3, spec_.arch, ": input must be [N,3,H,W], got ", input.desc());
  features_.clear();
  Tensor x = transform_ ? add(ctx, mul(ctx, input, ti_scale_), ti_shift_) : input;
  x = pool1_.forward(ctx, conv1_.forward(ctx, x));                    // [N,64,H/4,W/4]
  Tensor f4 = conv3_.forward(ctx, conv2_.forward(ctx, x));            // [N,192,H/4,W/4]
  x = i3b_.forward(ctx, i3a_.forward(ctx, pool2_.forward(ctx, f4)));  // [N,480,H/8,W/8]
  Tensor f8 = x;
  x = pool3_.forward(ctx, x);
  for (Inception* m : {&i4a_, &i4b_, &i4c_, &i4d_, &i4e_}) x = m->forward(ctx, x);  // [N,832,H/16,W/16]
  Tensor f16 = x;
  x = i5b_.forward(ctx, i5a_.forward(ctx, pool4_.forward(ctx, x)));  // [N,1024,H/32,W/32]
  features_ = {f4, f8, f16, x};
  pooled_shape_ = x.shape();
  Tensor pooled = global_avg_pool(ctx, x);  // [N,1024,1,1]; dropout: identity
  return fc_.forward(ctx, pooled.reshape(Shape{pooled.dim(0), pooled.dim(1)}));
}

Tensor GoogLeNet::backward_input(Ctx& ctx, const Tensor& dlogits) {
  SAL_CHECK(!features_.empty(), spec_.arch, ": backward_input before forward");
  SAL_CHECK(dlogits.ndim() == 2 && dlogits.dim(0) == pooled_shape_[0] && dlogits.dim(1) == spec_.num_classes,
            spec_.arch, ": dlogits must be [", pooled_shape_[0], ",", spec_.num_classes, "], got ", dlogits.desc());
  Tensor d = fc_.backward(ctx, dlogits, false);  // [N,1024]
  d = global_avg_pool_backward(ctx, d.reshape(Shape{d.dim(0), d.dim(1), 1, 1}), pooled_shape_);
  d = pool4_.backward(ctx, i5a_.backward(ctx, i5b_.backward(ctx, d)));
  for (Inception* m : {&i4e_, &i4d_, &i4c_, &i4b_, &i4a_}) d = m->backward(ctx, d);
  d = pool2_.backward(ctx, i3a_.backward(ctx, i3b_.backward(ctx, pool3_.backward(ctx, d))));
  d = conv1_.backward(ctx, pool1_.backward(ctx, conv2_.backward(ctx, conv3_.backward(ctx, d, false), false)), false);
  return transform_ ? mul(ctx, d, ti_scale_) : d;
}

std::unique_ptr<Network> make_googlenet(const InputSpec& spec, Device device) {
  return std::make_unique<GoogLeNet>(spec, device);
}

}  // namespace sal
