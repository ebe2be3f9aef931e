// random_normal and Philox4x32-10 (engine/philox.h): the published known-answer vectors of the
// generator, the first numbers of seed 0 worked out by hand from those vectors, the statistics of a
// million numbers, and independence from the thread count. (CUDA against the CPU: the harness rows
// in tests/op_cases/random_cases.cpp; a random source has no gradient to check.)
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <vector>

#include "engine/ops.h"
#include "engine/philox.h"

using namespace sal;

TEST_CASE("philox4x32_10: Random123's known-answer vectors") {
  struct Kat {
    philox::U32x4 ctr;
    uint32_t k0, k1;
    philox::U32x4 want;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
       0xffffffffu,
       0xffffffffu,
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       0xa4093822u,
       0x299f31d0u,
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const Kat& k : kats) {
    const philox::U32x4 got = philox::philox4x32_10(k.ctr, k.k0, k.k1);
    for (int i = 0; i < 4; ++i) CHECK(got.v[i] == k.want.v[i]);
  }
}

TEST_CASE("random_normal: seed 0's first four numbers, by hand from the known-answer block") {
  // Element 0..3 of seed 0 come from counter 0, key 0: the first vector above. Box-Muller by hand:
  // z = sqrt(-2 ln((a + 1) / 2^32)) * (cos | sin)(2 pi b / 2^32) for the pairs (a, b) = words (0, 1), (2, 3).
  const double two32 = 4294967296.0, pi2 = 6.283185307179586;
  const auto pair = [&](double a, double b, double& z0, double& z1) {
    const double r = std::sqrt(-2.0 * std::log((a + 1.0) / two32));
    z0 = r * std::cos(pi2 * b / two32);
    z1 = r * std::sin(pi2 * b / two32);
  };
  double want[4];
  pair(0x6627e8d5, 0xe169c58d, want[0], want[1]);
  pair(0xbc57ac4c, 0x9b00dbd8, want[2], want[3]);
  Ctx ctx;
  const std::vector<double> d = random_normal(ctx, Shape{5}, DType::F64, 0).values();
  const std::vector<double> f = random_normal(ctx, Shape{2, 2}, DType::F32, 0).values();
  for (int i = 0; i < 4; ++i) {
    CAPTURE(i);
    CHECK(d[static_cast<size_t>(i)] == doctest::Approx(want[i]).epsilon(1e-12));
    CHECK(f[static_cast<size_t>(i)] == doctest::Approx(want[i]).epsilon(1e-5));
  }
  // The fifth number starts the next block (counter 1): not a repeat.
  CHECK(d[4] != d[0]);
}

TEST_CASE("random_normal: a million numbers look standard normal, and the thread count does not matter") {
  Ctx ctx;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const std::vector<double> one = random_normal(ctx, Shape{1000, 1000}, DType::F32, 12345).values();
  omp_set_num_threads(std::max(2, saved));
  const std::vector<double> many = random_normal(ctx, Shape{1000, 1000}, DType::F32, 12345).values();
  omp_set_num_threads(saved);
  CHECK(one == many);
  double sum = 0, sq = 0, within1 = 0, within2 = 0;
  for (double v : one) {
    sum += v;
    sq += v * v;
    within1 += std::abs(v) < 1.0;
    within2 += std::abs(v) < 2.0;
  }
  const double n = static_cast<double>(one.size());
  CHECK(std::abs(sum / n) < 0.005);  // standard error 0.001
  CHECK(std::abs(sq / n - 1.0) < 0.01);
  CHECK(std::abs(within1 / n - 0.682689) < 0.003);
  CHECK(std::abs(within2 / n - 0.954500) < 0.002);
  // Another seed gives other numbers; an empty tensor is fine.
  CHECK(random_normal(ctx, Shape{8}, DType::F32, 12346).values() != random_normal(ctx, Shape{8}, DType::F32, 12345).values());
  CHECK(random_normal(ctx, Shape{0}, DType::F32, 1).numel() == 0);
  CHECK_THROWS_AS(random_normal(ctx, Shape{4}, DType::I32, 1), Error);
}

TEST_CASE("random_normal: a seed read from a tensor gives the numbers of the same seed as an argument") {
  Ctx ctx;
  for (const uint64_t seed : {uint64_t{0}, uint64_t{12345}, uint64_t{1} << 40, uint64_t{0xFEDCBA9876543210ull}}) {
    const Tensor s = seed_tensor(seed);
    CHECK(s.dtype() == DType::I32);
    CHECK(s.shape() == Shape{2});
    // {low, high} words: the high bit of each survives the trip through int32.
    CHECK(static_cast<uint32_t>(s.data<int32_t>()[0]) == static_cast<uint32_t>(seed));
    CHECK(static_cast<uint32_t>(s.data<int32_t>()[1]) == static_cast<uint32_t>(seed >> 32));
    for (const DType dt : {DType::F32, DType::F64})
      CHECK(random_normal(ctx, Shape{3, 7}, dt, s).values() == random_normal(ctx, Shape{3, 7}, dt, seed).values());
  }
  CHECK_THROWS_WITH_AS(random_normal(ctx, Shape{4}, DType::F32, Tensor::from_labels({1, 2, 3})),
                       doctest::Contains("the seed tensor must be i32[2]"), Error);
  CHECK_THROWS_AS(random_normal(ctx, Shape{4}, DType::F32, Tensor::from_values({1, 2}, Shape{2})), Error);
}
