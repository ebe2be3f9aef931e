// Op API: activations. Validation and dispatch only.
#include "engine/cpu/activation.h"
#include "engine/dispatch.h"
#include "engine/ops.h"

namespace sal {

using namespace detail;

namespace {

Tensor unary_op(Ctx& ctx, const char* op, const Tensor& x, void (*cpu_fn)(Ctx&, const Tensor&, Tensor&)) {
  check_device(op, ctx, {&x});
  check_float(op, ctx, {&x});
  if (ctx.device == Device::CUDA) no_cuda_kernel(op);
  Tensor y = ctx.alloc(x.shape(), x.dtype());
  cpu_fn(ctx, x, y);
  return y;
}

Tensor backward_op(Ctx& ctx, const char* op, const Tensor& dy, const Tensor& saved,
                   void (*cpu_fn)(Ctx&, const Tensor&, const Tensor&, Tensor&)) {
  check_device(op, ctx, {&dy, &saved});
  check_float(op, ctx, {&dy, &saved});
  check_shape(op, "dy", dy, saved.shape());
  if (ctx.device == Device::CUDA) no_cuda_kernel(op);
  Tensor dx = ctx.alloc(dy.shape(), dy.dtype());
  cpu_fn(ctx, dy, saved, dx);
  return dx;
}

}  // namespace

Tensor relu(Ctx& ctx, const Tensor& x) { return unary_op(ctx, "relu", x, cpu::relu); }
Tensor relu_backward(Ctx& ctx, const Tensor& dy, const Tensor& y) {
  return backward_op(ctx, "relu_backward", dy, y, cpu::relu_backward);
}
Tensor relu6(Ctx& ctx, const Tensor& x) { return unary_op(ctx, "relu6", x, cpu::relu6); }
Tensor relu6_backward(Ctx& ctx, const Tensor& dy, const Tensor& x) {
  return backward_op(ctx, "relu6_backward", dy, x, cpu::relu6_backward);
}
Tensor sigmoid(Ctx& ctx, const Tensor& x) { return unary_op(ctx, "sigmoid", x, cpu::sigmoid); }
Tensor sigmoid_backward(Ctx& ctx, const Tensor& dy, const Tensor& y) {
  return backward_op(ctx, "sigmoid_backward", dy, y, cpu::sigmoid_backward);
}

}  // namespace sal
