// A classifier network usable as a black box (logits, and the gradient of a scalar of the
// logits with respect to the input image only) and as a frozen encoder (feature maps at
// several scales). Every network is loaded from a converted safetensors file whose metadata
// carries its input convention (weights/README.md), so no caller guesses it.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "engine/params.h"

namespace sal {

class SafeTensorsFile;

// How images in [0,1] RGB become the network's input.
struct InputSpec {
  std::string arch;
  int64_t size = 224;              // the input size the network was trained at
  bool minus1_1 = false;           // x*2-1 (MobileNet); else (x - mean) / std
  float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
  bool transform_input = false;    // torchvision GoogLeNet's extra re-normalisation
  double bn_eps = 1e-5;
  int64_t num_classes = 0;
  std::vector<std::string> class_names;

  // Parses and checks the metadata keys of weights/README.md; errors name the file and key.
  static InputSpec from_metadata(const SafeTensorsFile& file);
  // Per-channel affine of the [0,1] image: input = x * scale[c] + shift[c].
  void affine(float scale[3], float shift[3]) const;
};

class Network {
 public:
  virtual ~Network() = default;
  const InputSpec& input_spec() const { return spec_; }
  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }

  // images:[N,3,H,W] RGB in [0,1] -> the network's normalised input, and its backward.
  Tensor normalize(Ctx& ctx, const Tensor& images);
  Tensor normalize_backward(Ctx& ctx, const Tensor& dinput);

  // input (normalised):[N,3,H,W] -> logits [N,num_classes]. Remembers (as arena views) what
  // backward_input needs; the feature maps of this pass are then available from features().
  virtual Tensor forward(Ctx& ctx, const Tensor& input) = 0;
  // The feature maps of the last forward, finest first: scales 1/4, 1/8, 1/16, 1/32 of the input
  // for the ImageNet networks (1, 1/2, 1/4 for the CIFAR ResNets).
  virtual std::vector<Tensor> features() const = 0;
  // dlogits [N,num_classes] -> d input [N,3,H,W] (normalised space). No weight gradients are
  // computed or stored: the network is frozen.
  virtual Tensor backward_input(Ctx& ctx, const Tensor& dlogits) = 0;

  // Copies the parameters from the file (strict: every tensor present with its shape, nothing extra).
  void load(const SafeTensorsFile& file);

 protected:
  explicit Network(InputSpec spec) : spec_(std::move(spec)) {}
  InputSpec spec_;
  ParamStore params_;
  Tensor norm_scale_, norm_shift_;  // [1,3,1,1] on the parameters' device, made by finish()
  // Called by a subclass constructor after it has added every parameter. dtype F64 (CPU only)
  // gives a double-precision network for gradient checks.
  void finish(Device device, DType dtype = DType::F32);
};

// Builds the network named by the file's "arch" metadata on `device` and loads its weights.
std::unique_ptr<Network> load_network(const std::string& path, Device device = Device::CPU);

}  // namespace sal
