// Normal random numbers on CUDA: one thread per Philox block of 4 outputs (engine/philox.h), a
// grid-stride loop, stores of 4 consecutive floats. No state: a captured graph (engine/step_graph.h)
// replays the same numbers unless the seed is read from device memory (seed_words), which the
// caller refills between replays.
#include "cuda/launch.cuh"
#include "cuda/random.h"
#include "engine/philox.h"

namespace sal::cuda {

namespace {

// -> y: [n] f32
__global__ void normal_kernel(uint64_t seed, const int32_t* __restrict__ seed_words, float* __restrict__ y,
                              int64_t n) {
  if (seed_words)
    seed = static_cast<uint64_t>(static_cast<uint32_t>(seed_words[0])) |
           (static_cast<uint64_t>(static_cast<uint32_t>(seed_words[1])) << 32);
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; b < blocks;
       b += int64_t{gridDim.x} * blockDim.x) {
    const philox::U32x4 r = philox::block_of(seed, static_cast<uint64_t>(b));
    float z[4];
    philox::box_muller<float>(r.v[0], r.v[1], z[0], z[1]);
    philox::box_muller<float>(r.v[2], r.v[3], z[2], z[3]);
    const int64_t i = b * 4;
    if (i + 3 < n && (reinterpret_cast<uintptr_t>(y + i) & 15) == 0) {
      *reinterpret_cast<float4*>(y + i) = make_float4(z[0], z[1], z[2], z[3]);
    } else {
      for (int j = 0; j < 4 && i + j < n; ++j) y[i + j] = z[j];
    }
  }
}

}  // namespace

void random_normal(Ctx& ctx, uint64_t seed, const int32_t* seed_words, Tensor& y) {
  const int64_t n = y.numel();
  if (n == 0) return;
  const int64_t blocks = (n + 3) / 4;
  const unsigned grid = static_cast<unsigned>(std::clamp<int64_t>((blocks + 255) / 256, 1, int64_t{sm_count()} * 8));
  normal_kernel<<<grid, 256, 0, stream_of(ctx)>>>(seed, seed_words, y.data<float>(), n);
  SAL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace sal::cuda
