// Real accuracy of the shipped converted networks through the whole engine path: JPEG decoding,
// tar reading, bilinear resize, the network's own input normalisation and forward pass.
//   MobileNet v1 0.75 (weights/mobilenet_v1_0.75_224.safetensors) on the 1,000 images of
//     ../shared/data/imagenet-val (227x227 JPEGs resized to 224): top-1 >= 74%, top-5 >= 91%
//     (PyTorch reference with the same preprocessing: 76.3% / 93.6%, weights/README.md).
//   CIFAR ResNet20 (weights/cifar_resnet20.safetensors) on ../shared/data/cifar10/test.tar
//     (32x32 JPEGs, no resize): top-1 >= 79% (PyTorch reference: 81.03% on all 10,000).
//     All 10,000 images by default (about 9 s on 2 idle cores); kCifarPerClass = 200 switches to
//     the fixed balanced subset of the first 200 images of every class (2,000 images, 81.35%).
// The measured accuracies and speeds are printed with MESSAGE.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "engine/image.h"
#include "engine/tar.h"
#include "layers/network.h"
#include "tests/models/golden.h"

using namespace sal;
using sal::test::shared_path;
using sal::test::source_path;

namespace {

// 0: the whole CIFAR-10 test set; K > 0: the first K entries (NNNN < K) of every class folder.
constexpr int kCifarPerClass = 0;

// How the test set is read: a loader that decodes sample i into an RGB image in [0,1] at SxS.
struct EvalSet {
  int64_t count = 0;
  std::vector<int> labels;
  std::function<Image(int64_t)> load;
};

struct EvalResult {
  int64_t n = 0, top1 = 0, top5 = 0;
  double seconds = 0, forward_seconds = 0;
};

EvalResult evaluate(Network& net, const EvalSet& set, int batch = 32) {
  const InputSpec& spec = net.input_spec();
  const int64_t S = spec.size, K = spec.num_classes;
  Arena arena(Device::CPU);
  EvalResult r;
  r.n = set.count;
  auto t_start = std::chrono::steady_clock::now();
  for (int64_t b0 = 0; b0 < set.count; b0 += batch) {
    const int64_t B = std::min<int64_t>(batch, set.count - b0);
    Tensor images = Tensor::empty({B, 3, S, S});  // [B,3,S,S] in [0,1]
    std::string error;
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < B; ++i) {
      try {
        images.slice0(i, 1).copy_from(image_to_tensor(set.load(b0 + i), S, S).reshape({1, 3, S, S}));
      } catch (const std::exception& e) {
#pragma omp critical
        error = e.what();
      }
    }
    REQUIRE_MESSAGE(error.empty(), error);
    auto t0 = std::chrono::steady_clock::now();
    arena.reset();
    Ctx ctx(Device::CPU, &arena);
    Tensor logits = net.forward(ctx, net.normalize(ctx, images));  // [B,K]
    REQUIRE(logits.shape() == Shape{B, K});
    std::vector<double> v = logits.values();
    r.forward_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (int64_t i = 0; i < B; ++i) {
      const double* row = &v[static_cast<size_t>(i * K)];
      const int label = set.labels[static_cast<size_t>(b0 + i)];
      int64_t rank = 0;  // classes scored above the true one
      for (int64_t c = 0; c < K; ++c) rank += row[c] > row[label];
      r.top1 += rank == 0;
      r.top5 += rank < 5;
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return r;
}

}  // namespace

TEST_CASE("accuracy: MobileNet v1 0.75 on the 1,000 imagenet-val images") {
  const std::string dir = shared_path("data/imagenet-val");
  std::ifstream tsv(dir + "/annotations.tsv");
  REQUIRE_MESSAGE(tsv, dir, "/annotations.tsv is missing (the shared data folder is needed)");
  std::vector<std::string> files;
  EvalSet set;
  std::string line;
  std::getline(tsv, line);
  REQUIRE(line.rfind("file\tlabel", 0) == 0);
  while (std::getline(tsv, line)) {
    std::istringstream ls(line);
    std::string file, label;
    std::getline(ls, file, '\t');
    std::getline(ls, label, '\t');
    files.push_back(dir + "/images/" + file);
    set.labels.push_back(std::stoi(label));
  }
  REQUIRE(files.size() == 1000);
  set.count = 1000;
  set.load = [&](int64_t i) { return read_image(files[static_cast<size_t>(i)]); };

  std::unique_ptr<Network> net = load_network(source_path("weights/mobilenet_v1_0.75_224.safetensors"));
  REQUIRE(net->input_spec().size == 224);
  REQUIRE(net->input_spec().num_classes == 1000);
  EvalResult r = evaluate(*net, set);
  MESSAGE("MobileNet v1 0.75, imagenet-val: top-1 ", 100.0 * r.top1 / r.n, "% (", r.top1, "/", r.n, "), top-5 ",
          100.0 * r.top5 / r.n, "%; ", r.n / r.seconds, " images/s (", r.seconds, " s; forward only ",
          r.n / r.forward_seconds, " images/s)");
  CHECK(r.top1 >= 740);
  CHECK(r.top5 >= 910);
}

TEST_CASE("accuracy: CIFAR ResNet20 on cifar10/test.tar") {
  const std::string path = shared_path("data/cifar10/test.tar");
  REQUIRE_MESSAGE(std::ifstream(path), path, " is missing (the shared data folder is needed)");
  TarReader tar(path);
  std::vector<TarEntry> entries;
  std::map<std::string, int> classes;  // class folder -> index, by sorted name
  EvalSet set;
  std::map<std::string, int> taken;
  TarEntry e;
  int64_t total = 0;
  while (tar.next(e)) {
    const std::string cls = e.name.substr(0, e.name.find('/'));
    classes.emplace(cls, 0);
    ++total;
    if (kCifarPerClass == 0 || taken[cls]++ < kCifarPerClass) entries.push_back(e);
  }
  REQUIRE(total == 10000);
  REQUIRE(classes.size() == 10);
  REQUIRE(entries.size() == (kCifarPerClass ? 10u * kCifarPerClass : 10000u));
  int k = 0;
  for (auto& [name, idx] : classes) idx = k++;
  CHECK(classes.at("airplane") == 0);
  CHECK(classes.at("truck") == 9);
  for (const TarEntry& te : entries) set.labels.push_back(classes.at(te.name.substr(0, te.name.find('/'))));
  set.count = static_cast<int64_t>(entries.size());
  set.load = [&](int64_t i) {
    const TarEntry& te = entries[static_cast<size_t>(i)];
    return decode_image(tar.read(te), path + ":" + te.name);
  };

  std::unique_ptr<Network> net = load_network(source_path("weights/cifar_resnet20.safetensors"));
  REQUIRE(net->input_spec().size == 32);
  EvalResult r = evaluate(*net, set, 100);
  MESSAGE("CIFAR ResNet20, cifar10 test.tar: top-1 ", 100.0 * r.top1 / r.n, "% (", r.top1, "/", r.n, "); ",
          r.n / r.seconds, " images/s (", r.seconds, " s; forward only ", r.n / r.forward_seconds, " images/s)");
  CHECK(r.top1 * 100 >= 79 * r.n);
}
