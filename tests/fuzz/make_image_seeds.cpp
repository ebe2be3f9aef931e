// Writes the image seeds of the fuzz corpus (tests/fuzz/corpus/fuzz_image/, also packed into the shard
// seeds by tests/fuzz/make_corpus.py): small JPEGs (libjpeg-turbo: 4:4:4, 4:2:0, gray, progressive,
// CMYK) and PNGs (libpng: 8-bit gray and RGB, 4-bit palette, 1-bit gray, 16-bit RGBA, interlaced gray +
// alpha), so that every decoder path starts covered. Built with SAL_FUZZ (scripts/sanitize.sh);
// usage: make_image_seeds OUT_DIR.
#include <png.h>
#include <turbojpeg.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/error.h"
#include "engine/image.h"

namespace {

// A deterministic test pattern of w*h*c bytes.
std::vector<uint8_t> pattern(int w, int h, int c) {
  std::vector<uint8_t> p(static_cast<size_t>(w) * h * c);
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>((i * 37 + i / 7 * 11) & 0xff);
  return p;
}

void save(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  SAL_CHECK(f && std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() && std::fclose(f) == 0, path,
            ": cannot write");
  std::printf("%s (%zu bytes)\n", path.c_str(), bytes.size());
}

void jpeg(const std::string& path, int w, int h, int pf, int subsamp, int quality, int flags) {
  tjhandle c = tjInitCompress();
  SAL_CHECK(c, "tjInitCompress failed");
  const std::vector<uint8_t> px = pattern(w, h, tjPixelSize[pf]);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  const int rc = tjCompress2(c, px.data(), w, 0, h, pf, &buf, &size, subsamp, quality, flags);
  SAL_CHECK(rc == 0, path, ": tjCompress2: ", tjGetErrorStr2(c));
  save(path, std::vector<uint8_t>(buf, buf + size));
  tjFree(buf);
  tjDestroy(c);
}

void png_write_fn(png_structp png, png_bytep data, size_t n) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + n);
}

// A PNG with the given libpng color type, bit depth and interlacing; rows of pattern bytes.
void png(const std::string& path, int w, int h, int color_type, int depth, int interlace) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  SAL_CHECK(png && info, "png_create_write_struct failed");
  std::vector<uint8_t> out;
  if (setjmp(png_jmpbuf(png))) sal::fail(path, ": libpng error");
  png_set_write_fn(png, &out, png_write_fn, nullptr);
  png_set_IHDR(png, info, w, h, depth, color_type, interlace, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (color_type == PNG_COLOR_TYPE_PALETTE) {
    png_color pal[16];
    for (int i = 0; i < 16; ++i) pal[i] = {static_cast<png_byte>(i * 16), static_cast<png_byte>(255 - i * 8), 77};
    png_set_PLTE(png, info, pal, 16);
  }
  png_write_info(png, info);
  const int channels = png_get_channels(png, info);
  const size_t row_bytes = (static_cast<size_t>(w) * channels * depth + 7) / 8;
  std::vector<uint8_t> px = pattern(static_cast<int>(row_bytes), h, 1);
  std::vector<png_bytep> rows(static_cast<size_t>(h));
  for (int y = 0; y < h; ++y) rows[static_cast<size_t>(y)] = px.data() + static_cast<size_t>(y) * row_bytes;
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  save(path, out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_image_seeds OUT_DIR\n");
    return 2;
  }
  const std::string d = argv[1];
  try {
    jpeg(d + "/rgb444.jpg", 8, 8, TJPF_RGB, TJSAMP_444, 95, 0);
    jpeg(d + "/rgb420.jpg", 17, 13, TJPF_RGB, TJSAMP_420, 75, 0);
    jpeg(d + "/gray.jpg", 9, 9, TJPF_GRAY, TJSAMP_GRAY, 90, 0);
    jpeg(d + "/progressive.jpg", 16, 16, TJPF_RGB, TJSAMP_422, 85, TJFLAG_PROGRESSIVE);
    jpeg(d + "/cmyk.jpg", 8, 8, TJPF_CMYK, TJSAMP_444, 90, 0);
    sal::Image g(6, 5, 1), rgb(7, 4, 3);
    g.pixels = pattern(6, 5, 1);
    rgb.pixels = pattern(7, 4, 3);
    save(d + "/gray8.png", sal::encode_png(g));
    save(d + "/rgb8.png", sal::encode_png(rgb));
    png(d + "/palette4.png", 5, 5, PNG_COLOR_TYPE_PALETTE, 4, PNG_INTERLACE_NONE);
    png(d + "/gray1.png", 9, 3, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE);
    png(d + "/rgba16.png", 4, 4, PNG_COLOR_TYPE_RGB_ALPHA, 16, PNG_INTERLACE_NONE);
    png(d + "/gray_alpha_adam7.png", 8, 8, PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_ADAM7);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
