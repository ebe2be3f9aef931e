// Op API: the mask head (abs-ratio) and evidence removal (blend).
// Validation and dispatch only; the kernels are in engine/cpu/mask.cpp.
#include <cmath>

#include "engine/cpu/mask.h"
#include "engine/dispatch.h"
#include "engine/ops.h"

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
  if (ctx.device == Device::CUDA) no_cuda_kernel(op);
  Tensor m = ctx.alloc(mask_shape(c), c.dtype());
  cpu::abs_ratio(ctx, c, eps, m);
  return m;
}

Tensor abs_ratio_backward(Ctx& ctx, const Tensor& dm, const Tensor& c, double eps) {
  const char* op = "abs_ratio_backward";
  check_head(op, c, eps);
  check_device(op, ctx, {&dm, &c});
  check_float(op, ctx, {&dm, &c});
  check_shape(op, "dm", dm, mask_shape(c));
  if (ctx.device == Device::CUDA) no_cuda_kernel(op);
  Tensor dc = ctx.alloc(c.shape(), c.dtype());
  cpu::abs_ratio_backward(ctx, dm, c, eps, dc);
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
  if (ctx.device == Device::CUDA) no_cuda_kernel("blend");
  Tensor y = ctx.alloc(x.shape(), x.dtype());
  cpu::blend(ctx, x, a, m, y);
  return y;
}

BlendGrads blend_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Tensor& a, const Tensor& m, bool need_dx,
                          bool need_da) {
  const char* op = "blend_backward";
  SAL_CHECK(dy.defined(), op, ": dy is undefined");
  check_blend(op, ctx, x, a, m, &dy);
  if (ctx.device == Device::CUDA) no_cuda_kernel(op);
  BlendGrads g;
  g.dm = ctx.alloc(m.shape(), m.dtype());
  if (need_dx) g.dx = ctx.alloc(x.shape(), x.dtype());
  if (need_da) g.da = ctx.alloc(x.shape(), x.dtype());
  cpu::blend_backward(ctx, dy, x, a, m, g.dm, need_dx ? &g.dx : nullptr, need_da ? &g.da : nullptr);
  return g;
}

}  // namespace sal
