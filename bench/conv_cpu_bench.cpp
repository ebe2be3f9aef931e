// CPU conv2d forward on the distinct ResNet-50 layer shapes (batch 8, 224x224 input), in
// GFLOP/s (2*N*K*(C/g)*R*S*P*Q per call), each next to a plain OpenBLAS sgemm of the same
// GEMM size (M = K, N = batch*P*Q, K = C*R*S, BLAS threaded its own way) so the ratio of the
// conv to raw sgemm is visible.
//
// Validate, then time: before timing, a sample of output elements of the engine's conv is
// compared with a direct loop computed here; a mismatch skips the benchmark with an error.
// Outputs come from a workspace arena that is reset every iteration, as in a training step.
//
// Also the direct 3x3 kernel's shapes (engine/cpu/conv_direct.h), forward and input gradient, each through
// Winograd F(2x2, 3x3) where it applies (engine/cpu/conv_winograd.h; the default), the direct kernel and the
// im2col + GEMM path in the same run (direct3x3/<layer>/<fwd|dgrad>/<winograd|direct|gemm>; the label names
// the path that ran): CIFAR ResNet-20's 3x3 layers at batch 64 (the black box of every CIFAR training step;
// stride 1 and its two stride-2 layers) and ResNet-50's 3x3 layers up to 256 channels at batch 8 (the
// 256-channel one and the 128-channel stride-2 one stay on GEMM). Their check before timing: sampled outputs
// against the direct loop, and for the input gradient the adjoint identity <conv(x), dy> = <x, dgrad(dy)> in
// double.
//
// And the layers with 7x7 outputs, whose GEMMs have 49 columns per image, through the narrow GEMM
// (engine/cpu/gemm_narrow.h; the default) and through BLAS in the same run (narrow/<layer>/b<batch>/<narrow|blas>):
// ResNet-50's layer 4 and the MobileNet masker's 7x7 layers (its encoder's last pointwise convs and the
// decoder's 768 -> 1024 3x3), at batch 1 (a mask's latency) and 8 (a 1x1 conv still runs one image at a time),
// and layers on 6x6 to 3x3 planes at batch 1.
//
//   conv_cpu_bench --benchmark_min_time=0.05 [--benchmark_filter=l1_]
//   conv_cpu_bench --benchmark_min_time=0.5 --benchmark_filter=direct3x3/
//   conv_cpu_bench --benchmark_min_time=0.05 --benchmark_repetitions=5 --benchmark_report_aggregates_only
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bench/resnet50_conv_shapes.h"
#include "engine/arena.h"
#include "engine/cpu/conv_direct.h"
#include "engine/cpu/conv_winograd.h"
#include "engine/cpu/gemm_narrow.h"
#include "engine/ops.h"

using namespace sal;

namespace {

constexpr int kBatch = 8;

using Layer = bench::ConvLayer;
using bench::conv_flops;
using bench::out_size;
constexpr const auto& kLayers = bench::kResNet50ConvLayers;

void fill_random(Tensor& t, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(rng);
}

// Direct-loop value of one output element, in double.
double direct_output(const Layer& l, const float* x, const float* w, int n, int k, int p, int q) {
  double acc = 0;
  for (int c = 0; c < l.c; ++c)
    for (int r = 0; r < l.r; ++r)
      for (int s = 0; s < l.r; ++s) {
        const int h = p * l.stride - l.pad + r, ww = q * l.stride - l.pad + s;
        if (h < 0 || h >= l.h || ww < 0 || ww >= l.h) continue;
        acc += double(x[((int64_t(n) * l.c + c) * l.h + h) * l.h + ww]) * w[((int64_t(k) * l.c + c) * l.r + r) * l.r + s];
      }
  return acc;
}

// The largest relative error of `samples` sampled elements of y = conv(x, w) (batch `batch`) against
// direct_output.
double worst_sampled_error(const Layer& l, int batch, const Tensor& x, const Tensor& w, const Tensor& y, int samples) {
  const int P = out_size(l);
  std::mt19937 rng(3);
  double worst = 0;
  for (int i = 0; i < samples; ++i) {
    const int n = int(rng() % batch), k = int(rng() % l.k), p = int(rng() % P), q = int(rng() % P);
    const double want = direct_output(l, x.data<float>(), w.data<float>(), n, k, p, q);
    const double got = y.data<float>()[((int64_t(n) * l.k + k) * P + p) * P + q];
    worst = std::max(worst, std::abs(got - want) / (1 + std::abs(want)));
  }
  return worst;
}

// Times conv2d of layer l at the given batch (validated first against the direct loop on `samples` outputs;
// a mismatch skips the benchmark with an error) and reports GFLOP/s.
void time_conv2d(benchmark::State& state, const Layer& l, int batch, int samples) {
  Tensor x = Tensor::empty(Shape{batch, l.c, l.h, l.h});
  Tensor w = Tensor::empty(Shape{l.k, l.c, l.r, l.r});
  fill_random(x, 1);
  fill_random(w, 2);
  // Keep outputs O(1): scale the weights by 1/sqrt(fan-in).
  const float sc = 1.f / std::sqrt(float(l.c * l.r * l.r));
  for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] *= sc;
  const Conv2dArgs a = Conv2dArgs::make(l.stride, l.pad);
  Arena arena(Device::CPU);
  Ctx ctx(Device::CPU, &arena);

  {  // validate
    Tensor y = conv2d(ctx, x, w, nullptr, a);
    const double worst = worst_sampled_error(l, batch, x, w, y, samples);
    if (!(worst < 1e-4)) {
      state.SkipWithError(("conv2d output differs from the direct loop by " + std::to_string(worst)).c_str());
      return;
    }
    arena.reset();
  }
  for (auto _ : state) {
    arena.reset();
    Tensor y = conv2d(ctx, x, w, nullptr, a);
    benchmark::DoNotOptimize(y.raw());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(conv_flops(l, batch) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_conv2d(benchmark::State& state, Layer l) {
  time_conv2d(state, l, kBatch, 24);
  state.SetLabel("threads=" + std::to_string(omp_get_max_threads()));
}

// The same GEMM size as the whole conv: [K, C*R*S] x [C*R*S, batch*P*Q], OpenBLAS's own threads.
void BM_sgemm(benchmark::State& state, Layer l) {
  const int P = out_size(l);
  const int M = l.k, N = kBatch * P * P, K = l.c * l.r * l.r;
  Tensor a = Tensor::empty(Shape{M, K}), b = Tensor::empty(Shape{K, N}), c = Tensor::empty(Shape{M, N});
  fill_random(a, 4);
  fill_random(b, 5);
  // The engine keeps OpenBLAS single-threaded (it parallelises with OpenMP); the reference
  // gets all cores through OpenBLAS's threads, then the engine's setting is restored.
  openblas_set_num_threads(omp_get_max_threads());
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.f, a.data<float>(), K, b.data<float>(), N, 0.f,
                c.data<float>(), N);
    benchmark::ClobberMemory();
  }
  openblas_set_num_threads(1);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * M * N * K * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel("M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
}

// A layer with the batch it is timed at.
struct BatchedLayer {
  Layer l;
  int batch;
};

// The direct kernel's comparison shapes with their batch: CIFAR ResNet-20's distinct 3x3 layers (16/32/64
// channels at 32/16/8 pixels; the stem, 3 -> 16, has too few channels) at 64, ResNet-50's 3x3 at 8, and
// between them images of 128 KB to 1.2 MB per input (where the AVX2 kernel's limit was measured: see
// direct3x3_applies).
constexpr BatchedLayer kDirectCases[] = {
    {{"mid_3x3_32to32_32", 32, 32, 3, 1, 1, 32}, 16},
    {{"mid_3x3_16to16_56", 16, 16, 3, 1, 1, 56}, kBatch},
    {{"mid_3x3_64to64_28", 64, 64, 3, 1, 1, 28}, kBatch},
    {{"mid_3x3_24to24_112", 24, 24, 3, 1, 1, 112}, kBatch},
    {{"cifar_3x3_16to16_32", 16, 16, 3, 1, 1, 32}, 64},
    {{"cifar_3x3_32to32_16", 32, 32, 3, 1, 1, 16}, 64},
    {{"cifar_3x3_64to64_8", 64, 64, 3, 1, 1, 8}, 64},
    {{"cifar_3x3s2_16to32_32to16", 16, 32, 3, 2, 1, 32}, 64},
    {{"cifar_3x3s2_32to64_16to8", 32, 64, 3, 2, 1, 16}, 64},
    {{"r50_l1_3x3_64to64_56", 64, 64, 3, 1, 1, 56}, kBatch},
    {{"r50_l2_3x3s2_128to128_56to28", 128, 128, 3, 2, 1, 56}, kBatch},
    {{"r50_l2_3x3_128to128_28", 128, 128, 3, 1, 1, 28}, kBatch},
    {{"r50_l3_3x3_256to256_14", 256, 256, 3, 1, 1, 14}, kBatch},
};

// Which path the benchmark allows: Winograd where it applies (else the direct kernel: the default), the
// direct kernel without Winograd, or neither (im2col + GEMM).
enum class Path { winograd, direct, gemm };

// The forward (dgrad false) or the input gradient of one layer, through the given path.
void BM_direct3x3(benchmark::State& state, BatchedLayer dc, bool dgrad, Path path) {
  const Layer& l = dc.l;
  const int batch = dc.batch;
  const cpu::Direct3x3Switch use_direct(path != Path::gemm);
  const cpu::WinogradSwitch use_winograd(path == Path::winograd);
  const int P = out_size(l);
  Tensor x = Tensor::empty(Shape{batch, l.c, l.h, l.h}), w = Tensor::empty(Shape{l.k, l.c, l.r, l.r});
  Tensor dy = Tensor::empty(Shape{batch, l.k, P, P});
  fill_random(x, 1);
  fill_random(w, 2);
  fill_random(dy, 3);
  const Conv2dArgs a = Conv2dArgs::make(l.stride, l.pad);
  Arena arena(Device::CPU);
  Ctx ctx(Device::CPU, &arena);
  {  // validate
    const Tensor y = conv2d(ctx, x, w, nullptr, a);
    const double worst = worst_sampled_error(l, batch, x, w, y, 64);
    const Tensor dx = conv2d_dgrad(ctx, dy, w, x.shape(), a);
    double lhs = 0, rhs = 0, scale = 0;
    for (int64_t i = 0; i < y.numel(); ++i) lhs += double(y.data<float>()[i]) * dy.data<float>()[i];
    for (int64_t i = 0; i < x.numel(); ++i) {
      rhs += double(x.data<float>()[i]) * dx.data<float>()[i];
      scale += std::abs(double(x.data<float>()[i]) * dx.data<float>()[i]);
    }
    if (!(worst < 1e-4) || !(std::abs(lhs - rhs) < 1e-5 * scale)) {
      state.SkipWithError(("conv differs from the direct loop by " + std::to_string(worst) +
                           " or <conv(x), dy> - <x, dgrad(dy)> = " + std::to_string(lhs - rhs))
                              .c_str());
      return;
    }
    arena.reset();
  }
  const int64_t runs = cpu::direct3x3_runs(), wino_runs = cpu::winograd_runs();
  for (auto _ : state) {
    arena.reset();
    Tensor out = dgrad ? conv2d_dgrad(ctx, dy, w, x.shape(), a) : conv2d(ctx, x, w, nullptr, a);
    benchmark::DoNotOptimize(out.raw());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(conv_flops(l, batch) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(cpu::winograd_runs() > wino_runs ? "Winograd"
                 : cpu::direct3x3_runs() > runs    ? "direct kernel"
                                                   : "im2col + GEMM");
}

// The narrow GEMM's comparison shapes (see the top of this file).
constexpr BatchedLayer kNarrowCases[] = {
    {{"r50_l4_1x1_2048to512_7", 2048, 512, 1, 1, 0, 7}, 1},
    {{"r50_l4_3x3_512to512_7", 512, 512, 3, 1, 1, 7}, 1},
    {{"r50_l4_1x1_512to2048_7", 512, 2048, 1, 1, 0, 7}, 1},
    {{"r50_l4_3x3s2_512to512_14to7", 512, 512, 3, 2, 1, 14}, 1},
    {{"mobilenet_1x1_384to768_7", 384, 768, 1, 1, 0, 7}, 1},
    {{"mobilenet_1x1_768to768_7", 768, 768, 1, 1, 0, 7}, 1},
    {{"mobilenet_decoder_3x3_768to1024_7", 768, 1024, 3, 1, 1, 7}, 1},
    // smaller planes (smaller inputs): 6x6, 5x5, 4x4 and 3x3 at batch 1
    {{"plane6_3x3_768to1024_6", 768, 1024, 3, 1, 1, 6}, 1},
    {{"plane5_3x3_512to512_5", 512, 512, 3, 1, 1, 5}, 1},
    {{"plane4_1x1_1024to512_4", 1024, 512, 1, 1, 0, 4}, 1},
    {{"plane3_3x3_512to512_3", 512, 512, 3, 1, 1, 3}, 1},
    {{"r50_l4_1x1_2048to512_7", 2048, 512, 1, 1, 0, 7}, kBatch},
    {{"r50_l4_1x1_512to2048_7", 512, 2048, 1, 1, 0, 7}, kBatch},
    {{"mobilenet_1x1_768to768_7", 768, 768, 1, 1, 0, 7}, kBatch},
};

// The forward of one small-plane layer with the narrow GEMM allowed or not; validated against the direct loop.
void BM_narrow(benchmark::State& state, BatchedLayer nc, bool narrow) {
  const cpu::GemmNarrowSwitch use(narrow);
  const int64_t runs = cpu::gemm_narrow_runs();
  time_conv2d(state, nc.l, nc.batch, 64);
  state.SetLabel(cpu::gemm_narrow_runs() > runs ? "narrow GEMM" : "BLAS");
}

double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }
double max_of(const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }

// On shared machines the mean wanders with the neighbours' load: with --benchmark_repetitions=N
// the "_min" row (time) and "_max" row (GFLOP/s) give the best of N runs.
// The settings every benchmark of this file runs with (b: as RegisterBenchmark returned it).
void with_settings(benchmark::internal::Benchmark* b) {
  b->Unit(benchmark::kMillisecond)->UseRealTime()->ComputeStatistics("min", min_of)->ComputeStatistics("max", max_of);
}

const bool registered = [] {
  for (const Layer& l : kLayers) {
    using Fn = void (*)(benchmark::State&, Layer);
    const std::pair<const char*, Fn> kinds[] = {{"conv2d/", BM_conv2d}, {"sgemm/", BM_sgemm}};
    for (auto [prefix, fn] : kinds)
      with_settings(benchmark::RegisterBenchmark((std::string(prefix) + l.name).c_str(), fn, l));
  }
  for (const BatchedLayer& dc : kDirectCases)
    for (bool dgrad : {false, true})
      for (Path path : {Path::winograd, Path::direct, Path::gemm}) {
        const char* suffix = path == Path::winograd ? "/winograd" : path == Path::direct ? "/direct" : "/gemm";
        const std::string name = std::string("direct3x3/") + dc.l.name + (dgrad ? "/dgrad" : "/fwd") + suffix;
        with_settings(benchmark::RegisterBenchmark(name.c_str(), BM_direct3x3, dc, dgrad, path));
      }
  for (const BatchedLayer& nc : kNarrowCases)
    for (bool narrow : {true, false}) {
      const std::string name = std::string("narrow/") + nc.l.name + "/b" + std::to_string(nc.batch) +
                               (narrow ? "/narrow" : "/blas");
      with_settings(benchmark::RegisterBenchmark(name.c_str(), BM_narrow, nc, narrow));
    }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
