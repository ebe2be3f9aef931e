// sal_train's --init-masker (fine-tuning a trained masker) and --device cuda (the same training on the
// GPU: its losses must match the CPU run's; without a CUDA device the run must refuse with a clear error,
// and the comparison prints that it was skipped).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "layers/masker_io.h"
#include "layers/network.h"
#include "train_cli.h"

using namespace sal;
using namespace sal::test;

namespace {

// Trainable parameters of two masker files, compared exactly: the names whose values differ.
std::vector<std::string> differing(const std::string& a_path, const std::string& b_path) {
  auto a = load_masker(a_path, Device::CPU), b = load_masker(b_path, Device::CPU);
  std::vector<std::string> out;
  for (const std::string& name : a->params().names()) {
    if (!a->params().trainable(a->params().find(name))) continue;
    if (a->params().value(name).values() != b->params().value(name).values()) out.push_back(name);
  }
  return out;
}

}  // namespace

TEST_CASE("sal_train: --init-masker starts from the file's parameters - a different config is an error") {
  TempDir t("sal_init_");
  const std::string cmd = train_command(make_cifar_shards(t, 64, 32), shipped_black_box());
  REQUIRE(run_status(cmd + " --steps 2 --out " + t.file("a") + " > " + t.file("a.txt") + " 2>&1") == 0);
  const std::string a = t.file("a/masker.safetensors");

  // One step at learning rate 0 moves nothing trainable: the fine-tuned masker is the file it started from.
  REQUIRE(run_status(cmd + " --steps 1 --lr 0 --init-masker " + a + " --out " + t.file("b") + " > " + t.file("b.txt") +
                     " 2>&1") == 0);
  CHECK(read_bytes(t.file("b.txt")).find("initialised from " + a) != std::string::npos);
  CHECK(differing(a, t.file("b/masker.safetensors")).empty());
  // The same step without --init-masker starts from the seeded initialisation instead.
  REQUIRE(run_status(cmd + " --steps 1 --lr 0 --out " + t.file("c") + " > " + t.file("c.txt") + " 2>&1") == 0);
  CHECK(differing(a, t.file("c/masker.safetensors")).size() > 10);
  // With lr > 0 it trains from there (and the masker file records where it started).
  REQUIRE(run_status(cmd + " --steps 1 --init-masker " + a + " --out " + t.file("d") + " > " + t.file("d.txt") +
                     " 2>&1") == 0);
  MaskerFileInfo info;
  load_masker(t.file("d/masker.safetensors"), Device::CPU, &info);
  CHECK(info.training.find("init_masker=" + a) != std::string::npos);
  CHECK(differing(a, t.file("d/masker.safetensors")).size() > 10);

  // Flags that build another masker than the file's: the error names the file and the setting.
  CHECK(run_status(cmd + " --steps 1 --widths 32 --init-masker " + a + " --out " + t.file("e") + " > " +
                   t.file("e.txt") + " 2>&1") == 1);
  const std::string err = read_bytes(t.file("e.txt"));
  CHECK(err.find(a) != std::string::npos);
  CHECK(err.find("widths") != std::string::npos);
  // A black box of another architecture: refused too.
  CHECK(run_status(train_command(t.file("shards"), std::string(SAL_SOURCE_DIR) + "/weights/cifar_resnet56.safetensors") +
                   " --steps 1 --init-masker " + a + " --out " + t.file("f") + " > " + t.file("f.txt") + " 2>&1") == 1);
  CHECK(read_bytes(t.file("f.txt")).find("cifar_resnet56") != std::string::npos);
}

TEST_CASE("sal_train: --freeze-embedding keeps the class embedding at the classifier weights x scale") {
  TempDir t("sal_freeze_");
  const std::string cmd = train_command(make_cifar_shards(t, 64, 32), shipped_black_box());
  // The expected embedding: ResNet20's linear.weight [10,64] x 0.25 (a power of two: exact in f32).
  std::vector<double> want = load_network(shipped_black_box())->params().value("linear.weight").values();
  for (double& x : want) x *= 0.25;
  auto embedding = [](const std::string& masker_file) {
    return load_masker(masker_file, Device::CPU)->params().value("masker.embedding.weight").values();
  };

  // Trained from scratch: everything else moves, the embedding does not.
  REQUIRE(run_status(cmd + " --steps 3 --embedding-init-scale 0.25 --freeze-embedding --out " + t.file("a") + " > " +
                     t.file("a.txt") + " 2>&1") == 0);
  CHECK(embedding(t.file("a/masker.safetensors")) == want);
  // Without the flag the same run trains it (the selector loss and the filter both pull on it).
  REQUIRE(run_status(cmd + " --steps 3 --embedding-init-scale 0.25 --out " + t.file("b") + " > " + t.file("b.txt") +
                     " 2>&1") == 0);
  CHECK(embedding(t.file("b/masker.safetensors")) != want);
  // Fine-tuning b with the flag: the embedding goes back to the classifier's (b's trained one is dropped), and
  // at lr 0 every other parameter is b's.
  const std::string b = t.file("b/masker.safetensors");
  REQUIRE(run_status(cmd + " --steps 1 --lr 0 --embedding-init-scale 0.25 --freeze-embedding --init-masker " + b +
                     " --out " + t.file("c") + " > " + t.file("c.txt") + " 2>&1") == 0);
  CHECK(read_bytes(t.file("c.txt")).find("--freeze-embedding: the class embedding is the classifier weights") !=
        std::string::npos);
  CHECK(embedding(t.file("c/masker.safetensors")) == want);
  CHECK(differing(b, t.file("c/masker.safetensors")) == std::vector<std::string>{"masker.embedding.weight"});
  // A resumed frozen run keeps it too.
  REQUIRE(run_status(cmd + " --steps 5 --embedding-init-scale 0.25 --freeze-embedding --resume --out " + t.file("a") +
                     " > " + t.file("a2.txt") + " 2>&1") == 0);
  CHECK(embedding(t.file("a/masker.safetensors")) == want);
  // A run that trained its embedding, resumed with the flag: the embedding stays where the checkpoint left it
  // (its Adam moments from before would otherwise keep moving it).
  const std::string b_before = t.file("b_step3.safetensors");
  std::filesystem::copy_file(b, b_before);
  REQUIRE(run_status(cmd + " --steps 5 --embedding-init-scale 0.25 --freeze-embedding --resume --out " + t.file("b") +
                     " > " + t.file("b2.txt") + " 2>&1") == 0);
  CHECK(embedding(b) == embedding(b_before));
  CHECK(differing(b_before, b).size() > 10);  // the rest trained on
  // Phase 1 trains only the embedding: with it frozen nothing would train, so the flags are refused.
  CHECK(run_status(cmd + " --steps 1 --freeze-embedding --embedding-only-steps 5 --out " + t.file("d") + " > " +
                   t.file("d.txt") + " 2>&1") == 2);
  CHECK(read_bytes(t.file("d.txt")).find("--freeze-embedding with --embedding-only-steps") != std::string::npos);
}

TEST_CASE("sal_train --device cuda: the same losses as the CPU run (skipped without a CUDA device)") {
  TempDir t("sal_dev_");
  const std::string cmd = train_command(make_cifar_shards(t, 64, 32), shipped_black_box()) + " --steps 3";
  if (!cuda_available()) {
    // Here the run must refuse, saying why, and write nothing.
    CHECK(run_status(cmd + " --device cuda --out " + t.file("g") + " > " + t.file("g.txt") + " 2>&1") == 1);
    CHECK(read_bytes(t.file("g.txt")).find("--device cuda: ") != std::string::npos);
    CHECK(!std::filesystem::exists(t.file("g/checkpoint.safetensors")));
    MESSAGE("skipped: sal_train --device cuda against --device cpu (no CUDA device)");
    return;
  }
  REQUIRE(run_status(cmd + " --device cpu --out " + t.file("cpu") + " > " + t.file("cpu.txt") + " 2>&1") == 0);
  // f32 convolutions (SAL_CONV_MATH=f32): the same arithmetic up to summation order, so the losses agree to
  // float rounding at step 1 (the forward of the initial masker). After Adam steps the run is chaotic at the
  // last bit: on the CPU alone, GEMM operands rounded 1 or 2 bits short of f32 (round_to_tf32 changed to drop
  // 1-2 mantissa bits, 2026-11-26) moved the step-3 destroyer by 1.1-1.5%, the total by 0.3-0.5% and the
  // parameters by up to 0.011 (BN running variance); the H200's f32 run: 1.0%, 0.3%, 0.010. Hence 3e-2 after
  // step 1. The default TF32 run is a different run after one step (step-2 preserver 0.13 off on the CPU with
  // TF32 emulation, step 3 destroyer 0.19: above 3e-2, so a TF32 leak into the f32 run still fails); only its
  // step 1 is compared, at TF32 rounding.
  REQUIRE(run_status("SAL_CONV_MATH=f32 " + cmd + " --device cuda --out " + t.file("gpu") + " > " + t.file("gpu.txt") +
                     " 2>&1") == 0);
  REQUIRE(run_status(cmd + " --device cuda --out " + t.file("tf32") + " > " + t.file("tf32.txt") + " 2>&1") == 0);
  // The training step is replayed from a CUDA graph by default; --eager runs the same kernels one by one:
  // the same run, log line for log line, when both processes pick the same convolution algorithms. The
  // default backend choice (auto) times the backends per process: on the H200 the two f32 logs differed,
  // and two TF32 sal_train processes (graph, --eager) differed already at step 1, which is eager in both,
  // so the choice, not the graph. Both runs here pin the custom kernels, as the one-rank NCCL test does.
  const std::string pinned = "SAL_CONV_BACKEND=custom SAL_CONV_MATH=f32 ";
  REQUIRE(run_status(pinned + cmd + " --device cuda --out " + t.file("graph") + " > " + t.file("graph.txt") +
                     " 2>&1") == 0);
  REQUIRE(run_status(pinned + cmd + " --device cuda --eager --out " + t.file("eager") + " > " + t.file("eager.txt") +
                     " 2>&1") == 0);
  CHECK(read_bytes(t.file("graph.txt")).find("training step: captured as a CUDA graph") != std::string::npos);
  CHECK(read_bytes(t.file("eager.txt")).find("training step: eager (--eager)") != std::string::npos);
  CHECK(log_lines(t.file("eager/log.jsonl")) == log_lines(t.file("graph/log.jsonl")));
  const std::vector<std::string> c = log_lines(t.file("cpu/log.jsonl")), g = log_lines(t.file("gpu/log.jsonl")),
                                  h = log_lines(t.file("tf32/log.jsonl"));
  REQUIRE(c.size() == 3);
  REQUIRE(g.size() == 3);
  REQUIRE(h.size() == 3);
  for (size_t i = 0; i < c.size(); ++i) {
    const double tol = i == 0 ? 1e-4 : 3e-2;
    for (const char* key : {"total", "area", "smoothness", "preserver", "destroyer", "selector", "mask_area_real"}) {
      INFO("step " << i + 1 << " " << key << ": cpu " << c[i] << " / cuda f32 " << g[i] << " / cuda tf32 " << h[i]);
      const double a = log_number(c[i], key), b = log_number(g[i], key);
      CHECK(std::abs(a - b) <= tol * std::max(1.0, std::abs(a)));
      if (i == 0) CHECK(std::abs(a - log_number(h[i], key)) <= 1e-2 * std::max(1.0, std::abs(a)));
    }
  }
  // The GPU's masker file loads on the CPU and matches the CPU run's parameters to the last-bit chaos above.
  auto mc = load_masker(t.file("cpu/masker.safetensors"), Device::CPU);
  auto mg = load_masker(t.file("gpu/masker.safetensors"), Device::CPU);
  double worst = 0;
  for (const std::string& name : mc->params().names()) {
    const std::vector<double> a = mc->params().value(name).values(), b = mg->params().value(name).values();
    for (size_t k = 0; k < a.size(); ++k) worst = std::max(worst, std::abs(a[k] - b[k]));
  }
  CHECK(worst < 3e-2);
}
