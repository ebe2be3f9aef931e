// Adam update: validation, the bias corrections (in double, on the host), and dispatch to the
// CPU kernel below (one pass over the flat buffers, OpenMP over elements) or cuda/adam.cu.
// w, g, m, v: [P] (flat) -> w, m, v updated in place.
#include "optim/adam.h"

#include <cmath>

#include "engine/cpu/dispatch.h"
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
}

void Adam::step(Ctx& ctx) {
  Tensor w = params_.flat_trainable_values();
  adam_update(ctx, w, params_.flat_grads(), m_, v_, cfg_, ++t_);
}

namespace {

// w, g, m, v: [P] (flat) -> w, m, v updated in place; OpenMP over elements.
void adam_cpu(Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const AdamConfig& cfg, double lr_t_d,
              double inv_sqrt_c2_d, double decay_d) {
  cpu::dispatch_float(w.dtype(), "adam_update", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* pw = w.data<T>();
    const T* pg = g.data<T>();
    T* pm = m.data<T>();
    T* pv = v.data<T>();
    // 1 - beta in double: 1 - 0.999f in float is off by 1e-5 relative.
    const T b1 = static_cast<T>(cfg.beta1), b2 = static_cast<T>(cfg.beta2);
    const T c_b1 = static_cast<T>(1 - cfg.beta1), c_b2 = static_cast<T>(1 - cfg.beta2);
    const T lr_t = static_cast<T>(lr_t_d), inv_sqrt_c2 = static_cast<T>(inv_sqrt_c2_d);
    const T eps = static_cast<T>(cfg.eps), decay = static_cast<T>(decay_d);
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

void adam_update(Ctx& ctx, Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const AdamConfig& cfg, int64_t step) {
  const char* op = "adam_update";
  detail::check_device(op, ctx, {&w, &g, &m, &v});
  detail::check_float(op, ctx, {&w, &g, &m, &v});
  detail::check_shape(op, "grad", g, w.shape());
  detail::check_shape(op, "m", m, w.shape());
  detail::check_shape(op, "v", v, w.shape());
  SAL_CHECK(step >= 1, op, ": step is 1-based, got ", step);
  // Bias corrections folded into the step size and epsilon, computed once in double.
  const double c1 = 1 - std::pow(cfg.beta1, static_cast<double>(step));
  const double c2 = 1 - std::pow(cfg.beta2, static_cast<double>(step));
  const double lr_t = cfg.lr / c1, inv_sqrt_c2 = 1 / std::sqrt(c2), decay = cfg.lr * cfg.weight_decay;
  SAL_BACKEND(ctx, op,
              cuda::adam_update(ctx, w, g, m, v,
                                cuda::AdamScalars{static_cast<float>(cfg.beta1), static_cast<float>(cfg.beta2),
                                                  static_cast<float>(1 - cfg.beta1), static_cast<float>(1 - cfg.beta2),
                                                  static_cast<float>(lr_t), static_cast<float>(inv_sqrt_c2),
                                                  static_cast<float>(cfg.eps), static_cast<float>(decay)}),
              adam_cpu(w, g, m, v, cfg, lr_t, inv_sqrt_c2, decay));
}

}  // namespace sal
