// Op API: activations. Validation and dispatch only.
#include "engine/cpu/activation.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#ifdef SAL_WITH_CUDA
#include "cuda/activation.h"
#endif

namespace sal {

using namespace detail;

namespace {

using UnaryFn = void (*)(Ctx&, const Tensor&, Tensor&);
using BinaryFn = void (*)(Ctx&, const Tensor&, const Tensor&, Tensor&);

Tensor unary_op(Ctx& ctx, const char* op, const Tensor& x, UnaryFn cpu_fn, [[maybe_unused]] UnaryFn cuda_fn) {
  check_device(op, ctx, {&x});
  check_float(op, ctx, {&x});
  Tensor y = ctx.alloc(x.shape(), x.dtype());
  SAL_BACKEND(ctx, op, cuda_fn(ctx, x, y), cpu_fn(ctx, x, y));
  return y;
}

Tensor backward_op(Ctx& ctx, const char* op, const Tensor& dy, const Tensor& saved, BinaryFn cpu_fn,
                   [[maybe_unused]] BinaryFn cuda_fn) {
  check_device(op, ctx, {&dy, &saved});
  check_float(op, ctx, {&dy, &saved});
  check_shape(op, "dy", dy, saved.shape());
  Tensor dx = ctx.alloc(dy.shape(), dy.dtype());
  SAL_BACKEND(ctx, op, cuda_fn(ctx, dy, saved, dx), cpu_fn(ctx, dy, saved, dx));
  return dx;
}

// The CUDA function of a family, or null in a build without CUDA (never called then).
#ifdef SAL_WITH_CUDA
#define CUDA_FN(f) cuda::f
#else
#define CUDA_FN(f) nullptr
#endif

}  // namespace

Tensor relu(Ctx& ctx, const Tensor& x) { return unary_op(ctx, "relu", x, cpu::relu, CUDA_FN(relu)); }
Tensor relu_backward(Ctx& ctx, const Tensor& dy, const Tensor& y) {
  return backward_op(ctx, "relu_backward", dy, y, cpu::relu_backward, CUDA_FN(relu_backward));
}
Tensor relu6(Ctx& ctx, const Tensor& x) { return unary_op(ctx, "relu6", x, cpu::relu6, CUDA_FN(relu6)); }
Tensor relu6_backward(Ctx& ctx, const Tensor& dy, const Tensor& x) {
  return backward_op(ctx, "relu6_backward", dy, x, cpu::relu6_backward, CUDA_FN(relu6_backward));
}
Tensor sigmoid(Ctx& ctx, const Tensor& x) { return unary_op(ctx, "sigmoid", x, cpu::sigmoid, CUDA_FN(sigmoid)); }
Tensor sigmoid_backward(Ctx& ctx, const Tensor& dy, const Tensor& y) {
  return backward_op(ctx, "sigmoid_backward", dy, y, cpu::sigmoid_backward, CUDA_FN(sigmoid_backward));
}

}  // namespace sal
