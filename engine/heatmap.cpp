// Saliency map pictures (engine/heatmap.h): plain loops over 8-bit pixels.
#include "engine/heatmap.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace sal {

namespace {
double clamp01(double v) { return std::isfinite(v) ? std::clamp(v, 0.0, 1.0) : 0.0; }
uint8_t to_byte(double v) { return static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 255.0))); }
}  // namespace

Image mask_to_gray(const float* m, int width, int height) {
  Image g(width, height, 1);
  for (size_t i = 0; i < g.pixels.size(); ++i) g.pixels[i] = to_byte(clamp01(m[i]) * 255.0);
  return g;
}

std::array<uint8_t, 3> heat_colour(double v) {
  // Piecewise linear through (0: 0,0,128) (1/3: 0,255,255) (2/3: 255,255,0) (1: 255,0,0).
  static const double stops[4][3] = {{0, 0, 128}, {0, 255, 255}, {255, 255, 0}, {255, 0, 0}};
  const double t = clamp01(v) * 3.0;
  const int i = std::min(2, static_cast<int>(t));
  const double f = t - i;
  std::array<uint8_t, 3> c{};
  for (int k = 0; k < 3; ++k) c[static_cast<size_t>(k)] = to_byte(stops[i][k] * (1 - f) + stops[i + 1][k] * f);
  return c;
}

Image overlay_heatmap(const Image& rgb, const float* m, double alpha) {
  SAL_CHECK(rgb.channels == 3, "overlay_heatmap: the image must be RGB, it has ", rgb.channels, " channels");
  Image out = rgb;
  const size_t n = static_cast<size_t>(rgb.width) * static_cast<size_t>(rgb.height);
  for (size_t i = 0; i < n; ++i) {
    const double v = clamp01(m[i]), a = alpha * v;
    const std::array<uint8_t, 3> c = heat_colour(v);
    for (size_t k = 0; k < 3; ++k) out.pixels[i * 3 + k] = to_byte((1 - a) * rgb.pixels[i * 3 + k] + a * c[k]);
  }
  return out;
}

void draw_box(Image& rgb, const Box& box, std::array<uint8_t, 3> colour) {
  if (box.empty() || rgb.channels != 3) return;
  const auto put = [&](int x, int y) {
    if (x < 0 || y < 0 || x >= rgb.width || y >= rgb.height) return;
    for (int k = 0; k < 3; ++k) rgb.at(x, y, k) = colour[static_cast<size_t>(k)];
  };
  for (int x = box.x0; x <= box.x1; ++x) {
    put(x, box.y0);
    put(x, box.y1);
  }
  for (int y = box.y0; y <= box.y1; ++y) {
    put(box.x0, y);
    put(box.x1, y);
  }
}

Image upscale(const Image& image, int factor) {
  SAL_CHECK(factor >= 1, "upscale: factor ", factor, " < 1");
  Image out(image.width * factor, image.height * factor, image.channels);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x)
      for (int k = 0; k < image.channels; ++k) out.at(x, y, k) = image.at(x / factor, y / factor, k);
  return out;
}

Image downscale(const Image& image, int factor) {
  SAL_CHECK(factor >= 1, "downscale: factor ", factor, " < 1");
  Image out(std::max(1, image.width / factor), std::max(1, image.height / factor), image.channels);
  const int fw = std::min(factor, image.width), fh = std::min(factor, image.height);
  for (int y = 0; y < out.height; ++y)
    for (int x = 0; x < out.width; ++x)
      for (int k = 0; k < image.channels; ++k) {
        int sum = 0;
        for (int dy = 0; dy < fh; ++dy)
          for (int dx = 0; dx < fw; ++dx) sum += image.at(x * factor + dx, y * factor + dy, k);
        out.at(x, y, k) = static_cast<uint8_t>((sum + fw * fh / 2) / (fw * fh));
      }
  return out;
}

void paste(Image& canvas, const Image& cell, int x, int y) {
  SAL_CHECK(canvas.channels == cell.channels, "paste: ", cell.channels, "-channel cell on a ", canvas.channels,
            "-channel canvas");
  for (int yy = 0; yy < cell.height; ++yy)
    for (int xx = 0; xx < cell.width; ++xx) {
      const int cx = x + xx, cy = y + yy;
      if (cx < 0 || cy < 0 || cx >= canvas.width || cy >= canvas.height) continue;
      for (int k = 0; k < cell.channels; ++k) canvas.at(cx, cy, k) = cell.at(xx, yy, k);
    }
}

}  // namespace sal
