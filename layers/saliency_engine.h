// Saliency masks for batches of images, for an application that embeds the engine: a trained masker and
// the black box it was trained against (which is also its encoder), loaded once on one device and run as
// two steps per batch:
//   classify  the black box on the images: its log-probabilities, and its feature maps kept for
//   masks     the masker's decoder on those feature maps for one class per image -> the masks,
// so the encoder runs once per image whatever class the masks are asked for. On CUDA each step is replayed
// from a CUDA graph (engine/step_graph.h) after its first call: one launch per step instead of hundreds,
// which is what batch-1 latency is made of. tools/sal_mask is this plus image files, PNGs and JSON.
//
//   DeviceSession dev("cuda");
//   SaliencyEngine engine(dev, {.masker = "weights/mobilenet_v1_0.75_224_masker.safetensors"});
//   SaliencyEngine::Result r = engine.run(images);  // images: host [n,3,S,S] in [0,1], S = image_size()
//   // r.masks: host [n,1,S,S] in [0,1] for each image's top-1 class (r.top1), r.log_probs: [n,K]
//
// Inputs and outputs are host tensors (one upload of the images per call, one copy back of each result).
// On CUDA the graphs' shapes are fixed: a call with fewer than max_batch images computes max_batch rows
// (the rest zero images) and returns the first n; on the CPU it computes n rows. One caller at a time: an
// engine owns its steps' buffers and arenas (two threads want two engines).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/arena.h"
#include "engine/device_session.h"
#include "engine/step_graph.h"
#include "layers/masker.h"
#include "layers/masker_io.h"
#include "layers/network.h"

namespace sal {

class SaliencyEngine {
 public:
  struct Config {
    std::string masker;     // a trained masker file (layers/masker_io.h)
    std::string black_box;  // its black box; "" = the file the masker names (black_box_path_for)
    int64_t max_batch = 16;  // images per call, at most
    bool capture = true;     // CUDA: replay the steps from graphs; false: kernel by kernel (sal_mask --eager)
  };
  struct Result {
    Tensor log_probs;        // host f32 [n, K]: the black box's log-softmax
    std::vector<int> top1;   // argmax of each row
    Tensor masks;            // host f32 [n, 1, S, S] for the classes asked for (run(): top1)
  };

  // Loads both networks on the session's device (which must outlive the engine) and checks that the masker
  // was trained against this black box's architecture; errors name the files.
  SaliencyEngine(const DeviceSession& device, const Config& config);
  SaliencyEngine(const SaliencyEngine&) = delete;
  SaliencyEngine& operator=(const SaliencyEngine&) = delete;

  // The black box a masker file names: beside the masker, else in weights/; an error naming the masker
  // file when it names none or neither file exists.
  static std::string black_box_path_for(const std::string& masker_path, const MaskerFileInfo& info);

  int64_t image_size() const { return info_.image_size; }  // S
  int64_t num_classes() const;                             // K
  int64_t max_batch() const { return rows_; }
  const InputSpec& black_box_spec() const { return black_box_->input_spec(); }
  const std::string& black_box_path() const { return black_box_path_; }
  const MaskerFileInfo& masker_info() const { return info_; }

  // images: host f32 [n, 3, S, S], values in [0, 1], 1 <= n <= max_batch -> host f32 [n, K] log-probabilities.
  // The images' feature maps stay on the device for masks().
  Tensor classify(const Tensor& images);
  // The masks of the last classify()'s images, one class in [0, K) per image -> host f32 [n, 1, S, S].
  Tensor masks(const std::vector<int32_t>& classes);
  // classify(), then masks() for each image's top-1 class.
  Result run(const Tensor& images);

 private:
  const DeviceSession& device_;
  MaskerFileInfo info_;
  std::string black_box_path_;
  std::unique_ptr<Masker> masker_;
  std::unique_ptr<Network> black_box_;
  int64_t rows_ = 0;  // the input buffers' rows (max_batch)
  int64_t used_ = 0;  // rows the steps compute (CUDA: always rows_; CPU: the last classify's n)
  int64_t n_ = 0;     // images of the last classify (0: none yet)
  Tensor x_buf_, cls_buf_;  // the steps' fixed inputs, on the device, outside any arena
  std::vector<const void*> mask_inputs_;  // where the mask step last read the classify step's outputs
  Arena classify_arena_, mask_arena_;
  StepGraph classify_step_, mask_step_;
};

}  // namespace sal
