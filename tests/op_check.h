// The one op test harness. Each op family registers a table of OpCase rows (tests/op_cases/);
// the same rows drive
//   - the finite-difference gradient check in double precision on the CPU (tests/test_op_gradients.cpp),
//   - the CUDA-vs-CPU agreement check, forward and backward (tests/cuda_vs_cpu.cpp), and
//   - the benchmarks' inputs.
// Adding an op adds rows, not a new test program.
#pragma once
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "engine/ops.h"

namespace sal::test {

using Inputs = std::vector<Tensor>;

struct OpCase {
  std::string name;                 // "conv2d/stride2_pad1"
  std::vector<Shape> shapes;        // one per input
  std::vector<DType> dtypes;        // per input; empty or missing entries mean "the float type under test"
  std::vector<bool> check_grad;     // per input: compare its gradient with finite differences
  // Optional: values of input `index` (default: uniform in [-1, 1]). Use it to keep inputs away
  // from kinks (relu at 0, equal maxima, |c| at 0) and to make labels and positive variances.
  std::function<std::vector<double>(int index, const Shape& shape, std::mt19937_64& rng)> init;
  std::function<Tensor(Ctx&, const Inputs&)> forward;
  // Gradients of sum(forward(in) * dy) for every input (undefined where not differentiable).
  std::function<std::vector<Tensor>(Ctx&, const Inputs& in, const Tensor& y, const Tensor& dy)> backward;
  double fd_step = 1e-6;
  double grad_tol = 1e-6;   // |analytic - numeric| <= grad_tol * (1 + |numeric|)
  double cuda_tol = 1e-4;   // |cuda - cpu| <= cuda_tol * (1 + |cpu|), f32
  int max_fd_elements = 48; // finite differences on at most this many elements per input
};

std::vector<OpCase>& registry();

struct Registrar {
  explicit Registrar(std::vector<OpCase> (*make)()) {
    for (OpCase& c : make()) registry().push_back(std::move(c));
  }
};

// Inputs of a case on the CPU in dtype (F64 for gradient checks, F32 for CUDA comparisons).
Inputs make_inputs(const OpCase& c, DType float_dtype, uint64_t seed = 1);
// Uniform values in [lo, hi].
std::vector<double> uniform(const Shape& s, std::mt19937_64& rng, double lo = -1, double hi = 1);
// Values whose absolute value is at least `gap` (away from kinks at zero), random sign.
std::vector<double> away_from_zero(const Shape& s, std::mt19937_64& rng, double gap = 0.1);
// A random permutation of a spaced grid: all values distinct by at least `spacing`.
std::vector<double> distinct(const Shape& s, std::mt19937_64& rng, double spacing = 0.01);
// Host images [n,3,size,size] of uniform values in [0,1) from std::mt19937(seed), for model-level tests.
Tensor random_images(int64_t n, int64_t size, uint32_t seed, DType dtype = DType::F32);

struct GradReport {
  bool ok = true;
  std::string message;  // the worst mismatch when !ok
};
GradReport check_gradients(const OpCase& c);

// max |a - b| / (1 + |b|) over elements; shapes must match.
double max_rel_diff(const Tensor& a, const Tensor& b);
// Exact-ish comparison for hand-worked cases: |t_i - want_i| <= tol for all i, shape checked too.
bool all_close(const Tensor& t, const std::vector<double>& want, double tol = 1e-6);

}  // namespace sal::test

#define SAL_OP_CASES_CAT2(a, b) a##b
#define SAL_OP_CASES_CAT(a, b) SAL_OP_CASES_CAT2(a, b)
// SAL_OP_CASES { return std::vector<OpCase>{...}; } registers rows at start-up.
#define SAL_OP_CASES                                                                       \
  static std::vector<::sal::test::OpCase> SAL_OP_CASES_CAT(sal_cases_, __LINE__)();        \
  static ::sal::test::Registrar SAL_OP_CASES_CAT(sal_registrar_, __LINE__)(                \
      SAL_OP_CASES_CAT(sal_cases_, __LINE__));                                             \
  static std::vector<::sal::test::OpCase> SAL_OP_CASES_CAT(sal_cases_, __LINE__)()
