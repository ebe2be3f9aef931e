// Top-1/top-5 evaluation of a classifier on a labelled image set, shared by tools/sal_accuracy and
// the accuracy tests (tests/models/test_accuracy.cpp).
//
// LabelledImages reads two layouts:
//   imagenet_folder(dir): <dir>/annotations.tsv (header row starting "file<TAB>label", then one row
//     per image: file, integer label, further columns ignored; empty lines skipped), images in
//     <dir>/images/<file>.
//   class_tar(path): an uncompressed tar of <class>/<file> entries; an image's label is its class
//     folder's position in the sorted list of class folder names (class_names).
// Errors name the file and line (annotations) or the tar and header offset (entries).
//
// evaluate_classifier decodes each batch in parallel (OpenMP) into a [B,3,S,S] tensor in [0,1]
// (image_to_tensor: bilinear resize to the network's input size S when it differs), applies the
// network's own normalisation and forward pass on the CPU, and counts an image as top-k when fewer
// than k classes score strictly above its true class.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/image.h"
#include "engine/tar.h"
#include "layers/network.h"

namespace sal {

struct LabelledImages {
  std::string source;               // the folder or tar path, as given
  std::vector<std::string> names;   // per image: file path (folder) or entry name (tar)
  std::vector<int> labels;          // per image
  std::vector<std::string> class_names;  // tar: the sorted class folder names (index = label); folder: empty
  // Tar sets: the archive (shared by subsets) and each image's entry, parallel to names.
  std::shared_ptr<const TarReader> tar;
  std::vector<TarEntry> entries;

  static LabelledImages imagenet_folder(const std::string& dir);
  static LabelledImages class_tar(const std::string& path);

  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  // Decodes image i to RGB (errors name the file, or "<tar>:<entry>"). Safe to call from several threads.
  Image load(int64_t i) const;

  // The first k images of every label, in the original order.
  LabelledImages first_per_class(int k) const;
  // The first n images (all when n >= size()).
  LabelledImages first(int64_t n) const;

  // Throws unless the set fits a network with num_classes outputs: a tar's class folder count must
  // equal it, and every label must lie in [0, num_classes).
  void check_labels(int64_t num_classes) const;
};

struct ClassifierScore {
  int64_t n = 0, top1 = 0, top5 = 0;
  double seconds = 0;          // decode + resize + forward
  double forward_seconds = 0;  // normalize + forward only
};

// Classifies every image of the set in batches of `batch` (the network must be on the CPU). Throws
// sal::Error on a label outside the network's classes and on the first image (by index within its
// batch) that fails to decode.
ClassifierScore evaluate_classifier(Network& net, const LabelledImages& set, int batch = 32);

}  // namespace sal
