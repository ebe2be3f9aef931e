// Harness rows for conv2d, conv_transpose2d and linear: every forward with every backward piece
// (input gradient, weight gradient, bias gradient). Inputs are {x, w, b} (b optional).
//
// Shapes are small (finite differences run the forward twice per checked element) but chosen to
// reach every code path of engine/cpu/conv.cpp: odd sizes, batch 1 (the threads work inside one
// image), batch >= 2 (the threads take whole images), small images batched into one GEMM (P*Q
// below 512) and large ones (P*Q >= 512, written straight into the output), the 1x1 path
// without im2col, groups, the direct depthwise loops, strides, dilations and asymmetric padding.
//
// The CUDA comparison (tests/cuda_vs_cpu.cpp) runs the same rows through cuda/conv_backend.cpp:
// the implicit-GEMM kernels and cuDNN compute in TF32 (10-bit mantissa products), hence cuda_tol
// 2e-2 on every conv row. The rows after "CUDA tile edges" are there for the CUDA kernels (block
// tile 64/128 x 64 x 32): K and C not multiples of 8/16/32, output and input pixel counts not
// multiples of 64, both tile heights (M <= 64 and M > 64), float4 and scalar weight loads (C*R*S
// a multiple of 4 or not), split-K (long reductions on small grids: forward at batch 1, wgrad on
// large images), the depthwise kernels with more than 9 taps and with split reductions, and
// shapes cuDNN takes or refuses (asymmetric padding). They are bigger than the rows above, so
// they check fewer elements by finite differences (max_fd_elements).
#include "tests/op_check.h"

namespace sal::test {

namespace {

// TF32 on CUDA (see above).
constexpr double kConvCudaTol = 2e-2;

OpCase conv_case(const std::string& name, Shape x, Shape w, Conv2dArgs a, bool bias = true, int max_fd = 48) {
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
      .cuda_tol = kConvCudaTol,
      .max_fd_elements = max_fd,
  };
}

OpCase transpose_case(const std::string& name, Shape x, Shape w, ConvTranspose2dArgs a, bool bias = true,
                      int max_fd = 48) {
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
      .cuda_tol = kConvCudaTol,
      .max_fd_elements = max_fd,
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

// conv2d_bn_act: y = act(bn(conv(x, w)) + residual). Inputs {x, w, gamma, beta, mean, var, residual}
// (residual optional: an empty slot otherwise, so the indices stay fixed); the BN statistics are
// constants (frozen), x and w are checked. Its backward is the documented composition: the fused
// frozen-BN backward from y (with a residual: the activation's backward first, which is also
// dresidual), then conv2d_dgrad / conv2d_wgrad. Inputs are uniform in [-1, 1] (var in [0.5, 1.5]); a
// pre-activation within ~1e-6 of a kink (0, or 6 for ReLU6) would spoil a finite difference, which these
// seeds avoid. ReLU6 rows shift the BN output past 6 for part of the elements (beta in [2, 8]).
constexpr double kBnEps = 1e-3;
OpCase bn_act_case(const std::string& name, Shape x, Shape w, Conv2dArgs a, bool residual, Activation act,
                   int max_fd = 24) {
  const Shape y = conv2d_out_shape(x, w, a);
  const Shape k{w[0]};
  return OpCase{
      .name = "conv2d_bn_act/" + name,
      .shapes = {x, w, k, k, k, k, residual ? y : Shape{0}},
      .check_grad = {true, true, false, false, false, false, residual},
      .init = [act](int i, const Shape& s, std::mt19937_64& rng) {
        if (i == 5) return uniform(s, rng, 0.5, 1.5);
        if (i == 3 && act == Activation::ReLU6) return uniform(s, rng, 2, 8);
        return uniform(s, rng);
      },
      .forward =
          [a, residual, act](Ctx& c, const Inputs& in) {
            return conv2d_bn_act(c, in[0], in[1], in[2], in[3], in[4], in[5], kBnEps, residual ? &in[6] : nullptr, act,
                                 a);
          },
      .backward =
          [a, residual, act](Ctx& c, const Inputs& in, const Tensor& y, const Tensor& dy) {
            Tensor dsum, dz;
            if (residual) {
              dsum = act == Activation::ReLU    ? relu_backward(c, dy, y)
                     : act == Activation::ReLU6 ? relu6_backward(c, dy, y)
                                                : dy;
              dz = batchnorm2d_infer_act_backward(c, dsum, y, in[2], in[5], kBnEps, Activation::None);
            } else {
              dz = batchnorm2d_infer_act_backward(c, dy, y, in[2], in[5], kBnEps, act);
            }
            Tensor dw = c.alloc_zeros(in[1].shape(), in[1].dtype());
            conv2d_wgrad(c, dz, in[0], dw, nullptr, a);
            return std::vector<Tensor>{conv2d_dgrad(c, dz, in[1], in[0].shape(), a), dw, Tensor(), Tensor(), Tensor(),
                                       Tensor(), dsum};
          },
      .cuda_tol = kConvCudaTol,
      .max_fd_elements = max_fd,
  };
}

// conv2d_dgrad_bn_act: dx = conv2d_dgrad(gate(dy), w), gate(dy) = act'(y) * dy * gamma / sqrt(var + eps).
// Inputs {dy, y, w, gamma, var}: linear in dy (checked); its transpose is gate(conv2d(dout, w)) (the gate is
// diagonal, conv2d the transpose of conv2d_dgrad). y holds exact zeros (and sixes for ReLU6), where the
// gradient stops, and values between.
OpCase dgrad_bn_act_case(const std::string& name, Shape x, Shape w, Conv2dArgs a, Activation act, int max_fd = 24) {
  const Shape y = conv2d_out_shape(x, w, a);
  const Shape k{w[0]};
  return OpCase{
      .name = "conv2d_dgrad_bn_act/" + name,
      .shapes = {y, y, w, k, k},
      .check_grad = {true, false, false, false, false},
      .init = [act](int i, const Shape& s, std::mt19937_64& rng) {
        if (i == 4) return uniform(s, rng, 0.5, 1.5);
        if (i != 1) return uniform(s, rng);
        std::vector<double> v = uniform(s, rng, -2, 8);
        for (double& e : v) e = act == Activation::None ? e : std::clamp(e, 0.0, act == Activation::ReLU ? 1e9 : 6.0);
        return v;
      },
      .forward =
          [a, act, x](Ctx& c, const Inputs& in) {
            return conv2d_dgrad_bn_act(c, in[0], in[1], in[2], in[3], in[4], kBnEps, act, x, a);
          },
      .backward =
          [a, act](Ctx& c, const Inputs& in, const Tensor&, const Tensor& dout) {
            const Tensor back = conv2d(c, dout, in[2], nullptr, a);
            return std::vector<Tensor>{batchnorm2d_infer_act_backward(c, back, in[1], in[3], in[4], kBnEps, act)};
          },
      .cuda_tol = kConvCudaTol,
      .max_fd_elements = max_fd,
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

      // ---- CUDA tile edges (see the header comment)
      conv_case("cuda_k37_c19_13x13_pad1", {2, 19, 13, 13}, {37, 19, 3, 3}, A::make(1, 1), true, 8),
      conv_case("cuda_k70_c33_17x17_stride2_batch3", {3, 33, 17, 17}, {70, 33, 3, 3}, A::make(2, 1), true, 6),
      conv_case("cuda_resnet_3x3_64to64_14x14_batch2", {2, 64, 14, 14}, {64, 64, 3, 3}, A::make(1, 1), true, 4),
      conv_case("cuda_1x1_k129_c68_7x7_batch1", {1, 68, 7, 7}, {129, 68, 1, 1}, A::make(1, 0), true, 6),
      conv_case("cuda_1x1_stride2_k65_c33_13x13", {2, 33, 13, 13}, {65, 33, 1, 1}, A::make(2, 0), true, 6),
      conv_case("cuda_splitk_fwd_3x3_256to40_7x7_batch1", {1, 256, 7, 7}, {40, 256, 3, 3}, A::make(1, 1), true, 4),
      conv_case("cuda_splitk_wgrad_3x3_8to8_24x24", {2, 8, 24, 24}, {8, 8, 3, 3}, A::make(1, 1), true, 8),
      conv_case("cuda_7x7_stride2_pad3_3to16_29x29_batch1", {1, 3, 29, 29}, {16, 3, 7, 7}, A::make(2, 3), true, 8),
      conv_case("cuda_tf_same_asym_stride2_5to24_17x16_batch1", {1, 5, 17, 16}, {24, 5, 3, 3},
                A::tf_same(17, 16, 3, 3, 2), true, 8),
      conv_case("cuda_dil2_groups2_asym_pad_11x9", {2, 6, 11, 9}, {10, 3, 3, 3}, args(1, 1, 2, 1, 0, 3, 2, 2, 2), true,
                8),
      conv_case("cuda_groups2_k6_c10_stride2_7x7_batch3", {3, 10, 7, 7}, {6, 5, 3, 3}, A::make(2, 1, 1, 2), true, 8),
      conv_case("cuda_depthwise_3x3_c37_17x17_batch3", {3, 37, 17, 17}, {37, 1, 3, 3}, A::make(1, 1, 1, 37), true, 8),
      conv_case("cuda_depthwise_5x5_stride2_c20_13x13", {2, 20, 13, 13}, {20, 1, 5, 5}, A::make(2, 2, 1, 20), true, 8),
      conv_case("cuda_depthwise_split_reduction_80x80", {2, 3, 80, 80}, {3, 1, 3, 3}, A::make(1, 1, 1, 3), true, 8),
      transpose_case("cuda_stride2_outpad1_c13_k19_7x7", {2, 13, 7, 7}, {13, 19, 3, 3}, TA::make(2, 1, 1), true, 8),
      transpose_case("cuda_4x4_stride2_outpad1_batch3", {3, 8, 5, 6}, {8, 6, 4, 4}, TA::make(2, 1, 1), true, 8),

      // ---- conv2d_bn_act: every activation with and without residual, on the CPU's paths (batched
      // small images, one large image in place, 1x1 in place, groups, depthwise) and the CUDA kernels'
      // (both tile heights, split-K sum, depthwise, asymmetric padding that cuDNN refuses)
      bn_act_case("3x3_relu_residual", {2, 3, 5, 6}, {4, 3, 3, 3}, A::make(1, 1), true, Activation::ReLU),
      bn_act_case("3x3_stride2_relu6_batch1", {1, 3, 7, 5}, {5, 3, 3, 3}, A::make(2, 1), false, Activation::ReLU6),
      bn_act_case("1x1_none_residual", {3, 4, 3, 5}, {5, 4, 1, 1}, A::make(1, 0), true, Activation::None),
      bn_act_case("1x1_none", {2, 4, 3, 3}, {3, 4, 1, 1}, A::make(1, 0), false, Activation::None),
      bn_act_case("large_relu6_residual", {2, 2, 23, 23}, {2, 2, 3, 3}, A::make(1, 1), true, Activation::ReLU6),
      bn_act_case("1x1_large_batch1_relu", {1, 3, 24, 22}, {2, 3, 1, 1}, A::make(1, 0), false, Activation::ReLU),
      bn_act_case("depthwise_relu6", {2, 3, 5, 6}, {3, 1, 3, 3}, A::make(1, 1, 1, 3), false, Activation::ReLU6),
      bn_act_case("depthwise_tf_same_stride2_relu6", {2, 3, 6, 5}, {3, 1, 3, 3}, A::tf_same(6, 5, 3, 3, 2, 3), false,
                  Activation::ReLU6),
      bn_act_case("groups2_relu_residual", {2, 4, 5, 5}, {6, 2, 3, 3}, A::make(1, 1, 1, 2), true, Activation::ReLU),
      bn_act_case("cuda_k70_c33_relu_residual_batch3", {3, 33, 17, 17}, {70, 33, 3, 3}, A::make(2, 1), true,
                  Activation::ReLU, 6),
      bn_act_case("cuda_1x1_k129_c68_relu6_batch1", {1, 68, 7, 7}, {129, 68, 1, 1}, A::make(1, 0), false,
                  Activation::ReLU6, 6),
      bn_act_case("cuda_splitk_3x3_256to40_7x7_relu_residual", {1, 256, 7, 7}, {40, 256, 3, 3}, A::make(1, 1), true,
                  Activation::ReLU, 4),
      bn_act_case("cuda_depthwise_3x3_c37_relu6_residual", {3, 37, 17, 17}, {37, 1, 3, 3}, A::make(1, 1, 1, 37), true,
                  Activation::ReLU6, 6),
      bn_act_case("cuda_tf_same_asym_relu_batch1", {1, 5, 17, 16}, {24, 5, 3, 3}, A::tf_same(17, 16, 3, 3, 2), false,
                  Activation::ReLU, 6),

      // ---- conv2d_dgrad_bn_act: the CPU's gathered, in-place (gated into a buffer) and depthwise paths, and
      // every activation
      dgrad_bn_act_case("3x3_relu", {2, 3, 5, 6}, {4, 3, 3, 3}, A::make(1, 1), Activation::ReLU),
      dgrad_bn_act_case("3x3_stride2_relu6_batch1", {1, 3, 7, 5}, {5, 3, 3, 3}, A::make(2, 1), Activation::ReLU6),
      dgrad_bn_act_case("1x1_none", {3, 4, 3, 5}, {5, 4, 1, 1}, A::make(1, 0), Activation::None),
      dgrad_bn_act_case("1x1_large_batch1_relu", {1, 3, 24, 22}, {2, 3, 1, 1}, A::make(1, 0), Activation::ReLU),
      dgrad_bn_act_case("large_relu6", {2, 2, 23, 23}, {2, 2, 3, 3}, A::make(1, 1), Activation::ReLU6),
      dgrad_bn_act_case("groups2_relu", {2, 4, 5, 5}, {6, 2, 3, 3}, A::make(1, 1, 1, 2), Activation::ReLU),
      dgrad_bn_act_case("depthwise_tf_same_stride2_relu6", {2, 3, 6, 5}, {3, 1, 3, 3}, A::tf_same(6, 5, 3, 3, 2, 3),
                        Activation::ReLU6),
      dgrad_bn_act_case("cuda_k70_c33_stride2_relu_batch3", {3, 33, 17, 17}, {70, 33, 3, 3}, A::make(2, 1),
                        Activation::ReLU, 6),

      // ---- linear
      linear_case("3x5_to_4", 3, 5, 4),
      linear_case("batch1", 1, 7, 3),
      linear_case("nobias", 4, 6, 5, false),
      linear_case("33x70_to_129", 33, 70, 129),
  };
}

}  // namespace sal::test
