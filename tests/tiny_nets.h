// Small seeded double-precision networks for the gradient and baseline tests (tests/test_masker.cpp,
// tests/test_saliency_eval.cpp): a CIFAR ResNet8 on 8x8 inputs with parameters that keep a frozen
// network's activations in range.
#pragma once
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "layers/cifar_resnet.h"

namespace sal::test {

// The input convention of the tiny CIFAR ResNet8: 8x8 images, 10 classes, mean 0.45, std 0.25.
inline InputSpec tiny_spec() {
  InputSpec s;
  s.arch = "cifar_resnet8";
  s.size = 8;
  s.num_classes = 10;
  for (int c = 0; c < 3; ++c) {
    s.mean[c] = 0.45f;
    s.std[c] = 0.25f;
  }
  return s;
}

// Seeded parameters for a frozen network: He-normal weights, BN near identity, small biases.
inline void seed_params(ParamStore& ps, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (const std::string& name : ps.names()) {
    ParamRef p = ps.find(name);
    const Shape& s = ps.shape(p);
    std::vector<double> v(static_cast<size_t>(s.numel()));
    const bool vec = s.ndim() == 1;
    for (double& x : v) {
      if (name.find("running_var") != std::string::npos) x = 0.75 + 0.5 * std::abs(normal(gen));
      else if (name.find("running_mean") != std::string::npos) x = 0.1 * normal(gen);
      else if (vec && name.find("bn") != std::string::npos && name.find("weight") != std::string::npos)
        x = 1.0 + 0.2 * normal(gen);
      else if (vec) x = 0.1 * normal(gen);
      else x = normal(gen) * std::sqrt(2.0 / static_cast<double>(s.numel() / s[0]));
    }
    Tensor dst = ps.value(p);
    dst.copy_from(Tensor::from_values(v, s, dst.dtype()));
  }
}

// A seeded F64 CIFAR ResNet8 (tiny_spec) on the CPU.
inline std::unique_ptr<CifarResNet> tiny_resnet(uint32_t seed) {
  auto net = std::make_unique<CifarResNet>(tiny_spec(), Device::CPU, 8, DType::F64);
  seed_params(net->params(), seed);
  return net;
}

}  // namespace sal::test
