// libFuzzer target: safetensors bytes (weights, checkpoints, maskers) through SafeTensorsFile::from_bytes,
// then every accessor on every entry: info, raw_bytes (read in full), tensor() and load_f32().
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/safetensors.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sal::fuzz::expect_ok_or_error([&] {
    std::vector<std::byte> bytes(reinterpret_cast<const std::byte*>(data),
                                 reinterpret_cast<const std::byte*>(data) + size);
    sal::SafeTensorsFile f = sal::SafeTensorsFile::from_bytes(std::move(bytes), "fuzz.safetensors");
    unsigned sum = 0;
    for (const std::string& name : f.names()) {
      const sal::SafeTensorInfo& in = f.info(name);
      for (std::byte b : f.raw_bytes(name)) sum += static_cast<unsigned>(b);
      sal::fuzz::expect_ok_or_error([&] {
        sal::Tensor t = f.tensor(name);
        if (t.nbytes() != in.nbytes()) std::abort();
      });
      sal::fuzz::expect_ok_or_error([&] {
        sal::Tensor t = f.load_f32(name);
        if (t.numel() != in.numel()) std::abort();
      });
    }
    for (const auto& [k, v] : f.metadata()) sum += static_cast<unsigned>(k.size() + v.size());
    (void)sum;
  });
  return 0;
}
