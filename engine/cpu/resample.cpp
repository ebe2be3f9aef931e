// Resampling of every plane of an NCHW tensor:
// - resize_bilinear: x [N,C,H,W] -> y [N,C,P,Q], torch.nn.functional.interpolate(mode='bilinear',
//   align_corners=False) without antialiasing, for any up or down factor. Along each axis,
//   src = (dst + 0.5) * in/out - 0.5, clamped at 0; i0 = floor(src) (at most in-1),
//   i1 = min(i0+1, in-1), weights 1-l and l with l = src - i0 (clamped to [0,1]).
//   The backward scatters dy with the same four weights (the adjoint).
// - pixel_shuffle: [N,C*r*r,H,W] -> [N,C,H*r,W*r], out[n,c,h*r+i,w*r+j] = in[n,c*r*r+i*r+j,h,w]
//   (torch.nn.PixelShuffle); pixel_unshuffle is its inverse, and each is the other's backward.
//
// Why it is written this way: the per-axis indices and weights depend only on (in, out), so they
// are computed once per call into small tables (from the context's arena) instead of per element;
// the arithmetic is done in the tensor's type, as PyTorch does, so f32 results match it closely.
// Forwards are gathers: parallel over all N*C*P output rows, writes contiguous. The bilinear
// backward scatters into overlapping source pixels, so it is parallel over planes (one thread
// owns a dx plane). The shuffles are pure permutations: parallel over output rows, contiguous
// writes, reads strided by r (or H*W across sub-channels).
#include "engine/cpu/resample.h"

#include <algorithm>

#include "engine/cpu/dispatch.h"

namespace sal::cpu {

namespace {

// Interpolation table of one axis: for output o, y = l0[o] * x[i0[o]] + l1[o] * x[i1[o]].
template <class T>
struct Axis {
  int32_t *i0, *i1;
  T *l0, *l1;
};

template <class T>
void fill_axis(const Axis<T>& ax, int64_t in, int64_t out) {
  const T scale = static_cast<T>(in) / static_cast<T>(out);
  for (int64_t o = 0; o < out; ++o) {
    T src = scale * (static_cast<T>(o) + T(0.5)) - T(0.5);
    if (src < T(0)) src = T(0);
    const int64_t i = std::min<int64_t>(static_cast<int64_t>(src), in - 1);  // floor, src >= 0
    const T lam = std::clamp(src - static_cast<T>(i), T(0), T(1));
    ax.i0[o] = static_cast<int32_t>(i);
    ax.i1[o] = static_cast<int32_t>(i < in - 1 ? i + 1 : i);
    ax.l0[o] = T(1) - lam;
    ax.l1[o] = lam;
  }
}

// The tables of both axes, allocated from ctx (they live as long as `idx` and `wts`).
template <class T>
struct Tables {
  Tensor idx, wts;
  Axis<T> h, w;
  Tables(Ctx& ctx, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w) {
    idx = ctx.alloc(Shape{2 * (out_h + out_w)}, DType::I32);
    wts = ctx.alloc(Shape{2 * (out_h + out_w)}, dtype_of<T>());
    int32_t* pi = idx.data<int32_t>();
    T* pw = wts.data<T>();
    h = Axis<T>{pi, pi + out_h, pw, pw + out_h};
    w = Axis<T>{pi + 2 * out_h, pi + 2 * out_h + out_w, pw + 2 * out_h, pw + 2 * out_h + out_w};
    fill_axis(h, in_h, out_h);
    fill_axis(w, in_w, out_w);
  }
};

}  // namespace

void resize_bilinear(Ctx& ctx, const Tensor& x, Tensor& y) {
  const int64_t planes = x.dim(0) * x.dim(1), in_h = x.dim(2), in_w = x.dim(3);
  const int64_t out_h = y.dim(2), out_w = y.dim(3);
  dispatch_float(x.dtype(), "resize_bilinear", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Tables<T> tab(ctx, in_h, in_w, out_h, out_w);
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const int64_t rows = planes * out_h;
#pragma omp parallel for if (y.numel() > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t oh = r % out_h;
      const T* plane = px + (r / out_h) * in_h * in_w;
      const T* row0 = plane + tab.h.i0[oh] * in_w;
      const T* row1 = plane + tab.h.i1[oh] * in_w;
      const T a0 = tab.h.l0[oh], a1 = tab.h.l1[oh];
      T* out = py + r * out_w;
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const int32_t c0 = tab.w.i0[ow], c1 = tab.w.i1[ow];
        const T b0 = tab.w.l0[ow], b1 = tab.w.l1[ow];
        out[ow] = a0 * (b0 * row0[c0] + b1 * row0[c1]) + a1 * (b0 * row1[c0] + b1 * row1[c1]);
      }
    }
  });
}

void resize_bilinear_backward(Ctx& ctx, const Tensor& dy, Tensor& dx) {
  const int64_t planes = dx.dim(0) * dx.dim(1), in_h = dx.dim(2), in_w = dx.dim(3);
  const int64_t out_h = dy.dim(2), out_w = dy.dim(3);
  dispatch_float(dy.dtype(), "resize_bilinear_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Tables<T> tab(ctx, in_h, in_w, out_h, out_w);
    const T* pdy = dy.data<T>();
    T* pdx = dx.data<T>();
#pragma omp parallel for if (dy.numel() + dx.numel() > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t pl = 0; pl < planes; ++pl) {
      T* plane = pdx + pl * in_h * in_w;
      std::fill(plane, plane + in_h * in_w, T(0));
      for (int64_t oh = 0; oh < out_h; ++oh) {
        T* row0 = plane + tab.h.i0[oh] * in_w;
        T* row1 = plane + tab.h.i1[oh] * in_w;
        const T a0 = tab.h.l0[oh], a1 = tab.h.l1[oh];
        const T* g = pdy + (pl * out_h + oh) * out_w;
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const int32_t c0 = tab.w.i0[ow], c1 = tab.w.i1[ow];
          const T b0 = tab.w.l0[ow], b1 = tab.w.l1[ow];
          const T g0 = a0 * g[ow], g1 = a1 * g[ow];
          row0[c0] += b0 * g0;
          row0[c1] += b1 * g0;
          row1[c0] += b0 * g1;
          row1[c1] += b1 * g1;
        }
      }
    }
  });
}

void pixel_shuffle(Ctx&, const Tensor& x, int r, Tensor& y) {
  // y: [N,C,H*r,W*r]; row (n, c, oh) with oh = h*r + i reads sub-channels c*r*r + i*r + j.
  const int64_t n = y.dim(0), c = y.dim(1), h = x.dim(2), w = x.dim(3);
  const int64_t rr = static_cast<int64_t>(r) * r;
  dispatch_float(x.dtype(), "pixel_shuffle", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const int64_t rows = n * c * h * r;
#pragma omp parallel for if (y.numel() > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      const int64_t oh = row % (h * r), nc = row / (h * r);  // nc = n*C + c
      const int64_t hi = oh / r, i = oh % r;
      T* out = py + row * w * r;
      for (int j = 0; j < r; ++j) {
        const T* src = px + ((nc * rr + i * r + j) * h + hi) * w;
        for (int64_t wi = 0; wi < w; ++wi) out[wi * r + j] = src[wi];
      }
    }
  });
}

void pixel_unshuffle(Ctx&, const Tensor& x, int r, Tensor& y) {
  // y: [N,C*r*r,H,W]; row (n, c*r*r + i*r + j, h) reads x[n, c, h*r + i, j::r].
  const int64_t n = x.dim(0), c = x.dim(1), h = y.dim(2), w = y.dim(3);
  const int64_t rr = static_cast<int64_t>(r) * r;
  dispatch_float(x.dtype(), "pixel_unshuffle", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const int64_t rows = n * c * rr * h;
#pragma omp parallel for if (y.numel() > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      const int64_t hi = row % h, oc = row / h;  // oc = n*C*r*r + c*r*r + i*r + j
      const int64_t sub = oc % rr, nc = oc / rr;
      const int64_t i = sub / r, j = sub % r;
      const T* src = px + (nc * h * r + hi * r + i) * (w * r) + j;
      T* out = py + row * w;
      for (int64_t wi = 0; wi < w; ++wi) out[wi] = src[wi * r];
    }
  });
}

}  // namespace sal::cpu
