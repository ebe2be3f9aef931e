// Tests of the evaluation protocol and the baselines (layers/saliency_eval.h): boxes, connected
// components, IoU, box scaling and the saliency metric on hand-made masks with known answers; crops;
// the gradient baseline against central finite differences, CAM = Grad-CAM's exact identity for a
// GAP + linear head (the map's mean plus the bias is the logit) on a seeded double-precision CIFAR
// ResNet8 and on the shipped MobileNet; and the iterative Mask baseline lowering its objective.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <random>

#include "engine/image.h"
#include "layers/cifar_resnet.h"
#include "layers/saliency_eval.h"
#include "one_thread.h"
#include "op_check.h"
#include "tiny_nets.h"

using sal::test::OneThread;
using sal::test::random_images;
using sal::test::tiny_resnet;
using namespace sal;

namespace {

// A map from rows of characters: '#' = 1, '+' = 0.6, '-' = 0.4, '.' = 0.
std::vector<float> map_of(const std::vector<std::string>& rows) {
  std::vector<float> m;
  for (const std::string& r : rows)
    for (char c : r) m.push_back(c == '#' ? 1.0f : c == '+' ? 0.6f : c == '-' ? 0.4f : 0.0f);
  return m;
}

}  // namespace

TEST_CASE("saliency eval: boxes around thresholded hand-made masks") {
  const std::vector<float> m = map_of({
      "..........",  //
      ".##.......",  //
      ".#+.......",  //
      "......-...",  //
      ".....+##..",  //
      ".....####.",  //
      "......#...",  //
  });
  // Threshold 0.5: the two blobs; the tightest box holds both.
  CHECK(mask_box(m.data(), 7, 10, 0.5, false) == Box{1, 1, 8, 6});
  // The largest 8-connected component is the lower blob (8 pixels against 4).
  CHECK(mask_box(m.data(), 7, 10, 0.5, true) == Box{5, 4, 8, 6});
  // Threshold 0.3 adds the 0.4 pixel at (6,3), 8-connected to the lower blob.
  CHECK(mask_box(m.data(), 7, 10, 0.3, true) == Box{5, 3, 8, 6});
  // Threshold 0.7: the 0.6 pixels drop out.
  CHECK(mask_box(m.data(), 7, 10, 0.7, false) == Box{1, 1, 8, 6});
  CHECK(mask_box(m.data(), 7, 10, 0.7, true) == Box{5, 4, 8, 6});
  // Diagonal neighbours join a component.
  const std::vector<float> d = map_of({"#...", ".#..", "..#.", "...#", "..##"});
  CHECK(mask_box(d.data(), 5, 4, 0.5, true) == Box{0, 0, 3, 4});
  // Ties keep the first component in row-major order.
  const std::vector<float> t = map_of({"##..", "....", "..##"});
  CHECK(mask_box(t.data(), 3, 4, 0.5, true) == Box{0, 0, 1, 0});
  // Nothing above the threshold: an empty box, never correct.
  const std::vector<float> z = map_of({"--", "--"});
  CHECK(mask_box(z.data(), 2, 2, 0.5, false).empty());
  CHECK(mask_box(z.data(), 2, 2, 0.5, true).empty());
  CHECK_FALSE(localisation_correct(Box{}, {Box{0, 0, 1, 1}}));
}

TEST_CASE("saliency eval: IoU, box scaling, centre box and the localisation rule") {
  CHECK(box_iou(Box{0, 0, 9, 9}, Box{0, 0, 9, 9}) == doctest::Approx(1.0));
  CHECK(box_iou(Box{0, 0, 9, 9}, Box{5, 5, 14, 14}) == doctest::Approx(25.0 / 175.0));
  CHECK(box_iou(Box{0, 0, 9, 9}, Box{10, 0, 19, 9}) == 0.0);
  CHECK(box_iou(Box{0, 0, 9, 9}, Box{0, 0, 9, 4}) == doctest::Approx(0.5));
  CHECK(box_iou(Box{}, Box{0, 0, 1, 1}) == 0.0);
  // IoU exactly 0.5 counts as correct, just below does not; any of several boxes will do.
  CHECK(localisation_correct(Box{0, 0, 9, 4}, {Box{50, 50, 60, 60}, Box{0, 0, 9, 9}}));
  CHECK_FALSE(localisation_correct(Box{0, 0, 9, 3}, {Box{0, 0, 9, 9}}));
  // Original 500x375 -> 224x224: pixel edges scale, then the overlapped pixels.
  CHECK(scale_box(Box{0, 0, 499, 374}, 500, 375, 224, 224) == Box{0, 0, 223, 223});
  CHECK(scale_box(Box{100, 75, 199, 149}, 500, 375, 224, 224) == Box{44, 44, 89, 89});
  CHECK(scale_box(Box{10, 10, 10, 10}, 100, 100, 10, 10) == Box{1, 1, 1, 1});
  CHECK(scale_box(Box{0, 0, 1, 1}, 4, 4, 8, 8) == Box{0, 0, 3, 3});
  CHECK(centre_box(224, 224, 0.5) == Box{33, 33, 190, 190});
  CHECK(centre_box(10, 20, 1.0) == Box{0, 0, 9, 19});
  const Tensor bm = box_map(Box{1, 2, 2, 2}, 4, 4);
  CHECK(bm.values() == std::vector<double>{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0});
}

TEST_CASE("saliency eval: the saliency metric and crops") {
  CHECK(saliency_metric(0.25, std::log(0.25)) == doctest::Approx(0.0));
  CHECK(saliency_metric(1.0, std::log(0.5)) == doctest::Approx(std::log(2.0)));
  // Areas below 5% count as 5%.
  CHECK(saliency_metric(0.01, std::log(0.5)) == doctest::Approx(std::log(0.1)));
  CHECK(saliency_metric(0.0, 0.0) == doctest::Approx(std::log(0.05)));
  // Image value = column index: a 4-wide crop resized to 4 keeps its values; the whole image is unchanged.
  std::vector<double> v;
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 6; ++y)
      for (int x = 0; x < 8; ++x) v.push_back(x + 10 * c);
  const Tensor img = Tensor::from_values(v, Shape{1, 3, 6, 8});
  const Tensor crop = crop_resize(img, {Box{2, 1, 5, 4}}, 4);
  CHECK(crop.shape() == Shape{1, 3, 4, 4});
  const std::vector<double> cv = crop.values();
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 4; ++x) CHECK(cv[static_cast<size_t>((c * 4 + y) * 4 + x)] == doctest::Approx(2 + x + 10 * c));
  // A 2-wide crop upsampled to 4 (align_corners=false): 2, 2.25, 2.75, 3.
  const std::vector<double> up = crop_resize(img, {Box{2, 0, 3, 1}}, 4).values();
  CHECK(up[0] == doctest::Approx(2.0));
  CHECK(up[1] == doctest::Approx(2.25));
  CHECK(up[2] == doctest::Approx(2.75));
  CHECK(up[3] == doctest::Approx(3.0));
  CHECK_THROWS_WITH(crop_resize(img, {Box{}}, 4), doctest::Contains("empty or outside"));
  CHECK_THROWS_WITH(crop_resize(img, {Box{0, 0, 8, 1}}, 4), doctest::Contains("empty or outside"));
}

TEST_CASE("saliency eval: the gradient baseline matches central finite differences (ResNet8, double)") {
  OneThread one;
  auto net = tiny_resnet(3);
  const Tensor x = random_images(2, 8, 4, DType::F64);
  const std::vector<int> classes = {3, 7};
  Ctx ctx;
  const std::vector<double> got = gradient_saliency(ctx, *net, x, classes).values();
  std::vector<double> xv = x.values();
  const auto logit = [&](int64_t n, const std::vector<double>& vals) {
    const Tensor xi = Tensor::from_values(vals, x.shape(), DType::F64);
    return net->forward(ctx, net->normalize(ctx, xi)).values()[static_cast<size_t>(n * 10 + classes[static_cast<size_t>(n)])];
  };
  std::vector<double> want(static_cast<size_t>(2 * 64), 0.0);
  const double h = 1e-5;
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t p = 0; p < 64; ++p) {
        const size_t i = static_cast<size_t>((n * 3 + c) * 64 + p);
        const double keep = xv[i];
        xv[i] = keep + h;
        const double zp = logit(n, xv);
        xv[i] = keep - h;
        const double zm = logit(n, xv);
        xv[i] = keep;
        double& w = want[static_cast<size_t>(n * 64 + p)];
        w = std::max(w, std::abs((zp - zm) / (2 * h)));
      }
  for (int64_t n = 0; n < 2; ++n) {
    double mx = 0;
    for (int64_t p = 0; p < 64; ++p) mx = std::max(mx, want[static_cast<size_t>(n * 64 + p)]);
    REQUIRE(mx > 0);
    for (int64_t p = 0; p < 64; ++p) {
      const size_t i = static_cast<size_t>(n * 64 + p);
      CHECK(got[i] == doctest::Approx(want[i] / mx).epsilon(1e-5));
    }
  }
}

TEST_CASE("saliency eval: CAM is Grad-CAM for a GAP + linear head: mean(CAM) + bias = logit (ResNet8, double)") {
  OneThread one;
  auto net = tiny_resnet(5);
  const Tensor x = random_images(3, 8, 6, DType::F64);
  const std::vector<int> classes = {0, 4, 9};
  Ctx ctx;
  const Tensor cam = class_activation_maps(ctx, *net, x, classes);
  CHECK(cam.shape() == Shape{3, 1, 2, 2});  // layer3 of an 8x8 input: 2x2
  const std::vector<double> z = net->forward(ctx, net->normalize(ctx, x)).values();
  const LinearHead head = linear_head(*net);
  const std::vector<double> cv = cam.values(), bias = head.bias.values();
  for (int64_t n = 0; n < 3; ++n) {
    double mean = 0;
    for (int64_t p = 0; p < 4; ++p) mean += cv[static_cast<size_t>(n * 4 + p)] / 4.0;
    const int c = classes[static_cast<size_t>(n)];
    CHECK(mean + bias[static_cast<size_t>(c)] == doctest::Approx(z[static_cast<size_t>(n * 10 + c)]).epsilon(1e-10));
  }
  // The Grad-CAM map: ReLU, bilinear to 8x8, divided by the max: in [0,1] with max 1 (or all 0).
  const std::vector<double> g = gradcam_saliency(ctx, *net, x, classes).values();
  REQUIRE(g.size() == 3u * 64u);
  for (int64_t n = 0; n < 3; ++n) {
    double mx = 0, mn = 1;
    for (int64_t p = 0; p < 64; ++p) {
      mx = std::max(mx, g[static_cast<size_t>(n * 64 + p)]);
      mn = std::min(mn, g[static_cast<size_t>(n * 64 + p)]);
    }
    CHECK(mn >= 0.0);
    CHECK((mx == doctest::Approx(1.0) || mx == 0.0));
  }
  // Hand case of the normalisation: a map with a negative part and max 4.
  Tensor maps = Tensor::from_values({-1, 0, 2, 4, 0, 0, 0, 0}, Shape{2, 1, 2, 2});
  normalise_by_max(maps);
  CHECK(maps.values() == std::vector<double>{0, 0, 0.5, 1, 0, 0, 0, 0});
}

TEST_CASE("saliency eval: CAM identity on the shipped MobileNet v1 (conv_preds, 7x7 map of a 224 image)") {
  const std::string path = std::string(SAL_SOURCE_DIR) + "/weights/mobilenet_v1_0.75_224.safetensors";
  std::unique_ptr<Network> net = load_network(path);
  const Tensor x = random_images(1, 224, 8);
  Ctx ctx;
  const Tensor cam = class_activation_maps(ctx, *net, x, {123});
  CHECK(cam.shape() == Shape{1, 1, 7, 7});
  const std::vector<double> z = net->forward(ctx, net->normalize(ctx, x)).values();
  double mean = 0;
  for (double v : cam.values()) mean += v / 49.0;
  CHECK(mean + linear_head(*net).bias.values()[123] == doctest::Approx(z[123]).epsilon(1e-4));
}

TEST_CASE("saliency eval: the iterative Mask baseline lowers its objective (ResNet8, double)") {
  OneThread one;
  auto net = tiny_resnet(11);
  const Tensor x = random_images(2, 8, 12, DType::F64);
  MaskOptimConfig cfg;
  cfg.resolution = 4;
  cfg.lr = 0.1;
  cfg.objective = ObjectiveConfig::released();
  cfg.objective.blur_prob = 1.0;  // deterministic evidence removal: blur only, no noise
  cfg.objective.noise_std = 0.0;
  cfg.objective.preserved_noise_std = 0.0;
  cfg.objective.blur_sigma = 2.0;
  cfg.objective.blur_ksize = 5;
  cfg.objective.area_weight = 1.0;
  Arena arena(Device::CPU);
  Ctx ctx(Device::CPU, &arena);
  double first = 0, last = 0;
  cfg.steps = 1;
  optimise_masks(ctx, *net, x, {1, 2}, cfg, &first);
  cfg.steps = 40;
  const Tensor m = optimise_masks(ctx, *net, x, {1, 2}, cfg, &last);
  CHECK(m.shape() == Shape{2, 1, 8, 8});
  CHECK(last < first - 0.05);
  for (double v : m.values()) {
    CHECK(v >= 0.0);
    CHECK(v <= 1.0);
  }
}
