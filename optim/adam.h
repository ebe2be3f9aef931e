// Adam (Kingma & Ba) over a ParamStore's flat buffers: one update over the contiguous range of
// trainable values, with the first and second moments in flat buffers of the same size.
// Bias correction as in the paper; optional decoupled weight decay (AdamW) when weight_decay > 0.
#pragma once
#include "engine/context.h"
#include "engine/params.h"

namespace sal {

struct AdamConfig {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class Adam {
 public:
  Adam(const ParamStore& params, AdamConfig cfg);
  // One update from the gradients currently in params.flat_grads(). Does not zero them.
  void step(Ctx& ctx);
  int64_t steps() const { return t_; }
  void set_steps(int64_t t) { t_ = t; }  // when resuming from a checkpoint
  Tensor m() const { return m_; }
  Tensor v() const { return v_; }
  AdamConfig& config() { return cfg_; }

 private:
  const ParamStore& params_;
  AdamConfig cfg_;
  Tensor m_, v_;
  int64_t t_ = 0;
};

// The leaf op: w, g, m, v of one shape; m, v, w updated in place. step is 1-based.
void adam_update(Ctx& ctx, Tensor& w, const Tensor& g, Tensor& m, Tensor& v, const AdamConfig& cfg, int64_t step);

}  // namespace sal
