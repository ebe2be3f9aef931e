// Op API: convolution, transposed convolution, linear. Validation and dispatch only; the
// kernels are in engine/cpu/conv.cpp and, on CUDA, cuda/conv_backend.cpp (custom implicit-GEMM
// kernels or cuDNN, see cuda/conv_backend.h) and cuda/linear.cpp (cuBLAS).
#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <utility>

#include "engine/cpu/conv.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#ifdef SAL_WITH_CUDA
#include "cuda/conv_backend.h"
#include "cuda/linear.h"
#endif

namespace sal {

using namespace detail;

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_conv_args(const char* op, const Conv2dArgs& a) {
  SAL_CHECK(a.stride_h >= 1 && a.stride_w >= 1, op, ": stride must be >= 1, got ", a.stride_h, "x", a.stride_w);
  SAL_CHECK(a.dil_h >= 1 && a.dil_w >= 1, op, ": dilation must be >= 1, got ", a.dil_h, "x", a.dil_w);
  SAL_CHECK(a.pad_top >= 0 && a.pad_bottom >= 0 && a.pad_left >= 0 && a.pad_right >= 0, op,
            ": padding must be >= 0, got top ", a.pad_top, " bottom ", a.pad_bottom, " left ", a.pad_left, " right ",
            a.pad_right);
  SAL_CHECK(a.groups >= 1, op, ": groups must be >= 1, got ", a.groups);
}

// x:[N,C,H,W] w:[K,C/g,R,S] -> [N,K,P,Q], every message starting with `op`.
Shape conv_out_shape(const char* op, const Shape& x, const Shape& w, const Conv2dArgs& a) {
  check_conv_args(op, a);
  SAL_CHECK(x.nd == 4, op, ": x must be [N,C,H,W], got ", x.str());
  SAL_CHECK(w.nd == 4, op, ": w must be [K,C/groups,R,S], got ", w.str());
  const int64_t C = x[1], K = w[0], g = a.groups;
  SAL_CHECK(C % g == 0, op, ": x has ", C, " channels, not divisible by groups ", g);
  SAL_CHECK(K % g == 0, op, ": w has ", K, " output channels, not divisible by groups ", g);
  SAL_CHECK(w[1] * g == C, op, ": w ", w.str(), " has ", w[1], " input channels per group, expected ", C, " / groups ",
            g, " = ", C / g, " (x is ", x.str(), ")");
  SAL_CHECK(w[2] >= 1 && w[3] >= 1, op, ": w ", w.str(), " has an empty kernel");
  const int64_t eff_r = int64_t{a.dil_h} * (w[2] - 1) + 1, eff_s = int64_t{a.dil_w} * (w[3] - 1) + 1;
  const int64_t ph = x[2] + a.pad_top + a.pad_bottom, pw = x[3] + a.pad_left + a.pad_right;
  SAL_CHECK(eff_r <= ph && eff_s <= pw, op, ": kernel ", w[2], "x", w[3], " (", eff_r, "x", eff_s,
            " with dilation) is larger than the padded input ", ph, "x", pw, " (x is ", x.str(), ")");
  return Shape{x[0], K, (ph - eff_r) / a.stride_h + 1, (pw - eff_s) / a.stride_w + 1};
}

void check_transpose_args(const char* op, const ConvTranspose2dArgs& a) {
  SAL_CHECK(a.stride_h >= 1 && a.stride_w >= 1, op, ": stride must be >= 1, got ", a.stride_h, "x", a.stride_w);
  SAL_CHECK(a.dil_h >= 1 && a.dil_w >= 1, op, ": dilation must be >= 1, got ", a.dil_h, "x", a.dil_w);
  SAL_CHECK(a.pad_h >= 0 && a.pad_w >= 0, op, ": padding must be >= 0, got ", a.pad_h, "x", a.pad_w);
  SAL_CHECK(a.groups >= 1, op, ": groups must be >= 1, got ", a.groups);
  // PyTorch's rule: output padding must be smaller than the stride or the dilation.
  SAL_CHECK(a.out_pad_h >= 0 && a.out_pad_w >= 0 && a.out_pad_h < std::max(a.stride_h, a.dil_h) &&
                a.out_pad_w < std::max(a.stride_w, a.dil_w),
            op, ": output_padding ", a.out_pad_h, "x", a.out_pad_w, " must be >= 0 and smaller than stride ",
            a.stride_h, "x", a.stride_w, " or dilation ", a.dil_h, "x", a.dil_w);
}

// x:[N,C,H,W] w:[C,K/g,R,S] -> [N,K,P,Q]
Shape transpose_out_shape(const char* op, const Shape& x, const Shape& w, const ConvTranspose2dArgs& a) {
  check_transpose_args(op, a);
  SAL_CHECK(x.nd == 4, op, ": x must be [N,C,H,W], got ", x.str());
  SAL_CHECK(w.nd == 4, op, ": w must be [C_in,C_out/groups,R,S], got ", w.str());
  const int64_t C = x[1], g = a.groups;
  SAL_CHECK(C % g == 0, op, ": x has ", C, " channels, not divisible by groups ", g);
  SAL_CHECK(w[0] == C, op, ": w ", w.str(), " has ", w[0], " input channels, x ", x.str(), " has ", C);
  SAL_CHECK(w[2] >= 1 && w[3] >= 1, op, ": w ", w.str(), " has an empty kernel");
  const int64_t P = (x[2] - 1) * a.stride_h - 2 * a.pad_h + int64_t{a.dil_h} * (w[2] - 1) + a.out_pad_h + 1;
  const int64_t Q = (x[3] - 1) * a.stride_w - 2 * a.pad_w + int64_t{a.dil_w} * (w[3] - 1) + a.out_pad_w + 1;
  SAL_CHECK(x[2] >= 1 && x[3] >= 1 && P >= 1 && Q >= 1, op, ": output size ", P, "x", Q, " is not positive (x ",
            x.str(), ", w ", w.str(), ", padding ", a.pad_h, "x", a.pad_w, ")");
  return Shape{x[0], w[1] * g, P, Q};
}

void check_bias(const char* op, const char* what, const Tensor* b, int64_t k) {
  if (b) check_shape(op, what, *b, Shape{k});
}

// The frozen batch norm's per-channel tensors ([k] each), eps and activation of the fused conv ops.
void check_bn(const char* op, std::initializer_list<std::pair<const char*, const Tensor*>> params, int64_t k,
              double eps, Activation act) {
  for (const auto& [what, t] : params) check_shape(op, what, *t, Shape{k});
  SAL_CHECK(std::isfinite(eps) && eps >= 0, op, ": eps must be finite and >= 0, got ", eps);
  SAL_CHECK(act == Activation::None || act == Activation::ReLU || act == Activation::ReLU6, op,
            ": unknown activation ", static_cast<int>(act));
}

}  // namespace

// ---------------------------------------------------------------- conv2d

Conv2dArgs Conv2dArgs::tf_same(int64_t in_h, int64_t in_w, int kh, int kw, int stride, int groups) {
  SAL_CHECK(in_h >= 1 && in_w >= 1 && kh >= 1 && kw >= 1 && stride >= 1, "Conv2dArgs::tf_same: input ", in_h, "x",
            in_w, ", kernel ", kh, "x", kw, ", stride ", stride, " (all must be >= 1)");
  auto pads = [stride](int64_t in, int k) {
    const int64_t out = ceil_div(in, stride);
    const int64_t total = std::max<int64_t>((out - 1) * stride + k - in, 0);
    return std::pair<int, int>{static_cast<int>(total / 2), static_cast<int>(total - total / 2)};
  };
  auto [top, bottom] = pads(in_h, kh);
  auto [left, right] = pads(in_w, kw);
  return Conv2dArgs{stride, stride, top, left, bottom, right, 1, 1, groups};
}

Shape conv2d_out_shape(const Shape& x, const Shape& w, const Conv2dArgs& a) {
  return conv_out_shape("conv2d", x, w, a);
}

Tensor conv2d(Ctx& ctx, const Tensor& x, const Tensor& w, const Tensor* b, const Conv2dArgs& a) {
  const char* op = "conv2d";
  check_device(op, ctx, {&x, &w, b});
  check_float(op, ctx, {&x, &w, b});
  check_ndim(op, "x", x, 4);
  check_ndim(op, "w", w, 4);
  const Shape out = conv_out_shape(op, x.shape(), w.shape(), a);
  check_bias(op, "b", b, w.dim(0));
  Tensor y = ctx.alloc(out, x.dtype());
  SAL_BACKEND(ctx, op, cuda::conv2d(ctx, x, w, b, a, y), cpu::conv2d(ctx, x, w, b, a, y));
  return y;
}

Tensor conv2d_bn_act(Ctx& ctx, const Tensor& x, const Tensor& w, const Tensor& gamma, const Tensor& beta,
                     const Tensor& mean, const Tensor& var, double eps, const Tensor* residual, Activation act,
                     const Conv2dArgs& a) {
  const char* op = "conv2d_bn_act";
  check_device(op, ctx, {&x, &w, &gamma, &beta, &mean, &var, residual});
  check_float(op, ctx, {&x, &w, &gamma, &beta, &mean, &var, residual});
  check_ndim(op, "x", x, 4);
  check_ndim(op, "w", w, 4);
  const Shape out = conv_out_shape(op, x.shape(), w.shape(), a);
  check_bn(op, {{"gamma", &gamma}, {"beta", &beta}, {"mean", &mean}, {"var", &var}}, w.dim(0), eps, act);
  if (residual) check_shape(op, "residual", *residual, out);
  Tensor y = ctx.alloc(out, x.dtype());
  const ConvBn bn{&gamma, &beta, &mean, &var, eps};
  SAL_BACKEND(ctx, op, cuda::conv2d_bn_act(ctx, x, w, bn, residual, act, a, y),
              cpu::conv2d_bn_act(ctx, x, w, bn, residual, act, a, y));
  return y;
}

Tensor conv2d_dgrad(Ctx& ctx, const Tensor& dy, const Tensor& w, const Shape& x_shape, const Conv2dArgs& a) {
  const char* op = "conv2d_dgrad";
  check_device(op, ctx, {&dy, &w});
  check_float(op, ctx, {&dy, &w});
  check_ndim(op, "dy", dy, 4);
  check_ndim(op, "w", w, 4);
  const Shape out = conv_out_shape(op, x_shape, w.shape(), a);
  SAL_CHECK(dy.shape() == out, op, ": dy has shape ", dy.shape().str(), ", expected ", out.str(), " (conv2d of x ",
            x_shape.str(), " with w ", w.shape().str(), ")");
  Tensor dx = ctx.alloc(x_shape, dy.dtype());
  SAL_BACKEND(ctx, op, cuda::conv2d_dgrad(ctx, dy, w, a, dx), cpu::conv2d_dgrad(ctx, dy, w, a, dx));
  return dx;
}

Tensor conv2d_dgrad_bn_act(Ctx& ctx, const Tensor& dy, const Tensor& y, const Tensor& w, const Tensor& gamma,
                           const Tensor& var, double eps, Activation act, const Shape& x_shape, const Conv2dArgs& a) {
  const char* op = "conv2d_dgrad_bn_act";
  check_device(op, ctx, {&dy, &y, &w, &gamma, &var});
  check_float(op, ctx, {&dy, &y, &w, &gamma, &var});
  check_ndim(op, "dy", dy, 4);
  check_ndim(op, "w", w, 4);
  const Shape out = conv_out_shape(op, x_shape, w.shape(), a);
  SAL_CHECK(dy.shape() == out, op, ": dy has shape ", dy.shape().str(), ", expected ", out.str(), " (conv2d of x ",
            x_shape.str(), " with w ", w.shape().str(), ")");
  check_shape(op, "y", y, out);
  check_bn(op, {{"gamma", &gamma}, {"var", &var}}, w.dim(0), eps, act);
  Tensor dx = ctx.alloc(x_shape, dy.dtype());
  const ConvBnGate gate{&y, &gamma, &var, eps, act};
  SAL_BACKEND(ctx, op, cuda::conv2d_dgrad_bn_act(ctx, dy, w, gate, a, dx),
              cpu::conv2d_dgrad_bn_act(ctx, dy, w, gate, a, dx));
  return dx;
}

void conv2d_wgrad(Ctx& ctx, const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db, const Conv2dArgs& a) {
  const char* op = "conv2d_wgrad";
  check_device(op, ctx, {&dy, &x, &dw, db});
  check_float(op, ctx, {&dy, &x, &dw, db});
  check_ndim(op, "dy", dy, 4);
  check_ndim(op, "x", x, 4);
  check_ndim(op, "dw", dw, 4);
  SAL_CHECK(dw.dim(0) == dy.dim(1), op, ": dw ", dw.shape().str(), " has ", dw.dim(0), " output channels, dy ",
            dy.shape().str(), " has ", dy.dim(1));
  const Shape out = conv_out_shape(op, x.shape(), dw.shape(), a);
  SAL_CHECK(dy.shape() == out, op, ": dy has shape ", dy.shape().str(), ", expected ", out.str(), " (conv2d of x ",
            x.shape().str(), " with dw ", dw.shape().str(), ")");
  check_bias(op, "db", db, dw.dim(0));
  SAL_BACKEND(ctx, op, cuda::conv2d_wgrad(ctx, dy, x, a, dw, db), cpu::conv2d_wgrad(ctx, dy, x, a, dw, db));
}

// ---------------------------------------------------------------- conv_transpose2d

Shape conv_transpose2d_out_shape(const Shape& x, const Shape& w, const ConvTranspose2dArgs& a) {
  return transpose_out_shape("conv_transpose2d", x, w, a);
}

Tensor conv_transpose2d(Ctx& ctx, const Tensor& x, const Tensor& w, const Tensor* b, const ConvTranspose2dArgs& a) {
  const char* op = "conv_transpose2d";
  check_device(op, ctx, {&x, &w, b});
  check_float(op, ctx, {&x, &w, b});
  check_ndim(op, "x", x, 4);
  check_ndim(op, "w", w, 4);
  const Shape out = transpose_out_shape(op, x.shape(), w.shape(), a);
  check_bias(op, "b", b, out[1]);
  Tensor y = ctx.alloc(out, x.dtype());
  SAL_BACKEND(ctx, op, cuda::conv_transpose2d(ctx, x, w, b, a, y), cpu::conv_transpose2d(ctx, x, w, b, a, y));
  return y;
}

Tensor conv_transpose2d_dgrad(Ctx& ctx, const Tensor& dy, const Tensor& w, const Shape& x_shape,
                              const ConvTranspose2dArgs& a) {
  const char* op = "conv_transpose2d_dgrad";
  check_device(op, ctx, {&dy, &w});
  check_float(op, ctx, {&dy, &w});
  check_ndim(op, "dy", dy, 4);
  check_ndim(op, "w", w, 4);
  const Shape out = transpose_out_shape(op, x_shape, w.shape(), a);
  SAL_CHECK(dy.shape() == out, op, ": dy has shape ", dy.shape().str(), ", expected ", out.str(),
            " (conv_transpose2d of x ", x_shape.str(), " with w ", w.shape().str(), ")");
  Tensor dx = ctx.alloc(x_shape, dy.dtype());
  SAL_BACKEND(ctx, op, cuda::conv_transpose2d_dgrad(ctx, dy, w, a, dx),
              cpu::conv_transpose2d_dgrad(ctx, dy, w, a, dx));
  return dx;
}

void conv_transpose2d_wgrad(Ctx& ctx, const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db,
                            const ConvTranspose2dArgs& a) {
  const char* op = "conv_transpose2d_wgrad";
  check_device(op, ctx, {&dy, &x, &dw, db});
  check_float(op, ctx, {&dy, &x, &dw, db});
  check_ndim(op, "dy", dy, 4);
  check_ndim(op, "x", x, 4);
  check_ndim(op, "dw", dw, 4);
  const Shape out = transpose_out_shape(op, x.shape(), dw.shape(), a);
  SAL_CHECK(dy.shape() == out, op, ": dy has shape ", dy.shape().str(), ", expected ", out.str(),
            " (conv_transpose2d of x ", x.shape().str(), " with dw ", dw.shape().str(), ")");
  check_bias(op, "db", db, out[1]);
  SAL_BACKEND(ctx, op, cuda::conv_transpose2d_wgrad(ctx, dy, x, a, dw, db),
              cpu::conv_transpose2d_wgrad(ctx, dy, x, a, dw, db));
}

// ---------------------------------------------------------------- linear

Tensor linear(Ctx& ctx, const Tensor& x, const Tensor& w, const Tensor* b) {
  const char* op = "linear";
  check_device(op, ctx, {&x, &w, b});
  check_float(op, ctx, {&x, &w, b});
  check_ndim(op, "x", x, 2);
  check_ndim(op, "w", w, 2);
  SAL_CHECK(w.dim(1) == x.dim(1), op, ": x ", x.shape().str(), " has ", x.dim(1), " features, w ", w.shape().str(),
            " expects ", w.dim(1), " (w is [out_features, in_features])");
  check_bias(op, "b", b, w.dim(0));
  Tensor y = ctx.alloc(Shape{x.dim(0), w.dim(0)}, x.dtype());
  SAL_BACKEND(ctx, op, cuda::linear(ctx, x, w, b, y), cpu::linear(ctx, x, w, b, y));
  return y;
}

Tensor linear_dgrad(Ctx& ctx, const Tensor& dy, const Tensor& w) {
  const char* op = "linear_dgrad";
  check_device(op, ctx, {&dy, &w});
  check_float(op, ctx, {&dy, &w});
  check_ndim(op, "dy", dy, 2);
  check_ndim(op, "w", w, 2);
  SAL_CHECK(dy.dim(1) == w.dim(0), op, ": dy ", dy.shape().str(), " has ", dy.dim(1), " features, w ",
            w.shape().str(), " has ", w.dim(0), " outputs");
  Tensor dx = ctx.alloc(Shape{dy.dim(0), w.dim(1)}, dy.dtype());
  SAL_BACKEND(ctx, op, cuda::linear_dgrad(ctx, dy, w, dx), cpu::linear_dgrad(ctx, dy, w, dx));
  return dx;
}

void linear_wgrad(Ctx& ctx, const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db) {
  const char* op = "linear_wgrad";
  check_device(op, ctx, {&dy, &x, &dw, db});
  check_float(op, ctx, {&dy, &x, &dw, db});
  check_ndim(op, "dy", dy, 2);
  check_ndim(op, "x", x, 2);
  SAL_CHECK(dy.dim(0) == x.dim(0), op, ": dy ", dy.shape().str(), " and x ", x.shape().str(),
            " have different batch sizes");
  check_shape(op, "dw", dw, Shape{dy.dim(1), x.dim(1)});
  check_bias(op, "db", db, dy.dim(1));
  SAL_BACKEND(ctx, op, cuda::linear_wgrad(ctx, dy, x, dw, db), cpu::linear_wgrad(ctx, dy, x, dw, db));
}

}  // namespace sal
