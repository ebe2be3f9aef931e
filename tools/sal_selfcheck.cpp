// sal_selfcheck: the engine's self-check, the README's main job until the trained masker lands.
//   1. what this build has (CUDA backend, GPUs, OpenMP threads, BLAS);
//   2. a small CNN (conv-BN-ReLU-maxpool-conv-ReLU-GAP-linear) trained with Adam through the op
//      API on synthetic data (which quadrant holds a bright square), forward and backward by hand,
//      temporaries from a workspace arena that must stop growing after the first step;
//   3. the trained parameters saved to safetensors (atomically), loaded back, same predictions.
// Exits non-zero when any check fails.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include <unistd.h>

#include "engine/ops.h"
#include "engine/param_io.h"
#include "engine/params.h"
#include "engine/safetensors.h"
#include "optim/adam.h"

using namespace sal;

namespace {

constexpr int kBatch = 32, kSize = 12, kClasses = 4;

struct Net {
  ParamStore ps;
  ParamRef w1, g1, b1, rm1, rv1, w2, b2, fw, fb;
  Net() {
    w1 = ps.add("conv1.weight", Shape{8, 1, 3, 3});
    g1 = ps.add("bn1.weight", Shape{8});
    b1 = ps.add("bn1.bias", Shape{8});
    rm1 = ps.add("bn1.running_mean", Shape{8}, false);
    rv1 = ps.add("bn1.running_var", Shape{8}, false);
    w2 = ps.add("conv2.weight", Shape{16, 8, 3, 3});
    b2 = ps.add("conv2.bias", Shape{16});
    fw = ps.add("fc.weight", Shape{kClasses, 16});
    fb = ps.add("fc.bias", Shape{kClasses});
    ps.finalize(Device::CPU);
    std::mt19937_64 rng(1);
    auto init = [&](ParamRef p, double scale) {
      std::normal_distribution<float> nd(0, static_cast<float>(scale));
      Tensor t = ps.value(p);
      for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
    };
    init(w1, 0.5);
    init(w2, 0.15);
    init(fw, 0.3);
    ps.value(g1).fill(1);
    ps.value(rv1).fill(1);
  }

  // Returns the logits; with train=true also runs the backward of the mean cross-entropy.
  Tensor step(Ctx& ctx, const Tensor& x, const Tensor& labels, bool train, double* loss_out) {
    Conv2dArgs same = Conv2dArgs::make(1, 1);
    Tensor w1v = ps.value(w1), g1v = ps.value(g1), b1v = ps.value(b1), rm = ps.value(rm1), rv = ps.value(rv1);
    Tensor c1 = conv2d(ctx, x, w1v, nullptr, same);
    Tensor mean = ctx.alloc(Shape{8}, DType::F32), invstd = ctx.alloc(Shape{8}, DType::F32);
    Tensor n1 = train ? batchnorm2d_train(ctx, c1, g1v, b1v, 1e-5, 0.1, &rm, &rv, mean, invstd)
                      : batchnorm2d_infer(ctx, c1, g1v, b1v, rm, rv, 1e-5);
    Tensor r1 = relu(ctx, n1);
    Pool2dArgs pool = Pool2dArgs::make(2, 2);
    Tensor p1 = max_pool2d(ctx, r1, pool);
    Tensor b2v = ps.value(b2);
    Tensor c2 = conv2d(ctx, p1, ps.value(w2), &b2v, same);
    Tensor r2 = relu(ctx, c2);
    Tensor gap = global_avg_pool(ctx, r2);
    Tensor feat = gap.reshape(Shape{x.dim(0), 16});
    Tensor fbv = ps.value(fb);
    Tensor logits = linear(ctx, feat, ps.value(fw), &fbv);
    Tensor losses = cross_entropy(ctx, logits, labels);
    if (loss_out) *loss_out = mean_of(ctx, losses);
    if (!train) return logits;

    // Backward, by hand, in reverse order. Parameter gradients accumulate into the flat buffer.
    Tensor dloss = ctx.alloc(Shape{x.dim(0)}, DType::F32);
    dloss.fill(1.0 / static_cast<double>(x.dim(0)));
    Tensor dlogits = cross_entropy_backward(ctx, dloss, logits, labels);
    Tensor dfw = ps.grad(fw), dfb = ps.grad(fb);
    linear_wgrad(ctx, dlogits, feat, dfw, &dfb);
    Tensor dfeat = linear_dgrad(ctx, dlogits, ps.value(fw));
    Tensor dr2 = global_avg_pool_backward(ctx, dfeat.reshape(gap.shape()), r2.shape());
    Tensor dc2 = relu_backward(ctx, dr2, r2);
    Tensor dw2 = ps.grad(w2), db2 = ps.grad(b2);
    conv2d_wgrad(ctx, dc2, p1, dw2, &db2, same);
    Tensor dp1 = conv2d_dgrad(ctx, dc2, ps.value(w2), p1.shape(), same);
    Tensor dr1 = max_pool2d_backward(ctx, dp1, r1, pool);
    Tensor dn1 = relu_backward(ctx, dr1, r1);
    Tensor dg1 = ps.grad(g1), db1 = ps.grad(b1);
    Tensor dc1 = batchnorm2d_train_backward(ctx, dn1, c1, g1v, mean, invstd, &dg1, &db1);
    Tensor dw1 = ps.grad(w1);
    conv2d_wgrad(ctx, dc1, x, dw1, nullptr, same);
    return logits;
  }

  static double mean_of(Ctx& ctx, const Tensor& t) { return mean(ctx, t).item(); }
};

// Images with a bright 4x4 square in one quadrant (the label) on a noisy background.
void make_batch(std::mt19937_64& rng, Tensor& x, Tensor& labels) {
  std::normal_distribution<float> noise(0, 0.3f);
  std::uniform_int_distribution<int> cls(0, kClasses - 1), jitter(0, 2);
  float* px = x.data<float>();
  for (int n = 0; n < kBatch; ++n) {
    int c = cls(rng);
    labels.data<int32_t>()[n] = c;
    int oy = (c / 2) * (kSize / 2) + jitter(rng), ox = (c % 2) * (kSize / 2) + jitter(rng);
    for (int i = 0; i < kSize; ++i)
      for (int j = 0; j < kSize; ++j) {
        bool in = i >= oy && i < oy + 4 && j >= ox && j < ox + 4;
        px[(n * kSize + i) * kSize + j] = noise(rng) + (in ? 1.5f : 0.f);
      }
  }
}

double accuracy(const Tensor& logits, const Tensor& labels) {
  std::vector<double> v = logits.values();
  int correct = 0;
  for (int n = 0; n < logits.dim(0); ++n) {
    int best = 0;
    for (int k = 1; k < kClasses; ++k)
      if (v[static_cast<size_t>(n * kClasses + k)] > v[static_cast<size_t>(n * kClasses + best)]) best = k;
    correct += best == labels.data<int32_t>()[n];
  }
  return static_cast<double>(correct) / static_cast<double>(logits.dim(0));
}

bool report(bool ok, const std::string& what) {
  std::printf("[%s] %s\n", ok ? " ok " : "FAIL", what.c_str());
  return ok;
}

}  // namespace

int main() {
  bool ok = true;
  std::printf("saliency engine self-check\n");
#ifdef SAL_WITH_CUDA
  std::printf("  CUDA backend: built; %s\n", cuda_available() ? "a CUDA device is present" : "no CUDA device here");
#else
  std::printf("  CUDA backend: not built (no nvcc at configure time)\n");
#endif
  std::printf("  OpenMP threads: %d\n", omp_get_max_threads());

  try {
    Net net;
    Arena arena(Device::CPU);
    Ctx ctx(Device::CPU, &arena);
    Adam opt(net.ps, AdamConfig{.lr = 0.01});
    std::mt19937_64 rng(42);
    Tensor x = Tensor::empty(Shape{kBatch, 1, kSize, kSize}), labels = Tensor::empty(Shape{kBatch}, DType::I32);

    const int steps = 150;
    double first_loss = 0, last_loss = 0;
    size_t growths_after_first = 0;
    auto t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < steps; ++s) {
      make_batch(rng, x, labels);
      net.ps.zero_grads();
      double loss = 0;
      net.step(ctx, x, labels, true, &loss);
      opt.step(ctx);
      arena.reset();
      if (s == 0) {
        first_loss = loss;
        growths_after_first = arena.growths();
      }
      last_loss = loss;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("  trained %d steps of batch %d in %.2f s (%.0f images/s): loss %.3f -> %.3f\n", steps, kBatch, secs,
                steps * kBatch / secs, first_loss, last_loss);
    ok &= report(last_loss < 0.5 * first_loss, "training loss at least halves");
    ok &= report(arena.growths() == growths_after_first,
                 cat("workspace arena stops growing after the first step (", arena.capacity() / 1024, " KiB)"));

    // Held-out accuracy with running statistics.
    make_batch(rng, x, labels);
    Tensor logits = net.step(ctx, x, labels, false, nullptr).clone();
    double acc = accuracy(logits, labels);
    ok &= report(acc >= 0.9, cat("held-out accuracy ", acc * 100, "% (>= 90%)"));
    arena.reset();

    // Checkpoint round trip.
    auto path = std::filesystem::temp_directory_path() / cat("sal_selfcheck_", getpid(), ".safetensors");
    save_params(net.ps, path.string(), {{"producer", "sal_selfcheck"}});
    Net fresh;
    SafeTensorsFile file(path.string());
    load_params(fresh.ps, file);
    Tensor logits2 = fresh.step(ctx, x, labels, false, nullptr);
    ok &= report(logits2.values() == logits.values(), "safetensors round trip gives identical predictions");
    std::filesystem::remove(path);
  } catch (const std::exception& e) {
    ok = report(false, cat("error: ", e.what()));
  }
  std::printf("%s\n", ok ? "self-check passed" : "self-check FAILED");
  return ok ? 0 : 1;
}
