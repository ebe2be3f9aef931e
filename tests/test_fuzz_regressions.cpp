// Regression tests for what the fuzz targets found (tests/fuzz/, docs/reliability.md): every input kept
// under tests/fuzz/regressions/<target>/ goes through the same reader call as in its target and must be
// rejected with a sal::Error saying why, without a crash and without a huge allocation.
// (scripts/sanitize.sh also replays these files through the fuzz targets themselves, under ASan/UBSan.)
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "engine/image.h"
#include "engine/shard_reader.h"
#include "error_of.h"

using namespace sal;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> regression_inputs(const std::string& target) {
  std::vector<std::string> out;
  const fs::path dir = fs::path(SAL_SOURCE_DIR) / "tests" / "fuzz" / "regressions" / target;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().string());
  return out;
}

}  // namespace

TEST_CASE("fuzz regressions: image headers claiming more pixels than the file can hold are rejected first") {
  // jpeg-20488x12504-in-104-bytes.jpg: a 104-byte JPEG whose frame header says 20488x12504 (just under
  // kMaxImagePixels); the decoder used to allocate about 3 GB for it (1 GB of ours, 2 GB of libjpeg-turbo's).
  const std::vector<std::string> inputs = regression_inputs("fuzz_image");
  REQUIRE(!inputs.empty());
  for (const std::string& path : inputs) {
    INFO(path);
    const std::vector<uint8_t> bytes = read_file_bytes(path);
    const std::string err = test::error_of([&] { decode_image(bytes, path); });
    CHECK(err.find(path + ": corrupt ") == 0);
    CHECK(err.find("data can hold") != std::string::npos);
  }
  // A real large image still decodes: a flat 2500x2000 (5M pixel) PNG is tiny but within the bound.
  Image big(2500, 2000, 1);
  const std::vector<uint8_t> png = encode_png(big, 9);  // ~5 KB at zlib level 9 (~22 KB at level 1)
  CHECK(png.size() < 20000);
  const Image back = decode_image(png, "flat.png");
  CHECK(back.width == 2500);
  CHECK(back.height == 2000);
}

TEST_CASE("fuzz regressions: a .cls entry of a digit and 63 NUL bytes is an error, not an integer overflow") {
  // cls-64-digits-overflow.tar: the label parser went on multiplying by 10 after the first non-digit
  // (signed overflow, undefined behaviour, reported by UBSan in fuzz_shard).
  const std::vector<std::string> inputs = regression_inputs("fuzz_shard");
  REQUIRE(!inputs.empty());
  for (const std::string& path : inputs) {
    INFO(path);
    ShardReaderOptions o;
    o.shards = {path};
    o.batch_size = 2;
    o.image_size = 8;
    o.threads = 1;
    o.shuffle_buffer = 0;
    o.shuffle_shards = false;
    o.epochs = 1;
    o.num_classes = 10;
    o.quiet = true;
    const std::string err = test::error_of([&] {
      ShardReader reader(o);
      Batch b;
      while (reader.next(b)) {
      }
    });
    CHECK(err.find(path + ": sample '000000000_a': entry '000000000_a.cls'") == 0);
    CHECK(err.find("not a class index in 0..9") != std::string::npos);
  }
}
