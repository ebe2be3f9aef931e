// The evaluation protocol of Dabkowski & Gal (2017, section 5; DESIGN.md section 1 "Evaluation") and the
// saliency baselines it compares, shared by tools/sal_eval, tools/sal_mask and the tests.
//
// Boxes from a saliency map m [H,W] (values in [0,1]):
//   threshold: the region m >= threshold (0.5 by default); optionally only its largest 8-connected
//   component (ties: the component met first in row-major order); the tightest box around the region
//   (empty when the region is). Localisation is correct when IoU >= 0.5 with any ground-truth box; IoU
//   counts pixels of inclusive boxes. Ground-truth boxes are scaled from the original image to the
//   evaluated one by mapping pixel edges: [x0, x1+1) * (to / from), then the pixels that overlap it.
// Saliency metric: crop the box, resize the crop to the classifier input (bilinear, aspect ratio
//   ignored), s = log(max(a, 0.05)) - log p, a = box area / image area, p = the classifier's
//   probability of the true class on the crop (from log_softmax, so p may underflow without harm).
//
// Baseline maps, all [N,1,H,W] in [0,1] at the image size, each image's map divided by its maximum
// (all-zero maps stay zero):
//   gradient_saliency: |d z_c / d x| (x the [0,1] image), max over the colour channels (the "Grad" of
//     Simonyan et al.), from backward_input + normalize_backward.
//   gradcam_saliency: Grad-CAM. For a network ending in global average pooling + a linear classifier
//     (MobileNet v1's conv_preds, the CIFAR ResNets' linear), d z_c / d A_k[y,x] = w_ck / (h w) at every
//     position, so the Grad-CAM weights alpha_k = w_ck / (h w) and Grad-CAM = ReLU(sum_k w_ck A_k) / (h w):
//     exactly CAM. It is computed that way from features().back() and the classifier weight, then
//     upsampled bilinearly (class_activation_maps gives the map before the ReLU and the upsampling; its
//     mean over positions plus the bias is the logit z_c, which the tests check).
//   optimise_masks: the paper's "Mask" baseline: a per-image mask parameter (logits at res x res),
//     M = resize_bilinear(sigmoid(logits)) to the image size, optimised with Adam on the same
//     SaliencyObjective the masker is trained with (one independent problem per image: the objective's
//     batch mean is multiplied by N before the update).
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "engine/annotations.h"
#include "layers/network.h"
#include "layers/saliency_objective.h"

namespace sal {

// ---------------------------------------------------------------- boxes
// m: H*W values, row-major. The region m >= threshold as 0/1 bytes.
std::vector<uint8_t> threshold_map(const float* m, int64_t h, int64_t w, double threshold);
// The largest 8-connected component of a 0/1 region (all zero when the region is empty).
std::vector<uint8_t> largest_component(const std::vector<uint8_t>& region, int64_t h, int64_t w);
// The tightest box around the non-zero pixels (empty Box when none).
Box bounding_box(const std::vector<uint8_t>& region, int64_t h, int64_t w);
// threshold_map, then (largest_cc) largest_component, then bounding_box.
Box mask_box(const float* m, int64_t h, int64_t w, double threshold, bool largest_cc);
// Intersection over union in pixels of inclusive boxes; 0 when either is empty.
double box_iou(const Box& a, const Box& b);
// Maps a box of a from_w x from_h image onto a to_w x to_h image (see the header comment).
Box scale_box(const Box& b, int64_t from_w, int64_t from_h, int64_t to_w, int64_t to_h);
// IoU >= min_iou with any of `truth`.
bool localisation_correct(const Box& b, const std::vector<Box>& truth, double min_iou = 0.5);
// The centred box of about `area_fraction` of a w x h image (sides scaled by sqrt(area_fraction)).
Box centre_box(int64_t w, int64_t h, double area_fraction = 0.5);
// The whole image.
inline Box full_box(int64_t w, int64_t h) { return Box{0, 0, static_cast<int>(w - 1), static_cast<int>(h - 1)}; }
// [1,1,h,w] f32 CPU map: 1 inside the box, 0 outside.
Tensor box_map(const Box& b, int64_t h, int64_t w);

// ---------------------------------------------------------------- the saliency metric
// log(max(area_fraction, 0.05)) - log_prob.
double saliency_metric(double area_fraction, double log_prob);
// images [N,3,H,W] in [0,1] (CPU) -> [N,3,out,out]: image n's box cropped and resized (bilinear,
// align_corners=false; aspect ratio ignored). An empty box is an error.
Tensor crop_resize(const Tensor& images, const std::vector<Box>& boxes, int64_t out);

struct ClassScores {
  std::vector<double> log_prob;  // per image: log softmax of the asked class
  std::vector<int> top1;         // per image: the arg max of the logits
};
// The black box on images [N,3,S,S] in [0,1] (normalize + forward); classes[n] selects log_prob[n].
ClassScores class_scores(Ctx& ctx, Network& net, const Tensor& images, const std::vector<int>& classes);

// ---------------------------------------------------------------- baselines
// Divides each image's map [N,1,H,W] (CPU) by its maximum, in place; maps with max <= 0 are zeroed.
void normalise_by_max(Tensor& maps);
Tensor gradient_saliency(Ctx& ctx, Network& net, const Tensor& images, const std::vector<int>& classes);

struct LinearHead {
  Tensor weight;  // [K,C] CPU, the network's dtype
  Tensor bias;    // [K]
};
// The global-average-pool classifier of MobileNet v1 ("conv_preds") or a CIFAR ResNet ("linear");
// throws for other networks (naming the architecture).
LinearHead linear_head(const Network& net);
// sum_k w_ck A_k at the resolution of features().back(): [N,1,h,w], before any ReLU.
Tensor class_activation_maps(Ctx& ctx, Network& net, const Tensor& images, const std::vector<int>& classes);
Tensor gradcam_saliency(Ctx& ctx, Network& net, const Tensor& images, const std::vector<int>& classes);

struct MaskOptimConfig {
  int steps = 300;
  int64_t resolution = 28;  // the mask parameter is res x res logits
  double lr = 0.1;          // Adam (beta 0.9, 0.999, eps 1e-8)
  double init_logit = 0.0;  // sigmoid(0) = 0.5: start from half-preserved
  ObjectiveConfig objective = ObjectiveConfig::released();  // selector_weight and smooth_on_head are ignored
  uint32_t seed = 0;        // evidence removal draws
};
// The optimised masks [N,1,H,W] (CPU). When `final_loss` is given it receives the last step's total.
Tensor optimise_masks(Ctx& ctx, Network& net, const Tensor& images, const std::vector<int>& classes,
                      const MaskOptimConfig& cfg, double* final_loss = nullptr);

// Evidence removal by blur for the "accuracy on Phi(X,M)" numbers: blend(X, blur(X), M).
Tensor blur_phi(Ctx& ctx, const Tensor& images, const Tensor& maps, double sigma, int ksize);

}  // namespace sal
