// Shape: up to kMaxDims extents held inline, so making a tensor view never allocates.
#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "engine/error.h"

namespace sal {

constexpr int kMaxDims = 6;

struct Shape {
  std::array<int64_t, kMaxDims> d{};
  int nd = 0;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) {
    SAL_CHECK(dims.size() <= kMaxDims, "Shape: at most ", kMaxDims, " dimensions, got ", dims.size());
    for (int64_t v : dims) {
      SAL_CHECK(v >= 0, "Shape: negative extent ", v);
      d[nd++] = v;
    }
  }
  template <class It>
  static Shape from_range(It begin, It end) {
    Shape s;
    for (It it = begin; it != end; ++it) {
      SAL_CHECK(s.nd < kMaxDims, "Shape: at most ", kMaxDims, " dimensions");
      SAL_CHECK(*it >= 0, "Shape: negative extent ", *it);
      s.d[s.nd++] = static_cast<int64_t>(*it);
    }
    return s;
  }

  int ndim() const { return nd; }
  int64_t operator[](int i) const { return d[i < 0 ? i + nd : i]; }
  int64_t& operator[](int i) { return d[i < 0 ? i + nd : i]; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < nd; ++i) n *= d[i];
    return n;
  }
  bool operator==(const Shape& o) const {
    if (nd != o.nd) return false;
    for (int i = 0; i < nd; ++i)
      if (d[i] != o.d[i]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < nd; ++i) s += (i ? "," : "") + std::to_string(d[i]);
    return s + "]";
  }
};

inline std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

}  // namespace sal
