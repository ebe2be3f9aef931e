// A CPU stand-in for cuDNN's shared library, built as libcudnn.so.9 (with cuDNN's symbol version) in its own
// folder for tests/cudnn_stand_in_test.cpp. It exports the legacy-API entry points the engine links
// (cuda/cudnn_conv.cpp), with cuDNN's signatures (cudnn.h), keeps the descriptors as cuDNN defines them
// (sizes in NCHW order, the format saying how they lie in memory: NHWC tensors [N,H,W,C], NHWC filters
// [K,R,S,C/G]) and computes the convolutions, in double on host memory, from what the descriptors say. With
// its folder first on LD_LIBRARY_PATH the engine's wrapper runs on it without a GPU: descriptors in both
// layouts, the heuristics' results and how the wrapper filters and numbers them, plans, alpha / beta, the
// fused convolution + bias + z + activation, and errors. It models the documented rules it checks, not
// cuDNN's kernels; the workspace asked for is 0 bytes (nothing is allocated on a device), except one algorithm's
// (forward GEMM: 600 MiB, over the wrapper's limit), and one listed algorithm refuses dilated convolutions.
#include <cudnn.h>

#include <cmath>
#include <cstdint>
#include <vector>

extern "C" {

// What the calls asked for, read by the test through dlsym.
struct SalCudnnStandInLog {
  int64_t handles_alive = 0;
  int64_t runs = 0;            // convolutions computed (any pass)
  int last_algo = -1;          // of the last run
  int last_math = -1;          // the convolution descriptor's math type at the last run
  int last_nhwc = -1;          // 1 when the last run's tensors were NHWC
  int last_alpha2_zero = -1;   // the fused forward: 1 when z was not read (alpha2 = 0)
};
__attribute__((visibility("default"))) SalCudnnStandInLog sal_cudnn_stand_in_log;

}  // extern "C"

struct cudnnContext {
  cudaStream_t stream = nullptr;
};
struct cudnnTensorStruct {
  bool set = false;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int n = 0, c = 0, h = 0, w = 0;
};
struct cudnnFilterStruct {
  bool set = false;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  cudnnDataType_t type = CUDNN_DATA_FLOAT;
  int k = 0, c = 0, r = 0, s = 0;
};
struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, u = 1, v = 1, dil_h = 1, dil_w = 1, groups = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};
struct cudnnActivationStruct {
  cudnnActivationMode_t mode = CUDNN_ACTIVATION_IDENTITY;
  double coef = 0;
};

namespace {

// Element offsets of (n, c, h, w) in a tensor and (k, c, r, s) in a filter, by format.
int64_t at(const cudnnTensorStruct& t, int64_t n, int64_t c, int64_t h, int64_t w) {
  return t.format == CUDNN_TENSOR_NHWC ? ((n * t.h + h) * t.w + w) * t.c + c : ((n * t.c + c) * t.h + h) * t.w + w;
}
int64_t at(const cudnnFilterStruct& f, int64_t k, int64_t c, int64_t r, int64_t s) {
  return f.format == CUDNN_TENSOR_NHWC ? ((k * f.r + r) * f.s + s) * f.c + c : ((k * f.c + c) * f.r + r) * f.s + s;
}

int out_dim(int in, int pad, int filter, int dil, int stride) {
  return (in + 2 * pad - ((filter - 1) * dil + 1)) / stride + 1;
}

bool usable(const cudnnTensorStruct* t) {
  return t && t->set && t->type == CUDNN_DATA_FLOAT &&
         (t->format == CUDNN_TENSOR_NCHW || t->format == CUDNN_TENSOR_NHWC);
}

// cuDNN's BAD_PARAM for descriptors that do not describe one convolution x (*) w -> y: unset, another data
// type, channel counts that do not match the groups, or y not the output shape; NOT_SUPPORTED for a
// convolution (not cross-correlation) or x, w and y in different formats (the legacy API's rule for NHWC).
cudnnStatus_t check(const cudnnTensorStruct* x, const cudnnFilterStruct* w, const cudnnConvolutionStruct* cv,
                    const cudnnTensorStruct* y) {
  if (!usable(x) || !usable(y) || !w || !w->set || !cv || !cv->set || w->type != CUDNN_DATA_FLOAT)
    return CUDNN_STATUS_BAD_PARAM;
  if (x->c != w->c * cv->groups || w->k % cv->groups || y->c != w->k || y->n != x->n) return CUDNN_STATUS_BAD_PARAM;
  if (y->h != out_dim(x->h, cv->pad_h, w->r, cv->dil_h, cv->u) ||
      y->w != out_dim(x->w, cv->pad_w, w->s, cv->dil_w, cv->v))
    return CUDNN_STATUS_BAD_PARAM;
  if (cv->mode != CUDNN_CROSS_CORRELATION || x->format != y->format || x->format != w->format)
    return CUDNN_STATUS_NOT_SUPPORTED;
  return CUDNN_STATUS_SUCCESS;
}

// Visits every (x index, w index, y index) product of the cross-correlation.
template <class F>
void each_tap(const cudnnTensorStruct& x, const cudnnFilterStruct& w, const cudnnConvolutionStruct& cv,
              const cudnnTensorStruct& y, F f) {
  const int kg = w.k / cv.groups;
  for (int n = 0; n < y.n; ++n)
    for (int k = 0; k < y.c; ++k)
      for (int p = 0; p < y.h; ++p)
        for (int q = 0; q < y.w; ++q)
          for (int c = 0; c < w.c; ++c)
            for (int r = 0; r < w.r; ++r)
              for (int s = 0; s < w.s; ++s) {
                const int h = p * cv.u - cv.pad_h + r * cv.dil_h, ww = q * cv.v - cv.pad_w + s * cv.dil_w;
                if (h < 0 || h >= x.h || ww < 0 || ww >= x.w) continue;
                f(at(x, n, (k / kg) * w.c + c, h, ww), at(w, k, c, r, s), at(y, n, k, p, q));
              }
}

int64_t count(const cudnnTensorStruct& t) { return int64_t{t.n} * t.c * t.h * t.w; }
int64_t count(const cudnnFilterStruct& f) { return int64_t{f.k} * f.c * f.r * f.s; }

// The cross-correlation's sums, [y's elements] in y's layout.
std::vector<double> forward_sums(const cudnnTensorStruct& xd, const float* x, const cudnnFilterStruct& wd,
                                 const float* w, const cudnnConvolutionStruct& cv, const cudnnTensorStruct& yd) {
  std::vector<double> acc(static_cast<size_t>(count(yd)), 0.0);
  each_tap(xd, wd, cv, yd, [&](int64_t ix, int64_t iw, int64_t iy) { acc[iy] += double{x[ix]} * w[iw]; });
  return acc;
}

// out = alpha * acc + beta * out (out not read when beta is 0, as cuDNN documents).
void blend(float* out, const std::vector<double>& acc, float alpha, float beta) {
  for (size_t i = 0; i < acc.size(); ++i)
    out[i] = static_cast<float>(alpha * acc[i] + (beta == 0.f ? 0.0 : beta * static_cast<double>(out[i])));
}

// The heuristics' results the stand-in gives, in its order of preference, shaped to exercise what the
// wrapper keeps (cuda/cudnn_conv.cpp: acceptable, preferred, timed_candidates): a number listed twice with
// two math types, a result that converts data (ALLOW_CONVERSION: never kept), a failed one, for the
// gradients a non-deterministic first, and one over the workspace a timed candidate may use.
struct Result {
  int algo;
  cudnnStatus_t status;
  size_t memory;
  cudnnDeterminism_t det;
  cudnnMathType_t math;
};
constexpr size_t kMiB = size_t{1} << 20;
const std::vector<Result> kFwd = {
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_STATUS_SUCCESS, 0, CUDNN_DETERMINISTIC,
     CUDNN_TENSOR_OP_MATH},
    {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, CUDNN_STATUS_SUCCESS, 0, CUDNN_DETERMINISTIC,
     CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_STATUS_SUCCESS, 0, CUDNN_DETERMINISTIC, CUDNN_DEFAULT_MATH},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_STATUS_SUCCESS, 0, CUDNN_DETERMINISTIC,
     CUDNN_DEFAULT_MATH},
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT, CUDNN_STATUS_NOT_SUPPORTED, 0, CUDNN_DETERMINISTIC, CUDNN_DEFAULT_MATH},
    {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, CUDNN_STATUS_SUCCESS, 8 * kMiB, CUDNN_DETERMINISTIC, CUDNN_DEFAULT_MATH},
    {CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, CUDNN_STATUS_SUCCESS, 100 * kMiB, CUDNN_DETERMINISTIC, CUDNN_DEFAULT_MATH},
};
const std::vector<Result> kDgrad = {
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, CUDNN_STATUS_SUCCESS, 0, CUDNN_NON_DETERMINISTIC, CUDNN_DEFAULT_MATH},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, CUDNN_STATUS_SUCCESS, 0, CUDNN_DETERMINISTIC, CUDNN_TENSOR_OP_MATH},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED, CUDNN_STATUS_SUCCESS, 100 * kMiB, CUDNN_DETERMINISTIC,
     CUDNN_DEFAULT_MATH},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, CUDNN_STATUS_SUCCESS, 0, CUDNN_DETERMINISTIC, CUDNN_DEFAULT_MATH},
};
const std::vector<Result> kWgrad = {
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, CUDNN_STATUS_SUCCESS, 0, CUDNN_DETERMINISTIC, CUDNN_TENSOR_OP_MATH},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, CUDNN_STATUS_SUCCESS, 0, CUDNN_NON_DETERMINISTIC, CUDNN_DEFAULT_MATH},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, CUDNN_STATUS_SUCCESS, 0, CUDNN_DETERMINISTIC, CUDNN_DEFAULT_MATH},
};

template <class Perf, class Algo>
cudnnStatus_t heuristics(const std::vector<Result>& table, int requested, int* returned, Perf* perf) {
  if (!returned || !perf || requested < 1) return CUDNN_STATUS_BAD_PARAM;
  int n = 0;
  for (const Result& r : table) {
    if (n == requested) break;
    Perf p{};
    p.algo = static_cast<Algo>(r.algo), p.status = r.status, p.time = -1, p.memory = r.memory, p.determinism = r.det;
    p.mathType = r.math;
    perf[n++] = p;
  }
  *returned = n;
  return CUDNN_STATUS_SUCCESS;
}

// An algorithm the stand-in runs for a pass: one its heuristics list as succeeding.
cudnnStatus_t runs(const std::vector<Result>& table, int algo) {
  for (const Result& r : table)
    if (r.algo == algo && r.status == CUDNN_STATUS_SUCCESS) return CUDNN_STATUS_SUCCESS;
  return CUDNN_STATUS_NOT_SUPPORTED;
}

// The forward's: also, IMPLICIT_PRECOMP_GEMM is listed for dilated convolutions but refuses them when asked for
// its workspace or run (the heuristics list what cuDNN may then refuse; the wrapper must get past it).
cudnnStatus_t runs_forward(int algo, const cudnnConvolutionStruct* cv) {
  if (algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM && (cv->dil_h > 1 || cv->dil_w > 1))
    return CUDNN_STATUS_NOT_SUPPORTED;
  return runs(kFwd, algo);
}

void log_run(int algo, const cudnnConvolutionStruct* cv, const cudnnTensorStruct* x) {
  SalCudnnStandInLog& log = sal_cudnn_stand_in_log;
  log.runs += 1;
  log.last_algo = algo, log.last_math = static_cast<int>(cv->math);
  log.last_nhwc = x->format == CUDNN_TENSOR_NHWC ? 1 : 0;
}

}  // namespace

#define SAL_EXPORT extern "C" __attribute__((visibility("default")))

SAL_EXPORT size_t cudnnGetVersion() { return CUDNN_VERSION; }

SAL_EXPORT const char* cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS (stand-in)";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM (stand-in)";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED (stand-in)";
    default: return "another status (stand-in)";
  }
}

SAL_EXPORT cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  *handle = new cudnnContext;
  sal_cudnn_stand_in_log.handles_alive += 1;
  return CUDNN_STATUS_SUCCESS;
}
SAL_EXPORT cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  delete handle;
  sal_cudnn_stand_in_log.handles_alive -= 1;
  return CUDNN_STATUS_SUCCESS;
}
SAL_EXPORT cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  handle->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}

SAL_EXPORT cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* d) {
  if (!d) return CUDNN_STATUS_BAD_PARAM;
  *d = new cudnnTensorStruct;
  return CUDNN_STATUS_SUCCESS;
}
SAL_EXPORT cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}
SAL_EXPORT cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format,
                                                    cudnnDataType_t type, int n, int c, int h, int w) {
  if (!d || n <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  *d = cudnnTensorStruct{true, format, type, n, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}

SAL_EXPORT cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* d) {
  if (!d) return CUDNN_STATUS_BAD_PARAM;
  *d = new cudnnFilterStruct;
  return CUDNN_STATUS_SUCCESS;
}
SAL_EXPORT cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}
SAL_EXPORT cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t type,
                                                    cudnnTensorFormat_t format, int k, int c, int h, int w) {
  if (!d || k <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  *d = cudnnFilterStruct{true, format, type, k, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}

SAL_EXPORT cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* d) {
  if (!d) return CUDNN_STATUS_BAD_PARAM;
  *d = new cudnnConvolutionStruct;
  return CUDNN_STATUS_SUCCESS;
}
SAL_EXPORT cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}
SAL_EXPORT cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w, int u,
                                                         int v, int dilation_h, int dilation_w,
                                                         cudnnConvolutionMode_t mode, cudnnDataType_t computeType) {
  if (!d || pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 || dilation_w <= 0 ||
      computeType != CUDNN_DATA_FLOAT)
    return CUDNN_STATUS_BAD_PARAM;
  d->set = true;
  d->pad_h = pad_h, d->pad_w = pad_w, d->u = u, d->v = v, d->dil_h = dilation_h, d->dil_w = dilation_w;
  d->mode = mode;
  return CUDNN_STATUS_SUCCESS;
}
SAL_EXPORT cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groups) {
  if (!d || groups <= 0) return CUDNN_STATUS_BAD_PARAM;
  d->groups = groups;
  return CUDNN_STATUS_SUCCESS;
}
SAL_EXPORT cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t math) {
  if (!d) return CUDNN_STATUS_BAD_PARAM;
  d->math = math;
  return CUDNN_STATUS_SUCCESS;
}
SAL_EXPORT cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t cv,
                                                               const cudnnTensorDescriptor_t x,
                                                               const cudnnFilterDescriptor_t w, int* n, int* c, int* h,
                                                               int* ww) {
  if (!cv || !cv->set || !usable(x) || !w || !w->set || x->c != w->c * cv->groups) return CUDNN_STATUS_BAD_PARAM;
  *n = x->n, *c = w->k;
  *h = out_dim(x->h, cv->pad_h, w->r, cv->dil_h, cv->u);
  *ww = out_dim(x->w, cv->pad_w, w->s, cv->dil_w, cv->v);
  return CUDNN_STATUS_SUCCESS;
}

SAL_EXPORT cudnnStatus_t cudnnCreateActivationDescriptor(cudnnActivationDescriptor_t* d) {
  if (!d) return CUDNN_STATUS_BAD_PARAM;
  *d = new cudnnActivationStruct;
  return CUDNN_STATUS_SUCCESS;
}
SAL_EXPORT cudnnStatus_t cudnnSetActivationDescriptor(cudnnActivationDescriptor_t d, cudnnActivationMode_t mode,
                                                      cudnnNanPropagation_t, double coef) {
  if (!d) return CUDNN_STATUS_BAD_PARAM;
  d->mode = mode, d->coef = coef;
  return CUDNN_STATUS_SUCCESS;
}

SAL_EXPORT cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                                const cudnnFilterDescriptor_t w,
                                                                const cudnnConvolutionDescriptor_t cv,
                                                                const cudnnTensorDescriptor_t y, const int requested,
                                                                int* returned, cudnnConvolutionFwdAlgoPerf_t* perf) {
  if (!h) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check(x, w, cv, y); st != CUDNN_STATUS_SUCCESS) return st;
  return heuristics<cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t>(kFwd, requested, returned, perf);
}
SAL_EXPORT cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t h, const cudnnFilterDescriptor_t w,
                                                                     const cudnnTensorDescriptor_t dy,
                                                                     const cudnnConvolutionDescriptor_t cv,
                                                                     const cudnnTensorDescriptor_t dx,
                                                                     const int requested, int* returned,
                                                                     cudnnConvolutionBwdDataAlgoPerf_t* perf) {
  if (!h) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check(dx, w, cv, dy); st != CUDNN_STATUS_SUCCESS) return st;
  return heuristics<cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t>(kDgrad, requested, returned,
                                                                                      perf);
}
SAL_EXPORT cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t h,
                                                                       const cudnnTensorDescriptor_t x,
                                                                       const cudnnTensorDescriptor_t dy,
                                                                       const cudnnConvolutionDescriptor_t cv,
                                                                       const cudnnFilterDescriptor_t dw,
                                                                       const int requested, int* returned,
                                                                       cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
  if (!h) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check(x, dw, cv, dy); st != CUDNN_STATUS_SUCCESS) return st;
  return heuristics<cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t>(kWgrad, requested,
                                                                                          returned, perf);
}

SAL_EXPORT cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t h, const cudnnTensorDescriptor_t x,
                                                                 const cudnnFilterDescriptor_t w,
                                                                 const cudnnConvolutionDescriptor_t cv,
                                                                 const cudnnTensorDescriptor_t y,
                                                                 cudnnConvolutionFwdAlgo_t algo, size_t* bytes) {
  if (!h || !bytes) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check(x, w, cv, y); st != CUDNN_STATUS_SUCCESS) return st;
  // GEMM's heuristic figure (8 MiB) understates what it asks for here, as cuDNN's estimates can.
  *bytes = algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM ? 600 * kMiB : 0;
  return runs_forward(algo, cv);
}
SAL_EXPORT cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t h, const cudnnFilterDescriptor_t w,
                                                                      const cudnnTensorDescriptor_t dy,
                                                                      const cudnnConvolutionDescriptor_t cv,
                                                                      const cudnnTensorDescriptor_t dx,
                                                                      cudnnConvolutionBwdDataAlgo_t algo,
                                                                      size_t* bytes) {
  if (!h || !bytes) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check(dx, w, cv, dy); st != CUDNN_STATUS_SUCCESS) return st;
  *bytes = 0;
  return runs(kDgrad, algo);
}
SAL_EXPORT cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t h,
                                                                        const cudnnTensorDescriptor_t x,
                                                                        const cudnnTensorDescriptor_t dy,
                                                                        const cudnnConvolutionDescriptor_t cv,
                                                                        const cudnnFilterDescriptor_t dw,
                                                                        cudnnConvolutionBwdFilterAlgo_t algo,
                                                                        size_t* bytes) {
  if (!h || !bytes) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check(x, dw, cv, dy); st != CUDNN_STATUS_SUCCESS) return st;
  *bytes = 0;
  return runs(kWgrad, algo);
}

// y = alpha conv(x, w) + beta y
SAL_EXPORT cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void* alpha, const cudnnTensorDescriptor_t xd,
                                                 const void* x, const cudnnFilterDescriptor_t wd, const void* w,
                                                 const cudnnConvolutionDescriptor_t cv, cudnnConvolutionFwdAlgo_t algo,
                                                 void*, size_t, const void* beta, const cudnnTensorDescriptor_t yd,
                                                 void* y) {
  if (!h || !alpha || !beta || !x || !w || !y) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check(xd, wd, cv, yd); st != CUDNN_STATUS_SUCCESS) return st;
  if (const cudnnStatus_t st = runs_forward(algo, cv); st != CUDNN_STATUS_SUCCESS) return st;
  const std::vector<double> acc =
      forward_sums(*xd, static_cast<const float*>(x), *wd, static_cast<const float*>(w), *cv, *yd);
  blend(static_cast<float*>(y), acc, *static_cast<const float*>(alpha), *static_cast<const float*>(beta));
  log_run(algo, cv, xd);
  return CUDNN_STATUS_SUCCESS;
}

// dx = alpha conv^T(dy, w) + beta dx
SAL_EXPORT cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void* alpha,
                                                      const cudnnFilterDescriptor_t wd, const void* w,
                                                      const cudnnTensorDescriptor_t dyd, const void* dy,
                                                      const cudnnConvolutionDescriptor_t cv,
                                                      cudnnConvolutionBwdDataAlgo_t algo, void*, size_t,
                                                      const void* beta, const cudnnTensorDescriptor_t dxd, void* dx) {
  if (!h || !alpha || !beta || !w || !dy || !dx) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check(dxd, wd, cv, dyd); st != CUDNN_STATUS_SUCCESS) return st;
  if (const cudnnStatus_t st = runs(kDgrad, algo); st != CUDNN_STATUS_SUCCESS) return st;
  std::vector<double> acc(static_cast<size_t>(count(*dxd)), 0.0);
  const float* dyf = static_cast<const float*>(dy);
  const float* wf = static_cast<const float*>(w);
  each_tap(*dxd, *wd, *cv, *dyd, [&](int64_t ix, int64_t iw, int64_t iy) { acc[ix] += double{dyf[iy]} * wf[iw]; });
  blend(static_cast<float*>(dx), acc, *static_cast<const float*>(alpha), *static_cast<const float*>(beta));
  log_run(algo, cv, dxd);
  return CUDNN_STATUS_SUCCESS;
}

// dw = alpha sum_n x (*) dy + beta dw
SAL_EXPORT cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void* alpha,
                                                        const cudnnTensorDescriptor_t xd, const void* x,
                                                        const cudnnTensorDescriptor_t dyd, const void* dy,
                                                        const cudnnConvolutionDescriptor_t cv,
                                                        cudnnConvolutionBwdFilterAlgo_t algo, void*, size_t,
                                                        const void* beta, const cudnnFilterDescriptor_t dwd, void* dw) {
  if (!h || !alpha || !beta || !x || !dy || !dw) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check(xd, dwd, cv, dyd); st != CUDNN_STATUS_SUCCESS) return st;
  if (const cudnnStatus_t st = runs(kWgrad, algo); st != CUDNN_STATUS_SUCCESS) return st;
  std::vector<double> acc(static_cast<size_t>(count(*dwd)), 0.0);
  const float* xf = static_cast<const float*>(x);
  const float* dyf = static_cast<const float*>(dy);
  each_tap(*xd, *dwd, *cv, *dyd, [&](int64_t ix, int64_t iw, int64_t iy) { acc[iw] += double{xf[ix]} * dyf[iy]; });
  blend(static_cast<float*>(dw), acc, *static_cast<const float*>(alpha), *static_cast<const float*>(beta));
  log_run(algo, cv, xd);
  return CUDNN_STATUS_SUCCESS;
}

// y = act(alpha1 conv(x, w) + alpha2 z + bias), z not read when alpha2 is 0. As documented: the bias a
// [1,K,1,1] tensor, z shaped as y, the activation ReLU or identity, identity only with IMPLICIT_PRECOMP_GEMM.
SAL_EXPORT cudnnStatus_t cudnnConvolutionBiasActivationForward(
    cudnnHandle_t h, const void* alpha1, const cudnnTensorDescriptor_t xd, const void* x,
    const cudnnFilterDescriptor_t wd, const void* w, const cudnnConvolutionDescriptor_t cv,
    cudnnConvolutionFwdAlgo_t algo, void*, size_t, const void* alpha2, const cudnnTensorDescriptor_t zd, const void* z,
    const cudnnTensorDescriptor_t bd, const void* bias, const cudnnActivationDescriptor_t ad,
    const cudnnTensorDescriptor_t yd, void* y) {
  if (!h || !alpha1 || !alpha2 || !x || !w || !z || !bias || !ad || !y) return CUDNN_STATUS_BAD_PARAM;
  if (const cudnnStatus_t st = check(xd, wd, cv, yd); st != CUDNN_STATUS_SUCCESS) return st;
  if (!usable(zd) || zd->n != yd->n || zd->c != yd->c || zd->h != yd->h || zd->w != yd->w || zd->format != yd->format)
    return CUDNN_STATUS_BAD_PARAM;
  if (!usable(bd) || bd->n != 1 || bd->c != yd->c || bd->h != 1 || bd->w != 1) return CUDNN_STATUS_BAD_PARAM;
  if (ad->mode != CUDNN_ACTIVATION_RELU && ad->mode != CUDNN_ACTIVATION_IDENTITY) return CUDNN_STATUS_NOT_SUPPORTED;
  if (ad->mode == CUDNN_ACTIVATION_IDENTITY && algo != CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM)
    return CUDNN_STATUS_NOT_SUPPORTED;
  if (const cudnnStatus_t st = runs_forward(algo, cv); st != CUDNN_STATUS_SUCCESS) return st;
  const std::vector<double> acc =
      forward_sums(*xd, static_cast<const float*>(x), *wd, static_cast<const float*>(w), *cv, *yd);
  const float a1 = *static_cast<const float*>(alpha1), a2 = *static_cast<const float*>(alpha2);
  const float* zf = static_cast<const float*>(z);
  const float* bf = static_cast<const float*>(bias);
  float* yf = static_cast<float*>(y);
  // The ReLU's coefficient is its ceiling here (as cuDNN documents it): a ceiling of 0 would zero everything.
  const double ceiling = ad->coef;
  for (int n = 0; n < yd->n; ++n)
    for (int k = 0; k < yd->c; ++k)
      for (int p = 0; p < yd->h; ++p)
        for (int q = 0; q < yd->w; ++q) {
          const int64_t i = at(*yd, n, k, p, q);
          double v = a1 * acc[static_cast<size_t>(i)] + bf[k] + (a2 == 0.f ? 0.0 : a2 * double{zf[i]});
          if (ad->mode == CUDNN_ACTIVATION_RELU) v = std::fmin(std::fmax(v, 0.0), ceiling);
          yf[i] = static_cast<float>(v);
        }
  log_run(algo, cv, xd);
  sal_cudnn_stand_in_log.last_alpha2_zero = a2 == 0.f ? 1 : 0;
  return CUDNN_STATUS_SUCCESS;
}
