// sal_accuracy: top-1 (and top-5) accuracy and throughput of a converted classifier on a labelled
// image set, using only the engine (image decoding, tar reading, load_network, forward on the CPU).
//
//   sal_accuracy --weights weights/mobilenet_v1_0.75_224.safetensors --imagenet-val ../shared/data/imagenet-val
//   sal_accuracy --weights weights/cifar_resnet20.safetensors --cifar-tar ../shared/data/cifar10/test.tar
//
// ImageNet: <dir>/annotations.tsv (header row; columns file, label, ...), images in <dir>/images/.
// CIFAR: tar entries <class>/<NNNN>.jpg; a class's index is its name's position in the sorted
// list of class folder names (airplane=0 .. truck=9, the standard order).
// Each image is decoded to RGB in [0,1], resized bilinearly (align_corners=false, no antialiasing)
// to the network's input size when it differs, normalised by the network's own input convention
// (weights metadata) and classified in batches. Decoding runs in parallel (OpenMP) before each
// batch's forward pass; the report gives the total rate and the forward-only rate.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "engine/image.h"
#include "engine/tar.h"
#include "layers/network.h"

using namespace sal;

namespace {

struct Sample {
  std::string name;  // file path or tar entry name
  TarEntry entry;    // when read from a tar
  int label = 0;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<Sample> imagenet_samples(const std::string& dir) {
  const std::string tsv = dir + "/annotations.tsv";
  std::ifstream in(tsv);
  SAL_CHECK(in, tsv, ": cannot open");
  std::string line;
  SAL_CHECK(std::getline(in, line) && line.rfind("file\tlabel", 0) == 0, tsv,
            ": expected a header row starting with 'file<TAB>label'");
  std::vector<Sample> out;
  for (int row = 2; std::getline(in, line); ++row) {
    if (line.empty()) continue;
    std::istringstream ls(line);
    std::string file, label;
    SAL_CHECK(std::getline(ls, file, '\t') && std::getline(ls, label, '\t') && !file.empty(), tsv, ": line ", row,
              " has no file and label columns");
    Sample s;
    s.name = dir + "/images/" + file;
    try {
      size_t used = 0;
      s.label = std::stoi(label, &used);
      if (used != label.size()) throw std::invalid_argument(label);
    } catch (const std::exception&) {
      fail(tsv, ": line ", row, ": label '", label, "' is not an integer");
    }
    out.push_back(std::move(s));
  }
  SAL_CHECK(!out.empty(), tsv, ": no images listed");
  return out;
}

// Entries <class>/<file> of the tar; labels by the sorted class names.
std::vector<Sample> tar_samples(const std::string& path, std::vector<std::string>& classes) {
  TarReader tar(path);
  std::vector<Sample> out;
  TarEntry e;
  std::map<std::string, int> class_index;
  while (tar.next(e)) {
    size_t slash = e.name.find('/');
    SAL_CHECK(slash != std::string::npos && slash > 0, tar.path(), ": entry '", e.name, "' (offset ", e.header_offset,
              ") is not <class>/<file>");
    class_index[e.name.substr(0, slash)] = 0;
    out.push_back({e.name, e, 0});
  }
  SAL_CHECK(!out.empty(), tar.path(), ": no files");
  int i = 0;
  for (auto& [name, idx] : class_index) {
    idx = i++;
    classes.push_back(name);
  }
  for (Sample& s : out) s.label = class_index.at(s.name.substr(0, s.name.find('/')));
  return out;
}

// The first k samples of every label, in the original order.
std::vector<Sample> first_per_class(const std::vector<Sample>& all, int k) {
  std::map<int, int> taken;
  std::vector<Sample> out;
  for (const Sample& s : all)
    if (taken[s.label]++ < k) out.push_back(s);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Top-1/top-5 accuracy and images/s of a converted classifier (CPU)"};
  std::string weights, imagenet_dir, cifar_tar;
  int64_t limit = 0;
  int per_class = 0, batch = 32;
  app.add_option("--weights", weights, "converted weights (.safetensors)")->required()->check(CLI::ExistingFile);
  auto* o_in = app.add_option("--imagenet-val", imagenet_dir, "folder with annotations.tsv and images/")
                   ->check(CLI::ExistingDirectory);
  auto* o_cf = app.add_option("--cifar-tar", cifar_tar, "tar of <class>/<NNNN>.jpg entries")->check(CLI::ExistingFile);
  o_in->excludes(o_cf);
  app.add_option("--limit", limit, "use only the first N images (0: all)")->check(CLI::NonNegativeNumber);
  app.add_option("--per-class", per_class, "use only the first K images of each class (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch", batch, "images per forward pass")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  if (imagenet_dir.empty() == cifar_tar.empty()) {
    std::fprintf(stderr, "sal_accuracy: give exactly one of --imagenet-val and --cifar-tar\n");
    return 2;
  }

  try {
    auto t_start = std::chrono::steady_clock::now();
    std::unique_ptr<Network> net = load_network(weights, Device::CPU);
    const InputSpec& spec = net->input_spec();
    const int64_t classes = spec.num_classes;

    std::unique_ptr<TarReader> tar;
    std::vector<Sample> samples;
    std::string set_name;
    if (!cifar_tar.empty()) {
      tar = std::make_unique<TarReader>(cifar_tar);
      std::vector<std::string> class_dirs;
      samples = tar_samples(cifar_tar, class_dirs);
      SAL_CHECK(static_cast<int64_t>(class_dirs.size()) == classes, cifar_tar, ": ", class_dirs.size(),
                " class folders, the network has ", classes, " classes");
      set_name = cifar_tar;
    } else {
      samples = imagenet_samples(imagenet_dir);
      set_name = imagenet_dir;
    }
    for (const Sample& s : samples)
      SAL_CHECK(s.label >= 0 && s.label < classes, s.name, ": label ", s.label, " outside the network's ", classes,
                " classes");
    if (per_class > 0) samples = first_per_class(samples, per_class);
    if (limit > 0 && static_cast<size_t>(limit) < samples.size()) samples.resize(static_cast<size_t>(limit));

    const int64_t S = spec.size, N = static_cast<int64_t>(samples.size());
    std::printf("%s: %s, input %lldx%lld, %lld classes\n", weights.c_str(), spec.arch.c_str(),
                static_cast<long long>(S), static_cast<long long>(S), static_cast<long long>(classes));
    std::printf("%s: %lld images, batch %d, %d threads\n", set_name.c_str(), static_cast<long long>(N), batch,
                omp_get_max_threads());
    std::fflush(stdout);

    Arena arena(Device::CPU);
    int64_t top1 = 0, top5 = 0;
    double t_forward = 0;
    auto t_eval = std::chrono::steady_clock::now();
    for (int64_t b0 = 0; b0 < N; b0 += batch) {
      const int64_t B = std::min<int64_t>(batch, N - b0);
      Tensor images = Tensor::empty({B, 3, S, S});  // [B,3,S,S] RGB in [0,1]
      std::string error;
#pragma omp parallel for schedule(dynamic)
      for (int64_t i = 0; i < B; ++i) {
        const Sample& s = samples[static_cast<size_t>(b0 + i)];
        try {
          Image im = tar ? decode_image(tar->read(s.entry), tar->path() + ":" + s.name) : read_image(s.name);
          images.slice0(i, 1).copy_from(image_to_tensor(im, S, S).reshape({1, 3, S, S}));
        } catch (const std::exception& e) {
#pragma omp critical
          if (error.empty()) error = e.what();
        }
      }
      if (!error.empty()) fail(error);

      auto t0 = std::chrono::steady_clock::now();
      arena.reset();
      Ctx ctx(Device::CPU, &arena);
      std::vector<double> logits = net->forward(ctx, net->normalize(ctx, images)).values();  // [B,classes]
      t_forward += seconds_since(t0);
      for (int64_t i = 0; i < B; ++i) {
        const double* row = &logits[static_cast<size_t>(i * classes)];
        const int label = samples[static_cast<size_t>(b0 + i)].label;
        int64_t rank = 0;  // classes scored above the true one
        for (int64_t c = 0; c < classes; ++c) rank += row[c] > row[label];
        top1 += rank == 0;
        top5 += rank < 5;
      }
    }
    const double t_all = seconds_since(t_eval);
    std::printf("top-1 %.2f%% (%lld/%lld)", 100.0 * top1 / N, static_cast<long long>(top1), static_cast<long long>(N));
    if (classes > 5)
      std::printf("  top-5 %.2f%% (%lld/%lld)", 100.0 * top5 / N, static_cast<long long>(top5),
                  static_cast<long long>(N));
    std::printf("\n%.1f images/s (decode + resize + forward: %.2f s), forward only %.1f images/s (%.2f s); "
                "%.2f s in all\n",
                N / t_all, t_all, N / t_forward, t_forward, seconds_since(t_start));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sal_accuracy: %s\n", e.what());
    return 1;
  }
}
