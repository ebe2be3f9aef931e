// Harness rows for resampling: bilinear resize up, down, mixed and same size; pixel shuffle and
// unshuffle (each one's backward is the other).
#include "tests/op_check.h"

namespace sal::test {

namespace {

OpCase resize_case(const std::string& name, Shape x, int64_t out_h, int64_t out_w) {
  return OpCase{.name = name,
                .shapes = {x},
                .check_grad = {true},
                .forward = [out_h, out_w](Ctx& c, const Inputs& in) { return resize_bilinear(c, in[0], out_h, out_w); },
                .backward = [](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
                  return std::vector<Tensor>{resize_bilinear_backward(c, dy, in[0].shape())};
                }};
}

OpCase shuffle_case(const std::string& name, Shape x, int r) {
  return OpCase{.name = name,
                .shapes = {x},
                .check_grad = {true},
                .forward = [r](Ctx& c, const Inputs& in) { return pixel_shuffle(c, in[0], r); },
                .backward = [r](Ctx& c, const Inputs&, const Tensor&, const Tensor& dy) {
                  return std::vector<Tensor>{pixel_unshuffle(c, dy, r)};
                }};
}

OpCase unshuffle_case(const std::string& name, Shape x, int r) {
  return OpCase{.name = name,
                .shapes = {x},
                .check_grad = {true},
                .forward = [r](Ctx& c, const Inputs& in) { return pixel_unshuffle(c, in[0], r); },
                .backward = [r](Ctx& c, const Inputs&, const Tensor&, const Tensor& dy) {
                  return std::vector<Tensor>{pixel_shuffle(c, dy, r)};
                }};
}

// A big row (many blocks on CUDA): fewer finite differences.
OpCase big(OpCase c, int fd = 16) {
  c.max_fd_elements = fd;
  return c;
}

}  // namespace

SAL_OP_CASES {
  return {
      resize_case("resize_bilinear/up_2x3_to_5x7", {2, 2, 2, 3}, 5, 7),
      resize_case("resize_bilinear/down_7x5_to_3x2", {1, 1, 7, 5}, 3, 2),
      resize_case("resize_bilinear/mixed_4x4_to_6x3", {1, 2, 4, 4}, 6, 3),
      resize_case("resize_bilinear/x2_3x3_to_6x6", {1, 3, 3, 3}, 6, 6),
      resize_case("resize_bilinear/same_size", {2, 1, 3, 3}, 3, 3),
      resize_case("resize_bilinear/from_1x1", {1, 2, 1, 1}, 3, 4),
      shuffle_case("pixel_shuffle/r2", {1, 8, 2, 3}, 2),
      shuffle_case("pixel_shuffle/r3_batch2", {2, 9, 1, 2}, 3),
      shuffle_case("pixel_shuffle/r2_1x1", {1, 4, 1, 1}, 2),
      unshuffle_case("pixel_unshuffle/r2", {1, 2, 4, 6}, 2),
      unshuffle_case("pixel_unshuffle/r3_batch2", {2, 1, 3, 3}, 3),
      big(resize_case("resize_bilinear/x4_56_to_224", {2, 1, 56, 56}, 224, 224)),
      big(resize_case("resize_bilinear/down_odd_97x83_to_31x40", {1, 2, 97, 83}, 31, 40)),
      big(resize_case("resize_bilinear/up_odd_batch1_13x9_to_50x37", {1, 3, 13, 9}, 50, 37)),
      big(resize_case("resize_bilinear/to_1x1", {2, 2, 5, 6}, 1, 1)),
      big(resize_case("resize_bilinear/single_row_1x40_to_3x101", {1, 1, 1, 40}, 3, 101)),
      big(shuffle_case("pixel_shuffle/r2_2x16x9x11", {2, 16, 9, 11}, 2)),
      big(shuffle_case("pixel_shuffle/r3_batch1_9x13x7", {1, 9, 13, 7}, 3)),
      big(unshuffle_case("pixel_unshuffle/r3_1x3x12x18", {1, 3, 12, 18}, 3)),
      big(unshuffle_case("pixel_unshuffle/r2_2x5x22x14", {2, 5, 22, 14}, 2)),
  };
}

}  // namespace sal::test
