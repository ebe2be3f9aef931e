// Op API: batch normalisation (per channel of NCHW). Validation and dispatch only.
#include <cmath>
#include <utility>

#include "engine/cpu/batchnorm.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#ifdef SAL_WITH_CUDA
#include "cuda/batchnorm.h"
#endif

namespace sal {

using namespace detail;

namespace {

// x must be [N,C,H,W]; every per-channel tensor in `params` must be [C]. Returns C.
int64_t check_bn_shapes(const char* op, const Tensor& x, std::initializer_list<std::pair<const char*, const Tensor*>> params) {
  check_ndim(op, "x", x, 4);
  const int64_t c = x.dim(1);
  for (const auto& [what, t] : params) check_shape(op, what, *t, Shape{c});
  return c;
}

void check_eps(const char* op, double eps) {
  SAL_CHECK(std::isfinite(eps) && eps >= 0, op, ": eps must be finite and >= 0, got ", eps);
}

}  // namespace

Tensor batchnorm2d_infer(Ctx& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                         const Tensor& var, double eps) {
  const char* op = "batchnorm2d_infer";
  check_device(op, ctx, {&x, &gamma, &beta, &mean, &var});
  check_float(op, ctx, {&x, &gamma, &beta, &mean, &var});
  check_bn_shapes(op, x, {{"gamma", &gamma}, {"beta", &beta}, {"mean", &mean}, {"var", &var}});
  check_eps(op, eps);
  Tensor y = ctx.alloc(x.shape(), x.dtype());
  SAL_BACKEND(ctx, op, cuda::batchnorm2d_infer(ctx, x, gamma, beta, mean, var, eps, y),
              cpu::batchnorm2d_infer(ctx, x, gamma, beta, mean, var, eps, y));
  return y;
}

namespace {
void check_infer_act(const char* op, Ctx& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta,
                     const Tensor& mean, const Tensor& var, double eps, const Tensor* residual, Activation act) {
  check_device(op, ctx, {&x, &gamma, &beta, &mean, &var, residual});
  check_float(op, ctx, {&x, &gamma, &beta, &mean, &var, residual});
  check_bn_shapes(op, x, {{"gamma", &gamma}, {"beta", &beta}, {"mean", &mean}, {"var", &var}});
  if (residual) check_shape(op, "residual", *residual, x.shape());
  check_eps(op, eps);
  SAL_CHECK(act == Activation::None || act == Activation::ReLU || act == Activation::ReLU6, op,
            ": unknown activation ", static_cast<int>(act));
}
}  // namespace

Tensor batchnorm2d_infer_act(Ctx& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                             const Tensor& var, double eps, const Tensor* residual, Activation act) {
  const char* op = "batchnorm2d_infer_act";
  check_infer_act(op, ctx, x, gamma, beta, mean, var, eps, residual, act);
  Tensor y = ctx.alloc(x.shape(), x.dtype());
  SAL_BACKEND(ctx, op, cuda::batchnorm2d_infer_act(ctx, x, gamma, beta, mean, var, eps, residual, act, y),
              cpu::batchnorm2d_infer_act(ctx, x, gamma, beta, mean, var, eps, residual, act, y));
  return y;
}

void batchnorm2d_infer_act_inplace(Ctx& ctx, Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                                   const Tensor& var, double eps, const Tensor* residual, Activation act) {
  const char* op = "batchnorm2d_infer_act_inplace";
  check_infer_act(op, ctx, x, gamma, beta, mean, var, eps, residual, act);
  if (residual) {  // each element of x is read and then written by one thread: only a separate residual is safe
    const char *a = static_cast<const char*>(x.raw()), *r = static_cast<const char*>(residual->raw());
    SAL_CHECK(r + residual->nbytes() <= a || a + x.nbytes() <= r, op, ": the residual overlaps x");
  }
  // Both backends' kernels read each element before writing it, in the same thread (cuda/batchnorm.cu).
  SAL_BACKEND(ctx, op, cuda::batchnorm2d_infer_act(ctx, x, gamma, beta, mean, var, eps, residual, act, x),
              cpu::batchnorm2d_infer_act(ctx, x, gamma, beta, mean, var, eps, residual, act, x));
}

Tensor batchnorm2d_infer_act_backward(Ctx& ctx, const Tensor& dy, const Tensor& y, const Tensor& gamma,
                                      const Tensor& var, double eps, Activation act) {
  const char* op = "batchnorm2d_infer_act_backward";
  check_device(op, ctx, {&dy, &y, &gamma, &var});
  check_float(op, ctx, {&dy, &y, &gamma, &var});
  check_bn_shapes(op, y, {{"gamma", &gamma}, {"var", &var}});
  check_shape(op, "dy", dy, y.shape());
  check_eps(op, eps);
  SAL_CHECK(act == Activation::None || act == Activation::ReLU || act == Activation::ReLU6, op,
            ": unknown activation ", static_cast<int>(act));
  Tensor dx = ctx.alloc(y.shape(), y.dtype());
  SAL_BACKEND(ctx, op, cuda::batchnorm2d_infer_act_backward(ctx, dy, y, gamma, var, eps, act, dx),
              cpu::batchnorm2d_infer_act_backward(ctx, dy, y, gamma, var, eps, act, dx));
  return dx;
}

Tensor batchnorm2d_infer_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                  const Tensor& mean, const Tensor& var, double eps, Tensor* dgamma, Tensor* dbeta) {
  const char* op = "batchnorm2d_infer_backward";
  check_device(op, ctx, {&dy, &x, &gamma, &mean, &var, dgamma, dbeta});
  check_float(op, ctx, {&dy, &x, &gamma, &mean, &var, dgamma, dbeta});
  check_bn_shapes(op, x, {{"gamma", &gamma}, {"mean", &mean}, {"var", &var}});
  check_shape(op, "dy", dy, x.shape());
  if (dgamma) check_shape(op, "dgamma", *dgamma, gamma.shape());
  if (dbeta) check_shape(op, "dbeta", *dbeta, gamma.shape());
  check_eps(op, eps);
  Tensor dx = ctx.alloc(x.shape(), x.dtype());
  SAL_BACKEND(ctx, op, cuda::batchnorm2d_infer_backward(ctx, dy, x, gamma, mean, var, eps, dx, dgamma, dbeta),
              cpu::batchnorm2d_infer_backward(ctx, dy, x, gamma, mean, var, eps, dx, dgamma, dbeta));
  return dx;
}

Tensor batchnorm2d_train(Ctx& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps,
                         double momentum, Tensor* running_mean, Tensor* running_var, Tensor& save_mean,
                         Tensor& save_invstd) {
  const char* op = "batchnorm2d_train";
  check_device(op, ctx, {&x, &gamma, &beta, running_mean, running_var, &save_mean, &save_invstd});
  check_float(op, ctx, {&x, &gamma, &beta, running_mean, running_var, &save_mean, &save_invstd});
  const int64_t c = check_bn_shapes(op, x, {{"gamma", &gamma}, {"beta", &beta}, {"save_mean", &save_mean},
                                            {"save_invstd", &save_invstd}});
  SAL_CHECK(!running_mean == !running_var, op, ": running_mean and running_var must be given together (got ",
            running_mean ? "running_mean only" : "running_var only", ")");
  if (running_mean) {
    check_shape(op, "running_mean", *running_mean, Shape{c});
    check_shape(op, "running_var", *running_var, Shape{c});
  }
  SAL_CHECK(x.dim(0) * x.dim(2) * x.dim(3) > 1, op, ": expected more than 1 value per channel in training, got ",
            x.desc());
  check_eps(op, eps);
  SAL_CHECK(momentum >= 0 && momentum <= 1, op, ": momentum must be in [0, 1], got ", momentum);
  Tensor y = ctx.alloc(x.shape(), x.dtype());
  SAL_BACKEND(
      ctx, op,
      cuda::batchnorm2d_train(ctx, x, gamma, beta, eps, momentum, running_mean, running_var, save_mean, save_invstd, y),
      cpu::batchnorm2d_train(ctx, x, gamma, beta, eps, momentum, running_mean, running_var, save_mean, save_invstd, y));
  return y;
}

Tensor batchnorm2d_train_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                  const Tensor& save_mean, const Tensor& save_invstd, Tensor* dgamma, Tensor* dbeta) {
  const char* op = "batchnorm2d_train_backward";
  check_device(op, ctx, {&dy, &x, &gamma, &save_mean, &save_invstd, dgamma, dbeta});
  check_float(op, ctx, {&dy, &x, &gamma, &save_mean, &save_invstd, dgamma, dbeta});
  check_bn_shapes(op, x, {{"gamma", &gamma}, {"save_mean", &save_mean}, {"save_invstd", &save_invstd}});
  check_shape(op, "dy", dy, x.shape());
  if (dgamma) check_shape(op, "dgamma", *dgamma, gamma.shape());
  if (dbeta) check_shape(op, "dbeta", *dbeta, gamma.shape());
  Tensor dx = ctx.alloc(x.shape(), x.dtype());
  SAL_BACKEND(ctx, op, cuda::batchnorm2d_train_backward(ctx, dy, x, gamma, save_mean, save_invstd, dx, dgamma, dbeta),
              cpu::batchnorm2d_train_backward(ctx, dy, x, gamma, save_mean, save_invstd, dx, dgamma, dbeta));
  return dx;
}

}  // namespace sal
