// Shared by the tests that run a wrapper of ours against a CPU stand-in for the library it wraps
// (tests/cublas_stand_in_test.cpp, tests/cudnn_stand_in_test.cpp).
#pragma once
#include <doctest/doctest.h>
#include <dlfcn.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace sal::test {

// The stand-in's record of its calls, `symbol` in the loaded library `soname_or_path`; fails the test when
// that library is not loaded or is the real one (which would be handed host pointers).
template <class Log>
const Log& stand_in_log(const std::string& soname_or_path, const char* symbol, const char* stand_in_folder) {
  void* handle = ::dlopen(soname_or_path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  REQUIRE_MESSAGE(handle, soname_or_path, " is not loaded");
  void* log = ::dlsym(handle, symbol);
  REQUIRE_MESSAGE(log, "the loaded ", soname_or_path, " is the real library, not the stand-in: put ",
                  stand_in_folder, "'s build folder first on LD_LIBRARY_PATH (ctest does)");
  return *static_cast<const Log*>(log);
}

// n values uniform in [-1, 1), each one an f32 holds exactly.
inline std::vector<double> uniform_f32_values(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = static_cast<float>(u(rng));
  return v;
}

}  // namespace sal::test
