// engine/cpu/shm_comm.h, the CPU collectives of data-parallel training: exact results (the same bits on
// every rank, sums in rank order) across several chunks and both exchange buffers, broadcast from any
// root; and the failures that must not hang: a rank that exits, a rank that never comes, mismatched
// calls, a stale or foreign file, two processes with one RANK, different world sizes.
// Ranks are threads here (each with its own mapping of the file, as separate processes have); the
// dead-rank case forks a real process.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "engine/cpu/shm_comm.h"
#include "engine/error.h"
#include "temp_files.h"

using namespace sal;
using namespace sal::test;
using sal::cpu::ShmComm;

namespace {

// Runs body(rank) for every rank on its own thread; returns each rank's error message ("" when none).
std::vector<std::string> run_rank_threads(int world, const std::function<void(int)>& body) {
  std::vector<std::string> errors(static_cast<size_t>(world));
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        body(r);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  for (std::thread& t : threads) t.join();
  return errors;
}

std::vector<float> rank_values(int rank, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 0.1f * static_cast<float>(i) + 1.37f * static_cast<float>(rank * rank) - 2.0f;
  return v;
}

}  // namespace

TEST_CASE("ShmComm: average, max and broadcast over 3 ranks, several chunks, the same bits on every rank") {
  TempDir t("sal_shm_");
  const std::string path = t.file("group");
  const int world = 3;
  const size_t n = 23;  // chunks of 5: four full, one of 3 (both buffers used, twice)
  std::vector<std::vector<float>> avg(world), mx(world), bc(world), empty(world);
  const auto errors = run_rank_threads(world, [&](int r) {
    ShmComm c(world, r, path, 10.0, 5);
    CHECK(c.world() == world);
    avg[r] = rank_values(r, n);
    c.all_reduce_avg(avg[r].data(), n);
    mx[r] = rank_values(r, n);
    for (size_t i = 0; i < n; i += 4) mx[r][i] = (static_cast<int>(i) % world == r) ? 100.0f + static_cast<float>(i) : -1.0f;
    c.all_reduce_max(mx[r].data(), n);
    bc[r] = rank_values(r, n);
    c.broadcast(bc[r].data(), n, 1);
    c.all_reduce_avg(empty[r].data(), 0);  // nothing to move, still a matched call
  });
  for (const std::string& e : errors) CHECK(e.empty());
  for (size_t i = 0; i < n; ++i) {
    INFO("element ", i);
    // The sum in rank order, then the division: what every rank must hold, bit for bit.
    const float want = (rank_values(0, n)[i] + rank_values(1, n)[i] + rank_values(2, n)[i]) / 3.0f;
    for (int r = 0; r < world; ++r) {
      CHECK(avg[r][i] == want);
      CHECK(bc[r][i] == rank_values(1, n)[i]);
      if (i % 4 == 0) CHECK(mx[r][i] == 100.0f + static_cast<float>(i));
      else CHECK(mx[r][i] == rank_values(2, n)[i]);  // rank 2's values are the largest
    }
  }
  // Rank 0 removed the file when the group ended.
  CHECK_FALSE(std::filesystem::exists(path));
}

TEST_CASE("ShmComm: a world of one is the identity") {
  TempDir t("sal_shm_");
  ShmComm c(1, 0, t.file("one"), 1.0);
  std::vector<float> v = rank_values(0, 7), want = v;
  c.all_reduce_avg(v.data(), v.size());
  c.all_reduce_max(v.data(), v.size());
  c.broadcast(v.data(), v.size(), 0);
  CHECK(v == want);
}

TEST_CASE("ShmComm: mismatched calls are an error on every rank, naming both calls") {
  TempDir t("sal_shm_");
  const std::string path = t.file("group");
  const auto errors = run_rank_threads(2, [&](int r) {
    ShmComm c(2, r, path, 10.0, 4);
    std::vector<float> v(9, 1.0f);
    if (r == 0) c.all_reduce_avg(v.data(), 9);
    else c.broadcast(v.data(), 8, 0);
  });
  for (const std::string& e : errors) {
    CHECK(e.find("the ranks' collectives differ") != std::string::npos);
    CHECK(e.find("all_reduce_avg of 9 floats") != std::string::npos);
    CHECK(e.find("broadcast of 8 floats") != std::string::npos);
  }
}

TEST_CASE("ShmComm: a rank that never comes is a timeout naming it, not a hang") {
  TempDir t("sal_shm_");
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH_AS(ShmComm(3, 0, t.file("group"), 0.3), doctest::Contains("only 1 of 3 ranks joined"), Error);
  CHECK_THROWS_WITH_AS(ShmComm(3, 0, t.file("group"), 0.3), doctest::Contains("(missing: rank 1, 2;"), Error);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  // Rank 0 gave up and removed its file: nothing is left for a late rank to join.
  CHECK(std::filesystem::is_empty(t.dir));
  // Rank 1 waiting for a rank 0 that never makes the file.
  CHECK_THROWS_WITH_AS(ShmComm(2, 1, t.file("nobody"), 0.3), doctest::Contains("for rank 0 to make"), Error);
}

TEST_CASE("ShmComm: a rank whose process exits stops the others' wait with an error naming it") {
  TempDir t("sal_shm_");
  const std::string path = t.file("group");
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // rank 1: joins, then exits before the first collective
    try {
      ShmComm c(2, 1, path, 10.0);
    } catch (...) {
      ::_exit(2);
    }
    ::_exit(0);
  }
  std::string error;
  try {
    ShmComm c(2, 0, path, 10.0);
    std::vector<float> v(3, 1.0f);
    c.all_reduce_avg(v.data(), v.size());
  } catch (const Error& e) {
    error = e.what();
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The child may be gone before or after rank 0 saw it join: either wait ends with its pid named.
  CHECK(error.find("rank 1 (pid " + std::to_string(child) + ") exited") != std::string::npos);
}

TEST_CASE("ShmComm: a stale or foreign file at the path is waited past until rank 0 replaces it") {
  TempDir t("sal_shm_");
  const std::string path = t.file("group");
  write_bytes(path, std::string(1 << 16, 'x'));
  CHECK_THROWS_WITH_AS(ShmComm(2, 1, path, 0.3), doctest::Contains("not a shared-memory file of this engine"), Error);
  write_bytes(path, std::string(128, 'x'));  // e.g. an NCCL id file of a CUDA run
  CHECK_THROWS_WITH_AS(ShmComm(2, 1, path, 0.3), doctest::Contains("too short for a shared-memory file"), Error);
  // Rank 1 starts first and finds the foreign file; rank 0 comes later and replaces it.
  std::vector<float> got;
  const auto errors = run_rank_threads(2, [&](int r) {
    if (r == 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ShmComm c(2, r, path, 10.0);
    std::vector<float> v = rank_values(r, 4);
    c.broadcast(v.data(), v.size(), 0);
    if (r == 1) got = v;
  });
  for (const std::string& e : errors) CHECK(e.empty());
  CHECK(got == rank_values(0, 4));
}

TEST_CASE("ShmComm: two processes with one RANK, or different WORLD_SIZEs, are refused") {
  TempDir t("sal_shm_");
  {
    // Rank 0 and two rank 1s: one of them joins, the other is refused; the group of two still works.
    std::atomic<bool> one_refused{false};
    const auto errors = run_rank_threads(3, [&](int r) {
      try {
        ShmComm c(2, r == 0 ? 0 : 1, t.file("dup"), 10.0);
        // The group stays until the other rank 1 has been refused (it must find the file, not its removal).
        for (int i = 0; i < 1000 && !one_refused; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        std::vector<float> v(2, 1.0f);
        c.all_reduce_avg(v.data(), v.size());
      } catch (...) {
        one_refused = true;
        throw;
      }
    });
    CHECK(errors[0].empty());
    const std::string& refused = errors[1].empty() ? errors[2] : errors[1];
    CHECK((errors[1].empty() != errors[2].empty()));
    INFO(refused);
    CHECK(refused.find("RANK 1 has already joined") != std::string::npos);
  }
  {
    const auto errors = run_rank_threads(2, [&](int r) { ShmComm c(r == 0 ? 2 : 3, r, t.file("worlds"), 1.0); });
    CHECK(errors[1].find("started a world of 2 ranks, this rank's WORLD_SIZE is 3") != std::string::npos);
    CHECK(errors[0].find("only 1 of 2 ranks joined") != std::string::npos);
  }
  CHECK_THROWS_WITH_AS(ShmComm(2, 2, t.file("x"), 1.0), doctest::Contains("RANK 2 is not below WORLD_SIZE 2"), Error);
}
