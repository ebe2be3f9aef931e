// CUDA convolutions: the hand-written implicit-GEMM kernels (cuda/conv_igemm.cu) against cuDNN
// (cuda/cudnn_conv.cpp), forward, dgrad and wgrad, on every distinct conv shape of ResNet-50 at
// batch 64 and 224x224 input and on the masker decoder's shapes, and cuBLAS's strided-batched GEMM
// (cuda/conv_pointwise_gemm.h) on the 1x1 stride-1 ones (forward, dgrad); and the custom kernels used as a
// plain GEMM (a 1x1 convolution) against cublasSgemm with TF32. And the forward of a frozen conv + batch norm +
// ReLU (conv_bn_relu/<layer>/<variant>, cuDNN's heuristic algorithm, TF32): `bn_pass`, cuDNN's convolution and
// then the batch-norm pass over its output in place (what conv2d_bn_act's cuDNN side ran before session 15), against
// `fold`, the batch norm folded into the weights (cuda/conv_bn_fold.h) and one cudnnConvolutionBiasActivationForward,
// the fold included, and `fused_only`, that call with the weights folded once beforehand (what the fold kernel
// costs per call); both validated against the CPU's conv2d_bn_act at batch 2 and bn_pass at batch 64. And cuDNN in
// the two memory layouts (conv_layout/<layer>/<pass>/{nchw,nhwc}, TF32): the engine's NCHW against NHWC, the layout
// cuDNN's tensor-core kernels work in, each with the fastest of the algorithms Auto would time for it (as PyTorch's
// cudnn.benchmark; counter `algo`), its result checked against cuDNN's heuristic NCHW one before timing;
// counters nhwc/nchw (the conv alone: what an engine in NHWC throughout would see) and with_transposes/nchw (plus
// converting the pass's activation input(s) to NHWC and its output back: what NHWC for that one layer inside an
// NCHW network would cost). tools/summarize_conv_layout.py adds the rows up over ResNet-50's 53 convolutions.
//
// Validate, then time. Before a layer is timed, both backends are compared with the CPU (f32) on a
// batch of 2 and with each other at batch 64, for all three passes (tolerance: max |a - b| below
// 1e-2 of max |reference|, TF32); a mismatch skips that layer's benchmarks with the error. Times
// are CUDA-event times of one op call on the device's stream (UseManualTime), outputs from an
// arena reset every iteration. Counters: TFLOP/s (2*N*K*C*R*S*P*Q per pass) and, on the custom
// rows, custom/cudnn = mean custom time / mean cuDNN time (the target is <= 1.5); on the cuBLAS rows
// cublas/cudnn likewise.
//
// Without a CUDA device (or in a build without CUDA) every benchmark reports "no CUDA device".
//
//   conv_cuda_bench --benchmark_min_time=0.05 [--benchmark_filter=l3_]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "bench/bench_main.h"
#include "bench/resnet50_conv_shapes.h"
#include "engine/arena.h"
#include "engine/ops.h"
#ifdef SAL_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/conv_backend.h"
#include "cuda/conv_bn_fold.h"
#include "cuda/cublas_gemm.h"
#include "cuda/cudnn_conv.h"
#include "cuda/device.h"
#include "cuda/layout_transpose.h"
#endif

using namespace sal;

namespace {

constexpr int kBatch = 64;

using Layer = bench::ConvLayer;

// Masker decoder (upsampler bottlenecks at 768/384/192 channels, 1/16, 1/8, 1/4 scale):
// the 3x3 at full width, the 1x1 reductions to a quarter and the expansions back.
const Layer kDecoderLayers[] = {
    {"dec_3x3_768to768_14", 768, 768, 3, 1, 1, 14},
    {"dec_3x3_384to384_28", 384, 384, 3, 1, 1, 28},
    {"dec_3x3_192to192_56", 192, 192, 3, 1, 1, 56},
    {"dec_1x1_768to192_14", 768, 192, 1, 1, 0, 14},
    {"dec_1x1_384to96_28", 384, 96, 1, 1, 0, 28},
    {"dec_1x1_192to48_56", 192, 48, 1, 1, 0, 56},
    {"dec_1x1_192to768_14", 192, 768, 1, 1, 0, 14},
    {"dec_1x1_96to384_28", 96, 384, 1, 1, 0, 28},
    {"dec_1x1_48to192_56", 48, 192, 1, 1, 0, 56},
};

// ResNet-50's shapes (bench/resnet50_conv_shapes.h), then the decoder's.
const std::vector<Layer> kLayers = [] {
  std::vector<Layer> v(std::begin(bench::kResNet50ConvLayers), std::end(bench::kResNet50ConvLayers));
  v.insert(v.end(), std::begin(kDecoderLayers), std::end(kDecoderLayers));
  return v;
}();

struct GemmSize {
  const char* name;
  int m, n, k;
};
const GemmSize kGemms[] = {
    {"1024x1024x1024", 1024, 1024, 1024},
    {"4096x4096x4096", 4096, 4096, 4096},
    {"512x12544x2048", 512, 12544, 2048},  // l4 1x1 2048->512 at 7x7, batch 256
    {"256x200704x64", 256, 200704, 64},    // l1 1x1 64->256 at 56x56, batch 64
};

enum class Pass { Fwd, Dgrad, Wgrad };
const char* pass_name(Pass p) { return p == Pass::Fwd ? "fwd" : p == Pass::Dgrad ? "dgrad" : "wgrad"; }

// conv_bn_relu's ways of computing relu(bn(conv(x, w))) (the file's comment).
enum class BnVariant { BnPass, Fold, FusedOnly };
const char* bn_variant_name(BnVariant v) {
  return v == BnVariant::BnPass ? "bn_pass" : v == BnVariant::Fold ? "fold" : "fused_only";
}

#ifdef SAL_WITH_CUDA
using cuda::ConvBackend;

constexpr int kCheckBatch = 2;
constexpr double kTol = 1e-2;

using bench::conv_flops;
using bench::out_size;

// Uniform values in [-scale, scale] from a hash of the index (fast for 50M elements).
Tensor host_random(const Shape& s, uint64_t seed, float scale) {
  Tensor t = Tensor::empty(s);
  float* p = t.data<float>();
  const int64_t n = t.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    uint64_t z = (static_cast<uint64_t>(i) + seed * 0x9E3779B97F4A7C15ull) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 31)) * 0x94D049BB133111EBull;
    z ^= z >> 29;
    p[i] = scale * (static_cast<float>(z >> 40) * (2.f / 16777216.f) - 1.f);
  }
  return t;
}

// max |a - b| / max |ref| of two f32 tensors of one size (copied to the host first where they are on the device;
// read in place, not as doubles: the 56x56 layers' outputs are 51 M floats)
double rel_err(const Tensor& a_any, const Tensor& ref_any) {
  const auto host = [](const Tensor& t) { return t.device() == Device::CPU ? t : t.to(Device::CPU); };
  const Tensor a = host(a_any), ref = host(ref_any);
  const float *av = a.data<float>(), *bv = ref.data<float>();
  const int64_t n = std::min(a.numel(), ref.numel());
  double d = 0, m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = std::abs(static_cast<double>(av[i]) - bv[i]);
    if (std::isnan(e)) return INFINITY;
    d = std::max(d, e);
    m = std::max(m, std::abs(static_cast<double>(bv[i])));
  }
  return a.numel() == ref.numel() ? d / std::max(m, 1e-30) : INFINITY;
}

struct Gpu {
  CudaDevice dev;
  Arena arena{Device::CUDA};
  Ctx ctx;
  Gpu() : ctx(dev.ctx(&arena)) {}
  cudaStream_t stream() const { return static_cast<cudaStream_t>(dev.stream()); }
};
Gpu& gpu() {
  static Gpu g;
  return g;
}

// Tensor::to / zeros copy and clear on the runtime's legacy stream: wait for the whole device after preparing
// inputs, so that the copies are neither in a timed call nor racing a host read.
void sync_all() { cudaDeviceSynchronize(); }

// The tensors of the layer being benchmarked (one layer at a time: benchmarks run in order).
struct LayerData {
  std::string name;
  Tensor x, w, dy;  // on the device, batch kBatch
  Conv2dArgs a;
  bool validated = false;
  std::string error;
};

LayerData& layer_data(const Layer& l) {
  static LayerData d;
  if (d.name != l.name) {
    d = LayerData{};
    d.name = l.name;
    const int p = out_size(l);
    d.a = Conv2dArgs::make(l.stride, l.pad);
    d.x = host_random(Shape{kBatch, l.c, l.h, l.h}, 1, 1.f).to(Device::CUDA);
    // Weights scaled by 1/sqrt(fan-in) keep outputs O(1), as in a trained network.
    d.w = host_random(Shape{l.k, l.c, l.r, l.r}, 2, 1.f / std::sqrt(float(l.c * l.r * l.r))).to(Device::CUDA);
    d.dy = host_random(Shape{kBatch, l.k, p, p}, 3, 1.f).to(Device::CUDA);
    sync_all();
  }
  return d;
}

// The three passes on ctx; dw starts at zero.
struct Outs {
  Tensor y, dx, dw;
};
Outs run_all(Ctx& ctx, const Tensor& x, const Tensor& w, const Tensor& dy, const Conv2dArgs& a) {
  Outs o;
  o.y = conv2d(ctx, x, w, nullptr, a);
  o.dx = conv2d_dgrad(ctx, dy, w, x.shape(), a);
  o.dw = Tensor::zeros(w.shape(), DType::F32, ctx.device);
  if (ctx.device == Device::CUDA) sync_all();
  conv2d_wgrad(ctx, dy, x, o.dw, nullptr, a);
  return o;
}

std::string compare(const Outs& got, const Outs& want, const std::string& what) {
  const double e[3] = {rel_err(got.y, want.y), rel_err(got.dx, want.dx), rel_err(got.dw, want.dw)};
  for (int i = 0; i < 3; ++i)
    if (!(e[i] <= kTol))
      return cat(what, ": ", pass_name(static_cast<Pass>(i)), " differs by ", e[i], " of the reference's maximum");
  return "";
}

// CPU at batch 2 vs each backend, then custom vs cuDNN (and cuBLAS vs cuDNN) at full batch.
void validate(LayerData& d) {
  d.validated = true;
  Gpu& G = gpu();
  try {
    Ctx cpu;
    const Tensor xs = d.x.slice0(0, kCheckBatch), dys = d.dy.slice0(0, kCheckBatch);
    const Outs ref = run_all(cpu, xs.to(Device::CPU), d.w.to(Device::CPU), dys.to(Device::CPU), d.a);
    // (Cublas runs the forward and dgrad of 1x1 stride-1 layers, the rest as Cudnn.)
    for (ConvBackend be : {ConvBackend::Custom, ConvBackend::Cudnn, ConvBackend::Cublas}) {
      cuda::set_conv_backend(be);
      const Outs got = run_all(G.ctx, xs, d.w, dys, d.a);
      G.dev.synchronize();
      d.error = compare(got, ref, cat(cuda::conv_backend_name(be), " vs CPU at batch ", kCheckBatch));
      G.arena.reset();
      if (!d.error.empty()) return;
    }
    cuda::set_conv_backend(ConvBackend::Cudnn);
    const Outs dn = run_all(G.ctx, d.x, d.w, d.dy, d.a);
    cuda::set_conv_backend(ConvBackend::Custom);
    const Outs cu = run_all(G.ctx, d.x, d.w, d.dy, d.a);
    cuda::set_conv_backend(ConvBackend::Cublas);
    const Outs cb = run_all(G.ctx, d.x, d.w, d.dy, d.a);
    G.dev.synchronize();
    d.error = compare(cu, dn, cat("custom vs cudnn at batch ", kBatch));
    if (d.error.empty()) d.error = compare(cb, dn, cat("cublas vs cudnn at batch ", kBatch));
  } catch (const std::exception& e) {
    d.error = e.what();
  }
  G.arena.reset();
}

std::map<std::tuple<std::string, int, int>, double>& mean_times() {  // (layer, pass, backend) -> s
  static std::map<std::tuple<std::string, int, int>, double> m;
  return m;
}

struct Events {
  cudaEvent_t start, stop;
  Events() {
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
  }
  ~Events() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  // Seconds that fn takes on the stream.
  template <class Fn>
  double time(cudaStream_t s, Fn&& fn) {
    cudaEventRecord(start, s);
    fn();
    cudaEventRecord(stop, s);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    return ms * 1e-3;
  }
};

// Times `run` under the benchmark loop: CUDA-event seconds of each call as the iteration's time, the arena reset
// after each; returns the mean seconds (0 when the loop ran no iteration).
template <class Fn>
double timed_iterations(benchmark::State& st, Fn&& run) {
  Gpu& G = gpu();
  Events ev;
  double total = 0;
  int64_t n = 0;
  for (auto _ : st) {
    const double sec = ev.time(G.stream(), run);
    st.SetIterationTime(sec);
    total += sec;
    ++n;
    G.arena.reset();
  }
  return n ? total / n : 0;
}

// One untimed call of fn (module loading, cuDNN plans, arena growth), waited for, the arena reset after it.
template <class Fn>
void warm_up(Fn&& fn) {
  Gpu& G = gpu();
  fn();
  G.dev.synchronize();
  G.arena.reset();
}

// Mean seconds of `iters` CUDA-event-timed calls of fn, after warm_up; 0 for no calls.
template <class Fn>
double mean_seconds(Fn&& fn, int iters) {
  Gpu& G = gpu();
  warm_up(fn);
  Events ev;
  double total = 0;
  for (int i = 0; i < iters; ++i) {
    total += ev.time(G.stream(), fn);
    G.arena.reset();
  }
  return iters > 0 ? total / iters : 0;
}

// One pass of one layer with one backend; returns the mean seconds of `iters` timed calls when
// called outside a benchmark (state == nullptr), else times under the benchmark loop.
double time_pass(benchmark::State* st, LayerData& d, Pass pass, ConvBackend be, int iters = 0) {
  Gpu& G = gpu();
  cuda::set_conv_backend(be);
  Tensor dw = Tensor::zeros(d.w.shape(), DType::F32, Device::CUDA);
  sync_all();
  auto run = [&] {
    if (pass == Pass::Fwd)
      benchmark::DoNotOptimize(conv2d(G.ctx, d.x, d.w, nullptr, d.a).raw());
    else if (pass == Pass::Dgrad)
      benchmark::DoNotOptimize(conv2d_dgrad(G.ctx, d.dy, d.w, d.x.shape(), d.a).raw());
    else
      conv2d_wgrad(G.ctx, d.dy, d.x, dw, nullptr, d.a);
  };
  if (!st) return mean_seconds(run, iters);
  warm_up(run);
  return timed_iterations(*st, run);
}

void BM_conv(benchmark::State& st, Layer l, Pass pass, ConvBackend be) {
  if (!cuda_available()) {
    st.SkipWithError("no CUDA device");
    return;
  }
  LayerData& d = layer_data(l);
  if (!d.validated) validate(d);
  if (!d.error.empty()) {
    st.SkipWithError(d.error.c_str());
    return;
  }
  const double mean = time_pass(&st, d, pass, be);
  const auto key = std::make_tuple(std::string(l.name), static_cast<int>(pass), static_cast<int>(be));
  mean_times()[key] = mean;
  st.counters["TFLOP/s"] = mean > 0 ? conv_flops(l, kBatch) / mean * 1e-12 : 0;
  if (be != ConvBackend::Cudnn) {
    auto it = mean_times().find(
        std::make_tuple(std::string(l.name), static_cast<int>(pass), static_cast<int>(ConvBackend::Cudnn)));
    const double ref = it != mean_times().end() ? it->second : time_pass(nullptr, d, pass, ConvBackend::Cudnn, 5);
    st.counters[cat(cuda::conv_backend_name(be), "/cudnn")] = ref > 0 ? mean / ref : 0;
  }
  cuda::set_conv_backend(ConvBackend::Auto);
}

// A frozen batch norm's statistics for K channels (gamma around 1, var in [0.5, 1.5], as a trained network's).
struct BnParams {
  Tensor gamma, beta, mean, var;
};
BnParams bn_params(int64_t k, Device dev) {
  const Shape s{k};
  const auto shifted = [&](uint64_t seed, float scale, float offset) {
    Tensor t = host_random(s, seed, scale);
    for (int64_t i = 0; i < k; ++i) t.data<float>()[i] += offset;
    return t.to(dev);
  };
  return BnParams{shifted(11, 0.5f, 1.f), shifted(12, 0.5f, 0.f), shifted(13, 0.2f, 0.f), shifted(14, 0.5f, 1.f)};
}
constexpr double kBnEps = 1e-5;

// relu(bn(conv(x, w))) on the device by one variant into y (wf, bf: the folded weights and bias, which Fold
// recomputes and FusedOnly reads as they are).
void conv_bn_relu(Ctx& ctx, BnVariant v, const Tensor& x, const Tensor& w, const BnParams& bn, const Conv2dArgs& a,
                  Tensor& wf, Tensor& bf, Tensor& y) {
  cuda::ConvGeom g = cuda::conv_geom(x.shape(), w.shape(), y.shape(), a);
  g.tf32 = true;
  if (v == BnVariant::BnPass) {
    cuda::cudnn_conv_forward(ctx, g, x.data<float>(), w.data<float>(), y.data<float>());
    batchnorm2d_infer_act_inplace(ctx, y, bn.gamma, bn.beta, bn.mean, bn.var, kBnEps, nullptr, Activation::ReLU);
    return;
  }
  if (v == BnVariant::Fold)
    cuda::bn_fold_conv_weights(ctx, w.data<float>(), bn.gamma.data<float>(), bn.beta.data<float>(),
                               bn.mean.data<float>(), bn.var.data<float>(), kBnEps, g.K, g.crs(), wf.data<float>(),
                               bf.data<float>());
  cuda::cudnn_conv_bias_act_forward(ctx, g, x.data<float>(), wf.data<float>(), bf.data<float>(), nullptr, true,
                                    y.data<float>());
}

void BM_conv_bn_relu(benchmark::State& st, Layer l, BnVariant v) {
  if (!cuda_available()) {
    st.SkipWithError("no CUDA device");
    return;
  }
  Gpu& G = gpu();
  LayerData& d = layer_data(l);
  const BnParams bn = bn_params(l.k, Device::CUDA);
  const Shape ys{kBatch, l.k, out_size(l), out_size(l)};
  Tensor wf = Tensor::empty(d.w.shape(), DType::F32, Device::CUDA);
  Tensor bf = Tensor::empty(Shape{l.k}, DType::F32, Device::CUDA);
  Tensor y = Tensor::empty(ys, DType::F32, Device::CUDA);
  sync_all();
  std::string err;
  try {  // validate: batch 2 against the CPU, batch 64 against bn_pass (every variant folds first: FusedOnly reads it)
    Ctx cpu;
    const Tensor xs = d.x.slice0(0, kCheckBatch);
    const BnParams hb = bn_params(l.k, Device::CPU);
    const Tensor want = conv2d_bn_act(cpu, xs.to(Device::CPU), d.w.to(Device::CPU), hb.gamma, hb.beta, hb.mean,
                                      hb.var, kBnEps, nullptr, Activation::ReLU, d.a);
    Tensor ys2 = Tensor::empty(want.shape(), DType::F32, Device::CUDA);
    Tensor ref = Tensor::empty(ys, DType::F32, Device::CUDA);
    conv_bn_relu(G.ctx, BnVariant::Fold, xs, d.w, bn, d.a, wf, bf, ys2);  // (the fold, for FusedOnly)
    conv_bn_relu(G.ctx, v, xs, d.w, bn, d.a, wf, bf, ys2);
    conv_bn_relu(G.ctx, BnVariant::BnPass, d.x, d.w, bn, d.a, wf, bf, ref);
    conv_bn_relu(G.ctx, v, d.x, d.w, bn, d.a, wf, bf, y);
    G.dev.synchronize();
    double e = rel_err(ys2.to(Device::CPU), want);
    if (!(e <= kTol)) err = cat(bn_variant_name(v), " vs CPU at batch ", kCheckBatch, ": ", e, " of the maximum");
    e = rel_err(y.to(Device::CPU), ref.to(Device::CPU));
    if (err.empty() && !(e <= kTol)) err = cat(bn_variant_name(v), " vs bn_pass at batch ", kBatch, ": ", e);
  } catch (const std::exception& ex) {
    err = ex.what();
  }
  G.arena.reset();
  if (!err.empty()) {
    st.SkipWithError(err.c_str());
    return;
  }
  const double mean = timed_iterations(st, [&] { conv_bn_relu(G.ctx, v, d.x, d.w, bn, d.a, wf, bf, y); });
  static std::map<std::string, double> bn_pass_mean;  // layer -> s (bn_pass runs first)
  if (v == BnVariant::BnPass) bn_pass_mean[l.name] = mean;
  st.counters["TFLOP/s"] = mean > 0 ? conv_flops(l, kBatch) / mean * 1e-12 : 0;
  const auto it = bn_pass_mean.find(l.name);
  if (v != BnVariant::BnPass && it != bn_pass_mean.end() && it->second > 0)
    st.counters[cat(bn_variant_name(v), "/bn_pass")] = mean / it->second;
}

// C[M,N] = A[M,K] B[K,N] as a 1x1 convolution x:[1,K,1,N], w:[M,K,1,1] -> y:[1,M,1,N] (custom),
// or through cuBLAS with TF32.
void BM_gemm(benchmark::State& st, GemmSize s, bool custom) {
  if (!cuda_available()) {
    st.SkipWithError("no CUDA device");
    return;
  }
  Gpu& G = gpu();
  const Tensor b = host_random(Shape{1, s.k, 1, s.n}, 5, 1.f).to(Device::CUDA);
  const Tensor a = host_random(Shape{s.m, s.k, 1, 1}, 6, 1.f / std::sqrt(float(s.k))).to(Device::CUDA);
  Tensor c = Tensor::empty(Shape{1, s.m, 1, s.n}, DType::F32, Device::CUDA);
  sync_all();
  const Conv2dArgs args = Conv2dArgs::make(1, 0);
  auto run = [&] {
    if (custom) {
      cuda::set_conv_backend(ConvBackend::Custom);
      benchmark::DoNotOptimize(conv2d(G.ctx, b, a, nullptr, args).raw());
    } else {
      cuda::gemm(G.ctx, false, false, s.m, s.n, s.k, 1.f, a.data<float>(), s.k, b.data<float>(), s.n, 0.f,
                 c.data<float>(), s.n, true);
    }
  };
  {  // validate: the custom path against cuBLAS, and sampled elements against a double dot product
    cuda::set_conv_backend(ConvBackend::Custom);
    const Tensor y = conv2d(G.ctx, b, a, nullptr, args);
    cuda::gemm(G.ctx, false, false, s.m, s.n, s.k, 1.f, a.data<float>(), s.k, b.data<float>(), s.n, 0.f,
               c.data<float>(), s.n, true);
    G.dev.synchronize();
    const Tensor yh = y.to(Device::CPU), ch = c.to(Device::CPU), ah = a.to(Device::CPU), bh = b.to(Device::CPU);
    std::string err;
    const double e = rel_err(yh, ch);
    if (!(e <= kTol)) err = cat("custom vs cublas differ by ", e, " of the maximum");
    const float *A = ah.data<float>(), *B = bh.data<float>(), *Y = yh.data<float>();
    double worst = 0, big = 0;
    for (int t = 0; t < 64 && err.empty(); ++t) {
      const int64_t i = (t * 7919LL) % s.m, j = (t * 104729LL) % s.n;
      double want = 0;
      for (int k = 0; k < s.k; ++k) want += double(A[i * s.k + k]) * B[int64_t(k) * s.n + j];
      worst = std::max(worst, std::abs(Y[i * s.n + j] - want));
      big = std::max(big, std::abs(want));
    }
    if (err.empty() && !(worst <= kTol * std::max(big, 1.0))) err = cat("custom vs a CPU dot product: ", worst);
    G.arena.reset();
    if (!err.empty()) {
      st.SkipWithError(err.c_str());
      cuda::set_conv_backend(ConvBackend::Auto);
      return;
    }
  }
  warm_up(run);
  const double mean = timed_iterations(st, run);
  st.counters["TFLOP/s"] = mean > 0 ? 2.0 * s.m * s.n * s.k / mean * 1e-12 : 0;
  cuda::set_conv_backend(ConvBackend::Auto);
}

// ---------------------------------------------------------------- conv_layout (cuDNN, NCHW against NHWC)

using cuda::CudnnLayout;
const char* layout_name(CudnnLayout l) { return l == CudnnLayout::NHWC ? "nhwc" : "nchw"; }

// The NHWC copies of a layer's tensors (w in KRSC) and the outputs of both layouts, allocated once per layer.
struct LayoutData {
  std::string name;
  Tensor x, w, dy;          // NHWC copies of LayerData's x, w, dy
  Tensor y, dx, dw;         // outputs, in the layout of the last run
  Tensor back;              // an NHWC output transposed back to NCHW (validation)
  Tensor x_t, dy_t, out_t;  // with_transposes' conversions
  // Per (pass, layout): the fastest algorithm, checked, or why there is none. Made on the row's first call (Google
  // Benchmark calls a row several times while it sizes the iteration count).
  struct Choice {
    int algo = -1;
    std::string error;
  };
  std::map<std::pair<int, int>, Choice> chosen;
  std::map<int, double> nchw_mean;     // pass -> s, from the nchw row (registered first)
  std::map<int, double> transpose_s;   // pass -> s of run_transposes, measured once
};

cuda::ConvGeom tf32_geom(const LayerData& d) {
  cuda::ConvGeom g = cuda::conv_geom(d.x.shape(), d.w.shape(), d.dy.shape(), d.a);
  g.tf32 = true;
  return g;
}

LayoutData& layout_data(LayerData& d) {
  static LayoutData t;
  if (t.name == d.name) return t;
  t = LayoutData{};
  t.name = d.name;
  Gpu& G = gpu();
  const cuda::ConvGeom g = tf32_geom(d);
  const auto dev = [](const Shape& s) { return Tensor::empty(s, DType::F32, Device::CUDA); };
  t.x = dev(Shape{g.N, g.H, g.W, g.C}), t.w = dev(Shape{g.K, g.R, g.S, g.Cg()}), t.dy = dev(Shape{g.N, g.P, g.Q, g.K});
  cuda::batched_transpose(G.ctx, d.x.data<float>(), g.N, g.C, g.hw(), t.x.data<float>());
  cuda::batched_transpose(G.ctx, d.w.data<float>(), g.K, g.Cg(), g.rs(), t.w.data<float>());
  cuda::batched_transpose(G.ctx, d.dy.data<float>(), g.N, g.K, g.pq(), t.dy.data<float>());
  t.y = dev(d.dy.shape()), t.dx = dev(d.x.shape()), t.dw = dev(d.w.shape());
  t.back = dev(Shape{std::max({t.y.numel(), t.dx.numel(), t.dw.numel()})});
  t.x_t = dev(d.x.shape()), t.dy_t = dev(d.dy.shape()), t.out_t = dev(t.back.shape());
  G.dev.synchronize();
  return t;
}

// One cuDNN pass of d in `layout` with algorithm `algo` (-1: the heuristic choice) into t.y / t.dx / t.dw (the
// weight gradient accumulates).
void run_layout(LayerData& d, LayoutData& t, Pass pass, CudnnLayout layout, int algo) {
  Gpu& G = gpu();
  const cuda::ConvGeom g = tf32_geom(d);
  const bool nhwc = layout == CudnnLayout::NHWC;
  const float* x = (nhwc ? t.x : d.x).data<float>();
  const float* w = (nhwc ? t.w : d.w).data<float>();
  const float* dy = (nhwc ? t.dy : d.dy).data<float>();
  if (pass == Pass::Fwd)
    cuda::cudnn_conv_forward(G.ctx, g, x, w, t.y.data<float>(), algo, layout);
  else if (pass == Pass::Dgrad)
    cuda::cudnn_conv_dgrad(G.ctx, g, dy, w, t.dx.data<float>(), algo, layout);
  else
    cuda::cudnn_conv_wgrad(G.ctx, g, dy, x, t.dw.data<float>(), algo, layout);
}

// An NHWC output (pass's: y [N,P,Q,K], dx [N,H,W,C], dw [K,R,S,C/G]) transposed back to NCHW (KCRS), from `out`
// into `to`; the conversions with_transposes counts use the same.
void output_to_nchw(const cuda::ConvGeom& g, Pass pass, const float* out, float* to) {
  Gpu& G = gpu();
  if (pass == Pass::Fwd)
    cuda::batched_transpose(G.ctx, out, g.N, g.pq(), g.K, to);
  else if (pass == Pass::Dgrad)
    cuda::batched_transpose(G.ctx, out, g.N, g.hw(), g.C, to);
  else
    cuda::batched_transpose(G.ctx, out, g.K, g.rs(), g.Cg(), to);
}

Tensor& output_of(LayoutData& t, Pass pass) { return pass == Pass::Fwd ? t.y : pass == Pass::Dgrad ? t.dx : t.dw; }

// The last run's output as NCHW on the host.
Tensor host_output(LayerData& d, LayoutData& t, Pass pass, CudnnLayout layout) {
  const Tensor& out = output_of(t, pass);
  if (layout == CudnnLayout::NCHW) return out.to(Device::CPU);
  output_to_nchw(tf32_geom(d), pass, out.data<float>(), t.back.data<float>());
  gpu().dev.synchronize();
  return t.back.slice0(0, out.numel()).reshape(out.shape()).to(Device::CPU);
}

// with_transposes' extra work: the pass's activation input(s) to NHWC and its output back to NCHW. (Not the weights:
// 0.1-2.4 M floats per layer against the activations' 0.4-51 M at batch 64; in training they would be converted once
// per step.)
void run_transposes(LayerData& d, LayoutData& t, Pass pass) {
  Gpu& G = gpu();
  const cuda::ConvGeom g = tf32_geom(d);
  if (pass != Pass::Dgrad) cuda::batched_transpose(G.ctx, d.x.data<float>(), g.N, g.C, g.hw(), t.x_t.data<float>());
  if (pass != Pass::Fwd) cuda::batched_transpose(G.ctx, d.dy.data<float>(), g.N, g.K, g.pq(), t.dy_t.data<float>());
  output_to_nchw(g, pass, output_of(t, pass).data<float>(), t.out_t.data<float>());
}

// The fastest of the algorithms Auto would time for (pass, layout) (3 calls each after one untimed), its result
// checked against cuDNN's heuristic NCHW algorithm (tests/cuda_conv_backends compares every algorithm of both
// layouts with the CPU on smaller shapes).
LayoutData::Choice choose_algorithm(LayerData& d, LayoutData& t, Pass pass, CudnnLayout layout) {
  Gpu& G = gpu();
  LayoutData::Choice c;
  try {
    double best_s = INFINITY;
    std::string refused;  // the first algorithm cuDNN listed and then did not run, as Auto leaves it out
    for (int algo : cuda::cudnn_conv_algorithms(G.ctx, static_cast<cuda::CudnnPass>(pass), tf32_geom(d), 4, layout)) {
      try {
        const double sec = mean_seconds([&] { run_layout(d, t, pass, layout, algo); }, 3);
        if (sec < best_s) best_s = sec, c.algo = algo;
      } catch (const std::exception& ex) {
        if (refused.empty()) refused = cat("algorithm ", algo, ": ", ex.what());
        G.dev.synchronize();  // (a device fault would surface here and end the row through the outer catch)
        G.arena.reset();
      }
    }
    const auto host_result = [&](CudnnLayout lay, int algo) {  // dw from zero: the weight gradient accumulates
      t.dw.zero();
      sync_all();
      run_layout(d, t, pass, lay, algo);
      G.dev.synchronize();
      return host_output(d, t, pass, lay);
    };
    if (c.algo < 0) {
      c.error = refused.empty() ? "no algorithm" : "no algorithm ran; " + refused;
    } else {
      const Tensor ref = host_result(CudnnLayout::NCHW, -1);
      const double e = rel_err(host_result(layout, c.algo), ref);
      if (!(e <= kTol))
        c.error = cat(layout_name(layout), " algorithm ", c.algo, " vs NCHW's heuristic choice: ", e, " of the maximum");
    }
  } catch (const std::exception& ex) {
    c.error = ex.what();
  }
  G.arena.reset();
  return c;
}

void BM_conv_layout(benchmark::State& st, Layer l, Pass pass, CudnnLayout layout) {
  if (!cuda_available()) {
    st.SkipWithError("no CUDA device");
    return;
  }
  LayerData& d = layer_data(l);
  LayoutData& t = layout_data(d);
  const auto key = std::make_pair(static_cast<int>(pass), static_cast<int>(layout));
  if (!t.chosen.count(key)) t.chosen[key] = choose_algorithm(d, t, pass, layout);
  const LayoutData::Choice& c = t.chosen[key];
  if (!c.error.empty()) {
    st.SkipWithError(c.error.c_str());
    return;
  }
  const int best = c.algo;
  const double mean = timed_iterations(st, [&] { run_layout(d, t, pass, layout, best); });
  st.counters["TFLOP/s"] = mean > 0 ? conv_flops(l, kBatch) / mean * 1e-12 : 0;
  st.counters["algo"] = best;
  st.counters["count"] = l.count;  // (tools/summarize_conv_layout.py weights the layer by it)
  if (layout == CudnnLayout::NCHW) {
    t.nchw_mean[static_cast<int>(pass)] = mean;
    return;
  }
  const auto it = t.nchw_mean.find(static_cast<int>(pass));
  if (it == t.nchw_mean.end() || !(it->second > 0)) return;  // (the nchw row was filtered out or failed)
  st.counters["nhwc/nchw"] = mean / it->second;
  if (!t.transpose_s.count(static_cast<int>(pass)))
    t.transpose_s[static_cast<int>(pass)] = mean_seconds([&] { run_transposes(d, t, pass); }, 5);
  st.counters["with_transposes/nchw"] = (mean + t.transpose_s[static_cast<int>(pass)]) / it->second;
}

#else  // no CUDA in this build

enum class ConvBackend { Custom, Cudnn, Cublas };
void BM_conv(benchmark::State& st, Layer, Pass, ConvBackend) { st.SkipWithError("no CUDA device"); }
void BM_gemm(benchmark::State& st, GemmSize, bool) { st.SkipWithError("no CUDA device"); }
void BM_conv_bn_relu(benchmark::State& st, Layer, BnVariant) { st.SkipWithError("no CUDA device"); }
enum class CudnnLayout { NCHW, NHWC };
const char* layout_name(CudnnLayout l) { return l == CudnnLayout::NHWC ? "nhwc" : "nchw"; }
void BM_conv_layout(benchmark::State& st, Layer, Pass, CudnnLayout) { st.SkipWithError("no CUDA device"); }

#endif

void register_all() {
  for (const Layer& l : kLayers)
    for (Pass p : {Pass::Fwd, Pass::Dgrad, Pass::Wgrad})
      for (ConvBackend be : {ConvBackend::Cudnn, ConvBackend::Custom, ConvBackend::Cublas}) {
        // cuBLAS: the forward and dgrad of 1x1 stride-1 layers (cuda/conv_pointwise_gemm.h)
        if (be == ConvBackend::Cublas && !(l.r == 1 && l.stride == 1 && l.pad == 0 && p != Pass::Wgrad)) continue;
        const char* backend = be == ConvBackend::Custom ? "custom" : be == ConvBackend::Cudnn ? "cudnn" : "cublas";
        const std::string name = cat("conv/", l.name, "/", pass_name(p), "/", backend);
        benchmark::RegisterBenchmark(name.c_str(), BM_conv, l, p, be)->UseManualTime()->Unit(benchmark::kMicrosecond);
      }
  for (const Layer& l : kLayers)
    for (BnVariant v : {BnVariant::BnPass, BnVariant::Fold, BnVariant::FusedOnly}) {
      const std::string name = cat("conv_bn_relu/", l.name, "/", bn_variant_name(v));
      benchmark::RegisterBenchmark(name.c_str(), BM_conv_bn_relu, l, v)->UseManualTime()->Unit(benchmark::kMicrosecond);
    }
  for (const Layer& l : kLayers)
    for (Pass p : {Pass::Fwd, Pass::Dgrad, Pass::Wgrad})
      for (CudnnLayout lay : {CudnnLayout::NCHW, CudnnLayout::NHWC}) {
        const std::string name = cat("conv_layout/", l.name, "/", pass_name(p), "/", layout_name(lay));
        benchmark::RegisterBenchmark(name.c_str(), BM_conv_layout, l, p, lay)
            ->UseManualTime()
            ->Unit(benchmark::kMicrosecond);
      }
  for (const GemmSize& s : kGemms)
    for (bool custom : {false, true}) {
      const std::string name = cat("gemm/", s.name, "/", custom ? "custom" : "cublas_tf32");
      benchmark::RegisterBenchmark(name.c_str(), BM_gemm, s, custom)->UseManualTime()->Unit(benchmark::kMicrosecond);
    }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  return sal::bench::run_benchmarks(argc, argv);
}
