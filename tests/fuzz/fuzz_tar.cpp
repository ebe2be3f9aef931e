// libFuzzer target: tar bytes (image-folder tars, WebDataset shards) through TarReader: every entry the
// reader returns, with its data read in full.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/tar.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sal::fuzz::MemFile file(data, size);
  sal::fuzz::expect_ok_or_error([&] {
    sal::TarReader tar(file.path());
    sal::TarEntry e;
    while (tar.next(e)) {
      if (e.data_offset + e.size > size) std::abort();  // the reader promised the bytes are there
      const std::vector<uint8_t> bytes = tar.read(e);
      if (bytes.size() != e.size) std::abort();
    }
  });
  return 0;
}
