// One OpenMP thread while in scope, for tests that run many tiny ops (finite-difference loops, small
// networks): oversubscribed 2-thread fork/joins slow them down badly when ctest runs tests in parallel.
#pragma once
#include <omp.h>

namespace sal::test {

struct OneThread {
  int saved = omp_get_max_threads();
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved); }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;
};

}  // namespace sal::test
