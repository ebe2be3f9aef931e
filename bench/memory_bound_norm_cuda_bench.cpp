// CUDA memory-bound kernels of the normalisation / pooling / resampling / blur families at the
// shapes the models use, in GB/s and as a fraction of the card's peak HBM bandwidth.
//
// Validate, then time: every benchmark first runs the op once on the GPU and once on the CPU
// (the oracle) on the same random inputs and compares all outputs; a mismatch skips the
// benchmark with an error. Times come from CUDA events around the op on the device's stream
// (UseManualTime); outputs and temporaries come from a CUDA arena reset every iteration, as in
// a training step, so no iteration allocates.
//
// GB/s counts the bytes each op must move at minimum (compulsory traffic, not what the kernels
// happen to move): blur and pooling and resizing read the input once and write the output once
// (the blur's intermediate image is not counted); the fused BN epilogue reads x and the residual
// and writes y; BN training reads x twice (statistics, then normalisation: 205 MB per tensor does
// not stay on chip) and writes y; its backward reads dy and x twice and writes dx. Peak HBM
// bandwidth = 2 * memory clock * bus width / 8, from cudaDeviceGetAttribute, printed at start.
//
// Note: the 55-tap blur does 110 FMAs per pixel against 8 compulsory bytes, more arithmetic per
// byte than an H100 has (about 10 FMA/byte), so it is compute-bound and its HBM fraction is low
// by nature; its GFLOP/s (2 flops per FMA) is reported beside it.
//
//   memory_bound_norm_cuda_bench --benchmark_min_time=0.2s
//   memory_bound_norm_cuda_bench --benchmark_filter=blur --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_main.h"
#include "bench/cuda_bench_util.h"
#include "engine/arena.h"
#include "engine/ops.h"
#ifdef SAL_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/device.h"
#endif

using namespace sal;

namespace {

#ifdef SAL_WITH_CUDA

using bench::max_rel;
using bench::random_tensor;

int64_t bytes_of(const Shape& s) { return s.numel() * 4; }

struct Card {
  CudaDevice* dev = nullptr;
  double peak_bytes_per_s = 0;
  std::string name;
};

// The device, created on first use; null without a CUDA device.
const Card& card() {
  static Card c = [] {
    Card k;
    if (!cuda_available()) return k;
    k.dev = new CudaDevice(0);  // lives for the whole run
    k.peak_bytes_per_s = bench::peak_hbm_bytes_per_s(0);
    k.name = k.dev->name();
    return k;
  }();
  return c;
}

// Uploads and zero fills (Tensor::to, Tensor::zeros) run on the legacy default stream, which the
// device's non-blocking stream does not wait for: settle them before the first op.
void settle() { cudaDeviceSynchronize(); }

// Compares the GPU output with the CPU oracle; skips the benchmark on a mismatch.
bool agrees(benchmark::State& state, const char* what, const Tensor& gpu, const Tensor& cpu, double tol) {
  card().dev->synchronize();  // the copy back runs on the legacy stream, which does not wait for ours
  const double e = max_rel(gpu.to(Device::CPU), cpu);
  if (e <= tol) return true;
  state.SkipWithError((std::string(what) + " differs from the CPU by " + std::to_string(e) + " (tolerance " +
                       std::to_string(tol) + ")")
                          .c_str());
  return false;
}

// Times `run` (which enqueues the op on the device's stream) with CUDA events; reports GB/s for
// `bytes` per call and the fraction of the peak HBM bandwidth.
template <class Run>
void time_it(benchmark::State& state, Arena& arena, double bytes, Run run) {
  const Card& k = card();
  cudaStream_t stream = static_cast<cudaStream_t>(k.dev->stream());
  bench::EventTimer timer;
  arena.reset();
  run();  // warm-up: the arena reaches its peak, the next reset() folds it into one block
  k.dev->synchronize();
  double seconds = 0;
  for (auto _ : state) {
    arena.reset();
    const double sec = timer.seconds(stream, run);
    state.SetIterationTime(sec);
    seconds += sec;
  }
  k.dev->synchronize();
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (seconds > 0 && k.peak_bytes_per_s > 0)
    state.counters["HBM_frac"] = bytes * static_cast<double>(state.iterations()) / seconds / k.peak_bytes_per_s;
  state.SetLabel(k.name);
}

// ---------------------------------------------------------------- gaussian blur k55 sigma 11

void BM_gaussian_blur(benchmark::State& state, bool backward) {
  const Card& k = card();
  if (!k.dev) return state.SkipWithError("no CUDA device");
  const Shape s{64, 3, 224, 224};
  const double sigma = 11;
  const int ksize = 55;
  Tensor x = random_tensor(s, 1);
  Ctx cpu(Device::CPU);
  Tensor want = backward ? gaussian_blur_backward(cpu, x, sigma, ksize) : gaussian_blur(cpu, x, sigma, ksize);
  Arena arena(Device::CUDA);
  Ctx ctx = k.dev->ctx(&arena);
  Tensor xg = x.to(Device::CUDA);
  settle();
  auto run = [&] {
    return backward ? gaussian_blur_backward(ctx, xg, sigma, ksize) : gaussian_blur(ctx, xg, sigma, ksize);
  };
  if (!agrees(state, backward ? "gaussian_blur_backward" : "gaussian_blur", run(), want, 1e-4)) return;
  time_it(state, arena, 2.0 * bytes_of(s), [&] { run(); });
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * 2 * ksize * s.numel() * 1e-9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// ---------------------------------------------------------------- batch norm

constexpr double kEps = 1e-5;

struct BnParams {
  Tensor gamma, beta, mean, var;
};

BnParams bn_params(int64_t c) {
  return BnParams{random_tensor(Shape{c}, 11, 0.5f, 1.5f), random_tensor(Shape{c}, 12), random_tensor(Shape{c}, 13),
                  random_tensor(Shape{c}, 14, 0.5f, 1.5f)};
}

BnParams to_cuda(const BnParams& p) {
  return BnParams{p.gamma.to(Device::CUDA), p.beta.to(Device::CUDA), p.mean.to(Device::CUDA), p.var.to(Device::CUDA)};
}

// ResNet's bottleneck tail: y = relu(bn3(x) + identity).
void BM_batchnorm2d_infer_act(benchmark::State& state) {
  const Card& k = card();
  if (!k.dev) return state.SkipWithError("no CUDA device");
  const Shape s{64, 256, 56, 56};
  Tensor x = random_tensor(s, 1), res = random_tensor(s, 2);
  const BnParams p = bn_params(s[1]);
  Ctx cpu(Device::CPU);
  Tensor want = batchnorm2d_infer_act(cpu, x, p.gamma, p.beta, p.mean, p.var, kEps, &res, Activation::ReLU);
  Arena arena(Device::CUDA);
  Ctx ctx = k.dev->ctx(&arena);
  Tensor xg = x.to(Device::CUDA), rg = res.to(Device::CUDA);
  const BnParams pg = to_cuda(p);
  settle();
  auto run = [&] { return batchnorm2d_infer_act(ctx, xg, pg.gamma, pg.beta, pg.mean, pg.var, kEps, &rg, Activation::ReLU); };
  if (!agrees(state, "batchnorm2d_infer_act", run(), want, 1e-4)) return;
  time_it(state, arena, 3.0 * bytes_of(s), [&] { run(); });
}

void BM_batchnorm2d_train(benchmark::State& state) {
  const Card& k = card();
  if (!k.dev) return state.SkipWithError("no CUDA device");
  const Shape s{64, 256, 56, 56};
  const Shape cs{s[1]};
  Tensor x = random_tensor(s, 1, -1.f, 3.f);
  const BnParams p = bn_params(s[1]);
  Ctx cpu(Device::CPU);
  Tensor sm = Tensor::empty(cs), si = Tensor::empty(cs);
  Tensor rm = p.mean.clone(), rv = p.var.clone();
  Tensor want = batchnorm2d_train(cpu, x, p.gamma, p.beta, kEps, 0.1, &rm, &rv, sm, si);
  Arena arena(Device::CUDA);
  Ctx ctx = k.dev->ctx(&arena);
  Tensor xg = x.to(Device::CUDA);
  const BnParams pg = to_cuda(p);
  Tensor smg = Tensor::empty(cs, DType::F32, Device::CUDA), sig = Tensor::empty(cs, DType::F32, Device::CUDA);
  Tensor rmg = p.mean.to(Device::CUDA), rvg = p.var.to(Device::CUDA);
  settle();
  auto run = [&] { return batchnorm2d_train(ctx, xg, pg.gamma, pg.beta, kEps, 0.1, &rmg, &rvg, smg, sig); };
  Tensor y = run();
  if (!agrees(state, "batchnorm2d_train y", y, want, 3e-4) ||
      !agrees(state, "batchnorm2d_train save_mean", smg, sm, 1e-5) ||
      !agrees(state, "batchnorm2d_train save_invstd", sig, si, 1e-5) ||
      !agrees(state, "batchnorm2d_train running_mean", rmg, rm, 1e-5) ||
      !agrees(state, "batchnorm2d_train running_var", rvg, rv, 1e-5))
    return;
  time_it(state, arena, 3.0 * bytes_of(s), [&] { run(); });
}

void BM_batchnorm2d_train_backward(benchmark::State& state) {
  const Card& k = card();
  if (!k.dev) return state.SkipWithError("no CUDA device");
  const Shape s{64, 256, 56, 56};
  const Shape cs{s[1]};
  Tensor x = random_tensor(s, 1, -1.f, 3.f), dy = random_tensor(s, 3);
  const BnParams p = bn_params(s[1]);
  Ctx cpu(Device::CPU);
  Tensor sm = Tensor::empty(cs), si = Tensor::empty(cs);
  batchnorm2d_train(cpu, x, p.gamma, p.beta, kEps, 0.1, nullptr, nullptr, sm, si);
  Tensor dg = Tensor::zeros(cs), db = Tensor::zeros(cs);
  Tensor want = batchnorm2d_train_backward(cpu, dy, x, p.gamma, sm, si, &dg, &db);
  Arena arena(Device::CUDA);
  Ctx ctx = k.dev->ctx(&arena);
  Tensor xg = x.to(Device::CUDA), dyg = dy.to(Device::CUDA), gg = p.gamma.to(Device::CUDA);
  Tensor smg = sm.to(Device::CUDA), sig = si.to(Device::CUDA);  // the CPU's statistics: same inputs
  Tensor dgg = Tensor::zeros(cs, DType::F32, Device::CUDA), dbg = Tensor::zeros(cs, DType::F32, Device::CUDA);
  settle();
  auto run = [&] { return batchnorm2d_train_backward(ctx, dyg, xg, gg, smg, sig, &dgg, &dbg); };
  Tensor dx = run();
  if (!agrees(state, "batchnorm2d_train_backward dx", dx, want, 3e-4) ||
      !agrees(state, "batchnorm2d_train_backward dgamma", dgg, dg, 3e-4) ||
      !agrees(state, "batchnorm2d_train_backward dbeta", dbg, db, 3e-4))
    return;
  time_it(state, arena, 5.0 * bytes_of(s), [&] { run(); });  // dgamma / dbeta keep accumulating: harmless
}

// ---------------------------------------------------------------- pooling and resizing

void BM_max_pool2d(benchmark::State& state) {
  const Card& k = card();
  if (!k.dev) return state.SkipWithError("no CUDA device");
  const Shape s{64, 64, 112, 112};
  const Pool2dArgs a = Pool2dArgs::make(3, 2, 1);
  Tensor x = random_tensor(s, 1);
  Ctx cpu(Device::CPU);
  Tensor want = max_pool2d(cpu, x, a);
  Arena arena(Device::CUDA);
  Ctx ctx = k.dev->ctx(&arena);
  Tensor xg = x.to(Device::CUDA);
  settle();
  if (!agrees(state, "max_pool2d", max_pool2d(ctx, xg, a), want, 0)) return;
  time_it(state, arena, double(bytes_of(s) + bytes_of(want.shape())), [&] { max_pool2d(ctx, xg, a); });
}

void BM_resize_bilinear(benchmark::State& state) {
  const Card& k = card();
  if (!k.dev) return state.SkipWithError("no CUDA device");
  const Shape s{64, 1, 56, 56};
  Tensor x = random_tensor(s, 1);
  Ctx cpu(Device::CPU);
  Tensor want = resize_bilinear(cpu, x, 224, 224);
  Arena arena(Device::CUDA);
  Ctx ctx = k.dev->ctx(&arena);
  Tensor xg = x.to(Device::CUDA);
  settle();
  if (!agrees(state, "resize_bilinear", resize_bilinear(ctx, xg, 224, 224), want, 1e-6)) return;
  time_it(state, arena, double(bytes_of(s) + bytes_of(want.shape())), [&] { resize_bilinear(ctx, xg, 224, 224); });
}

void print_peak() {
  const Card& k = card();
  if (!k.dev) {
    std::printf("no CUDA device: every benchmark is skipped\n");
    return;
  }
  std::printf("%s: peak HBM bandwidth %.1f GB/s (2 * memory clock * bus width / 8)\n", k.name.c_str(),
              k.peak_bytes_per_s * 1e-9);
}

#else  // a build without CUDA

void BM_gaussian_blur(benchmark::State& state, bool) { state.SkipWithError("no CUDA device"); }
void BM_batchnorm2d_infer_act(benchmark::State& state) { state.SkipWithError("no CUDA device"); }
void BM_batchnorm2d_train(benchmark::State& state) { state.SkipWithError("no CUDA device"); }
void BM_batchnorm2d_train_backward(benchmark::State& state) { state.SkipWithError("no CUDA device"); }
void BM_max_pool2d(benchmark::State& state) { state.SkipWithError("no CUDA device"); }
void BM_resize_bilinear(benchmark::State& state) { state.SkipWithError("no CUDA device"); }
void print_peak() { std::printf("built without CUDA: every benchmark is skipped\n"); }

#endif

const bool registered = [] {
  auto common = [](auto* b) { b->UseManualTime()->Unit(benchmark::kMicrosecond); };
  common(benchmark::RegisterBenchmark("gaussian_blur/k55_s11/64x3x224x224", BM_gaussian_blur, false));
  common(benchmark::RegisterBenchmark("gaussian_blur_backward/k55_s11/64x3x224x224", BM_gaussian_blur, true));
  common(benchmark::RegisterBenchmark("batchnorm2d_infer_act/residual_relu/64x256x56x56", BM_batchnorm2d_infer_act));
  common(benchmark::RegisterBenchmark("batchnorm2d_train/64x256x56x56", BM_batchnorm2d_train));
  common(benchmark::RegisterBenchmark("batchnorm2d_train_backward/64x256x56x56", BM_batchnorm2d_train_backward));
  common(benchmark::RegisterBenchmark("max_pool2d/k3s2p1/64x64x112x112", BM_max_pool2d));
  common(benchmark::RegisterBenchmark("resize_bilinear/56_to_224/64x1", BM_resize_bilinear));
  return true;
}();

}  // namespace

int main(int argc, char** argv) { return sal::bench::run_benchmarks(argc, argv, print_peak); }
