// engine/data_parallel.h and sal_train's data-parallel mode: the launch environment is read with
// errors naming the variable; a world of one is a no-op on the CPU; a larger world refuses to run
// without CUDA + NCCL, before any work. On a GPU: a world of one through NCCL (SAL_DIST_INIT_FILE set)
// trains exactly like the plain CUDA run (the all-reduce of one rank is the identity). Several ranks
// need several GPUs (NCCL refuses two ranks on one device): docs only here.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "engine/data_parallel.h"
#include "engine/ops.h"
#include "train_cli.h"

using namespace sal;
using namespace sal::test;

namespace {

// Sets environment variables for a scope and restores them.
struct ScopedEnv {
  std::vector<std::pair<std::string, std::string>> saved;
  std::vector<std::string> unset_after;
  void set(const std::string& k, const char* v) {
    if (const char* old = std::getenv(k.c_str())) saved.emplace_back(k, old);
    else unset_after.push_back(k);
    if (v) setenv(k.c_str(), v, 1);
    else unsetenv(k.c_str());
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved) setenv(k.c_str(), v.c_str(), 1);
    for (const std::string& k : unset_after) unsetenv(k.c_str());
  }
};

}  // namespace

TEST_CASE("DistEnv: torchrun-style variables, defaults, and errors naming the variable") {
  {
    ScopedEnv e;
    e.set("WORLD_SIZE", nullptr);
    e.set("RANK", nullptr);
    e.set("LOCAL_RANK", nullptr);
    e.set("SAL_DIST_INIT_FILE", nullptr);
    const DistEnv d = DistEnv::from_env();
    CHECK(d.world == 1);
    CHECK(d.rank == 0);
    CHECK(d.local_rank == 0);
    CHECK(d.leader());
  }
  {
    ScopedEnv e;
    e.set("WORLD_SIZE", "4");
    e.set("RANK", "3");
    e.set("LOCAL_RANK", nullptr);
    e.set("SAL_DIST_INIT_FILE", "/tmp/x.id");
    const DistEnv d = DistEnv::from_env();
    CHECK(d.world == 4);
    CHECK(d.rank == 3);
    CHECK(d.local_rank == 3);  // defaults to RANK
    CHECK_FALSE(d.leader());
    e.set("LOCAL_RANK", "1");
    CHECK(DistEnv::from_env().local_rank == 1);
    e.set("RANK", "4");
    CHECK_THROWS_WITH_AS(DistEnv::from_env(), doctest::Contains("RANK 4 is not below WORLD_SIZE 4"), Error);
    e.set("RANK", "two");
    CHECK_THROWS_WITH_AS(DistEnv::from_env(), doctest::Contains("RANK='two'"), Error);
    e.set("RANK", "1");
    e.set("SAL_DIST_INIT_FILE", nullptr);
    CHECK_THROWS_WITH_AS(DistEnv::from_env(), doctest::Contains("needs SAL_DIST_INIT_FILE"), Error);
  }
}

TEST_CASE("DataParallel: alone on the CPU every collective is a no-op, two ranks on the CPU are refused") {
  Ctx cpu;
  DistEnv one;
  DataParallel dp(one, cpu);
  CHECK_FALSE(dp.uses_nccl());
  Tensor t = Tensor::from_values({1, 2, 3}, Shape{3}, DType::F32);
  dp.average(t);
  dp.broadcast(t);
  CHECK(t.values() == std::vector<double>{1, 2, 3});
  CHECK(dp.any(true));
  CHECK_FALSE(dp.any(false));
  DistEnv two;
  two.world = 2;
  two.init_file = "/nonexistent/sal.id";
  CHECK_THROWS_WITH_AS(DataParallel(two, cpu), doctest::Contains("WORLD_SIZE 2 needs"), Error);
}

TEST_CASE("sal_train data parallel: bad launches fail before training, one rank through NCCL = the plain run (GPU)") {
  TempDir t("sal_dp_");
  const std::string shards = make_cifar_shards(t, 64, 32);
  const std::string cmd = train_command(shards, shipped_black_box()) + " --steps 3";
  // WORLD_SIZE 2 without the id file, and on the CPU: errors that say what is missing; nothing written.
  CHECK(run_status("WORLD_SIZE=2 RANK=0 " + cmd + " --out " + t.file("a") + " > " + t.file("a.txt") + " 2>&1") == 1);
  CHECK(read_bytes(t.file("a.txt")).find("SAL_DIST_INIT_FILE") != std::string::npos);
  CHECK(run_status("WORLD_SIZE=2 RANK=0 SAL_DIST_INIT_FILE=" + t.file("id") + " " + cmd + " --out " + t.file("b") +
                   " > " + t.file("b.txt") + " 2>&1") == 1);
  CHECK(read_bytes(t.file("b.txt")).find("WORLD_SIZE 2 needs") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(t.file("b/checkpoint.safetensors")));
  if (!cuda_available()) {
    MESSAGE("skipped: sal_train with one NCCL rank against the plain CUDA run (no CUDA device)");
    return;
  }
  // Bit-identical runs need one convolution backend: Auto picks per shape from timings, which may differ
  // between processes (cuda/conv_backend.h). Every other CUDA kernel is deterministic (no atomics).
  const std::string fixed = "SAL_CONV_BACKEND=custom ";
  REQUIRE(run_status(fixed + cmd + " --device cuda --out " + t.file("plain") + " > " + t.file("plain.txt") + " 2>&1") == 0);
  REQUIRE(run_status(fixed + cmd + " --device cuda --out " + t.file("again") + " > " + t.file("again.txt") + " 2>&1") == 0);
  CHECK(log_lines(t.file("again/log.jsonl")) == log_lines(t.file("plain/log.jsonl")));
  // The NCCL run, captured (the all-reduce a node of the step's graph, the default) and --eager: both the
  // plain run bit for bit (a mean over one rank is the value itself).
  REQUIRE(run_status(fixed + "WORLD_SIZE=1 SAL_DIST_INIT_FILE=" + t.file("one.id") + " " + cmd + " --device cuda --out " +
                     t.file("nccl") + " > " + t.file("nccl.txt") + " 2>&1") == 0);
  CHECK(read_bytes(t.file("nccl.txt")).find("with the NCCL all-reduce in it") != std::string::npos);
  CHECK(log_lines(t.file("nccl/log.jsonl")) == log_lines(t.file("plain/log.jsonl")));
  REQUIRE(run_status(fixed + "WORLD_SIZE=1 SAL_DIST_INIT_FILE=" + t.file("two.id") + " " + cmd +
                     " --device cuda --eager --out " + t.file("nccl_eager") + " > " + t.file("nccl_eager.txt") +
                     " 2>&1") == 0);
  CHECK(read_bytes(t.file("nccl_eager.txt")).find("NCCL") != std::string::npos);
  CHECK(log_lines(t.file("nccl_eager/log.jsonl")) == log_lines(t.file("plain/log.jsonl")));
}
