// Harness rows for batch normalisation: inference (x, gamma, beta checked; the running
// statistics are constants), the fused inference epilogue (act(bn(x) + residual), its backward
// composed of existing ops), the fused frozen-BN backward from the activation's output, and training
// (x through the batch statistics, gamma, beta).
// Besides small hand-sized shapes, rows cover what the CUDA kernels split on: planes that are a
// multiple of 4 values (float4 path) or not (scalar path), small planes (7x7: 64-thread blocks),
// planes longer than one block's segment (several partial sums per plane), batch 1, and x given
// as a view 4 bytes off alignment (scalar path although H*W is a multiple of 4).
#include <algorithm>
#include <cmath>
#include <memory>

#include "tests/op_check.h"

namespace sal::test {

namespace {

constexpr double kInferEps = 1e-3;
constexpr double kTrainEps = 1e-5;

// Inputs: x, gamma, beta, mean, var (var positive).
OpCase infer_case(const std::string& name, Shape x) {
  const int64_t c = x[1];
  return OpCase{
      .name = name,
      .shapes = {x, {c}, {c}, {c}, {c}},
      .check_grad = {true, true, true, false, false},
      .init = [](int i, const Shape& s, std::mt19937_64& rng) {
        return i == 4 ? uniform(s, rng, 0.5, 1.5) : uniform(s, rng);
      },
      .forward = [](Ctx& ctx, const Inputs& in) {
        return batchnorm2d_infer(ctx, in[0], in[1], in[2], in[3], in[4], kInferEps);
      },
      .backward = [](Ctx& ctx, const Inputs& in, const Tensor&, const Tensor& dy) {
        Tensor dg = ctx.alloc_zeros(in[1].shape(), in[1].dtype());
        Tensor db = ctx.alloc_zeros(in[2].shape(), in[2].dtype());
        Tensor dx = batchnorm2d_infer_backward(ctx, dy, in[0], in[1], in[3], in[4], kInferEps, &dg, &db);
        return std::vector<Tensor>{dx, dg, db, Tensor(), Tensor()};
      }};
}

// Inputs: x, gamma, beta. with_running also passes running statistics (they must not change y).
OpCase train_case(const std::string& name, Shape x, bool with_running) {
  const int64_t c = x[1];
  auto run = [with_running](Ctx& ctx, const Inputs& in, Tensor& sm, Tensor& si) {
    const Shape cs{in[0].dim(1)};
    sm = ctx.alloc(cs, in[0].dtype());
    si = ctx.alloc(cs, in[0].dtype());
    Tensor rm = ctx.alloc_zeros(cs, in[0].dtype()), rv = ctx.alloc_zeros(cs, in[0].dtype());
    return batchnorm2d_train(ctx, in[0], in[1], in[2], kTrainEps, 0.1, with_running ? &rm : nullptr,
                             with_running ? &rv : nullptr, sm, si);
  };
  return OpCase{
      .name = name,
      .shapes = {x, {c}, {c}},
      .check_grad = {true, true, true},
      .init = [](int i, const Shape& s, std::mt19937_64& rng) {
        return i == 1 ? uniform(s, rng, 0.5, 2) : uniform(s, rng);
      },
      .forward = [run](Ctx& ctx, const Inputs& in) {
        Tensor sm, si;
        return run(ctx, in, sm, si);
      },
      .backward = [run](Ctx& ctx, const Inputs& in, const Tensor&, const Tensor& dy) {
        Tensor sm, si;
        run(ctx, in, sm, si);  // the saved statistics of this forward
        Tensor dg = ctx.alloc_zeros(in[1].shape(), in[1].dtype());
        Tensor db = ctx.alloc_zeros(in[2].shape(), in[2].dtype());
        Tensor dx = batchnorm2d_train_backward(ctx, dy, in[0], in[1], sm, si, &dg, &db);
        return std::vector<Tensor>{dx, dg, db};
      }};
}

// A big row: fewer finite differences, a looser CUDA tolerance for long float sums.
OpCase big(OpCase c, int fd = 12, double cuda_tol = 3e-4) {
  c.max_fd_elements = fd;
  c.cuda_tol = cuda_tol;
  return c;
}

// x:[N,C,H,W] as a view one element into a flat [1 + N*C*H*W] input: 4 bytes off 16-byte alignment.
Tensor unaligned(const Tensor& flat, const Shape& s) { return flat.slice0(1, s.numel()).reshape(s); }

// The gradient of such a view, as the gradient of the flat input (zero for the skipped element).
Tensor embed(Ctx& ctx, const Tensor& g, const Shape& flat) {
  Tensor full = ctx.alloc_zeros(flat, g.dtype());
  full.slice0(1, g.numel()).copy_from(g.reshape(Shape{g.numel()}));
  return full;
}

// Training rows whose x is an unaligned view (the statistics, normalisation and backward kernels
// read it; their outputs are fresh, aligned tensors).
OpCase train_unaligned_case(const std::string& name, Shape x) {
  const int64_t c = x[1];
  const Shape flat{1 + x.numel()};
  return OpCase{
      .name = name,
      .shapes = {flat, {c}, {c}},
      .check_grad = {true, true, true},
      .init = [](int i, const Shape& s, std::mt19937_64& rng) {
        return i == 1 ? uniform(s, rng, 0.5, 2) : uniform(s, rng);
      },
      .forward = [x](Ctx& ctx, const Inputs& in) {
        Tensor sm = ctx.alloc(Shape{x[1]}, in[0].dtype()), si = ctx.alloc(Shape{x[1]}, in[0].dtype());
        return batchnorm2d_train(ctx, unaligned(in[0], x), in[1], in[2], kTrainEps, 0.1, nullptr, nullptr, sm, si);
      },
      .backward = [x, flat](Ctx& ctx, const Inputs& in, const Tensor&, const Tensor& dy) {
        Tensor sm = ctx.alloc(Shape{x[1]}, in[0].dtype()), si = ctx.alloc(Shape{x[1]}, in[0].dtype());
        Tensor xv = unaligned(in[0], x);
        batchnorm2d_train(ctx, xv, in[1], in[2], kTrainEps, 0.1, nullptr, nullptr, sm, si);
        Tensor dg = ctx.alloc_zeros(in[1].shape(), in[1].dtype());
        Tensor db = ctx.alloc_zeros(in[2].shape(), in[2].dtype());
        Tensor dx = batchnorm2d_train_backward(ctx, dy, xv, in[1], sm, si, &dg, &db);
        return std::vector<Tensor>{embed(ctx, dx, flat), dg, db};
      },
      .max_fd_elements = 24};
}

// The fused epilogue y = act(bn(x) + residual). Inputs: gamma, beta, mean, var, x[, residual]
// (x, or the residual when there is one, last). The last input is derived from the others so
// that every pre-activation z lies at least 0.05 from the activation's kinks (0, and 6 for
// ReLU6): finite differences and the CUDA comparison then never straddle a kink. With
// `misaligned`, x (and the residual) are views 4 bytes off alignment of flat [1 + numel] inputs. With
// `in_place`, the forward is batchnorm2d_infer_act_inplace over a copy of x (laid out like x).
OpCase infer_act_case(const std::string& name, Shape x, bool with_residual, Activation act, bool misaligned = false,
                      bool in_place = false) {
  const int64_t c = x[1];
  const Shape flat{1 + x.numel()};
  const Shape xs = misaligned ? flat : x;
  std::vector<Shape> shapes{{c}, {c}, {c}, {c}, xs};
  if (with_residual) shapes.push_back(xs);
  const size_t last = shapes.size() - 1;
  // Values generated so far in this make_inputs call (inputs are generated in order).
  auto seen = std::make_shared<std::vector<std::vector<double>>>();
  auto init = [=](int i, const Shape& s, std::mt19937_64& rng) {
    if (i == 0) seen->clear();
    std::vector<double> v;
    if (i == 0) v = uniform(s, rng, 0.5, 1.5);        // gamma
    if (i == 1 || i == 2) v = uniform(s, rng);        // beta, mean
    if (i == 3) v = uniform(s, rng, 0.5, 1.5);        // var
    if (static_cast<size_t>(i) == last) {
      // Target pre-activations z, then the last input that produces them.
      std::vector<double> z = act == Activation::None ? uniform(s, rng, -3, 3) : away_from_zero(s, rng, 0.05);
      if (act != Activation::None)
        for (double& t : z) t *= 3;
      if (act == Activation::ReLU6)
        for (size_t e = 0; e < z.size(); e += 2) z[e] = 6 + z[e] / 3;  // around the upper kink too
      const std::vector<double>& g = (*seen)[0];
      const std::vector<double>& b = (*seen)[1];
      const std::vector<double>& m = (*seen)[2];
      const std::vector<double>& var = (*seen)[3];
      const std::vector<double>* xv = with_residual ? &(*seen)[4] : nullptr;
      const int64_t hw = x[2] * x[3];
      v.assign(z.size(), 0.0);
      const size_t off = misaligned ? 1 : 0;  // the view skips the first flat element
      for (size_t e = off; e < z.size(); ++e) {
        const size_t ch = static_cast<size_t>(((static_cast<int64_t>(e - off)) / hw) % c);
        const double scale = g[ch] / std::sqrt(var[ch] + kInferEps);
        v[e] = with_residual ? z[e] - ((*xv)[e] - m[ch]) * scale - b[ch]  // the residual
                             : (z[e] - b[ch]) / scale + m[ch];            // x
      }
    } else if (i == 4) {
      v = uniform(s, rng);  // x, when a residual follows
    }
    seen->push_back(v);
    return v;
  };
  auto view = [=](const Tensor& t) { return misaligned ? unaligned(t, x) : t; };
  return OpCase{
      .name = name,
      .shapes = shapes,
      .check_grad = {true, true, false, false, true, with_residual},
      .init = init,
      .forward = [=](Ctx& ctx, const Inputs& in) {
        Tensor r = with_residual ? view(in[5]) : Tensor();
        if (in_place) {
          Tensor y = view(ctx.alloc(in[4].shape(), in[4].dtype()));
          y.copy_from(view(in[4]));
          batchnorm2d_infer_act_inplace(ctx, y, in[0], in[1], in[2], in[3], kInferEps, with_residual ? &r : nullptr,
                                        act);
          return y;
        }
        return batchnorm2d_infer_act(ctx, view(in[4]), in[0], in[1], in[2], in[3], kInferEps,
                                     with_residual ? &r : nullptr, act);
      },
      .backward = [=](Ctx& ctx, const Inputs& in, const Tensor& y, const Tensor& dy) {
        // The documented composition: the activation's backward on y, then the BN backward.
        Tensor dz = act == Activation::ReLU    ? relu_backward(ctx, dy, y)
                    : act == Activation::ReLU6 ? relu6_backward(ctx, dy, y)
                                               : dy;
        Tensor dg = ctx.alloc_zeros(in[0].shape(), in[0].dtype());
        Tensor db = ctx.alloc_zeros(in[1].shape(), in[1].dtype());
        Tensor dx = batchnorm2d_infer_backward(ctx, dz, view(in[4]), in[0], in[2], in[3], kInferEps, &dg, &db);
        std::vector<Tensor> g{dg, db, Tensor(), Tensor(), misaligned ? embed(ctx, dx, flat) : dx};
        if (with_residual) g.push_back(misaligned ? embed(ctx, dz, flat) : dz);
        return g;
      }};
}

// The fused frozen-BN backward dx = act'(y) * dy * gamma / sqrt(var + eps). Inputs: gamma, var, y, dy.
// Linear in dy (checked): its transpose is itself. y holds exact zeros (and sixes for ReLU6), where the
// activation's gradient stops, and values inside.
OpCase infer_act_backward_case(const std::string& name, Shape x, Activation act) {
  const int64_t c = x[1];
  auto fused = [act](Ctx& ctx, const Tensor& dy, const Inputs& in) {
    return batchnorm2d_infer_act_backward(ctx, dy, in[2], in[0], in[1], kInferEps, act);
  };
  return OpCase{.name = name,
                .shapes = {{c}, {c}, x, x},
                .check_grad = {false, false, false, true},
                .init = [act](int i, const Shape& s, std::mt19937_64& rng) {
                  if (i == 0 || i == 1) return uniform(s, rng, 0.5, 1.5);
                  if (i == 3) return uniform(s, rng);
                  std::vector<double> y = uniform(s, rng, -2, 8);
                  for (double& v : y) v = act == Activation::None ? v : std::clamp(v, 0.0, act == Activation::ReLU ? 1e9 : 6.0);
                  return y;
                },
                .forward = [fused](Ctx& ctx, const Inputs& in) { return fused(ctx, in[3], in); },
                .backward = [fused](Ctx& ctx, const Inputs& in, const Tensor&, const Tensor& dout) {
                  return std::vector<Tensor>{Tensor(), Tensor(), Tensor(), fused(ctx, dout, in)};
                }};
}

}  // namespace

SAL_OP_CASES {
  using A = Activation;
  return {
      infer_case("batchnorm2d_infer/2x3x4x3", {2, 3, 4, 3}),
      infer_case("batchnorm2d_infer/batch1_odd", {1, 2, 3, 5}),
      infer_case("batchnorm2d_infer/1x1_spatial", {3, 1, 1, 1}),
      infer_case("batchnorm2d_infer/7x7_planes", {3, 5, 7, 7}),
      big(infer_case("batchnorm2d_infer/vec_2x8x32x36", {2, 8, 32, 36})),
      big(infer_case("batchnorm2d_infer/scalar_2_segments_33x35", {2, 2, 33, 35})),
      big(infer_case("batchnorm2d_infer/batch1_vec_2_segments_70x70", {1, 3, 70, 70})),
      train_case("batchnorm2d_train/2x3x3x3", {2, 3, 3, 3}, false),
      train_case("batchnorm2d_train/batch1_odd_running", {1, 2, 3, 5}, true),
      train_case("batchnorm2d_train/1x1_spatial", {4, 2, 1, 1}, false),
      train_case("batchnorm2d_train/3x1x2x5", {3, 1, 2, 5}, true),
      train_case("batchnorm2d_train/7x7_planes", {6, 3, 7, 7}, true),
      big(train_case("batchnorm2d_train/scalar_3_segments_45x47", {3, 4, 45, 47}, true)),
      big(train_case("batchnorm2d_train/vec_2_segments_64x72", {2, 3, 64, 72}, false)),
      big(train_case("batchnorm2d_train/batch1_vec_6_segments_150x150", {1, 2, 150, 150}, true)),
      big(train_case("batchnorm2d_train/many_channels_4x64x8x8", {4, 64, 8, 8}, true)),
      big(train_unaligned_case("batchnorm2d_train/unaligned_view_2x3x12x12", {2, 3, 12, 12})),
      infer_act_case("batchnorm2d_infer_act/none_no_residual", {2, 3, 4, 5}, false, A::None),
      infer_act_case("batchnorm2d_infer_act/relu_residual", {2, 3, 4, 5}, true, A::ReLU),
      infer_act_case("batchnorm2d_infer_act/relu6_no_residual", {1, 4, 7, 7}, false, A::ReLU6),
      infer_act_case("batchnorm2d_infer_act/relu6_residual_batch1", {1, 2, 3, 5}, true, A::ReLU6),
      infer_act_case("batchnorm2d_infer_act/none_residual", {3, 2, 2, 2}, true, A::None),
      infer_act_case("batchnorm2d_infer_act/relu_no_residual", {2, 2, 3, 3}, false, A::ReLU),
      big(infer_act_case("batchnorm2d_infer_act/relu_residual_vec_2x8x30x32", {2, 8, 30, 32}, true, A::ReLU)),
      big(infer_act_case("batchnorm2d_infer_act/relu6_batch1_2_segments_70x70", {1, 2, 70, 70}, false, A::ReLU6)),
      big(infer_act_case("batchnorm2d_infer_act/relu_residual_unaligned", {2, 3, 8, 8}, true, A::ReLU, true)),
      big(infer_act_case("batchnorm2d_infer_act/relu6_unaligned", {1, 2, 4, 12}, false, A::ReLU6, true)),
      infer_act_case("batchnorm2d_infer_act_inplace/relu_residual", {2, 3, 4, 5}, true, A::ReLU, false, true),
      infer_act_case("batchnorm2d_infer_act_inplace/none_no_residual", {2, 3, 4, 5}, false, A::None, false, true),
      big(infer_act_case("batchnorm2d_infer_act_inplace/relu6_vec_2x8x30x32", {2, 8, 30, 32}, false, A::ReLU6,
                         false, true)),
      big(infer_act_case("batchnorm2d_infer_act_inplace/relu_residual_unaligned", {2, 3, 8, 8}, true, A::ReLU, true,
                         true)),
      infer_act_backward_case("batchnorm2d_infer_act_backward/relu_2x3x4x5", {2, 3, 4, 5}, A::ReLU),
      infer_act_backward_case("batchnorm2d_infer_act_backward/relu6_batch1_odd", {1, 4, 3, 5}, A::ReLU6),
      infer_act_backward_case("batchnorm2d_infer_act_backward/none_7x7", {2, 2, 7, 7}, A::None),
      big(infer_act_backward_case("batchnorm2d_infer_act_backward/relu6_vec_2x8x30x32", {2, 8, 30, 32}, A::ReLU6)),
      big(infer_act_backward_case("batchnorm2d_infer_act_backward/relu_scalar_2_segments_33x35", {2, 2, 33, 35},
                                  A::ReLU)),
  };
}

}  // namespace sal::test
