// CUDA memory-bound kernels at the training step's sizes, in bytes moved per second and as a
// fraction of the card's peak HBM bandwidth (DESIGN.md section 4 asks for more than 70%):
//   blend forward / backward        x, a [64,3,224,224], m [64,1,224,224]
//   abs_ratio_upsample fwd / bwd    c [64,2,56,56] -> [64,1,224,224]
//   tv_loss, area_loss fwd / bwd    m [64,1,224,224]
//   cross_entropy fwd / bwd         logits [64,1000]
//   adam_update                     25M parameters
// "Bytes" are the compulsory traffic: every input read once, every output written once.
// The peak is 2 * memory clock * bus width / 8 (double data rate), read with
// cudaDeviceGetAttribute (the cudaDeviceProp fields are deprecated) and printed at start.
//
// Validate, then time: each benchmark first runs the op on the GPU and on the CPU from the same
// inputs and skips with an error when they disagree. Timing uses CUDA events around the op on
// the device's stream (UseManualTime); op outputs come from a CUDA arena reset every iteration,
// after one warm-up call has grown it to its peak (no cudaMalloc inside the timed region).
// Without a CUDA device (or a CUDA build) every benchmark skips with "no CUDA device".
//
//   memory_bound_cuda_bench [--benchmark_filter=blend] [--benchmark_min_time=0.2]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_main.h"
#include "bench/cuda_bench_util.h"
#include "engine/arena.h"
#include "engine/ops.h"
#include "optim/adam.h"
#ifdef SAL_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/device.h"
#endif

using namespace sal;

namespace {

constexpr int64_t kN = 64, kH = 224, kW = 224;

using bench::max_rel;
using bench::random_tensor;

#ifdef SAL_WITH_CUDA

double peak_bytes_per_s() {
  static const double peak = [] {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
      cudaGetLastError();
      return 0.0;
    }
    return bench::peak_hbm_bytes_per_s(dev);
  }();
  return peak;
}

// One GPU, its stream, a CUDA arena for the op outputs.
struct Gpu {
  CudaDevice dev;
  Arena arena{Device::CUDA};
  Ctx ctx = dev.ctx(&arena);
};

// Validates (check() returns the worst relative difference against the CPU), then times run().
void measure(benchmark::State& state, Gpu& g, double bytes, double tol, const std::function<double()>& check,
             const std::function<void()>& run) {
  double err = 0;
  try {
    err = check();
    g.dev.synchronize();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  if (!(err <= tol)) {
    const std::string msg = "GPU result differs from the CPU by " + std::to_string(err) + " (tolerance " +
                            std::to_string(tol) + ")";
    state.SkipWithError(msg.c_str());
    return;
  }
  g.arena.reset();
  run();  // warm-up: grows the arena to its peak
  g.dev.synchronize();
  g.arena.reset();
  cudaStream_t st = static_cast<cudaStream_t>(g.dev.stream());
  double total = 0;
  int64_t iters = 0;
  {
    bench::EventTimer timer;
    for (auto _ : state) {
      const double sec = timer.seconds(st, run);
      state.SetIterationTime(sec);
      total += sec;
      ++iters;
      g.arena.reset();
    }
  }
  g.dev.synchronize();
  const double bps = total > 0 ? bytes * static_cast<double>(iters) / total : 0;
  state.counters["GB/s"] = bps * 1e-9;
  state.counters["HBM_frac"] = peak_bytes_per_s() > 0 ? bps / peak_bytes_per_s() : 0;
  state.counters["MB"] = bytes * 1e-6;
}

bool have_gpu(benchmark::State& state) {
  if (cuda_available()) return true;
  state.SkipWithError("no CUDA device");
  return false;
}

#else

bool have_gpu(benchmark::State& state) {
  state.SkipWithError("no CUDA device");
  return false;
}

#endif

constexpr double F = sizeof(float);

void BM_blend_fwd(benchmark::State& state) {
  if (!have_gpu(state)) return;
#ifdef SAL_WITH_CUDA
  Gpu g;
  Ctx cpu;
  const Shape xs{kN, 3, kH, kW}, ms{kN, 1, kH, kW};
  Tensor x = random_tensor(xs, 1), a = random_tensor(xs, 2), m = random_tensor(ms, 3, 0, 1);
  Tensor dx = x.to(Device::CUDA), da = a.to(Device::CUDA), dm = m.to(Device::CUDA);
  measure(
      state, g, F * (3.0 * xs.numel() + ms.numel()), 1e-5,
      [&] { return max_rel(blend(g.ctx, dx, da, dm), blend(cpu, x, a, m)); }, [&] { blend(g.ctx, dx, da, dm); });
#endif
}

// need_all: dx and da too (else only dm, as when the blended images are inputs).
void blend_bwd(benchmark::State& state, bool need_all) {
  if (!have_gpu(state)) return;
#ifdef SAL_WITH_CUDA
  Gpu g;
  Ctx cpu;
  const Shape xs{kN, 3, kH, kW}, ms{kN, 1, kH, kW};
  Tensor x = random_tensor(xs, 1), a = random_tensor(xs, 2), m = random_tensor(ms, 3, 0, 1), dy = random_tensor(xs, 4);
  Tensor dx = x.to(Device::CUDA), da = a.to(Device::CUDA), dm = m.to(Device::CUDA), ddy = dy.to(Device::CUDA);
  const double bytes = F * (3.0 * xs.numel() + ms.numel() + ms.numel() + (need_all ? 2.0 * xs.numel() : 0.0));
  measure(
      state, g, bytes, 1e-5,
      [&] {
        BlendGrads gg = blend_backward(g.ctx, ddy, dx, da, dm, need_all, need_all);
        BlendGrads gc = blend_backward(cpu, dy, x, a, m, need_all, need_all);
        double e = max_rel(gg.dm, gc.dm);
        if (need_all) e = std::max({e, max_rel(gg.dx, gc.dx), max_rel(gg.da, gc.da)});
        return e;
      },
      [&] { blend_backward(g.ctx, ddy, dx, da, dm, need_all, need_all); });
#else
  (void)need_all;
#endif
}
void BM_blend_bwd_dm(benchmark::State& state) { blend_bwd(state, false); }
void BM_blend_bwd_all(benchmark::State& state) { blend_bwd(state, true); }

void BM_abs_ratio_upsample_fwd(benchmark::State& state) {
  if (!have_gpu(state)) return;
#ifdef SAL_WITH_CUDA
  Gpu g;
  Ctx cpu;
  const Shape cs{kN, 2, 56, 56};
  Tensor c = random_tensor(cs, 5), dc = c.to(Device::CUDA);
  measure(
      state, g, F * (cs.numel() + kN * kH * kW), 1e-4,
      [&] { return max_rel(abs_ratio_upsample(g.ctx, dc, 1e-3, kH, kW), abs_ratio_upsample(cpu, c, 1e-3, kH, kW)); },
      [&] { abs_ratio_upsample(g.ctx, dc, 1e-3, kH, kW); });
#endif
}

void BM_abs_ratio_upsample_bwd(benchmark::State& state) {
  if (!have_gpu(state)) return;
#ifdef SAL_WITH_CUDA
  Gpu g;
  Ctx cpu;
  const Shape cs{kN, 2, 56, 56}, ys{kN, 1, kH, kW};
  Tensor c = random_tensor(cs, 5), dy = random_tensor(ys, 6);
  Tensor dc = c.to(Device::CUDA), ddy = dy.to(Device::CUDA);
  measure(
      state, g, F * (2.0 * cs.numel() + ys.numel()), 1e-4,
      [&] { return max_rel(abs_ratio_upsample_backward(g.ctx, ddy, dc, 1e-3), abs_ratio_upsample_backward(cpu, dy, c, 1e-3)); },
      [&] { abs_ratio_upsample_backward(g.ctx, ddy, dc, 1e-3); });
#endif
}

// Mask losses: fwd reads m and writes N losses; bwd reads m and dloss, writes dm.
void mask_loss(benchmark::State& state, bool tv, bool backward) {
  if (!have_gpu(state)) return;
#ifdef SAL_WITH_CUDA
  Gpu g;
  Ctx cpu;
  const Shape ms{kN, 1, kH, kW};
  Tensor m = random_tensor(ms, 7, 0, 1), dl = random_tensor(Shape{kN}, 8);
  Tensor dm = m.to(Device::CUDA), ddl = dl.to(Device::CUDA);
  const double bw = 0.3, p = 0.3, eps = 5e-4;
  auto fwd = [&](Ctx& c, const Tensor& mm) { return tv ? tv_loss(c, mm, bw) : area_loss(c, mm, p, eps); };
  auto bwd = [&](Ctx& c, const Tensor& d, const Tensor& mm) {
    return tv ? tv_loss_backward(c, d, mm, bw) : area_loss_backward(c, d, mm, p, eps);
  };
  const double bytes = backward ? F * (2.0 * ms.numel() + kN) : F * (ms.numel() + kN);
  measure(
      state, g, bytes, 1e-4,
      [&] { return backward ? max_rel(bwd(g.ctx, ddl, dm), bwd(cpu, dl, m)) : max_rel(fwd(g.ctx, dm), fwd(cpu, m)); },
      [&] {
        if (backward)
          bwd(g.ctx, ddl, dm);
        else
          fwd(g.ctx, dm);
      });
#else
  (void)tv;
  (void)backward;
#endif
}
void BM_tv_loss_fwd(benchmark::State& state) { mask_loss(state, true, false); }
void BM_tv_loss_bwd(benchmark::State& state) { mask_loss(state, true, true); }
void BM_area_loss_fwd(benchmark::State& state) { mask_loss(state, false, false); }
void BM_area_loss_bwd(benchmark::State& state) { mask_loss(state, false, true); }

void cross_entropy_bench(benchmark::State& state, bool backward) {
  if (!have_gpu(state)) return;
#ifdef SAL_WITH_CUDA
  Gpu g;
  Ctx cpu;
  const int64_t K = 1000;
  Tensor z = random_tensor(Shape{kN, K}, 9, -5, 5), dl = random_tensor(Shape{kN}, 10);
  std::vector<int32_t> lv(kN);
  for (int64_t i = 0; i < kN; ++i) lv[static_cast<size_t>(i)] = static_cast<int32_t>((i * 37) % K);
  Tensor l = Tensor::from_labels(lv);
  Tensor dz = z.to(Device::CUDA), ddl = dl.to(Device::CUDA), dlab = l.to(Device::CUDA);
  const double bytes = F * (kN * K + 2.0 * kN) + (backward ? F * kN * K : 0.0);
  measure(
      state, g, bytes, 1e-4,
      [&] {
        return backward ? max_rel(cross_entropy_backward(g.ctx, ddl, dz, dlab), cross_entropy_backward(cpu, dl, z, l))
                        : max_rel(cross_entropy(g.ctx, dz, dlab), cross_entropy(cpu, z, l));
      },
      [&] {
        if (backward)
          cross_entropy_backward(g.ctx, ddl, dz, dlab);
        else
          cross_entropy(g.ctx, dz, dlab);
      });
#else
  (void)backward;
#endif
}
void BM_cross_entropy_fwd(benchmark::State& state) { cross_entropy_bench(state, false); }
void BM_cross_entropy_bwd(benchmark::State& state) { cross_entropy_bench(state, true); }

void BM_adam_25M(benchmark::State& state) {
  if (!have_gpu(state)) return;
#ifdef SAL_WITH_CUDA
  Gpu g;
  Ctx cpu;
  const Shape ps{25'000'000};
  Tensor w = random_tensor(ps, 11), gr = random_tensor(ps, 12), m = random_tensor(ps, 13, -0.1f, 0.1f),
         v = random_tensor(ps, 14, 0, 0.01f);
  Tensor dw = w.to(Device::CUDA), dg = gr.to(Device::CUDA), dm = m.to(Device::CUDA), dv = v.to(Device::CUDA);
  const AdamConfig cfg{.lr = 1e-3, .weight_decay = 0.01};
  int64_t step = 1;
  measure(
      state, g, F * 7.0 * static_cast<double>(ps.numel()), 1e-5,
      [&] {
        adam_update(g.ctx, dw, dg, dm, dv, cfg, step);
        adam_update(cpu, w, gr, m, v, cfg, step);
        ++step;
        return std::max({max_rel(dw, w), max_rel(dm, m), max_rel(dv, v)});
      },
      [&] { adam_update(g.ctx, dw, dg, dm, dv, cfg, step++); });
#endif
}

}  // namespace

BENCHMARK(BM_blend_fwd)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_blend_bwd_dm)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_blend_bwd_all)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_abs_ratio_upsample_fwd)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_abs_ratio_upsample_bwd)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_tv_loss_fwd)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_tv_loss_bwd)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_area_loss_fwd)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_area_loss_bwd)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cross_entropy_fwd)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cross_entropy_bwd)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_adam_25M)->UseManualTime()->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  return sal::bench::run_benchmarks(argc, argv, [] {
#ifdef SAL_WITH_CUDA
    if (cuda_available()) {
      int dev = 0;
      cudaDeviceProp prop{};
      cudaGetDevice(&dev);
      cudaGetDeviceProperties(&prop, dev);
      std::printf("device: %s, peak HBM bandwidth %.1f GB/s (2 x memory clock x bus width / 8)\n", prop.name,
                  peak_bytes_per_s() * 1e-9);
      benchmark::AddCustomContext("peak_HBM_GBps", std::to_string(peak_bytes_per_s() * 1e-9));
    } else {
      std::printf("no CUDA device: every benchmark is skipped\n");
    }
#else
    std::printf("built without CUDA: every benchmark is skipped\n");
#endif
  });
}
