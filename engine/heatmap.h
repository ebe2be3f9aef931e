// Pictures of saliency maps for people: the mask as a gray image, a heat map (a blue-cyan-yellow-red
// ramp) blended over the image, box outlines, and pasting cells into a grid. Used by tools/sal_mask
// (per-image PNGs) and tools/sal_eval (the images x methods grid). Maps are H*W floats in [0,1]
// (values outside are clamped), row-major, of the image's size.
#pragma once
#include <array>
#include <cstdint>

#include "engine/annotations.h"
#include "engine/image.h"

namespace sal {

// Gray image (channels 1): round(clamp(m) * 255).
Image mask_to_gray(const float* m, int width, int height);
// The ramp colour of v in [0,1] (0 dark blue, 0.33 cyan, 0.66 yellow, 1 red).
std::array<uint8_t, 3> heat_colour(double v);
// RGB: (1 - alpha * m) * image + alpha * m * heat_colour(m): low values leave the image as it is.
Image overlay_heatmap(const Image& rgb, const float* m, double alpha = 0.6);
// A 1-pixel outline of the box (clipped to the image).
void draw_box(Image& rgb, const Box& box, std::array<uint8_t, 3> colour);
// Nearest-neighbour scaling by an integer factor >= 1.
Image upscale(const Image& image, int factor);
// Box-filter shrinking by an integer factor >= 1 (each output pixel the rounded mean of factor x factor
// input pixels; a remainder at the right/bottom is dropped).
Image downscale(const Image& image, int factor);
// Copies `cell` into `canvas` with its top-left corner at (x, y) (clipped); channels must match.
void paste(Image& canvas, const Image& cell, int x, int y);

}  // namespace sal
