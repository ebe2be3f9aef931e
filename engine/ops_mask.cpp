// Op API: the mask head (abs-ratio, alone or fused with bilinear upsampling) and evidence
// removal (blend). Validation and dispatch only; the kernels are in engine/cpu/mask.cpp and
// cuda/mask.cu.
#include <cmath>
#include <limits>

#include "engine/cpu/mask.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#ifdef SAL_WITH_CUDA
#include "cuda/mask.h"
#endif

namespace sal {

using namespace detail;

namespace {

void check_head(const char* op, const Tensor& c, double eps) {
  check_ndim(op, "c", c, 4);
  SAL_CHECK(c.dim(1) == 2, op, ": c must have 2 channels (c0, c1), got ", c.desc());
  // eps = 0 is allowed; a pixel with c0 = c1 = 0 then gives 0/0 = NaN.
  SAL_CHECK(std::isfinite(eps) && eps >= 0, op, ": eps must be finite and >= 0, got ", eps);
}

Shape mask_shape(const Tensor& x) { return Shape{x.dim(0), 1, x.dim(2), x.dim(3)}; }

}  // namespace

Tensor abs_ratio(Ctx& ctx, const Tensor& c, double eps) {
  const char* op = "abs_ratio";
  check_head(op, c, eps);
  check_device(op, ctx, {&c});
  check_float(op, ctx, {&c});
  Tensor m = ctx.alloc(mask_shape(c), c.dtype());
  SAL_BACKEND(ctx, op, cuda::abs_ratio(ctx, c, eps, m), cpu::abs_ratio(ctx, c, eps, m));
  return m;
}

Tensor abs_ratio_backward(Ctx& ctx, const Tensor& dm, const Tensor& c, double eps) {
  const char* op = "abs_ratio_backward";
  check_head(op, c, eps);
  check_device(op, ctx, {&dm, &c});
  check_float(op, ctx, {&dm, &c});
  check_shape(op, "dm", dm, mask_shape(c));
  Tensor dc = ctx.alloc(c.shape(), c.dtype());
  SAL_BACKEND(ctx, op, cuda::abs_ratio_backward(ctx, dm, c, eps, dc), cpu::abs_ratio_backward(ctx, dm, c, eps, dc));
  return dc;
}

namespace {
constexpr int64_t kMaxExtent = std::numeric_limits<int32_t>::max();  // the kernels index rows/cols in i32

void check_extent(const char* op, const char* what, int64_t h, int64_t w) {
  SAL_CHECK(h >= 1 && w >= 1 && h <= kMaxExtent && w <= kMaxExtent, op, ": ", what,
            " must be at least 1x1 (and below 2^31), got ", h, "x", w);
}
}  // namespace

Tensor abs_ratio_upsample(Ctx& ctx, const Tensor& c, double eps, int64_t out_h, int64_t out_w) {
  const char* op = "abs_ratio_upsample";
  check_head(op, c, eps);
  check_device(op, ctx, {&c});
  check_float(op, ctx, {&c});
  check_extent(op, "c's H x W", c.dim(2), c.dim(3));
  check_extent(op, "the output size", out_h, out_w);
  Tensor y = ctx.alloc(Shape{c.dim(0), 1, out_h, out_w}, c.dtype());
  SAL_BACKEND(ctx, op, cuda::abs_ratio_upsample(ctx, c, eps, y), cpu::abs_ratio_upsample(ctx, c, eps, y));
  return y;
}

Tensor abs_ratio_upsample_backward(Ctx& ctx, const Tensor& dm, const Tensor& c, double eps) {
  const char* op = "abs_ratio_upsample_backward";
  check_head(op, c, eps);
  check_device(op, ctx, {&dm, &c});
  check_float(op, ctx, {&dm, &c});
  check_extent(op, "c's H x W", c.dim(2), c.dim(3));
  check_ndim(op, "dm", dm, 4);
  SAL_CHECK(dm.dim(0) == c.dim(0) && dm.dim(1) == 1, op, ": dm ", dm.desc(), " must be [N,1,P,Q] with the N = ",
            c.dim(0), " of c ", c.desc());
  check_extent(op, "dm's H x W", dm.dim(2), dm.dim(3));
  Tensor dc = ctx.alloc(c.shape(), c.dtype());
  SAL_BACKEND(ctx, op, cuda::abs_ratio_upsample_backward(ctx, dm, c, eps, dc),
              cpu::abs_ratio_upsample_backward(ctx, dm, c, eps, dc));
  return dc;
}

namespace {
void check_blend(const char* op, const Ctx& ctx, const Tensor& x, const Tensor& a, const Tensor& m, const Tensor* dy) {
  check_ndim(op, "x", x, 4);
  check_device(op, ctx, {&x, &a, &m, dy});
  check_float(op, ctx, {&x, &a, &m, dy});
  check_shape(op, "a", a, x.shape());
  check_shape(op, "m", m, mask_shape(x));
  if (dy) check_shape(op, "dy", *dy, x.shape());
}
}  // namespace

Tensor blend(Ctx& ctx, const Tensor& x, const Tensor& a, const Tensor& m) {
  check_blend("blend", ctx, x, a, m, nullptr);
  Tensor y = ctx.alloc(x.shape(), x.dtype());
  SAL_BACKEND(ctx, "blend", cuda::blend(ctx, x, a, m, y), cpu::blend(ctx, x, a, m, y));
  return y;
}

BlendGrads blend_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Tensor& a, const Tensor& m, bool need_dx,
                          bool need_da) {
  const char* op = "blend_backward";
  SAL_CHECK(dy.defined(), op, ": dy is undefined");
  check_blend(op, ctx, x, a, m, &dy);
  BlendGrads g;
  g.dm = ctx.alloc(m.shape(), m.dtype());
  if (need_dx) g.dx = ctx.alloc(x.shape(), x.dtype());
  if (need_da) g.da = ctx.alloc(x.shape(), x.dtype());
  Tensor* dx = need_dx ? &g.dx : nullptr;
  Tensor* da = need_da ? &g.da : nullptr;
  SAL_BACKEND(ctx, op, cuda::blend_backward(ctx, dy, x, a, m, g.dm, dx, da),
              cpu::blend_backward(ctx, dy, x, a, m, g.dm, dx, da));
  return g;
}

}  // namespace sal
