// engine/worker_thread.h: jobs run in order on one other thread, results and exceptions reach the
// futures, the OpenMP team size is the worker's own, and the destructor runs what was submitted.
#include <doctest/doctest.h>
#include <omp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "engine/worker_thread.h"

using namespace sal;

TEST_CASE("WorkerThread runs jobs in order on one other thread and hands back results and exceptions") {
  WorkerThread worker;
  std::vector<int> order;  // written by the worker only
  std::vector<std::future<std::thread::id>> ids;
  std::vector<std::future<int>> values;
  for (int i = 0; i < 20; ++i) {
    values.push_back(worker.submit([i, &order] {
      std::this_thread::sleep_for(std::chrono::microseconds((20 - i) * 50));  // later jobs are quicker
      order.push_back(i);
      return i * i;
    }));
    ids.push_back(worker.submit([] { return std::this_thread::get_id(); }));
  }
  for (int i = 0; i < 20; ++i) CHECK(values[static_cast<size_t>(i)].get() == i * i);
  const std::thread::id first = ids[0].get();
  CHECK(first != std::this_thread::get_id());
  for (size_t i = 1; i < ids.size(); ++i) CHECK(ids[i].get() == first);
  std::vector<int> expect(20);
  for (int i = 0; i < 20; ++i) expect[static_cast<size_t>(i)] = i;
  CHECK(order == expect);

  // A job's exception reaches get(); the worker goes on with the next job.
  std::future<int> bad = worker.submit([]() -> int { throw std::runtime_error("job failed: disk full"); });
  std::future<int> after = worker.submit([] { return 7; });
  CHECK_THROWS_WITH_AS(bad.get(), "job failed: disk full", std::runtime_error);
  CHECK(after.get() == 7);

  // Move-only results and captures.
  auto owned = std::make_unique<int>(41);
  std::future<std::unique_ptr<int>> moved = worker.submit([p = std::move(owned)]() mutable {
    ++*p;
    return std::move(p);
  });
  CHECK(*moved.get() == 42);
}

TEST_CASE("WorkerThread sets its own OpenMP team size and finishes submitted jobs on destruction") {
  const int caller_threads = omp_get_max_threads();
  std::atomic<int> ran{0};
  std::future<int> team;
  {
    WorkerThread worker(1);
    team = worker.submit([] {
      int n = 0;
#pragma omp parallel
      {
#pragma omp single
        n = omp_get_num_threads();
      }
      return n;
    });
    for (int i = 0; i < 50; ++i)
      worker.submit([&ran] {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        ++ran;
      });
  }  // joins after the 50 jobs
  CHECK(ran.load() == 50);
  CHECK(team.get() == 1);
  CHECK(omp_get_max_threads() == caller_threads);  // the caller's setting is untouched
}
