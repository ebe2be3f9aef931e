#include "engine/worker_thread.h"

#include <omp.h>

namespace sal {

WorkerThread::WorkerThread(int omp_threads) : thread_([this, omp_threads] { loop(omp_threads); }) {}

WorkerThread::~WorkerThread() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void WorkerThread::push(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void WorkerThread::loop(int omp_threads) {
  if (omp_threads > 0) omp_set_num_threads(omp_threads);
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, and every submitted job has run
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();  // a packaged_task: its exception goes to the future
  }
}

}  // namespace sal
