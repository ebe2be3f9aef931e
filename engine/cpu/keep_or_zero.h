// CPU backend: the activation backwards' select, branch-free.
#pragma once
#include <bit>
#include <cstdint>
#include <type_traits>

namespace sal::cpu {

// v where keep, else +0 (also when v is NaN or infinite: the value is dropped, not multiplied by 0).
// Why not `keep ? v : T(0)`: GCC keeps that as a branch per element (it sinks v's computation into the
// taken side and does not vectorise the loop), and for ReLU's gradient `keep` is a coin toss for the
// branch predictor: measured 3.5 ns per element on the 2-core machine against about 0.3 ns with this mask,
// which vectorises. The results are the same bit for bit.
template <class T>
inline T keep_or_zero(bool keep, T v) {
  static_assert(std::is_floating_point_v<T> && (sizeof(T) == 4 || sizeof(T) == 8));
  using U = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  return std::bit_cast<T>(std::bit_cast<U>(v) & (U(0) - static_cast<U>(keep)));
}

}  // namespace sal::cpu
