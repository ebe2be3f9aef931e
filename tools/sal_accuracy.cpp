// sal_accuracy: top-1 (and top-5) accuracy and throughput of a converted classifier on a labelled
// image set, using only the engine (layers/classifier_eval: image decoding, tar reading, forward on the CPU).
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
#include <chrono>
#include <cstdio>
#include <memory>

#include "layers/classifier_eval.h"

using namespace sal;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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

    LabelledImages set =
        cifar_tar.empty() ? LabelledImages::imagenet_folder(imagenet_dir) : LabelledImages::class_tar(cifar_tar);
    set.check_labels(classes);
    if (per_class > 0) set = set.first_per_class(per_class);
    if (limit > 0) set = set.first(limit);

    const int64_t S = spec.size, N = set.size();
    std::printf("%s: %s, input %lldx%lld, %lld classes\n", weights.c_str(), spec.arch.c_str(),
                static_cast<long long>(S), static_cast<long long>(S), static_cast<long long>(classes));
    std::printf("%s: %lld images, batch %d, %d threads\n", set.source.c_str(), static_cast<long long>(N), batch,
                omp_get_max_threads());
    std::fflush(stdout);

    const ClassifierScore score = evaluate_classifier(*net, set, batch);
    const int64_t top1 = score.top1, top5 = score.top5;
    const double t_all = score.seconds, t_forward = score.forward_seconds;
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
