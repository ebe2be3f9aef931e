// Labelled image sets (ImageNet-val folder, class-per-folder tar) and the batched top-1/top-5
// evaluation used by tools/sal_accuracy and tests/models/test_accuracy.cpp (see classifier_eval.h).
#include "layers/classifier_eval.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "engine/error.h"

namespace sal {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The images at `keep` (increasing indices) of `set`, with its source, classes and archive.
LabelledImages subset(const LabelledImages& set, const std::vector<size_t>& keep) {
  LabelledImages out;
  out.source = set.source;
  out.class_names = set.class_names;
  out.tar = set.tar;
  out.names.reserve(keep.size());
  out.labels.reserve(keep.size());
  for (size_t i : keep) {
    out.names.push_back(set.names[i]);
    out.labels.push_back(set.labels[i]);
    if (set.tar) out.entries.push_back(set.entries[i]);
  }
  return out;
}

}  // namespace

LabelledImages LabelledImages::imagenet_folder(const std::string& dir) {
  const std::string tsv = dir + "/annotations.tsv";
  std::ifstream in(tsv);
  SAL_CHECK(in, tsv, ": cannot open");
  std::string line;
  SAL_CHECK(std::getline(in, line) && line.rfind("file\tlabel", 0) == 0, tsv,
            ": expected a header row starting with 'file<TAB>label'");
  LabelledImages out;
  out.source = dir;
  for (int row = 2; std::getline(in, line); ++row) {
    if (line.empty()) continue;
    std::istringstream ls(line);
    std::string file, label;
    SAL_CHECK(std::getline(ls, file, '\t') && std::getline(ls, label, '\t') && !file.empty(), tsv, ": line ", row,
              " has no file and label columns");
    int value = 0;
    try {
      size_t used = 0;
      value = std::stoi(label, &used);
      if (used != label.size()) throw std::invalid_argument(label);
    } catch (const std::exception&) {
      fail(tsv, ": line ", row, ": label '", label, "' is not an integer");
    }
    out.names.push_back(dir + "/images/" + file);
    out.labels.push_back(value);
  }
  SAL_CHECK(!out.names.empty(), tsv, ": no images listed");
  return out;
}

LabelledImages LabelledImages::class_tar(const std::string& path) {
  auto tar = std::make_shared<TarReader>(path);
  LabelledImages out;
  out.source = path;
  std::map<std::string, int> class_index;  // class folder -> label, by sorted name
  TarEntry e;
  while (tar->next(e)) {
    const size_t slash = e.name.find('/');
    SAL_CHECK(slash != std::string::npos && slash > 0, tar->path(), ": entry '", e.name, "' (offset ",
              e.header_offset, ") is not <class>/<file>");
    class_index[e.name.substr(0, slash)] = 0;
    out.names.push_back(e.name);
    out.entries.push_back(e);
  }
  SAL_CHECK(!out.names.empty(), tar->path(), ": no files");
  int k = 0;
  for (auto& [name, idx] : class_index) {
    idx = k++;
    out.class_names.push_back(name);
  }
  out.labels.reserve(out.names.size());
  for (const std::string& name : out.names) out.labels.push_back(class_index.at(name.substr(0, name.find('/'))));
  out.tar = std::move(tar);
  return out;
}

Image LabelledImages::load(int64_t i) const {
  const size_t k = static_cast<size_t>(i);
  if (tar) return decode_image(tar->read(entries[k]), tar->path() + ":" + names[k]);
  return read_image(names[k]);
}

LabelledImages LabelledImages::first_per_class(int k) const {
  std::map<int, int> taken;
  std::vector<size_t> keep;
  for (size_t i = 0; i < labels.size(); ++i)
    if (taken[labels[i]]++ < k) keep.push_back(i);
  return subset(*this, keep);
}

LabelledImages LabelledImages::first(int64_t n) const {
  std::vector<size_t> keep(static_cast<size_t>(std::clamp<int64_t>(n, 0, size())));
  for (size_t i = 0; i < keep.size(); ++i) keep[i] = i;
  return subset(*this, keep);
}

void LabelledImages::check_labels(int64_t num_classes) const {
  if (tar)
    SAL_CHECK(static_cast<int64_t>(class_names.size()) == num_classes, source, ": ", class_names.size(),
              " class folders, the network has ", num_classes, " classes");
  for (size_t i = 0; i < labels.size(); ++i)
    SAL_CHECK(labels[i] >= 0 && labels[i] < num_classes, names[i], ": label ", labels[i], " outside the network's ",
              num_classes, " classes");
}

ClassifierScore evaluate_classifier(Network& net, const LabelledImages& set, int batch) {
  SAL_CHECK(batch > 0, "evaluate_classifier: batch ", batch, " is not positive");
  const InputSpec& spec = net.input_spec();
  const int64_t S = spec.size, K = spec.num_classes, N = set.size();
  set.check_labels(K);
  Arena arena(Device::CPU);
  ClassifierScore r;
  r.n = N;
  auto t_start = std::chrono::steady_clock::now();
  for (int64_t b0 = 0; b0 < N; b0 += batch) {
    const int64_t B = std::min<int64_t>(batch, N - b0);
    Tensor images = Tensor::empty({B, 3, S, S});  // [B,3,S,S] RGB in [0,1]
    std::string error;
    int64_t error_at = B;  // the lowest failing index of the batch, so the reported error does not depend on timing
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < B; ++i) {
      try {
        images.slice0(i, 1).copy_from(image_to_tensor(set.load(b0 + i), S, S).reshape({1, 3, S, S}));
      } catch (const std::exception& e) {
#pragma omp critical
        if (i < error_at) {
          error_at = i;
          error = e.what();
        }
      }
    }
    if (error_at < B) fail(error);

    auto t0 = std::chrono::steady_clock::now();
    arena.reset();
    Ctx ctx(Device::CPU, &arena);
    Tensor logits = net.forward(ctx, net.normalize(ctx, images));  // [B,K]
    const Shape want{B, K};
    SAL_CHECK(logits.shape() == want, "evaluate_classifier: ", spec.arch, " returned logits of shape ",
              logits.shape().str(), ", expected ", want.str());
    std::vector<double> v = logits.values();
    r.forward_seconds += seconds_since(t0);
    for (int64_t i = 0; i < B; ++i) {
      const double* row = &v[static_cast<size_t>(i * K)];
      const int label = set.labels[static_cast<size_t>(b0 + i)];
      int64_t rank = 0;  // classes scored above the true one
      for (int64_t c = 0; c < K; ++c) rank += row[c] > row[label];
      r.top1 += rank == 0;
      r.top5 += rank < 5;
    }
  }
  r.seconds = seconds_since(t_start);
  return r;
}

}  // namespace sal
