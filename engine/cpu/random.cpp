#include "engine/cpu/random.h"

#include <cmath>

#include "engine/cpu/dispatch.h"
#include "engine/philox.h"

namespace sal::cpu {

namespace {

template <class T>
void fill(uint64_t seed, T* y, int64_t n) {
  const int64_t blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n > SAL_OMP_MIN_WORK)
  for (int64_t b = 0; b < blocks; ++b) {
    const philox::U32x4 r = philox::block_of(seed, static_cast<uint64_t>(b));
    T z[4];
    philox::box_muller<T>(r.v[0], r.v[1], z[0], z[1]);
    philox::box_muller<T>(r.v[2], r.v[3], z[2], z[3]);
    for (int64_t j = 0; j < 4 && b * 4 + j < n; ++j) y[b * 4 + j] = z[j];
  }
}

}  // namespace

void random_normal(Ctx&, uint64_t seed, Tensor& y) {
  dispatch_float(y.dtype(), "random_normal", [&](auto tag) {
    using T = typename decltype(tag)::type;
    fill<T>(seed, y.data<T>(), y.numel());
  });
}

}  // namespace sal::cpu
