// Image decoding and encoding: JPEG (libturbojpeg) and PNG (libpng) into 8-bit RGB, PNG out
// (gray and RGB, for masks and overlays), and conversion of images to float CPU tensors.
//
// Decoding always yields RGB (channels == 3), the way PIL's Image.convert("RGB") does:
//   JPEG: grayscale is replicated to RGB; CMYK/YCCK is read as Adobe-style inverted CMYK and
//         converted with PIL's formula (R = (255-K) - C*(255-K)/255, ...), as PIL does.
//         Default libjpeg-turbo settings (accurate integer IDCT, fancy upsampling), so pixels equal
//         what PIL decodes with the same libjpeg-turbo.
//   PNG:  palette expanded, 1/2/4-bit gray expanded, 16-bit reduced to its high byte, alpha dropped
//         (not composited), gray replicated; no gamma correction.
// Every error names the file (or the name given for a memory buffer) and what is wrong: a corrupt
// JPEG carries libjpeg-turbo's message, a truncated file says so, an unknown format shows its first bytes.
// Libjpeg-turbo warnings (e.g. "Premature end of JPEG file" for a truncated scan) are errors here.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace sal {

// An 8-bit image, rows top to bottom, channels interleaved: pixel (x, y) channel c is
// pixels[(y * width + x) * channels + c]. Decoders return channels == 3 (RGB); 1 (gray) is for encoding.
struct Image {
  int width = 0, height = 0;
  int channels = 3;
  std::vector<uint8_t> pixels;

  Image() = default;
  Image(int w, int h, int c);  // zero-filled; checks the sizes
  uint8_t& at(int x, int y, int c) { return pixels[(static_cast<size_t>(y) * width + x) * channels + c]; }
  uint8_t at(int x, int y, int c) const { return pixels[(static_cast<size_t>(y) * width + x) * channels + c]; }
};

enum class ImageFormat { Unknown, JPEG, PNG };
// By the first bytes (JPEG: FF D8 FF; PNG: the 8-byte PNG signature).
ImageFormat sniff_image_format(const uint8_t* data, size_t size);

// Larger images are rejected as corrupt before any pixel buffer is allocated.
constexpr int64_t kMaxImagePixels = int64_t{1} << 28;

// Decodes a JPEG or PNG held in memory; `name` is what error messages call it (usually its file or entry name).
Image decode_image(const uint8_t* data, size_t size, const std::string& name);
inline Image decode_image(const std::vector<uint8_t>& bytes, const std::string& name) {
  return decode_image(bytes.data(), bytes.size(), name);
}
Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name);
Image decode_png(const uint8_t* data, size_t size, const std::string& name);
// Reads and decodes a file.
Image read_image(const std::string& path);

// The whole file's bytes; errors name the file.
std::vector<uint8_t> read_file_bytes(const std::string& path);

// zlib's compression level for PNGs, 0 (stored) to 9. The default is the fastest level: sal_mask on
// 200 ImageNet images (2-core CPU) ran 2.76 s instead of 3.73 s with zlib's default 6, its PNGs 5.7%
// larger (zlib was a fifth of that run's CPU time at level 6).
constexpr int kPngDefaultLevel = 1;

// PNG encoding of a gray (channels 1) or RGB (channels 3) image: 8 bits, non-interlaced.
std::vector<uint8_t> encode_png(const Image& image, int level = kPngDefaultLevel);
// Writes encode_png(image, level) to `path` (errors name the file).
void write_png(const std::string& path, const Image& image, int level = kPngDefaultLevel);

// image -> f32 CPU tensor [channels, H, W] with values pixel / 255 in [0, 1].
Tensor image_to_tensor(const Image& image);
// The same, resized to [channels, out_h, out_w] with resize_bilinear (align_corners=false, no
// antialiasing: torch.nn.functional.interpolate(mode="bilinear")). No resize when the size already matches.
Tensor image_to_tensor(const Image& image, int64_t out_h, int64_t out_w);
// CPU f32 [C,H,W] or [1,C,H,W] with C = 1 or 3, values in [0,1] (clamped) -> 8-bit image, round(v * 255).
Image tensor_to_image(const Tensor& chw);

}  // namespace sal
