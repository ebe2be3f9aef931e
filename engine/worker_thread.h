// One background thread that runs jobs in the order they are submitted. Tools use it to overlap host
// work (decoding the next batch's images, writing the last batch's PNGs) with device work on the
// calling thread. submit() returns the job's future; an exception a job throws reaches whoever calls
// get(). The destructor runs the jobs already submitted, then joins.
//
// The thread lives as long as the object, so OpenMP parallel regions inside its jobs reuse one thread
// team (a thread per job, as std::async gives, would start a team per job). omp_threads > 0 sets the
// size of that team (omp_set_num_threads on the worker), so that two workers beside a busy caller do
// not each take every core.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>

namespace sal {

class WorkerThread {
 public:
  explicit WorkerThread(int omp_threads = 0);
  ~WorkerThread();
  WorkerThread(const WorkerThread&) = delete;
  WorkerThread& operator=(const WorkerThread&) = delete;

  template <class F>
  std::future<std::invoke_result_t<F&>> submit(F job) {
    // std::function needs a copyable callable; the task (which may own move-only captures) is shared.
    auto task = std::make_shared<std::packaged_task<std::invoke_result_t<F&>()>>(std::move(job));
    std::future<std::invoke_result_t<F&>> result = task->get_future();
    push([task] { (*task)(); });
    return result;
  }

 private:
  void push(std::function<void()> job);
  void loop(int omp_threads);

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::thread thread_;  // last: started once the members above exist
};

}  // namespace sal
