// Op API: resampling (bilinear resize, pixel shuffle / unshuffle). Validation and dispatch only.
#include <limits>

#include "engine/cpu/resample.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#ifdef SAL_WITH_CUDA
#include "cuda/resample.h"
#endif

namespace sal {

using namespace detail;

namespace {

constexpr int64_t kMaxExtent = std::numeric_limits<int32_t>::max();  // the kernels index rows/cols in i32

void check_extent(const char* op, const char* what, int64_t h, int64_t w) {
  SAL_CHECK(h >= 1 && w >= 1 && h <= kMaxExtent && w <= kMaxExtent, op, ": ", what, " must be at least 1x1 (and below 2^31), got ",
            h, "x", w);
}

void check_factor(const char* op, int r) { SAL_CHECK(r >= 1, op, ": upscale factor r must be >= 1, got ", r); }

}  // namespace

Tensor resize_bilinear(Ctx& ctx, const Tensor& x, int64_t out_h, int64_t out_w) {
  const char* op = "resize_bilinear";
  check_device(op, ctx, {&x});
  check_float(op, ctx, {&x});
  check_ndim(op, "x", x, 4);
  check_extent(op, "the input's H x W", x.dim(2), x.dim(3));
  check_extent(op, "the output size", out_h, out_w);
  Tensor y = ctx.alloc(Shape{x.dim(0), x.dim(1), out_h, out_w}, x.dtype());
  SAL_BACKEND(ctx, op, cuda::resize_bilinear(ctx, x, y), cpu::resize_bilinear(ctx, x, y));
  return y;
}

Tensor resize_bilinear_backward(Ctx& ctx, const Tensor& dy, const Shape& x_shape) {
  const char* op = "resize_bilinear_backward";
  check_device(op, ctx, {&dy});
  check_float(op, ctx, {&dy});
  SAL_CHECK(x_shape.nd == 4, op, ": x_shape must be [N,C,H,W], got ", x_shape.str());
  check_extent(op, "x_shape's H x W", x_shape[2], x_shape[3]);
  check_ndim(op, "dy", dy, 4);
  SAL_CHECK(dy.dim(0) == x_shape[0] && dy.dim(1) == x_shape[1], op, ": dy ", dy.desc(),
            " must have the batch and channels of x_shape ", x_shape.str());
  check_extent(op, "dy's H x W", dy.dim(2), dy.dim(3));
  Tensor dx = ctx.alloc(x_shape, dy.dtype());
  SAL_BACKEND(ctx, op, cuda::resize_bilinear_backward(ctx, dy, dx), cpu::resize_bilinear_backward(ctx, dy, dx));
  return dx;
}

Tensor pixel_shuffle(Ctx& ctx, const Tensor& x, int r) {
  const char* op = "pixel_shuffle";
  check_device(op, ctx, {&x});
  check_float(op, ctx, {&x});
  check_ndim(op, "x", x, 4);
  check_factor(op, r);
  const int64_t rr = static_cast<int64_t>(r) * r;
  SAL_CHECK(x.dim(1) % rr == 0, op, ": channels of x ", x.desc(), " must be divisible by r*r = ", rr);
  Tensor y = ctx.alloc(Shape{x.dim(0), x.dim(1) / rr, x.dim(2) * r, x.dim(3) * r}, x.dtype());
  SAL_BACKEND(ctx, op, cuda::pixel_shuffle(ctx, x, r, y), cpu::pixel_shuffle(ctx, x, r, y));
  return y;
}

Tensor pixel_unshuffle(Ctx& ctx, const Tensor& x, int r) {
  const char* op = "pixel_unshuffle";
  check_device(op, ctx, {&x});
  check_float(op, ctx, {&x});
  check_ndim(op, "x", x, 4);
  check_factor(op, r);
  SAL_CHECK(x.dim(2) % r == 0 && x.dim(3) % r == 0, op, ": H and W of x ", x.desc(), " must be divisible by r = ", r);
  const int64_t rr = static_cast<int64_t>(r) * r;
  Tensor y = ctx.alloc(Shape{x.dim(0), x.dim(1) * rr, x.dim(2) / r, x.dim(3) / r}, x.dtype());
  SAL_BACKEND(ctx, op, cuda::pixel_unshuffle(ctx, x, r, y), cpu::pixel_unshuffle(ctx, x, r, y));
  return y;
}

}  // namespace sal
