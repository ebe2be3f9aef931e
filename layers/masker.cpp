// The masker (layers/masker.h): feature filter, upsamplers with encoder skips and bottlenecks,
// abs-ratio head, written once over the op API.
#include "layers/masker.h"

#include <cmath>
#include <random>

namespace sal {

MaskerConfig MaskerConfig::paper_resnet50() {
  MaskerConfig c;
  c.num_classes = 1000;
  c.feature_channels = {256, 512, 1024, 2048};
  c.widths = {768, 384, 192};
  c.bottlenecks = 3;
  c.upsample = UpsampleMode::ConvTranspose;
  return c;
}

MaskerConfig MaskerConfig::released_resnet50() {
  MaskerConfig c;
  c.num_classes = 1000;
  c.feature_channels = {256, 512, 1024, 2048};
  c.widths = {256, 128, 64};
  c.bottlenecks = 1;
  c.upsample = UpsampleMode::PixelShuffle;
  return c;
}

MaskerConfig MaskerConfig::mobilenet_v1() {
  MaskerConfig c;
  c.num_classes = 1000;
  c.feature_channels = {96, 192, 384, 768};
  c.widths = {256, 128, 64};
  c.bottlenecks = 1;
  c.upsample = UpsampleMode::PixelShuffle;
  return c;
}

MaskerConfig MaskerConfig::cifar_resnet(int64_t num_classes) {
  MaskerConfig c;
  c.num_classes = num_classes;
  c.feature_channels = {16, 32, 64};
  c.widths = {64};
  c.bottlenecks = 1;
  c.upsample = UpsampleMode::PixelShuffle;
  return c;
}

MaskerConfig MaskerConfig::cifar_scratch(int64_t num_classes) {
  MaskerConfig c;
  c.num_classes = num_classes;
  c.encoder_channels = {32, 64, 128};
  c.feature_channels = c.encoder_channels;
  c.widths = {64, 32};
  c.bottlenecks = 1;
  c.upsample = UpsampleMode::PixelShuffle;
  return c;
}

Masker::Masker(const MaskerConfig& cfg, Device device, DType dtype, MaskerInit init) : cfg_(cfg) {
  const size_t levels = cfg.feature_channels.size(), ups = cfg.widths.size();
  SAL_CHECK(cfg.num_classes > 0, "Masker: num_classes must be positive, got ", cfg.num_classes);
  SAL_CHECK(levels >= ups + 1, "Masker: ", ups, " upsamplers need at least ", ups + 1, " encoder feature maps, config has ",
            levels);
  SAL_CHECK(cfg.bottlenecks >= 0, "Masker: bottlenecks must be >= 0, got ", cfg.bottlenecks);
  SAL_CHECK(cfg.skip_channels >= 0, "Masker: skip_channels must be >= 0, got ", cfg.skip_channels);
  SAL_CHECK(dtype == DType::F32 || (dtype == DType::F64 && device == Device::CPU),
            "Masker: parameters are F32 (or F64 on the CPU), got ", dtype_name(dtype), " on ", device_name(device));
  for (int64_t ch : cfg.feature_channels) SAL_CHECK(ch > 0, "Masker: feature channel counts must be positive");
  using Act = ConvBnAct::Act;
  if (!cfg.encoder_channels.empty()) {
    SAL_CHECK(cfg.encoder_channels == cfg.feature_channels, "Masker: encoder_channels must equal feature_channels");
    int64_t cin = 3;
    for (size_t b = 0; b < cfg.encoder_channels.size(); ++b) {
      std::vector<ConvBnAct> block;
      for (int j = 0; j < 5; ++j) {
        const std::string p = "masker.encoder.block" + std::to_string(b) + ".";
        block.emplace_back(params_, p + "conv" + std::to_string(j), p + "bn" + std::to_string(j), cin,
                           cfg.encoder_channels[b], 3, Conv2dArgs::make(j == 0 ? 2 : 1, 1), cfg.bn_eps, Act::ReLU,
                           /*trainable=*/true);
        cin = cfg.encoder_channels[b];
      }
      enc_.push_back(std::move(block));
    }
  }
  const int64_t coarse = cfg.feature_channels.back();
  embedding_ = params_.add("masker.embedding.weight", Shape{cfg.num_classes, coarse});
  int64_t in = coarse;
  for (size_t i = 0; i < ups; ++i) {
    const int64_t w = cfg.widths[i];
    SAL_CHECK(w >= 4, "Masker: upsampler ", i, " width ", w, " must be >= 4 (bottleneck width is width/4)");
    const std::string p = "masker.up" + std::to_string(i) + ".";
    Upsampler u;
    u.mode = cfg.upsample;
    u.up_channels = w;
    if (u.mode == UpsampleMode::ConvTranspose) {
      u.tconv = ConvTranspose2d(params_, p + "tconv", in, w, 4, 4, ConvTranspose2dArgs::make(2, 1), /*bias=*/false,
                                /*trainable=*/true);
      u.tbn = BatchNorm2d(params_, p + "bn", w, cfg.bn_eps, /*trainable=*/true);
    } else {
      u.conv = ConvBnAct(params_, p + "conv", p + "bn", in, 4 * w, 3, Conv2dArgs::make(1, 1), cfg.bn_eps, Act::ReLU,
                         /*trainable=*/true);
    }
    int64_t skip_in = cfg.feature_channels[levels - 2 - i];
    if (cfg.skip_channels > 0) {
      u.skip_conv = true;
      u.skip = ConvBnAct(params_, p + "skip.conv", p + "skip.bn", skip_in, cfg.skip_channels, 1,
                         Conv2dArgs::make(1, 0), cfg.bn_eps, Act::ReLU, /*trainable=*/true);
      skip_in = cfg.skip_channels;
    }
    int64_t bin = w + skip_in;
    for (int b = 0; b < cfg.bottlenecks; ++b) {
      u.blocks.emplace_back(params_, p + "bottleneck" + std::to_string(b), bin, w / 4, w, 1, cfg.bn_eps,
                            /*trainable=*/true);
      bin = w;
    }
    in = bin;
    ups_.push_back(std::move(u));
  }
  head_ = Conv2d(params_, "masker.head", in, 2, 1, 1, Conv2dArgs::make(1, 0), /*bias=*/true, /*trainable=*/true);
  params_.finalize(device, dtype, /*with_grads=*/init == MaskerInit::Random);  // zeros
  if (init == MaskerInit::Random) initialize();
}

void Masker::initialize() {
  std::mt19937 gen(cfg_.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  const auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  for (const std::string& name : params_.names()) {
    ParamRef p = params_.find(name);
    const Shape& s = params_.shape(p);
    std::vector<double> v(static_cast<size_t>(s.numel()), 0.0);
    if (name == "masker.embedding.weight") {
      const double sd = 1.0 / std::sqrt(static_cast<double>(s[1]));
      for (double& x : v) x = sd * normal(gen);
    } else if (s.ndim() == 4) {
      // He-normal over the fan-in; a stride-2 transposed conv [in, out, k, k] sees in*k*k/4 inputs per output.
      const bool transposed = name.find(".tconv.") != std::string::npos;
      const double fan = transposed ? static_cast<double>(s[0] * s[2] * s[3]) / 4.0
                                    : static_cast<double>(s.numel() / s[0]);
      const double sd = std::sqrt(2.0 / fan);
      for (double& x : v) x = sd * normal(gen);
    } else if (ends_with(name, "running_var") || (ends_with(name, ".weight") && s.ndim() == 1)) {
      for (double& x : v) x = 1.0;  // BN weight and running variance; biases and means stay 0
    }
    Tensor dst = params_.value(p);
    dst.copy_from(Tensor::from_values(v, s, dst.dtype()).to(dst.device()));
  }
}

void Masker::init_embedding(const Tensor& w) {
  Tensor dst = params_.value(embedding_);
  SAL_CHECK((w.ndim() == 2 || (w.ndim() == 4 && w.dim(2) == 1 && w.dim(3) == 1)) && w.dim(0) == dst.dim(0) &&
                w.dim(1) == dst.dim(1),
            "Masker::init_embedding: classifier weight ", w.desc(), " does not fit masker.embedding.weight ",
            dst.shape().str(), " (expected [num_classes, C] or [num_classes, C, 1, 1])");
  Tensor src = w.reshape(dst.shape());
  if (src.dtype() != dst.dtype()) src = src.to(Device::CPU).to(dst.dtype());
  dst.copy_from(src);
}

MaskerOutput Masker::forward(Ctx& ctx, Network& encoder, const Tensor& images01, const Tensor& classes,
                             bool training) {
  SAL_CHECK(images01.ndim() == 4 && images01.dim(1) == 3, "Masker::forward: images must be [N,3,H,W], got ",
            images01.desc());
  encoder.forward(ctx, encoder.normalize(ctx, images01));
  return forward_features(ctx, encoder.features(), classes, images01.dim(2), images01.dim(3), training);
}

MaskerOutput Masker::forward(Ctx& ctx, const Tensor& images01, const Tensor& classes, bool training) {
  SAL_CHECK(has_encoder(), "Masker::forward(images, classes): the config has no encoder_channels (pass a Network)");
  SAL_CHECK(images01.ndim() == 4 && images01.dim(1) == 3 && images01.dim(2) % 8 == 0 && images01.dim(3) % 8 == 0,
            "Masker::forward: images must be [N,3,H,W] with H, W divisible by 8, got ", images01.desc());
  std::vector<Tensor> feats;
  Tensor x = images01;
  for (std::vector<ConvBnAct>& block : enc_) {
    for (ConvBnAct& c : block) x = c.forward(ctx, x, training);
    feats.push_back(x);
  }
  MaskerOutput out = forward_features(ctx, feats, classes, images01.dim(2), images01.dim(3), training);
  used_encoder_ = true;
  return out;
}

MaskerOutput Masker::forward_features(Ctx& ctx, const std::vector<Tensor>& feats, const Tensor& classes,
                                      int64_t out_h, int64_t out_w, bool training) {
  const size_t levels = cfg_.feature_channels.size();
  SAL_CHECK(feats.size() == levels, "Masker: the encoder gives ", feats.size(), " feature maps, the config expects ",
            levels);
  for (size_t i = 0; i < levels; ++i)
    SAL_CHECK(feats[i].ndim() == 4 && feats[i].dim(1) == cfg_.feature_channels[i], "Masker: encoder feature ", i,
              " is ", feats[i].desc(), ", the config expects ", cfg_.feature_channels[i], " channels");
  const Tensor& x = feats.back();
  const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
  SAL_CHECK(classes.dtype() == DType::I32 && classes.ndim() == 1 && classes.dim(0) == n,
            "Masker: classes must be i32[", n, "], got ", classes.desc());
  used_encoder_ = false;  // forward(images, classes) sets it after this returns
  x_ = x;
  classes_ = classes;

  // Feature filter: z = X . C_s per position, Y = X * sigmoid(z).
  emb_ = embedding(ctx, params_.value(embedding_), classes).reshape(Shape{n, c, 1, 1});
  Tensor z = sum_to(ctx, mul(ctx, x, emb_), Shape{n, 1, h, w});
  sig_ = sigmoid(ctx, z);
  Tensor y = mul(ctx, x, sig_);

  for (size_t i = 0; i < ups_.size(); ++i) {
    Upsampler& u = ups_[i];
    if (u.mode == UpsampleMode::ConvTranspose)
      y = u.trelu.forward(ctx, u.tbn.forward(ctx, u.tconv.forward(ctx, y), training));
    else
      y = pixel_shuffle(ctx, u.conv.forward(ctx, y, training), 2);
    Tensor f = feats[levels - 2 - i];
    SAL_CHECK(f.dim(0) == n && f.dim(2) == y.dim(2) && f.dim(3) == y.dim(3), "Masker: upsampler ", i, " output ",
              y.desc(), " does not match encoder feature ", levels - 2 - i, " ", f.desc(),
              " (each feature map must be twice the size of the next coarser one)");
    if (u.skip_conv) f = u.skip.forward(ctx, f, training);
    const Tensor parts[2] = {y, f};
    y = concat_channels(ctx, parts);
    for (Bottleneck& b : u.blocks) y = b.forward(ctx, y, training);
  }
  head_out_ = head_.forward(ctx, y);
  have_forward_ = true;
  inference_forward_ = !training;

  MaskerOutput out;
  out.head = head_out_;
  out.mask = abs_ratio_upsample(ctx, head_out_, cfg_.mask_eps, out_h, out_w);
  out.head_mask = abs_ratio(ctx, head_out_, cfg_.mask_eps);
  out.filter_logits = z;
  return out;
}

void Masker::backward(Ctx& ctx, const Tensor& dmask, const Tensor* dhead_mask, const Tensor* dfilter_logits,
                      std::vector<Tensor>* dfeatures) {
  SAL_CHECK(have_forward_, "Masker::backward: no forward in this step");
  // Checked before any gradient is accumulated, on every device and fusion setting alike: where the
  // conv + BN fusion is on (the CPU's default) the decoder's conv outputs, which its parameter gradients
  // need, were never materialised; where it is off (CUDA's default) they would be gradients through the
  // frozen running statistics, which no training here wants.
  SAL_CHECK(!inference_forward_,
            "Masker::backward after an inference forward (training = false): run the forward in training mode");
  const size_t levels = cfg_.feature_channels.size();
  std::vector<Tensor> own;
  if (used_encoder_ && !dfeatures) dfeatures = &own;
  if (dfeatures) dfeatures->assign(levels, Tensor());
  Tensor dc = abs_ratio_upsample_backward(ctx, dmask, head_out_, cfg_.mask_eps);
  if (dhead_mask && dhead_mask->defined())
    dc = add(ctx, dc, abs_ratio_backward(ctx, *dhead_mask, head_out_, cfg_.mask_eps));
  Tensor dy = head_.backward(ctx, dc);
  for (size_t k = ups_.size(); k-- > 0;) {
    Upsampler& u = ups_[k];
    for (size_t b = u.blocks.size(); b-- > 0;) dy = u.blocks[b].backward(ctx, dy);
    const int64_t total = dy.dim(1);
    Tensor dskip = slice_channels(ctx, dy, u.up_channels, total - u.up_channels);
    if (u.skip_conv) dskip = u.skip.backward(ctx, dskip);
    if (dfeatures) (*dfeatures)[levels - 2 - k] = dskip;
    Tensor dup = slice_channels(ctx, dy, 0, u.up_channels);
    if (u.mode == UpsampleMode::ConvTranspose)
      dy = u.tconv.backward(ctx, u.tbn.backward(ctx, u.trelu.backward(ctx, dup)));
    else
      dy = u.conv.backward(ctx, pixel_unshuffle(ctx, dup, 2));
  }
  // dy is dL/dY with Y = X * s, s = sigmoid(z), z = sum_c X * C_s.
  const int64_t n = x_.dim(0), c = x_.dim(1), h = x_.dim(2), w = x_.dim(3);
  Tensor ds = sum_to(ctx, mul(ctx, dy, x_), Shape{n, 1, h, w});
  Tensor dz = sigmoid_backward(ctx, ds, sig_);
  if (dfilter_logits && dfilter_logits->defined()) {
    SAL_CHECK(dfilter_logits->shape() == dz.shape(), "Masker::backward: d filter_logits must be ", dz.shape().str(),
              ", got ", dfilter_logits->desc());
    dz = add(ctx, dz, *dfilter_logits);
  }
  if (dfeatures) (*dfeatures)[levels - 1] = add(ctx, mul(ctx, dy, sig_), mul(ctx, dz, emb_));
  Tensor demb = sum_to(ctx, mul(ctx, x_, dz), Shape{n, c, 1, 1}).reshape(Shape{n, c});
  Tensor dtable = params_.grad(embedding_);
  embedding_backward(ctx, demb, classes_, dtable);

  if (used_encoder_) {  // the own encoder: each block output is a feature and the next block's input
    Tensor d;
    for (size_t b = enc_.size(); b-- > 0;) {
      const Tensor& df = (*dfeatures)[b];
      if (df.defined()) d = d.defined() ? add(ctx, d, df) : df;
      if (!d.defined()) continue;
      for (size_t j = enc_[b].size(); j-- > 0;) d = enc_[b][j].backward(ctx, d);
    }
  }
}

}  // namespace sal
