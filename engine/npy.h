// Writes float32 arrays as NumPy .npy files (format version 1.0, little-endian '<f4', C order), so
// raw saliency masks can be read with numpy.load. Written atomically (a temporary file, then rename);
// errors name the file.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sal {

void write_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape);

}  // namespace sal
