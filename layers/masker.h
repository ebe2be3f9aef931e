// The masker of Dabkowski & Gal (2017): a trainable decoder over a frozen encoder Network that
// turns an image and a selected class into a saliency mask in [0,1] (DESIGN.md section 1).
//
//   encoder features F_0 (finest) .. F_{L-1} (coarsest), forward only, never a backward
//   feature filter on X = F_{L-1} [N,C,h,w]:  z = sum_c X * C_s   [N,1,h,w]  (the filter logits)
//                                            Y = X * sigmoid(z)
//     C_s = masker.embedding.weight[s] ([num_classes, C]; can be initialised from a classifier)
//   upsampler i = 0 .. U-1 (U = widths.size()), input at the scale of F_{L-1-i}:
//     x2 upsampling to widths[i] channels, then BN (training mode) + ReLU:
//       ConvTranspose:  ConvTranspose2d 4x4 / 2 pad 1              (the paper)
//       PixelShuffle:   conv 3x3 pad 1 to 4*widths[i] channels, BN + ReLU, pixel_shuffle(2)
//                       (the released code)
//     concat F_{L-2-i} (optionally through a 1x1 conv + BN + ReLU to skip_channels)
//     `bottlenecks` Bottleneck blocks (layers/resnet.h), width widths[i]/4, out widths[i]
//   (optional, the paper's CIFAR variant) a trainable encoder owned by the masker instead of a
//     frozen Network: 3 downsampling blocks of 5 conv3x3 + BN + ReLU layers (the first of each
//     block stride 2) on the [0,1] image; the block outputs are the features (1/2, 1/4, 1/8)
//   head: 1x1 conv (with bias) to 2 channels c = (c0, c1)   at the scale of F_{L-1-U}
//   mask = resize_bilinear(|c0| / (|c0| + |c1| + eps)) to the image size  (abs_ratio_upsample)
//
// Every parameter lives in the masker's own ParamStore, named `masker.*`; all but the batch-norm
// running statistics are trainable. The masker remembers (as arena views) what its backward needs:
// a forward and its backward share one arena step.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "layers/modules.h"
#include "layers/network.h"
#include "layers/resnet.h"

namespace sal {

enum class UpsampleMode { ConvTranspose, PixelShuffle };

// How a new Masker starts. Random: parameters drawn from cfg.seed, and gradient buffers, for training.
// ForLoading: zeros and no gradient buffer, for a masker whose every parameter is loaded next and
// which then only runs inference (load_masker; to train from a file, load it into a Random masker's
// store, as sal_train --init-masker does). Drawing the MobileNet masker's 4.8M parameters only to
// overwrite them took ~140 ms of sal_mask's 0.5 s on five images; its gradients would be 19 MB.
enum class MaskerInit { Random, ForLoading };

struct MaskerConfig {
  int64_t num_classes = 1000;
  // Channels of the encoder's feature maps, finest first (checked against features() on forward).
  std::vector<int64_t> feature_channels;
  std::vector<int64_t> widths;  // output channels of each upsampler; its size is the upsampler count
  int bottlenecks = 1;          // Bottleneck blocks per upsampler
  UpsampleMode upsample = UpsampleMode::PixelShuffle;
  int64_t skip_channels = 0;    // > 0: the concatenated encoder feature goes through a 1x1 conv first
  double bn_eps = 1e-5;
  double mask_eps = 1e-6;       // abs_ratio's eps
  uint32_t seed = 0;            // parameter initialisation
  // Non-empty: the masker's own trainable encoder with these block widths (must then equal
  // feature_channels); use forward(ctx, images, classes).
  std::vector<int64_t> encoder_channels;

  // The paper's masker for a ResNet-50 encoder: 768/384/192, 3 bottlenecks, transposed convs,
  // head at 1/4 (56x56 for 224 inputs).
  static MaskerConfig paper_resnet50();
  // The released code's decoder widths (256/128/64, one bottleneck, pixel shuffle) on ResNet-50.
  static MaskerConfig released_resnet50();
  // MobileNet v1 0.75 encoder (features 96/192/384/768 at 1/4..1/32): head at 1/4.
  static MaskerConfig mobilenet_v1();
  // The CIFAR recipe of DESIGN.md: the CIFAR ResNet (features 16/32/64 at 1, 1/2, 1/4) as the
  // encoder, the filter at 8x8, one upsampler + one bottleneck to a 16x16 head.
  static MaskerConfig cifar_resnet(int64_t num_classes = 10);
  // The paper's CIFAR variant: encoder trained from scratch (32/64/128 channels at 16, 8, 4 px for
  // 32 px images), two upsamplers of one bottleneck each to a 16x16 head.
  static MaskerConfig cifar_scratch(int64_t num_classes = 10);
};

struct MaskerOutput {
  Tensor mask;           // [N,1,H,W] at the image size
  Tensor head;           // [N,2,h',w'] the head's output c
  Tensor head_mask;      // [N,1,h',w'] abs_ratio(c, mask_eps): the mask at head resolution
  Tensor filter_logits;  // [N,1,h,w] z = X . C_s at the coarsest scale
};

class Masker {
 public:
  // Parameters on `device` in `dtype` (F64 only on the CPU, for gradient checks), initialised from
  // cfg.seed: He-normal convolutions, BN weight 1 / bias 0, embedding N(0, 1/C); or (ForLoading) zeros.
  Masker(const MaskerConfig& cfg, Device device, DType dtype = DType::F32, MaskerInit init = MaskerInit::Random);

  // images:[N,3,H,W] in [0,1]; classes: I32[N] on the context's device. Runs the frozen encoder
  // forward (encoder.normalize + encoder.forward) and the decoder.
  MaskerOutput forward(Ctx& ctx, Network& encoder, const Tensor& images01, const Tensor& classes,
                       bool training = true);
  // With the masker's own encoder (config encoder_channels): images [N,3,H,W] in [0,1], H and W
  // divisible by 8. backward() then also trains the encoder.
  MaskerOutput forward(Ctx& ctx, const Tensor& images01, const Tensor& classes, bool training = true);
  bool has_encoder() const { return !enc_.empty(); }
  // The decoder alone on given feature maps (finest first), producing a mask of out_h x out_w.
  MaskerOutput forward_features(Ctx& ctx, const std::vector<Tensor>& features, const Tensor& classes,
                                int64_t out_h, int64_t out_w, bool training = true);
  // Accumulates the parameter gradients (into params().flat_grads(); zero them per step) from
  // dmask [N,1,H,W] and, when given, d head_mask [N,1,h',w'] and d filter_logits [N,1,h,w].
  // Nothing flows into a frozen encoder; with `dfeatures` (for a trainable encoder) it is set to
  // dL/d feature map, finest first, undefined for the finer maps the decoder does not use.
  void backward(Ctx& ctx, const Tensor& dmask, const Tensor* dhead_mask = nullptr,
                const Tensor* dfilter_logits = nullptr, std::vector<Tensor>* dfeatures = nullptr);

  // Copies a classifier's weights into the class embedding: [num_classes, C] or
  // [num_classes, C, 1, 1] (e.g. MobileNet's conv_preds.weight, a CIFAR ResNet's linear.weight).
  void init_embedding(const Tensor& classifier_weight);

  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }
  const MaskerConfig& config() const { return cfg_; }

 private:
  struct Upsampler {
    UpsampleMode mode = UpsampleMode::PixelShuffle;
    ConvTranspose2d tconv;      // ConvTranspose mode
    BatchNorm2d tbn;
    ReLU trelu;
    ConvBnAct conv;             // PixelShuffle mode (before the shuffle)
    bool skip_conv = false;
    ConvBnAct skip;             // optional 1x1 on the encoder feature
    int64_t up_channels = 0;    // channels after the upsampling (before the concat)
    std::vector<Bottleneck> blocks;
  };

  MaskerConfig cfg_;
  ParamStore params_;
  std::vector<std::vector<ConvBnAct>> enc_;  // the own encoder's blocks (empty without one)
  bool used_encoder_ = false;                // the last forward ran the own encoder
  ParamRef embedding_;
  std::vector<Upsampler> ups_;
  Conv2d head_;

  // What backward needs from the last forward.
  Tensor x_, classes_, emb_, sig_, head_out_;
  bool have_forward_ = false;
  bool inference_forward_ = false;  // the last forward was in inference mode: no backward (Masker::backward)

  void initialize();
};

}  // namespace sal
