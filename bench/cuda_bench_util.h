// Helpers shared by the CUDA memory-bound benchmarks (memory_bound_cuda_bench.cpp,
// memory_bound_norm_cuda_bench.cpp): random inputs, the GPU-vs-CPU comparison, the card's peak
// HBM bandwidth and CUDA-event timing of one enqueued call.
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/tensor.h"
#ifdef SAL_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace sal::bench {

// A host f32 tensor of uniform values in [lo, hi) from a seeded mt19937_64.
inline Tensor random_tensor(const Shape& s, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  Tensor t = Tensor::empty(s);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(rng);
  return t;
}

// max |got - want| / (1 + |want|) over the elements; infinity on a NaN or a shape mismatch.
inline double max_rel(const Tensor& got, const Tensor& want) {
  if (got.shape() != want.shape()) return INFINITY;
  const std::vector<double> a = got.values(), b = want.values();
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = std::abs(a[i] - b[i]) / (1 + std::abs(b[i]));
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  return worst;
}

#ifdef SAL_WITH_CUDA

// Peak HBM bandwidth of device `dev` in bytes/s: 2 * memory clock * bus width / 8 (double data
// rate), read with cudaDeviceGetAttribute (the cudaDeviceProp fields are deprecated); 0 when the
// attributes cannot be read.
inline double peak_hbm_bytes_per_s(int dev) {
  int clock_khz = 0, bus_bits = 0;
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev) != cudaSuccess) {
    cudaGetLastError();
    return 0.0;
  }
  return 2.0 * clock_khz * 1e3 * bus_bits / 8.0;
}

// A pair of CUDA events that time one call at a time on a stream.
class EventTimer {
 public:
  EventTimer() {
    cudaEventCreate(&start_);
    cudaEventCreate(&stop_);
  }
  ~EventTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  // Records the events around run() (which enqueues work on `stream`), waits for the second and
  // returns the elapsed time in seconds.
  template <class Run>
  double seconds(cudaStream_t stream, Run&& run) {
    cudaEventRecord(start_, stream);
    run();
    cudaEventRecord(stop_, stream);
    cudaEventSynchronize(stop_);
    float ms = 0;
    cudaEventElapsedTime(&ms, start_, stop_);
    return ms * 1e-3;
  }

 private:
  cudaEvent_t start_{}, stop_{};
};

#endif  // SAL_WITH_CUDA

}  // namespace sal::bench
