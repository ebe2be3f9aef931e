// .npy writer (engine/npy.h): the magic, version 1.0, a header dict padded with spaces to a multiple
// of 64 bytes and ending in '\n', then the raw little-endian floats.
#include "engine/npy.h"

#include <bit>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "engine/error.h"

namespace sal {

void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  static_assert(std::endian::native == std::endian::little, "write_npy assumes a little-endian host");
  std::string dims;
  int64_t count = 1;
  for (int64_t d : shape) {
    SAL_CHECK(d >= 0, path, ": negative dimension ", d);
    dims += std::to_string(d) + ",";
    count *= d;
  }
  if (shape.size() > 1) dims.pop_back();  // "(5,)" for one dimension, "(2,3)" otherwise
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    SAL_CHECK(out.good(), tmp, ": cannot open for writing");
    const char magic[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
    out.write(magic, 8);
    const uint16_t len = static_cast<uint16_t>(header.size());
    out.put(static_cast<char>(len & 0xff));
    out.put(static_cast<char>(len >> 8));
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(count * 4));
    SAL_CHECK(out.good(), tmp, ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  SAL_CHECK(!ec, path, ": cannot rename ", tmp, ": ", ec.message());
}

}  // namespace sal
