// End-to-end tests of tools/sal_mask and tools/sal_eval on a few real images with the shipped black boxes
// and randomly initialised maskers saved by the test (layers/masker_io.h): the mask dump writes a mask
// PNG, an overlay PNG, a raw .npy and a JSON line per image (files, folders' worth of files and a
// WebDataset shard), takes the class from the label table or the shard's .cls, and reports an unreadable
// image without stopping the others (exit status 1); the evaluation on 8 ImageNet-val and 8 CIFAR-10 test
// images writes results.json with sane numbers for every method, results.md and grid.png.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/image.h"
#include "engine/tar_writer.h"
#include "layers/masker.h"
#include "layers/masker_io.h"
#include "temp_files.h"

using namespace sal;
using sal::test::TempDir;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int run(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string weights(const std::string& name) { return std::string(SAL_SOURCE_DIR) + "/weights/" + name; }

// A masker of the preset's config with seeded random decoder weights, saved as the tools load it.
std::string random_masker(const TempDir& t, const std::string& bb_name, bool mobilenet) {
  std::unique_ptr<Network> bb = load_network(weights(bb_name));
  MaskerConfig cfg = mobilenet ? MaskerConfig::mobilenet_v1() : MaskerConfig::cifar_resnet();
  cfg.seed = 7;
  Masker m(cfg, Device::CPU);
  m.init_embedding(bb->params().value(mobilenet ? "conv_preds.weight" : "linear.weight"));
  MaskerFileInfo info;
  info.black_box = bb_name;
  info.black_box_arch = bb->input_spec().arch;
  info.image_size = bb->input_spec().size;
  info.training = "random initialisation (test_eval_tools)";
  const std::string path = t.file(mobilenet ? "imagenet_masker.safetensors" : "cifar_masker.safetensors");
  save_masker(m, info, path);
  return path;
}

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

// The float32 values of a .npy written by sal_mask (engine/npy.h: a 128-byte header).
std::vector<float> npy_floats(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  REQUIRE(bytes.size() >= 128u);
  std::vector<float> v((bytes.size() - 128) / 4);
  std::memcpy(v.data(), bytes.data() + 128, v.size() * 4);
  return v;
}

}  // namespace

TEST_CASE("sal_mask: masks, overlays, raw masks and JSON lines, and an unreadable image does not stop the rest") {
  const std::string val = std::string(SAL_SHARED_DIR) + "/data/imagenet-val";
  REQUIRE_MESSAGE(fs::exists(val + "/annotations.tsv"), val, " is missing");
  TempDir t("sal_mask_test_");
  const std::string masker = random_masker(t, "mobilenet_v1_0.75_224.safetensors", true);
  const std::vector<std::string> files = {"ILSVRC2012_val_00000347.JPEG", "ILSVRC2012_val_00000355.JPEG"};
  // A WebDataset shard with one image (a third val image) and its class.
  const std::vector<uint8_t> jpg = read_file_bytes(val + "/images/ILSVRC2012_val_00000361.JPEG");
  {
    TarWriter w(t.file("shard.tar"));
    w.add("k1.jpg", jpg.data(), jpg.size());
    w.add("k1.cls", std::string("5"));
    w.finish();
  }
  sal::test::write_file(t.file("broken.jpg"), "\xff\xd8\xff\xe0 not a jpeg", 16);
  sal::test::write_file(t.file("empty.png"), "", 0);
  sal::test::write_file(t.file("short.jpg"), "\xff\xd8\xff", 3);
  // Batches of two: an unreadable file before a readable one, two unreadable files (a batch with
  // nothing to compute), then a val file and the shard.
  const std::string image_dir = val + "/images/";
  std::string args = " --masker " + masker + " --black-box " + weights("mobilenet_v1_0.75_224.safetensors") +
                     " --labels " + val + "/annotations.tsv --raw npy --batch 2 --quiet " + t.file("broken.jpg") + " " +
                     image_dir + files[0] + " " + t.file("empty.png") + " " + t.file("short.jpg") + " " + image_dir +
                     files[1] + " " + t.file("shard.tar");
  CHECK(run(std::string("OMP_NUM_THREADS=1 ") + SAL_MASK + args + " --out " + t.file("out") + " > " +
            t.file("log.txt") + " 2>&1") == 1);  // three images failed
  const std::vector<json> lines = read_jsonl(t.file("out/masks.jsonl"));
  REQUIRE(lines.size() == 6);
  int errors = 0;
  for (const json& j : lines) {
    if (j.contains("error")) {
      const std::string name = std::vector<std::string>{"broken.jpg", "empty.png", "short.jpg"}.at(
          static_cast<size_t>(errors++));  // in input order
      CHECK(j["image"].get<std::string>().find(name) != std::string::npos);
      CHECK(j["error"].get<std::string>().find(name) != std::string::npos);
      continue;
    }
    const std::string image = j["image"];
    const std::string stem = image.find("shard.tar:") != std::string::npos ? "k1" : fs::path(image).stem().string();
    // The class: the table's label for the val files, the .cls for the shard image.
    if (stem == "k1") CHECK(j["class"] == 5);
    if (stem == "ILSVRC2012_val_00000347") CHECK(j["class"] == 472);
    if (stem == "ILSVRC2012_val_00000355") CHECK(j["class"] == 260);
    CHECK(j["class_source"] == "truth");
    const double p = j["prob"], area = j["mask_area"];
    CHECK(p > 0.0);
    CHECK(p <= 1.0);
    CHECK(area >= 0.0);
    CHECK(area <= 1.0);
    const int w = j["width"], h = j["height"];
    CHECK(w == 227);
    CHECK(h == 227);
    if (!j["box"].is_null()) {
      CHECK(j["box"][2].get<int>() < w);
      CHECK(j["box"][0].get<int>() <= j["box"][2].get<int>());
    }
    const Image mask = read_image(t.file("out/" + stem + "_mask.png"));
    const Image over = read_image(t.file("out/" + stem + "_overlay.png"));
    CHECK(mask.width == w);
    CHECK(mask.height == h);
    CHECK(over.width == w);
    CHECK(fs::file_size(t.file("out/" + stem + "_mask.npy")) == 128u + static_cast<uintmax_t>(w) * h * 4u);
  }
  CHECK(errors == 3);
  for (size_t i = 0; i < lines.size(); ++i) {  // the lines follow the input order
    CAPTURE(i);
    CHECK(lines[i].contains("error") == (i == 0 || i == 2 || i == 3));
  }
  std::ifstream log(t.file("log.txt"));
  const std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  CHECK(text.find("broken.jpg") != std::string::npos);
  CHECK(text.find("empty.png") != std::string::npos);
  CHECK(text.find("short.jpg") != std::string::npos);
  CHECK(text.find("6 images, 3 failed") != std::string::npos);
  // The readable images' masks are theirs (the failed ones' rows closed up): the same, to float rounding,
  // as a run without the unreadable files (other batches: the sums' order may differ in the last bits,
  // and this random masker's |c0| / (|c0| + |c1|) magnifies them: 1.2e-5 seen in the sanitizer build).
  {
    std::string clean = std::string("OMP_NUM_THREADS=1 ") + SAL_MASK + " --masker " + masker + " --black-box " +
                        weights("mobilenet_v1_0.75_224.safetensors") + " --labels " + val +
                        "/annotations.tsv --raw npy --batch 2 --quiet --out " + t.file("clean");
    for (const std::string& f : files) clean += " " + image_dir + f;
    REQUIRE(run(clean + " " + t.file("shard.tar") + " > /dev/null 2>&1") == 0);
    for (const std::string stem : {"ILSVRC2012_val_00000347", "ILSVRC2012_val_00000355", "k1"}) {
      const std::vector<float> a = npy_floats(t.file("out/" + stem + "_mask.npy"));
      const std::vector<float> b = npy_floats(t.file("clean/" + stem + "_mask.npy"));
      REQUIRE(a.size() == b.size());
      double worst = 0;
      for (size_t k = 0; k < a.size(); ++k) worst = std::max(worst, static_cast<double>(std::abs(a[k] - b[k])));
      CAPTURE(stem);
      CAPTURE(worst);
      CHECK(worst < 1e-3);
    }
  }
  // The overlapped pipeline (loading and writing on worker threads beside the compute: CUDA's default)
  // writes the same files, byte for byte, as the serial one (the CPU's default), on as many threads
  // (the CPU forward's float rounding depends on the thread count).
  {
    for (const std::string mode : {"serial", "overlap"})
      CHECK(run(std::string("OMP_NUM_THREADS=2 ") + SAL_MASK + args + " --pipeline " + mode + " --out " +
                t.file(mode) + " > /dev/null 2>&1") == 1);
    int compared = 0;
    for (const auto& e : fs::directory_iterator(t.file("serial"))) {
      const std::string name = e.path().filename().string();
      CAPTURE(name);
      CHECK(read_file_bytes(e.path().string()) == read_file_bytes(t.file("overlap/" + name)));
      ++compared;
    }
    CHECK(compared == 1 + 3 * 3);  // masks.jsonl and three files for each of the three images
    CHECK(std::distance(fs::directory_iterator(t.file("overlap")), fs::directory_iterator{}) == compared);
  }
  // --device cuda: the same masks as the CPU's (to float rounding); without a device, a clear error.
  // One image per batch, three batches: the first runs both steps eagerly, the second captures them,
  // the third replays the graphs (the mask graph reading the classify graph's feature maps).
  {
    const std::vector<std::string> dev_files = {files[0], files[1], "ILSVRC2012_val_00000361.JPEG"};
    std::string dev_cmd = std::string("OMP_NUM_THREADS=1 ") + SAL_MASK + " --masker " + masker + " --black-box " +
                          weights("mobilenet_v1_0.75_224.safetensors") + " --class 1 --raw npy --batch 1 --quiet";
    for (const std::string& f : dev_files) dev_cmd += " " + val + "/images/" + f;
    if (!cuda_available()) {
      CHECK(run(dev_cmd + " --device cuda --out " + t.file("gpu") + " > " + t.file("gpu.txt") + " 2>&1") == 1);
      CHECK(sal::test::read_bytes(t.file("gpu.txt")).find("--device cuda: ") != std::string::npos);
      MESSAGE("skipped: sal_mask --device cuda against --device cpu (no CUDA device)");
    } else {
      // f32 convolutions: the CPU's masks to float rounding. TF32 (the default): close, but a random masker's
      // |c0| / (|c0| + |c1|) is ill-conditioned where both are near zero (measured: up to 0.03 apart).
      REQUIRE(run(dev_cmd + " --out " + t.file("cpu") + " > /dev/null 2>&1") == 0);
      REQUIRE(run("SAL_CONV_MATH=f32 " + dev_cmd + " --device cuda --out " + t.file("gpu") + " > /dev/null 2>&1") == 0);
      REQUIRE(run(dev_cmd + " --device cuda --out " + t.file("tf32") + " > /dev/null 2>&1") == 0);
      for (const std::string& f : dev_files) {
        const std::string stem = fs::path(f).stem().string();
        const std::vector<float> a = npy_floats(t.file("cpu/" + stem + "_mask.npy"));
        const std::vector<float> b = npy_floats(t.file("gpu/" + stem + "_mask.npy"));
        const std::vector<float> c = npy_floats(t.file("tf32/" + stem + "_mask.npy"));
        REQUIRE(a.size() == b.size());
        REQUIRE(a.size() == c.size());
        double worst = 0, worst_tf32 = 0, mean_tf32 = 0;
        for (size_t k = 0; k < a.size(); ++k) {
          worst = std::max(worst, static_cast<double>(std::abs(a[k] - b[k])));
          worst_tf32 = std::max(worst_tf32, static_cast<double>(std::abs(a[k] - c[k])));
          mean_tf32 += std::abs(a[k] - c[k]) / static_cast<double>(a.size());
        }
        MESSAGE(stem, ": CUDA vs CPU mask, largest difference f32 ", worst, ", tf32 ", worst_tf32, " (mean ", mean_tf32,
                ")");
        CHECK(worst < 1e-4);
        CHECK(mean_tf32 < 5e-3);
      }
    }
  }
  // A bad --class is a usage error before any work.
  CHECK(run(std::string(SAL_MASK) + " --masker " + masker + " --class nosuchclass --out " + t.file("o2") + " " + val +
            "/images/" + files[0] + " > /dev/null 2>&1") == 1);
}

TEST_CASE("sal_eval: 8 ImageNet-val images, every method, with a random masker") {
  const std::string val = std::string(SAL_SHARED_DIR) + "/data/imagenet-val";
  REQUIRE_MESSAGE(fs::exists(val + "/annotations.tsv"), val, " is missing");
  TempDir t("sal_eval_test_");
  const std::string masker = random_masker(t, "mobilenet_v1_0.75_224.safetensors", true);
  const std::string cmd = std::string("OMP_NUM_THREADS=1 ") + SAL_EVAL + " --data " + val + " --black-box " +
                          weights("mobilenet_v1_0.75_224.safetensors") + " --masker " + masker +
                          " --images 8 --batch 8 --slow-images 2 --mask-steps 2 --grid 2 --out " + t.file("ev") +
                          " > " + t.file("log.txt") + " 2>&1";
  REQUIRE(run(cmd) == 0);
  std::ifstream in(t.file("ev/results.json"));
  const json r = json::parse(in);
  CHECK(r["images"] == 8);
  for (const char* m : {"masker", "centre", "max", "gt", "grad", "gradcam", "mask"}) {
    CAPTURE(m);
    REQUIRE(r["methods"].contains(m));
    const json& s = r["methods"][m];
    CHECK(s["images"] == (std::string(m) == "mask" ? 2 : 8));
    CHECK(std::isfinite(s["saliency_metric"].get<double>()));
    if (std::string(m) != "gt") {
      const double e = s["localisation_error"];
      CHECK(e >= 0.0);
      CHECK(e <= 100.0);
      CHECK(s["mean_map"].get<double>() >= 0.0);
      CHECK(s["mean_map"].get<double>() <= 1.0);
    }
  }
  // The max box is the whole image: its box area is 1 and its map is all ones.
  CHECK(r["methods"]["max"]["mean_box_area"].get<double>() == doctest::Approx(1.0));
  CHECK(r["methods"]["centre"]["mean_box_area"].get<double>() == doctest::Approx(158.0 * 158.0 / (224.0 * 224.0)));
  CHECK(r["methods"]["masker"]["wrong_class_mean_map"].is_number());
  std::ifstream md(t.file("ev/results.md"));
  const std::string text((std::istreambuf_iterator<char>(md)), std::istreambuf_iterator<char>());
  CHECK(text.find("| Centre box | 8 |") != std::string::npos);
  CHECK(text.find("46.3") != std::string::npos);
  const Image grid = read_image(t.file("ev/grid.png"));
  CHECK(grid.height == 2 * (224 + 4));
  CHECK(grid.width == 7 * (224 + 4));  // the image + the 6 methods with a map (not gt)
  // per_image.jsonl: one line per image and method, whose mean is the table's number.
  const std::vector<json> lines = read_jsonl(t.file("ev/per_image.jsonl"));
  CHECK(lines.size() == 6 * 8 + 2);
  double centre_sum = 0;
  int centre_n = 0, loc_n = 0;
  for (const json& j : lines) {
    CHECK(j["image"].get<std::string>().find("ILSVRC2012_val_") != std::string::npos);
    if (j["method"] != "centre") continue;
    centre_sum += j["s"].get<double>();
    ++centre_n;
    loc_n += j["loc_correct"].get<bool>();
    CHECK(j["box_area"].get<double>() == doctest::Approx(158.0 * 158.0 / (224.0 * 224.0)));
  }
  REQUIRE(centre_n == 8);
  CHECK(centre_sum / 8 == doctest::Approx(r["methods"]["centre"]["saliency_metric"].get<double>()));
  CHECK(100.0 * (8 - loc_n) / 8 == doctest::Approx(r["methods"]["centre"]["localisation_error"].get<double>()));
}

TEST_CASE("sal_eval: a .tsv table without boxes (imagenet-sample/labels.tsv): saliency metric only") {
  const std::string table = std::string(SAL_SHARED_DIR) + "/data/imagenet-sample/labels.tsv";
  REQUIRE_MESSAGE(fs::exists(table), table, " is missing");
  TempDir t("sal_eval_tsv_test_");
  const std::string cmd = std::string("OMP_NUM_THREADS=1 ") + SAL_EVAL + " --data " + table + " --black-box " +
                          weights("mobilenet_v1_0.75_224.safetensors") +
                          " --methods centre,max,gt --images 4 --slow-images 0 --grid 0 --out " + t.file("ev") + " > " +
                          t.file("log.txt") + " 2>&1";
  REQUIRE(run(cmd) == 0);
  std::ifstream in(t.file("ev/results.json"));
  const json r = json::parse(in);
  CHECK(r["images"] == 4);
  CHECK_FALSE(r["methods"].contains("gt"));  // no boxes in this table
  CHECK(r["methods"]["centre"]["localisation_error"].is_null());
  CHECK(std::isfinite(r["methods"]["max"]["saliency_metric"].get<double>()));
  for (const json& j : read_jsonl(t.file("ev/per_image.jsonl"))) {
    CHECK(fs::exists(j["image"].get<std::string>()));  // paths relative to the table's folder
    CHECK_FALSE(j.contains("loc_correct"));
  }
}

TEST_CASE("sal_eval: 8 CIFAR-10 test images from the tar (no boxes: saliency metric, areas, Phi accuracy)") {
  const std::string tar = std::string(SAL_SHARED_DIR) + "/data/cifar10/test.tar";
  REQUIRE_MESSAGE(fs::exists(tar), tar, " is missing");
  TempDir t("sal_eval_cifar_test_");
  const std::string masker = random_masker(t, "cifar_resnet20.safetensors", false);
  const std::string cmd = std::string("OMP_NUM_THREADS=1 ") + SAL_EVAL + " --data " + tar + " --black-box " +
                          weights("cifar_resnet20.safetensors") + " --masker " + masker +
                          " --images 8 --slow-images 2 --mask-steps 3 --out " + t.file("ev") + " > " +
                          t.file("log.txt") + " 2>&1";
  REQUIRE(run(cmd) == 0);
  std::ifstream in(t.file("ev/results.json"));
  const json r = json::parse(in);
  CHECK_FALSE(r["methods"].contains("gt"));
  for (const char* m : {"masker", "centre", "max", "grad", "gradcam", "mask"}) {
    CAPTURE(m);
    REQUIRE(r["methods"].contains(m));
    CHECK(r["methods"][m]["localisation_error"].is_null());
    CHECK(std::isfinite(r["methods"][m]["saliency_metric"].get<double>()));
    const double acc = r["methods"][m]["phi_accuracy"];
    CHECK(acc >= 0.0);
    CHECK(acc <= 1.0);
  }
  CHECK(r["methods"]["max"]["mean_map"].get<double>() == doctest::Approx(1.0));
  CHECK(r["methods"]["max"]["mean_box_area"].get<double>() == doctest::Approx(1.0));
  // --reuse: a run of one method joins the earlier run's other rows, numbers unchanged; another
  // selection of images is refused.
  const std::string base = std::string("OMP_NUM_THREADS=1 ") + SAL_EVAL + " --data " + tar + " --black-box " +
                           weights("cifar_resnet20.safetensors") + " --methods centre --slow-images 2 --reuse " +
                           t.file("ev");
  REQUIRE(run(base + " --images 8 --out " + t.file("ev2") + " > " + t.file("log2.txt") + " 2>&1") == 0);
  std::ifstream in2(t.file("ev2/results.json"));
  const json r2 = json::parse(in2);
  for (const char* m : {"masker", "max", "grad", "gradcam", "mask"}) {
    CAPTURE(m);
    REQUIRE(r2["methods"].contains(m));
    CHECK(r2["methods"][m]["saliency_metric"] == r["methods"][m]["saliency_metric"]);
  }
  CHECK(r2["methods"]["centre"]["saliency_metric"] == r["methods"]["centre"]["saliency_metric"]);
  CHECK(fs::exists(t.file("ev2/grid.png")));
  CHECK(run(base + " --images 9 --out " + t.file("ev3") + " > " + t.file("log3.txt") + " 2>&1") == 1);
}
