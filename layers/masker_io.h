// A trained masker as one safetensors file (weights/*masker*.safetensors, written by sal_train):
// every masker parameter under its store name (BN running statistics included), and metadata
// that rebuilds the exact MaskerConfig, so a file never depends on a preset's current defaults:
//   format            "sal masker v1"
//   num_classes, feature_channels ("96,192,384,768"), widths, bottlenecks, upsample
//   ("pixel_shuffle" | "conv_transpose"), skip_channels, bn_eps, mask_eps, encoder_channels ("" = the
//   frozen black box's features)
//   black_box         file name of the black box (and encoder) it was trained against
//   black_box_arch    its "arch" metadata, checked on load against the network given
//   image_size        the training image size (the mask tools resize to it)
//   training          free text: data, steps, loss settings (the model card's source)
#pragma once
#include <map>
#include <memory>
#include <string>

#include "layers/masker.h"

namespace sal {

struct MaskerFileInfo {
  std::string black_box, black_box_arch, training;
  int64_t image_size = 224;
};

// The metadata keys above for `masker` (callers add black_box, black_box_arch, image_size, training).
std::map<std::string, std::string> masker_metadata(const Masker& masker, const MaskerFileInfo& info);

// Writes the masker's parameters (copied to the host when on CUDA) and metadata, atomically.
void save_masker(const Masker& masker, const MaskerFileInfo& info, const std::string& path);

// Rebuilds the masker on `device` from the file's metadata and loads every parameter (strict: a
// missing, extra or misshapen tensor is an error naming the file and tensor). `info` receives the
// file's black box name, arch, image size and training text. The masker is for inference: it has no
// gradient buffer (MaskerInit::ForLoading).
std::unique_ptr<Masker> load_masker(const std::string& path, Device device, MaskerFileInfo* info = nullptr);

// Throws, naming both files, when the masker was trained against a different black-box architecture.
void check_masker_black_box(const MaskerFileInfo& info, const std::string& masker_path, const Network& black_box,
                            const std::string& black_box_path);

}  // namespace sal
