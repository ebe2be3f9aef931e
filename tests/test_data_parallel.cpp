// engine/data_parallel.h and sal_train's data-parallel mode: the launch environment is read with
// errors naming the variable; a world of one without an init file is a no-op. On the CPU several ranks
// run as processes of one node (collectives in shared memory, engine/cpu/shm_comm.h): two ranks given
// the same data and seeds train bit for bit like one process (so broadcast and averaging are exact);
// on different data step 1 matches the single process and step 2 does not (the gradients were
// averaged), rank 1's state resumes exactly, SIGTERM to one rank stops both after the same step, and
// a missing rank, a NaN on one rank or ranks whose parameters drift apart stop every rank with an error.
// scripts/launch-ranks.sh sets each rank's variables, ends a run whose rank failed, passes signals on.
// On a GPU: a world of one through NCCL (SAL_DIST_INIT_FILE set) trains exactly like the plain CUDA
// run. Several NCCL ranks need several GPUs (NCCL refuses two ranks on one device): docs only here.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/data_parallel.h"
#include "engine/ops.h"
#include "train_cli.h"

using namespace sal;
using namespace sal::test;

namespace {

// Runs one sal_train command per rank as processes of one data-parallel run (WORLD_SIZE = cmds.size(),
// the collectives in shared memory through t/<name>.group), each rank's output in t/<name>.<rank>.txt;
// returns each rank's exit code.
std::vector<int> run_ranks(const TempDir& t, const std::string& name, const std::vector<std::string>& cmds) {
  std::string shell;
  for (size_t r = 0; r < cmds.size(); ++r) {
    const std::string out = t.file(name + "." + std::to_string(r));
    shell += "(WORLD_SIZE=" + std::to_string(cmds.size()) + " RANK=" + std::to_string(r) +
             " SAL_DIST_INIT_TIMEOUT_S=120 SAL_DIST_INIT_FILE=" + t.file(name + ".group") + " " + cmds[r] + " > " +
             out + ".txt 2>&1; echo $? > " + out + ".rc) & ";
  }
  REQUIRE(run_status(shell + "wait") == 0);
  std::vector<int> rc;
  for (size_t r = 0; r < cmds.size(); ++r) rc.push_back(std::stoi(read_bytes(t.file(name + "." + std::to_string(r) + ".rc"))));
  return rc;
}

std::string output_of(const TempDir& t, const std::string& name, int rank) {
  return read_bytes(t.file(name + "." + std::to_string(rank) + ".txt"));
}

// Copies of some of the shards in `from` into t/<folder> (for a single process that reads one rank's shards).
std::string copy_shards(const TempDir& t, const std::string& from, const std::vector<std::string>& names,
                        const std::string& folder) {
  std::filesystem::create_directories(t.dir / folder);
  for (const std::string& n : names) std::filesystem::copy_file(from + "/" + n, t.file(folder + "/" + n));
  return t.file(folder);
}

std::string with_seed(std::string cmd, int seed) {
  const size_t at = cmd.find(" --seed 5 ");
  REQUIRE(at != std::string::npos);
  return cmd.replace(at, 10, " --seed " + std::to_string(seed) + " ");
}

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

TEST_CASE("DataParallel: alone on the CPU every collective is a no-op") {
  Ctx cpu;
  DistEnv one;
  DataParallel dp(one, cpu);
  CHECK_FALSE(dp.active());
  Tensor t = Tensor::from_values({1, 2, 3}, Shape{3}, DType::F32);
  dp.average(t);
  dp.broadcast(t);
  CHECK(t.values() == std::vector<double>{1, 2, 3});
  CHECK(dp.any(true));
  CHECK_FALSE(dp.any(false));
  CHECK(dp.in_sync(t));
  DistEnv two;
  two.world = 2;
  two.init_file = "/nonexistent/sal.id";
  CHECK_THROWS_WITH_AS(DataParallel(two, cpu), doctest::Contains("cannot create /nonexistent/sal.id"), Error);
}

TEST_CASE("DataParallel: two CPU ranks average, broadcast, agree on any() and detect parameters out of sync") {
  TempDir t("sal_dp_");
  std::vector<std::vector<double>> avg(2), bc(2);
  std::vector<std::vector<int>> decisions(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.emplace_back([&, r] {
      try {
        DistEnv env;
        env.world = 2;
        env.rank = r;
        env.init_file = t.file("group");
        Ctx cpu;
        DataParallel dp(env, cpu);
        CHECK(dp.active());
        CHECK(dp.describe().find("shared memory") != std::string::npos);
        Tensor g = Tensor::from_values({1.0 + r, -2.0 * r, 0.5}, Shape{3}, DType::F32);
        dp.average(g);
        avg[r] = g.values();
        Tensor p = Tensor::from_values({10.0 * (r + 1), 3.0}, Shape{2}, DType::F32);
        dp.broadcast(p);
        bc[r] = p.values();
        decisions[r].push_back(dp.any(r == 1));
        decisions[r].push_back(dp.any(false));
        decisions[r].push_back(dp.in_sync(p));  // the same after the broadcast
        Tensor q = Tensor::from_values({1.0, r == 1 ? 2.5 : 2.0}, Shape{2}, DType::F64);
        decisions[r].push_back(dp.in_sync(q));  // one element differs on rank 1: false on both ranks
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (std::thread& th : ranks) th.join();
  for (int r = 0; r < 2; ++r) {
    CHECK(errors[r].empty());
    CHECK(avg[r] == std::vector<double>{1.5, -1.0, 0.5});
    CHECK(bc[r] == std::vector<double>{10.0, 3.0});
    CHECK(decisions[r] == std::vector<int>{1, 0, 1, 0});
  }
}

TEST_CASE("sal_train data parallel: bad launches fail before training, one rank through NCCL = the plain run (GPU)") {
  TempDir t("sal_dp_");
  const std::string shards = make_cifar_shards(t, 64, 32);
  const std::string cmd = train_command(shards, shipped_black_box()) + " --steps 3";
  // WORLD_SIZE 2 without the id file, and on the CPU: errors that say what is missing; nothing written.
  CHECK(run_status("WORLD_SIZE=2 RANK=0 " + cmd + " --out " + t.file("a") + " > " + t.file("a.txt") + " 2>&1") == 1);
  CHECK(read_bytes(t.file("a.txt")).find("SAL_DIST_INIT_FILE") != std::string::npos);
  // Rank 0 alone: rank 1 never comes, so it gives up after SAL_DIST_INIT_TIMEOUT_S, before training.
  CHECK(run_status("WORLD_SIZE=2 RANK=0 SAL_DIST_INIT_TIMEOUT_S=1 SAL_DIST_INIT_FILE=" + t.file("id") + " " + cmd +
                   " --out " + t.file("b") + " > " + t.file("b.txt") + " 2>&1") == 1);
  CHECK(read_bytes(t.file("b.txt")).find("only 1 of 2 ranks joined") != std::string::npos);
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

TEST_CASE("sal_train on two CPU ranks: same data and seeds = one process bit for bit (exact broadcast and average)") {
  TempDir t("sal_dp_");
  const std::string shards = make_cifar_shards(t, 32, 32);  // one shard: c-000000.tar
  // Rank 0 reads shard a, rank 1 shard b: both the same file as the single process's.
  const std::string twin = t.file("twin");
  std::filesystem::create_directories(twin);
  std::filesystem::copy_file(shards + "/c-000000.tar", twin + "/a.tar");
  std::filesystem::copy_file(shards + "/c-000000.tar", twin + "/b.tar");
  const std::string bb = shipped_black_box();
  REQUIRE(run_status(with_seed(train_command(shards, bb), 10000) + " --steps 3 --out " + t.file("solo") + " > " +
                     t.file("solo.txt") + " 2>&1") == 0);
  // Rank R's seeds are --seed + 7919 R: rank 1 started at 10000 - 7919 draws what rank 0 draws. Its
  // masker is initialised from seed 2081, so only the broadcast gives it rank 0's parameters.
  const std::string run = " --steps 3 --out " + t.file("dp");
  const std::vector<int> rc =
      run_ranks(t, "same", {with_seed(train_command(twin, bb), 10000) + run, with_seed(train_command(twin, bb), 2081) + run});
  REQUIRE_MESSAGE((rc == std::vector<int>{0, 0}), output_of(t, "same", 0), output_of(t, "same", 1));
  CHECK(output_of(t, "same", 0).find("data parallel: rank 0 of 2 on the CPU, collectives: shared memory") !=
        std::string::npos);
  // (g + g) / 2 == g exactly in floating point: the same losses and the same parameters and moments.
  CHECK(log_lines(t.file("dp/log.jsonl")) == log_lines(t.file("solo/log.jsonl")));
  CHECK(differing_tensors(t.file("dp/checkpoint.safetensors"), t.file("solo/checkpoint.safetensors")).empty());
  CHECK(std::filesystem::exists(t.file("dp/rank-1.state")));
  CHECK_FALSE(std::filesystem::exists(t.file("same.group")));  // rank 0 removed the shared-memory file
}

TEST_CASE("sal_train on two CPU ranks: the gradient is averaged, rank 1 resumes exactly, a bad rank stops both") {
  TempDir t("sal_dp_");
  const std::string shards = make_cifar_shards(t, 64, 16);  // c-000000 .. c-000003: rank 0 reads 0 and 2
  const std::string bb = shipped_black_box();
  const std::string cmd = train_command(shards, bb);
  const auto both = [&](const std::string& extra) { return std::vector<std::string>{cmd + extra, cmd + extra}; };
  REQUIRE((run_ranks(t, "a", both(" --steps 4 --checkpoint-every 2 --out " + t.file("a"))) == std::vector<int>{0, 0}));
  const std::vector<std::string> a = log_lines(t.file("a/log.jsonl"));
  REQUIRE(a.size() == 4);
  // One process on rank 0's shards: step 1 (losses before any update) is the same; from step 2 on the
  // parameters differ, because the two-rank run stepped with the mean of both ranks' gradients.
  const std::string mine = copy_shards(t, shards, {"c-000000.tar", "c-000002.tar"}, "rank0");
  REQUIRE(run_status(train_command(mine, bb) + " --steps 2 --out " + t.file("solo") + " > " + t.file("solo.txt") +
                     " 2>&1") == 0);
  const std::vector<std::string> solo = log_lines(t.file("solo/log.jsonl"));
  REQUIRE(solo.size() == 2);
  CHECK(solo[0] == a[0]);
  CHECK(log_number(solo[1], "total") != log_number(a[1], "total"));
  // Stopped after step 2 and resumed: every rank continues from its own reader and random state.
  REQUIRE((run_ranks(t, "b", both(" --steps 2 --out " + t.file("b"))) == std::vector<int>{0, 0}));
  REQUIRE((run_ranks(t, "b2", both(" --steps 4 --resume --out " + t.file("b"))) == std::vector<int>{0, 0}));
  CHECK(output_of(t, "b2", 1).find("resumed from") != std::string::npos);
  CHECK(log_lines(t.file("b/log.jsonl")) == a);
  CHECK(differing_tensors(t.file("b/checkpoint.safetensors"), t.file("a/checkpoint.safetensors")).empty());
  // Two ranks resuming a single process's run: rank 1 has no rank state and says so; rank 0 stops at
  // its first collective (rank 1 gone) instead of waiting for it.
  REQUIRE((run_ranks(t, "r", both(" --steps 4 --resume --out " + t.file("solo"))) == std::vector<int>{1, 1}));
  CHECK(output_of(t, "r", 1).find("rank 1 has no") != std::string::npos);
  CHECK(output_of(t, "r", 0).find("rank 1 (pid") != std::string::npos);
  // A NaN on rank 1 stops both ranks before the Adam step (exit 3), rank 0 saying it came from another rank.
  std::vector<std::string> nan = both(" --steps 4 --out " + t.file("n"));
  nan[1] += " --debug-nan-at-step 2";
  CHECK((run_ranks(t, "n", nan) == std::vector<int>{3, 3}));
  CHECK(output_of(t, "n", 0).find("finite here, not finite on another rank") != std::string::npos);
  // Ranks started with different options drift apart: the check at the checkpoint stops both, and no
  // checkpoint of either rank's parameters is written.
  std::vector<std::string> drift = both(" --steps 2 --out " + t.file("d"));
  drift[1] += " --lr 0.002";
  CHECK((run_ranks(t, "d", drift) == std::vector<int>{1, 1}));
  CHECK(output_of(t, "d", 0).find("the ranks' parameters differ after step 2") != std::string::npos);
  CHECK(output_of(t, "d", 1).find("the ranks' parameters differ after step 2") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(t.file("d/checkpoint.safetensors")));
}

TEST_CASE("sal_train on two CPU ranks: SIGTERM to one rank stops both after the same step, each saving its state") {
  TempDir t("sal_dp_");
  const std::string shards = make_cifar_shards(t, 64, 16);
  const std::string out = t.file("s");
  const std::string cmd = train_command(shards, shipped_black_box()) + " --steps 100000 --checkpoint-every 0 --out " + out;
  // Both ranks in the background; once rank 0 has logged a step, SIGTERM goes to rank 1 alone.
  std::string script = "(";
  for (int r = 0; r < 2; ++r)
    script += "WORLD_SIZE=2 RANK=" + std::to_string(r) + " SAL_DIST_INIT_TIMEOUT_S=120 SAL_DIST_INIT_FILE=" +
              t.file("group") + " " + cmd + " > " + t.file("s." + std::to_string(r) + ".txt") + " 2>&1 & p" +
              std::to_string(r) + "=$!; ";
  script += "for i in $(seq 600); do [ -s " + out + "/log.jsonl ] && break; sleep 0.05; done; kill -TERM $p1; wait $p0; echo $? > " +
            t.file("rc0") + "; wait $p1; echo $? > " + t.file("rc1") + ")";
  REQUIRE(run_status("bash -c '" + script + "'") == 0);
  CHECK(read_bytes(t.file("rc0")) == "0\n");
  CHECK(read_bytes(t.file("rc1")) == "0\n");
  CHECK(read_bytes(t.file("s.0.txt")).find("stopped by a signal") != std::string::npos);
  CHECK(read_bytes(t.file("s.1.txt")).find("stopped by a signal") != std::string::npos);
  REQUIRE(std::filesystem::exists(out + "/checkpoint.safetensors"));
  const std::string step = SafeTensorsFile(out + "/checkpoint.safetensors").metadata().at("step");
  CHECK(std::stoll(step) >= 1);
  CHECK(read_bytes(out + "/rank-1.state").rfind("step " + step + "\n", 0) == 0);
}

TEST_CASE("scripts/launch-ranks.sh: each rank's variables, a failed rank ends the run, a signal reaches every rank") {
  TempDir t("sal_dp_");
  const std::string launch = std::string(SAL_SOURCE_DIR) + "/scripts/launch-ranks.sh";
  // The variables (node 1 of 2, two ranks here: ranks 2 and 3 of 4), one log per rank.
  CHECK(run_status(launch + " --nproc 2 --nnodes 2 --node-rank 1 --init-file " + t.file("id") + " --log-dir " +
                   t.file("env") + " -- bash -c 'echo $WORLD_SIZE $RANK $LOCAL_RANK $SAL_DIST_INIT_FILE' 2> " +
                   t.file("env.txt")) == 0);
  CHECK(read_bytes(t.file("env/rank-2.log")) == "4 2 0 " + t.file("id") + "\n");
  CHECK(read_bytes(t.file("env/rank-3.log")) == "4 3 1 " + t.file("id") + "\n");
  CHECK(run_status(launch + " --nproc 2 --nnodes 2 -- true 2> " + t.file("bad.txt")) == 2);
  CHECK(read_bytes(t.file("bad.txt")).find("needs --init-file") != std::string::npos);
  // Rank 1 fails, rank 0 would wait a minute (as an NCCL rank may wait forever): the run ends with
  // rank 1's exit code after the grace second.
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(run_status(launch + " --nproc 2 --grace 1 -- bash -c '[ $RANK = 1 ] && exit 7; exec sleep 60' 2> " +
                   t.file("fail.txt")) == 7);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30));
  CHECK(read_bytes(t.file("fail.txt")).find("rank 1 exited with 7") != std::string::npos);
  // sal_train through it; SIGTERM to the launcher stops both ranks after one step, each saving its state.
  const std::string shards = make_cifar_shards(t, 64, 16);
  const std::string out = t.file("s");
  const std::string cmd = launch + " --nproc 2 --log-dir " + t.file("logs") + " -- env" +
                          train_command(shards, shipped_black_box()) + " --steps 100000 --checkpoint-every 0 --out " + out;
  const std::string script = "(" + cmd + " 2> " + t.file("s.txt") + " & p=$!; for i in $(seq 600); do [ -s " + out +
                             "/log.jsonl ] && break; sleep 0.05; done; kill -TERM $p; wait $p; echo $? > " +
                             t.file("rc") + ")";
  REQUIRE(run_status("bash -c '" + script + "'") == 0);
  CHECK(read_bytes(t.file("rc")) == "0\n");
  CHECK(read_bytes(t.file("s.txt")).find("passing SIGTERM to every rank") != std::string::npos);
  CHECK(read_bytes(t.file("logs/rank-0.log")).find("stopped by a signal") != std::string::npos);
  CHECK(read_bytes(t.file("logs/rank-1.log")).find("stopped by a signal") != std::string::npos);
  CHECK(std::filesystem::exists(out + "/checkpoint.safetensors"));
  CHECK(std::filesystem::exists(out + "/rank-1.state"));
}
