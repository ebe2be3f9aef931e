// Adam (Kingma & Ba) over a ParamStore's flat buffers: one update over the contiguous range of
// trainable values, with the first and second moments in flat buffers of the same size.
// Bias correction as in the paper; optional decoupled weight decay (AdamW) when weight_decay > 0.
// The step's constants (the bias corrections depend on the step count) live in a small tensor on the
// parameters' device that the update kernel reads, so a captured training step (engine/step_graph.h)
// replays correctly: prepare() refills it on the host side of the step, apply() is the device work.
#pragma once
#include "engine/context.h"
#include "engine/params.h"

namespace sal {

// The number of step constants (adam_constants).
inline constexpr int64_t kAdamConstants = 8;

struct AdamConfig {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class Adam {
 public:
  Adam(const ParamStore& params, AdamConfig cfg);
  // One update from the gradients currently in params.flat_grads() (= prepare + apply). Does not zero them.
  void step(Ctx& ctx);
  // The two halves of step(): prepare() counts the step and uploads its constants into the constants
  // tensor (host work, outside a captured step); apply() is the update kernel alone (capturable).
  void prepare(Ctx& ctx);
  void apply(Ctx& ctx);
  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }  // when resuming from a checkpoint
  Tensor m() const { return m_; }
  Tensor v() const { return v_; }
  AdamConfig& config() { return cfg_; }

 private:
  const ParamStore& params_;
  AdamConfig cfg_;
  Tensor m_, v_;
  Tensor constants_;  // adam_constants() of the prepared step, on the parameters' device
  int64_t t_ = 0;
};

// The constants of step `step` (1-based) as a host tensor [8] of dtype: {beta1, beta2, 1 - beta1,
// 1 - beta2, lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t), eps, lr * weight_decay}, computed in double.
Tensor adam_constants(const AdamConfig& cfg, int64_t step, DType dtype);

// The leaf op: w, g, m, v of one shape; m, v, w updated in place with the constants tensor [8]
// (adam_constants, on ctx's device, of w's dtype) read by the kernel.
void adam_update(Ctx& ctx, Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const Tensor& constants);
// The same with the constants of (cfg, step) uploaded first (not capturable; tests and one-off updates).
void adam_update(Ctx& ctx, Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const AdamConfig& cfg, int64_t step);

}  // namespace sal
