// The cuDNN wrapper (the only translation unit that includes cudnn.h): the handle of a
// CudaDevice, and convolution forward / backward data / backward filter through cuDNN's legacy
// convolution API (see cuda/cudnn_conv.h). Plans (descriptors + algorithm + workspace size) are
// built once per (pass, shape) and kept for the life of the process.
#include "cuda/cudnn_conv.h"

#include <cudnn.h>

#include <array>
#include <climits>
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

enum class Pass { Fwd, Dgrad, Wgrad };

// Workspaces above this are not considered (the arena would have to hold them).
constexpr size_t kMaxWorkspace = size_t{512} << 20;

struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;  // conv input, conv output
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  int algo = 0;
  size_t workspace = 0;
};

using Key = std::array<int64_t, 18>;

Key key_of(Pass pass, const ConvGeom& g) {
  return Key{static_cast<int64_t>(pass), g.N, g.C, g.H, g.W, g.K, g.P, g.Q, g.R, g.S, g.G, g.sh, g.sw, g.pt, g.pl,
             g.dh, g.dw, g.tf32};
}

// The math type the heuristics are asked for: the default (TF32 allowed on Ampere and later) or, for
// g.tf32 = false, CUDNN_FMA_MATH ("restricted to kernels that use FMA instructions").
cudnnMathType_t math_of(const ConvGeom& g) { return g.tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH; }

// The descriptors of g, with math_of(g).
void describe(Plan& pl, const ConvGeom& g) {
  SAL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&pl.x));
  SAL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&pl.y));
  SAL_CUDNN_CHECK(cudnnCreateFilterDescriptor(&pl.w));
  SAL_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&pl.conv));
  auto i = [](int64_t v) { return static_cast<int>(v); };
  SAL_CUDNN_CHECK(
      cudnnSetTensor4dDescriptor(pl.x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, i(g.N), i(g.C), i(g.H), i(g.W)));
  SAL_CUDNN_CHECK(
      cudnnSetTensor4dDescriptor(pl.y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, i(g.N), i(g.K), i(g.P), i(g.Q)));
  SAL_CUDNN_CHECK(
      cudnnSetFilter4dDescriptor(pl.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, i(g.K), i(g.Cg()), i(g.R), i(g.S)));
  SAL_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(pl.conv, g.pt, g.pl, g.sh, g.sw, g.dh, g.dw, CUDNN_CROSS_CORRELATION,
                                                  CUDNN_DATA_FLOAT));
  SAL_CUDNN_CHECK(cudnnSetConvolutionGroupCount(pl.conv, i(g.G)));
  SAL_CUDNN_CHECK(cudnnSetConvolutionMathType(pl.conv, math_of(g)));
  int n = 0, k = 0, p = 0, q = 0;
  SAL_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(pl.conv, pl.x, pl.w, &n, &k, &p, &q));
  SAL_CHECK(n == g.N && k == g.K && p == g.P && q == g.Q, "cuDNN conv: output ", n, "x", k, "x", p, "x", q,
            " differs from the expected ", g.N, "x", g.K, "x", g.P, "x", g.Q, " (", __FILE__, ":", __LINE__, ")");
}

// The first acceptable heuristic result: succeeded, fits the workspace limit, never converts
// f32 data to a narrower type than TF32 (for f32 math: no tensor-op kernel at all), and (when `deterministic`)
// reproducible run to run; without a deterministic candidate, the first acceptable one.
template <class Perf>
const Perf* pick(const Perf* perf, int count, bool f32_only, bool deterministic, const char* what) {
  const Perf* any = nullptr;
  for (int i = 0; i < count; ++i) {
    const Perf& r = perf[i];
    if (r.status != CUDNN_STATUS_SUCCESS || r.memory > kMaxWorkspace) continue;
    if (r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
    if (f32_only && r.mathType == CUDNN_TENSOR_OP_MATH) continue;
    if (!deterministic || r.determinism == CUDNN_DETERMINISTIC) return &r;
    if (!any) any = &r;
  }
  SAL_CHECK(any, "cuDNN ", what, ": no usable ", f32_only ? "f32 (non-tensor-op) " : "", "algorithm among ", count,
            " heuristic results (", __FILE__, ":", __LINE__, ")");
  return any;
}

Plan make_plan(cudnnHandle_t h, Pass pass, const ConvGeom& g) {
  Plan pl;
  describe(pl, g);
  if (pass == Pass::Fwd) {
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int n = 0;
    SAL_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, pl.x, pl.w, pl.conv, pl.y,
                                                           CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf));
    const auto* r = pick(perf, n, !g.tf32, false, "forward");
    SAL_CUDNN_CHECK(cudnnSetConvolutionMathType(pl.conv, g.tf32 ? r->mathType : CUDNN_FMA_MATH));
    pl.algo = r->algo;
    SAL_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, pl.x, pl.w, pl.conv, pl.y, r->algo, &pl.workspace));
  } else if (pass == Pass::Dgrad) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    int n = 0;
    SAL_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, pl.w, pl.y, pl.conv, pl.x,
                                                                CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, perf));
    const auto* r = pick(perf, n, !g.tf32, true, "backward data");
    SAL_CUDNN_CHECK(cudnnSetConvolutionMathType(pl.conv, g.tf32 ? r->mathType : CUDNN_FMA_MATH));
    pl.algo = r->algo;
    SAL_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(h, pl.w, pl.y, pl.conv, pl.x, r->algo, &pl.workspace));
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int n = 0;
    SAL_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, pl.x, pl.y, pl.conv, pl.w,
                                                                  CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, perf));
    const auto* r = pick(perf, n, !g.tf32, true, "backward filter");
    SAL_CUDNN_CHECK(cudnnSetConvolutionMathType(pl.conv, g.tf32 ? r->mathType : CUDNN_FMA_MATH));
    pl.algo = r->algo;
    SAL_CUDNN_CHECK(
        cudnnGetConvolutionBackwardFilterWorkspaceSize(h, pl.x, pl.y, pl.conv, pl.w, r->algo, &pl.workspace));
  }
  return pl;
}

// The cached plan of (pass, g). Plans live as long as the process (never destroyed: cuDNN may be
// unloaded before static destructors run).
const Plan& plan_for(cudnnHandle_t h, Pass pass, const ConvGeom& g) {
  static std::mutex mu;
  static auto* plans = new std::map<Key, std::unique_ptr<Plan>>();
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = (*plans)[key_of(pass, g)];
  if (!slot) slot = std::make_unique<Plan>(make_plan(h, pass, g));
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

void cudnn_conv_forward(Ctx& ctx, const ConvGeom& g, const float* x, const float* w, float* y) {
  cudnnHandle_t h = handle_for(ctx);
  const Plan& pl = plan_for(h, Pass::Fwd, g);
  DeviceScratch scratch(ctx);
  void* ws = workspace(scratch, pl.workspace);
  const float alpha = 1.f, beta = 0.f;
  SAL_CUDNN_CHECK(cudnnConvolutionForward(h, &alpha, pl.x, x, pl.w, w, pl.conv,
                                          static_cast<cudnnConvolutionFwdAlgo_t>(pl.algo), ws, pl.workspace, &beta,
                                          pl.y, y));
}

void cudnn_conv_dgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* w, float* dx) {
  cudnnHandle_t h = handle_for(ctx);
  const Plan& pl = plan_for(h, Pass::Dgrad, g);
  DeviceScratch scratch(ctx);
  void* ws = workspace(scratch, pl.workspace);
  const float alpha = 1.f, beta = 0.f;
  SAL_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &alpha, pl.w, w, pl.y, dy, pl.conv,
                                               static_cast<cudnnConvolutionBwdDataAlgo_t>(pl.algo), ws, pl.workspace,
                                               &beta, pl.x, dx));
}

void cudnn_conv_wgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* x, float* dw) {
  cudnnHandle_t h = handle_for(ctx);
  const Plan& pl = plan_for(h, Pass::Wgrad, g);
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
