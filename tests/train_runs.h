// Running tools/sal_train (and sal_make_shards) from tests: a shell command's exit code, small shard
// sets made from ../shared data, the training command line and log.jsonl lines without timing fields.
#pragma once
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "temp_files.h"

namespace sal::test {

// The exit code of a shell command (-1 when it did not exit normally).
inline int run(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// 64 shuffled CIFAR-10 test images in two shards under t/shards.
inline std::string make_cifar_shards(const TempDir& t) {
  const std::string tar = std::string(SAL_SHARED_DIR) + "/data/cifar10/test.tar";
  REQUIRE_MESSAGE(std::filesystem::exists(tar), tar, " is missing (../shared/data/cifar10)");
  std::filesystem::create_directories(t.dir / "shards");
  REQUIRE(run(std::string(SAL_MAKE_SHARDS) + " --tar " + tar + " --out " + t.file("shards/c") +
              " --per-shard 32 --shuffle --seed 1 --limit 64 > " + t.file("shards.log") + " 2>&1") == 0);
  return t.file("shards");
}

// The CIFAR train command up to --steps/--out (batch 8, 32 px, one reader thread, seed 5).
inline std::string cifar_train_cmd(const std::string& shards) {
  return std::string("OMP_NUM_THREADS=1 ") + SAL_TRAIN + " --shards " + shards + " --black-box " + SAL_SOURCE_DIR +
         "/weights/cifar_resnet20.safetensors --preset cifar --batch 8 --image-size 32 --threads 1 --seed 5"
         " --log-every 1";
}

// log.jsonl lines with the timing fields (images_per_s, eta_s: the tail of each line) cut off.
inline std::vector<std::string> log_values(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(line.substr(0, line.find(",\"images_per_s\"")));
  return out;
}

// The number after "key": in a log line (NaN when absent).
inline double log_number(const std::string& line, const std::string& key) {
  const size_t at = line.find("\"" + key + "\":");
  if (at == std::string::npos) return std::nan("");
  return std::strtod(line.c_str() + at + key.size() + 3, nullptr);
}

}  // namespace sal::test
