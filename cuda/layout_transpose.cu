// Batched transpose (cuda/layout_transpose.h): 32 x 32 tiles through shared memory, so that both the loads and
// the stores are coalesced; the tile's row of 33 floats keeps the column reads free of bank conflicts.
#include "cuda/layout_transpose.h"

#include "cuda/launch.cuh"
#include "engine/error.h"

namespace sal::cuda {

namespace {

constexpr int kTile = 32, kRowsPerPass = 8;  // a block of 32 x 8 threads moves one 32 x 32 tile

// x: [batch, rows, cols] -> y: [batch, cols, rows]; grid (col tiles, row tiles, batch).
__global__ void batched_transpose_kernel(const float* __restrict__ x, long long rows, long long cols,
                                         float* __restrict__ y) {
  __shared__ float tile[kTile][kTile + 1];
  const long long plane = static_cast<long long>(blockIdx.z) * rows * cols;
  const long long r0 = static_cast<long long>(blockIdx.y) * kTile, c0 = static_cast<long long>(blockIdx.x) * kTile;
  for (int i = threadIdx.y; i < kTile; i += kRowsPerPass) {
    const long long r = r0 + i, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[i][threadIdx.x] = x[plane + r * cols + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < kTile; i += kRowsPerPass) {
    const long long c = c0 + i, r = r0 + threadIdx.x;  // y's row c, column r
    if (c < cols && r < rows) y[plane + c * rows + r] = tile[threadIdx.x][i];
  }
}

}  // namespace

void batched_transpose(Ctx& ctx, const float* x, int64_t batch, int64_t rows, int64_t cols, float* y) {
  if (batch <= 0 || rows <= 0 || cols <= 0) return;
  const int64_t row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
  SAL_CHECK(batch <= 65535 && row_tiles <= 65535 && col_tiles <= INT32_MAX,
            "batched_transpose: ", batch, " matrices of ", rows, " x ", cols,
            " exceed the grid (at most 65535 matrices and 65535 tiles of 32 rows)");
  const dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(row_tiles), static_cast<unsigned>(batch));
  batched_transpose_kernel<<<grid, dim3(kTile, kRowsPerPass), 0, stream_of(ctx)>>>(x, rows, cols, y);
  SAL_CUDA_LAUNCH_CHECK("batched transpose");
}

}  // namespace sal::cuda
