// Seeded random parameters and the shipped MobileNet's path for the CPU/CUDA model benchmarks
// (bench/model_cpu_bench.cpp, bench/masker_bench.cpp): speed does not depend on the values, but the
// values must keep deep networks' activations finite.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include "engine/error.h"
#include "engine/params.h"

namespace sal::bench {

// He-scaled conv/linear weights, BN with gamma in [0.2, 0.6] (keeps ResNet-50's 16 residual blocks
// from blowing up), small shifts, positive running variance. The store must be on the CPU.
inline void randomize(ParamStore& ps, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> uniform(0.f, 1.f);
  for (const std::string& name : ps.names()) {
    Tensor t = ps.value(ps.find(name));
    SAL_CHECK(t.device() == Device::CPU, "bench randomize: needs CPU parameters (", name, ")");
    float* p = t.data<float>();
    const bool vec = t.ndim() == 1;
    const auto ends = [&](const char* s) {
      const std::string suffix(s);
      return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    const float he = vec ? 0.f : std::sqrt(2.f / static_cast<float>(t.numel() / t.dim(0)));
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (ends("running_var")) p[i] = 0.5f + uniform(rng);
      else if (vec && ends("weight")) p[i] = 0.2f + 0.4f * uniform(rng);
      else if (vec) p[i] = 0.1f * normal(rng);  // biases, BN shifts and running means
      else p[i] = he * normal(rng);
    }
  }
}

// weights/mobilenet_v1_0.75_224.safetensors of this repository, or $SAL_MOBILENET_WEIGHTS.
inline std::string mobilenet_path() {
  if (const char* env = std::getenv("SAL_MOBILENET_WEIGHTS")) return env;
  // This file is <repo>/bench/random_params.h.
  return (std::filesystem::path(__FILE__).parent_path().parent_path() / "weights" /
          "mobilenet_v1_0.75_224.safetensors")
      .string();
}

}  // namespace sal::bench
