// Hand-worked cases, comparisons with direct-loop references, and argument errors for conv2d,
// conv_transpose2d and linear. The finite-difference gradient checks of every backward run from
// the rows in tests/op_cases/conv_cases.cpp.
#include <doctest/doctest.h>

#include <omp.h>

#include <cmath>
#include <limits>
#include <random>

#include "engine/arena.h"
#include "engine/cpu/conv_direct.h"
#include "engine/cpu/conv_winograd.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/gemm_narrow.h"
#include "engine/ops.h"
#include "tests/op_check.h"

using namespace sal;
using sal::test::all_close;
using sal::test::max_rel_diff;

namespace {

Tensor vals(std::vector<double> v, Shape s, DType dt = DType::F32) { return Tensor::from_values(v, s, dt); }

std::vector<double> iota_values(int64_t n, double start = 1) {
  std::vector<double> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = start + static_cast<double>(i);
  return v;
}

Tensor random_tensor(Shape s, std::mt19937_64& rng, DType dt = DType::F32) {
  return Tensor::from_values(test::uniform(s, rng), s, dt);
}

// Direct 7-loop conv2d, written from the definition.
Tensor reference_conv2d(const Tensor& x, const Tensor& w, const Tensor* b, const Conv2dArgs& a) {
  Shape ys = conv2d_out_shape(x.shape(), w.shape(), a);
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t K = w.dim(0), Cg = w.dim(1), R = w.dim(2), S = w.dim(3), P = ys[2], Q = ys[3];
  const int64_t Kg = K / a.groups;
  std::vector<double> xv = x.values(), wv = w.values(), bv = b ? b->values() : std::vector<double>{};
  std::vector<double> y(static_cast<size_t>(ys.numel()), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) {
          double acc = b ? bv[static_cast<size_t>(k)] : 0.0;
          const int64_t g = k / Kg;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t r = 0; r < R; ++r)
              for (int64_t s = 0; s < S; ++s) {
                const int64_t h = p * a.stride_h - a.pad_top + r * a.dil_h;
                const int64_t ww = q * a.stride_w - a.pad_left + s * a.dil_w;
                if (h < 0 || h >= H || ww < 0 || ww >= W) continue;
                acc += xv[static_cast<size_t>(((n * C + g * Cg + c) * H + h) * W + ww)] *
                       wv[static_cast<size_t>(((k * Cg + c) * R + r) * S + s)];
              }
          y[static_cast<size_t>(((n * K + k) * P + p) * Q + q)] = acc;
        }
  return Tensor::from_values(y, ys, DType::F64);
}

// Direct scatter: every input pixel adds w * x to the output pixels its taps reach (PyTorch
// ConvTranspose2d written from its definition, not from conv2d).
Tensor reference_conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor* b, const ConvTranspose2dArgs& a) {
  Shape ys = conv_transpose2d_out_shape(x.shape(), w.shape(), a);
  const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t Kg = w.dim(1), R = w.dim(2), S = w.dim(3), K = ys[1], P = ys[2], Q = ys[3];
  const int64_t Cg = C / a.groups;
  std::vector<double> xv = x.values(), wv = w.values(), bv = b ? b->values() : std::vector<double>{};
  std::vector<double> y(static_cast<size_t>(ys.numel()), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j) {
          const double v = xv[static_cast<size_t>(((n * C + c) * H + i) * W + j)];
          const int64_t g = c / Cg;
          for (int64_t kk = 0; kk < Kg; ++kk)
            for (int64_t r = 0; r < R; ++r)
              for (int64_t s = 0; s < S; ++s) {
                const int64_t oh = i * a.stride_h - a.pad_h + r * a.dil_h;
                const int64_t ow = j * a.stride_w - a.pad_w + s * a.dil_w;
                if (oh < 0 || oh >= P || ow < 0 || ow >= Q) continue;
                const int64_t k = g * Kg + kk;
                y[static_cast<size_t>(((n * K + k) * P + oh) * Q + ow)] +=
                    v * wv[static_cast<size_t>(((c * Kg + kk) * R + r) * S + s)];
              }
        }
  if (b)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k)
        for (int64_t i = 0; i < P * Q; ++i) y[static_cast<size_t>((n * K + k) * P * Q + i)] += bv[static_cast<size_t>(k)];
  return Tensor::from_values(y, ys, DType::F64);
}

// f32 tolerance against double for a conv with weights w: sums of C/g*R*S products in f32, whose rounding
// error grows with the length of the reduction (1e-5 up to 576 terms, e.g. 64 channels x 3x3).
double f32_tolerance(const Shape& w) { return 1e-5 * std::max(1.0, double(w[1] * w[2] * w[3]) / 576.0); }

// Geometries that reach every path of engine/cpu/conv.cpp (tests below).
struct Geo {
  Shape x, w;
  Conv2dArgs a;
};
std::vector<Geo> conv_geometries() {
  return {
      {{2, 3, 9, 8}, {4, 3, 3, 3}, Conv2dArgs::make(1, 1)},
      {{5, 3, 9, 8}, {4, 3, 3, 3}, Conv2dArgs::make(2, 1)},                   // odd batch, several chunks
      {{1, 8, 30, 20}, {6, 8, 1, 1}, Conv2dArgs::make(1, 0)},                 // 1x1 in place, batch 1
      {{4, 8, 30, 20}, {6, 8, 1, 1}, Conv2dArgs::make(1, 0)},                 // 1x1 in place, per thread
      {{3, 3, 40, 33}, {8, 3, 7, 7}, Conv2dArgs::make(2, 3)},                 // conv1-like
      {{8, 16, 7, 7}, {12, 16, 3, 3}, Conv2dArgs::make(1, 1)},                // small images batched
      {{16, 4, 4, 4}, {4, 4, 3, 3}, Conv2dArgs::make(1, 1)},                  // several batched chunks
      {{2, 6, 11, 10}, {9, 2, 3, 3}, Conv2dArgs::make(1, 1, 1, 3)},           // groups
      {{2, 8, 26, 25}, {8, 1, 3, 3}, Conv2dArgs::make(2, 1, 1, 8)},           // depthwise stride 2
      {{1, 4, 9, 9}, {4, 1, 5, 5}, Conv2dArgs::make(1, 4, 2, 4)},             // depthwise dilated
      {{2, 3, 10, 9}, {5, 3, 3, 2}, Conv2dArgs{2, 3, 0, 1, 1, 2, 2, 1, 1}},   // everything asymmetric
      {{2, 4, 15, 15}, {4, 4, 3, 3}, Conv2dArgs::tf_same(15, 15, 3, 3, 2)},
      // The direct 3x3 kernel (engine/cpu/conv_direct.h, f32 on AVX-512; blocks of 32 positions of the
      // flattened plane): 8-wide planes (two rows per vector), 16 (and a channel tail of 2), 32 and 5 rows,
      // rows that end inside a vector (14 and 13 wide, partial last blocks), 128 channels; and two that take
      // the GEMM path: a 7x7 plane (49 of 64 lanes) and 3 rows of 8 (24 of 32).
      {{3, 8, 8, 8}, {16, 8, 3, 3}, Conv2dArgs::make(1, 1)},
      {{2, 12, 16, 16}, {10, 12, 3, 3}, Conv2dArgs::make(1, 1)},
      {{2, 9, 5, 32}, {8, 9, 3, 3}, Conv2dArgs::make(1, 1)},
      {{2, 8, 14, 14}, {12, 8, 3, 3}, Conv2dArgs::make(1, 1)},
      {{1, 16, 9, 13}, {8, 16, 3, 3}, Conv2dArgs::make(1, 1)},
      {{1, 128, 8, 8}, {128, 128, 3, 3}, Conv2dArgs::make(1, 1)},
      {{2, 8, 7, 7}, {8, 8, 3, 3}, Conv2dArgs::make(1, 1)},
      {{1, 8, 3, 8}, {9, 8, 3, 3}, Conv2dArgs::make(1, 1)},
      // Its stride-2 form (polyphase; the even plane is halved): CIFAR's 16 -> 32 channels, a 14x10 output
      // (rows ending inside vectors, a channel tail, 140 of 160 lanes: the 7/8 limit exactly), 32-wide
      // rows; and two that take the GEMM path: an odd plane (17 rows) and 128 channels.
      {{2, 16, 16, 16}, {32, 16, 3, 3}, Conv2dArgs::make(2, 1)},
      {{1, 8, 28, 20}, {12, 8, 3, 3}, Conv2dArgs::make(2, 1)},
      {{2, 9, 12, 64}, {8, 9, 3, 3}, Conv2dArgs::make(2, 1)},
      {{1, 8, 17, 16}, {8, 8, 3, 3}, Conv2dArgs::make(2, 1)},
      {{1, 128, 16, 16}, {128, 128, 3, 3}, Conv2dArgs::make(2, 1)},
      // The narrow GEMM (engine/cpu/gemm_narrow.h, f32 on AVX-512: single images of at most 64 output positions;
      // the 7x7 and 3x8 planes above take it too): two K slices (360 = 40*9) and a row left over (13 = 2*6 + 1),
      // a 1x1 with 36 columns per image (70 = 8*8 + 6 rows, k = 300), a full 64-column panel with k = 6, groups
      // on 5x5 planes, stride 2 down to 7x7, a 4x4 plane.
      {{1, 40, 7, 7}, {13, 40, 3, 3}, Conv2dArgs::make(1, 1)},
      {{4, 300, 6, 6}, {70, 300, 1, 1}, Conv2dArgs::make(1, 0)},
      {{1, 6, 8, 8}, {20, 6, 1, 1}, Conv2dArgs::make(1, 0)},
      {{1, 12, 5, 5}, {9, 4, 3, 3}, Conv2dArgs::make(1, 1, 1, 3)},
      {{1, 16, 14, 14}, {24, 16, 3, 3}, Conv2dArgs::make(2, 1)},
      {{1, 20, 4, 4}, {11, 20, 3, 3}, Conv2dArgs::make(1, 1)},
  };
}

}  // namespace

// ---------------------------------------------------------------- conv2d hand cases

TEST_CASE("conv2d: 1x3x3 input, 2x2 kernel, forward and both gradients by hand") {
  Ctx ctx;
  // x = [[1,2,3],[4,5,6],[7,8,9]], w = [[1,2],[3,4]], b = 1.
  // y[p,q] = x[p,q] + 2 x[p,q+1] + 3 x[p+1,q] + 4 x[p+1,q+1] + 1:
  // y00 = 1+4+12+20+1 = 38, y01 = 2+6+15+24+1 = 48, y10 = 4+10+21+32+1 = 68, y11 = 5+12+24+36+1 = 78.
  Tensor x = vals(iota_values(9), {1, 1, 3, 3});
  Tensor w = vals({1, 2, 3, 4}, {1, 1, 2, 2});
  Tensor b = vals({1}, {1});
  Tensor y = conv2d(ctx, x, w, &b, Conv2dArgs::make(1, 0));
  CHECK(y.shape() == Shape{1, 1, 2, 2});
  CHECK(all_close(y, {38, 48, 68, 78}));

  // dy = 1 everywhere: dx[h,w] sums the taps that touch (h,w): corners get one tap each
  // (w00=1 top-left, w01=2 top-right, w10=3, w11=4), the centre all four (10).
  Tensor dy = vals({1, 1, 1, 1}, {1, 1, 2, 2});
  CHECK(all_close(conv2d_dgrad(ctx, dy, w, x.shape(), Conv2dArgs::make(1, 0)), {1, 3, 2, 4, 10, 6, 3, 7, 4}));

  // dw[r,s] = sum over the 2x2 windows shifted by (r,s): dw00 = 1+2+4+5 = 12, dw01 = 16, dw10 = 24,
  // dw11 = 28; db = 4 outputs. A second call adds the same again (gradients accumulate).
  Tensor dw = Tensor::zeros(w.shape());
  Tensor db = Tensor::zeros(b.shape());
  conv2d_wgrad(ctx, dy, x, dw, &db, Conv2dArgs::make(1, 0));
  CHECK(all_close(dw, {12, 16, 24, 28}));
  CHECK(all_close(db, {4}));
  conv2d_wgrad(ctx, dy, x, dw, &db, Conv2dArgs::make(1, 0));
  CHECK(all_close(dw, {24, 32, 48, 56}));
  CHECK(all_close(db, {8}));
}

TEST_CASE("conv2d: stride 2 with padding 1") {
  Ctx ctx;
  // 3x3 all-ones kernel on x = 1..9 (3x3), stride 2, pad 1 -> 2x2 windows over rows/cols
  // {-1,0,1} and {1,2,3}; only in-image values count:
  // y00 = 1+2+4+5 = 12, y01 = 2+3+5+6 = 16, y10 = 4+5+7+8 = 24, y11 = 5+6+8+9 = 28.
  Tensor x = vals(iota_values(9), {1, 1, 3, 3});
  Tensor w = vals(std::vector<double>(9, 1.0), {1, 1, 3, 3});
  Tensor y = conv2d(ctx, x, w, nullptr, Conv2dArgs::make(2, 1));
  CHECK(y.shape() == Shape{1, 1, 2, 2});
  CHECK(all_close(y, {12, 16, 24, 28}));
}

TEST_CASE("conv2d: dilation 2") {
  Ctx ctx;
  // x[h,w] = 5h + w (5x5), w = [[1,2],[3,4]] dilated by 2 taps x[p,q], x[p,q+2], x[p+2,q], x[p+2,q+2]:
  // y = x + 2(x+2) + 3(x+10) + 4(x+12) = 10 x[p,q] + 82, a 3x3 output.
  Tensor x = vals(iota_values(25, 0), {1, 1, 5, 5});
  Tensor w = vals({1, 2, 3, 4}, {1, 1, 2, 2});
  Tensor y = conv2d(ctx, x, w, nullptr, Conv2dArgs::make(1, 0, 2));
  CHECK(y.shape() == Shape{1, 1, 3, 3});
  CHECK(all_close(y, {82, 92, 102, 132, 142, 152, 182, 192, 202}));
}

TEST_CASE("conv2d: groups and depthwise") {
  Ctx ctx;
  // groups 2 on a 1x1 image: channel 0 of y sees x0, x1; channel 1 sees x2, x3.
  // w = [[1,10],[100,1000]]: y0 = 1 + 20 = 21, y1 = 300 + 4000 = 4300.
  Tensor x = vals({1, 2, 3, 4}, {1, 4, 1, 1});
  Tensor w = vals({1, 10, 100, 1000}, {2, 2, 1, 1});
  CHECK(all_close(conv2d(ctx, x, w, nullptr, Conv2dArgs::make(1, 0, 1, 2)), {21, 4300}));
  // Its gradients (the GEMM path): with dy = [1, 2], dx = [1*1, 1*10, 2*100, 2*1000] and
  // dw[k][c] = dy_k * x[group k, c] = [[1,2],[6,8]], doubled by a second call.
  Tensor dyg = vals({1, 2}, {1, 2, 1, 1});
  CHECK(all_close(conv2d_dgrad(ctx, dyg, w, x.shape(), Conv2dArgs::make(1, 0, 1, 2)), {1, 10, 200, 2000}));
  Tensor dwg = Tensor::zeros(w.shape());
  conv2d_wgrad(ctx, dyg, x, dwg, nullptr, Conv2dArgs::make(1, 0, 1, 2));
  CHECK(all_close(dwg, {1, 2, 6, 8}));
  conv2d_wgrad(ctx, dyg, x, dwg, nullptr, Conv2dArgs::make(1, 0, 1, 2));
  CHECK(all_close(dwg, {2, 4, 12, 16}));

  // Depthwise (groups = C = K = 2): channel 0 is the 1..9 image with [[1,2],[3,4]] (the first hand
  // case: 37 47 67 77 without bias), channel 1 is all ones with 0.5 taps (2 everywhere), bias 0 and 1.
  std::vector<double> xv = iota_values(9);
  xv.insert(xv.end(), 9, 1.0);
  Tensor xd = vals(xv, {1, 2, 3, 3});
  Tensor wd = vals({1, 2, 3, 4, 0.5, 0.5, 0.5, 0.5}, {2, 1, 2, 2});
  Tensor bd = vals({0, 1}, {2});
  const Conv2dArgs dwa = Conv2dArgs::make(1, 0, 1, 2);
  CHECK(all_close(conv2d(ctx, xd, wd, &bd, dwa), {37, 47, 67, 77, 3, 3, 3, 3}));
  // dgrad with dy = 1: channel 0 as in the first case; channel 1 counts windows per pixel
  // ([[1,2,1],[2,4,2],[1,2,1]]) times 0.5.
  Tensor dy = vals(std::vector<double>(8, 1.0), {1, 2, 2, 2});
  CHECK(all_close(conv2d_dgrad(ctx, dy, wd, xd.shape(), dwa),
                  {1, 3, 2, 4, 10, 6, 3, 7, 4, 0.5, 1, 0.5, 1, 2, 1, 0.5, 1, 0.5}));
  // wgrad: channel 0 12 16 24 28 as before; channel 1 sums 4 ones per tap; db = 4 per channel.
  Tensor dw = Tensor::zeros(wd.shape()), db = Tensor::zeros(bd.shape());
  conv2d_wgrad(ctx, dy, xd, dw, &db, dwa);
  CHECK(all_close(dw, {12, 16, 24, 28, 4, 4, 4, 4}));
  CHECK(all_close(db, {4, 4}));
  conv2d_wgrad(ctx, dy, xd, dw, &db, dwa);
  CHECK(all_close(dw, {24, 32, 48, 56, 8, 8, 8, 8}));
  CHECK(all_close(db, {8, 8}));
}

TEST_CASE("Conv2dArgs::tf_same: asymmetric padding, odd pixel at the bottom/right") {
  // 224, k3, s2: out = ceil(224/2) = 112, total pad = (112-1)*2 + 3 - 224 = 1 -> top 0, bottom 1.
  Conv2dArgs a = Conv2dArgs::tf_same(224, 224, 3, 3, 2);
  CHECK(a.pad_top == 0);
  CHECK(a.pad_bottom == 1);
  CHECK(a.pad_left == 0);
  CHECK(a.pad_right == 1);
  CHECK(a.stride_h == 2);
  CHECK(a.stride_w == 2);
  CHECK(conv2d_out_shape(Shape{1, 3, 224, 224}, Shape{24, 3, 3, 3}, a) == Shape{1, 24, 112, 112});
  // 112, k3, s1: total pad 2 -> 1 and 1. 7, k4, s1: total 3 -> 1 top, 2 bottom.
  // 7, k1, s2: out 4, total (4-1)*2 + 1 - 7 = 0. Groups are carried through.
  Conv2dArgs b = Conv2dArgs::tf_same(112, 112, 3, 3, 1, 8);
  CHECK(b.pad_top == 1);
  CHECK(b.pad_bottom == 1);
  CHECK(b.groups == 8);
  Conv2dArgs c = Conv2dArgs::tf_same(7, 9, 4, 1, 1);
  CHECK(c.pad_top == 1);
  CHECK(c.pad_bottom == 2);
  CHECK(c.pad_left == 0);
  CHECK(c.pad_right == 0);
  Conv2dArgs d = Conv2dArgs::tf_same(7, 7, 1, 1, 2);
  CHECK(d.pad_bottom == 0);
  CHECK(conv2d_out_shape(Shape{1, 1, 7, 7}, Shape{1, 1, 1, 1}, d) == Shape{1, 1, 4, 4});

  // 4x4 image 1..16, 3x3 ones, stride 2, TF same: pad top/left 0, bottom/right 1.
  // y00 = rows 0-2 x cols 0-2 = 6+18+30 = 54; y01 = rows 0-2 x cols 2-3 = 7+15+23 = 45;
  // y10 = rows 2-3 x cols 0-2 = 30+42 = 72; y11 = rows 2-3 x cols 2-3 = 11+12+15+16 = 54.
  // (Symmetric padding 1 would give y00 = 1+2+5+6 = 14.)
  Ctx ctx;
  Tensor x = vals(iota_values(16), {1, 1, 4, 4});
  Tensor w = vals(std::vector<double>(9, 1.0), {1, 1, 3, 3});
  CHECK(all_close(conv2d(ctx, x, w, nullptr, Conv2dArgs::tf_same(4, 4, 3, 3, 2)), {54, 45, 72, 54}));
}

// ---------------------------------------------------------------- conv_transpose2d hand case

TEST_CASE("conv_transpose2d: stride 2, padding 1, output_padding 1 by hand") {
  Ctx ctx;
  // x = [[1,2],[3,4]], w = [[1,2,3],[4,5,6],[7,8,9]], stride 2, pad 1, out_pad 1:
  // P = (2-1)*2 - 2 + 2 + 1 + 1 = 4. Input pixel i reaches output row o = 2i - 1 + r, so
  // o=0: (i0,r1); o=1: (i0,r2),(i1,r0); o=2: (i1,r1); o=3: (i1,r2) (the output_padding row), same
  // for columns. E.g. y[1][1] = x00 w22 + x01 w20 + x10 w02 + x11 w00 = 9 + 14 + 9 + 4 = 36,
  // y[0][1] = x00 w12 + x01 w10 = 6 + 8 = 14, y[3][3] = x11 w22 = 36. Bias 0.5 on every pixel.
  Tensor x = vals({1, 2, 3, 4}, {1, 1, 2, 2});
  Tensor w = vals(iota_values(9), {1, 1, 3, 3});
  Tensor b = vals({0.5}, {1});
  const ConvTranspose2dArgs a = ConvTranspose2dArgs::make(2, 1, 1);
  Tensor y = conv_transpose2d(ctx, x, w, &b, a);
  CHECK(y.shape() == Shape{1, 1, 4, 4});
  std::vector<double> want{5, 14, 10, 12, 14, 36, 24, 30, 15, 34, 20, 24, 24, 55, 32, 36};
  for (double& v : want) v += 0.5;
  CHECK(all_close(y, want));
  CHECK(all_close(reference_conv_transpose2d(x, w, &b, a), want));

  // Its input gradient is a conv2d of dy: with dy = 1, dx[i][j] sums the taps that land inside
  // the output: x00 reaches rows/cols {0,1} via r,s in {1,2}: 5+6+8+9 = 28; x01 reaches rows
  // {0,1} (r 1,2) and cols {1,2,3} (s 0,1,2): 4+5+6+7+8+9 = 39; x10: rows r 0,1,2, cols s 1,2:
  // 2+3+5+6+8+9 = 33; x11: all 45. db = 16 pixels.
  Tensor dy = vals(std::vector<double>(16, 1.0), {1, 1, 4, 4});
  CHECK(all_close(conv_transpose2d_dgrad(ctx, dy, w, x.shape(), a), {28, 39, 33, 45}));
  // wgrad with dy = 1: dw[r][s] = sum of x over pixels whose tap (r,s) lands inside. Rows: r=0
  // only i=1 (o=1), r=1,2 both i. So dw[0][0] = x11 (cols s=0: only j=1) = 4; dw[0][1] = x10+x11 = 7,
  // dw[1][0] = x01 + x11 = 6; dw[1][1] = 10 and so on.
  Tensor dw = Tensor::zeros(w.shape()), db = Tensor::zeros(b.shape());
  conv_transpose2d_wgrad(ctx, dy, x, dw, &db, a);
  CHECK(all_close(dw, {4, 7, 7, 6, 10, 10, 6, 10, 10}));
  CHECK(all_close(db, {16}));
  conv_transpose2d_wgrad(ctx, dy, x, dw, &db, a);
  CHECK(all_close(dw, {8, 14, 14, 12, 20, 20, 12, 20, 20}));
  CHECK(all_close(db, {32}));
}

// ---------------------------------------------------------------- linear hand case

TEST_CASE("linear: forward and gradients by hand") {
  Ctx ctx;
  // x = [[1,2,3],[4,5,6]], w = [[1,0,-1],[2,1,0]], b = [0.5,-1]:
  // y = [[1-3+0.5, 2+2-1], [4-6+0.5, 8+5-1]] = [[-1.5, 3], [-1.5, 12]].
  Tensor x = vals({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor w = vals({1, 0, -1, 2, 1, 0}, {2, 3});
  Tensor b = vals({0.5, -1}, {2});
  CHECK(all_close(linear(ctx, x, w, &b), {-1.5, 3, -1.5, 12}));
  CHECK(all_close(linear(ctx, x, w, nullptr), {-2, 4, -2, 13}));
  // dy = [[1,0],[0,2]]: dx = dy w = [[1,0,-1],[4,2,0]]; dw = dy^T x = [[1,2,3],[8,10,12]]; db = [1,2].
  Tensor dy = vals({1, 0, 0, 2}, {2, 2});
  CHECK(all_close(linear_dgrad(ctx, dy, w), {1, 0, -1, 4, 2, 0}));
  Tensor dw = Tensor::zeros(w.shape()), db = Tensor::zeros(b.shape());
  linear_wgrad(ctx, dy, x, dw, &db);
  CHECK(all_close(dw, {1, 2, 3, 8, 10, 12}));
  CHECK(all_close(db, {1, 2}));
  linear_wgrad(ctx, dy, x, dw, &db);
  CHECK(all_close(dw, {2, 4, 6, 16, 20, 24}));
  CHECK(all_close(db, {2, 4}));
}

// ---------------------------------------------------------------- against direct references

TEST_CASE("conv2d_bn_act: batch norm, residual and each activation by hand") {
  Ctx ctx;
  // The convolution above gives {37, 47, 67, 77} without its bias. BN gamma 1, var 3, eps 1 (scale
  // 1/2), mean 57, beta 1: {-9, -4, 6, 11}; plus r = {2, 5, -3, -20}: {-7, 1, 3, -9}.
  Tensor x = vals(iota_values(9), {1, 1, 3, 3});
  Tensor w = vals({1, 2, 3, 4}, {1, 1, 2, 2});
  Tensor g = vals({1}, {1}), b = vals({1}, {1}), m = vals({57}, {1}), v = vals({3}, {1});
  Tensor r = vals({2, 5, -3, -20}, {1, 1, 2, 2});
  const Conv2dArgs a = Conv2dArgs::make(1, 0);
  auto run = [&](const Tensor* res, Activation act) { return conv2d_bn_act(ctx, x, w, g, b, m, v, 1.0, res, act, a); };
  CHECK(all_close(run(nullptr, Activation::None), {-9, -4, 6, 11}));
  CHECK(all_close(run(nullptr, Activation::ReLU), {0, 0, 6, 11}));
  CHECK(all_close(run(nullptr, Activation::ReLU6), {0, 0, 6, 6}));
  CHECK(all_close(run(&r, Activation::None), {-7, 1, 3, -9}));
  CHECK(all_close(run(&r, Activation::ReLU), {0, 1, 3, 0}));
  CHECK(all_close(run(&r, Activation::ReLU6), {0, 1, 3, 0}));
}

TEST_CASE("conv2d_bn_act equals conv2d then batchnorm2d_infer_act bit for bit on every CPU path") {
  std::mt19937_64 rng(23);
  const std::vector<Geo> geos = conv_geometries();
  Arena arena(Device::CPU);
  for (const Geo& geo : geos) {
    for (DType dt : {DType::F32, DType::F64}) {
      Ctx ctx(Device::CPU, &arena);
      const Shape ys = conv2d_out_shape(geo.x, geo.w, geo.a), ks{geo.w[0]};
      Tensor x = random_tensor(geo.x, rng, dt), w = random_tensor(geo.w, rng, dt);
      Tensor g = random_tensor(ks, rng, dt), b = random_tensor(ks, rng, dt), m = random_tensor(ks, rng, dt);
      Tensor v = Tensor::from_values(test::uniform(ks, rng, 0.5, 1.5), ks, dt);
      Tensor r = Tensor::from_values(test::uniform(ys, rng, 2, 8), ys, dt);  // past 6 for ReLU6 too
      for (Activation act : {Activation::None, Activation::ReLU, Activation::ReLU6}) {
        for (bool with_res : {false, true}) {
          INFO("x " << geo.x.str() << " w " << geo.w.str() << " " << dtype_name(dt) << " act " << static_cast<int>(act)
                    << " residual " << with_res);
          const Tensor* res = with_res ? &r : nullptr;
          const Tensor want = batchnorm2d_infer_act(ctx, conv2d(ctx, x, w, nullptr, geo.a), g, b, m, v, 1e-3, res, act);
          CHECK(conv2d_bn_act(ctx, x, w, g, b, m, v, 1e-3, res, act, geo.a).values() == want.values());
        }
      }
      arena.reset();
    }
  }
}

TEST_CASE("conv2d_dgrad_bn_act equals batchnorm2d_infer_act_backward then conv2d_dgrad bit for bit on every CPU path") {
  std::mt19937_64 rng(29);
  Arena arena(Device::CPU);
  // Besides the shared list, batches big enough for the gate to run per image in the direct kernel (two
  // images per thread: stride 1 and stride 2) and per chunk in Winograd (two chunks per thread).
  std::vector<Geo> geos = conv_geometries();
  const int64_t t = omp_get_max_threads();
  geos.push_back({{2 * t, 16, 12, 16}, {16, 16, 3, 3}, Conv2dArgs::make(1, 1)});
  geos.push_back({{2 * t + 1, 16, 16, 16}, {24, 16, 3, 3}, Conv2dArgs::make(2, 1)});
  cpu::ConvGeom wg;
  wg.C = wg.K = 32, wg.H = wg.P = wg.W = wg.Q = 8, wg.R = wg.S = 3, wg.Cg = wg.Kg = 32, wg.pt = wg.pl = 1;
  wg.N = 2 * t * cpu::winograd_chunk_images(wg) + 1;
  if (cpu::winograd_applies(wg, static_cast<int>(t)))
    geos.push_back({{wg.N, 32, 8, 8}, {32, 32, 3, 3}, Conv2dArgs::make(1, 1)});
  for (const Geo& geo : geos) {
    for (DType dt : {DType::F32, DType::F64}) {
      Ctx ctx(Device::CPU, &arena);
      const Shape ys = conv2d_out_shape(geo.x, geo.w, geo.a), ks{geo.w[0]};
      Tensor dy = random_tensor(ys, rng, dt), w = random_tensor(geo.w, rng, dt), g = random_tensor(ks, rng, dt);
      Tensor v = Tensor::from_values(test::uniform(ks, rng, 0.5, 1.5), ks, dt);
      std::vector<double> yv = test::uniform(ys, rng, -2, 8);
      for (double& e : yv) e = std::max(e, 0.0);  // an activation's output: zeros where it stopped
      for (Activation act : {Activation::None, Activation::ReLU, Activation::ReLU6}) {
        std::vector<double> ya = yv;
        if (act == Activation::ReLU6)
          for (double& e : ya) e = std::min(e, 6.0);
        const Tensor y = Tensor::from_values(ya, ys, dt);
        INFO("x " << geo.x.str() << " w " << geo.w.str() << " " << dtype_name(dt) << " act " << static_cast<int>(act));
        const Tensor want =
            conv2d_dgrad(ctx, batchnorm2d_infer_act_backward(ctx, dy, y, g, v, 1e-3, act), w, geo.x, geo.a);
        CHECK(conv2d_dgrad_bn_act(ctx, dy, y, w, g, v, 1e-3, act, geo.x, geo.a).values() == want.values());
      }
      arena.reset();
    }
  }
}

TEST_CASE("conv2d matches a direct loop on many geometries, f32 and f64, arena or not") {
  std::mt19937_64 rng(11);
  const std::vector<Geo> geos = conv_geometries();
  Arena arena(Device::CPU);
  for (const Geo& g : geos) {
    for (DType dt : {DType::F32, DType::F64}) {
      for (bool use_arena : {false, true}) {
        INFO("x " << g.x.str() << " w " << g.w.str() << " " << dtype_name(dt) << (use_arena ? " arena" : ""));
        Ctx ctx(Device::CPU, use_arena ? &arena : nullptr);
        Tensor x = random_tensor(g.x, rng, dt), w = random_tensor(g.w, rng, dt);
        Tensor b = random_tensor(Shape{g.w[0]}, rng, dt);
        Tensor y = conv2d(ctx, x, w, &b, g.a);
        CHECK(max_rel_diff(y, reference_conv2d(x, w, &b, g.a)) < (dt == DType::F32 ? f32_tolerance(g.w) : 1e-12));
        arena.reset();
      }
    }
  }
}

TEST_CASE("conv2d backward in f32 agrees with f64 (whose gradients the harness checks)") {
  // The f64 path is verified by finite differences; this catches an f32-only mistake (sgemm
  // arguments) on geometries that reach the per-thread and the in-place paths.
  std::mt19937_64 rng(5);
  const std::vector<Geo> geos{
      {{4, 3, 24, 24}, {5, 3, 3, 3}, Conv2dArgs::make(1, 1)},
      {{4, 6, 24, 22}, {4, 6, 1, 1}, Conv2dArgs::make(1, 0)},
      {{1, 6, 24, 22}, {4, 6, 1, 1}, Conv2dArgs::make(1, 0)},
      {{16, 4, 6, 6}, {6, 2, 3, 3}, Conv2dArgs::make(2, 1, 1, 2)},
      {{3, 5, 13, 12}, {5, 1, 3, 3}, Conv2dArgs::make(1, 1, 1, 5)},
      {{2, 3, 6, 57}, {4, 3, 3, 3}, Conv2dArgs::make(1, 1)},        // rows of 4 vectors
      {{1, 2, 4, 70}, {3, 2, 3, 3}, Conv2dArgs::make(1, 1)},        // rows wider than 64
      {{2, 3, 9, 40}, {4, 3, 3, 3}, Conv2dArgs{1, 2, 1, 1, 1, 1, 2, 1, 1}},  // column stride 2 (gathers)
      {{2, 2, 30, 9}, {3, 2, 3, 5}, Conv2dArgs{2, 1, 0, 2, 1, 2, 1, 1, 1}},  // row stride 2, wide kernel
      {{2, 4, 11, 20}, {4, 1, 3, 3}, Conv2dArgs{2, 1, 1, 1, 1, 1, 1, 1, 4}},  // depthwise, row stride 2
      {{2, 3, 9, 33}, {3, 1, 5, 3}, Conv2dArgs{1, 2, 2, 1, 2, 1, 1, 2, 3}},   // depthwise, column stride 2
      {{1, 2, 5, 70}, {2, 1, 3, 3}, Conv2dArgs::make(1, 1, 1, 2)},            // depthwise, wider than 64
      {{3, 16, 8, 8}, {24, 16, 3, 3}, Conv2dArgs::make(1, 1)},                // direct 3x3, both directions
      {{2, 10, 16, 16}, {8, 10, 3, 3}, Conv2dArgs::make(1, 1)},               // direct forward, dgrad channel tail
      {{2, 8, 15, 11}, {16, 8, 3, 3}, Conv2dArgs::make(1, 1)},                // direct, rows ending inside vectors
      {{2, 16, 16, 16}, {24, 16, 3, 3}, Conv2dArgs::make(2, 1)},              // direct stride 2, four phases
      {{2, 12, 18, 28}, {8, 12, 3, 3}, Conv2dArgs::make(2, 1)},               // stride 2, 9x14 output, tails
  };
  Ctx ctx;
  for (const Geo& g : geos) {
    INFO("x " << g.x.str() << " w " << g.w.str());
    Tensor x = random_tensor(g.x, rng, DType::F64), w = random_tensor(g.w, rng, DType::F64);
    Shape ys = conv2d_out_shape(g.x, g.w, g.a);
    Tensor dy = random_tensor(ys, rng, DType::F64);
    Tensor dx64 = conv2d_dgrad(ctx, dy, w, g.x, g.a);
    Tensor dw64 = Tensor::zeros(g.w, DType::F64), db64 = Tensor::zeros(Shape{g.w[0]}, DType::F64);
    conv2d_wgrad(ctx, dy, x, dw64, &db64, g.a);
    Tensor x32 = x.to(DType::F32), w32 = w.to(DType::F32), dy32 = dy.to(DType::F32);
    Tensor dx32 = conv2d_dgrad(ctx, dy32, w32, g.x, g.a);
    Tensor dw32 = Tensor::zeros(g.w), db32 = Tensor::zeros(Shape{g.w[0]});
    conv2d_wgrad(ctx, dy32, x32, dw32, &db32, g.a);
    CHECK(max_rel_diff(dx32, dx64) < 1e-4);
    CHECK(max_rel_diff(dw32, dw64) < 1e-4);
    CHECK(max_rel_diff(db32, db64) < 1e-4);
    // And the adjoint identity <conv(x), dy> = <x, dgrad(dy)> = <w, wgrad(dy, x)>.
    Tensor y = conv2d(ctx, x, w, nullptr, g.a);
    auto dot = [](const Tensor& a, const Tensor& b) {
      std::vector<double> u = a.values(), v = b.values();
      double s = 0;
      for (size_t i = 0; i < u.size(); ++i) s += u[i] * v[i];
      return s;
    };
    const double lhs = dot(y, dy);
    CHECK(dot(x, dx64) == doctest::Approx(lhs).epsilon(1e-10));
    CHECK(dot(w, dw64) == doctest::Approx(lhs).epsilon(1e-10));
  }
}

TEST_CASE("conv_transpose2d matches a direct scatter") {
  std::mt19937_64 rng(3);
  struct Geo {
    Shape x, w;
    ConvTranspose2dArgs a;
  };
  const std::vector<Geo> geos{
      {{2, 3, 4, 5}, {3, 4, 3, 3}, ConvTranspose2dArgs::make(2, 1, 1)},
      {{3, 8, 7, 7}, {8, 4, 2, 2}, ConvTranspose2dArgs::make(2, 0)},
      {{2, 4, 5, 4}, {4, 3, 3, 3}, ConvTranspose2dArgs::make(1, 1, 0, 1, 2)},
      {{1, 2, 4, 4}, {2, 3, 3, 3}, ConvTranspose2dArgs::make(1, 0, 1, 2)},    // output_padding >= stride
      {{2, 6, 9, 8}, {6, 1, 3, 3}, ConvTranspose2dArgs::make(2, 1, 1, 1, 6)},  // depthwise
      {{1, 4, 24, 24}, {4, 2, 4, 4}, ConvTranspose2dArgs::make(2, 1)},
      {{2, 3, 5, 6}, {3, 2, 3, 2}, ConvTranspose2dArgs{2, 3, 1, 0, 1, 2, 1, 1, 1}},
  };
  Ctx ctx;
  for (const Geo& g : geos) {
    for (DType dt : {DType::F32, DType::F64}) {
      INFO("x " << g.x.str() << " w " << g.w.str() << " " << dtype_name(dt));
      Tensor x = random_tensor(g.x, rng, dt), w = random_tensor(g.w, rng, dt);
      Shape ys = conv_transpose2d_out_shape(g.x, g.w, g.a);
      Tensor b = random_tensor(Shape{ys[1]}, rng, dt);
      Tensor y = conv_transpose2d(ctx, x, w, &b, g.a);
      CHECK(y.shape() == ys);
      CHECK(max_rel_diff(y, reference_conv_transpose2d(x, w, &b, g.a)) < (dt == DType::F32 ? 1e-5 : 1e-12));
    }
  }
}

TEST_CASE("conv ops give the same result with one thread and with all threads") {
  std::mt19937_64 rng(9);
  Ctx ctx;
  Tensor x = random_tensor({4, 6, 20, 26}, rng), w = random_tensor({8, 6, 3, 3}, rng);
  const Conv2dArgs a = Conv2dArgs::make(1, 1);
  Tensor dy = random_tensor(conv2d_out_shape(x.shape(), w.shape(), a), rng);
  auto run = [&] {
    std::vector<Tensor> out{conv2d(ctx, x, w, nullptr, a), conv2d_dgrad(ctx, dy, w, x.shape(), a),
                            Tensor::zeros(w.shape())};
    conv2d_wgrad(ctx, dy, x, out[2], nullptr, a);
    return out;
  };
  std::vector<Tensor> many = run();
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  std::vector<Tensor> one = run();
  omp_set_num_threads(saved);
  for (size_t i = 0; i < one.size(); ++i) CHECK(max_rel_diff(many[i], one[i]) < 1e-5);
}

TEST_CASE("conv2d leaves the arena where it found it: scratch is released") {
  Arena arena(Device::CPU, 64 << 20);
  Ctx ctx(Device::CPU, &arena);
  std::mt19937_64 rng(2);
  Tensor x = random_tensor({2, 3, 17, 17}, rng), w = random_tensor({4, 3, 3, 3}, rng);
  const size_t before = arena.used();
  Tensor y = conv2d(ctx, x, w, nullptr, Conv2dArgs::make(1, 1));
  // Only the output (2*4*17*17 floats, rounded to the arena alignment) remains allocated.
  CHECK(arena.used() - before == (y.nbytes() + Arena::kAlign - 1) / Arena::kAlign * Arena::kAlign);
}

// ---------------------------------------------------------------- argument errors

TEST_CASE("conv2d: argument errors") {
  Ctx ctx;
  Tensor x = Tensor::zeros({1, 4, 5, 5});
  Tensor w = Tensor::zeros({6, 3, 3, 3});
  // Channel mismatch with groups: w has 3 channels per group, x 4 channels / 2 groups = 2.
  CHECK_THROWS_WITH_AS(conv2d(ctx, x, w, nullptr, Conv2dArgs::make(1, 1, 1, 2)),
                       doctest::Contains("conv2d: w [6,3,3,3] has 3 input channels per group, expected 4 / groups 2 = 2"),
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(ctx, x, Tensor::zeros({6, 1, 3, 3}), nullptr, Conv2dArgs::make(1, 1, 1, 3)),
                       doctest::Contains("conv2d: x has 4 channels, not divisible by groups 3"), Error);
  CHECK_THROWS_WITH_AS(conv2d(ctx, x, Tensor::zeros({5, 2, 3, 3}), nullptr, Conv2dArgs::make(1, 1, 1, 2)),
                       doctest::Contains("conv2d: w has 5 output channels, not divisible by groups 2"), Error);
  // Kernel larger than the padded input: 5x5 with dilation 2 spans 9 > 5 + 2 + 1.
  CHECK_THROWS_WITH_AS(conv2d(ctx, x, Tensor::zeros({2, 4, 5, 5}), nullptr, Conv2dArgs{1, 1, 1, 1, 1, 1, 2, 2, 1}),
                       doctest::Contains("conv2d: kernel 5x5 (9x9 with dilation) is larger than the padded input 7x7"),
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(ctx, Tensor::zeros({1, 1, 2, 2}), Tensor::zeros({1, 1, 3, 3}), nullptr,
                              Conv2dArgs::make(1, 0)),
                       doctest::Contains("larger than the padded input 2x2"), Error);
  CHECK_THROWS_WITH_AS(conv2d(ctx, x, Tensor::zeros({2, 4, 3, 3}), nullptr, Conv2dArgs::make(0, 1)),
                       doctest::Contains("conv2d: stride must be >= 1, got 0x0"), Error);
  CHECK_THROWS_WITH_AS(conv2d(ctx, x, Tensor::zeros({2, 4, 3, 3}), nullptr, Conv2dArgs::make(1, -1)),
                       doctest::Contains("conv2d: padding must be >= 0"), Error);
  CHECK_THROWS_WITH_AS(conv2d(ctx, Tensor::zeros({4, 5, 5}), w, nullptr, Conv2dArgs::make(1, 1)),
                       doctest::Contains("conv2d: x must have 4 dimensions"), Error);
  Tensor b3 = Tensor::zeros({3});
  CHECK_THROWS_WITH_AS(conv2d(ctx, x, Tensor::zeros({2, 4, 3, 3}), &b3, Conv2dArgs::make(1, 1)),
                       doctest::Contains("conv2d: b has shape [3], expected [2]"), Error);
  CHECK_THROWS_WITH_AS(conv2d(ctx, x, Tensor::zeros({2, 4, 3, 3}, DType::F64), nullptr, Conv2dArgs::make(1, 1)),
                       doctest::Contains("conv2d: mixed dtypes"), Error);
  CHECK_THROWS_WITH_AS(conv2d(ctx, Tensor::from_labels({1, 2}).reshape({1, 1, 1, 2}), Tensor::zeros({1, 1, 1, 1}),
                              nullptr, Conv2dArgs::make(1, 0)),
                       doctest::Contains("conv2d: tensor i32[1,1,1,2]@cpu has an unsupported dtype"), Error);
  CHECK_THROWS_WITH_AS(Conv2dArgs::tf_same(224, 224, 3, 3, 0), doctest::Contains("Conv2dArgs::tf_same"), Error);

  // Gradients: dy of the wrong shape, dw of the wrong shape.
  const Conv2dArgs a = Conv2dArgs::make(1, 1);
  Tensor w2 = Tensor::zeros({2, 4, 3, 3});
  Tensor dy = Tensor::zeros({1, 2, 5, 5});
  CHECK_THROWS_WITH_AS(conv2d_dgrad(ctx, Tensor::zeros({1, 2, 4, 5}), w2, x.shape(), a),
                       doctest::Contains("conv2d_dgrad: dy has shape [1,2,4,5], expected [1,2,5,5]"), Error);
  CHECK_THROWS_WITH_AS(conv2d_dgrad(ctx, dy, Tensor::zeros({2, 3, 3, 3}), x.shape(), a),
                       doctest::Contains("conv2d_dgrad: w [2,3,3,3] has 3 input channels per group"), Error);
  Tensor dw_bad_k = Tensor::zeros({3, 4, 3, 3});
  CHECK_THROWS_WITH_AS(conv2d_wgrad(ctx, dy, x, dw_bad_k, nullptr, a),
                       doctest::Contains("conv2d_wgrad: dw [3,4,3,3] has 3 output channels, dy [1,2,5,5] has 2"), Error);
  Tensor dw_bad_r = Tensor::zeros({2, 4, 5, 5});
  CHECK_THROWS_WITH_AS(conv2d_wgrad(ctx, dy, x, dw_bad_r, nullptr, a),
                       doctest::Contains("conv2d_wgrad: dy has shape [1,2,5,5], expected [1,2,3,3]"), Error);
  Tensor dw_bad_c = Tensor::zeros({2, 3, 3, 3});
  CHECK_THROWS_WITH_AS(conv2d_wgrad(ctx, dy, x, dw_bad_c, nullptr, a),
                       doctest::Contains("conv2d_wgrad: w [2,3,3,3] has 3 input channels per group, expected 4"), Error);
  Tensor dw = Tensor::zeros({2, 4, 3, 3}), db_bad = Tensor::zeros({4});
  CHECK_THROWS_WITH_AS(conv2d_wgrad(ctx, dy, x, dw, &db_bad, a),
                       doctest::Contains("conv2d_wgrad: db has shape [4], expected [2]"), Error);

  // Mixed devices: tensors on the CPU, context on CUDA (no silent copies).
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(conv2d(gpu, x, w2, nullptr, a), doctest::Contains("conv2d: tensor f32[1,4,5,5]@cpu is not on the context's device (cuda)"), Error);
  CHECK_THROWS_WITH_AS(conv2d_dgrad(gpu, dy, w2, x.shape(), a), doctest::Contains("conv2d_dgrad: tensor"), Error);
  CHECK_THROWS_WITH_AS(conv2d_wgrad(gpu, dy, x, dw, nullptr, a), doctest::Contains("not on the context's device"), Error);
  if (cuda_available()) {
    // All on CUDA: validation passes and the op says it has no CUDA kernel yet.
    Tensor xg = x.to(Device::CUDA), wg = w2.to(Device::CUDA), bg = Tensor::zeros({2}).to(Device::CUDA);
    CHECK_THROWS_WITH_AS(conv2d(gpu, xg, w2, nullptr, a), doctest::Contains("not on the context's device"), Error);
    CHECK_THROWS_WITH_AS(conv2d(gpu, xg, wg, &bg, a), doctest::Contains("conv2d: the CUDA backend has no kernel"), Error);
  }
}

TEST_CASE("conv2d_bn_act: argument errors") {
  Ctx ctx;
  Tensor x = Tensor::zeros({1, 2, 4, 4}), w = Tensor::zeros({3, 2, 3, 3}), c3 = Tensor::zeros({3});
  Tensor c2 = Tensor::zeros({2}), r_bad = Tensor::zeros({1, 3, 4, 4});  // the output is [1,3,2,2]
  const Conv2dArgs a = Conv2dArgs::make(1, 0);
  CHECK_THROWS_WITH_AS(conv2d_bn_act(ctx, x, w, c3, c3, c3, c3, 1e-5, &r_bad, Activation::ReLU, a),
                       doctest::Contains("conv2d_bn_act: residual has shape [1,3,4,4], expected [1,3,2,2]"), Error);
  CHECK_THROWS_WITH_AS(conv2d_bn_act(ctx, x, w, c3, c3, c2, c3, 1e-5, nullptr, Activation::None, a),
                       doctest::Contains("conv2d_bn_act: mean has shape [2], expected [3]"), Error);
  Tensor r64 = Tensor::zeros({1, 3, 2, 2}, DType::F64);
  CHECK_THROWS_WITH_AS(conv2d_bn_act(ctx, x, w, c3, c3, c3, c3, 1e-5, &r64, Activation::None, a),
                       doctest::Contains("conv2d_bn_act: mixed dtypes"), Error);
  CHECK_THROWS_WITH_AS(conv2d_bn_act(ctx, x, w, c3, c3, c3, c3, -1, nullptr, Activation::None, a),
                       doctest::Contains("conv2d_bn_act: eps must be finite and >= 0"), Error);
  CHECK_THROWS_WITH_AS(conv2d_bn_act(ctx, x, w, c3, c3, c3, c3, 1e-5, nullptr, static_cast<Activation>(7), a),
                       doctest::Contains("conv2d_bn_act: unknown activation 7"), Error);
}

TEST_CASE("conv2d_dgrad_bn_act: argument errors") {
  Ctx ctx;
  const Shape xs{1, 2, 4, 4};
  Tensor dy = Tensor::zeros({1, 3, 2, 2}), w = Tensor::zeros({3, 2, 3, 3}), c3 = Tensor::zeros({3});
  Tensor c2 = Tensor::zeros({2}), y_bad = Tensor::zeros({1, 3, 4, 4});
  const Conv2dArgs a = Conv2dArgs::make(1, 0);
  CHECK_THROWS_WITH_AS(conv2d_dgrad_bn_act(ctx, dy, y_bad, w, c3, c3, 1e-5, Activation::ReLU, xs, a),
                       doctest::Contains("conv2d_dgrad_bn_act: y has shape [1,3,4,4], expected [1,3,2,2]"), Error);
  CHECK_THROWS_WITH_AS(conv2d_dgrad_bn_act(ctx, dy, dy, w, c3, c2, 1e-5, Activation::ReLU, xs, a),
                       doctest::Contains("conv2d_dgrad_bn_act: var has shape [2], expected [3]"), Error);
  CHECK_THROWS_WITH_AS(conv2d_dgrad_bn_act(ctx, dy, dy, w, c3, c3, 1e-5, Activation::ReLU, Shape{1, 2, 5, 5}, a),
                       doctest::Contains("conv2d_dgrad_bn_act: dy has shape [1,3,2,2], expected [1,3,3,3]"), Error);
  CHECK_THROWS_WITH_AS(conv2d_dgrad_bn_act(ctx, dy, dy, w, c3, c3, 1e-5, static_cast<Activation>(9), xs, a),
                       doctest::Contains("conv2d_dgrad_bn_act: unknown activation 9"), Error);
}

TEST_CASE("conv_transpose2d: argument errors") {
  Ctx ctx;
  Tensor x = Tensor::zeros({1, 4, 3, 3});
  CHECK_THROWS_WITH_AS(conv_transpose2d(ctx, x, Tensor::zeros({3, 2, 3, 3}), nullptr, ConvTranspose2dArgs::make(2, 1)),
                       doctest::Contains("conv_transpose2d: w [3,2,3,3] has 3 input channels, x [1,4,3,3] has 4"), Error);
  CHECK_THROWS_WITH_AS(
      conv_transpose2d(ctx, x, Tensor::zeros({4, 2, 3, 3}), nullptr, ConvTranspose2dArgs::make(2, 1, 0, 1, 3)),
      doctest::Contains("conv_transpose2d: x has 4 channels, not divisible by groups 3"), Error);
  CHECK_THROWS_WITH_AS(
      conv_transpose2d(ctx, x, Tensor::zeros({4, 2, 3, 3}), nullptr, ConvTranspose2dArgs::make(2, 1, 2)),
      doctest::Contains("conv_transpose2d: output_padding 2x2 must be >= 0 and smaller than stride 2x2 or dilation 1x1"),
      Error);
  CHECK_THROWS_WITH_AS(
      conv_transpose2d(ctx, Tensor::zeros({1, 4, 1, 1}), Tensor::zeros({4, 2, 1, 1}), nullptr,
                       ConvTranspose2dArgs::make(1, 1)),
      doctest::Contains("conv_transpose2d: output size -1x-1 is not positive"), Error);
  Tensor b = Tensor::zeros({4});
  // w [4,2,...] with groups 1 gives 2 output channels: the bias must be [2].
  CHECK_THROWS_WITH_AS(conv_transpose2d(ctx, x, Tensor::zeros({4, 2, 3, 3}), &b, ConvTranspose2dArgs::make(2, 1)),
                       doctest::Contains("conv_transpose2d: b has shape [4], expected [2]"), Error);
  const ConvTranspose2dArgs a = ConvTranspose2dArgs::make(2, 1, 1);  // 3x3 -> 6x6
  Tensor w = Tensor::zeros({4, 2, 3, 3});
  CHECK_THROWS_WITH_AS(conv_transpose2d_dgrad(ctx, Tensor::zeros({1, 2, 5, 5}), w, x.shape(), a),
                       doctest::Contains("conv_transpose2d_dgrad: dy has shape [1,2,5,5], expected [1,2,6,6]"), Error);
  Tensor dw_bad = Tensor::zeros({4, 3, 3, 3});
  CHECK_THROWS_WITH_AS(conv_transpose2d_wgrad(ctx, Tensor::zeros({1, 2, 6, 6}), x, dw_bad, nullptr, a),
                       doctest::Contains("conv_transpose2d_wgrad: dy has shape [1,2,6,6], expected [1,3,6,6]"), Error);
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(conv_transpose2d(gpu, x, w, nullptr, a),
                       doctest::Contains("conv_transpose2d: tensor f32[1,4,3,3]@cpu is not on the context's device"),
                       Error);
}

TEST_CASE("linear: argument errors") {
  Ctx ctx;
  Tensor x = Tensor::zeros({2, 3});
  CHECK_THROWS_WITH_AS(linear(ctx, x, Tensor::zeros({4, 5}), nullptr),
                       doctest::Contains("linear: x [2,3] has 3 features, w [4,5] expects 5"), Error);
  Tensor b = Tensor::zeros({3});
  CHECK_THROWS_WITH_AS(linear(ctx, x, Tensor::zeros({4, 3}), &b), doctest::Contains("linear: b has shape [3], expected [4]"),
                       Error);
  CHECK_THROWS_WITH_AS(linear(ctx, Tensor::zeros({2, 3, 1}), Tensor::zeros({4, 3}), nullptr),
                       doctest::Contains("linear: x must have 2 dimensions"), Error);
  CHECK_THROWS_WITH_AS(linear_dgrad(ctx, Tensor::zeros({2, 5}), Tensor::zeros({4, 3})),
                       doctest::Contains("linear_dgrad: dy [2,5] has 5 features, w [4,3] has 4 outputs"), Error);
  Tensor dw = Tensor::zeros({4, 2});
  CHECK_THROWS_WITH_AS(linear_wgrad(ctx, Tensor::zeros({2, 4}), x, dw, nullptr),
                       doctest::Contains("linear_wgrad: dw has shape [4,2], expected [4,3]"), Error);
  Tensor dw_ok = Tensor::zeros({4, 3});
  CHECK_THROWS_WITH_AS(linear_wgrad(ctx, Tensor::zeros({3, 4}), x, dw_ok, nullptr),
                       doctest::Contains("linear_wgrad: dy [3,4] and x [2,3] have different batch sizes"), Error);
  CHECK_THROWS_WITH_AS(linear(ctx, x, Tensor::zeros({4, 3}, DType::F64), nullptr), doctest::Contains("linear: mixed dtypes"),
                       Error);
  Ctx gpu(Device::CUDA);
  CHECK_THROWS_WITH_AS(linear(gpu, x, Tensor::zeros({4, 3}), nullptr),
                       doctest::Contains("linear: tensor f32[2,3]@cpu is not on the context's device"), Error);
}

// ---------------------------------------------------------------- TF32 emulation (engine/cpu/gemm.h)

TEST_CASE("round_to_tf32: 10-bit mantissa, round to nearest, ties to even") {
  const float u = std::ldexp(1.0f, -10);  // the TF32 unit in the last place at 1
  CHECK(cpu::round_to_tf32(1.0f) == 1.0f);
  CHECK(cpu::round_to_tf32(1.0f + u) == 1.0f + u);                                // representable
  CHECK(cpu::round_to_tf32(1.0f + 0.25f * u) == 1.0f);                            // below half: down
  CHECK(cpu::round_to_tf32(1.0f + 0.75f * u) == 1.0f + u);                        // above half: up
  CHECK(cpu::round_to_tf32(1.0f + 0.5f * u) == 1.0f);                             // tie, 1 is even: down
  CHECK(cpu::round_to_tf32(1.0f + 1.5f * u) == 1.0f + 2.0f * u);                  // tie, 1+u is odd: up
  CHECK(cpu::round_to_tf32(-(1.0f + 0.75f * u)) == -(1.0f + u));                  // sign kept
  CHECK(cpu::round_to_tf32(2.0f - 0.25f * u) == 2.0f);                            // carries into the exponent
  CHECK(cpu::round_to_tf32(3.14159265f) == 3.140625f);                            // 1.1001001000|0111... x 2
  CHECK(std::isinf(cpu::round_to_tf32(std::numeric_limits<float>::infinity())));
  CHECK(std::isnan(cpu::round_to_tf32(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE("set_emulate_tf32: conv2d on TF32-rounded operands with f32 accumulation, then exact f32 again") {
  std::mt19937_64 rng(31);
  // A shape of the GEMM path, and CIFAR ResNet's 16-channel 3x3 (the direct kernel's, which the emulation must
  // turn off: until session 15 it did not, and those layers ran unrounded under it).
  const struct {
    Shape x, w;
  } shapes[] = {{{2, 5, 7, 6}, {4, 5, 3, 3}}, {{2, 16, 8, 8}, {16, 16, 3, 3}}};
  for (const auto& sh : shapes) {
    INFO("x " << sh.x.str());
    Tensor x = random_tensor(sh.x, rng), w = random_tensor(sh.w, rng);
    const Conv2dArgs a = Conv2dArgs::make(1, 1);
    auto rounded = [](const Tensor& t) {
      std::vector<double> v = t.values();
      for (double& e : v) e = cpu::round_to_tf32(static_cast<float>(e));
      return Tensor::from_values(v, t.shape(), DType::F32);
    };
    const Tensor exact = reference_conv2d(x, w, nullptr, a);
    const Tensor on_rounded = reference_conv2d(rounded(x), rounded(w), nullptr, a);
    REQUIRE(!cpu::emulate_tf32());
    Ctx ctx;
    Tensor y_f32 = conv2d(ctx, x, w, nullptr, a);
    cpu::set_emulate_tf32(true);
    Tensor y_tf32 = conv2d(ctx, x, w, nullptr, a);
    cpu::set_emulate_tf32(false);
    Tensor y_again = conv2d(ctx, x, w, nullptr, a);
    // The emulated result is the product of the rounded operands (to f32 summation), not the exact one.
    CHECK(max_rel_diff(y_tf32, on_rounded) < 1e-5);
    CHECK(max_rel_diff(y_tf32, exact) > 1e-4);
    CHECK(max_rel_diff(y_f32, exact) < 1e-5);
    CHECK(y_again.values() == y_f32.values());
  }
}

// ---------------------------------------------------------------- the direct 3x3 kernel

// The forward geometry of x [N,C,H,W] and w [K,C,3,3] (one group, padding 1) at a stride, as the op builds it.
cpu::ConvGeom geom_3x3(const Shape& x, const Shape& w, int stride) {
  cpu::ConvGeom g;
  g.N = x[0], g.C = g.Cg = x[1], g.H = x[2], g.W = x[3], g.K = g.Kg = w[0], g.R = g.S = 3;
  g.P = (g.H - 1) / stride + 1, g.Q = (g.W - 1) / stride + 1, g.sh = g.sw = stride, g.pt = g.pl = 1;
  return g;
}

TEST_CASE("the direct 3x3 kernel agrees with the GEMM path, stride 1 and 2, forward, input gradient, transposed conv") {
  if (!cpu::direct3x3_available()) {
    MESSAGE("skipped: this CPU has neither AVX-512 nor AVX2 with FMA, so the direct 3x3 kernel never runs here");
    return;
  }
  std::mt19937_64 rng(31);
  Arena arena(Device::CPU);
  Ctx ctx(Device::CPU, &arena);
  // CIFAR ResNet's three stages, a channel tail, one image, a plane of two 16-wide rows; rows ending inside
  // vectors (28 and 13 wide), a plane of 3,136 positions, 128 and 64 channels.
  const std::vector<Geo> geos{
      {{4, 16, 32, 32}, {16, 16, 3, 3}, Conv2dArgs::make(1, 1)}, {{3, 32, 16, 16}, {32, 32, 3, 3}, Conv2dArgs::make(1, 1)},
      {{5, 64, 8, 8}, {64, 64, 3, 3}, Conv2dArgs::make(1, 1)},   {{2, 20, 16, 16}, {13, 20, 3, 3}, Conv2dArgs::make(1, 1)},
      {{1, 8, 32, 32}, {8, 8, 3, 3}, Conv2dArgs::make(1, 1)},    {{2, 8, 2, 16}, {8, 8, 3, 3}, Conv2dArgs::make(1, 1)},
      {{2, 24, 28, 28}, {16, 24, 3, 3}, Conv2dArgs::make(1, 1)}, {{3, 9, 11, 13}, {11, 9, 3, 3}, Conv2dArgs::make(1, 1)},
      {{1, 16, 56, 56}, {16, 16, 3, 3}, Conv2dArgs::make(1, 1)}, {{1, 128, 8, 12}, {128, 128, 3, 3}, Conv2dArgs::make(1, 1)},
      {{1, 64, 12, 20}, {40, 64, 3, 3}, Conv2dArgs::make(1, 1)},
      // stride 2: CIFAR's two halving layers, a 9x14 output with channel tails, 64 and 32 channels 56 -> 28
      {{4, 16, 32, 32}, {32, 16, 3, 3}, Conv2dArgs::make(2, 1)}, {{3, 32, 16, 16}, {64, 32, 3, 3}, Conv2dArgs::make(2, 1)},
      {{2, 12, 18, 28}, {20, 12, 3, 3}, Conv2dArgs::make(2, 1)}, {{1, 64, 56, 56}, {64, 64, 3, 3}, Conv2dArgs::make(2, 1)},
      {{1, 32, 56, 56}, {24, 32, 3, 3}, Conv2dArgs::make(2, 1)},
  };
  // Each kernel this CPU has: AVX-512 where it has it, and AVX2 (on an AVX-512 CPU with AVX-512 switched off).
  std::vector<bool> avx512_runs{false};
  if (cpu::direct3x3_isa() == cpu::DirectIsa::Avx512) avx512_runs.push_back(true);
  for (bool avx512 : avx512_runs) {
    const cpu::DirectAvx512Switch isa(avx512);
    REQUIRE(cpu::direct3x3_isa() == (avx512 ? cpu::DirectIsa::Avx512 : cpu::DirectIsa::Avx2));
    int ran = 0;
    for (const Geo& geo : geos) {
      INFO("x " << geo.x.str() << " w " << geo.w.str() << (avx512 ? " AVX-512" : " AVX2"));
      const Shape ys = conv2d_out_shape(geo.x, geo.w, geo.a);
      Tensor x = random_tensor(geo.x, rng, DType::F32), w = random_tensor(geo.w, rng, DType::F32);
      Tensor b = random_tensor(Shape{geo.w[0]}, rng, DType::F32), dy = random_tensor(ys, rng, DType::F32);
      // The transposed conv with the same weights maps ys-shaped inputs to x-shaped outputs (at stride 2 with
      // an output padding of 1: the x2 upsampling of a U-Net decoder).
      const int st = geo.a.stride_h;
      const ConvTranspose2dArgs ta = ConvTranspose2dArgs::make(st, 1, st - 1);
      Tensor wt = random_tensor(Shape{geo.w[0], geo.w[1], 3, 3}, rng, DType::F32);
      // The AVX2 kernel stops at fewer channels (conv_direct.h); those geometries check that the GEMM path ran.
      const bool applies = cpu::direct3x3_applies(geom_3x3(geo.x, geo.w, st));
      CHECK((applies || !avx512));
      ran += applies;
      std::vector<std::vector<double>> got[2];
      for (bool direct : {false, true}) {
        const cpu::Direct3x3Switch use_direct(direct);
        const int64_t runs = cpu::direct3x3_runs();
        got[direct] = {conv2d(ctx, x, w, &b, geo.a).values(), conv2d_dgrad(ctx, dy, w, geo.x, geo.a).values(),
                       conv_transpose2d(ctx, dy, wt, nullptr, ta).values()};
        CHECK(cpu::direct3x3_runs() - runs == (direct && applies ? 3 : 0));  // the path under test did run
        arena.reset();
      }
      const Tensor yref = reference_conv2d(x.to(DType::F64), w.to(DType::F64), &b, geo.a);
      const char* what[3] = {"conv2d", "conv2d_dgrad", "conv_transpose2d"};
      for (int i = 0; i < 3; ++i) {
        INFO(std::string(what[i]));
        const Shape s = i == 0 ? ys : geo.x;
        const double d = max_rel_diff(Tensor::from_values(got[1][i], s), Tensor::from_values(got[0][i], s));
        CHECK(d < f32_tolerance(geo.w));  // mostly the forward is even bit-equal: both sum c, r, s in order
      }
      // Twice the usual f32 tolerance: the worst of 50,000 outputs (64 channels at 28x28) is 1.0e-5 away on
      // either path (the GEMM path's 9.0e-6), at the usual limit.
      CHECK(max_rel_diff(Tensor::from_values(got[1][0], ys), yref) < 2 * f32_tolerance(geo.w));
    }
    CHECK(ran == (avx512 ? 16 : 14));
  }
}

TEST_CASE("the AVX-512 and AVX2 direct kernels give the same bits") {
  if (cpu::direct3x3_isa() != cpu::DirectIsa::Avx512) {
    MESSAGE("skipped: this CPU has no AVX-512, so only the AVX2 kernel runs here");
    return;
  }
  std::mt19937_64 rng(41);
  Arena arena(Device::CPU);
  Ctx ctx(Device::CPU, &arena);
  const std::vector<Geo> geos{{{3, 16, 32, 32}, {16, 16, 3, 3}, Conv2dArgs::make(1, 1)},
                              {{2, 20, 11, 13}, {13, 20, 3, 3}, Conv2dArgs::make(1, 1)},
                              {{2, 24, 18, 28}, {20, 24, 3, 3}, Conv2dArgs::make(2, 1)}};
  for (const Geo& geo : geos) {
    INFO("x " << geo.x.str() << " w " << geo.w.str());
    Tensor x = random_tensor(geo.x, rng, DType::F32), w = random_tensor(geo.w, rng, DType::F32);
    Tensor dy = random_tensor(conv2d_out_shape(geo.x, geo.w, geo.a), rng, DType::F32);
    std::vector<double> got[2][2];
    for (bool avx512 : {false, true}) {
      const cpu::DirectAvx512Switch isa(avx512);
      const cpu::WinogradSwitch no_winograd(false);
      const int64_t runs = cpu::direct3x3_runs();
      got[avx512][0] = conv2d(ctx, x, w, nullptr, geo.a).values();
      got[avx512][1] = conv2d_dgrad(ctx, dy, w, geo.x, geo.a).values();
      CHECK(cpu::direct3x3_runs() - runs == 2);
      arena.reset();
    }
    CHECK(got[0][0] == got[1][0]);
    CHECK(got[0][1] == got[1][1]);
  }
}

// ---------------------------------------------------------------- the narrow GEMM (engine/cpu/gemm_narrow.h)

TEST_CASE("the narrow GEMM agrees with a double loop, is the same on any thread count, and finishes each row once") {
  CHECK_FALSE(cpu::gemm_narrow_applies(0));
  CHECK_FALSE(cpu::gemm_narrow_applies(65));
  if (!cpu::gemm_narrow_available()) {
    MESSAGE("skipped: this CPU has no AVX-512, so the narrow GEMM never runs here");
    return;
  }
  CHECK(cpu::gemm_narrow_applies(1));
  CHECK(cpu::gemm_narrow_applies(64));
  std::mt19937_64 rng(41);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  // Every vector count (1-64 columns), whole and part row blocks (MR = 6 or 8), one and several K slices
  // (256), and strides wider than the rows.
  struct Case {
    int64_t m, n, k;
  };
  const std::vector<Case> cases{{7, 1, 5},    {17, 9, 300},  {8, 16, 40},  {1, 17, 1},
                                {5, 25, 7},   {6, 33, 256},  {13, 48, 300}, {70, 49, 513},
                                {9, 64, 100}, {16, 40, 1000}, {3, 64, 257}};
  // Rows finished, as NarrowRowsDone reports them: how often, and C's values at that moment.
  struct Seen {
    const float* c;
    int64_t ldc, n;
    std::vector<int> count;
    std::vector<float> at_done;
    static void record(const void* p, int64_t m0, int64_t rows) {
      Seen& s = *const_cast<Seen*>(static_cast<const Seen*>(p));
      for (int64_t i = m0; i < m0 + rows; ++i) {
#pragma omp atomic
        ++s.count[i];
        std::copy(s.c + i * s.ldc, s.c + i * s.ldc + s.n, s.at_done.begin() + i * s.n);
      }
    }
  };
  for (const Case& cs : cases) {
    INFO("m " << cs.m << " n " << cs.n << " k " << cs.k);
    const int64_t lda = cs.k + 3, ldb = cs.n + 5, ldc = cs.n + 2;
    std::vector<float> a(cs.m * lda), b(cs.k * ldb);
    for (float& v : a) v = u(rng);
    for (float& v : b) v = u(rng);
    Tensor pack = Tensor::empty(Shape{cpu::gemm_narrow_pack_size(cs.n, cs.k)});
    std::vector<float> got[2];
    for (bool parallel : {false, true}) {
      std::vector<float> c(cs.m * ldc, 7.0f);  // the gaps past n must keep their 7s
      Seen seen{c.data(), ldc, cs.n, std::vector<int>(cs.m, 0), std::vector<float>(cs.m * cs.n)};
      cpu::gemm_narrow(cs.m, cs.n, cs.k, a.data(), lda, b.data(), ldb, c.data(), ldc, pack.data<float>(), parallel,
                       cpu::NarrowRowsDone{&Seen::record, &seen});
      for (int64_t i = 0; i < cs.m; ++i) {
        CHECK(seen.count[i] == 1);
        for (int64_t j = 0; j < cs.n; ++j) CHECK(seen.at_done[i * cs.n + j] == c[i * ldc + j]);
        for (int64_t j = cs.n; j < ldc; ++j) CHECK(c[i * ldc + j] == 7.0f);
      }
      double worst = 0;
      for (int64_t i = 0; i < cs.m; ++i)
        for (int64_t j = 0; j < cs.n; ++j) {
          double ref = 0, mag = 0;
          for (int64_t kk = 0; kk < cs.k; ++kk) {
            ref += double(a[i * lda + kk]) * b[kk * ldb + j];
            mag += std::abs(double(a[i * lda + kk]) * b[kk * ldb + j]);
          }
          worst = std::max(worst, std::abs(c[i * ldc + j] - ref) / (mag + 1e-30));
        }
      CHECK(worst < 1e-6);  // relative to the sum of |products|: f32 rounding of k sums is ~k * 6e-8 at worst
      got[parallel] = c;
    }
    CHECK(got[0] == got[1]);  // one running sum per element in k order, whatever the row split
  }
  CHECK_THROWS_WITH_AS(cpu::gemm_narrow(2, 65, 3, nullptr, 3, nullptr, 65, nullptr, 65, nullptr, false),
                       doctest::Contains("65 columns"), Error);
}

TEST_CASE("conv2d on the narrow GEMM agrees with the BLAS path and the double loop, and the narrow GEMM ran") {
  if (!cpu::gemm_narrow_available()) {
    MESSAGE("skipped: this CPU has no AVX-512, so the narrow GEMM never runs here");
    return;
  }
  std::mt19937_64 rng(43);
  Arena arena(Device::CPU);
  Ctx ctx(Device::CPU, &arena);
  // ResNet-50's layer-4 shapes scaled down: 1x1 in and out, 3x3, stride 2 to 7x7; at batch 1 (rows split over
  // the threads) and, for a 1x1, two images per thread (taken one at a time whatever the thread count: conv.cpp's
  // plan; a 3x3 batches several small images into one wider GEMM instead); 6x6, 5x5 and 3x3 planes.
  const int64_t two_per_thread = 2 * omp_get_max_threads();
  const std::vector<Geo> geos{
      {{1, 96, 7, 7}, {40, 96, 1, 1}, Conv2dArgs::make(1, 0)},
      {{two_per_thread, 40, 7, 7}, {96, 40, 1, 1}, Conv2dArgs::make(1, 0)},
      {{1, 40, 7, 7}, {40, 40, 3, 3}, Conv2dArgs::make(1, 1)},
      {{1, 40, 14, 14}, {40, 40, 3, 3}, Conv2dArgs::make(2, 1)},
      {{1, 24, 6, 6}, {50, 24, 3, 3}, Conv2dArgs::make(1, 1)},
      {{1, 64, 5, 5}, {30, 64, 1, 1}, Conv2dArgs::make(1, 0)},
      {{1, 64, 3, 3}, {30, 64, 3, 3}, Conv2dArgs::make(1, 1)},
  };
  for (const Geo& geo : geos) {
    INFO("x " << geo.x.str() << " w " << geo.w.str());
    const Shape ys = conv2d_out_shape(geo.x, geo.w, geo.a), ks{geo.w[0]};
    Tensor x = random_tensor(geo.x, rng), w = random_tensor(geo.w, rng), b = random_tensor(ks, rng);
    std::vector<double> got[2];
    for (bool narrow : {false, true}) {
      const cpu::GemmNarrowSwitch use(narrow);
      const int64_t runs = cpu::gemm_narrow_runs();
      got[narrow] = conv2d(ctx, x, w, &b, geo.a).values();
      CHECK((cpu::gemm_narrow_runs() > runs) == narrow);  // the path under test did run
      arena.reset();
    }
    CHECK(max_rel_diff(Tensor::from_values(got[1], ys), Tensor::from_values(got[0], ys)) < f32_tolerance(geo.w));
    const Tensor yref = reference_conv2d(x.to(DType::F64), w.to(DType::F64), &b, geo.a);
    CHECK(max_rel_diff(Tensor::from_values(got[1], ys), yref) < f32_tolerance(geo.w));
  }
}

// ---------------------------------------------------------------- Winograd F(2x2, 3x3)

TEST_CASE("Winograd F(2x2, 3x3) agrees with the direct kernel and the double-precision paths") {
  if (cpu::direct3x3_isa() != cpu::DirectIsa::Avx512) {
    MESSAGE("skipped: this CPU has no AVX-512, so Winograd does not run here");
    return;
  }
  std::mt19937_64 rng(37);
  Arena arena(Device::CPU);
  Ctx ctx(Device::CPU, &arena);
  // Rows of 16 tiles (32x32), 14 (28x28: one part-filled block), 20 (12x40: a full and a part block), 28
  // (56x56 at 32 channels: two blocks); the narrow packing of 8-tile rows (16x16, and 10 rows: a half
  // group), 4-tile rows (8x8; 14x8: a group of 3) and 2-tile rows (8x4: 4 of a vector's 8 tile rows);
  // channel tails both ways. Each batch holds two chunks
  // per thread and a part chunk, so Winograd runs whatever the thread count.
  struct W {
    int64_t C, K, H, W;
  };
  const std::vector<W> geos{{32, 32, 32, 32}, {32, 33, 28, 28}, {40, 32, 12, 40}, {32, 32, 56, 56},
                            {32, 48, 16, 16}, {32, 32, 10, 16}, {64, 40, 8, 8},   {36, 32, 14, 8},
                            {32, 40, 8, 4}};
  const Conv2dArgs a = Conv2dArgs::make(1, 1);
  for (const W& gw : geos) {
    cpu::ConvGeom g;
    g.C = gw.C, g.K = gw.K, g.H = g.P = gw.H, g.W = g.Q = gw.W, g.R = g.S = 3, g.Cg = g.C, g.Kg = g.K;
    g.pt = g.pl = 1;
    g.N = 2 * omp_get_max_threads() * cpu::winograd_chunk_images(g) + 1;
    REQUIRE(cpu::winograd_applies(g, omp_get_max_threads()));
    const Shape xs{g.N, g.C, g.H, g.W}, ws{g.K, g.C, 3, 3}, ys{g.N, g.K, g.H, g.W}, ks{g.K};
    INFO("x " << xs.str() << " w " << ws.str());
    Tensor x = random_tensor(xs, rng), w = random_tensor(ws, rng), b = random_tensor(ks, rng);
    Tensor dy = random_tensor(ys, rng), r = random_tensor(ys, rng), gam = random_tensor(ks, rng);
    Tensor bet = random_tensor(ks, rng), mean = random_tensor(ks, rng);
    Tensor var = Tensor::from_values(test::uniform(ks, rng, 0.5, 1.5), ks, DType::F32);
    std::vector<double> yv = test::uniform(ys, rng, -2, 8);
    for (double& e : yv) e = std::max(e, 0.0);  // a ReLU's output for the gate
    Tensor yact = Tensor::from_values(yv, ys, DType::F32);
    // The transposed conv with weights [K, C, 3, 3] maps ys to xs.
    const ConvTranspose2dArgs ta = ConvTranspose2dArgs::make(1, 1);
    std::vector<std::vector<double>> got[2];
    for (bool wino : {false, true}) {
      const cpu::WinogradSwitch use(wino);
      const int64_t runs = cpu::winograd_runs();
      got[wino] = {conv2d(ctx, x, w, &b, a).values(),
                   conv2d_bn_act(ctx, x, w, gam, bet, mean, var, 1e-3, &r, Activation::ReLU, a).values(),
                   conv2d_dgrad(ctx, dy, w, xs, a).values(),
                   conv2d_dgrad_bn_act(ctx, dy, yact, w, gam, var, 1e-3, Activation::ReLU, xs, a).values(),
                   conv_transpose2d(ctx, dy, w, nullptr, ta).values()};
      CHECK(cpu::winograd_runs() - runs == (wino ? 5 : 0));  // the path under test did run
      arena.reset();
    }
    // Winograd against the direct kernel (both f32), and the plain forward and input gradient against the
    // double-precision references: the conv from its definition and the f64 input gradient (GEMM path,
    // checked by finite differences).
    const Tensor yref = reference_conv2d(x.to(DType::F64), w.to(DType::F64), &b, a);
    const Tensor dxref = conv2d_dgrad(ctx, dy.to(DType::F64), w.to(DType::F64), xs, a);
    const char* what[5] = {"conv2d", "conv2d_bn_act", "conv2d_dgrad", "conv2d_dgrad_bn_act", "conv_transpose2d"};
    // Winograd's worst errors from the double references were 3.7e-6 to 8.5e-6 here, the direct kernel's
    // 4.8e-6 to 1.1e-5 (F(2x2, 3x3) sums C products per tile point instead of 9 C), so twice the usual f32
    // tolerance only leaves room for the direct kernel's own spread; a wrong transform is off by O(1).
    const double tol = 2 * f32_tolerance(ws);
    for (int i = 0; i < 5; ++i) {
      INFO(what[i]);
      const Shape s = i < 2 ? ys : xs;
      CHECK(max_rel_diff(Tensor::from_values(got[1][i], s), Tensor::from_values(got[0][i], s)) < tol);
    }
    CHECK(max_rel_diff(Tensor::from_values(got[1][0], ys), yref) < tol);
    CHECK(max_rel_diff(Tensor::from_values(got[1][2], xs), dxref) < tol);
    arena.reset();
  }
}
