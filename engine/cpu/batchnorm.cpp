// Batch normalisation over the N, H, W of each channel of an NCHW tensor: inference with the
// running statistics, training with the batch statistics, and both backwards.
//
// x, y, dy, dx: [N,C,H,W] contiguous; gamma, beta, mean, var, save_mean, save_invstd: [C].
//
// Why it is written this way:
// - Every pass runs over the N*C planes (one channel of one sample: H*W contiguous values) with
//   OpenMP, so batch 1 with many channels parallelises as well as a big batch of few channels,
//   and every inner loop is a contiguous, vectorisable sweep with per-plane constants.
// - Per-channel sums are reduced in two steps: each plane writes its partial sums to a small
//   scratch buffer (from the context's arena), then a serial loop adds the N partials of each
//   channel. No atomics, and the result does not depend on the number of threads.
// - Sums are accumulated in double (`omp simd` reductions, so they still vectorise).
// - The training statistics take one pass: values are shifted by K = the channel's first value
//   before summing (x-K) and (x-K)^2, so var = (S2 - S1^2/M) / M does not cancel
//   catastrophically when |mean| >> std (the shifted-data algorithm).
// - The normalisation is one subtract and one multiply-add per element with per-channel
//   constants: y = (x - mean) * scale + beta, scale = gamma * invstd. Subtracting the mean first
//   (rather than folding it into the shift) keeps f32 precise when |mean| >> std.
// - batchnorm2d_infer_act fuses the residual add and the activation into the same sweep, so a
//   ResNet bottleneck's tail (bn3 + identity + ReLU) reads x and the residual once.
#include "engine/cpu/batchnorm.h"

#include <algorithm>
#include <cmath>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/keep_or_zero.h"

namespace sal::cpu {

namespace {

struct Dims {
  int64_t n, c, hw;
  int64_t planes() const { return n * c; }
  int64_t numel() const { return n * c * hw; }
};

Dims dims_of(const Tensor& x) { return Dims{x.dim(0), x.dim(1), x.dim(2) * x.dim(3)}; }

// Sums of dy and of dy * (x - mean) over one plane.
template <class T>
void grad_sums(const T* dy, const T* x, int64_t n, double mean, double& sdy, double& sdyx) {
  double a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
  for (int64_t i = 0; i < n; ++i) {
    const double g = static_cast<double>(dy[i]);
    a += g;
    b += g * (static_cast<double>(x[i]) - mean);
  }
  sdy = a;
  sdyx = b;
}

// out = (x - center) * scale + shift over one plane.
template <class T>
void affine(const T* x, T* out, int64_t n, T center, T scale, T shift) {
  for (int64_t i = 0; i < n; ++i) out[i] = (x[i] - center) * scale + shift;
}

// out = act((x - center) * scale + shift [+ r]) over one plane (r nullable).
template <class T, class Act>
void affine_act(const T* x, const T* r, T* out, int64_t n, T center, T scale, T shift, Act act) {
  if (r) {
    for (int64_t i = 0; i < n; ++i) out[i] = act((x[i] - center) * scale + shift + r[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = act((x[i] - center) * scale + shift);
  }
}

}  // namespace

void batchnorm2d_infer(Ctx&, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                       const Tensor& var, double eps, Tensor& y) {
  const Dims d = dims_of(x);
  dispatch_float(x.dtype(), "batchnorm2d_infer", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *px = x.data<T>(), *g = gamma.data<T>(), *b = beta.data<T>(), *m = mean.data<T>(), *v = var.data<T>();
    T* py = y.data<T>();
#pragma omp parallel for if (d.numel() > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t p = 0; p < d.planes(); ++p) {
      const int64_t c = p % d.c;
      const double scale = static_cast<double>(g[c]) / std::sqrt(static_cast<double>(v[c]) + eps);
      affine(px + p * d.hw, py + p * d.hw, d.hw, m[c], static_cast<T>(scale), b[c]);
    }
  });
}

void batchnorm2d_infer_act(Ctx&, const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& mean,
                           const Tensor& var, double eps, const Tensor* residual, Activation act, Tensor& y) {
  const Dims d = dims_of(x);
  dispatch_float(x.dtype(), "batchnorm2d_infer_act", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *px = x.data<T>(), *g = gamma.data<T>(), *b = beta.data<T>(), *m = mean.data<T>(), *v = var.data<T>();
    const T* pr = residual ? residual->data<T>() : nullptr;
    T* py = y.data<T>();
    // The activations are those of engine/cpu/activation.cpp (relu maps NaN to 0, relu6 passes it).
    auto run = [&](auto act) {
#pragma omp parallel for if (d.numel() > SAL_OMP_MIN_WORK) schedule(static)
      for (int64_t p = 0; p < d.planes(); ++p) {
        const int64_t c = p % d.c;
        const double scale = static_cast<double>(g[c]) / std::sqrt(static_cast<double>(v[c]) + eps);
        affine_act(px + p * d.hw, pr ? pr + p * d.hw : nullptr, py + p * d.hw, d.hw, m[c], static_cast<T>(scale), b[c],
                   act);
      }
    };
    switch (act) {
      case Activation::None: run([](T t) { return t; }); break;
      case Activation::ReLU: run([](T t) { return t > T(0) ? t : T(0); }); break;
      case Activation::ReLU6: run([](T t) { return t < T(0) ? T(0) : (t > T(6) ? T(6) : t); }); break;
    }
  });
}

void batchnorm2d_infer_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                const Tensor& mean, const Tensor& var, double eps, Tensor& dx, Tensor* dgamma,
                                Tensor* dbeta) {
  const Dims d = dims_of(x);
  const bool want_params = dgamma || dbeta;
  // [planes][2]: sum dy, sum dy*(x-mean) per plane.
  Tensor partial = want_params ? ctx.alloc(Shape{2 * d.planes()}, DType::F64) : Tensor();
  dispatch_float(x.dtype(), "batchnorm2d_infer_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *pdy = dy.data<T>(), *px = x.data<T>(), *g = gamma.data<T>(), *m = mean.data<T>(), *v = var.data<T>();
    T* pdx = dx.data<T>();
    double* part = want_params ? partial.data<double>() : nullptr;
#pragma omp parallel for if (d.numel() > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t p = 0; p < d.planes(); ++p) {
      const int64_t c = p % d.c;
      const T* dys = pdy + p * d.hw;
      const double invstd = 1.0 / std::sqrt(static_cast<double>(v[c]) + eps);
      affine(dys, pdx + p * d.hw, d.hw, T(0), static_cast<T>(static_cast<double>(g[c]) * invstd), T(0));
      if (part) grad_sums(dys, px + p * d.hw, d.hw, static_cast<double>(m[c]), part[2 * p], part[2 * p + 1]);
    }
    if (!part) return;
    T* dg = dgamma ? dgamma->data<T>() : nullptr;
    T* db = dbeta ? dbeta->data<T>() : nullptr;
    for (int64_t c = 0; c < d.c; ++c) {
      double sdy = 0, sdyx = 0;
      for (int64_t n = 0; n < d.n; ++n) {
        sdy += part[2 * (n * d.c + c)];
        sdyx += part[2 * (n * d.c + c) + 1];
      }
      const double invstd = 1.0 / std::sqrt(static_cast<double>(v[c]) + eps);
      if (dg) dg[c] = static_cast<T>(static_cast<double>(dg[c]) + sdyx * invstd);
      if (db) db[c] = static_cast<T>(static_cast<double>(db[c]) + sdy);
    }
  });
}

void batchnorm2d_infer_act_backward(Ctx&, const Tensor& dy, const Tensor& y, const Tensor& gamma, const Tensor& var,
                                    double eps, Activation act, Tensor& dx) {
  const Dims d = dims_of(y);
  dispatch_float(y.dtype(), "batchnorm2d_infer_act_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *pdy = dy.data<T>(), *py = y.data<T>(), *g = gamma.data<T>(), *v = var.data<T>();
    T* pdx = dx.data<T>();
#pragma omp parallel for if (d.numel() > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t p = 0; p < d.planes(); ++p) {
      const int64_t c = p % d.c;
      const double invstd = 1.0 / std::sqrt(static_cast<double>(v[c]) + eps);  // as batchnorm2d_infer_backward
      const T scale = static_cast<T>(static_cast<double>(g[c]) * invstd);
      const T* dys = pdy + p * d.hw;
      const T* ys = py + p * d.hw;
      T* dxs = pdx + p * d.hw;
      // The activation's derivative from its output: as relu_backward / relu6_backward.
      switch (act) {
        case Activation::None:
          for (int64_t i = 0; i < d.hw; ++i) dxs[i] = dys[i] * scale;
          break;
        case Activation::ReLU:
          for (int64_t i = 0; i < d.hw; ++i) dxs[i] = keep_or_zero(ys[i] > T(0), dys[i] * scale);
          break;
        case Activation::ReLU6:
          for (int64_t i = 0; i < d.hw; ++i) dxs[i] = keep_or_zero(ys[i] > T(0) && ys[i] < T(6), dys[i] * scale);
          break;
      }
    }
  });
}

void batchnorm2d_train(Ctx& ctx, const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps,
                       double momentum, Tensor* running_mean, Tensor* running_var, Tensor& save_mean,
                       Tensor& save_invstd, Tensor& y) {
  const Dims d = dims_of(x);
  const int64_t count = d.n * d.hw;  // values per channel (> 1, checked by the op)
  // [planes][2] shifted sums per plane, then [C][2] mean and scale per channel.
  Tensor scratch = ctx.alloc(Shape{2 * d.planes() + 2 * d.c}, DType::F64);
  dispatch_float(x.dtype(), "batchnorm2d_train", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *px = x.data<T>(), *g = gamma.data<T>(), *b = beta.data<T>();
    T* py = y.data<T>();
    double* part = scratch.data<double>();
    double* coef = part + 2 * d.planes();

    // Pass 1: per plane, sums of (x - K) and (x - K)^2 with K = x[0, c, 0, 0].
#pragma omp parallel for if (d.numel() > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t p = 0; p < d.planes(); ++p) {
      const T* xs = px + p * d.hw;
      const double k = static_cast<double>(px[(p % d.c) * d.hw]);
      double s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
      for (int64_t i = 0; i < d.hw; ++i) {
        const double t = static_cast<double>(xs[i]) - k;
        s1 += t;
        s2 += t * t;
      }
      part[2 * p] = s1;
      part[2 * p + 1] = s2;
    }

    // Per channel: batch mean, biased variance for normalising, unbiased for the running estimate.
    T* sm = save_mean.data<T>();
    T* si = save_invstd.data<T>();
    T* rm = running_mean ? running_mean->data<T>() : nullptr;
    T* rv = running_var ? running_var->data<T>() : nullptr;
    const double m_count = static_cast<double>(count);
    for (int64_t c = 0; c < d.c; ++c) {
      double s1 = 0, s2 = 0;
      for (int64_t n = 0; n < d.n; ++n) {
        s1 += part[2 * (n * d.c + c)];
        s2 += part[2 * (n * d.c + c) + 1];
      }
      const double k = static_cast<double>(px[c * d.hw]);
      const double mu = k + s1 / m_count;
      const double var = std::max(0.0, (s2 - s1 * s1 / m_count) / m_count);
      const double invstd = 1.0 / std::sqrt(var + eps);
      sm[c] = static_cast<T>(mu);
      si[c] = static_cast<T>(invstd);
      if (rm) rm[c] = static_cast<T>((1 - momentum) * static_cast<double>(rm[c]) + momentum * mu);
      if (rv) {
        const double unbiased = var * m_count / (m_count - 1);
        rv[c] = static_cast<T>((1 - momentum) * static_cast<double>(rv[c]) + momentum * unbiased);
      }
      coef[2 * c] = mu;
      coef[2 * c + 1] = static_cast<double>(g[c]) * invstd;
    }

    // Pass 2: y = (x - mean) * scale + beta.
#pragma omp parallel for if (d.numel() > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t p = 0; p < d.planes(); ++p) {
      const int64_t c = p % d.c;
      affine(px + p * d.hw, py + p * d.hw, d.hw, static_cast<T>(coef[2 * c]), static_cast<T>(coef[2 * c + 1]), b[c]);
    }
  });
}

void batchnorm2d_train_backward(Ctx& ctx, const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                const Tensor& save_mean, const Tensor& save_invstd, Tensor& dx, Tensor* dgamma,
                                Tensor* dbeta) {
  // With xhat = (x - mean) * invstd and M values per channel,
  //   dx = gamma * invstd * (dy - sum(dy)/M - xhat * sum(dy * xhat)/M),
  //   dgamma += sum(dy * xhat), dbeta += sum(dy).
  const Dims d = dims_of(x);
  const double m_count = static_cast<double>(d.n * d.hw);
  // [planes][2] partial sums, then [C][3] coefficients: dx = a*dy + cx*(x - mean) + cb.
  Tensor scratch = ctx.alloc(Shape{2 * d.planes() + 3 * d.c}, DType::F64);
  dispatch_float(x.dtype(), "batchnorm2d_train_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *pdy = dy.data<T>(), *px = x.data<T>(), *g = gamma.data<T>();
    const T *sm = save_mean.data<T>(), *si = save_invstd.data<T>();
    T* pdx = dx.data<T>();
    double* part = scratch.data<double>();
    double* coef = part + 2 * d.planes();

#pragma omp parallel for if (d.numel() > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t p = 0; p < d.planes(); ++p) {
      const int64_t c = p % d.c;
      grad_sums(pdy + p * d.hw, px + p * d.hw, d.hw, static_cast<double>(sm[c]), part[2 * p], part[2 * p + 1]);
    }

    T* dg = dgamma ? dgamma->data<T>() : nullptr;
    T* db = dbeta ? dbeta->data<T>() : nullptr;
    for (int64_t c = 0; c < d.c; ++c) {
      double sdy = 0, sdyx = 0;
      for (int64_t n = 0; n < d.n; ++n) {
        sdy += part[2 * (n * d.c + c)];
        sdyx += part[2 * (n * d.c + c) + 1];
      }
      const double invstd = static_cast<double>(si[c]);
      const double a = static_cast<double>(g[c]) * invstd;
      coef[3 * c] = a;
      coef[3 * c + 1] = -a * invstd * invstd * sdyx / m_count;
      coef[3 * c + 2] = -a * sdy / m_count;
      if (dg) dg[c] = static_cast<T>(static_cast<double>(dg[c]) + sdyx * invstd);
      if (db) db[c] = static_cast<T>(static_cast<double>(db[c]) + sdy);
    }

#pragma omp parallel for if (d.numel() > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t p = 0; p < d.planes(); ++p) {
      const int64_t c = p % d.c;
      const T a = static_cast<T>(coef[3 * c]), cx = static_cast<T>(coef[3 * c + 1]);
      const T cb = static_cast<T>(coef[3 * c + 2]), mu = sm[c];
      const T* dys = pdy + p * d.hw;
      const T* xs = px + p * d.hw;
      T* dxs = pdx + p * d.hw;
      for (int64_t i = 0; i < d.hw; ++i) dxs[i] = a * dys[i] + cx * (xs[i] - mu) + cb;
    }
  });
}

}  // namespace sal::cpu
