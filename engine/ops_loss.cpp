// Op API: softmax, log-softmax, cross-entropy, total variation and area losses.
// Validation and dispatch only; the kernels are in engine/cpu/loss.cpp (which also raises the
// data-dependent errors: labels out of range, a fractional power of a non-positive base) and
// cuda/loss.cu (which cannot throw from a kernel and writes NaN instead, see engine/ops.h).
#include <cmath>

#include "engine/cpu/loss.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#ifdef SAL_WITH_CUDA
#include "cuda/loss.h"
#endif

namespace sal {

using namespace detail;

namespace {

void check_logits(const char* op, const Ctx& ctx, const Tensor& z, const char* what = "logits") {
  check_ndim(op, what, z, 2);
  check_device(op, ctx, {&z});
  check_float(op, ctx, {&z});
  SAL_CHECK(z.dim(1) > 0, op, ": ", what, " ", z.desc(), " has no classes (expected [N,K] with K >= 1)");
}

using RowFn = void (*)(Ctx&, const Tensor&, Tensor&);
using RowBackwardFn = void (*)(Ctx&, const Tensor&, const Tensor&, Tensor&);

// The CUDA function of a family, or null in a build without CUDA (never called then).
#ifdef SAL_WITH_CUDA
#define CUDA_FN(f) cuda::f
#else
#define CUDA_FN(f) nullptr
#endif

Tensor rowwise(Ctx& ctx, const char* op, const Tensor& z, RowFn cpu_fn, [[maybe_unused]] RowFn cuda_fn) {
  check_logits(op, ctx, z);
  Tensor y = ctx.alloc(z.shape(), z.dtype());
  SAL_BACKEND(ctx, op, cuda_fn(ctx, z, y), cpu_fn(ctx, z, y));
  return y;
}

Tensor rowwise_backward(Ctx& ctx, const char* op, const Tensor& dy, const Tensor& y, RowBackwardFn cpu_fn,
                        [[maybe_unused]] RowBackwardFn cuda_fn) {
  check_logits(op, ctx, y, "y");
  check_device(op, ctx, {&dy});
  check_float(op, ctx, {&y, &dy});
  check_shape(op, "dy", dy, y.shape());
  Tensor dx = ctx.alloc(y.shape(), y.dtype());
  SAL_BACKEND(ctx, op, cuda_fn(ctx, dy, y, dx), cpu_fn(ctx, dy, y, dx));
  return dx;
}

// m: [N,1,H,W]
void check_mask(const char* op, const Ctx& ctx, const Tensor& m) {
  check_ndim(op, "m", m, 4);
  SAL_CHECK(m.dim(1) == 1, op, ": m must be a one-channel mask [N,1,H,W], got ", m.desc());
  check_device(op, ctx, {&m});
  check_float(op, ctx, {&m});
}

void check_dloss(const char* op, const Ctx& ctx, const Tensor& dloss, const Tensor& like) {
  check_device(op, ctx, {&dloss});
  check_float(op, ctx, {&like, &dloss});
  check_shape(op, "dloss", dloss, Shape{like.dim(0)});
}

void check_finite(const char* op, const char* what, double v) {
  SAL_CHECK(std::isfinite(v), op, ": ", what, " must be finite, got ", v);
}

void check_area_args(const char* op, const Tensor& m, double power, double eps) {
  check_finite(op, "power", power);
  check_finite(op, "eps", eps);
  SAL_CHECK(m.dim(2) * m.dim(3) > 0, op, ": m ", m.desc(), " has no pixels (the mean area is undefined)");
}

}  // namespace

Tensor softmax(Ctx& ctx, const Tensor& logits) {
  return rowwise(ctx, "softmax", logits, cpu::softmax, CUDA_FN(softmax));
}
Tensor softmax_backward(Ctx& ctx, const Tensor& dy, const Tensor& y) {
  return rowwise_backward(ctx, "softmax_backward", dy, y, cpu::softmax_backward, CUDA_FN(softmax_backward));
}
Tensor log_softmax(Ctx& ctx, const Tensor& logits) {
  return rowwise(ctx, "log_softmax", logits, cpu::log_softmax, CUDA_FN(log_softmax));
}
Tensor log_softmax_backward(Ctx& ctx, const Tensor& dy, const Tensor& y) {
  return rowwise_backward(ctx, "log_softmax_backward", dy, y, cpu::log_softmax_backward, CUDA_FN(log_softmax_backward));
}

Tensor cross_entropy(Ctx& ctx, const Tensor& logits, const Tensor& labels) {
  const char* op = "cross_entropy";
  check_logits(op, ctx, logits);
  check_labels(op, ctx, labels, logits.dim(0));
  Tensor loss = ctx.alloc(Shape{logits.dim(0)}, logits.dtype());
  // The CPU throws naming a label outside [0, K); CUDA writes NaN for that sample.
  SAL_BACKEND(ctx, op, cuda::cross_entropy(ctx, logits, labels, loss), cpu::cross_entropy(ctx, logits, labels, loss));
  return loss;
}

Tensor cross_entropy_backward(Ctx& ctx, const Tensor& dloss, const Tensor& logits, const Tensor& labels) {
  const char* op = "cross_entropy_backward";
  check_logits(op, ctx, logits);
  check_labels(op, ctx, labels, logits.dim(0));
  check_dloss(op, ctx, dloss, logits);
  Tensor d = ctx.alloc(logits.shape(), logits.dtype());
  SAL_BACKEND(ctx, op, cuda::cross_entropy_backward(ctx, dloss, logits, labels, d),
              cpu::cross_entropy_backward(ctx, dloss, logits, labels, d));
  return d;
}

Tensor tv_loss(Ctx& ctx, const Tensor& m, double border_weight) {
  const char* op = "tv_loss";
  check_mask(op, ctx, m);
  check_finite(op, "border_weight", border_weight);
  Tensor loss = ctx.alloc(Shape{m.dim(0)}, m.dtype());
  SAL_BACKEND(ctx, op, cuda::tv_loss(ctx, m, border_weight, loss), cpu::tv_loss(ctx, m, border_weight, loss));
  return loss;
}

Tensor tv_loss_backward(Ctx& ctx, const Tensor& dloss, const Tensor& m, double border_weight) {
  const char* op = "tv_loss_backward";
  check_mask(op, ctx, m);
  check_finite(op, "border_weight", border_weight);
  check_dloss(op, ctx, dloss, m);
  Tensor dm = ctx.alloc(m.shape(), m.dtype());
  SAL_BACKEND(ctx, op, cuda::tv_loss_backward(ctx, dloss, m, border_weight, dm),
              cpu::tv_loss_backward(ctx, dloss, m, border_weight, dm));
  return dm;
}

Tensor area_loss(Ctx& ctx, const Tensor& m, double power, double eps) {
  const char* op = "area_loss";
  check_mask(op, ctx, m);
  check_area_args(op, m, power, eps);
  Tensor loss = ctx.alloc(Shape{m.dim(0)}, m.dtype());
  // The CPU throws if m + eps <= 0 with a non-integer power; CUDA writes NaN for that sample.
  SAL_BACKEND(ctx, op, cuda::area_loss(ctx, m, power, eps, loss), cpu::area_loss(ctx, m, power, eps, loss));
  return loss;
}

Tensor area_loss_backward(Ctx& ctx, const Tensor& dloss, const Tensor& m, double power, double eps) {
  const char* op = "area_loss_backward";
  check_mask(op, ctx, m);
  check_area_args(op, m, power, eps);
  check_dloss(op, ctx, dloss, m);
  Tensor dm = ctx.alloc(m.shape(), m.dtype());
  SAL_BACKEND(ctx, op, cuda::area_loss_backward(ctx, dloss, m, power, eps, dm),
              cpu::area_loss_backward(ctx, dloss, m, power, eps, dm));
  return dm;
}

}  // namespace sal
