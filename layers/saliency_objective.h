// The masker's training objective (Dabkowski & Gal 2017; DESIGN.md section 1): evidence removal,
// the frozen black box on the preserved and the destroyed image, the loss terms, and the gradient
// of the batch loss with respect to the mask (and the head-resolution mask and the filter logits),
// obtained through the black box's input gradient (backward_input: no weight gradients).
//
// Evidence removal, per sample, drawn from the caller's seeded generator in a fixed order
// (for each sample: blur-or-colour, colour r,g,b; then a 64-bit seed for the alternative's noise;
// then one for the preserved image's noise; the noise itself is random_normal of that seed, made
// on the context's device, the same numbers on the CPU and CUDA):
//   A = gaussian_blur(X, blur_sigma, blur_ksize)  with probability blur_prob, else a constant
//       colour U(-colour_range/2, colour_range/2) per channel;
//   A += N(0, noise_std)          (released: 0.11)
//   X' = X + N(0, preserved_noise_std)   (released: 0.03; 0 disables)
// The colour and both noise levels are in the black box's normalised input units, as in the
// released code (which blends normalised images): colour 0 is the normalisation's mean colour
// and a noise of 1 is one normalisation std. On the [0,1] images this is colour
// (v - shift_c) / scale_c and noise sd / scale_c per channel (InputSpec::affine). On a CIFAR
// ResNet (std ~0.22) the released 0.11 is a noise of ~0.025 in [0,1]; as a [0,1] noise of 0.11
// it hid the object so well that the black box recognised a third of Phi(X,M).
//   Phi(X, M)   = X' * M + A * (1 - M)  = blend(X', A, M)    the preserved image
//   Phi(X, 1-M) = X' * (1 - M) + A * M  = blend(A, X', M)    the destroyed image
// Both go through black_box.normalize + forward as one batch of 2N; z1, z2 are their logits.
//
// Terms (per sample, then summed and divided by N; fake samples, real[n] = 0, get the area
// term and the selector term only; `total` is the sum of the reported terms):
//   Paper:    tv_weight * TV(M)  (TV = sum of squared neighbour differences, or with tv_mean that
//                                 sum / the number of neighbour pairs)
//             area_weight * mean(M)                                         (paper: 1e-3)
//             preserver: -log softmax(z1)_c
//             destroyer: destroyer_weight * (softmax(z2)_c + prob_eps)^destroyer_power   (5, 0.3)
//   Released: area_weight * mean((M + 5e-4)^0.3)                             (released: 8)
//             smooth_weight * (TV(M) + border_weight * sum of squared border values) / 2
//                  (0.5, 0.3; on the head-resolution mask when smooth_on_head)
//             preserver_weight * relu(max_{k!=c} z1_k - z1_c + preserver_margin)   (0.3, 1)
//             destroyer_weight * relu(z2_c - max_{k!=c} z2_k + destroyer_margin)   (1, 5)
//   Both:     selector_weight * BCE(sigmoid(mean over positions of the filter logits), real[n])
//             (the auxiliary selector loss: high for the true class, low for a fake one)
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "layers/network.h"

namespace sal {

enum class LossVariant { Paper, Released };

struct ObjectiveConfig {
  LossVariant variant = LossVariant::Released;
  // Paper variant.
  double tv_weight = 10.0;
  bool tv_mean = false;
  double destroyer_power = 0.3;
  double prob_eps = 1e-8;  // keeps the power's gradient finite where the probability underflows
  // Shared weights; the defaults are the released ones (the paper's: area 1e-3, destroyer 5).
  double area_weight = 8.0;
  double destroyer_weight = 1.0;
  // Released variant.
  double area_power = 0.3, area_eps = 5e-4;
  double smooth_weight = 0.5, border_weight = 0.3;
  bool smooth_on_head = false;
  double preserver_weight = 0.3, preserver_margin = 1.0, destroyer_margin = 5.0;
  // Auxiliary selector loss (0 disables).
  double selector_weight = 1.0;
  // Evidence removal.
  double blur_prob = 0.5, blur_sigma = 10.0;
  int blur_ksize = 55;
  double colour_range = 0.66, noise_std = 0.11, preserved_noise_std = 0.03;  // normalised units

  // The paper's objective as written: l1 = 10 (TV as a sum), l2 = 1e-3, l3 = 5, l4 = 0.3.
  static ObjectiveConfig paper();
  // The released code's loss (area weight 8, smoothness on the full mask).
  static ObjectiveConfig released();
};

// Batch means of each term (sum over samples / N); total is their sum.
struct ObjectiveTerms {
  double total = 0, area = 0, smoothness = 0, preserver = 0, destroyer = 0, selector = 0;
};

// The host half of one evaluation (SaliencyObjective::draw), packed as the device half reads it: two
// tensors, so a step uploads two buffers (a captured step refills fixed device buffers of these shapes).
struct ObjectiveDraws {
  Tensor values;  // [kObjectiveConstants + 6N] of the images' dtype: the step's constants (area weight,
                  // margins, noise levels), then per sample: blur flag, colour (3), real weight, weight
  Tensor ints;    // i32 [N + 4]: real flags (selector labels), the alternative's and the preserved
                  // image's noise seeds ({low, high} words each)
};
inline constexpr int64_t kObjectiveConstants = 9;

struct ObjectiveResult {
  ObjectiveTerms terms;   // filled by SaliencyObjective::read_terms (the device half leaves it zero)
  Tensor sums;            // [5] on the device: the weighted sums behind area, smoothness, preserver,
                          // destroyer, selector (before their term weights)
  double smooth_factor = 0;  // the smoothness term's weight for this mask size
  Tensor dmask;           // dL/dM [N,1,H,W]
  Tensor dhead_mask;      // dL/d head_mask [N,1,h',w'] (smooth_on_head only; else undefined)
  Tensor dfilter_logits;  // dL/d filter logits [N,1,h,w] (selector_weight > 0 only; else undefined)
  Tensor logits_preserved, logits_destroyed;  // z1, z2 [N,K]
  Tensor preserved;       // Phi(X, M) [N,3,H,W]
};

class SaliencyObjective {
 public:
  explicit SaliencyObjective(const ObjectiveConfig& cfg) : cfg_(cfg) {}

  // images:[N,3,H,W] in [0,1]; mask:[N,1,H,W]; head_mask:[N,1,h',w'] (needed when
  // smooth_on_head); filter_logits:[N,1,h,w] (needed when selector_weight > 0); classes: I32[N]
  // on the device; real: N flags (0 = the selector got a fake class). Runs the black box forward
  // and backward_input (its state is overwritten) and returns the terms and gradients.
  // draw() + upload + the device half + read_terms(): one step outside a captured graph.
  ObjectiveResult evaluate(Ctx& ctx, Network& black_box, const Tensor& images, const Tensor& mask,
                           const Tensor& head_mask, const Tensor& filter_logits, const Tensor& classes,
                           const std::vector<uint8_t>& real, std::mt19937& rng);

  // The host half: the per-sample random choices from rng (in the order documented above), the
  // per-sample weights and the current area weight, for a batch of real.size() images in the black
  // box's input units. Host tensors.
  ObjectiveDraws draw(const Network& black_box, const std::vector<uint8_t>& real, DType dtype,
                      std::mt19937& rng) const;
  // The device half, with draws already on ctx's device: no host I/O (engine/host_io_guard.h), so it
  // can be part of a captured step. The blur is computed whenever blur_prob > 0 (the per-sample flags
  // select it), the terms stay on the device (result.sums) and result.terms is left zero.
  ObjectiveResult evaluate(Ctx& ctx, Network& black_box, const Tensor& images, const Tensor& mask,
                           const Tensor& head_mask, const Tensor& filter_logits, const Tensor& classes,
                           const ObjectiveDraws& device_draws);
  // The terms of a device half's sums (result.sums, result.smooth_factor): reads them back (waits for the
  // device) and applies the term weights of the current configuration (the area weight of the draw()).
  ObjectiveTerms read_terms(const Tensor& sums, double smooth_factor) const;

  const ObjectiveConfig& config() const { return cfg_; }
  // For schedules that change the area weight between steps.
  void set_area_weight(double w) { cfg_.area_weight = w; }

 private:
  ObjectiveConfig cfg_;
  Tensor eye_;  // [K,K] identity (one-hot rows via embedding), cached per K, dtype and device
};

}  // namespace sal
