// The cuDNN wrapper (the only translation unit that includes cudnn.h): the handle of a
// CudaDevice, and convolution forward / backward data / backward filter through cuDNN's legacy
// convolution API (see cuda/cudnn_conv.h). Plans (descriptors + algorithm + workspace size) are
// built once per (pass, shape, memory layout, algorithm) and kept for the life of the process.
#include "cuda/cudnn_conv.h"

#include <cudnn.h>

#include <algorithm>
#include <array>
#include <climits>
#include <limits>
#include <map>
#include <memory>
#include <mutex>

#include "cuda/device.h"
#include "cuda/libraries.h"

#define SAL_CUDNN_CHECK(call)                                                                            \
  do {                                                                                                   \
    cudnnStatus_t sal_st_ = (call);                                                                      \
    if (sal_st_ != CUDNN_STATUS_SUCCESS)                                                                 \
      ::sal::fail(#call, " failed: ", cudnnGetErrorString(sal_st_), " (", __FILE__, ":", __LINE__, ")"); \
  } while (0)

namespace sal::cuda {

namespace {

// The handle of the context's device, bound to its stream. A CUDA Ctx without a CudaDevice
// uses one process-wide handle on the default stream.
cudnnHandle_t handle_for(Ctx& ctx) {
  auto* dev = static_cast<CudaDevice*>(ctx.cuda);
  if (!dev) {
    static cudnnHandle_t shared = [] {
      cudnnHandle_t h;
      SAL_CUDNN_CHECK(cudnnCreate(&h));
      return h;
    }();
    return shared;
  }
  if (!dev->cudnn) {
    cudnnHandle_t h;
    SAL_CUDNN_CHECK(cudnnCreate(&h));
    SAL_CUDNN_CHECK(cudnnSetStream(h, static_cast<cudaStream_t>(dev->stream())));
    dev->cudnn = h;
  }
  return static_cast<cudnnHandle_t>(dev->cudnn);
}

using Pass = CudnnPass;

// Workspaces above this are not considered (the arena would have to hold them).
constexpr size_t kMaxWorkspace = size_t{512} << 20;
// A timed candidate may use up to this much workspace beyond the heuristic choice's (cudnn_conv_algorithms).
constexpr size_t kTimedWorkspace = size_t{64} << 20;

struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;  // conv input, conv output
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  int algo = 0;
  size_t workspace = 0;
};

using Key = std::array<int64_t, 20>;

Key key_of(Pass pass, const ConvGeom& g, CudnnLayout layout, int algo) {
  return Key{static_cast<int64_t>(pass), g.N, g.C, g.H, g.W, g.K, g.P, g.Q, g.R, g.S, g.G, g.sh, g.sw, g.pt, g.pl,
             g.dh, g.dw, g.tf32, static_cast<int64_t>(layout), algo};
}

// The math type the heuristics are asked for: the default (TF32 allowed on Ampere and later) or, for
// g.tf32 = false, CUDNN_FMA_MATH ("restricted to kernels that use FMA instructions").
cudnnMathType_t math_of(const ConvGeom& g) { return g.tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH; }

// The descriptors of g in `layout`, with math_of(g).
void describe(Plan& pl, const ConvGeom& g, CudnnLayout layout) {
  SAL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&pl.x));
  SAL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&pl.y));
  SAL_CUDNN_CHECK(cudnnCreateFilterDescriptor(&pl.w));
  SAL_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&pl.conv));
  auto i = [](int64_t v) { return static_cast<int>(v); };
  // (The sizes are given in NCHW order either way; the format says how they lie in memory: NHWC is x:[N,H,W,C],
  // y:[N,P,Q,K], w:[K,R,S,C/G].)
  const cudnnTensorFormat_t f = layout == CudnnLayout::NHWC ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
  SAL_CUDNN_CHECK(cudnnSetTensor4dDescriptor(pl.x, f, CUDNN_DATA_FLOAT, i(g.N), i(g.C), i(g.H), i(g.W)));
  SAL_CUDNN_CHECK(cudnnSetTensor4dDescriptor(pl.y, f, CUDNN_DATA_FLOAT, i(g.N), i(g.K), i(g.P), i(g.Q)));
  SAL_CUDNN_CHECK(cudnnSetFilter4dDescriptor(pl.w, CUDNN_DATA_FLOAT, f, i(g.K), i(g.Cg()), i(g.R), i(g.S)));
  SAL_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(pl.conv, g.pt, g.pl, g.sh, g.sw, g.dh, g.dw, CUDNN_CROSS_CORRELATION,
                                                  CUDNN_DATA_FLOAT));
  SAL_CUDNN_CHECK(cudnnSetConvolutionGroupCount(pl.conv, i(g.G)));
  SAL_CUDNN_CHECK(cudnnSetConvolutionMathType(pl.conv, math_of(g)));
  int n = 0, k = 0, p = 0, q = 0;
  SAL_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(pl.conv, pl.x, pl.w, &n, &k, &p, &q));
  SAL_CHECK(n == g.N && k == g.K && p == g.P && q == g.Q, "cuDNN conv: output ", n, "x", k, "x", p, "x", q,
            " differs from the expected ", g.N, "x", g.K, "x", g.P, "x", g.Q, " (", __FILE__, ":", __LINE__, ")");
}

void destroy(Plan& pl) {  // (null descriptors are skipped)
  if (pl.x) cudnnDestroyTensorDescriptor(pl.x);
  if (pl.y) cudnnDestroyTensorDescriptor(pl.y);
  if (pl.w) cudnnDestroyFilterDescriptor(pl.w);
  if (pl.conv) cudnnDestroyConvolutionDescriptor(pl.conv);
}

// One heuristic result, whatever the pass.
struct Candidate {
  int algo;
  cudnnMathType_t math;
  size_t memory;
  bool deterministic;
};

// The acceptable results among `count`: succeeded, within the workspace limit, never converting f32 data to a
// type narrower than TF32 (for f32 math: no tensor-op kernel at all); in the heuristics' order.
template <class Perf>
std::vector<Candidate> acceptable(const Perf* perf, int count, bool f32_only) {
  std::vector<Candidate> out;
  for (int i = 0; i < count; ++i) {
    const Perf& r = perf[i];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > kMaxWorkspace) continue;
    if (r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    if (f32_only && r.mathType == CUDNN_TENSOR_OP_MATH) continue;
    out.push_back(Candidate{static_cast<int>(r.algo), r.mathType, r.memory, r.determinism == CUDNN_DETERMINISTIC});
  }
  return out;
}

// The acceptable heuristic results of (pass, g, layout), asked with fresh descriptors in math_of(g).
std::vector<Candidate> heuristics(cudnnHandle_t h, Pass pass, const ConvGeom& g, CudnnLayout layout) {
  struct Temporary {  // destroyed on every way out
    Plan d;
    ~Temporary() { destroy(d); }
  } t;
  Plan& d = t.d;
  describe(d, g, layout);
  std::vector<Candidate> out;
  int n = 0;
  if (pass == Pass::Fwd) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    SAL_CUDNN_CHECK(
        cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
    out = acceptable(perf, n, !g.tf32);
  } else if (pass == Pass::Dgrad) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    SAL_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x,
                                                                CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
    out = acceptable(perf, n, !g.tf32);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    SAL_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w,
                                                                  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
    out = acceptable(perf, n, !g.tf32);
  }
  const char* what = pass == Pass::Fwd ? "forward" : pass == Pass::Dgrad ? "backward data" : "backward filter";
  SAL_CHECK(!out.empty(), "cuDNN ", what, ": no usable ", g.tf32 ? "" : "f32 (non-tensor-op) ", "algorithm among ", n,
            " heuristic results (", __FILE__, ":", __LINE__, ")");
  return out;
}

// The gradients prefer reproducible algorithms: only those, when there are any.
bool wants_deterministic(Pass pass, const std::vector<Candidate>& c) {
  return pass != Pass::Fwd && std::any_of(c.begin(), c.end(), [](const Candidate& x) { return x.deterministic; });
}

// The heuristic choice: the first acceptable result (for the gradients the first deterministic one, if any).
const Candidate& preferred(Pass pass, const std::vector<Candidate>& c) {
  const bool det = wants_deterministic(pass, c);
  for (const Candidate& x : c)
    if (!det || x.deterministic) return x;
  return c.front();
}

// The candidates worth timing, in the heuristics' order, each algorithm once (the heuristics may list one
// number twice, with two math types): the heuristic choice first, then those whose workspace is at most the
// larger of its and kTimedWorkspace (for the gradients, deterministic ones only when there are any). Both
// cudnn_conv_algorithms and a plan for a numbered algorithm take them from here, so a number means the same
// entry (math type, workspace, determinism) in both.
std::vector<Candidate> timed_candidates(Pass pass, const std::vector<Candidate>& cands) {
  const Candidate& first = preferred(pass, cands);
  std::vector<Candidate> out = {first};
  const bool det = wants_deterministic(pass, cands);
  const size_t limit = std::max(first.memory, kTimedWorkspace);
  for (const Candidate& c : cands) {
    if (c.memory > limit || (det && !c.deterministic)) continue;
    if (std::none_of(out.begin(), out.end(), [&c](const Candidate& o) { return o.algo == c.algo; })) out.push_back(c);
  }
  return out;
}

// The descriptors, math type, algorithm and workspace size of candidate c.
void fill_plan(cudnnHandle_t h, Pass pass, const ConvGeom& g, CudnnLayout layout, const Candidate& c, Plan& pl) {
  describe(pl, g, layout);
  SAL_CUDNN_CHECK(cudnnSetConvolutionMathType(pl.conv, g.tf32 ? c.math : CUDNN_FMA_MATH));
  pl.algo = c.algo;
  if (pass == Pass::Fwd) {
    SAL_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, pl.x, pl.w, pl.conv, pl.y,
                                                            static_cast<cudnnConvolutionFwdAlgo_t>(pl.algo),
                                                            &pl.workspace));
  } else if (pass == Pass::Dgrad) {
    SAL_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(h, pl.w, pl.y, pl.conv, pl.x,
                                                                 static_cast<cudnnConvolutionBwdDataAlgo_t>(pl.algo),
                                                                 &pl.workspace));
  } else {
    SAL_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
        h, pl.x, pl.y, pl.conv, pl.w, static_cast<cudnnConvolutionBwdFilterAlgo_t>(pl.algo), &pl.workspace));
  }
  // The heuristics' memory figure (checked in `acceptable`) is an estimate; the size queried here is what the
  // call takes, held to the same limit.
  SAL_CHECK(pl.workspace <= kMaxWorkspace, "cuDNN: algorithm ", pl.algo, " asks for ", pl.workspace >> 20,
            " MiB of workspace, over the ", kMaxWorkspace >> 20, " MiB limit (its heuristic figure was ",
            c.memory >> 20, " MiB; ", __FILE__, ":", __LINE__, ")");
}

// The plan of candidate c; a plan that fails is not kept (its descriptors go with it).
Plan plan_of(cudnnHandle_t h, Pass pass, const ConvGeom& g, CudnnLayout layout, const Candidate& c) {
  Plan pl;
  try {
    fill_plan(h, pass, g, layout, c, pl);
  } catch (...) {
    destroy(pl);
    throw;
  }
  return pl;
}

// algo < 0: the heuristic choice, or when its plan fails (its workspace query refuses the shape, or the size
// is over the limit) the next acceptable result in the heuristics' order (for the gradients deterministic ones
// first); else that algorithm among the timed candidates.
Plan make_plan(cudnnHandle_t h, Pass pass, const ConvGeom& g, CudnnLayout layout, int algo) {
  const std::vector<Candidate> cands = heuristics(h, pass, g, layout);
  if (algo >= 0) {
    const std::vector<Candidate> timed = timed_candidates(pass, cands);
    auto it = std::find_if(timed.begin(), timed.end(), [algo](const Candidate& x) { return x.algo == algo; });
    SAL_CHECK(it != timed.end(), "cuDNN: algorithm ", algo, " is not among this cuDNN's usable algorithms for ",
              pass == Pass::Fwd ? "the forward" : pass == Pass::Dgrad ? "the input gradient" : "the weight gradient",
              " of a ", g.N, "x", g.C, "x", g.H, "x", g.W, " -> ", g.K, "x", g.P, "x", g.Q, " convolution",
              layout == CudnnLayout::NHWC ? " in NHWC" : "", " (", __FILE__, ":", __LINE__, ")");
    return plan_of(h, pass, g, layout, *it);
  }
  std::vector<Candidate> order = {preferred(pass, cands)};
  for (const bool det : {true, false})
    for (const Candidate& c : cands)
      if ((det == c.deterministic || !wants_deterministic(pass, cands)) &&
          std::none_of(order.begin(), order.end(), [&c](const Candidate& o) { return o.algo == c.algo; }))
        order.push_back(c);
  std::string first_error;
  for (const Candidate& c : order) {
    try {
      return plan_of(h, pass, g, layout, c);
    } catch (const std::exception& e) {
      if (first_error.empty()) first_error = e.what();
    }
  }
  fail("cuDNN: no plan among ", order.size(), " acceptable algorithms; the heuristic choice's: ", first_error);
}

// The cached plan of (pass, g, layout, algo). Plans live as long as the process (never destroyed: cuDNN may be
// unloaded before static destructors run).
const Plan& plan_for(cudnnHandle_t h, Pass pass, const ConvGeom& g, CudnnLayout layout, int algo) {
  static std::mutex mu;
  static auto* plans = new std::map<Key, std::unique_ptr<Plan>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*plans)[key_of(pass, g, layout, algo < 0 ? -1 : algo)];
  if (!slot) slot = std::make_unique<Plan>(make_plan(h, pass, g, layout, algo));
  return *slot;
}

// The fused forward's other descriptors: the bias [1,K,1,1] and the two activations it takes (ReLU; identity).
// One set per channel count for the life of the process (never destroyed, as the plans).
struct FusedDescriptors {
  cudnnTensorDescriptor_t bias = nullptr;
  cudnnActivationDescriptor_t relu = nullptr, identity = nullptr;
};

const FusedDescriptors& fused_descriptors(int64_t K) {
  static std::mutex mu;
  static auto* sets = new std::map<int64_t, std::unique_ptr<FusedDescriptors>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*sets)[K];
  if (!slot) {
    auto d = std::make_unique<FusedDescriptors>();
    SAL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->bias));
    SAL_CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(d->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, static_cast<int>(K), 1, 1));
    // ReLU as ours: a NaN not carried through (our kernels compute v > 0 ? v : 0, which gives 0 for NaN). The
    // coefficient is documented as ReLU's upper bound (clipped ReLU's): the largest double, as PyTorch passes.
    SAL_CUDNN_CHECK(cudnnCreateActivationDescriptor(&d->relu));
    SAL_CUDNN_CHECK(cudnnSetActivationDescriptor(d->relu, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN,
                                                 std::numeric_limits<double>::max()));
    SAL_CUDNN_CHECK(cudnnCreateActivationDescriptor(&d->identity));
    SAL_CUDNN_CHECK(cudnnSetActivationDescriptor(d->identity, CUDNN_ACTIVATION_IDENTITY, CUDNN_NOT_PROPAGATE_NAN, 0.0));
    slot = std::move(d);
  }
  return *slot;
}

void* workspace(DeviceScratch& scratch, size_t bytes) {
  return bytes ? scratch.floats(static_cast<int64_t>((bytes + 3) / 4)) : nullptr;
}

}  // namespace

bool cudnn_conv_supported(const ConvGeom& g) {
  if (g.N <= 0 || g.C <= 0 || g.H <= 0 || g.W <= 0 || g.K <= 0 || g.P <= 0 || g.Q <= 0 || g.R <= 0 || g.S <= 0 ||
      g.G <= 0)
    return false;
  if (g.C % g.G || g.K % g.G) return false;
  if (g.N * g.C * g.H * g.W > INT_MAX || g.N * g.K * g.P * g.Q > INT_MAX || g.K * g.crs() > INT_MAX) return false;
  const int64_t eff_r = int64_t{g.dh} * (g.R - 1) + 1, eff_s = int64_t{g.dw} * (g.S - 1) + 1;
  const int64_t span_h = g.H + 2 * int64_t{g.pt} - eff_r, span_w = g.W + 2 * int64_t{g.pl} - eff_s;
  if (span_h < 0 || span_w < 0) return false;
  return span_h / g.sh + 1 == g.P && span_w / g.sw + 1 == g.Q;
}

std::vector<int> cudnn_conv_algorithms(Ctx& ctx, CudnnPass pass, const ConvGeom& g, int max, CudnnLayout layout) {
  const std::vector<Candidate> timed = timed_candidates(pass, heuristics(handle_for(ctx), pass, g, layout));
  const int n = g.tf32 ? max : 1;  // f32: the heuristic choice alone
  std::vector<int> out;
  for (size_t i = 0; i < timed.size() && static_cast<int>(i) < n; ++i) out.push_back(timed[i].algo);
  return out;
}

void cudnn_conv_forward(Ctx& ctx, const ConvGeom& g, const float* x, const float* w, float* y, int algo,
                        CudnnLayout layout) {
  cudnnHandle_t h = handle_for(ctx);
  const Plan& pl = plan_for(h, Pass::Fwd, g, layout, algo);
  DeviceScratch scratch(ctx);
  void* ws = workspace(scratch, pl.workspace);
  const float alpha = 1.f, beta = 0.f;
  SAL_CUDNN_CHECK(cudnnConvolutionForward(h, &alpha, pl.x, x, pl.w, w, pl.conv,
                                          static_cast<cudnnConvolutionFwdAlgo_t>(pl.algo), ws, pl.workspace, &beta,
                                          pl.y, y));
}

static_assert(kCudnnFusedNoActivationAlgo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
              "cuda/cudnn_conv.h names IMPLICIT_PRECOMP_GEMM's number");

void cudnn_conv_bias_act_forward(Ctx& ctx, const ConvGeom& g, const float* x, const float* w, const float* bias,
                                 const float* z, bool relu, float* y, int algo) {
  cudnnHandle_t h = handle_for(ctx);
  const Plan& pl = plan_for(h, Pass::Fwd, g, CudnnLayout::NCHW, algo);
  SAL_CHECK(relu || pl.algo == kCudnnFusedNoActivationAlgo,
            "cuDNN's fused convolution + bias + activation runs without an activation only with its "
            "IMPLICIT_PRECOMP_GEMM algorithm, not algorithm ",
            pl.algo, " (", __FILE__, ":", __LINE__, ")");
  const FusedDescriptors& fd = fused_descriptors(g.K);
  DeviceScratch scratch(ctx);
  void* ws = workspace(scratch, pl.workspace);
  // No residual: z is y itself with alpha2 = 0 (cuDNN wants a z; PyTorch's fused conv + ReLU passes its
  // uninitialised output the same way). Whether cuDNN then reads y's old contents is checked on a GPU:
  // tests/cuda_conv_backends.cpp fills y with NaN first.
  const float alpha1 = 1.f, alpha2 = z ? 1.f : 0.f;
  SAL_CUDNN_CHECK(cudnnConvolutionBiasActivationForward(
      h, &alpha1, pl.x, x, pl.w, w, pl.conv, static_cast<cudnnConvolutionFwdAlgo_t>(pl.algo), ws, pl.workspace,
      &alpha2, pl.y, z ? z : y, fd.bias, bias, relu ? fd.relu : fd.identity, pl.y, y));
}

void cudnn_conv_dgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* w, float* dx, int algo,
                      CudnnLayout layout) {
  cudnnHandle_t h = handle_for(ctx);
  const Plan& pl = plan_for(h, Pass::Dgrad, g, layout, algo);
  DeviceScratch scratch(ctx);
  void* ws = workspace(scratch, pl.workspace);
  const float alpha = 1.f, beta = 0.f;
  SAL_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &alpha, pl.w, w, pl.y, dy, pl.conv,
                                               static_cast<cudnnConvolutionBwdDataAlgo_t>(pl.algo), ws, pl.workspace,
                                               &beta, pl.x, dx));
}

void cudnn_conv_wgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* x, float* dw, int algo,
                      CudnnLayout layout) {
  cudnnHandle_t h = handle_for(ctx);
  const Plan& pl = plan_for(h, Pass::Wgrad, g, layout, algo);
  DeviceScratch scratch(ctx);
  void* ws = workspace(scratch, pl.workspace);
  const float alpha = 1.f, beta = 1.f;  // accumulate into dw
  SAL_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &alpha, pl.x, x, pl.y, dy, pl.conv,
                                                 static_cast<cudnnConvolutionBwdFilterAlgo_t>(pl.algo), ws,
                                                 pl.workspace, &beta, pl.w, dw));
}

void release_cudnn(CudaDevice& dev) {
  if (dev.cudnn) cudnnDestroy(static_cast<cudnnHandle_t>(dev.cudnn));
  dev.cudnn = nullptr;
}

size_t cudnn_runtime_version() { return cudnnGetVersion(); }

}  // namespace sal::cuda
