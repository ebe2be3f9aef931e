// Image decoding/encoding tests: JPEGs made here with libturbojpeg (RGB, gray, CMYK), PNGs made here
// with libpng (palette, 1-bit gray, 16-bit gray+alpha, RGBA, interlaced), exact PNG round trips,
// errors for corrupt/truncated/unknown files naming the file, tensor conversion and bilinear resize,
// and pixel-exact agreement with PIL on two images of ../shared/data.
#include <doctest/doctest.h>
#include <png.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <atomic>
#include <csetjmp>
#include <filesystem>
#include <functional>
#include <fstream>

#include "engine/image.h"
#include "engine/tar.h"
#include "tests/error_of.h"
#include "tests/temp_files.h"

using namespace sal;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("sal_image_test_") {}
};

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  test::write_file(path, bytes.data(), bytes.size());
}

// Compresses interleaved pixels (pixel format pf) with libturbojpeg.
std::vector<uint8_t> make_jpeg(const std::vector<uint8_t>& pixels, int w, int h, int pf, int subsamp, int quality) {
  tjhandle c = tjInitCompress();
  REQUIRE(c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  int rc = tjCompress2(c, pixels.data(), w, 0, h, pf, &buf, &size, subsamp, quality, 0);
  INFO("tjCompress2: ", tjGetErrorStr2(c));
  REQUIRE(rc == 0);
  std::vector<uint8_t> out(buf, buf + size);
  tjFree(buf);
  tjDestroy(c);
  return out;
}

// An RGB test pattern: smooth gradients (JPEG keeps them within a few levels).
Image gradient_rgb(int w, int h) {
  Image im(w, h, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      im.at(x, y, 0) = static_cast<uint8_t>(20 + 200 * x / (w - 1));
      im.at(x, y, 1) = static_cast<uint8_t>(30 + 180 * y / (h - 1));
      im.at(x, y, 2) = static_cast<uint8_t>(128);
    }
  return im;
}

int max_abs_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  REQUIRE(a.size() == b.size());
  int m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(int(a[i]) - int(b[i])));
  return m;
}

// A PNG written directly with libpng: rows are in the file's own pixel format.
struct PngSpec {
  int w, h, color_type, bit_depth;
  bool interlace = false;
  std::vector<png_color> palette;
  std::vector<uint8_t> trns_alpha;  // tRNS for a palette
  bool trns_color = false;          // tRNS for gray or RGB: the level trns_value is transparent
  uint16_t trns_value = 0;
};

void png_append(png_structp png, png_bytep data, png_size_t n) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + n);
}
void png_no_flush(png_structp) {}

bool write_png_raw(png_structp png, png_infop info, const PngSpec* s, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, static_cast<png_uint_32>(s->w), static_cast<png_uint_32>(s->h), s->bit_depth,
               s->color_type, s->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!s->palette.empty())
    png_set_PLTE(png, info, const_cast<png_colorp>(s->palette.data()), static_cast<int>(s->palette.size()));
  if (!s->trns_alpha.empty())  // palette transparency
    png_set_tRNS(png, info, const_cast<png_bytep>(s->trns_alpha.data()), static_cast<int>(s->trns_alpha.size()),
                 nullptr);
  if (s->trns_color) {  // the one transparent gray level or RGB colour
    png_color_16 c{};
    c.gray = c.red = s->trns_value;
    png_set_tRNS(png, info, nullptr, 0, &c);
  }
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

std::vector<uint8_t> make_png(const PngSpec& s, std::vector<std::vector<uint8_t>> rows) {
  std::vector<uint8_t> out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(png, &out, png_append, png_no_flush);
  std::vector<png_bytep> ptrs;
  for (auto& r : rows) ptrs.push_back(r.data());
  bool ok = write_png_raw(png, info, &s, ptrs.data());
  png_destroy_write_struct(&png, &info);
  REQUIRE(ok);
  return out;
}

using test::error_of;

}  // namespace

TEST_CASE("image: sniffing by the first bytes") {
  const uint8_t jpg[] = {0xff, 0xd8, 0xff, 0xe0};
  const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a'};
  CHECK(sniff_image_format(jpg, 4) == ImageFormat::JPEG);
  CHECK(sniff_image_format(png, 8) == ImageFormat::PNG);
  CHECK(sniff_image_format(png, 7) == ImageFormat::Unknown);
  CHECK(sniff_image_format(gif, 6) == ImageFormat::Unknown);
  CHECK(sniff_image_format(jpg, 0) == ImageFormat::Unknown);
}

TEST_CASE("image: JPEG decoding of RGB, gray and CMYK files made by libturbojpeg") {
  SUBCASE("RGB 4:4:4 quality 100 stays within 3 levels; 4:2:0 quality 90 within 12") {
    Image src = gradient_rgb(37, 21);  // odd sizes: partial MCUs
    Image a = decode_image(make_jpeg(src.pixels, 37, 21, TJPF_RGB, TJSAMP_444, 100), "a.jpg");
    CHECK(a.width == 37);
    CHECK(a.height == 21);
    CHECK(a.channels == 3);
    CHECK(max_abs_diff(a.pixels, src.pixels) <= 3);
    Image b = decode_image(make_jpeg(src.pixels, 37, 21, TJPF_RGB, TJSAMP_420, 90), "b.jpg");
    CHECK(max_abs_diff(b.pixels, src.pixels) <= 12);
  }
  SUBCASE("grayscale becomes RGB with three equal channels") {
    std::vector<uint8_t> gray(16 * 8);
    for (int i = 0; i < 16 * 8; ++i) gray[size_t(i)] = static_cast<uint8_t>(40 + (i % 16) * 10);
    Image g = decode_image(make_jpeg(gray, 16, 8, TJPF_GRAY, TJSAMP_GRAY, 100), "g.jpg");
    REQUIRE(g.pixels.size() == 16 * 8 * 3);
    int worst = 0;
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 16; ++x) {
        CHECK(g.at(x, y, 0) == g.at(x, y, 1));
        CHECK(g.at(x, y, 1) == g.at(x, y, 2));
        worst = std::max(worst, std::abs(int(g.at(x, y, 0)) - int(gray[size_t(y * 16 + x)])));
      }
    CHECK(worst <= 2);
  }
  SUBCASE("CMYK (YCCK) is read as Adobe-inverted CMYK, as PIL does") {
    // Two flat 8x8 blocks, so the JPEG keeps the values (DC only). Stored s = 255 - ink;
    // R = (255-K) - C*(255-K)/255 with C = 255 - s_c, K = 255 - s_k: R = s_k * s_c / 255 (rounded).
    const uint8_t blocks[2][4] = {{255, 255, 255, 255}, {200, 100, 50, 128}};
    std::vector<uint8_t> cmyk(16 * 8 * 4);
    for (int y = 0; y < 8; ++y)
      for (int x = 0; x < 16; ++x)
        for (int c = 0; c < 4; ++c) cmyk[size_t((y * 16 + x) * 4 + c)] = blocks[x / 8][c];
    Image im = decode_image(make_jpeg(cmyk, 16, 8, TJPF_CMYK, TJSAMP_444, 100), "cmyk.jpg");
    const int expect[2][3] = {{255, 255, 255}, {100, 50, 25}};  // 128*200/255=100.4, 128*100/255=50.2, 25.1
    for (int b = 0; b < 2; ++b)
      for (int c = 0; c < 3; ++c) CHECK(std::abs(int(im.at(b * 8 + 3, 4, c)) - expect[b][c]) <= 2);
  }
}

TEST_CASE("image: PNG encode/decode round trips exactly") {
  Image rgb(13, 7, 3);
  for (size_t i = 0; i < rgb.pixels.size(); ++i) rgb.pixels[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
  Image back = decode_image(encode_png(rgb), "rgb.png");
  CHECK(back.width == 13);
  CHECK(back.height == 7);
  CHECK(back.pixels == rgb.pixels);

  Image gray(5, 9, 1);
  for (size_t i = 0; i < gray.pixels.size(); ++i) gray.pixels[i] = static_cast<uint8_t>(i * 53 % 256);
  TempDir tmp;
  write_png(tmp.file("gray.png"), gray);
  Image g = read_image(tmp.file("gray.png"));
  REQUIRE(g.channels == 3);
  for (int y = 0; y < 9; ++y)
    for (int x = 0; x < 5; ++x)
      for (int c = 0; c < 3; ++c) CHECK(g.at(x, y, c) == gray.at(x, y, 0));

  CHECK(error_of([] { encode_png(Image{}); }).find("encode_png") != std::string::npos);
  CHECK(error_of([&] { encode_png(rgb, 10); }).find("compression level 10 is outside 0-9") != std::string::npos);
  CHECK(error_of([&] { encode_png(rgb, -1); }).find("compression level -1 is outside 0-9") != std::string::npos);
  Image two;
  two.width = 2, two.height = 2, two.channels = 2, two.pixels.assign(8, 0);
  CHECK(error_of([&] { encode_png(two); }).find("2 channels") != std::string::npos);
  CHECK(error_of([&] { write_png(tmp.file("no/such/dir.png"), rgb); }).find("no/such/dir.png: cannot create") !=
        std::string::npos);
}

TEST_CASE("image: every PNG compression level round trips, and the levels do compress") {
  // A smooth gradient with a little texture, like a mask overlay: compressible, not trivially so.
  Image im(96, 64, 3);
  for (int y = 0; y < im.height; ++y)
    for (int x = 0; x < im.width; ++x)
      for (int c = 0; c < 3; ++c)
        im.pixels[(static_cast<size_t>(y) * im.width + x) * 3 + c] = static_cast<uint8_t>((x * 2 + y * (c + 1) + (x * y) % 5) % 256);
  std::vector<size_t> sizes;
  for (int level = 0; level <= 9; ++level) {
    CAPTURE(level);
    const std::vector<uint8_t> png = encode_png(im, level);
    CHECK(decode_image(png, "level.png").pixels == im.pixels);
    sizes.push_back(png.size());
  }
  MESSAGE("PNG bytes at levels 0, 1, 6, 9: ", sizes[0], " ", sizes[1], " ", sizes[6], " ", sizes[9], " (raw ",
          im.pixels.size(), ")");
  CHECK(sizes[0] > im.pixels.size());  // stored: the pixels plus headers and filter bytes
  CHECK(sizes[1] < sizes[0] / 2);
  CHECK(sizes[9] <= sizes[1]);
  CHECK(encode_png(im) == encode_png(im, kPngDefaultLevel));
}

TEST_CASE("image: PNG colour types are converted to 8-bit RGB") {
  SUBCASE("palette") {
    PngSpec s{3, 2, PNG_COLOR_TYPE_PALETTE, 8};
    s.palette = {{255, 0, 0}, {0, 255, 0}, {10, 20, 30}};
    Image im = decode_image(make_png(s, {{0, 1, 2}, {2, 2, 0}}), "pal.png");
    CHECK(im.pixels == std::vector<uint8_t>{255, 0, 0, 0, 255, 0, 10, 20, 30, 10, 20, 30, 10, 20, 30, 255, 0, 0});
  }
  SUBCASE("palette with tRNS transparency: colours kept, transparency dropped") {
    PngSpec s{3, 1, PNG_COLOR_TYPE_PALETTE, 8};
    s.palette = {{255, 0, 0}, {0, 255, 0}, {10, 20, 30}};
    s.trns_alpha = {0, 128};
    Image im = decode_image(make_png(s, {{0, 1, 2}}), "pal_trns.png");
    CHECK(im.pixels == std::vector<uint8_t>{255, 0, 0, 0, 255, 0, 10, 20, 30});
  }
  SUBCASE("gray and RGB with a tRNS colour") {
    PngSpec g{2, 1, PNG_COLOR_TYPE_GRAY, 8};
    g.trns_color = true, g.trns_value = 7;
    CHECK(decode_image(make_png(g, {{7, 9}}), "g_trns.png").pixels == std::vector<uint8_t>{7, 7, 7, 9, 9, 9});
    PngSpec g4{2, 1, PNG_COLOR_TYPE_GRAY, 4};
    g4.trns_color = true, g4.trns_value = 1;
    CHECK(decode_image(make_png(g4, {{0x1f}}), "g4_trns.png").pixels ==
          std::vector<uint8_t>{17, 17, 17, 255, 255, 255});
    PngSpec c{1, 1, PNG_COLOR_TYPE_RGB, 8};
    c.trns_color = true, c.trns_value = 5;
    CHECK(decode_image(make_png(c, {{5, 0, 0}}), "rgb_trns.png").pixels == std::vector<uint8_t>{5, 0, 0});
  }
  SUBCASE("1-bit gray expands to 0/255") {
    PngSpec s{10, 1, PNG_COLOR_TYPE_GRAY, 1};
    Image im = decode_image(make_png(s, {{0b10110000, 0b01000000}}), "bits.png");
    const int expect[10] = {1, 0, 1, 1, 0, 0, 0, 0, 0, 1};
    for (int x = 0; x < 10; ++x)
      for (int c = 0; c < 3; ++c) CHECK(im.at(x, 0, c) == expect[x] * 255);
  }
  SUBCASE("16-bit gray + alpha keeps the high byte and drops alpha") {
    PngSpec s{2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 16};
    // big-endian 16-bit samples: (0x1234, alpha 0), (0xabcd, alpha 0xffff)
    Image im = decode_image(make_png(s, {{0x12, 0x34, 0, 0, 0xab, 0xcd, 0xff, 0xff}}), "ga16.png");
    CHECK(im.pixels == std::vector<uint8_t>{0x12, 0x12, 0x12, 0xab, 0xab, 0xab});
  }
  SUBCASE("RGBA drops alpha without compositing") {
    PngSpec s{2, 1, PNG_COLOR_TYPE_RGBA, 8};
    Image im = decode_image(make_png(s, {{1, 2, 3, 0, 4, 5, 6, 128}}), "rgba.png");
    CHECK(im.pixels == std::vector<uint8_t>{1, 2, 3, 4, 5, 6});
  }
  SUBCASE("Adam7 interlaced") {
    PngSpec s{9, 9, PNG_COLOR_TYPE_RGB, 8};
    s.interlace = true;
    std::vector<std::vector<uint8_t>> rows(9, std::vector<uint8_t>(27));
    for (int y = 0; y < 9; ++y)
      for (int i = 0; i < 27; ++i) rows[size_t(y)][size_t(i)] = static_cast<uint8_t>(y * 27 + i);
    Image im = decode_image(make_png(s, rows), "adam7.png");
    for (int y = 0; y < 9; ++y)
      for (int x = 0; x < 9; ++x) CHECK(im.at(x, y, 1) == y * 27 + x * 3 + 1);
  }
}

TEST_CASE("image: corrupt, truncated and unsupported files give errors naming the file") {
  TempDir tmp;
  Image src = gradient_rgb(32, 24);
  std::vector<uint8_t> jpg = make_jpeg(src.pixels, 32, 24, TJPF_RGB, TJSAMP_420, 90);
  std::vector<uint8_t> png = encode_png(src);

  SUBCASE("truncated JPEG") {
    // cut inside the entropy-coded scan: libjpeg's "Premature end of JPEG file" warning is an error here
    std::vector<uint8_t> cut(jpg.begin(), jpg.end() - 50);
    write_bytes(tmp.file("cut.jpg"), cut);
    std::string e = error_of([&] { read_image(tmp.file("cut.jpg")); });
    MESSAGE(e);
    CHECK(e.find(tmp.file("cut.jpg") + ": truncated JPEG (" + std::to_string(cut.size()) +
                 " bytes, no end-of-image marker; libjpeg-turbo: ") == 0);
    // cut inside the Huffman tables, and before the frame header
    std::vector<uint8_t> tables(jpg.begin(), jpg.begin() + 300), head(jpg.begin(), jpg.begin() + 40);
    e = error_of([&] { decode_image(tables, "tables.jpg"); });
    MESSAGE(e);
    CHECK(e.find("tables.jpg: truncated JPEG (300 bytes, no end-of-image marker; libjpeg-turbo: ") == 0);
    CHECK(error_of([&] { decode_image(head, "head.jpg"); }) ==
          "head.jpg: truncated JPEG (the data ends before the frame header)");
    // A failed decode leaves no state behind: the next file on this thread decodes.
    CHECK(max_abs_diff(decode_image(jpg, "ok.jpg").pixels, src.pixels) <= 12);
  }
  SUBCASE("corrupt JPEG: a bad start-of-frame segment") {
    std::vector<uint8_t> bad = jpg;
    size_t sof = 2;
    while (!(bad[sof] == 0xff && bad[sof + 1] == 0xc0)) sof += 2 + size_t(bad[sof + 2] << 8 | bad[sof + 3]);
    bad[sof + 4] = 7;  // sample precision 7 bits: libjpeg rejects it
    write_bytes(tmp.file("bad.jpg"), bad);
    std::string e = error_of([&] { read_image(tmp.file("bad.jpg")); });
    MESSAGE(e);
    CHECK(e.find(tmp.file("bad.jpg") + ": corrupt JPEG (libjpeg-turbo: ") == 0);
    CHECK(e.find("precision") != std::string::npos);
  }
  SUBCASE("truncated PNG") {
    std::vector<uint8_t> cut(png.begin(), png.end() - 30);
    write_bytes(tmp.file("cut.png"), cut);
    std::string e = error_of([&] { read_image(tmp.file("cut.png")); });
    CHECK(e.find(tmp.file("cut.png") + ": corrupt PNG: truncated PNG: ") == 0);
    CHECK(e.find("data ends at " + std::to_string(cut.size())) != std::string::npos);
  }
  SUBCASE("corrupt PNG: a flipped byte fails the chunk CRC") {
    std::vector<uint8_t> bad = png;
    bad[20] ^= 0x40;  // inside IHDR (width/height)
    std::string e = error_of([&] { decode_image(bad, "crc.png"); });
    MESSAGE(e);
    CHECK(e.find("crc.png: corrupt PNG: ") == 0);
    CHECK(e.find("CRC") != std::string::npos);
  }
  SUBCASE("unsupported format, empty file, missing file") {
    write_bytes(tmp.file("x.gif"), {'G', 'I', 'F', '8', '9', 'a', 1, 0});
    CHECK(error_of([&] { read_image(tmp.file("x.gif")); }) ==
          tmp.file("x.gif") + ": unsupported image format (starts with 47 49 46 38 39 61 01 00; JPEG and PNG are supported)");
    write_bytes(tmp.file("empty.jpg"), {});
    CHECK(error_of([&] { read_image(tmp.file("empty.jpg")); }) ==
          tmp.file("empty.jpg") + ": unsupported image format (the data is empty; JPEG and PNG are supported)");
    CHECK(error_of([&] { read_image(tmp.file("missing.png")); }).find("missing.png: cannot open") != std::string::npos);
    CHECK(error_of([&] { decode_png(jpg.data(), jpg.size(), "j.png"); }).find("j.png: not a PNG file (starts with ff d8 ff") ==
          0);
  }
}

TEST_CASE("image: tensors in [0,1], bilinear resize, and back") {
  Image im(4, 2, 3);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 4; ++x)
      for (int c = 0; c < 3; ++c) im.at(x, y, c) = static_cast<uint8_t>(c * 60 + y * 40 + x * 10);
  Tensor t = image_to_tensor(im);
  CHECK(t.shape() == Shape{3, 2, 4});
  std::vector<double> v = t.values();
  CHECK(v[0] == doctest::Approx(0.0));
  CHECK(v[1 * 8 + 1 * 4 + 3] == doctest::Approx((60 + 40 + 30) / 255.0));  // c=1, y=1, x=3
  CHECK(v[2 * 8 + 0 * 4 + 2] == doctest::Approx((120 + 20) / 255.0));

  // Halving with align_corners=false samples at 2i+0.5: the mean of each 2x2 block.
  Tensor half = image_to_tensor(im, 1, 2);
  CHECK(half.shape() == Shape{3, 1, 2});
  std::vector<double> h = half.values();
  CHECK(h[0] == doctest::Approx((0 + 10 + 40 + 50) / 4.0 / 255.0));
  CHECK(h[5] == doctest::Approx((140 + 150 + 180 + 190) / 4.0 / 255.0));  // c=2, block x=2..3
  // Same size: no resampling.
  CHECK(image_to_tensor(im, 2, 4).values() == v);

  Image back = tensor_to_image(t);
  CHECK(back.pixels == im.pixels);
  Tensor m = Tensor::from_values({-0.5, 0.2, 1.7, 0.5}, {1, 1, 2, 2});
  Image mask = tensor_to_image(m);
  CHECK(mask.channels == 1);
  CHECK(mask.pixels == std::vector<uint8_t>{0, 51, 255, 128});
  CHECK(error_of([] { tensor_to_image(Tensor::zeros({2, 3, 3})); }).find("2 channels") != std::string::npos);
}

TEST_CASE("image: decoded pixels equal PIL's on ../shared/data images") {
  // Reference values from Debian python3-pil 9.4 (same libjpeg-turbo 2.1.5):
  //   np.asarray(Image.open(f).convert("RGB")): shape, sum, and a few pixels.
  const std::string val = std::string(SAL_SHARED_DIR) + "/data/imagenet-val/images/ILSVRC2012_val_00000347.JPEG";
  REQUIRE_MESSAGE(fs::exists(val), val, " is missing (the shared data folder is needed)");
  Image im = read_image(val);
  REQUIRE(im.width == 227);
  REQUIRE(im.height == 227);
  int64_t sum = 0;
  for (uint8_t b : im.pixels) sum += b;
  CHECK(sum == 23143642);
  CHECK((std::vector<int>{im.at(0, 0, 0), im.at(0, 0, 1), im.at(0, 0, 2)}) == std::vector<int>{220, 225, 228});
  CHECK((std::vector<int>{im.at(50, 100, 0), im.at(50, 100, 1), im.at(50, 100, 2)}) == std::vector<int>{127, 85, 73});
  CHECK((std::vector<int>{im.at(226, 226, 0), im.at(226, 226, 1), im.at(226, 226, 2)}) ==
        std::vector<int>{63, 78, 59});

  // A CIFAR JPEG read straight from its tar entry.
  TarReader tar(std::string(SAL_SHARED_DIR) + "/data/cifar10/test.tar");
  TarEntry e;
  REQUIRE(tar.next(e));
  REQUIRE(e.name == "airplane/0000.jpg");
  Image c = decode_image(tar.read(e), e.name);
  REQUIRE(c.width == 32);
  sum = 0;
  for (uint8_t b : c.pixels) sum += b;
  CHECK(sum == 475641);
  CHECK((std::vector<int>{c.at(7, 16, 0), c.at(7, 16, 1), c.at(7, 16, 2)}) == std::vector<int>{212, 211, 217});
}
