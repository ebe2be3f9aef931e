// CPU forward throughput of whole networks, batch 8 at 224x224, in images/s (items_per_second):
//   resnet50_forward      torchvision ResNet-50 v1.5 with seeded random weights (speed does not
//                         depend on the values)
//   mobilenet_v1_forward  MobileNet v1 0.75 from weights/mobilenet_v1_0.75_224.safetensors
//                         (or $SAL_MOBILENET_WEIGHTS); skipped with the load error when the file or
//                         the network class is not available.
// Validate, then time: before timing, two forwards must give finite logits that are identical
// bit for bit. Every iteration resets one workspace arena, as an inference server would; the
// counter `arena_growths` counts arena growths during timing (0: the steady state allocates
// nothing) and `arena_MB` is the arena's peak. Wall-clock time (OpenMP threads: OMP_NUM_THREADS).
//
//   OMP_NUM_THREADS=2 model_cpu_bench --benchmark_min_time=5
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "bench/random_params.h"
#include "engine/arena.h"
#include "layers/network.h"
#include "layers/networks.h"

using namespace sal;
using sal::bench::mobilenet_path;
using sal::bench::randomize;

namespace {

constexpr int64_t kSize = 224;

Tensor random_input(int64_t batch, uint64_t seed) {
  Tensor x = Tensor::empty(Shape{batch, 3, kSize, kSize});
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) p[i] = normal(rng);
  return x;
}

// Times net->forward on a [batch,3,224,224] input after validating it; see the top of the file.
void time_forward(benchmark::State& state, Network& net) {
  const int64_t batch = state.range(0);
  const Tensor x = random_input(batch, 7);
  Arena arena(Device::CPU);
  Ctx ctx(Device::CPU, &arena);

  std::vector<double> first;
  for (int run = 0; run < 2; ++run) {
    arena.reset();
    Tensor logits = net.forward(ctx, x);
    if (logits.ndim() != 2 || logits.dim(0) != batch) {
      state.SkipWithError(("logits have shape " + logits.shape().str()).c_str());
      return;
    }
    std::vector<double> v = logits.values();
    for (double e : v)
      if (!std::isfinite(e)) {
        state.SkipWithError("non-finite logits");
        return;
      }
    if (run == 1 && v != first) {
      state.SkipWithError("two forwards of the same input gave different logits");
      return;
    }
    first = std::move(v);
  }

  arena.reset();
  const size_t growths = arena.growths();
  for (auto _ : state) {
    arena.reset();
    Tensor logits = net.forward(ctx, x);
    benchmark::DoNotOptimize(logits.raw());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * batch);
  state.counters["arena_growths"] = static_cast<double>(arena.growths() - growths);
  state.counters["arena_MB"] = static_cast<double>(arena.peak()) / (1 << 20);
  state.counters["threads"] = omp_get_max_threads();
}

void BM_resnet50_forward(benchmark::State& state) {
  InputSpec spec;
  spec.arch = "resnet50";
  spec.num_classes = 1000;
  std::unique_ptr<Network> net;
  try {
    net = make_resnet50(spec, Device::CPU);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  randomize(net->params(), 1);
  time_forward(state, *net);
}

void BM_mobilenet_v1_forward(benchmark::State& state) {
  std::unique_ptr<Network> net;
  try {
    net = load_network(mobilenet_path());
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  time_forward(state, *net);
}

}  // namespace

BENCHMARK(BM_resnet50_forward)->Arg(8)->ArgName("batch")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_mobilenet_v1_forward)->Arg(8)->ArgName("batch")->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
