// CPU kernels: softmax / log-softmax over the last dimension, cross-entropy, and the mask
// regularisers (total variation with an optional border term, area as a mean of a power).
//
// softmax family: logits [N,K] row-major; one row per task, rows in parallel. Every row
//   subtracts its maximum before exponentiating (no overflow for large logits); exponentials
//   are taken in the tensor's type (expf for f32, the costly part) and summed in double. softmax
//   and the cross-entropy backward store the exponentials in their output and rescale them, so
//   each element is exponentiated once. cross_entropy = max + log(sum exp(z - max)) - z[label]; its backward
//   is (softmax - onehot) * dloss[n], recomputed from the logits (nothing is saved).
// tv_loss: m [N,1,H,W] -> [N]. Per sample: sum over (i,j) of (m[i+1,j]-m[i,j])^2 and
//   (m[i,j+1]-m[i,j])^2, plus border_weight * sum of m^2 over the outermost ring of pixels (rows
//   0 and H-1, columns 0 and W-1, each pixel once). Backward: for every pixel,
//   2 * dloss[n] * (sum over its up/down/left/right neighbours of (m - neighbour) + bw * m [ring]).
// area_loss: m [N,1,H,W] -> [N], mean over the H*W pixels of (m + eps)^power. Backward:
//   dloss[n] / (H*W) * power * (m + eps)^(power-1). A non-integer power of a base <= 0 is
//   undefined (or has an infinite derivative at 0), so such a base is an error naming the pixel.
//   The power is taken in the tensor's type (powf for f32), the mean in double.
//
// The per-sample losses are split into (sample, row) tasks so a batch of one 224x224 mask still
// spreads over the threads; each task writes its row's partial sum (double) into a temporary
// from the context's arena, and the rows of a sample are summed afterwards in a fixed order
// (the result does not depend on the thread count).
#include "engine/cpu/loss.h"

#include <algorithm>
#include <cmath>

#include "engine/cpu/dispatch.h"

namespace sal::cpu {

namespace {

// Row-wise kernels over [N,K]: fn(row pointer(s), n) runs for each of the N rows.
template <class Fn>
void for_rows(int64_t N, int64_t K, Fn fn) {
#pragma omp parallel for if (N * K > SAL_OMP_MIN_WORK) schedule(static)
  for (int64_t n = 0; n < N; ++n) fn(n);
}

// Row maximum of z[0..K).
template <class T>
inline T row_max(const T* z, int64_t K) {
  T mx = z[0];
  for (int64_t k = 1; k < K; ++k) mx = std::max(mx, z[k]);
  return mx;
}

// e[k] = exp(z[k] - mx) (in T: expf for f32) and their sum (in double); e may be null.
template <class T>
inline double exp_shifted(const T* z, int64_t K, T mx, T* e) {
  double s = 0;
  for (int64_t k = 0; k < K; ++k) {
    const T v = std::exp(z[k] - mx);
    if (e) e[k] = v;
    s += static_cast<double>(v);
  }
  return s;
}

void check_labels_range(const char* op, const Tensor& labels, int64_t K) {
  const int32_t* l = labels.data<int32_t>();
  for (int64_t n = 0; n < labels.numel(); ++n)
    SAL_CHECK(l[n] >= 0 && l[n] < K, op, ": labels[", n, "] = ", l[n], " is out of range for ", K,
              " classes (expected 0 <= label < ", K, ")");
}

bool is_integer(double p) { return std::floor(p) == p; }

// Sums part[n*H .. n*H+H) into loss[n], in row order.
template <class T>
void sum_rows(const double* part, int64_t N, int64_t H, double scale, T* loss) {
  for (int64_t n = 0; n < N; ++n) {
    double s = 0;
    for (int64_t i = 0; i < H; ++i) s += part[n * H + i];
    loss[n] = static_cast<T>(s * scale);
  }
}

// The first pixel of m whose m + eps is not > 0, as an error of `op`.
template <class T>
[[noreturn]] void bad_base(const char* op, const T* m, int64_t N, int64_t H, int64_t W, double power, double eps) {
  for (int64_t i = 0; i < N * H * W; ++i) {
    const double b = static_cast<double>(m[i]) + eps;
    if (!(b > 0))
      fail(op, ": m + eps = ", b, " at sample ", i / (H * W), ", pixel (", (i / W) % H, ",", i % W,
           ") is not > 0, and (m + eps)^", power,
           " is undefined there for a non-integer power (expected masks >= 0 and eps > 0)");
  }
  fail(op, ": m + eps is not > 0 somewhere (non-integer power ", power, ")");
}

}  // namespace

// logits: [N,K] -> y: [N,K]
void softmax(Ctx&, const Tensor& logits, Tensor& y) {
  const int64_t N = logits.dim(0), K = logits.dim(1);
  dispatch_float(logits.dtype(), "softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* z = logits.data<T>();
    T* py = y.data<T>();
    for_rows(N, K, [&](int64_t n) {
      const T* zr = z + n * K;
      T* yr = py + n * K;
      const T mx = row_max(zr, K);
      const T inv = static_cast<T>(1.0 / exp_shifted(zr, K, mx, yr));
      for (int64_t k = 0; k < K; ++k) yr[k] *= inv;
    });
  });
}

// dy, y: [N,K] -> dx = y * (dy - sum_k dy*y)
void softmax_backward(Ctx&, const Tensor& dy, const Tensor& y, Tensor& dx) {
  const int64_t N = y.dim(0), K = y.dim(1);
  dispatch_float(y.dtype(), "softmax_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = dy.data<T>();
    const T* py = y.data<T>();
    T* d = dx.data<T>();
    for_rows(N, K, [&](int64_t n) {
      const T* gr = g + n * K;
      const T* yr = py + n * K;
      T* dr = d + n * K;
      double dot = 0;
      for (int64_t k = 0; k < K; ++k) dot += static_cast<double>(gr[k]) * yr[k];
      const T tdot = static_cast<T>(dot);
      for (int64_t k = 0; k < K; ++k) dr[k] = yr[k] * (gr[k] - tdot);
    });
  });
}

// logits: [N,K] -> y = z - max - log(sum exp(z - max))
void log_softmax(Ctx&, const Tensor& logits, Tensor& y) {
  const int64_t N = logits.dim(0), K = logits.dim(1);
  dispatch_float(logits.dtype(), "log_softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* z = logits.data<T>();
    T* py = y.data<T>();
    for_rows(N, K, [&](int64_t n) {
      const T* zr = z + n * K;
      T* yr = py + n * K;
      const T mx = row_max(zr, K);
      const double s = exp_shifted(zr, K, mx, static_cast<T*>(nullptr));
      const T shift = static_cast<T>(static_cast<double>(mx) + std::log(s));
      for (int64_t k = 0; k < K; ++k) yr[k] = zr[k] - shift;
    });
  });
}

// dy, y (log-probabilities): [N,K] -> dx = dy - exp(y) * sum_k dy
void log_softmax_backward(Ctx&, const Tensor& dy, const Tensor& y, Tensor& dx) {
  const int64_t N = y.dim(0), K = y.dim(1);
  dispatch_float(y.dtype(), "log_softmax_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = dy.data<T>();
    const T* py = y.data<T>();
    T* d = dx.data<T>();
    for_rows(N, K, [&](int64_t n) {
      const T* gr = g + n * K;
      const T* yr = py + n * K;
      T* dr = d + n * K;
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += gr[k];
      const T ts = static_cast<T>(s);
      for (int64_t k = 0; k < K; ++k) dr[k] = gr[k] - std::exp(yr[k]) * ts;
    });
  });
}

// logits: [N,K], labels: i32[N] -> loss: [N]
void cross_entropy(Ctx&, const Tensor& logits, const Tensor& labels, Tensor& loss) {
  const int64_t N = logits.dim(0), K = logits.dim(1);
  check_labels_range("cross_entropy", labels, K);
  const int32_t* l = labels.data<int32_t>();
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* z = logits.data<T>();
    T* out = loss.data<T>();
    for_rows(N, K, [&](int64_t n) {
      const T* zr = z + n * K;
      const T mx = row_max(zr, K);
      const double s = exp_shifted(zr, K, mx, static_cast<T*>(nullptr));
      out[n] = static_cast<T>(static_cast<double>(mx - zr[l[n]]) + std::log(s));
    });
  });
}

// dloss: [N], logits: [N,K], labels: i32[N] -> dlogits: [N,K] = (softmax - onehot) * dloss[n]
void cross_entropy_backward(Ctx&, const Tensor& dloss, const Tensor& logits, const Tensor& labels, Tensor& dlogits) {
  const int64_t N = logits.dim(0), K = logits.dim(1);
  check_labels_range("cross_entropy_backward", labels, K);
  const int32_t* l = labels.data<int32_t>();
  dispatch_float(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* z = logits.data<T>();
    const T* g = dloss.data<T>();
    T* d = dlogits.data<T>();
    for_rows(N, K, [&](int64_t n) {
      const T* zr = z + n * K;
      T* dr = d + n * K;
      const T mx = row_max(zr, K);
      const T w = static_cast<T>(static_cast<double>(g[n]) / exp_shifted(zr, K, mx, dr));
      for (int64_t k = 0; k < K; ++k) dr[k] *= w;
      dr[l[n]] -= g[n];
    });
  });
}

// m: [N,1,H,W] -> loss: [N]
void tv_loss(Ctx& ctx, const Tensor& m, double border_weight, Tensor& loss) {
  const int64_t N = m.dim(0), H = m.dim(2), W = m.dim(3);
  Tensor part_t = ctx.alloc(Shape{N * H}, DType::F64);
  double* part = part_t.data<double>();
  dispatch_float(m.dtype(), "tv_loss", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pm = m.data<T>();
#pragma omp parallel for if (N * H * W > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t t = 0; t < N * H; ++t) {
      const int64_t i = t % H;
      const T* r = pm + t * W;
      double s = 0;
      for (int64_t j = 0; j + 1 < W; ++j) {
        const double d = static_cast<double>(r[j + 1]) - r[j];
        s += d * d;
      }
      if (i + 1 < H) {
        const T* below = r + W;
        for (int64_t j = 0; j < W; ++j) {
          const double d = static_cast<double>(below[j]) - r[j];
          s += d * d;
        }
      }
      double ring = 0;
      if (i == 0 || i == H - 1) {
        for (int64_t j = 0; j < W; ++j) ring += static_cast<double>(r[j]) * r[j];
      } else if (W > 0) {
        ring = static_cast<double>(r[0]) * r[0];
        if (W > 1) ring += static_cast<double>(r[W - 1]) * r[W - 1];
      }
      part[t] = s + border_weight * ring;
    }
    sum_rows(part, N, H, 1.0, loss.data<T>());
  });
}

// dloss: [N], m: [N,1,H,W] -> dm: [N,1,H,W]
void tv_loss_backward(Ctx&, const Tensor& dloss, const Tensor& m, double border_weight, Tensor& dm) {
  const int64_t N = m.dim(0), H = m.dim(2), W = m.dim(3);
  dispatch_float(m.dtype(), "tv_loss_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pm = m.data<T>();
    const T* g = dloss.data<T>();
    T* pd = dm.data<T>();
    const T bw = static_cast<T>(border_weight);
#pragma omp parallel for if (N * H * W > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t t = 0; t < N * H; ++t) {
      const int64_t n = t / H, i = t % H;
      const T* r = pm + t * W;
      const T* above = i > 0 ? r - W : nullptr;
      const T* below = i + 1 < H ? r + W : nullptr;
      const bool ring_row = i == 0 || i == H - 1;
      const T k = T(2) * g[n];
      T* d = pd + t * W;
      for (int64_t j = 0; j < W; ++j) {
        const T v = r[j];
        T s = 0;
        if (above) s += v - above[j];
        if (below) s += v - below[j];
        if (j > 0) s += v - r[j - 1];
        if (j + 1 < W) s += v - r[j + 1];
        if (ring_row || j == 0 || j == W - 1) s += bw * v;
        d[j] = k * s;
      }
    }
  });
}

// m: [N,1,H,W] -> loss: [N]
void area_loss(Ctx& ctx, const Tensor& m, double power, double eps, Tensor& loss) {
  const int64_t N = m.dim(0), H = m.dim(2), W = m.dim(3);
  const bool need_positive = !is_integer(power);
  Tensor part_t = ctx.alloc(Shape{N * H}, DType::F64);
  double* part = part_t.data<double>();
  dispatch_float(m.dtype(), "area_loss", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pm = m.data<T>();
    const T te = static_cast<T>(eps), tp = static_cast<T>(power);  // powf for f32 masks
    int64_t bad = 0;
#pragma omp parallel for if (N * H * W > SAL_OMP_MIN_WORK) schedule(static) reduction(+ : bad)
    for (int64_t t = 0; t < N * H; ++t) {
      const T* r = pm + t * W;
      double s = 0;
      if (power == 1) {
        for (int64_t j = 0; j < W; ++j) s += static_cast<double>(r[j]) + eps;
      } else {
        for (int64_t j = 0; j < W; ++j) {
          const T b = r[j] + te;
          bad += need_positive && !(b > T(0));
          s += static_cast<double>(std::pow(b, tp));
        }
      }
      part[t] = s;
    }
    if (bad) bad_base("area_loss", pm, N, H, W, power, eps);
    sum_rows(part, N, H, 1.0 / static_cast<double>(H * W), loss.data<T>());
  });
}

// dloss: [N], m: [N,1,H,W] -> dm: [N,1,H,W]
void area_loss_backward(Ctx&, const Tensor& dloss, const Tensor& m, double power, double eps, Tensor& dm) {
  const int64_t N = m.dim(0), H = m.dim(2), W = m.dim(3), HW = H * W;
  const bool need_positive = !is_integer(power);
  dispatch_float(m.dtype(), "area_loss_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* pm = m.data<T>();
    const T* g = dloss.data<T>();
    T* pd = dm.data<T>();
    const T te = static_cast<T>(eps), tp1 = static_cast<T>(power - 1);
    int64_t bad = 0;
#pragma omp parallel for if (N * HW > SAL_OMP_MIN_WORK) schedule(static) reduction(+ : bad)
    for (int64_t t = 0; t < N * H; ++t) {
      const int64_t n = t / H;
      const T tk = static_cast<T>(static_cast<double>(g[n]) / static_cast<double>(HW) * power);
      const T* r = pm + t * W;
      T* d = pd + t * W;
      if (power == 0 || power == 1) {  // constant derivative (0 or 1), no pow
        for (int64_t j = 0; j < W; ++j) d[j] = tk;
      } else {
        for (int64_t j = 0; j < W; ++j) {
          const T b = r[j] + te;
          bad += need_positive && !(b > T(0));
          d[j] = tk * std::pow(b, tp1);
        }
      }
    }
    if (bad) bad_base("area_loss_backward", pm, N, H, W, power, eps);
  });
}

}  // namespace sal::cpu
