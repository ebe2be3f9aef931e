// SaliencyEngine (layers/saliency_engine.h) with the shipped ImageNet masker and its black box on the
// sample images: its log-probabilities and masks are those of the networks called directly (the black
// box's forward, the masker's forward through it), for the top-1 class and for other classes of the same
// classification, at batch sizes below and at its maximum; its argument errors; and on a GPU the same
// masks from the captured graphs, padding rows included (skipped, with a message, without one).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "engine/device_session.h"
#include "engine/error.h"
#include "engine/image.h"
#include "layers/saliency_engine.h"
#include "tests/op_check.h"

using namespace sal;

namespace {

std::string repo(const std::string& rel) { return std::string(SAL_SOURCE_DIR) + "/" + rel; }

const char* kMasker = "weights/mobilenet_v1_0.75_224_masker.safetensors";

// The first n sample images as a host [n,3,S,S] batch in [0,1].
Tensor sample_batch(int64_t n, int64_t S) {
  const char* files[] = {"ILSVRC2012_val_00014010.JPEG", "ILSVRC2012_val_00018708.JPEG",
                         "ILSVRC2012_val_00027429.JPEG", "ILSVRC2012_val_00031163.JPEG",
                         "ILSVRC2012_val_00044095.JPEG"};
  Tensor x = Tensor::empty(Shape{n, 3, S, S});
  for (int64_t i = 0; i < n; ++i) {
    const Tensor img = image_to_tensor(read_image(repo("samples/") + files[i % 5]), S, S);
    x.slice0(i, 1).copy_from(img.reshape(Shape{1, 3, S, S}));
  }
  return x;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> u = a.values(), v = b.values();
  double worst = 0;
  for (size_t i = 0; i < u.size(); ++i) worst = std::max(worst, std::abs(u[i] - v[i]));
  return worst;
}

double mean_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> u = a.values(), v = b.values();
  double sum = 0;
  for (size_t i = 0; i < u.size(); ++i) sum += std::abs(u[i] - v[i]);
  return u.empty() ? 0 : sum / static_cast<double>(u.size());
}

}  // namespace

TEST_CASE("SaliencyEngine: the networks' own log-probabilities and masks, for any classes, at any batch size") {
  const DeviceSession cpu("cpu");
  SaliencyEngine engine(cpu, {.masker = repo(kMasker), .max_batch = 4});
  const int64_t S = engine.image_size(), K = engine.num_classes();
  CHECK(S == 224);
  CHECK(K == 1000);
  CHECK(engine.black_box_path().find("mobilenet_v1_0.75_224.safetensors") != std::string::npos);

  // The reference: the same networks, loaded again, called directly.
  MaskerFileInfo info;
  std::unique_ptr<Masker> masker = load_masker(repo(kMasker), Device::CPU, &info);
  std::unique_ptr<Network> bb = load_network(engine.black_box_path(), Device::CPU);
  Ctx ctx(Device::CPU);

  for (const int64_t n : {int64_t{3}, int64_t{4}, int64_t{1}}) {
    INFO("batch ", n);
    const Tensor x = sample_batch(n, S);
    const SaliencyEngine::Result r = engine.run(x);
    REQUIRE(r.log_probs.shape() == Shape{n, K});
    REQUIRE(r.masks.shape() == Shape{n, 1, S, S});
    REQUIRE(static_cast<int64_t>(r.top1.size()) == n);

    const Tensor want_lp = log_softmax(ctx, bb->forward(ctx, bb->normalize(ctx, x)));
    CHECK(max_abs_diff(r.log_probs, want_lp) == 0);
    std::vector<int32_t> top1(r.top1.begin(), r.top1.end());
    for (int64_t i = 0; i < n; ++i) {
      const std::vector<double> row = want_lp.slice0(i, 1).values();
      CHECK(r.top1[static_cast<size_t>(i)] == std::max_element(row.begin(), row.end()) - row.begin());
    }
    const Tensor want_masks = masker->forward(ctx, *bb, x, Tensor::from_labels(top1), false).mask;
    CHECK(max_abs_diff(r.masks, want_masks) == 0);

    // Other classes for the same classification: the decoder alone, on the kept feature maps.
    std::vector<int32_t> other(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      other[static_cast<size_t>(i)] = static_cast<int32_t>((top1[static_cast<size_t>(i)] + 7 * (i + 1)) % K);
    const Tensor m2 = engine.masks(other);
    const Tensor want2 = masker->forward(ctx, *bb, x, Tensor::from_labels(other), false).mask;
    CHECK(max_abs_diff(m2, want2) == 0);
    CHECK(max_abs_diff(m2, r.masks) > 0.01);  // a different class gives a different mask
  }
}

TEST_CASE("SaliencyEngine: argument errors name what is wrong") {
  const DeviceSession cpu("cpu");
  SaliencyEngine engine(cpu, {.masker = repo(kMasker), .max_batch = 2});
  const int64_t S = engine.image_size();
  CHECK_THROWS_WITH(engine.masks({1}), doctest::Contains("no images classified yet"));
  CHECK_THROWS_WITH(engine.classify(sample_batch(3, S)), doctest::Contains("1 <= n <= 2 (max_batch)"));
  CHECK_THROWS_WITH(engine.classify(Tensor::zeros(Shape{1, 3, 32, 32})), doctest::Contains("[n,3,224,224]"));
  CHECK_THROWS_WITH(engine.classify(Tensor::zeros(Shape{1, 3, S, S}, DType::F64)), doctest::Contains("host f32"));
  engine.classify(sample_batch(2, S));
  CHECK_THROWS_WITH(engine.masks({1}), doctest::Contains("1 classes for the 2 images"));
  CHECK_THROWS_WITH(engine.masks({1, 1000}),
                    doctest::Contains("class 1000 of image 1 is outside the black box's 1000"));
  CHECK_THROWS_WITH(engine.masks({-1, 0}), doctest::Contains("class -1 of image 0"));
  CHECK(engine.masks({1, 2}).shape() == Shape{2, 1, S, S});  // the classification is still there

  CHECK_THROWS_WITH(SaliencyEngine(cpu, {.masker = repo(kMasker), .max_batch = 0}),
                    doctest::Contains("max_batch must be at least 1"));
  // A black box of another architecture than the masker's: the error names both files.
  const std::string cifar = repo("weights/cifar_resnet20.safetensors");
  CHECK_THROWS_WITH(SaliencyEngine(cpu, {.masker = repo(kMasker), .black_box = cifar}),
                    doctest::Contains("cifar_resnet20.safetensors"));
  MaskerFileInfo unnamed;
  CHECK_THROWS_WITH(SaliencyEngine::black_box_path_for("m.safetensors", unnamed),
                    doctest::Contains("m.safetensors: the masker names no black box"));
  MaskerFileInfo missing;
  missing.black_box = "no_such_network.safetensors";
  CHECK_THROWS_WITH(SaliencyEngine::black_box_path_for("/tmp/m.safetensors", missing),
                    doctest::Contains("'no_such_network.safetensors' is neither beside it nor in weights/"));
}

TEST_CASE("cuda: SaliencyEngine's captured steps give the CPU's masks, fewer images than rows included") {
  if (!cuda_available()) {
    MESSAGE("skipped: SaliencyEngine on CUDA (no CUDA device)");
    return;
  }
  const DeviceSession cpu("cpu"), gpu("cuda");
  SaliencyEngine on_cpu(cpu, {.masker = repo(kMasker), .max_batch = 3});
  SaliencyEngine on_gpu(gpu, {.masker = repo(kMasker), .max_batch = 3});
  const int64_t S = on_cpu.image_size();
  // Four calls: eager, captured, replayed (2 images: one zero padding row), replayed again (3 images).
  for (const int64_t n : {int64_t{3}, int64_t{3}, int64_t{2}, int64_t{3}}) {
    const Tensor x = sample_batch(n, S);
    const SaliencyEngine::Result a = on_cpu.run(x), b = on_gpu.run(x);
    REQUIRE(b.masks.shape() == Shape{n, 1, S, S});
    CHECK(b.top1 == a.top1);
    const double lp = max_abs_diff(a.log_probs, b.log_probs), m = mean_abs_diff(a.masks, b.masks);
    MESSAGE("batch ", n, ": CUDA vs CPU log-probabilities ", lp, ", masks mean ", m, " max ",
            max_abs_diff(a.masks, b.masks));
    CHECK(lp < 0.05);  // TF32 convolutions (the default); the masks' mean as in the sal_mask test
    CHECK(m < 5e-3);
  }
  // Several masks() per classification, in fresh engines (their graphs not yet captured): the mask step's
  // second run captures while the classify step is still eager, and the next classify moves its feature maps;
  // the engine must not replay a graph that reads the old ones.
  SaliencyEngine fresh_cpu(cpu, {.masker = repo(kMasker), .max_batch = 2});
  SaliencyEngine fresh_gpu(gpu, {.masker = repo(kMasker), .max_batch = 2});
  for (int round = 0; round < 3; ++round) {
    Tensor x = sample_batch(2, S);
    if (round == 1) x.slice0(0, 1).copy_from(sample_batch(3, S).slice0(2, 1));  // another image
    const SaliencyEngine::Result a = fresh_cpu.run(x), b = fresh_gpu.run(x);
    CHECK(b.top1 == a.top1);
    for (const int32_t shift : {3, 11}) {
      const std::vector<int32_t> cls = {(a.top1[0] + shift) % 1000, (a.top1[1] + shift) % 1000};
      const double m = mean_abs_diff(fresh_cpu.masks(cls), fresh_gpu.masks(cls));
      MESSAGE("round ", round, ", classes +", shift, ": CUDA vs CPU masks mean ", m);
      CHECK(m < 5e-3);
    }
  }
}
