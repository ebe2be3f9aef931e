// Separable Gaussian blur of every plane of an NCHW tensor, and its adjoint (the backward).
//
// x, y, dy, dx: [N,C,H,W] contiguous. Taps t[k] = exp(-(k-half)^2 / (2 sigma^2)) normalised to
// sum 1, k in [0, ksize), half = ksize/2 (ksize odd). Reflect padding as torch's 'reflect'
// (... 2 1 | 0 1 2 | 1 0 ...: the edge pixel is not repeated); when the kernel is wider than the
// image the index keeps folding, i.e. it is reduced modulo the period 2(n-1) (n = 1: always 0).
//   y = V(Hz(x)): Hz[h, w] = sum_k t[k] x[h, fold(w+k-half)], V likewise along H.
//
// Why it is written this way:
// - Separable: 2*ksize multiply-adds per pixel instead of ksize^2 (the released masker blurs
//   with ksize 55).
// - Horizontal pass: each row is copied once into a per-thread padded buffer (folding only at
//   its 2*half edge entries), then y[w] += t[k] * buf[w+k] runs tap by tap over contiguous
//   memory, which vectorises; no index arithmetic in the inner loop.
// - Vertical pass: each output row is a weighted sum of ksize whole source rows, found by folding
//   the row index once per tap; again contiguous and vectorised.
// - Both passes are parallel over all N*C*H rows (enough work for a single image).
// - The adjoint runs the transposed passes. The vertical transpose is a gather over a small
//   transposed tap list (for each source row, the output rows and weights that read it, folds
//   included), so rows stay independent and no atomics are needed. The horizontal transpose
//   spreads each gradient row into the padded buffer tap by tap, then folds the 2*half edge
//   entries back onto the pixels they came from.
// - The taps, the intermediate image and the scratch rows come from the context's arena.
#include "engine/cpu/blur.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "engine/cpu/dispatch.h"

namespace sal::cpu {

namespace {

// Index i folded into [0, n) by repeated reflection about the edge pixels.
inline int64_t fold(int64_t i, int64_t n) {
  if (n == 1) return 0;
  const int64_t period = 2 * (n - 1);
  int64_t m = i % period;
  if (m < 0) m += period;
  return m < n ? m : period - m;
}

template <class T>
void make_taps(double sigma, int ksize, T* taps) {
  const int half = ksize / 2;
  double sum = 0;
  for (int k = 0; k < ksize; ++k) sum += std::exp(-double(k - half) * double(k - half) / (2 * sigma * sigma));
  for (int k = 0; k < ksize; ++k)
    taps[k] = static_cast<T>(std::exp(-double(k - half) * double(k - half) / (2 * sigma * sigma)) / sum);
}

// out[w] = sum_k taps[k] * buf[w + k], w in [0, width).
template <class T>
void correlate_row(const T* __restrict buf, const T* taps, int ksize, T* __restrict out, int64_t width) {
  const T t0 = taps[0];
  for (int64_t w = 0; w < width; ++w) out[w] = t0 * buf[w];
  for (int k = 1; k < ksize; ++k) {
    const T t = taps[k];
    const T* src = buf + k;
    for (int64_t w = 0; w < width; ++w) out[w] += t * src[w];
  }
}

struct Dims {
  int64_t planes, h, w;
  int ksize, half;
  int64_t rows() const { return planes * h; }
  int64_t padded() const { return w + 2 * half; }
};

Dims dims_of(const Tensor& t, int ksize) { return Dims{t.dim(0) * t.dim(1), t.dim(2), t.dim(3), ksize, ksize / 2}; }

}  // namespace

void gaussian_blur(Ctx& ctx, const Tensor& x, double sigma, int ksize, Tensor& y) {
  const Dims d = dims_of(x, ksize);
  const bool par = x.numel() * ksize > SAL_OMP_MIN_WORK;
  const int threads = par ? omp_get_max_threads() : 1;
  dispatch_float(x.dtype(), "gaussian_blur", [&](auto tag) {
    using T = typename decltype(tag)::type;
    Tensor taps_t = ctx.alloc(Shape{ksize}, x.dtype());
    Tensor tmp_t = ctx.alloc(x.shape(), x.dtype());
    Tensor buf_t = ctx.alloc(Shape{threads * d.padded()}, x.dtype());
    T* taps = taps_t.data<T>();
    make_taps(sigma, ksize, taps);
    const T* px = x.data<T>();
    T* tmp = tmp_t.data<T>();
    T* py = y.data<T>();

    // Horizontal: x -> tmp, row by row through a padded copy of the row.
#pragma omp parallel if (par) num_threads(threads)
    {
      T* buf = buf_t.data<T>() + omp_get_thread_num() * d.padded();
#pragma omp for schedule(static)
      for (int64_t r = 0; r < d.rows(); ++r) {
        const T* src = px + r * d.w;
        std::copy(src, src + d.w, buf + d.half);
        for (int p = 0; p < d.half; ++p) {
          buf[p] = src[fold(p - d.half, d.w)];
          buf[d.half + d.w + p] = src[fold(d.w + p, d.w)];
        }
        correlate_row(buf, taps, ksize, tmp + r * d.w, d.w);
      }
    }

    // Vertical: tmp -> y, each output row a weighted sum of ksize rows of its plane.
#pragma omp parallel for if (par) num_threads(threads) schedule(static)
    for (int64_t r = 0; r < d.rows(); ++r) {
      const int64_t h = r % d.h;
      const T* plane = tmp + (r - h) * d.w;
      T* out = py + r * d.w;
      const T* first = plane + fold(h - d.half, d.h) * d.w;
      for (int64_t w = 0; w < d.w; ++w) out[w] = taps[0] * first[w];
      for (int k = 1; k < ksize; ++k) {
        const T t = taps[k];
        const T* src = plane + fold(h + k - d.half, d.h) * d.w;
        for (int64_t w = 0; w < d.w; ++w) out[w] += t * src[w];
      }
    }
  });
}

void gaussian_blur_backward(Ctx& ctx, const Tensor& dy, double sigma, int ksize, Tensor& dx) {
  const Dims d = dims_of(dy, ksize);
  const bool par = dy.numel() * ksize > SAL_OMP_MIN_WORK;
  const int threads = par ? omp_get_max_threads() : 1;
  const int64_t entries = d.h * ksize;
  dispatch_float(dy.dtype(), "gaussian_blur_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    Tensor taps_t = ctx.alloc(Shape{ksize}, dy.dtype());
    Tensor tmp_t = ctx.alloc(dy.shape(), dy.dtype());
    Tensor buf_t = ctx.alloc(Shape{threads * d.padded()}, dy.dtype());
    // Transposed vertical taps: for source row j, entries [start[j], start[j+1]) list the output
    // rows that read it (row[e]) with their weights (weight[e]).
    Tensor list_t = ctx.alloc(Shape{2 * (d.h + 1) + entries}, DType::I32);
    Tensor weight_t = ctx.alloc(Shape{entries}, dy.dtype());
    T* taps = taps_t.data<T>();
    make_taps(sigma, ksize, taps);
    int32_t* start = list_t.data<int32_t>();
    int32_t* cursor = start + d.h + 1;
    int32_t* row = cursor + d.h + 1;
    T* weight = weight_t.data<T>();
    std::fill(start, start + d.h + 1, 0);
    for (int64_t h = 0; h < d.h; ++h)
      for (int k = 0; k < ksize; ++k) ++start[fold(h + k - d.half, d.h) + 1];
    for (int64_t j = 0; j < d.h; ++j) start[j + 1] += start[j];
    std::copy(start, start + d.h, cursor);
    for (int64_t h = 0; h < d.h; ++h) {
      for (int k = 0; k < ksize; ++k) {
        const int32_t e = cursor[fold(h + k - d.half, d.h)]++;
        row[e] = static_cast<int32_t>(h);
        weight[e] = taps[k];
      }
    }

    const T* pdy = dy.data<T>();
    T* tmp = tmp_t.data<T>();
    T* pdx = dx.data<T>();

    // Vertical transpose: dy -> tmp, source row j gathers the output rows that read it.
#pragma omp parallel for if (par) num_threads(threads) schedule(static)
    for (int64_t r = 0; r < d.rows(); ++r) {
      const int64_t j = r % d.h;
      const T* plane = pdy + (r - j) * d.w;
      T* out = tmp + r * d.w;
      std::fill(out, out + d.w, T(0));
      for (int32_t e = start[j]; e < start[j + 1]; ++e) {
        const T t = weight[e];
        const T* src = plane + static_cast<int64_t>(row[e]) * d.w;
        for (int64_t w = 0; w < d.w; ++w) out[w] += t * src[w];
      }
    }

    // Horizontal transpose: tmp -> dx, spread into the padded row, then fold the edges back.
#pragma omp parallel if (par) num_threads(threads)
    {
      T* buf = buf_t.data<T>() + omp_get_thread_num() * d.padded();
#pragma omp for schedule(static)
      for (int64_t r = 0; r < d.rows(); ++r) {
        const T* g = tmp + r * d.w;
        T* out = pdx + r * d.w;
        std::fill(buf, buf + d.padded(), T(0));
        for (int k = 0; k < ksize; ++k) {
          const T t = taps[k];
          T* dst = buf + k;
          for (int64_t w = 0; w < d.w; ++w) dst[w] += t * g[w];
        }
        std::copy(buf + d.half, buf + d.half + d.w, out);
        for (int p = 0; p < d.half; ++p) {
          out[fold(p - d.half, d.w)] += buf[p];
          out[fold(d.w + p, d.w)] += buf[d.half + d.w + p];
        }
      }
    }
  });
}

}  // namespace sal::cpu
