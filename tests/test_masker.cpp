// Tests of the masker (layers/masker.h) and the saliency objective (layers/saliency_objective.h):
// the objective's gradients (mask, head-resolution mask, filter logits) against central finite
// differences in double precision through a seeded random CIFAR ResNet8 black box, for each loss
// variant; fake samples getting only the area term; the masker's parameter gradients against finite
// differences on tiny configs (both upsampling modes, with and without the skip 1x1 conv); the
// shapes of the CIFAR (ResNet20 encoder) and MobileNet configs; and a 30-step Adam smoke test of
// the CIFAR recipe on 8 real CIFAR-10 test images that must lower the objective.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <random>

#include "engine/cpu/gemm.h"
#include "engine/image.h"
#include "engine/safetensors.h"
#include "engine/tar.h"
#include "layers/cifar_resnet.h"
#include "layers/masker.h"
#include "layers/modules.h"
#include "layers/masker_io.h"
#include "layers/network.h"
#include "layers/saliency_objective.h"
#include "optim/adam.h"
#include "one_thread.h"
#include "temp_files.h"
#include "tiny_nets.h"

using sal::test::OneThread;
using sal::test::seed_params;
using sal::test::tiny_spec;
using namespace sal;

namespace {

Tensor random_tensor(const Shape& s, std::mt19937& gen, double lo, double hi, DType dt = DType::F64) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (double& x : v) x = u(gen);
  return Tensor::from_values(v, s, dt);
}

// max |a - b| / max(1, max |b|)
double scaled_max_error(const std::vector<double>& a, const std::vector<double>& b) {
  double err = 0, ref = 1;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, std::abs(a[i] - b[i]));
    ref = std::max(ref, std::abs(b[i]));
  }
  return err / ref;
}

// Central differences of f at every element of x (modified in place and restored).
std::vector<double> numeric_grad(Tensor& x, const std::function<double()>& f, double h = 1e-6) {
  std::vector<double> g(static_cast<size_t>(x.numel()));
  double* p = x.data<double>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double old = p[i];
    p[i] = old + h;
    const double fp = f();
    p[i] = old - h;
    const double fm = f();
    p[i] = old;
    g[static_cast<size_t>(i)] = (fp - fm) / (2 * h);
  }
  return g;
}

struct ObjectiveFixture {
  CifarResNet bb{tiny_spec(), Device::CPU, 8, DType::F64};
  int64_t n = 3, h = 8, w = 8;
  Tensor images, mask, head_mask, filter_logits, classes;
  std::vector<uint8_t> real{1, 0, 1};
  ObjectiveFixture() {
    seed_params(bb.params(), 11);
    std::mt19937 gen(5);
    images = random_tensor(Shape{n, 3, h, w}, gen, 0.0, 1.0);
    mask = random_tensor(Shape{n, 1, h, w}, gen, 0.1, 0.9);
    head_mask = random_tensor(Shape{n, 1, h / 2, w / 2}, gen, 0.1, 0.9);
    filter_logits = random_tensor(Shape{n, 1, 2, 2}, gen, -2.0, 2.0);
    classes = Tensor::from_labels({3, 7, 0});
  }
  ObjectiveResult eval(SaliencyObjective& obj) {
    Ctx ctx;
    std::mt19937 rng(1234);  // the same evidence removal on every call
    return obj.evaluate(ctx, bb, images, mask, head_mask, filter_logits, classes, real, rng);
  }
};

ObjectiveConfig small_blur(ObjectiveConfig c) {
  c.blur_sigma = 2.0;
  c.blur_ksize = 7;
  return c;
}

void check_objective_gradients(ObjectiveConfig cfg, const std::string& what) {
  OneThread one;
  ObjectiveFixture fx;
  SaliencyObjective obj(small_blur(cfg));
  ObjectiveResult r = fx.eval(obj);
  INFO(what);
  MESSAGE(what, ": total ", r.terms.total, " area ", r.terms.area, " smooth ", r.terms.smoothness, " preserver ",
          r.terms.preserver, " destroyer ", r.terms.destroyer, " selector ", r.terms.selector);
  CHECK(std::isfinite(r.terms.total));
  CHECK(r.terms.preserver != 0.0);
  CHECK(r.terms.destroyer != 0.0);
  CHECK(r.terms.total == doctest::Approx(r.terms.area + r.terms.smoothness + r.terms.preserver + r.terms.destroyer +
                                         r.terms.selector));
  const auto f = [&] { return fx.eval(obj).terms.total; };
  const double em = scaled_max_error(r.dmask.values(), numeric_grad(fx.mask, f));
  MESSAGE(what, ": dL/dM scaled max error ", em);
  CHECK(em < 1e-6);
  if (cfg.smooth_on_head && cfg.variant == LossVariant::Released) {
    REQUIRE(r.dhead_mask.defined());
    const double eh = scaled_max_error(r.dhead_mask.values(), numeric_grad(fx.head_mask, f));
    MESSAGE(what, ": dL/d head_mask scaled max error ", eh);
    CHECK(eh < 1e-6);
  } else {
    CHECK(!r.dhead_mask.defined());
  }
  if (cfg.selector_weight > 0) {
    REQUIRE(r.dfilter_logits.defined());
    const double ef = scaled_max_error(r.dfilter_logits.values(), numeric_grad(fx.filter_logits, f));
    MESSAGE(what, ": dL/d filter_logits scaled max error ", ef);
    CHECK(ef < 1e-6);
    CHECK(r.terms.selector > 0);
  } else {
    CHECK(!r.dfilter_logits.defined());
  }
}

}  // namespace

TEST_CASE("saliency objective: gradients match finite differences (paper, TV as a sum)") {
  check_objective_gradients(ObjectiveConfig::paper(), "paper");
}

TEST_CASE("saliency objective: gradients match finite differences (paper, TV as a mean, with selector)") {
  ObjectiveConfig c = ObjectiveConfig::paper();
  c.tv_mean = true;
  c.selector_weight = 0.5;
  check_objective_gradients(c, "paper tv_mean + selector");
}

TEST_CASE("saliency objective: gradients match finite differences (released)") {
  check_objective_gradients(ObjectiveConfig::released(), "released");
}

TEST_CASE("saliency objective: gradients match finite differences (released, smoothness on the head, selector)") {
  ObjectiveConfig c = ObjectiveConfig::released();
  c.smooth_on_head = true;
  c.selector_weight = 1.0;
  c.area_weight = 4.0;
  check_objective_gradients(c, "released on head + selector");
}

TEST_CASE("saliency objective: fake samples get only the area term") {
  for (LossVariant v : {LossVariant::Paper, LossVariant::Released}) {
    ObjectiveFixture fx;
    fx.real = {0, 0, 0};
    ObjectiveConfig cfg = small_blur(v == LossVariant::Paper ? ObjectiveConfig::paper() : ObjectiveConfig::released());
    SaliencyObjective obj(cfg);
    ObjectiveResult r = fx.eval(obj);
    CHECK(r.terms.smoothness == 0.0);
    CHECK(r.terms.preserver == 0.0);
    CHECK(r.terms.destroyer == 0.0);
    CHECK(r.terms.total == r.terms.area);
    CHECK(r.terms.area > 0.0);
    // The gradient is exactly that of the (weighted, batch-mean) area term.
    Ctx ctx;
    const bool paper = v == LossVariant::Paper;
    const double pw = paper ? 1.0 : cfg.area_power, eps = paper ? 0.0 : cfg.area_eps;
    Tensor dl = Tensor::from_values(std::vector<double>(3, cfg.area_weight / 3.0), Shape{3}, DType::F64);
    Tensor expect = area_loss_backward(ctx, dl, fx.mask, pw, eps);
    CHECK(scaled_max_error(r.dmask.values(), expect.values()) < 1e-14);
    CHECK(r.terms.area == doctest::Approx(cfg.area_weight * mean(ctx, area_loss(ctx, fx.mask, pw, eps)).item()));

    // A fake sample next to real ones: its row of dL/dM is still area only.
    fx.real = {1, 0, 1};
    ObjectiveResult mixed = fx.eval(obj);
    std::vector<double> got = mixed.dmask.values(), want = expect.values();
    const size_t plane = static_cast<size_t>(fx.h * fx.w);
    std::vector<double> got1(got.begin() + plane, got.begin() + 2 * plane), want1(want.begin() + plane,
                                                                                 want.begin() + 2 * plane);
    CHECK(scaled_max_error(got1, want1) < 1e-14);
    std::vector<double> got0(got.begin(), got.begin() + plane), want0(want.begin(), want.begin() + plane);
    CHECK(scaled_max_error(got0, want0) > 1e-6);  // a real sample gets more than the area term
  }
}

namespace {

// scratch: the masker's own encoder (3 blocks of 5 convs on a 16x16 image) makes the features.
void check_masker_gradients(UpsampleMode mode, int64_t skip_channels, const std::string& what,
                            bool scratch = false) {
  OneThread one;
  MaskerConfig cfg;
  cfg.num_classes = 5;
  cfg.feature_channels = {3, 4, 6};
  cfg.widths = {8, 8};
  cfg.bottlenecks = 1;
  cfg.upsample = mode;
  cfg.skip_channels = skip_channels;
  cfg.seed = 3;
  if (scratch) cfg.encoder_channels = cfg.feature_channels;
  Masker masker(cfg, Device::CPU, DType::F64);
  std::mt19937 gen(9);
  const int64_t n = 2;
  std::vector<Tensor> feats = {random_tensor(Shape{n, 3, 8, 8}, gen, 0.0, 1.0),
                               random_tensor(Shape{n, 4, 4, 4}, gen, 0.0, 1.0),
                               random_tensor(Shape{n, 6, 2, 2}, gen, 0.0, 1.0)};
  Tensor images = random_tensor(Shape{n, 3, 16, 16}, gen, 0.0, 1.0);
  Tensor classes = Tensor::from_labels({4, 1});
  const int64_t oh = 11, ow = 13;  // a non-multiple output size for the bilinear head
  Tensor r_mask = random_tensor(scratch ? Shape{n, 1, 16, 16} : Shape{n, 1, oh, ow}, gen, -1.0, 1.0);
  Tensor r_head = random_tensor(Shape{n, 1, 8, 8}, gen, -1.0, 1.0);
  Tensor r_filter = random_tensor(Shape{n, 1, 2, 2}, gen, -1.0, 1.0);
  Ctx ctx;
  // L = <mask, r_mask> + <head_mask, r_head> + <filter_logits, r_filter>
  const auto run = [&] {
    return scratch ? masker.forward(ctx, images, classes, true)
                   : masker.forward_features(ctx, feats, classes, oh, ow, true);
  };
  const auto loss = [&] {
    MaskerOutput o = run();
    return sum(ctx, mul(ctx, o.mask, r_mask)).item() + sum(ctx, mul(ctx, o.head_mask, r_head)).item() +
           sum(ctx, mul(ctx, o.filter_logits, r_filter)).item();
  };
  MaskerOutput o = run();
  CHECK(o.mask.shape() == (scratch ? Shape{n, 1, 16, 16} : Shape{n, 1, oh, ow}));
  CHECK(o.head.shape() == (Shape{n, 2, 8, 8}));
  CHECK(o.filter_logits.shape() == (Shape{n, 1, 2, 2}));
  masker.params().zero_grads();
  std::vector<Tensor> dfeats;
  masker.backward(ctx, r_mask, &r_head, &r_filter, &dfeats);
  // The feature gradients (for a trainable encoder): with 2 upsamplers over 3 levels every map feeds
  // the decoder (the coarsest through the filter, the others as skips).
  REQUIRE(dfeats.size() == 3);
  for (size_t i = 0; i < 3 && !scratch; ++i) {
    REQUIRE(dfeats[i].defined());
    const double ef = scaled_max_error(dfeats[i].values(), numeric_grad(feats[i], loss));
    MESSAGE(what, ": dL/d feature ", i, " scaled max error ", ef);
    CHECK(ef < 1e-6);
  }
  const std::vector<double> analytic = masker.params().flat_grads().values();
  Tensor flat = masker.params().flat_values();
  double* p = flat.data<double>();
  // Every element of every trainable parameter of this tiny config.
  ParamStore& ps = masker.params();
  double worst = 0, scale_ref = 1e-3;
  int checked = 0;
  std::vector<std::pair<double, double>> pairs;
  for (const std::string& name : ps.names()) {
    ParamRef ref = ps.find(name);
    if (!ps.trainable(ref)) continue;
    Tensor v = ps.value(ref), g = ps.grad(ref);
    const int64_t off = static_cast<int64_t>(v.data<double>() - p);
    const int64_t goff = static_cast<int64_t>(g.data<double>() - masker.params().flat_grads().data<double>());
    for (int64_t i = 0; i < v.numel(); ++i) {
      const double old = p[off + i], hstep = 1e-6;
      p[off + i] = old + hstep;
      const double fp = loss();
      p[off + i] = old - hstep;
      const double fm = loss();
      p[off + i] = old;
      const double num = (fp - fm) / (2 * hstep), ana = analytic[static_cast<size_t>(goff + i)];
      scale_ref = std::max(scale_ref, std::abs(num));
      pairs.emplace_back(ana, num);
      ++checked;
    }
  }
  int bad = 0;
  for (const auto& [a, nm] : pairs) {
    worst = std::max(worst, std::abs(a - nm));
    if (std::abs(a - nm) > 1e-6 * scale_ref) ++bad;
  }
  MESSAGE(what, ": ", bad, " elements off by more than 1e-6");
  MESSAGE(what, ": ", checked, " parameter elements, max |analytic - numeric| / max |numeric| = ",
          worst / scale_ref);
  CHECK(checked > 500);
  // The own encoder is 15 conv + training-mode BN + ReLU layers on a batch of 2: gradients reach
  // hundreds and the third derivative is large, so central differences with h = 1e-6 are only good
  // to ~1e-5 of the largest gradient there (measured 1.2e-5 at 22 of 7353 elements); a wrong
  // gradient path is off by O(1).
  CHECK(worst / scale_ref < (scratch ? 1e-4 : 1e-6));
  // The embedding rows of unused classes get nothing; a used one does.
  Tensor ge = ps.grad(ps.find("masker.embedding.weight"));
  std::vector<double> gv = ge.values();
  double row0 = 0, row4 = 0;
  for (int c = 0; c < 6; ++c) {
    row0 += std::abs(gv[static_cast<size_t>(c)]);
    row4 += std::abs(gv[static_cast<size_t>(4 * 6 + c)]);
  }
  CHECK(row0 == 0.0);
  CHECK(row4 > 0.0);
}

}  // namespace

TEST_CASE("masker: parameter gradients match finite differences (pixel shuffle)") {
  check_masker_gradients(UpsampleMode::PixelShuffle, 0, "pixel shuffle");
}

TEST_CASE("masker: parameter gradients match finite differences (transposed conv, 1x1 skip conv)") {
  check_masker_gradients(UpsampleMode::ConvTranspose, 3, "conv transpose + skip conv");
}

TEST_CASE("masker: parameter gradients match finite differences (own encoder trained from scratch)") {
  check_masker_gradients(UpsampleMode::PixelShuffle, 0, "own encoder", true);
}

TEST_CASE("masker: backward after an inference forward is refused before any gradient is accumulated") {
  MaskerConfig cfg;
  cfg.num_classes = 5;
  cfg.feature_channels = {3, 4, 6};
  cfg.widths = {8, 8};
  cfg.bottlenecks = 1;
  cfg.seed = 3;
  Masker masker(cfg, Device::CPU, DType::F64);
  std::mt19937 gen(9);
  const std::vector<Tensor> feats = {random_tensor(Shape{2, 3, 8, 8}, gen, 0.0, 1.0),
                                     random_tensor(Shape{2, 4, 4, 4}, gen, 0.0, 1.0),
                                     random_tensor(Shape{2, 6, 2, 2}, gen, 0.0, 1.0)};
  const Tensor classes = Tensor::from_labels({4, 1});
  Ctx ctx;
  masker.params().zero_grads();
  Tensor dmask;
  // With the conv + BN fusion on and off alike (it is per device by default: the same call must not
  // train on one device and fail on the other).
  for (const bool fused : {true, false}) {
    set_conv_bn_fusion(fused);
    const MaskerOutput o = masker.forward_features(ctx, feats, classes, 16, 16, /*training=*/false);
    dmask = random_tensor(o.mask.shape(), gen, -1.0, 1.0);
    CHECK_THROWS_WITH_AS(masker.backward(ctx, dmask), doctest::Contains("Masker::backward after an inference forward"),
                         Error);
  }
  reset_conv_bn_fusion();
  const auto grad_l1 = [&] {
    double total = 0;
    for (double g : masker.params().flat_grads().values()) total += std::abs(g);
    return total;
  };
  CHECK(grad_l1() == 0.0);
  // In training mode the same backward runs and accumulates.
  masker.forward_features(ctx, feats, classes, 16, 16, /*training=*/true);
  masker.backward(ctx, dmask);
  CHECK(grad_l1() > 0);
}

TEST_CASE("masker: CIFAR config on the ResNet20 encoder and MobileNet config shapes") {
  OneThread one;
  Ctx ctx;
  {
    std::unique_ptr<Network> enc = load_network(std::string(SAL_SOURCE_DIR) + "/weights/cifar_resnet20.safetensors");
    Masker m(MaskerConfig::cifar_resnet(), Device::CPU);
    m.init_embedding(enc->params().value("linear.weight"));
    CHECK(m.params().value("masker.embedding.weight").values() == enc->params().value("linear.weight").values());
    std::mt19937 gen(1);
    Tensor images = random_tensor(Shape{2, 3, 32, 32}, gen, 0.0, 1.0, DType::F32);
    MaskerOutput o = m.forward(ctx, *enc, images, Tensor::from_labels({1, 9}));
    CHECK(o.mask.shape() == (Shape{2, 1, 32, 32}));
    CHECK(o.head.shape() == (Shape{2, 2, 16, 16}));
    CHECK(o.head_mask.shape() == (Shape{2, 1, 16, 16}));
    CHECK(o.filter_logits.shape() == (Shape{2, 1, 8, 8}));
    for (double v : o.mask.values()) REQUIRE((v >= 0.0 && v <= 1.0));
    for (const std::string& name : m.params().names()) CHECK(name.rfind("masker.", 0) == 0);
  }
  {
    std::unique_ptr<Network> enc =
        load_network(std::string(SAL_SOURCE_DIR) + "/weights/mobilenet_v1_0.75_224.safetensors");
    Masker m(MaskerConfig::mobilenet_v1(), Device::CPU);
    m.init_embedding(enc->params().value("conv_preds.weight"));
    std::mt19937 gen(2);
    Tensor images = random_tensor(Shape{1, 3, 224, 224}, gen, 0.0, 1.0, DType::F32);
    MaskerOutput o = m.forward(ctx, *enc, images, Tensor::from_labels({281}));
    CHECK(o.mask.shape() == (Shape{1, 1, 224, 224}));
    CHECK(o.head.shape() == (Shape{1, 2, 56, 56}));
    CHECK(o.filter_logits.shape() == (Shape{1, 1, 7, 7}));
  }
  {
    // The paper's CIFAR variant with its own encoder.
    Masker m(MaskerConfig::cifar_scratch(), Device::CPU);
    CHECK(m.has_encoder());
    CHECK(m.params().contains("masker.encoder.block2.conv4.weight"));
    std::mt19937 gen(3);
    MaskerOutput o = m.forward(ctx, random_tensor(Shape{2, 3, 32, 32}, gen, 0.0, 1.0, DType::F32),
                               Tensor::from_labels({0, 1}));
    CHECK(o.mask.shape() == (Shape{2, 1, 32, 32}));
    CHECK(o.head.shape() == (Shape{2, 2, 16, 16}));
    CHECK(o.filter_logits.shape() == (Shape{2, 1, 4, 4}));
  }
  // The paper's ResNet-50 decoder: parameters only (a ResNet-50 forward is left to the model tests).
  Masker paper(MaskerConfig::paper_resnet50(), Device::CPU);
  CHECK(paper.params().contains("masker.up0.tconv.weight"));
  CHECK(paper.params().contains("masker.up2.bottleneck2.conv3.weight"));
  CHECK(paper.params().shape(paper.params().find("masker.head.weight")) == (Shape{2, 192, 1, 1}));
  // Errors name what is wrong.
  MaskerConfig bad = MaskerConfig::cifar_resnet();
  bad.widths = {64, 32, 16};
  CHECK_THROWS_WITH(Masker(bad, Device::CPU), doctest::Contains("3 upsamplers need at least 4"));
  Masker m(MaskerConfig::mobilenet_v1(), Device::CPU);
  CHECK_THROWS_WITH(m.init_embedding(Tensor::zeros(Shape{10, 64})), doctest::Contains("masker.embedding.weight"));
}

TEST_CASE("masker file: load_masker gives back every parameter saved, without gradients, and a file missing one is an error") {
  // load_masker builds the masker with zeros and no gradient buffer (MaskerInit::ForLoading, no random
  // draw) and relies on load_params refusing a file without every parameter: both halves checked here.
  sal::test::TempDir t("masker_io_test_");
  Masker saved(MaskerConfig::cifar_resnet(), Device::CPU);  // random, from seed 0
  MaskerFileInfo info;
  info.black_box = "cifar_resnet20.safetensors";
  info.black_box_arch = "cifar_resnet20";
  info.image_size = 32;
  save_masker(saved, info, t.file("m.safetensors"));
  MaskerFileInfo back_info;
  const std::unique_ptr<Masker> back = load_masker(t.file("m.safetensors"), Device::CPU, &back_info);
  CHECK(back_info.black_box == info.black_box);
  CHECK(back_info.image_size == 32);
  REQUIRE(back->params().size() == saved.params().size());
  CHECK(back->params().flat_values().values() == saved.params().flat_values().values());
  CHECK(back->params().num_trainable() == saved.params().num_trainable());  // the same layout
  CHECK(saved.params().has_grads());
  CHECK_FALSE(back->params().has_grads());
  CHECK_THROWS_WITH_AS(back->params().flat_grads(), doctest::Contains("no gradient buffer"), Error);
  CHECK_THROWS_WITH_AS(back->params().grad(back->params().find("masker.head.bias")),
                       doctest::Contains("a model loaded for inference"), Error);
  const Masker fresh(MaskerConfig::cifar_resnet(), Device::CPU, DType::F32, MaskerInit::ForLoading);
  CHECK(fresh.params().flat_values().values() ==
        std::vector<double>(static_cast<size_t>(saved.params().flat_values().numel()), 0.0));

  // The same file less one tensor (its metadata kept): an error naming the file and the tensor.
  const SafeTensorsFile full(t.file("m.safetensors"));
  NamedTensors kept;
  for (const std::string& name : full.names())
    if (name != "masker.head.bias") kept.emplace_back(name, full.tensor(name).clone());
  write_safetensors(t.file("less.safetensors"), kept, full.metadata());
  CHECK_THROWS_WITH_AS(load_masker(t.file("less.safetensors"), Device::CPU),
                       doctest::Contains("less.safetensors: missing tensor 'masker.head.bias'"), Error);
}

TEST_CASE("masker + objective: 30 Adam steps of the CIFAR recipe lower the objective on 8 real images") {
  const std::string tar_path = std::string(SAL_SHARED_DIR) + "/data/cifar10/test.tar";
  REQUIRE_MESSAGE(std::filesystem::exists(tar_path), tar_path, " is missing (../shared/data/cifar10)");
  OneThread one;  // measured: 5.5 s on one thread, 89 s with 2 threads on 2 cores under a parallel build
  const std::vector<std::string> names = {"airplane", "automobile", "bird", "cat", "deer",
                                          "dog",      "frog",       "horse", "ship", "truck"};
  TarReader tar(tar_path);
  std::vector<TarEntry> entries = TarReader::list(tar_path);
  REQUIRE(entries.size() >= 8);
  const int64_t n = 8;
  Tensor images = Tensor::empty(Shape{n, 3, 32, 32});
  std::vector<int32_t> labels;
  for (int64_t i = 0; i < n; ++i) {
    const TarEntry& e = entries[static_cast<size_t>(i) * entries.size() / static_cast<size_t>(n)];
    const std::string cls = e.name.substr(0, e.name.find('/'));
    auto it = std::find(names.begin(), names.end(), cls);
    REQUIRE_MESSAGE(it != names.end(), tar_path, ": entry '", e.name, "' has no CIFAR-10 class folder");
    labels.push_back(static_cast<int32_t>(it - names.begin()));
    Tensor img = image_to_tensor(decode_image(tar.read(e), e.name), 32, 32);
    images.slice0(i, 1).copy_from(img.reshape(Shape{1, 3, 32, 32}));
  }
  // Two samples get a fake (wrong) class.
  std::vector<uint8_t> real(static_cast<size_t>(n), 1);
  std::vector<int32_t> sel = labels;
  real[1] = real[5] = 0;
  sel[1] = (labels[1] + 3) % 10;
  sel[5] = (labels[5] + 7) % 10;
  Tensor classes = Tensor::from_labels(sel);

  std::unique_ptr<Network> bb = load_network(std::string(SAL_SOURCE_DIR) + "/weights/cifar_resnet20.safetensors");
  Masker masker(MaskerConfig::cifar_resnet(), Device::CPU);
  masker.init_embedding(bb->params().value("linear.weight"));
  ObjectiveConfig ocfg;  // the DESIGN's working recipe: released loss, area weight 4, selector loss
  ocfg.area_weight = 4.0;
  ocfg.blur_sigma = 3.0;
  ocfg.blur_ksize = 13;
  SaliencyObjective obj(ocfg);
  Adam adam(masker.params(), AdamConfig{});
  Arena arena(Device::CPU);
  Ctx ctx(Device::CPU, &arena);
  std::vector<double> totals;
  size_t growths = 0;
  for (int step = 0; step < 30; ++step) {
    arena.reset();
    masker.params().zero_grads();
    std::mt19937 rng(77);  // a fixed evidence removal: the objective is a function of the parameters only
    MaskerOutput o = masker.forward(ctx, *bb, images, classes, true);
    ObjectiveResult r = obj.evaluate(ctx, *bb, images, o.mask, o.head_mask, o.filter_logits, classes, real, rng);
    masker.backward(ctx, r.dmask, &r.dhead_mask, &r.dfilter_logits);
    adam.step(ctx);
    totals.push_back(r.terms.total);
    if (step == 1) growths = arena.growths();
    if (step > 1) CHECK(arena.growths() == growths);  // the steady state takes nothing new from the arena
    if (step == 0 || step == 29)
      MESSAGE("step ", step, ": total ", r.terms.total, " area ", r.terms.area, " smooth ", r.terms.smoothness,
              " preserver ", r.terms.preserver, " destroyer ", r.terms.destroyer, " selector ", r.terms.selector);
    REQUIRE(std::isfinite(r.terms.total));
  }
  const double last = *std::min_element(totals.end() - 5, totals.end());
  MESSAGE("objective: ", totals.front(), " -> ", totals.back(), " (best of the last 5: ", last, ")");
  CHECK(last < 0.8 * totals.front());
}

namespace {

// One forward + objective + backward of the CIFAR recipe on 4 noise images (one fake selector), from the
// seeded initialisation, on `ctx`'s device: what the CPU-vs-CUDA and the TF32 comparisons below compare.
struct RecipeStep {
  std::vector<double> mask, dmask, grads;
  double total = 0;
};

RecipeStep recipe_step(Ctx& ctx) {
  const Device dev = ctx.device;
  const std::string wpath = std::string(SAL_SOURCE_DIR) + "/weights/cifar_resnet20.safetensors";
  std::unique_ptr<Network> bb = load_network(wpath, dev);
  Masker m(MaskerConfig::cifar_resnet(), dev);
  std::mt19937 gen(4);
  Tensor images = random_tensor(Shape{4, 3, 32, 32}, gen, 0.0, 1.0, DType::F32).to(dev);
  Tensor classes = Tensor::from_labels({0, 3, 5, 9}).to(dev);
  const std::vector<uint8_t> real{1, 1, 0, 1};
  ObjectiveConfig ocfg;
  ocfg.smooth_on_head = true;
  SaliencyObjective obj(ocfg);
  std::mt19937 rng(8);
  MaskerOutput o = m.forward(ctx, *bb, images, classes);
  ObjectiveResult r = obj.evaluate(ctx, *bb, images, o.mask, o.head_mask, o.filter_logits, classes, real, rng);
  m.params().zero_grads();
  m.backward(ctx, r.dmask, &r.dhead_mask, &r.dfilter_logits);
  return {o.mask.values(), r.dmask.values(), m.params().flat_grads().values(), r.terms.total};
}

double relative_l2(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

}  // namespace

// Why the CUDA comparison below runs in f32 math: TF32 operands alone (emulated on the CPU) move this
// step's gradients by ~10% relative L2 while the mask and the loss stay within 1%. The objective's
// gradient is dL/dPhi (the classifier's input gradient, ill-conditioned on noise images) times (X - A),
// then back through the masker. Measured here: mask 0.005, dL/dM 0.116, masker gradients 0.35.
TEST_CASE("masker + objective step: TF32 operands (emulated on the CPU) move the gradients far more than the loss") {
  OneThread one;
  Ctx host;
  const RecipeStep exact = recipe_step(host);
  cpu::set_emulate_tf32(true);
  const RecipeStep tf32 = recipe_step(host);
  cpu::set_emulate_tf32(false);
  const RecipeStep again = recipe_step(host);
  const double em = relative_l2(tf32.mask, exact.mask), ed = relative_l2(tf32.dmask, exact.dmask),
               eg = relative_l2(tf32.grads, exact.grads);
  MESSAGE("TF32 vs f32 on the CPU: mask relative L2 ", em, ", total ", tf32.total, " vs ", exact.total, ", dL/dM ", ed,
          ", masker gradients ", eg);
  CHECK(again.grads == exact.grads);  // switched off, the run is the f32 one again, bit for bit
  CHECK(em < 1e-2);
  CHECK(tf32.total == doctest::Approx(exact.total).epsilon(2e-3));
  CHECK(ed > 0.02);  // the conditioning the CUDA test's two tolerances rest on
  CHECK(eg > 0.05);

  // bf16 operands (8-bit mantissa, 4x TF32's rounding): what bf16 tensor cores would do to the same step.
  cpu::set_emulate_bf16(true);
  const RecipeStep bf16 = recipe_step(host);
  cpu::set_emulate_bf16(false);
  const double bm = relative_l2(bf16.mask, exact.mask), bd = relative_l2(bf16.dmask, exact.dmask),
               bg = relative_l2(bf16.grads, exact.grads);
  MESSAGE("bf16 vs f32 on the CPU: mask relative L2 ", bm, ", total ", bf16.total, " vs ", exact.total, ", dL/dM ", bd,
          ", masker gradients ", bg);
  CHECK(bm > em);  // coarser operands move everything more
  CHECK(bd > ed);
  CHECK(recipe_step(host).grads == exact.grads);  // and switched off, exact again
}

#ifdef SAL_WITH_CUDA
#include "cuda/conv_backend.h"
#include "cuda/device.h"

// f32 math (SAL_CONV_MATH=f32 / set_conv_math): the same step to float rounding (amplified as below),
// gradients included.
// TF32 (the default): the forward to TF32 rounding; the gradients only to the CPU emulation's scale
// (the test above), bounded so that a wrong or missing gradient still fails.
TEST_CASE("cuda: masker + objective step of the CIFAR recipe matches the CPU (f32 math exactly, TF32 loosely)") {
  if (!cuda_available()) {
    MESSAGE("skipped: no CUDA device");
    return;
  }
  OneThread one;
  Ctx host;
  const RecipeStep ref = recipe_step(host);
  CudaDevice dev;
  Arena arena(Device::CUDA);
  Ctx g = dev.ctx(&arena);
  const cuda::ConvMath before = cuda::conv_math();
  for (const cuda::ConvMath math : {cuda::ConvMath::F32, cuda::ConvMath::TF32}) {
    cuda::set_conv_math(math);
    const RecipeStep got = recipe_step(g);
    const double em = relative_l2(got.mask, ref.mask), ed = relative_l2(got.dmask, ref.dmask),
                 eg = relative_l2(got.grads, ref.grads);
    MESSAGE("CUDA (", std::string(cuda::conv_math_name(math)), ") vs CPU: mask relative L2 ", em, ", total ", got.total, " vs ",
            ref.total, ", dL/dM ", ed, ", masker gradients ", eg, " (conv backend ",
            std::string(cuda::conv_backend_name(cuda::conv_backend())), ")");
    if (math == cuda::ConvMath::F32) {
      // The same amplification applies to f32's own rounding: on the CPU, operands rounded at 2^-21 instead
      // of TF32's 2^-11 moved dL/dM by 1e-6 and the gradients by 3.6e-4; cuDNN's f32 algorithms (Winograd,
      // FFT) round a little more than a plain sum. Still 10x below what TF32 does to them.
      CHECK(em < 1e-4);
      CHECK(got.total == doctest::Approx(ref.total).epsilon(1e-5));
      CHECK(ed < 1e-2);
      CHECK(eg < 3e-2);
    } else {
      CHECK(em < 1e-2);
      CHECK(got.total == doctest::Approx(ref.total).epsilon(5e-3));
      CHECK(ed < 0.5);
      CHECK(eg < 0.8);
    }
  }
  cuda::set_conv_math(before);
}
#endif
