// libFuzzer target: image bytes (JPEG via libjpeg-turbo, PNG via libpng) through decode_image, the decoder
// of every image read from a shard, an image folder or the command line.
#include <cstddef>
#include <cstdint>

#include "engine/image.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sal::fuzz::expect_ok_or_error([&] {
    const sal::Image im = sal::decode_image(data, size, "fuzz.img");
    if (im.channels != 3 || im.width <= 0 || im.height <= 0 ||
        im.pixels.size() != static_cast<size_t>(im.width) * static_cast<size_t>(im.height) * 3)
      std::abort();
  });
  return 0;
}
