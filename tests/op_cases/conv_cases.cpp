// Harness rows for conv2d, conv_transpose2d and linear: every forward with every backward piece
// (input gradient, weight gradient, bias gradient). Inputs are {x, w, b} (b optional).
//
// Shapes are small (finite differences run the forward twice per checked element) but chosen to
// reach every code path of engine/cpu/conv.cpp: odd sizes, batch 1 (the threads work inside one
// image), batch >= 2 (the threads take whole images), small images batched into one GEMM (P*Q
// below 512) and large ones (P*Q >= 512, written straight into the output), the 1x1 path
// without im2col, groups, the direct depthwise loops, strides, dilations and asymmetric padding.
#include "tests/op_check.h"

namespace sal::test {

namespace {

OpCase conv_case(const std::string& name, Shape x, Shape w, Conv2dArgs a, bool bias = true) {
  std::vector<Shape> shapes{x, w};
  if (bias) shapes.push_back(Shape{w[0]});
  return OpCase{
      .name = "conv2d/" + name,
      .shapes = shapes,
      .check_grad = {true, true, bias},
      .forward = [a, bias](Ctx& c, const Inputs& in) { return conv2d(c, in[0], in[1], bias ? &in[2] : nullptr, a); },
      .backward =
          [a, bias](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
            std::vector<Tensor> g;
            g.push_back(conv2d_dgrad(c, dy, in[1], in[0].shape(), a));
            Tensor dw = c.alloc_zeros(in[1].shape(), in[1].dtype());
            Tensor db = bias ? c.alloc_zeros(in[2].shape(), in[2].dtype()) : Tensor();
            conv2d_wgrad(c, dy, in[0], dw, bias ? &db : nullptr, a);
            g.push_back(dw);
            if (bias) g.push_back(db);
            return g;
          },
  };
}

OpCase transpose_case(const std::string& name, Shape x, Shape w, ConvTranspose2dArgs a, bool bias = true) {
  std::vector<Shape> shapes{x, w};
  if (bias) shapes.push_back(Shape{w[1] * a.groups});
  return OpCase{
      .name = "conv_transpose2d/" + name,
      .shapes = shapes,
      .check_grad = {true, true, bias},
      .forward =
          [a, bias](Ctx& c, const Inputs& in) {
            return conv_transpose2d(c, in[0], in[1], bias ? &in[2] : nullptr, a);
          },
      .backward =
          [a, bias](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
            std::vector<Tensor> g;
            g.push_back(conv_transpose2d_dgrad(c, dy, in[1], in[0].shape(), a));
            Tensor dw = c.alloc_zeros(in[1].shape(), in[1].dtype());
            Tensor db = bias ? c.alloc_zeros(in[2].shape(), in[2].dtype()) : Tensor();
            conv_transpose2d_wgrad(c, dy, in[0], dw, bias ? &db : nullptr, a);
            g.push_back(dw);
            if (bias) g.push_back(db);
            return g;
          },
  };
}

OpCase linear_case(const std::string& name, int64_t n, int64_t k, int64_t m, bool bias = true) {
  std::vector<Shape> shapes{{n, k}, {m, k}};
  if (bias) shapes.push_back(Shape{m});
  return OpCase{
      .name = "linear/" + name,
      .shapes = shapes,
      .check_grad = {true, true, bias},
      .forward = [bias](Ctx& c, const Inputs& in) { return linear(c, in[0], in[1], bias ? &in[2] : nullptr); },
      .backward =
          [bias](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dy) {
            std::vector<Tensor> g;
            g.push_back(linear_dgrad(c, dy, in[1]));
            Tensor dw = c.alloc_zeros(in[1].shape(), in[1].dtype());
            Tensor db = bias ? c.alloc_zeros(in[2].shape(), in[2].dtype()) : Tensor();
            linear_wgrad(c, dy, in[0], dw, bias ? &db : nullptr);
            g.push_back(dw);
            if (bias) g.push_back(db);
            return g;
          },
  };
}

Conv2dArgs args(int sh, int sw, int pt, int pl, int pb, int pr, int dh = 1, int dw = 1, int groups = 1) {
  return Conv2dArgs{sh, sw, pt, pl, pb, pr, dh, dw, groups};
}

}  // namespace

SAL_OP_CASES {
  using A = Conv2dArgs;
  using TA = ConvTranspose2dArgs;
  return {
      // ---- conv2d, GEMM path, small images (several images per GEMM)
      conv_case("3x3_pad1", {2, 3, 5, 6}, {4, 3, 3, 3}, A::make(1, 1)),
      conv_case("3x3_stride2_pad1_batch1", {1, 3, 7, 5}, {5, 3, 3, 3}, A::make(2, 1)),
      conv_case("3x3_dil2_pad2", {2, 2, 7, 7}, {3, 2, 3, 3}, A::make(1, 2, 2)),
      conv_case("2x3_mixed_stride_dil_asym_pad", {1, 2, 7, 8}, {3, 2, 2, 3}, args(2, 1, 1, 0, 0, 2, 1, 2)),
      conv_case("tf_same_stride2", {3, 2, 6, 7}, {3, 2, 3, 3}, A::tf_same(6, 7, 3, 3, 2)),
      conv_case("5x5_pad2_nobias", {2, 2, 6, 5}, {2, 2, 5, 5}, A::make(1, 2), false),
      conv_case("1x1", {3, 4, 3, 5}, {5, 4, 1, 1}, A::make(1, 0)),
      conv_case("1x1_stride2", {2, 4, 5, 5}, {3, 4, 1, 1}, A::make(2, 0)),
      conv_case("1x1_pad1", {1, 3, 3, 3}, {2, 3, 1, 1}, A::make(1, 1)),
      // ---- groups
      conv_case("groups2_3x3", {2, 4, 5, 5}, {6, 2, 3, 3}, A::make(1, 1, 1, 2)),
      conv_case("groups3_1x1_batch1", {1, 6, 3, 4}, {3, 2, 1, 1}, A::make(1, 0, 1, 3)),
      conv_case("depth_multiplier2", {2, 3, 5, 4}, {6, 1, 3, 3}, A::make(1, 1, 1, 3)),
      // ---- depthwise (groups == C == K): the direct loops
      conv_case("depthwise_3x3", {2, 3, 5, 6}, {3, 1, 3, 3}, A::make(1, 1, 1, 3)),
      conv_case("depthwise_stride2_batch1", {1, 4, 7, 6}, {4, 1, 3, 3}, A::make(2, 1, 1, 4)),
      conv_case("depthwise_tf_same_stride2", {2, 3, 6, 5}, {3, 1, 3, 3}, A::tf_same(6, 5, 3, 3, 2, 3)),
      conv_case("depthwise_dil2_nobias", {2, 2, 7, 7}, {2, 1, 3, 3}, A::make(1, 2, 2, 2), false),
      conv_case("single_channel", {2, 1, 5, 5}, {1, 1, 2, 2}, A::make(1, 0)),
      // ---- large images: one image per GEMM, written in place (P*Q >= 512)
      conv_case("3x3_pad1_large", {2, 2, 23, 23}, {2, 2, 3, 3}, A::make(1, 1)),
      conv_case("1x1_large", {2, 3, 24, 22}, {2, 3, 1, 1}, A::make(1, 0)),
      conv_case("groups2_large_batch1", {1, 4, 23, 24}, {2, 2, 3, 3}, A::make(1, 1, 1, 2)),

      // ---- conv_transpose2d (x:[N,C,H,W], w:[C,K/g,R,S])
      transpose_case("3x3_stride2_pad1_outpad1", {2, 3, 3, 4}, {3, 2, 3, 3}, TA::make(2, 1, 1)),
      transpose_case("2x2_stride2", {2, 4, 3, 3}, {4, 2, 2, 2}, TA::make(2, 0)),
      transpose_case("groups2_batch1", {1, 4, 3, 3}, {4, 3, 3, 3}, TA::make(1, 1, 0, 1, 2)),
      transpose_case("dil2_outpad1_stride1", {1, 2, 3, 3}, {2, 2, 3, 3}, TA::make(1, 0, 1, 2)),
      transpose_case("depthwise_stride2", {2, 3, 4, 4}, {3, 1, 3, 3}, TA::make(2, 1, 1, 1, 3)),
      transpose_case("1x1_nobias", {2, 3, 3, 5}, {3, 4, 1, 1}, TA::make(1, 0), false),
      transpose_case("asym_stride_large", {1, 2, 12, 23}, {2, 2, 3, 2},
                     ConvTranspose2dArgs{2, 1, 1, 0, 1, 0, 1, 1, 1}),

      // ---- linear
      linear_case("3x5_to_4", 3, 5, 4),
      linear_case("batch1", 1, 7, 3),
      linear_case("nobias", 4, 6, 5, false),
  };
}

}  // namespace sal::test
