// libFuzzer target: a sal_train checkpoint (tools/sal_train.cpp) through the library calls its --resume
// makes: SafeTensorsFile, load_params into the CIFAR masker's parameter store (non-strict, as the trainer
// loads it: the Adam moments sit beside the parameters), the Adam moment tensors, and
// ReaderPosition::parse of the "reader_position" metadata.
// Not covered here: the trainer's own parsing of "step" / "adam_steps" and of the random-number-generator
// states, which live inside tools/sal_train.cpp (see docs/reliability.md).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/param_io.h"
#include "engine/safetensors.h"
#include "engine/shard_reader.h"
#include "fuzz_util.h"
#include "layers/masker.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<sal::Masker> masker =
      std::make_unique<sal::Masker>(sal::MaskerConfig::cifar_resnet(10), sal::Device::CPU);
  sal::fuzz::expect_ok_or_error([&] {
    std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(data),
                                 reinterpret_cast<const std::byte*>(data) + size);
    const sal::SafeTensorsFile f = sal::SafeTensorsFile::from_bytes(std::move(bytes), "fuzz-checkpoint.safetensors");
    sal::fuzz::expect_ok_or_error(
        [&] { sal::load_params(masker->params(), f, sal::LoadOptions{.strict = false, .prefix = ""}); });
    sal::fuzz::expect_ok_or_error([&] {
      if (f.contains("adam.m")) (void)f.tensor("adam.m").clone();
    });
    auto it = f.metadata().find("reader_position");
    if (it != f.metadata().end()) {
      const sal::ReaderPosition p = sal::ReaderPosition::parse(it->second);
      if (!(sal::ReaderPosition::parse(p.str()) == p)) std::abort();  // str() and parse() are inverses
    }
  });
  return 0;
}
