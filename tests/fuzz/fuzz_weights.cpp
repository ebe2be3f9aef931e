// libFuzzer target: a classifier weight file (weights/README.md) through InputSpec::from_metadata (the
// metadata every black box is built from) and, when it parses, Network::load into a CIFAR ResNet20 built
// once from the shipped weights (the arch check, and the strict name / shape / dtype check of every tensor).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/safetensors.h"
#include "fuzz_util.h"
#include "layers/network.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<sal::Network> net =
      sal::load_network(SAL_SOURCE_DIR "/weights/cifar_resnet20.safetensors", sal::Device::CPU);
  sal::fuzz::expect_ok_or_error([&] {
    std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(data),
                                 reinterpret_cast<const std::byte*>(data) + size);
    const sal::SafeTensorsFile f = sal::SafeTensorsFile::from_bytes(std::move(bytes), "fuzz-weights.safetensors");
    const sal::InputSpec spec = sal::InputSpec::from_metadata(f);
    float scale[3], shift[3];
    spec.affine(scale, shift);
    net->load(f);
  });
  return 0;
}
