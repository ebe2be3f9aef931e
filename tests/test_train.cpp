// End-to-end tests of tools/sal_train on 64 CIFAR-10 test images packed by sal_make_shards: a run of 6
// steps logs exactly the same losses for steps 4-6 as a run of 3 steps resumed for 3 more (same seed, one
// reader thread), and so does a run with held-out evaluation; the NaN guard (--debug-nan-at-step) exits
// with code 3, names the step and leaves the last good checkpoint byte for byte as it was (and loadable),
// and a resume drops the log lines of steps after the checkpoint; SIGTERM saves a checkpoint after the
// current step and exits 0.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/safetensors.h"
#include "temp_files.h"
#include "train_cli.h"

using namespace sal;
using namespace sal::test;
namespace fs = std::filesystem;


TEST_CASE("sal_train: 3 steps + --resume 3 steps log exactly the losses of 6 straight steps") {
  TempDir t("sal_train_");
  const std::string shards = make_cifar_shards(t, 64, 32);
  const std::string cmd = train_command(shards, shipped_black_box());
  REQUIRE(run_status(cmd + " --steps 6 --out " + t.file("a") + " > " + t.file("a.txt") + " 2>&1") == 0);
  REQUIRE(run_status(cmd + " --steps 3 --out " + t.file("b") + " > " + t.file("b1.txt") + " 2>&1") == 0);
  REQUIRE(fs::exists(t.file("b/checkpoint.safetensors")));
  {
    SafeTensorsFile f(t.file("b/checkpoint.safetensors"));
    CHECK(f.metadata().at("step") == "3");
    CHECK(f.metadata().at("adam_steps") == "3");
    CHECK(f.contains("adam.m"));
    CHECK(f.contains("masker.embedding.weight"));
  }
  REQUIRE(run_status(cmd + " --steps 6 --resume --out " + t.file("b") + " > " + t.file("b2.txt") + " 2>&1") == 0);
  CHECK(read_bytes(t.file("b2.txt")).find("resumed from") != std::string::npos);
  const std::vector<std::string> a = log_lines(t.file("a/log.jsonl"));
  const std::vector<std::string> b = log_lines(t.file("b/log.jsonl"));
  REQUIRE(a.size() == 6);
  REQUIRE(b.size() == 6);
  for (size_t i = 0; i < 6; ++i) {
    INFO("step ", i + 1);
    CHECK(a[i].find("\"step\":" + std::to_string(i + 1) + ",") == 1);
    CHECK(b[i] == a[i]);
  }
  // Held-out evaluation every 2 steps changes nothing in training: the same losses, plus 3 eval lines.
  REQUIRE(run_status(cmd + " --steps 6 --eval-shards " + shards + " --eval-every 2 --eval-images 16 --out " + t.file("v") +
              " > " + t.file("v.txt") + " 2>&1") == 0);
  std::vector<std::string> v_train;
  int evals = 0;
  for (const std::string& line : log_lines(t.file("v/log.jsonl"))) {
    if (line.find("\"eval_images\":16") != std::string::npos) ++evals;
    else v_train.push_back(line);
  }
  CHECK(evals == 3);
  CHECK(v_train == a);
  // The final checkpoints hold the same parameters and moments.
  CHECK(read_bytes(t.file("a/checkpoint.safetensors")).size() == read_bytes(t.file("b/checkpoint.safetensors")).size());
  CHECK(differing_tensors(t.file("a/checkpoint.safetensors"), t.file("b/checkpoint.safetensors")).empty());
}

TEST_CASE("sal_train: a NaN loss stops with exit code 3, names the step and keeps the last good checkpoint") {
  TempDir t("sal_train_");
  const std::string shards = make_cifar_shards(t, 64, 32);
  const std::string cmd = train_command(shards, shipped_black_box()) + " --checkpoint-every 2 --out " + t.file("c");
  REQUIRE(run_status(cmd + " --steps 4 > " + t.file("c1.txt") + " 2>&1") == 0);
  const std::string good = read_bytes(t.file("c/checkpoint.safetensors"));
  REQUIRE(!good.empty());
  CHECK(run_status(cmd + " --steps 6 --resume --debug-nan-at-step 5 > " + t.file("c2.txt") + " 2>&1") == 3);
  const std::string msg = read_bytes(t.file("c2.txt"));
  INFO(msg);
  CHECK(msg.find("NaN at step 5") != std::string::npos);
  CHECK(read_bytes(t.file("c/checkpoint.safetensors")) == good);
  SafeTensorsFile f(t.file("c/checkpoint.safetensors"));
  CHECK(f.metadata().at("step") == "4");
  // And training resumes from it.
  CHECK(run_status(cmd + " --steps 6 --resume > " + t.file("c3.txt") + " 2>&1") == 0);
  CHECK(SafeTensorsFile(t.file("c/checkpoint.safetensors")).metadata().at("step") == "6");
  // A NaN before any checkpoint: exit 3, no checkpoint written.
  CHECK(run_status(train_command(shards, shipped_black_box()) + " --steps 6 --debug-nan-at-step 2 --out " + t.file("d") + " > " + t.file("d.txt") +
            " 2>&1") == 3);
  CHECK(!fs::exists(t.file("d/checkpoint.safetensors")));
  // Steps logged after the last checkpoint (5 here) are dropped from log.jsonl on resume: each step once.
  const std::string cmd2 = train_command(shards, shipped_black_box()) + " --steps 6 --checkpoint-every 2 --out " + t.file("g");
  CHECK(run_status(cmd2 + " --debug-nan-at-step 6 > " + t.file("g1.txt") + " 2>&1") == 3);
  CHECK(log_lines(t.file("g/log.jsonl")).size() == 5);
  REQUIRE(run_status(cmd2 + " --resume > " + t.file("g2.txt") + " 2>&1") == 0);
  const std::vector<std::string> g = log_lines(t.file("g/log.jsonl"));
  REQUIRE(g.size() == 6);
  for (size_t i = 0; i < 6; ++i) CHECK(g[i].find("\"step\":" + std::to_string(i + 1) + ",") == 1);
}

TEST_CASE("sal_train: SIGTERM saves a checkpoint after the current step and exits 0") {
  TempDir t("sal_train_");
  const std::string shards = make_cifar_shards(t, 64, 32);
  const std::string out = t.file("e");
  // Start a long run, wait for its first logged step, send SIGTERM, record the exit code.
  const std::string script = "(" + train_command(shards, shipped_black_box()) + " --steps 100000 --checkpoint-every 0 --out " + out + " > " +
                             t.file("e.txt") + " 2>&1 & p=$!; for i in $(seq 600); do [ -s " + out +
                             "/log.jsonl ] && break; sleep 0.05; done; kill -TERM $p; wait $p; echo $? > " +
                             t.file("rc.txt") + ")";
  REQUIRE(run_status("bash -c '" + script + "'") == 0);
  CHECK(read_bytes(t.file("rc.txt")) == "0\n");
  REQUIRE(fs::exists(out + "/checkpoint.safetensors"));
  SafeTensorsFile f(out + "/checkpoint.safetensors");
  const long long step = std::stoll(f.metadata().at("step"));
  CHECK(step >= 1);
  CHECK(step < 100000);
  CHECK(read_bytes(t.file("e.txt")).find("stopped by a signal") != std::string::npos);
}
