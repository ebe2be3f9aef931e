// Convolutions on CUDA: backend choice (custom kernels, cuDNN, cuBLAS for 1x1 convolutions, or timed once
// per shape) and the op-level entry points. See cuda/conv_backend.h.
#include "cuda/conv_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/batchnorm.h"
#include "cuda/check.cuh"
#include "cuda/conv_auto_cache.h"
#include "cuda/conv_bn_fold.h"
#include "cuda/conv_igemm.h"
#include "cuda/conv_nhwc.h"
#include "cuda/conv_pointwise_gemm.h"
#include "cuda/cublas_gemm.h"
#include "cuda/cudnn_conv.h"
#include "cuda/launch.cuh"

namespace sal::cuda {

namespace {

std::once_flag g_env_once;
std::atomic<int> g_backend{static_cast<int>(ConvBackend::Auto)};
std::atomic<int> g_math{static_cast<int>(ConvMath::TF32)};
std::atomic<bool> g_fold_bn{true};
std::atomic<bool> g_nhwc{false};
std::atomic<int64_t> g_custom{0}, g_cudnn{0}, g_cublas{0}, g_folded{0}, g_nhwc_runs{0}, g_timed{0};

// Auto's choices and their file (cuda/conv_auto_cache.h), both under choices_mutex().
std::mutex& choices_mutex() {
  static std::mutex mu;
  return mu;
}
ConvChoices& choices() {
  static ConvChoices m;
  return m;
}
std::string g_cache_path;     // SAL_CONV_AUTO_CACHE or set_conv_auto_cache; empty: no file
bool g_cache_loaded = false;  // the file's choices are in choices() (read on the first lookup)
std::string g_cache_device;   // cache_device() when the file was loaded, for the writes after it (one GPU a process)

void read_env_once() {
  std::call_once(g_env_once, [] {
    const char* s = std::getenv("SAL_CONV_BACKEND");
    if (s && *s) g_backend.store(static_cast<int>(parse_conv_backend(s)));
    const char* m = std::getenv("SAL_CONV_MATH");
    if (m && *m) g_math.store(static_cast<int>(parse_conv_math(m)));
    const char* f = std::getenv("SAL_CONV_FOLD_BN");
    if (f && *f) g_fold_bn.store(parse_conv_fold_bn(f));
    const char* h = std::getenv("SAL_CONV_NHWC");
    if (h && *h) g_nhwc.store(parse_conv_nhwc(h));
    const char* c = std::getenv("SAL_CONV_AUTO_CACHE");
    std::lock_guard<std::mutex> lock(choices_mutex());
    if (c && *c) g_cache_path = c;
  });
}

// What a cache file's choices are valid for: the GPU model and the cuDNN that were timed.
std::string cache_device() {
  int dev = 0;
  SAL_CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  SAL_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  return cat(prop.name, " (cuDNN ", cudnn_runtime_version(), ")");
}

// FwdFused: a forward with an epilogue beyond the bias (conv2d_bn_act), timed apart from the plain one:
// the cuDNN side then includes the epilogue pass.
// FwdFusedRelu / FwdFusedNone (and *Res, with a shortcut sum): the same with ReLU / no activation, the two that
// cuDNN's fused convolution + bias + activation can run with the batch norm folded (FwdFused is then ReLU6's).
// Apart because a fold chosen for one activation may not run with another (no activation: one cuDNN algorithm
// only), and ResNet-50 has the same geometry with both (layer 1's 1x1 64 -> 256 at 56x56: the bottlenecks'
// expansion with ReLU after the shortcut sum, the projection shortcut with neither); and with and without the
// shortcut sum because cuDNN takes it as a second input (z), which a choice timed without it never ran with.
// (The cache file names the passes in this order: cuda/conv_auto_cache.cpp.)
enum class Pass { Fwd, FwdFused, Dgrad, Wgrad, FwdFusedRelu, FwdFusedNone, FwdFusedReluRes, FwdFusedNoneRes };
static_assert(static_cast<int>(Pass::FwdFusedNoneRes) == 7, "cuda/conv_auto_cache.cpp names eight passes");
static_assert(static_cast<int>(Pass::FwdFusedRelu) == 4 && static_cast<int>(Pass::FwdFusedNone) == 5 &&
                  static_cast<int>(Pass::FwdFusedReluRes) == 6,
              "cuda/conv_auto_cache.h's conv_pass_can_fold / conv_pass_has_no_activation number them so");

static_assert(static_cast<int>(Pass::Fwd) == 0 && static_cast<int>(Pass::Dgrad) == 2 &&
                  static_cast<int>(Pass::Wgrad) == 3,
              "cuda/conv_auto_cache.h's conv_pass_can_nhwc numbers them so");

bool fold_pass(Pass p) { return conv_pass_can_fold(static_cast<int64_t>(p)); }
bool nhwc_pass(Pass p) { return conv_pass_can_nhwc(static_cast<int64_t>(p)); }
bool no_activation_pass(Pass p) { return conv_pass_has_no_activation(static_cast<int64_t>(p)); }

ConvChoiceKey key_of(Pass pass, const ConvGeom& g) {
  return ConvChoiceKey{static_cast<int64_t>(pass), g.N, g.C, g.H, g.W, g.K, g.P, g.Q, g.R, g.S, g.G, g.sh, g.sw,
                       g.pt, g.pl, g.dh, g.dw, g.tf32};
}

// Runs one pass with the given backend (and, for cuDNN, algorithm) into the given output.
using RunFn = std::function<void(const ConvChoice&, float*)>;

struct Events {
  cudaEvent_t start = nullptr, stop = nullptr;
  Events() {
    SAL_CUDA_CHECK(cudaEventCreate(&start));
    SAL_CUDA_CHECK(cudaEventCreate(&stop));
  }
  ~Events() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  Events(const Events&) = delete;
  Events& operator=(const Events&) = delete;
};

// Best of three timed runs after one untimed run (module loading, cuDNN plan building), in ms.
float time_ms(cudaStream_t stream, const std::function<void()>& run) {
  Events ev;
  run();
  float best = std::numeric_limits<float>::infinity();
  for (int i = 0; i < 3; ++i) {
    SAL_CUDA_CHECK(cudaEventRecord(ev.start, stream));
    run();
    SAL_CUDA_CHECK(cudaEventRecord(ev.stop, stream));
    SAL_CUDA_CHECK(cudaEventSynchronize(ev.stop));
    float ms = 0;
    SAL_CUDA_CHECK(cudaEventElapsedTime(&ms, ev.start, ev.stop));
    best = std::min(best, ms);
  }
  return best;
}

// cuBLAS runs a pass that is one strided-batched GEMM (cuda/conv_pointwise_gemm.h): not a weight gradient.
bool cublas_takes(Pass pass, const ConvGeom& g) { return pass != Pass::Wgrad && pointwise_gemm_applies(g); }

// The backend a pass runs on without timing: the one set, where it can take the pass (cuDNN cannot take some
// paddings, cuBLAS only 1x1 convolutions: then cuDNN, else the custom kernels); Auto where choose() decides,
// which is wherever a second backend can take the pass.
ConvBackend fixed_backend(Pass pass, const ConvGeom& g) {
  const bool cudnn = cudnn_conv_supported(g), cublas = cublas_takes(pass, g);
  const ConvBackend fallback = cudnn ? ConvBackend::Cudnn : ConvBackend::Custom;
  switch (conv_backend()) {
    case ConvBackend::Custom:
      return ConvBackend::Custom;
    case ConvBackend::Cudnn:
      return fallback;
    case ConvBackend::Cublas:
      return cublas ? ConvBackend::Cublas : fallback;
    case ConvBackend::Auto:
      return cudnn || cublas ? ConvBackend::Auto : ConvBackend::Custom;
  }
  return ConvBackend::Custom;
}

// cuDNN's pass for one of ours (a fused forward is cuDNN's forward, then the epilogue pass).
CudnnPass cudnn_pass(Pass pass) {
  return pass == Pass::Dgrad ? CudnnPass::Dgrad : pass == Pass::Wgrad ? CudnnPass::Wgrad : CudnnPass::Fwd;
}

// cuDNN algorithms Auto times per pass (the heuristics' first few; PyTorch's cudnn.benchmark times all).
constexpr int kCudnnAlgorithmsTimed = 4;

// What runs this (pass, shape); Auto times every backend that can take it (and cuDNN's first few algorithms,
// cudnn_conv_algorithms) on the first call of a shape. A conv2d_bn_act forward whose activation cuDNN's fused
// convolution + bias + activation has has, in TF32 and with the fold allowed (SAL_CONV_FOLD_BN), the batch norm
// folded into the weights timed too: with ReLU with each of those cuDNN algorithms, with no activation with
// IMPLICIT_PRECOMP_GEMM (by number: it may not be among the first few). With the fold not allowed, a choice that
// folds (made earlier, or from a choices file) is timed again. Likewise, with SAL_CONV_NHWC, the plain passes have
// cuDNN's first few NHWC algorithms timed with the conversions around them (cuda/conv_nhwc.h).
ConvChoice choose(Ctx& ctx, Pass pass, const ConvGeom& g, int64_t out_elems, const RunFn& run) {
  const ConvBackend fixed = fixed_backend(pass, g);
  if (fixed != ConvBackend::Auto) return ConvChoice{fixed, -1};
  const bool fold = fold_pass(pass) && g.tf32 && conv_fold_bn();
  const bool nhwc = nhwc_pass(pass) && g.tf32 && conv_nhwc();
  const ConvChoiceKey key = key_of(pass, g);
  std::string cache;
  {
    std::lock_guard<std::mutex> lock(choices_mutex());
    cache = g_cache_path;
    if (!cache.empty() && !g_cache_loaded) {  // the file's choices first (ours, timed earlier, win)
      g_cache_device = cache_device();
      for (const auto& [k, b] : read_conv_choices(cache, g_cache_device)) choices().emplace(k, b);
      g_cache_loaded = true;
    }
    auto it = choices().find(key);
    if (it != choices().end() && (fold || !it->second.fold_bn) && (nhwc || !it->second.nhwc)) return it->second;
  }
  // Scratch output: forward and dgrad overwrite it, wgrad accumulates into it (its values are
  // never read), so the caller's tensors are untouched.
  DeviceScratch scratch(ctx);
  float* tmp = scratch.floats(out_elems);
  // Each candidate's temporaries (cuDNN's workspace, the custom kernels' split-K sums) are taken and released
  // inside its runs: the arena keeps what its untimed first run grows, so no timed run times a cudaMalloc or a
  // cudaFree (the kept blocks go when `scratch` releases, after the timing).
  const Arena::KeepGrowth keep(ctx.arena);
  const cudaStream_t stream = stream_of(ctx);
  ConvChoice pick{ConvBackend::Custom, -1};
  float best = time_ms(stream, [&] { run(pick, tmp); });
  const auto consider = [&](const ConvChoice& c) {
    try {
      const float t = time_ms(stream, [&] { run(c, tmp); });
      if (t < best) best = t, pick = c;
    } catch (const std::exception& e) {
      // The library refused this shape at run time (an API error): not a candidate. A device fault instead leaves
      // the context unusable, and the run stops here, naming the candidate, rather than at some later call.
      const cudaError_t st = cudaStreamSynchronize(stream);
      if (st != cudaSuccess)
        fail("conv Auto: timing the ", conv_choice_name(c), " candidate for a ", g.N, "x", g.C, "x", g.H, "x", g.W,
             " -> ", g.K, "x", g.P, "x", g.Q, " convolution left the device in error (", cudaGetErrorString(st),
             "): ", e.what());
      // A refused allocation (a candidate's temporaries: cuDNN's workspace, the NHWC copies) leaves the runtime's
      // last error set without harming the device; cleared, so that the next launch check does not report it.
      (void)cudaGetLastError();
      // NOT_SUPPORTED is a shape the library does not take; BAD_PARAM is an argument it calls wrong, i.e. a bug
      // of ours that Auto would otherwise hide by running another candidate: said once per process.
      static std::once_flag said;
      if (std::string(e.what()).find("BAD_PARAM") != std::string::npos)
        std::call_once(said, [&] {
          std::fprintf(stderr, "warning: conv Auto: the %s candidate was refused with a bad-argument status (left "
                       "out; further ones not reported): %s\n", conv_choice_name(c).c_str(), e.what());
        });
    }
  };
  if (cudnn_conv_supported(g)) {
    // cuDNN's first few algorithms in a layout: the heuristic choice first, as itself (-1: what a run with cuDNN set
    // would run), the others by number; none when it has no usable one (then cuDNN in that layout is no candidate).
    const auto cudnn_algorithms = [&](CudnnLayout layout) {
      std::vector<int> algos;
      try {
        algos = cudnn_conv_algorithms(ctx, cudnn_pass(pass), g, kCudnnAlgorithmsTimed, layout);
      } catch (const std::exception&) {
        algos.clear();
      }
      if (!algos.empty()) algos[0] = -1;
      return algos;
    };
    for (const int algo : cudnn_algorithms(CudnnLayout::NCHW)) {
      consider(ConvChoice{ConvBackend::Cudnn, algo, false});
      if (fold && !no_activation_pass(pass)) consider(ConvChoice{ConvBackend::Cudnn, algo, true});
    }
    if (fold && no_activation_pass(pass)) consider(ConvChoice{ConvBackend::Cudnn, kCudnnFusedNoActivationAlgo, true});
    if (nhwc)
      for (const int algo : cudnn_algorithms(CudnnLayout::NHWC))
        consider(ConvChoice{ConvBackend::Cudnn, algo, false, true});
  }
  if (cublas_takes(pass, g)) consider(ConvChoice{ConvBackend::Cublas, -1});
  g_timed.fetch_add(1);
  std::lock_guard<std::mutex> lock(choices_mutex());
  choices()[key] = pick;  // (replaces a fold or NHWC choice timed again with it not allowed)
  if (!cache.empty() && cache == g_cache_path) {
    // Keeping the choices is a convenience: a file that cannot be written costs this run nothing but a
    // warning (once), and the run goes on with what it timed.
    try {
      write_conv_choices(cache, g_cache_device, choices());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "warning: %s; convolution backend choices are no longer written to it\n", e.what());
      g_cache_path.clear();
    }
  }
  return pick;
}

void execute(Ctx& ctx, Pass pass, const ConvGeom& g, int64_t out_elems, float* out, const RunFn& run) {
  const ConvChoice c = choose(ctx, pass, g, out_elems, run);
  run(c, out);
  const ConvBackend b = c.backend;
  (b == ConvBackend::Cudnn ? g_cudnn : b == ConvBackend::Cublas ? g_cublas : g_custom).fetch_add(1);
  if (c.fold_bn) g_folded.fetch_add(1);
  if (c.nhwc) g_nhwc_runs.fetch_add(1);
}

// y = conv(x, w) + bias[K] (epi: the bias or nothing; conv2d_bn_act has its own runner below)
void forward(Ctx& ctx, const ConvGeom& g, const float* x, const float* w, const ConvEpilogue& epi, float* y) {
  const int64_t n = g.N * g.K * g.pq();
  if (n == 0) return;
  SAL_CHECK(!epi.scale && !epi.residual && epi.act == Activation::None, "conv forward: epilogue beyond a bias");
  execute(ctx, Pass::Fwd, g, n, y, [&](const ConvChoice& c, float* out) {
    if (c.backend == ConvBackend::Custom) {
      custom_conv_forward(ctx, g, x, w, epi, out);
      return;
    }
    if (c.backend == ConvBackend::Cublas)
      cublas_pointwise(ctx, pointwise_forward_gemm(g), w, x, out, g.tf32);
    else if (c.nhwc)
      cudnn_nhwc_forward(ctx, g, x, w, out, c.cudnn_algo);
    else
      cudnn_conv_forward(ctx, g, x, w, out, c.cudnn_algo);
    channel_epilogue(ctx, out, epi, g.N, g.K, g.pq());
  });
}

// dx = input gradient of dy (+ bias[C]: a transposed conv's forward)
void dgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* w, const float* bias, float* dx) {
  const int64_t n = g.N * g.C * g.hw();
  if (n == 0) return;
  execute(ctx, Pass::Dgrad, g, n, dx, [&](const ConvChoice& c, float* out) {
    if (c.backend == ConvBackend::Custom) {
      custom_conv_dgrad(ctx, g, dy, w, bias, out);
      return;
    }
    if (c.backend == ConvBackend::Cublas)
      cublas_pointwise(ctx, pointwise_dgrad_gemm(g), w, dy, out, g.tf32);
    else if (c.nhwc)
      cudnn_nhwc_dgrad(ctx, g, dy, w, out, c.cudnn_algo);
    else
      cudnn_conv_dgrad(ctx, g, dy, w, out, c.cudnn_algo);
    if (bias) channel_bias_add(ctx, out, bias, g.N, g.C, g.hw());
  });
}

// dw += weight gradient of (dy, x)
void wgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* x, float* dw) {
  const int64_t n = g.K * g.crs();
  if (n == 0 || g.N * g.pq() == 0) return;
  execute(ctx, Pass::Wgrad, g, n, dw, [&](const ConvChoice& c, float* out) {
    SAL_CHECK(c.backend != ConvBackend::Cublas, "conv wgrad: cuBLAS does not run weight gradients");
    if (c.backend == ConvBackend::Custom)
      custom_conv_wgrad(ctx, g, dy, x, out);
    else if (c.nhwc)
      cudnn_nhwc_wgrad(ctx, g, dy, x, out, c.cudnn_algo);
    else
      cudnn_conv_wgrad(ctx, g, dy, x, out, c.cudnn_algo);
  });
}

const float* ptr_or_null(const Tensor* t) { return t ? t->data<float>() : nullptr; }

std::string lower(std::string_view name) {
  std::string s(name);
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The geometry with the current arithmetic setting.
ConvGeom with_math(ConvGeom g) {
  g.tf32 = conv_math() == ConvMath::TF32;
  return g;
}

}  // namespace

ConvBackend conv_backend() {
  read_env_once();
  return static_cast<ConvBackend>(g_backend.load());
}

void set_conv_backend(ConvBackend backend) {
  read_env_once();  // so that a later first read cannot override this
  g_backend.store(static_cast<int>(backend));
}

ConvBackend parse_conv_backend(std::string_view name) {
  const std::string s = lower(name);
  if (s == "custom") return ConvBackend::Custom;
  if (s == "cudnn") return ConvBackend::Cudnn;
  if (s == "cublas") return ConvBackend::Cublas;
  if (s == "auto") return ConvBackend::Auto;
  fail("SAL_CONV_BACKEND / parse_conv_backend: unknown convolution backend '", std::string(name),
       "' (expected custom, cudnn, cublas or auto)");
}

const char* conv_backend_name(ConvBackend backend) {
  switch (backend) {
    case ConvBackend::Custom:
      return "custom";
    case ConvBackend::Cudnn:
      return "cudnn";
    case ConvBackend::Cublas:
      return "cublas";
    case ConvBackend::Auto:
      return "auto";
  }
  return "?";
}

ConvMath conv_math() {
  read_env_once();
  return static_cast<ConvMath>(g_math.load());
}

void set_conv_math(ConvMath math) {
  read_env_once();
  g_math.store(static_cast<int>(math));
}

ConvMath parse_conv_math(std::string_view name) {
  const std::string s = lower(name);
  if (s == "tf32") return ConvMath::TF32;
  if (s == "f32") return ConvMath::F32;
  fail("SAL_CONV_MATH / parse_conv_math: unknown convolution arithmetic '", std::string(name),
       "' (expected tf32 or f32)");
}

const char* conv_math_name(ConvMath math) { return math == ConvMath::TF32 ? "tf32" : "f32"; }

bool conv_fold_bn() {
  read_env_once();
  return g_fold_bn.load();
}

void set_conv_fold_bn(bool allowed) {
  read_env_once();
  g_fold_bn.store(allowed);
}

namespace {
bool parse_on_off(std::string_view value, const char* what) {
  const std::string s = lower(value);
  if (s == "1" || s == "on") return true;
  if (s == "0" || s == "off") return false;
  fail(what, ": expected 1, on, 0 or off, got '", std::string(value), "'");
}
}  // namespace

bool parse_conv_fold_bn(std::string_view value) { return parse_on_off(value, "SAL_CONV_FOLD_BN / parse_conv_fold_bn"); }

bool conv_nhwc() {
  read_env_once();
  return g_nhwc.load();
}

void set_conv_nhwc(bool allowed) {
  read_env_once();
  g_nhwc.store(allowed);
}

bool parse_conv_nhwc(std::string_view value) { return parse_on_off(value, "SAL_CONV_NHWC / parse_conv_nhwc"); }

ConvBackendCounts conv_backend_counts() {
  ConvBackendCounts n;
  n.custom = g_custom.load(), n.cudnn = g_cudnn.load(), n.cublas = g_cublas.load();
  n.folded = g_folded.load(), n.nhwc = g_nhwc_runs.load(), n.timed = g_timed.load();
  return n;
}

void reset_conv_backend_counts() {
  g_custom.store(0);
  g_cudnn.store(0);
  g_cublas.store(0);
  g_folded.store(0);
  g_nhwc_runs.store(0);
  g_timed.store(0);
}

void clear_conv_auto_choices() {
  std::lock_guard<std::mutex> lock(choices_mutex());
  choices().clear();
  g_cache_loaded = false;  // a choices file's entries come back on the next lookup
}

void set_conv_auto_cache(const std::string& path) {
  read_env_once();  // so that a later first read cannot override this
  std::lock_guard<std::mutex> lock(choices_mutex());
  g_cache_path = path;
  g_cache_loaded = false;
}

std::string conv_auto_cache() {
  read_env_once();
  std::lock_guard<std::mutex> lock(choices_mutex());
  return g_cache_path;
}

// ---------------------------------------------------------------- conv2d

void conv2d(Ctx& ctx, const Tensor& x, const Tensor& w, const Tensor* b, const Conv2dArgs& a, Tensor& y) {
  const ConvGeom g = with_math(conv_geom(x.shape(), w.shape(), y.shape(), a));
  forward(ctx, g, x.data<float>(), w.data<float>(), ConvEpilogue{ptr_or_null(b)}, y.data<float>());
}

void conv2d_bn_act(Ctx& ctx, const Tensor& x, const Tensor& w, const ConvBn& bn, const Tensor* residual, Activation act,
                   const Conv2dArgs& a, Tensor& y) {
  const ConvGeom g = with_math(conv_geom(x.shape(), w.shape(), y.shape(), a));
  const int64_t n = y.numel();
  if (n == 0) return;
  const Pass pass = act == Activation::ReLU6 ? Pass::FwdFused
                    : act == Activation::ReLU ? (residual ? Pass::FwdFusedReluRes : Pass::FwdFusedRelu)
                                              : (residual ? Pass::FwdFusedNoneRes : Pass::FwdFusedNone);
  execute(ctx, pass, g, n, y.data<float>(), [&](const ConvChoice& c, float* out) {
    if (c.backend == ConvBackend::Custom) {  // the kernel that stores y applies the batch norm, residual and activation
      DeviceScratch scratch(ctx);
      float* scale = scratch.floats(g.K);  // gamma / sqrt(var + eps), rounded once from double
      bn_epilogue_scale(ctx, bn.gamma->data<float>(), bn.var->data<float>(), bn.eps, g.K, scale);
      ConvEpilogue epi;
      epi.mean = bn.mean->data<float>(), epi.scale = scale, epi.beta = bn.beta->data<float>();
      epi.residual = ptr_or_null(residual), epi.act = act;
      custom_conv_forward(ctx, g, x.data<float>(), w.data<float>(), epi, out);
      return;
    }
    if (c.fold_bn) {  // one cuDNN call: the batch norm folded into the weights and a bias (cuda/conv_bn_fold.h)
      SAL_CHECK(fold_pass(pass), "conv2d_bn_act: the batch-norm fold runs ReLU or no activation, not ReLU6");
      DeviceScratch scratch(ctx);
      float* wf = scratch.floats(g.K * g.crs());
      float* bf = scratch.floats(g.K);
      bn_fold_conv_weights(ctx, w.data<float>(), bn.gamma->data<float>(), bn.beta->data<float>(),
                           bn.mean->data<float>(), bn.var->data<float>(), bn.eps, g.K, g.crs(), wf, bf);
      cudnn_conv_bias_act_forward(ctx, g, x.data<float>(), wf, bf, ptr_or_null(residual), act == Activation::ReLU,
                                  out, c.cudnn_algo);
      return;
    }
    // Unfolded: the conv (cuDNN's or cuBLAS's) into the output, then the batch-norm kernel's vectorised pass over
    // it in place (channel constants once per block). With a per-element epilogue kernel here instead, the
    // masker's fused inference took 16-38% longer at batch 64 than the unfused conv + batchnorm2d_infer_act (H200,
    // session 13).
    // Same arithmetic as the custom epilogue: (v - mean) * scale + beta with scale rounded once from double.
    if (c.backend == ConvBackend::Cublas)
      cublas_pointwise(ctx, pointwise_forward_gemm(g), w.data<float>(), x.data<float>(), out, g.tf32);
    else
      cudnn_conv_forward(ctx, g, x.data<float>(), w.data<float>(), out, c.cudnn_algo);
    Tensor yt = Tensor::view(out, y.shape(), DType::F32, Device::CUDA);  // in place: the kernel allows y == x
    batchnorm2d_infer_act(ctx, yt, *bn.gamma, *bn.beta, *bn.mean, *bn.var, bn.eps, residual, act, yt);
  });
}

void conv2d_dgrad(Ctx& ctx, const Tensor& dy, const Tensor& w, const Conv2dArgs& a, Tensor& dx) {
  const ConvGeom g = with_math(conv_geom(dx.shape(), w.shape(), dy.shape(), a));
  dgrad(ctx, g, dy.data<float>(), w.data<float>(), nullptr, dx.data<float>());
}

void conv2d_dgrad_bn_act(Ctx& ctx, const Tensor& dy, const Tensor& w, const ConvBnGate& gate, const Conv2dArgs& a,
                         Tensor& dx) {
  // The two ops' kernels: the frozen BN + activation backward into a temporary, then the input gradient.
  // (The CPU applies the gate while gathering dy; here that would be a change to the dgrad kernels' loads.)
  DeviceScratch scratch(ctx);
  Tensor dz = Tensor::view(scratch.floats(dy.numel()), dy.shape(), DType::F32, Device::CUDA);
  batchnorm2d_infer_act_backward(ctx, dy, *gate.y, *gate.gamma, *gate.var, gate.eps, gate.act, dz);
  conv2d_dgrad(ctx, dz, w, a, dx);
}

void conv2d_wgrad(Ctx& ctx, const Tensor& dy, const Tensor& x, const Conv2dArgs& a, Tensor& dw, Tensor* db) {
  const ConvGeom g = with_math(conv_geom(x.shape(), dw.shape(), dy.shape(), a));
  wgrad(ctx, g, dy.data<float>(), x.data<float>(), dw.data<float>());
  if (db) channel_sum_add(ctx, dy.data<float>(), g.N, g.K, g.pq(), db->data<float>());
}

// ---------------------------------------------------------------- conv_transpose2d
// In the conv2d view (transpose_geom) the transposed conv's output y is the input and its input x
// the output: forward = dgrad (bias fused), dgrad = forward, wgrad = wgrad with x and dy swapped.

void conv_transpose2d(Ctx& ctx, const Tensor& x, const Tensor& w, const Tensor* b, const ConvTranspose2dArgs& a,
                      Tensor& y) {
  const ConvGeom g = with_math(transpose_geom(x.shape(), w.shape(), y.shape(), a));
  dgrad(ctx, g, x.data<float>(), w.data<float>(), ptr_or_null(b), y.data<float>());
}

void conv_transpose2d_dgrad(Ctx& ctx, const Tensor& dy, const Tensor& w, const ConvTranspose2dArgs& a, Tensor& dx) {
  const ConvGeom g = with_math(transpose_geom(dx.shape(), w.shape(), dy.shape(), a));
  forward(ctx, g, dy.data<float>(), w.data<float>(), ConvEpilogue{}, dx.data<float>());
}

void conv_transpose2d_wgrad(Ctx& ctx, const Tensor& dy, const Tensor& x, const ConvTranspose2dArgs& a, Tensor& dw,
                            Tensor* db) {
  const ConvGeom g = with_math(transpose_geom(x.shape(), dw.shape(), dy.shape(), a));
  // conv2d view: dy is the input image, x the output gradient.
  wgrad(ctx, g, x.data<float>(), dy.data<float>(), dw.data<float>());
  if (db) channel_sum_add(ctx, dy.data<float>(), g.N, g.C, g.hw(), db->data<float>());
}

}  // namespace sal::cuda
