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
#include <fstream>

#include "layers/classifier_eval.h"
#include "tests/models/golden.h"

using namespace sal;
using sal::test::shared_path;
using sal::test::source_path;

namespace {

// 0: the whole CIFAR-10 test set; K > 0: the first K entries (NNNN < K) of every class folder.
constexpr int kCifarPerClass = 0;

}  // namespace

TEST_CASE("accuracy: MobileNet v1 0.75 on the 1,000 imagenet-val images") {
  const std::string dir = shared_path("data/imagenet-val");
  REQUIRE_MESSAGE(std::ifstream(dir + "/annotations.tsv"), dir,
                  "/annotations.tsv is missing (the shared data folder is needed)");
  const LabelledImages set = LabelledImages::imagenet_folder(dir);  // checks the header row and every line
  REQUIRE(set.size() == 1000);

  std::unique_ptr<Network> net = load_network(source_path("weights/mobilenet_v1_0.75_224.safetensors"));
  REQUIRE(net->input_spec().size == 224);
  REQUIRE(net->input_spec().num_classes == 1000);
  const ClassifierScore r = evaluate_classifier(*net, set);
  MESSAGE("MobileNet v1 0.75, imagenet-val: top-1 ", 100.0 * r.top1 / r.n, "% (", r.top1, "/", r.n, "), top-5 ",
          100.0 * r.top5 / r.n, "%; ", r.n / r.seconds, " images/s (", r.seconds, " s; forward only ",
          r.n / r.forward_seconds, " images/s)");
  CHECK(r.top1 >= 740);
  CHECK(r.top5 >= 910);
}

TEST_CASE("accuracy: CIFAR ResNet20 on cifar10/test.tar") {
  const std::string path = shared_path("data/cifar10/test.tar");
  REQUIRE_MESSAGE(std::ifstream(path), path, " is missing (the shared data folder is needed)");
  const LabelledImages all = LabelledImages::class_tar(path);
  REQUIRE(all.size() == 10000);
  REQUIRE(all.class_names.size() == 10);
  const LabelledImages set = kCifarPerClass ? all.first_per_class(kCifarPerClass) : all;
  REQUIRE(set.size() == (kCifarPerClass ? 10 * kCifarPerClass : 10000));
  auto class_index = [&](const std::string& name) {
    return std::find(set.class_names.begin(), set.class_names.end(), name) - set.class_names.begin();
  };
  CHECK(class_index("airplane") == 0);
  CHECK(class_index("truck") == 9);

  std::unique_ptr<Network> net = load_network(source_path("weights/cifar_resnet20.safetensors"));
  REQUIRE(net->input_spec().size == 32);
  const ClassifierScore r = evaluate_classifier(*net, set, 100);
  MESSAGE("CIFAR ResNet20, cifar10 test.tar: top-1 ", 100.0 * r.top1 / r.n, "% (", r.top1, "/", r.n, "); ",
          r.n / r.seconds, " images/s (", r.seconds, " s; forward only ", r.n / r.forward_seconds, " images/s)");
  CHECK(r.top1 * 100 >= 79 * r.n);
}
