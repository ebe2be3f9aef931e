// Adam update: validation, the step's constants (in double, on the host), and dispatch to the CPU
// kernel below (one pass over the flat buffers, OpenMP over elements) or cuda/adam.cu.
// w, g, m, v: [P] (flat) -> w, m, v updated in place.
#include "optim/adam.h"

#include <cmath>

#include "engine/cpu/dispatch.h"
#include "engine/device_session.h"
#include "engine/dispatch.h"
#ifdef SAL_WITH_CUDA
#include "cuda/adam.h"
#endif

namespace sal {

Adam::Adam(const ParamStore& params, AdamConfig cfg) : params_(params), cfg_(cfg) {
  SAL_CHECK(params.finalized(), "Adam: the parameter store is not finalized");
  Tensor g = params.flat_grads();
  SAL_CHECK(g.defined(), "Adam: the parameter store has no trainable parameters");
  m_ = Tensor::zeros(g.shape(), g.dtype(), g.device());
  v_ = Tensor::zeros(g.shape(), g.dtype(), g.device());
  constants_ = Tensor::zeros(Shape{kAdamConstants}, g.dtype(), g.device());
}

void Adam::prepare(Ctx& ctx) {
  upload_into(ctx, constants_, adam_constants(cfg_, t_ + 1, constants_.dtype()));
  ++t_;  // only once the upload was accepted
}

void Adam::apply(Ctx& ctx) {
  Tensor w = params_.flat_trainable_values();
  adam_update(ctx, w, params_.flat_grads(), m_, v_, constants_);
}

void Adam::step(Ctx& ctx) {
  prepare(ctx);
  apply(ctx);
}

Tensor adam_constants(const AdamConfig& cfg, int64_t step, DType dtype) {
  SAL_CHECK(step >= 1, "adam_update: step is 1-based, got ", step);
  // Bias corrections folded into the step size and epsilon; 1 - beta in double (1 - 0.999f in float is
  // off by 1e-5 relative).
  const double c1 = 1 - std::pow(cfg.beta1, static_cast<double>(step));
  const double c2 = 1 - std::pow(cfg.beta2, static_cast<double>(step));
  return Tensor::from_values({cfg.beta1, cfg.beta2, 1 - cfg.beta1, 1 - cfg.beta2, cfg.lr / c1, 1 / std::sqrt(c2),
                              cfg.eps, cfg.lr * cfg.weight_decay},
                             Shape{kAdamConstants}, dtype);
}

namespace {

// w, g, m, v: [P] (flat), k: [8] -> w, m, v updated in place; OpenMP over elements.
void adam_cpu(Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const Tensor& constants) {
  cpu::dispatch_float(w.dtype(), "adam_update", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* pw = w.data<T>();
    const T* pg = g.data<T>();
    T* pm = m.data<T>();
    T* pv = v.data<T>();
    const T* k = constants.data<T>();
    const T b1 = k[0], b2 = k[1], c_b1 = k[2], c_b2 = k[3], lr_t = k[4], inv_sqrt_c2 = k[5], eps = k[6], decay = k[7];
    const int64_t n = w.numel();
#pragma omp parallel for if (n > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      T gi = pg[i];
      pm[i] = b1 * pm[i] + c_b1 * gi;
      pv[i] = b2 * pv[i] + c_b2 * gi * gi;
      pw[i] -= lr_t * pm[i] / (std::sqrt(pv[i]) * inv_sqrt_c2 + eps) + decay * pw[i];
    }
  });
}

}  // namespace

void adam_update(Ctx& ctx, Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const Tensor& constants) {
  const char* op = "adam_update";
  detail::check_device(op, ctx, {&w, &g, &m, &v, &constants});
  detail::check_float(op, ctx, {&w, &g, &m, &v, &constants});
  detail::check_shape(op, "grad", g, w.shape());
  detail::check_shape(op, "m", m, w.shape());
  detail::check_shape(op, "v", v, w.shape());
  detail::check_shape(op, "constants", constants, Shape{kAdamConstants});
  SAL_BACKEND(ctx, op, cuda::adam_update(ctx, w, g, m, v, constants.data<float>()),
              adam_cpu(w, g, m, v, constants));
}

void adam_update(Ctx& ctx, Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const AdamConfig& cfg, int64_t step) {
  adam_update(ctx, w, g, m, v, upload(ctx, adam_constants(cfg, step, w.dtype())));
}

}  // namespace sal
