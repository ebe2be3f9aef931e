// Helpers for the model tests: golden fixtures written by tools/make_golden_fixtures.py.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>

#include "engine/safetensors.h"
#include "engine/tensor.h"

namespace sal::test {

inline std::string golden_path(const std::string& file) { return std::string(SAL_GOLDEN_DIR) + "/" + file; }
inline std::string source_path(const std::string& file) { return std::string(SAL_SOURCE_DIR) + "/" + file; }
inline std::string shared_path(const std::string& file) { return std::string(SAL_SHARED_DIR) + "/" + file; }

// max |ours - ref| / max |ref|: the error relative to the tensor's scale (element-wise relative
// error is meaningless where the reference crosses zero).
inline double scaled_max_error(const Tensor& ours, const Tensor& ref) {
  REQUIRE_MESSAGE(ours.shape() == ref.shape(), "shape ", ours.shape().str(), " vs reference ", ref.shape().str());
  std::vector<double> a = ours.values(), b = ref.values();
  double worst = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double d = std::abs(a[i] - b[i]);
    if (std::isnan(d)) return INFINITY;
    worst = std::max(worst, d);
    scale = std::max(scale, std::abs(b[i]));
  }
  return scale > 0 ? worst / scale : worst;
}

// CHECKs that `ours` matches golden tensor `name` within `tol` (scaled max error); prints the error.
inline void check_golden(const Tensor& ours, const SafeTensorsFile& golden, const std::string& name,
                         double tol = 1e-4) {
  Tensor ref = golden.load_f32(name);
  double err = scaled_max_error(ours, ref);
  INFO(golden.path(), ": '", name, "' ", ref.shape().str());
  MESSAGE(name, ": scaled max error ", err);
  CHECK(err <= tol);
}

}  // namespace sal::test
