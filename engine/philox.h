// Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11):
// a counter-based generator, a pure function of a 128-bit counter and a 64-bit key. It is what lets
// the CPU and CUDA backends draw the same random numbers: element i of a random tensor depends on
// (seed, i) alone, not on the order or the thread that computes it. Compiled by the C++ compiler
// for the CPU and by nvcc for the kernels (cuda/random.cu), so both backends share this one text.
#pragma once
#include <cmath>
#include <cstdint>

#include "engine/host_device.h"

namespace sal::philox {

struct U32x4 {
  uint32_t v[4];
};

SAL_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// The ten rounds with the published multipliers and Weyl key increments.
SAL_HD U32x4 philox4x32_10(U32x4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c.v[0], hi0, lo0);
    mulhilo(kM1, c.v[2], hi1, lo1);
    c = U32x4{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return c;
}

// The block of 4 outputs that element index i of a random tensor with this seed belongs to:
// counter (i / 4 as 64 bits, 0, 0), key (seed as 64 bits).
SAL_HD U32x4 block_of(uint64_t seed, uint64_t block) {
  return philox4x32_10(U32x4{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u}},
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Box-Muller on two 32-bit words: u1 = (a + 1) / 2^32 in (0, 1] (never log 0), u2 = b / 2^32;
// z0 = sqrt(-2 ln u1) cos(2 pi u2), z1 = sqrt(-2 ln u1) sin(2 pi u2). T = float or double; the
// f32 results of the two backends differ only by the rounding of their log/sin/cos.
template <class T>
SAL_HD void box_muller(uint32_t a, uint32_t b, T& z0, T& z1) {
#ifndef __CUDA_ARCH__
  using std::cos, std::log, std::sin, std::sqrt;
#endif
  const T u1 = (static_cast<T>(a) + T(1)) * static_cast<T>(2.3283064365386963e-10);  // 2^-32
  const T u2 = static_cast<T>(b) * static_cast<T>(2.3283064365386963e-10);
  const T r = sqrt(T(-2) * log(u1));
  const T t = static_cast<T>(6.283185307179586) * u2;
  z0 = r * cos(t);
  z1 = r * sin(t);
}

}  // namespace sal::philox
