// sal_train's schedule options and its masker file: phase 1 (--embedding-only-steps) moves only the class
// embedding; the area weight ramp starts where it is told; masker.safetensors rebuilds the trained masker
// with load_masker (and bad masker files get errors naming the file); the MobileNet preset runs at 224 px.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/param_io.h"
#include "engine/safetensors.h"
#include "error_of.h"
#include "layers/masker_io.h"
#include "layers/network.h"
#include "train_cli.h"

using namespace sal;
using namespace sal::test;
namespace fs = std::filesystem;

namespace {

const std::string kCifarWeights = shipped_black_box();

// The masker sal_train starts from (cifar preset, seed 5), before any step.
std::unique_ptr<Masker> initial_cifar_masker() {
  auto bb = load_network(kCifarWeights);
  MaskerConfig mc = MaskerConfig::cifar_resnet(10);
  mc.seed = 5;
  auto m = std::make_unique<Masker>(mc, Device::CPU);
  m->init_embedding(bb->params().value("linear.weight"));
  return m;
}

// Names of the trainable parameters whose values differ between two maskers.
std::vector<std::string> changed(const Masker& a, const Masker& b) {
  std::vector<std::string> out;
  for (const std::string& name : a.params().names()) {
    const ParamRef p = a.params().find(name);
    if (!a.params().trainable(p)) continue;
    if (a.params().value(name).values() != b.params().value(name).values()) out.push_back(name);
  }
  return out;
}

}  // namespace

TEST_CASE("sal_train: --embedding-only-steps trains only the class embedding - masker.safetensors loads") {
  TempDir t("sal_sched_");
  const std::string cmd = train_command(make_cifar_shards(t, 64, 32), shipped_black_box());
  auto init = initial_cifar_masker();

  REQUIRE(run_status(cmd + " --steps 2 --embedding-only-steps 2 --out " + t.file("a") + " > " + t.file("a.txt") +
              " 2>&1") == 0);
  MaskerFileInfo info;
  auto a = load_masker(t.file("a/masker.safetensors"), Device::CPU, &info);
  CHECK(info.black_box == "cifar_resnet20.safetensors");
  CHECK(info.black_box_arch == "cifar_resnet20");
  CHECK(info.image_size == 32);
  CHECK(info.training.find("sal_train step 2") == 0);
  CHECK(changed(*init, *a) == std::vector<std::string>{"masker.embedding.weight"});
  // The masker file holds the same values as the training checkpoint.
  {
    SafeTensorsFile ck(t.file("a/checkpoint.safetensors"));
    for (const std::string& name : a->params().names()) {
      INFO(name);
      CHECK(ck.tensor(name).values() == a->params().value(name).values());
    }
  }

  // With phase 1 one step long, step 2 trains the decoder too.
  REQUIRE(run_status(cmd + " --steps 2 --embedding-only-steps 1 --out " + t.file("b") + " > " + t.file("b.txt") +
              " 2>&1") == 0);
  auto b = load_masker(t.file("b/masker.safetensors"), Device::CPU);
  CHECK(changed(*init, *b).size() > 10);
}

TEST_CASE("sal_train: the area weight ramps from --area-weight-start") {
  TempDir t("sal_sched_");
  const std::string cmd = train_command(make_cifar_shards(t, 64, 32), shipped_black_box());
  REQUIRE(run_status(cmd + " --steps 3 --area-weight 4 --area-weight-start 0 --area-ramp-steps 2 --out " + t.file("a") +
              " > " + t.file("a.txt") + " 2>&1") == 0);
  const std::vector<std::string> lines = log_lines(t.file("a/log.jsonl"));
  REQUIRE(lines.size() == 3);
  CHECK(log_number(lines[0], "area") == 0.0);
  // Step 2 has weight 2, step 3 weight 4, on masks of similar area: the term about doubles.
  const double a2 = log_number(lines[1], "area"), a3 = log_number(lines[2], "area");
  CHECK(a2 > 0.5);
  CHECK(a3 / a2 == doctest::Approx(2.0).epsilon(0.15));
  CHECK(read_bytes(t.file("a.txt")).find("area_ramp_steps=2") != std::string::npos);
}

TEST_CASE("load_masker: errors name the file and the problem") {
  TempDir t("sal_masker_io_");
  auto m = initial_cifar_masker();
  MaskerFileInfo info{"cifar_resnet20.safetensors", "cifar_resnet20", "test", 32};
  const std::string good = t.file("good.safetensors");
  save_masker(*m, info, good);
  auto back = load_masker(good, Device::CPU);
  CHECK(changed(*m, *back).empty());
  CHECK(back->config().widths == m->config().widths);
  CHECK(back->config().feature_channels == m->config().feature_channels);

  // A network weight file is not a masker file.
  const std::string msg = error_of([&] { load_masker(kCifarWeights, Device::CPU); });
  CHECK(msg.find(kCifarWeights) != std::string::npos);
  CHECK(msg.find("format") != std::string::npos);

  // A masker file whose metadata disagrees with its tensors (an extra upsampler width).
  std::map<std::string, std::string> md = masker_metadata(*m, info);
  md["widths"] = "64,32";
  const std::string bad = t.file("bad.safetensors");
  save_params(m->params(), bad, md);
  const std::string msg2 = error_of([&] { load_masker(bad, Device::CPU); });
  CHECK(msg2.find(bad) != std::string::npos);
  CHECK(msg2.find("missing tensor") != std::string::npos);

  md["widths"] = "64,x";
  save_params(m->params(), bad, md);
  CHECK(error_of([&] { load_masker(bad, Device::CPU); }).find("'widths' must be positive integers") !=
        std::string::npos);

  // Against the wrong black box.
  auto mobilenet = load_network(std::string(SAL_SOURCE_DIR) + "/weights/mobilenet_v1_0.75_224.safetensors");
  const std::string msg3 = error_of([&] { check_masker_black_box(info, good, *mobilenet, "mobilenet.safetensors"); });
  CHECK(msg3.find("trained against a 'cifar_resnet20' black box") != std::string::npos);
}

TEST_CASE("sal_train: the MobileNet preset trains at 224 px on ImageNet-style shards") {
  TempDir t("sal_sched_");
  const std::string labels = std::string(SAL_SHARED_DIR) + "/data/imagenet-sample/labels.tsv";
  REQUIRE_MESSAGE(fs::exists(labels), labels, " is missing (../shared/data/imagenet-sample)");
  fs::create_directories(t.dir / "shards");
  REQUIRE(run_status(std::string(SAL_MAKE_SHARDS) + " --list " + labels + " --out " + t.file("shards/i") +
              " --limit 4 > " + t.file("shards.log") + " 2>&1") == 0);
  const std::string cmd = std::string("OMP_NUM_THREADS=1 ") + SAL_TRAIN + " --shards " + t.file("shards") +
                          " --black-box " + SAL_SOURCE_DIR +
                          "/weights/mobilenet_v1_0.75_224.safetensors --preset mobilenet --batch 2 --threads 1"
                          " --steps 1 --log-every 1 --smooth-on-head --out " + t.file("m");
  REQUIRE(run_status(cmd + " > " + t.file("m.txt") + " 2>&1") == 0);
  const std::string out = read_bytes(t.file("m.txt"));
  INFO(out);
  CHECK(out.find("image_size=224") != std::string::npos);
  CHECK(out.find("blur_sigma=10") != std::string::npos);
  REQUIRE(log_lines(t.file("m/log.jsonl")).size() == 1);
  CHECK(std::isfinite(log_number(log_lines(t.file("m/log.jsonl"))[0], "total")));
  MaskerFileInfo info;
  auto m = load_masker(t.file("m/masker.safetensors"), Device::CPU, &info);
  CHECK(m->config().num_classes == 1000);
  CHECK(info.black_box_arch == "mobilenet_v1_0.75_224");
  CHECK(info.image_size == 224);
}
