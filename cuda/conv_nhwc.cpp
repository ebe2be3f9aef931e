// cuDNN in NHWC with the conversions around it (cuda/conv_nhwc.h).
#include "cuda/conv_nhwc.h"

#include "cuda/cudnn_conv.h"
#include "cuda/layout_transpose.h"

namespace sal::cuda {

namespace {

// [N,C,HW] -> [N,HW,C] and back (a filter: [K,C/G,RS] -> [K,RS,C/G] and back).
void to_nhwc(Ctx& ctx, const float* nchw, int64_t n, int64_t c, int64_t hw, float* nhwc) {
  batched_transpose(ctx, nchw, n, c, hw, nhwc);
}
void to_nchw(Ctx& ctx, const float* nhwc, int64_t n, int64_t c, int64_t hw, float* nchw) {
  batched_transpose(ctx, nhwc, n, hw, c, nchw);
}

// A pass that reads one activation tensor and the weights and writes another (the forward: x -> y, the input
// gradient: dy -> dx): `in` [N, c_in, hw_in] and w converted, call(in_nhwc, w_krsc, out_nhwc) run, its result
// converted into `out` [N, c_out, hw_out].
template <class Call>
void converted(Ctx& ctx, const ConvGeom& g, const float* in, int64_t c_in, int64_t hw_in, const float* w, float* out,
               int64_t c_out, int64_t hw_out, Call&& call) {
  DeviceScratch scratch(ctx);
  float* in_t = scratch.floats(g.N * c_in * hw_in);
  float* w_t = scratch.floats(g.K * g.crs());
  float* out_t = scratch.floats(g.N * c_out * hw_out);
  to_nhwc(ctx, in, g.N, c_in, hw_in, in_t);
  to_nhwc(ctx, w, g.K, g.Cg(), g.rs(), w_t);
  call(in_t, w_t, out_t);
  to_nchw(ctx, out_t, g.N, c_out, hw_out, out);
}

}  // namespace

void cudnn_nhwc_forward(Ctx& ctx, const ConvGeom& g, const float* x, const float* w, float* y, int algo) {
  converted(ctx, g, x, g.C, g.hw(), w, y, g.K, g.pq(), [&](const float* xt, const float* wt, float* yt) {
    cudnn_conv_forward(ctx, g, xt, wt, yt, algo, CudnnLayout::NHWC);
  });
}

void cudnn_nhwc_dgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* w, float* dx, int algo) {
  converted(ctx, g, dy, g.K, g.pq(), w, dx, g.C, g.hw(), [&](const float* dyt, const float* wt, float* dxt) {
    cudnn_conv_dgrad(ctx, g, dyt, wt, dxt, algo, CudnnLayout::NHWC);
  });
}

void cudnn_nhwc_wgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* x, float* dw, int algo) {
  DeviceScratch scratch(ctx);
  float* dyt = scratch.floats(g.N * g.K * g.pq());
  float* xt = scratch.floats(g.N * g.C * g.hw());
  float* dwt = scratch.floats(g.K * g.crs());
  to_nhwc(ctx, dy, g.N, g.K, g.pq(), dyt);
  to_nhwc(ctx, x, g.N, g.C, g.hw(), xt);
  to_nhwc(ctx, dw, g.K, g.Cg(), g.rs(), dwt);  // cuDNN accumulates into what dw holds
  cudnn_conv_wgrad(ctx, g, dyt, xt, dwt, algo, CudnnLayout::NHWC);
  to_nchw(ctx, dwt, g.K, g.Cg(), g.rs(), dw);
}

}  // namespace sal::cuda
