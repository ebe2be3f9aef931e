// Model tests of the ResNets: torchvision ResNet-50 and the CIFAR ResNet20 against PyTorch golden
// fixtures (logits, feature maps, input gradient); the input gradients of ResNet-50, a CIFAR
// ResNet8 and the Bottleneck block (with its weight gradients, training-mode BN) against central
// finite differences in double precision; and the errors of loading a wrong file.
#include <doctest/doctest.h>
#include <omp.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <random>

#include "engine/param_io.h"
#include "layers/cifar_resnet.h"
#include "layers/modules.h"
#include "layers/networks.h"
#include "layers/resnet.h"
#include "tests/models/golden.h"

using namespace sal;
using namespace sal::test;
namespace fs = std::filesystem;

namespace {

// dlogits [N,K]: one at c_n = n*7 % K per sample (the golden files' input_grad convention).
Tensor golden_dlogits(int64_t n, int64_t k) {
  std::vector<double> v(static_cast<size_t>(n * k), 0.0);
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i * k + (i * 7) % k)] = 1.0;
  return Tensor::from_values(v, Shape{n, k});
}

// ||a - b|| / ||b|| over all elements.
double relative_l2(const Tensor& ours, const Tensor& ref) {
  std::vector<double> a = ours.values(), b = ref.values();
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

// Loads <arch>.weights.safetensors, runs forward and backward_input on the golden input inside an
// arena (twice: the second step must allocate nothing and reproduce the first bit for bit) and
// checks logits and features within 1e-4 and input_grad within grad_tol (scaled max error) and
// grad_l2_tol (relative L2 error).
void check_network_golden(const std::string& arch, const std::vector<std::string>& feature_names,
                          double grad_tol = 1e-4, double grad_l2_tol = 1e-4) {
  const std::string wpath = golden_path(arch + ".weights.safetensors");
  const std::string gpath = golden_path(arch + ".golden.safetensors");
  REQUIRE_MESSAGE(fs::exists(wpath), wpath, " is missing: run tools/make_golden_fixtures.py (ctest does)");
  REQUIRE_MESSAGE(fs::exists(gpath), gpath, " is missing: run tools/make_golden_fixtures.py (ctest does)");
  std::unique_ptr<Network> net = load_network(wpath);
  SafeTensorsFile golden(gpath);
  const Tensor input = golden.load_f32("input");
  CHECK(net->input_spec().arch == arch);

  Arena arena(Device::CPU);
  Ctx ctx(Device::CPU, &arena);
  std::vector<double> first_logits;
  size_t growths_after_first = 0;
  for (int step = 0; step < 2; ++step) {
    arena.reset();
    Tensor logits = net->forward(ctx, input);
    std::vector<Tensor> feats = net->features();
    REQUIRE(feats.size() == feature_names.size());
    Tensor dx = net->backward_input(ctx, golden_dlogits(logits.dim(0), logits.dim(1)));
    if (step == 0) {
      check_golden(logits, golden, "logits");
      for (size_t i = 0; i < feats.size(); ++i) check_golden(feats[i], golden, feature_names[i]);
      check_golden(dx, golden, "input_grad", grad_tol);
      const double l2 = relative_l2(dx, golden.load_f32("input_grad"));
      MESSAGE("input_grad: relative L2 error ", l2);
      CHECK(l2 <= grad_l2_tol);
      first_logits = logits.values();
      growths_after_first = arena.growths();
    } else {
      CHECK(logits.values() == first_logits);
      CHECK(arena.growths() == growths_after_first);  // the steady state allocates nothing
    }
  }
}

// One OpenMP thread while in scope. The finite-difference checks run hundreds of small forwards
// of many tiny ops; when ctest runs tests in parallel on 2 cores, 2-thread fork/joins on
// oversubscribed cores cost milliseconds each (measured: 0.4 s -> 12 s for cifar_resnet8).
// The golden tests keep the default thread count and cover the parallel paths.
struct SingleThreaded {
  int saved = omp_get_max_threads();
  SingleThreaded() { omp_set_num_threads(1); }
  ~SingleThreaded() { omp_set_num_threads(saved); }
};

// n standard-normal values from gen.
std::vector<double> normal_values(std::mt19937& gen, size_t n) {
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> v(n);
  for (double& e : v) e = normal(gen);
  return v;
}

// Parameters drawn from a seeded generator: He-scaled conv/linear weights, BN affine around 1/0,
// running statistics with positive variance (a random network whose activations stay O(1)).
void randomize_params(ParamStore& ps, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.5, 1.5);
  for (const std::string& name : ps.names()) {
    ParamRef p = ps.find(name);
    const Shape& s = ps.shape(p);
    std::vector<double> v(static_cast<size_t>(s.numel()));
    const bool vector = s.ndim() == 1;  // BN parameters and biases; conv and linear weights have fan-in
    const auto ends_with = [&](const std::string& suffix) {
      return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    for (double& x : v) {
      if (ends_with("running_var")) x = uniform(gen);
      else if (ends_with("running_mean")) x = 0.1 * normal(gen);
      else if (vector && ends_with("weight")) x = uniform(gen);  // BN gamma
      else if (ends_with("bias")) x = 0.1 * normal(gen);
      else x = normal(gen) * std::sqrt(2.0 / static_cast<double>(s.numel() / s[0]));  // fan_in
    }
    Tensor dst = ps.value(p);
    dst.copy_from(Tensor::from_values(v, s, dst.dtype()));
  }
}

InputSpec cifar_spec(const std::string& arch) {
  InputSpec s;
  s.arch = arch;
  s.size = 32;
  s.num_classes = 10;
  for (int c = 0; c < 3; ++c) {
    s.mean[c] = 0.5f;
    s.std[c] = 0.25f;
  }
  return s;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

struct TempFile {
  std::string path;
  explicit TempFile(const std::string& name)
      : path((fs::temp_directory_path() / ("sal_resnet_test_" + std::to_string(::getpid()) + "_" + name)).string()) {}
  ~TempFile() {
    std::error_code ec;
    fs::remove(path, ec);
  }
};

// The tensors and metadata of a weights file, with `replace` substituted (or dropped when undefined).
void rewrite(const std::string& src, const std::string& dst, const std::string& name, const Tensor& replace,
             const std::map<std::string, std::string>* metadata = nullptr) {
  SafeTensorsFile in(src);
  NamedTensors tensors;
  for (const std::string& n : in.names()) {
    if (n != name) tensors.emplace_back(n, in.tensor(n));
    else if (replace.defined()) tensors.emplace_back(n, replace);
  }
  write_safetensors(dst, tensors, metadata ? *metadata : in.metadata());
}

}  // namespace

TEST_CASE("resnet50 matches torchvision (golden logits, features, input gradient)") {
  // The input gradient of a 50-layer ReLU network is ill-conditioned in float32: forward
  // rounding (~6e-5 of the scale at layer4) flips the sign of pre-activations that lie near zero,
  // and each flip reroutes a whole gradient path. Measured on this fixture against the same
  // network in float64: PyTorch's own float32 input_grad (the golden) is off by 3.0e-2 (scaled
  // max) / 1.3e-2 (relative L2), ours by 3.1e-2 / 1.6e-2, and PyTorch float32 with 2 threads
  // differs from its 1-thread golden by 7.6e-3. No float32 engine can meet 1e-4 here, so the
  // bounds are the sum of the two float32 errors; "resnet50 input gradient matches finite
  // differences (F64)" checks the backward itself to 1e-6.
  check_network_golden("resnet50", {"feat4", "feat8", "feat16", "feat32"}, 6e-2, 3e-2);
}

TEST_CASE("cifar_resnet20 matches the PyTorch reference (golden logits, features, input gradient)") {
  check_network_golden("cifar_resnet20", {"feat1", "feat2", "feat4"});
}

TEST_CASE("resnet feature shapes and parameter counts") {
  InputSpec spec;
  spec.arch = "resnet50";
  spec.num_classes = 1000;
  std::unique_ptr<Network> r50 = make_resnet50(spec, Device::CPU);
  CHECK(r50->params().size() == 267);  // weights/README.md
  int64_t count = 0;
  for (const std::string& name : r50->params().names()) count += r50->params().shape(r50->params().find(name)).numel();
  CHECK(count == 25557032 + 53120);  // torchvision's parameters + BN running statistics
  CHECK(r50->params().num_trainable() == 0);  // a frozen black box
  Ctx ctx;
  Tensor x = Tensor::zeros(Shape{1, 3, 64, 96});
  Tensor logits = r50->forward(ctx, x);
  CHECK(logits.shape() == Shape{1, 1000});
  std::vector<Tensor> f = r50->features();
  REQUIRE(f.size() == 4);
  CHECK(f[0].shape() == Shape{1, 256, 16, 24});
  CHECK(f[1].shape() == Shape{1, 512, 8, 12});
  CHECK(f[2].shape() == Shape{1, 1024, 4, 6});
  CHECK(f[3].shape() == Shape{1, 2048, 2, 3});

  for (int depth : {20, 56}) {
    std::unique_ptr<Network> c = make_cifar_resnet(cifar_spec("cifar_resnet" + std::to_string(depth)), Device::CPU,
                                                   depth);
    CHECK(c->params().size() == (depth == 20 ? 97 : 277));
  }
  CHECK_THROWS_WITH_AS(make_cifar_resnet(cifar_spec("cifar_resnet21"), Device::CPU, 21),
                       doctest::Contains("depth 6n+2"), Error);
}

TEST_CASE("Bottleneck: trainable parameters, training-mode BN and weight gradients") {
  SingleThreaded one_thread;
  ParamStore ps;
  Bottleneck down(ps, "dec.0", 8, 4, 16, 2, 1e-5, /*trainable=*/true);
  Bottleneck same(ps, "dec.1", 16, 4, 16, 1, 1e-5, /*trainable=*/true);
  CHECK(down.has_downsample());
  CHECK_FALSE(same.has_downsample());
  CHECK(ps.contains("dec.0.downsample.0.weight"));
  CHECK(ps.contains("dec.0.downsample.1.running_var"));
  CHECK_FALSE(ps.contains("dec.1.downsample.0.weight"));
  ps.finalize(Device::CPU, DType::F64);
  randomize_params(ps, 7);
  ps.zero_grads();

  Ctx ctx;
  std::mt19937 gen(3);
  const std::vector<double> xv = normal_values(gen, 2 * 8 * 6 * 6), wv = normal_values(gen, 2 * 16 * 3 * 3);
  const Tensor x = Tensor::from_values(xv, Shape{2, 8, 6, 6}, DType::F64);
  const Tensor w = Tensor::from_values(wv, Shape{2, 16, 3, 3}, DType::F64);
  // L = sum(w * block(block(x))) with batch statistics; the running statistics move as a side
  // effect, which does not change a training-mode forward, so finite differences stay valid.
  auto loss = [&](const Tensor& in) {
    return dot(same.forward(ctx, down.forward(ctx, in, true), true).values(), wv);
  };
  const double l0 = loss(x);
  CHECK(std::isfinite(l0));
  Tensor dx = down.backward(ctx, same.backward(ctx, w, true), true);
  CHECK(dx.shape() == x.shape());

  // Input gradient and one weight gradient (conv2 of the downsampling block) by central differences.
  const double h = 1e-6;
  const std::vector<double> g = dx.values();
  std::uniform_int_distribution<size_t> pick(0, xv.size() - 1);
  double worst = 0, scale = 0;
  for (double v : g) scale = std::max(scale, std::abs(v));
  for (int t = 0; t < 24; ++t) {
    const size_t i = pick(gen);
    std::vector<double> xp = xv, xm = xv;
    xp[i] += h;
    xm[i] -= h;
    const double fd = (loss(Tensor::from_values(xp, x.shape(), DType::F64)) -
                       loss(Tensor::from_values(xm, x.shape(), DType::F64))) / (2 * h);
    worst = std::max(worst, std::abs(fd - g[i]));
  }
  MESSAGE("Bottleneck input gradient vs finite differences: max error ", worst / scale, " of max |g| ", scale);
  CHECK(worst / scale < 1e-6);

  ParamRef pw = ps.find("dec.0.conv2.weight");
  const std::vector<double> gw = ps.grad(pw).values();
  Tensor wt = ps.value(pw);
  double wworst = 0, wscale = 0;
  for (double v : gw) wscale = std::max(wscale, std::abs(v));
  for (size_t i = 0; i < 12; ++i) {
    const size_t j = i * 11 % gw.size();
    const double orig = wt.data<double>()[j];
    wt.data<double>()[j] = orig + h;
    const double lp = loss(x);
    wt.data<double>()[j] = orig - h;
    const double lm = loss(x);
    wt.data<double>()[j] = orig;
    wworst = std::max(wworst, std::abs((lp - lm) / (2 * h) - gw[j]));
  }
  MESSAGE("Bottleneck conv2 weight gradient vs finite differences: max error ", wworst / wscale);
  CHECK(wscale > 0);
  CHECK(wworst / wscale < 1e-6);
}

TEST_CASE("conv_bn_fusion: on for the CPU and off for CUDA by default, set and reset override it, a bad value is "
          "an error") {
  const char* env = std::getenv("SAL_FUSE_CONV_BN");
  const std::string saved = env ? env : "";
  unsetenv("SAL_FUSE_CONV_BN");
  reset_conv_bn_fusion();
  CHECK(conv_bn_fusion(Device::CPU));
  CHECK_FALSE(conv_bn_fusion(Device::CUDA));
  set_conv_bn_fusion(true);
  CHECK((conv_bn_fusion(Device::CPU) && conv_bn_fusion(Device::CUDA)));
  set_conv_bn_fusion(false);
  CHECK_FALSE((conv_bn_fusion(Device::CPU) || conv_bn_fusion(Device::CUDA)));
  reset_conv_bn_fusion();
  CHECK((conv_bn_fusion(Device::CPU) && !conv_bn_fusion(Device::CUDA)));
  for (const char* v : {"0", "1"}) {
    setenv("SAL_FUSE_CONV_BN", v, 1);
    reset_conv_bn_fusion();
    CHECK(conv_bn_fusion(Device::CPU) == (v[0] == '1'));
    CHECK(conv_bn_fusion(Device::CUDA) == (v[0] == '1'));
  }
  setenv("SAL_FUSE_CONV_BN", "yes", 1);
  reset_conv_bn_fusion();
  CHECK_THROWS_WITH(conv_bn_fusion(Device::CPU), doctest::Contains("SAL_FUSE_CONV_BN='yes': expected 0 (off), 1 (on)"));
  if (env)
    setenv("SAL_FUSE_CONV_BN", saved.c_str(), 1);
  else
    unsetenv("SAL_FUSE_CONV_BN");
  reset_conv_bn_fusion();
}

TEST_CASE("Bottleneck: a trainable block runs fused in inference, as unfused, and refuses parameter gradients there") {
  SingleThreaded one_thread;
  ParamStore ps;
  Bottleneck down(ps, "dec.0", 8, 4, 16, 2, 1e-5, /*trainable=*/true);  // four ConvBnAct, the downsample's too
  ps.finalize(Device::CPU, DType::F32);
  randomize_params(ps, 5);
  ps.zero_grads();
  Ctx ctx;
  std::mt19937 gen(4);
  const std::vector<double> xv = normal_values(gen, 2 * 8 * 6 * 6), dv = normal_values(gen, 2 * 16 * 3 * 3);
  const Tensor x = Tensor::from_values(xv, Shape{2, 8, 6, 6}), dy = Tensor::from_values(dv, Shape{2, 16, 3, 3});
  std::vector<double> y[2], dx[2];
  for (bool fuse : {false, true}) {
    set_conv_bn_fusion(fuse);
    const int64_t fused_before = conv_bn_fused_forwards();
    y[fuse] = down.forward(ctx, x, false).values();
    CHECK(conv_bn_fused_forwards() - fused_before == (fuse ? 4 : 0));
    dx[fuse] = down.backward(ctx, dy, /*param_grads=*/false).values();
  }
  CHECK(y[1] == y[0]);    // conv2d_bn_act equals its ops bit for bit on the CPU
  CHECK(dx[1] == dx[0]);  // and conv2d_dgrad_bn_act its two
  set_conv_bn_fusion(true);  // (not the default: SAL_FUSE_CONV_BN=0 in the environment would turn it off)
  down.forward(ctx, x, false);
  CHECK_THROWS_WITH_AS(down.backward(ctx, dy, /*param_grads=*/true),
                       doctest::Contains("parameter gradients after an inference forward"), Error);
  reset_conv_bn_fusion();
}

TEST_CASE("cifar_resnet8 input gradient matches finite differences (F64)") {
  SingleThreaded one_thread;
  // A depth-8 CIFAR ResNet (one block per stage, both option-A shortcuts) with seeded random
  // weights, in double precision; 2 images of 16x16 keep the many forwards cheap.
  CifarResNet net(cifar_spec("cifar_resnet8"), Device::CPU, 8, DType::F64);
  randomize_params(net.params(), 11);
  std::mt19937 gen(5);
  const Shape xs{2, 3, 16, 16};
  // L = sum(w * logits): every logit contributes
  const std::vector<double> xv = normal_values(gen, static_cast<size_t>(xs.numel())), wv = normal_values(gen, 2 * 10);
  Ctx ctx;
  auto loss = [&](const std::vector<double>& in) {
    return dot(net.forward(ctx, Tensor::from_values(in, xs, DType::F64)).values(), wv);
  };
  const double l0 = loss(xv);
  CHECK(std::isfinite(l0));
  const std::vector<double> g = net.backward_input(ctx, Tensor::from_values(wv, Shape{2, 10}, DType::F64)).values();
  double scale = 0;
  for (double v : g) scale = std::max(scale, std::abs(v));
  REQUIRE(scale > 0);

  const double h = 1e-6;
  // Coordinates, chosen at random, and a directional derivative along a random +-1 vector
  // that moves every input element at once.
  std::uniform_int_distribution<size_t> pick(0, xv.size() - 1);
  double worst = 0;
  std::vector<std::pair<size_t, double>> fds;
  for (int t = 0; t < 64; ++t) {
    const size_t i = pick(gen);
    std::vector<double> xp = xv, xm = xv;
    xp[i] += h;
    xm[i] -= h;
    const double fd = (loss(xp) - loss(xm)) / (2 * h);
    fds.emplace_back(i, fd);
    worst = std::max(worst, std::abs(fd - g[i]));
  }
  std::vector<double> v(xv.size()), xp = xv, xm = xv;
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = gen() & 1 ? 1.0 : -1.0;
    xp[i] += h * v[i];
    xm[i] -= h * v[i];
  }
  const double dir_fd = (loss(xp) - loss(xm)) / (2 * h), dir_an = dot(g, v);
  const double dir_err = std::abs(dir_fd - dir_an) / std::max(1.0, std::abs(dir_an));
  MESSAGE("cifar_resnet8 F64: per-coordinate max error ", worst / scale, " (max |g| ", scale,
          "), directional relative error ", dir_err, " (", dir_an, ")");
  CHECK(worst / scale < 1e-6);
  CHECK(dir_err < 1e-6);

  // The check discriminates: a gradient 1% off fails the same threshold.
  double worst_bad = 0;
  for (auto [i, fd] : fds) worst_bad = std::max(worst_bad, std::abs(fd - g[i] * 1.01));
  CHECK(worst_bad / scale > 1e-6);
}

TEST_CASE("resnet50 input gradient matches finite differences (F64)") {
  SingleThreaded one_thread;
  // The golden weights (BN calibrated by PyTorch, so activations stay O(1) through 16 blocks)
  // in a double-precision ResNet-50; 1 image of 64x64 (layer4 at 2x2) keeps the forwards cheap.
  const std::string wpath = golden_path("resnet50.weights.safetensors");
  REQUIRE_MESSAGE(fs::exists(wpath), wpath, " is missing: run tools/make_golden_fixtures.py (ctest does)");
  SafeTensorsFile file(wpath);
  ResNet50 net(InputSpec::from_metadata(file), Device::CPU, DType::F64);
  net.load(file);  // F32 file -> F64 parameters
  CHECK(net.params().value("fc.weight").dtype() == DType::F64);

  std::mt19937 gen(9);
  const Shape xs{1, 3, 64, 64};
  const std::vector<double> xv = normal_values(gen, static_cast<size_t>(xs.numel())), wv = normal_values(gen, 1000);
  Ctx ctx;
  auto loss = [&](const std::vector<double>& in) {
    return dot(net.forward(ctx, Tensor::from_values(in, xs, DType::F64)).values(), wv);
  };
  CHECK(std::isfinite(loss(xv)));
  const std::vector<double> g = net.backward_input(ctx, Tensor::from_values(wv, Shape{1, 1000}, DType::F64)).values();
  double scale = 0;
  for (double v : g) scale = std::max(scale, std::abs(v));
  REQUIRE(scale > 0);

  const double h = 1e-6;
  std::uniform_int_distribution<size_t> pick(0, xv.size() - 1);
  double worst = 0;
  for (int t = 0; t < 6; ++t) {
    const size_t i = pick(gen);
    std::vector<double> xp = xv, xm = xv;
    xp[i] += h;
    xm[i] -= h;
    worst = std::max(worst, std::abs((loss(xp) - loss(xm)) / (2 * h) - g[i]));
  }
  // Moving all inputs at once moves ~10^5 pre-activations and max-pool windows: with a step of
  // 1e-6 some of them cross a ReLU kink or an argmax switch, which FD cannot see through, and
  // below 1e-9 rounding dominates. Measured relative errors on 2 images for steps 1e-6, 1e-7,
  // 3e-8, 1e-8, 3e-9, 1e-9, 1e-10: 3.7e-2, 1.5e-4, 1.2e-7, 3.9e-10, 9.0e-7, 2.7e-6, 6.3e-5.
  // Hence step 1e-8 and a bound of 1e-5 (a wrong block gradient gives errors of order 1).
  const double hd = 1e-8;
  std::vector<double> v(xv.size()), xp = xv, xm = xv;
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = gen() & 1 ? 1.0 : -1.0;
    xp[i] += hd * v[i];
    xm[i] -= hd * v[i];
  }
  const double dir_fd = (loss(xp) - loss(xm)) / (2 * hd), dir_an = dot(g, v);
  const double dir_err = std::abs(dir_fd - dir_an) / std::max(1.0, std::abs(dir_an));
  MESSAGE("resnet50 F64: per-coordinate max error ", worst / scale, " (max |g| ", scale,
          "), directional relative error ", dir_err, " (", dir_an, ")");
  CHECK(worst / scale < 1e-6);
  CHECK(dir_err < 1e-5);
}

TEST_CASE("loading a wrong weights file fails with an error that names the problem") {
  const std::string src = source_path("weights/cifar_resnet20.safetensors");
  REQUIRE_MESSAGE(fs::exists(src), src, " is missing");

  SUBCASE("the shipped CIFAR ResNet20 loads and predicts finite logits") {
    std::unique_ptr<Network> net = load_network(src);
    CHECK(net->input_spec().num_classes == 10);
    Ctx ctx;
    Tensor x = Tensor::zeros(Shape{1, 3, 32, 32});
    x.fill(0.5);
    for (double v : net->forward(ctx, net->normalize(ctx, x)).values()) CHECK(std::isfinite(v));
  }
  SUBCASE("one tensor of the wrong shape: the error names it, its shape and the expected one") {
    TempFile tmp("wrong_shape.safetensors");
    rewrite(src, tmp.path, "layer2.1.conv2.weight", Tensor::zeros(Shape{32, 16, 3, 3}));
    const std::string msg = error_of([&] { load_network(tmp.path); });
    MESSAGE(msg);
    CHECK(msg.find(tmp.path) != std::string::npos);
    CHECK(msg.find("'layer2.1.conv2.weight' has shape [32,16,3,3], expected [32,32,3,3]") != std::string::npos);
  }
  SUBCASE("a missing tensor is named") {
    TempFile tmp("missing.safetensors");
    rewrite(src, tmp.path, "linear.bias", Tensor());
    const std::string msg = error_of([&] { load_network(tmp.path); });
    CHECK(msg.find("missing tensor 'linear.bias'") != std::string::npos);
  }
  SUBCASE("a file of another arch is refused") {
    // A ResNet20 asked to load the ResNet56 file: the arch metadata differs.
    std::unique_ptr<Network> r20 = make_cifar_resnet(cifar_spec("cifar_resnet20"), Device::CPU, 20);
    const std::string r56 = source_path("weights/cifar_resnet56.safetensors");
    std::string msg = error_of([&] { r20->load(SafeTensorsFile(r56)); });
    MESSAGE(msg);
    CHECK(msg.find("holds arch 'cifar_resnet56'") != std::string::npos);
    CHECK(msg.find("'cifar_resnet20'") != std::string::npos);
    // A ResNet-50 asked to load the CIFAR file.
    InputSpec spec;
    spec.arch = "resnet50";
    spec.num_classes = 1000;
    std::unique_ptr<Network> r50 = make_resnet50(spec, Device::CPU);
    msg = error_of([&] { r50->load(SafeTensorsFile(src)); });
    CHECK(msg.find("holds arch 'cifar_resnet20'") != std::string::npos);
    // The right tensors under another arch name are refused too (the file claims ResNet56).
    TempFile tmp("renamed_arch.safetensors");
    SafeTensorsFile in(src);
    std::map<std::string, std::string> meta = in.metadata();
    meta["arch"] = "cifar_resnet56";
    rewrite(src, tmp.path, "", Tensor(), &meta);
    msg = error_of([&] {
      make_cifar_resnet(cifar_spec("cifar_resnet20"), Device::CPU, 20)->load(SafeTensorsFile(tmp.path));
    });
    CHECK(msg.find("holds arch 'cifar_resnet56'") != std::string::npos);
  }
}

TEST_CASE("frozen conv + BN layers fused (conv2d_bn_act) give the unfused results bit for bit on the CPU") {
  // ResNet-50 (bottleneck shortcut sums, downsample convs without activation) and MobileNet v1 (ReLU6,
  // depthwise, TF "same" padding): logits, features and input gradient with the fusion off and on.
  for (const std::string& path :
       {golden_path("resnet50.weights.safetensors"), source_path("weights/mobilenet_v1_0.75_224.safetensors")}) {
    INFO(path);
    std::unique_ptr<Network> net = load_network(path);
    const int64_t size = net->input_spec().arch == "resnet50" ? 64 : 96;
    std::mt19937 gen(3);
    std::uniform_real_distribution<double> u(-1, 1);
    std::vector<double> xv(static_cast<size_t>(2 * 3 * size * size));
    for (double& v : xv) v = u(gen);
    const Tensor x = Tensor::from_values(xv, Shape{2, 3, size, size});
    std::vector<std::vector<double>> runs[2];
    for (bool fused : {false, true}) {
      set_conv_bn_fusion(fused);
      Ctx ctx;
      const int64_t before = conv_bn_fused_forwards();
      const Tensor logits = net->forward(ctx, x);
      // Every ConvBnAct of these frozen networks takes the fused path, and only when asked to.
      CHECK((conv_bn_fused_forwards() - before) == (fused ? (size == 64 ? 53 : 27) : 0));
      std::vector<std::vector<double>>& r = runs[fused];
      r.push_back(logits.values());
      for (const Tensor& f : net->features()) r.push_back(f.values());
      r.push_back(net->backward_input(ctx, golden_dlogits(2, logits.dim(1))).values());
    }
    reset_conv_bn_fusion();
    REQUIRE(runs[0].size() == runs[1].size());
    for (size_t i = 0; i < runs[0].size(); ++i) CHECK(runs[0][i] == runs[1][i]);
  }
}
