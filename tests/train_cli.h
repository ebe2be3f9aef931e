// Helpers for the tests that run tools/sal_train end to end (tests/test_train*.cpp): shell commands,
// CIFAR-10 shards made by tools/sal_make_shards, the train command line, log lines without timings.
#pragma once
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/safetensors.h"
#include "temp_files.h"

namespace sal::test {

// The exit code of a shell command; 128 + N when it (or the command it ran) died of signal N.
inline int run_status(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  if (WIFEXITED(rc)) return WEXITSTATUS(rc);
  return WIFSIGNALED(rc) ? 128 + WTERMSIG(rc) : -1;
}

// `count` shuffled CIFAR-10 test images (seed 1) in shards of `per_shard` under t/<folder>.
inline std::string make_cifar_shards(const TempDir& t, int count, int per_shard, const std::string& folder = "shards") {
  const std::string tar = std::string(SAL_SHARED_DIR) + "/data/cifar10/test.tar";
  REQUIRE_MESSAGE(std::filesystem::exists(tar), tar, " is missing (../shared/data/cifar10)");
  std::filesystem::create_directories(t.dir / folder);
  REQUIRE(run_status(std::string(SAL_MAKE_SHARDS) + " --tar " + tar + " --out " + t.file(folder + "/c") +
                     " --per-shard " + std::to_string(per_shard) + " --shuffle --seed 1 --limit " +
                     std::to_string(count) + " > " + t.file(folder + ".log") + " 2>&1") == 0);
  return t.file(folder);
}

// The train command up to --steps/--out (batch 8, 32 px, one reader thread, seed 5, a log line every step),
// with `env` (e.g. "SAL_FAULT_WRITE=...") in front.
inline std::string train_command(const std::string& shards, const std::string& black_box, const std::string& env = "") {
  return env + " OMP_NUM_THREADS=1 " + SAL_TRAIN + " --shards " + shards + " --black-box " + black_box +
         " --preset cifar --batch 8 --image-size 32 --threads 1 --seed 5 --log-every 1";
}

inline std::string shipped_black_box() { return std::string(SAL_SOURCE_DIR) + "/weights/cifar_resnet20.safetensors"; }

// log.jsonl lines with the timing fields (images_per_s, eta_s: the tail of each line) cut off.
inline std::vector<std::string> log_lines(const std::string& path) {
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

// The tensors (parameters, Adam moments) whose bytes differ between two checkpoint files, or that
// only one of them has.
inline std::vector<std::string> differing_tensors(const std::string& a_path, const std::string& b_path) {
  SafeTensorsFile a(a_path), b(b_path);
  std::vector<std::string> out;
  for (const std::string& name : a.names()) {
    if (!b.contains(name)) {
      out.push_back(name);
      continue;
    }
    const auto ra = a.raw_bytes(name), rb = b.raw_bytes(name);
    if (ra.size() != rb.size() || !std::equal(ra.begin(), ra.end(), rb.begin())) out.push_back(name);
  }
  for (const std::string& name : b.names())
    if (!a.contains(name)) out.push_back(name);
  return out;
}

}  // namespace sal::test
