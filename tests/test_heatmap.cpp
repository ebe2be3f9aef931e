// Tests of the saliency pictures (engine/heatmap.h) and the .npy writer (engine/npy.h) on hand cases,
// and of the image source listing (engine/image_sources.h) on a folder and a WebDataset tar.
#include <doctest/doctest.h>

#include <cstring>

#include "engine/heatmap.h"
#include "engine/image_sources.h"
#include "engine/npy.h"
#include "engine/tar_writer.h"
#include "temp_files.h"

using namespace sal;
using sal::test::TempDir;

TEST_CASE("heatmap: gray masks, the colour ramp, overlays, boxes, scaling and pasting") {
  const float m[4] = {0.0f, 0.5f, 1.0f, 2.0f};
  const Image g = mask_to_gray(m, 2, 2);
  CHECK(g.channels == 1);
  CHECK(g.pixels == std::vector<uint8_t>{0, 128, 255, 255});  // clamped
  CHECK(heat_colour(0.0) == std::array<uint8_t, 3>{0, 0, 128});
  CHECK(heat_colour(1.0) == std::array<uint8_t, 3>{255, 0, 0});
  CHECK(heat_colour(0.5) == std::array<uint8_t, 3>{128, 255, 128});
  Image img(2, 2, 3);
  for (uint8_t& p : img.pixels) p = 100;
  const Image over = overlay_heatmap(img, m, 0.5);
  // m = 0 leaves the pixel; m = 1 blends half of red in.
  CHECK(over.at(0, 0, 0) == 100);
  CHECK(over.at(0, 1, 0) == 178);  // 0.5 * 100 + 0.5 * 255 = 177.5
  CHECK(over.at(0, 1, 1) == 50);
  Image canvas(4, 3, 3);
  draw_box(canvas, Box{1, 0, 2, 1}, {9, 9, 9});
  CHECK(canvas.at(1, 0, 0) == 9);
  CHECK(canvas.at(2, 1, 2) == 9);
  CHECK(canvas.at(0, 0, 0) == 0);
  CHECK(canvas.at(1, 2, 0) == 0);
  Image small(2, 1, 1);
  small.pixels = {10, 20};
  const Image big = upscale(small, 2);
  CHECK(big.pixels == std::vector<uint8_t>{10, 10, 20, 20, 10, 10, 20, 20});
  Image odd(3, 2, 1);
  odd.pixels = {0, 4, 99, 8, 12, 99};
  CHECK(downscale(odd, 2).pixels == std::vector<uint8_t>{6});  // (0 + 4 + 8 + 12) / 4; the third column dropped
  Image dst(3, 3, 1);
  paste(dst, big, 2, 1);  // clipped at the right and bottom
  CHECK(dst.pixels == std::vector<uint8_t>{0, 0, 0, 0, 0, 10, 0, 0, 10});
  CHECK_THROWS_WITH(paste(canvas, big, 0, 0), doctest::Contains("1-channel cell on a 3-channel canvas"));
}

TEST_CASE("npy: header and data of a float32 array") {
  TempDir t("sal_npy_");
  const float v[6] = {1, 2, 3, 4, 5, 6};
  write_npy(t.file("a.npy"), v, {2, 3});
  const std::string bs = sal::test::read_bytes(t.file("a.npy"));
  const std::vector<uint8_t> b(bs.begin(), bs.end());
  REQUIRE(b.size() == 128u + 24u);
  CHECK(std::memcmp(b.data(), "\x93NUMPY\x01\x00", 8) == 0);
  CHECK(b[8] + 256 * b[9] == 118);
  const std::string header(b.begin() + 10, b.begin() + 128);
  CHECK(header.find("{'descr': '<f4', 'fortran_order': False, 'shape': (2,3), }") == 0);
  CHECK(header.back() == '\n');
  float back[6];
  std::memcpy(back, b.data() + 128, 24);
  CHECK(back[5] == 6.0f);
  write_npy(t.file("b.npy"), v, {5});
  const std::string c = sal::test::read_bytes(t.file("b.npy"));
  CHECK(std::string(c.begin() + 10, c.begin() + 128).find("'shape': (5,)") != std::string::npos);
}

TEST_CASE("image sources: a folder's images sorted, a tar's images with their .cls labels, unique stems") {
  TempDir t("sal_sources_");
  std::filesystem::create_directories(t.dir / "f");
  for (const char* n : {"b.png", "a.JPG", "notes.txt", "c.jpeg"}) sal::test::write_file(t.file(std::string("f/") + n), "x", 1);
  {
    TarWriter w(t.file("s.tar"));
    w.add("x/k1.jpg", std::string("img1"));
    w.add("x/k1.cls", std::string("7\n"));
    w.add("x/k2.png", std::string("img2"));
    w.add("a.JPG", std::string("img3"));
    w.finish();
  }
  const std::vector<ImageSource> s = list_image_sources({t.file("f"), t.file("s.tar")});
  REQUIRE(s.size() == 6);
  CHECK(s[0].key == "a.JPG");
  CHECK(s[1].key == "b.png");
  CHECK(s[2].key == "c.jpeg");
  CHECK(s[3].key == "x/k1.jpg");
  CHECK(s[3].label == 7);
  CHECK(s[3].stem == "x_k1");
  CHECK(s[4].label == -1);
  CHECK(s[5].stem == "a_2");  // "a" is taken by the folder's a.JPG
  CHECK(read_source(s[3]) == std::vector<uint8_t>{'i', 'm', 'g', '1'});
  CHECK(s[3].name == t.file("s.tar") + ":x/k1.jpg");
  CHECK_THROWS_WITH(list_image_sources({t.file("missing")}), doctest::Contains("no such file or folder"));
  {
    TarWriter w(t.file("bad.tar"));
    w.add("k.jpg", std::string("i"));
    w.add("k.cls", std::string("cat"));
    w.finish();
  }
  CHECK_THROWS_WITH(list_image_sources({t.file("bad.tar")}), doctest::Contains("is not a class index: 'cat'"));
}
