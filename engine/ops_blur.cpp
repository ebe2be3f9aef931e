// Op API: Gaussian blur and its adjoint. Validation and dispatch only.
#include <cmath>
#include <limits>

#include "engine/cpu/blur.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#ifdef SAL_WITH_CUDA
#include "cuda/blur.h"
#endif

namespace sal {

using namespace detail;

namespace {

// The checks of a blur pass on its one input `t` (x forward, dy backward).
void check_blur(const char* op, const Ctx& ctx, const char* what, const Tensor& t, double sigma, int ksize) {
  check_device(op, ctx, {&t});
  check_float(op, ctx, {&t});
  check_ndim(op, what, t, 4);
  SAL_CHECK(ksize >= 1 && ksize % 2 == 1, op, ": ksize must be odd and positive, got ", ksize);
  SAL_CHECK(std::isfinite(sigma) && sigma > 0, op, ": sigma must be positive and finite, got ", sigma);
  SAL_CHECK(t.dim(2) >= 1 && t.dim(3) >= 1, op, ": ", what, " must have H, W >= 1, got ", t.desc());
  // The kernels index rows and tap lists with i32.
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max() / 2;
  SAL_CHECK(t.dim(2) * ksize < kMax && t.dim(3) + ksize < kMax, op, ": ", what, " ", t.desc(), " with ksize ", ksize,
            " is too large (H * ksize must stay below 2^30)");
}

}  // namespace

Tensor gaussian_blur(Ctx& ctx, const Tensor& x, double sigma, int ksize) {
  const char* op = "gaussian_blur";
  check_blur(op, ctx, "x", x, sigma, ksize);
  Tensor y = ctx.alloc(x.shape(), x.dtype());
  SAL_BACKEND(ctx, op, cuda::gaussian_blur(ctx, x, sigma, ksize, y), cpu::gaussian_blur(ctx, x, sigma, ksize, y));
  return y;
}

Tensor gaussian_blur_backward(Ctx& ctx, const Tensor& dy, double sigma, int ksize) {
  const char* op = "gaussian_blur_backward";
  check_blur(op, ctx, "dy", dy, sigma, ksize);
  Tensor dx = ctx.alloc(dy.shape(), dy.dtype());
  SAL_BACKEND(ctx, op, cuda::gaussian_blur_backward(ctx, dy, sigma, ksize, dx), cpu::gaussian_blur_backward(ctx, dy, sigma, ksize, dx));
  return dx;
}

}  // namespace sal
