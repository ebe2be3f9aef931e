// libFuzzer target: a trained masker file (layers/masker_io.h) through load_masker: the metadata that
// rebuilds the MaskerConfig, the masker built from it, and the strict parameter load.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "layers/masker_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sal::fuzz::MemFile file(data, size);
  sal::fuzz::expect_ok_or_error([&] {
    sal::MaskerFileInfo info;
    auto m = sal::load_masker(file.path(), sal::Device::CPU, &info);
    if (!m || info.image_size <= 0) std::abort();
  });
  return 0;
}
