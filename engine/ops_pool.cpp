// Op API: pooling. Validation, output shapes and dispatch only.
#include "engine/cpu/pool.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#ifdef SAL_WITH_CUDA
#include "cuda/pool.h"
#endif

namespace sal {

using namespace detail;

namespace {

// Output extent along one axis, as PyTorch computes it: floor (or ceil) of
// (in + 2p - k) / s, plus 1; in ceil mode the last window must start inside the input or the
// left padding, so a window that would start in the right padding is dropped.
int64_t pooled_extent(int64_t in, int k, int s, int p, bool ceil_mode) {
  const int64_t num = in + 2 * p - k + (ceil_mode ? s - 1 : 0);
  const int64_t q = num >= 0 ? num / s : -((-num + s - 1) / s);  // floor division
  int64_t out = q + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

Shape pool_shape(const char* op, const Shape& x, const Pool2dArgs& a) {
  SAL_CHECK(x.nd == 4, op, ": x must be [N,C,H,W], got ", x.str());
  SAL_CHECK(a.kernel_h > 0 && a.kernel_w > 0, op, ": kernel must be positive, got ", a.kernel_h, "x", a.kernel_w);
  SAL_CHECK(a.stride_h > 0 && a.stride_w > 0, op, ": stride must be positive, got ", a.stride_h, "x", a.stride_w);
  SAL_CHECK(a.pad_h >= 0 && a.pad_w >= 0, op, ": padding must be >= 0, got ", a.pad_h, "x", a.pad_w);
  SAL_CHECK(a.pad_h <= a.kernel_h / 2 && a.pad_w <= a.kernel_w / 2, op, ": padding ", a.pad_h, "x", a.pad_w,
            " must be at most half the kernel ", a.kernel_h, "x", a.kernel_w);
  const int64_t p = pooled_extent(x[2], a.kernel_h, a.stride_h, a.pad_h, a.ceil_mode);
  const int64_t q = pooled_extent(x[3], a.kernel_w, a.stride_w, a.pad_w, a.ceil_mode);
  SAL_CHECK(p >= 1 && q >= 1, op, ": input ", x.str(), " with kernel ", a.kernel_h, "x", a.kernel_w, ", stride ",
            a.stride_h, "x", a.stride_w, ", padding ", a.pad_h, "x", a.pad_w, " gives an empty output (", p, "x", q,
            "); expected at least 1x1");
  return Shape{x[0], x[1], p, q};
}

// The checks of a pooling forward pass on x; returns y's shape.
Shape pool_forward_shape(const char* op, const Ctx& ctx, const Tensor& x, const Pool2dArgs& a) {
  check_device(op, ctx, {&x});
  check_float(op, ctx, {&x});
  check_ndim(op, "x", x, 4);
  return pool_shape(op, x.shape(), a);
}

}  // namespace

Shape pool2d_out_shape(const Shape& x, const Pool2dArgs& a) { return pool_shape("pool2d_out_shape", x, a); }

Tensor max_pool2d(Ctx& ctx, const Tensor& x, const Pool2dArgs& a) {
  const char* op = "max_pool2d";
  const Shape out = pool_forward_shape(op, ctx, x, a);
  Tensor y = ctx.alloc(out, x.dtype());
  SAL_BACKEND(ctx, op, cuda::max_pool2d(ctx, x, a, y), cpu::max_pool2d(ctx, x, a, y));
  return y;
}

Tensor max_pool2d_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Pool2dArgs& a) {
  const char* op = "max_pool2d_backward";
  check_device(op, ctx, {&dy, &x});
  check_float(op, ctx, {&dy, &x});
  check_ndim(op, "x", x, 4);
  check_shape(op, "dy", dy, pool_shape(op, x.shape(), a));
  Tensor dx = ctx.alloc(x.shape(), x.dtype());
  SAL_BACKEND(ctx, op, cuda::max_pool2d_backward(ctx, dy, x, a, dx), cpu::max_pool2d_backward(ctx, dy, x, a, dx));
  return dx;
}

Tensor avg_pool2d(Ctx& ctx, const Tensor& x, const Pool2dArgs& a) {
  const char* op = "avg_pool2d";
  const Shape out = pool_forward_shape(op, ctx, x, a);
  Tensor y = ctx.alloc(out, x.dtype());
  SAL_BACKEND(ctx, op, cuda::avg_pool2d(ctx, x, a, y), cpu::avg_pool2d(ctx, x, a, y));
  return y;
}

Tensor avg_pool2d_backward(Ctx& ctx, const Tensor& dy, const Shape& x_shape, const Pool2dArgs& a) {
  const char* op = "avg_pool2d_backward";
  check_device(op, ctx, {&dy});
  check_float(op, ctx, {&dy});
  check_shape(op, "dy", dy, pool_shape(op, x_shape, a));
  Tensor dx = ctx.alloc(x_shape, dy.dtype());
  SAL_BACKEND(ctx, op, cuda::avg_pool2d_backward(ctx, dy, a, dx), cpu::avg_pool2d_backward(ctx, dy, a, dx));
  return dx;
}

Tensor global_avg_pool(Ctx& ctx, const Tensor& x) {
  const char* op = "global_avg_pool";
  check_device(op, ctx, {&x});
  check_float(op, ctx, {&x});
  check_ndim(op, "x", x, 4);
  SAL_CHECK(x.dim(2) > 0 && x.dim(3) > 0, op, ": x must have H, W >= 1, got ", x.desc());
  Tensor y = ctx.alloc(Shape{x.dim(0), x.dim(1), 1, 1}, x.dtype());
  SAL_BACKEND(ctx, op, cuda::global_avg_pool(ctx, x, y), cpu::global_avg_pool(ctx, x, y));
  return y;
}

Tensor global_avg_pool_backward(Ctx& ctx, const Tensor& dy, const Shape& x_shape) {
  const char* op = "global_avg_pool_backward";
  check_device(op, ctx, {&dy});
  check_float(op, ctx, {&dy});
  SAL_CHECK(x_shape.nd == 4 && x_shape[2] > 0 && x_shape[3] > 0, op,
            ": x_shape must be [N,C,H,W] with H, W >= 1, got ", x_shape.str());
  check_shape(op, "dy", dy, Shape{x_shape[0], x_shape[1], 1, 1});
  Tensor dx = ctx.alloc(x_shape, dy.dtype());
  SAL_BACKEND(ctx, op, cuda::global_avg_pool_backward(ctx, dy, dx), cpu::global_avg_pool_backward(ctx, dy, dx));
  return dx;
}

}  // namespace sal
