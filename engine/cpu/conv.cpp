// CPU kernels: conv2d (forward, dgrad, wgrad), conv_transpose2d (the same three, by role swap)
// and linear. Layout NCHW, weights [K, C/G, R, S].
//   conv2d          x:[N,C,H,W] (*) w:[K,C/G,R,S]           -> y:[N,K,P,Q]
//   conv2d_dgrad    dy:[N,K,P,Q], w                          -> dx:[N,C,H,W]
//   conv2d_wgrad    dy, x                                    -> dw:[K,C/G,R,S] +=, db:[K] +=
//   conv_transpose2d x:[N,C,H,W], w:[C,K/G,R,S] -> y:[N,K,P,Q] is conv2d_dgrad with (dy, dx) = (x, y);
//   its dgrad is conv2d of dy, its wgrad is conv2d_wgrad with the roles of x and dy swapped.
//
// How (per group g; Kg = K/G output and Cg = C/G input channels, CRS = Cg*R*S):
//   forward  y_g[Kg, cols]     = W_g[Kg, CRS] * col[CRS, cols]        (col = im2col of x)
//   dgrad    dcol[CRS, cols]   = W_g^T * dy_g[Kg, cols], dx = col2im(dcol)
//   wgrad    dW_g[Kg, CRS]    += dy_g[Kg, cols] * col^T
// with BLAS GEMMs (engine/cpu/gemm.*). A 1x1 stride-1 unpadded conv skips im2col: the image
// already is col. Depthwise convs (one input and one output channel per group) are a direct
// loop per (image, channel) plane over contiguous rows, since their GEMMs would be 1 x R*S.
// 3x3 convs with padding 1, stride 1 "same" with 8-128 channels or stride 2 halving an even plane with
// 8-64 (f32 on AVX-512), take the direct kernel of engine/cpu/conv_direct.h instead, forward and input
// gradient (wgrad stays a GEMM); at training batch sizes the stride-1 ones with 32-128 channels take
// Winograd F(2x2, 3x3) (engine/cpu/conv_winograd.h). A forward GEMM of one image with at most 64 output positions
// (7x7 planes and smaller: every 1x1 conv there, and any conv at batch 1) runs on engine/cpu/gemm_narrow.h instead of
// BLAS, which would repack the weights for each image; its epilogue runs on each finished block of rows.
// The data-movement loops (im2col, col2im, depthwise planes) have AVX-512 versions picked at
// run time (the build targets baseline x86-64): on 16x16 CIFAR planes im2col and col2im cost as
// much as the GEMM before, about a third of it after.
//
// Why it is organised in "chunks" of images: a GEMM needs a wide enough N (cols) to run near
// peak and, for wgrad, a long enough reduction; at small spatial sizes (7x7, the 8x8 of CIFAR)
// one image gives N = 49..64. So images are taken B at a time (B*P*Q >= kTargetCols columns):
// im2col writes them side by side, dy is gathered side by side, and forward outputs are staged
// and copied back into NCHW. Large images use B = 1 and write straight into the tensors.
//
// Threads: BLAS is single-threaded (see gemm.cpp). With at least as many chunks as threads
// (balanced), each OpenMP thread processes whole chunks with its own column buffer (wgrad:
// with its own dW accumulator, summed at the end); otherwise chunks run one after another with
// the parallelism inside (im2col rows, GEMM slabs, col2im planes). Scratch buffers come from
// ctx.alloc (the arena when there is one) and are released when the op returns.
#include "engine/cpu/conv.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "engine/cpu/conv_direct.h"
#include "engine/cpu/conv_winograd.h"
#include "engine/cpu/dispatch.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/gemm_narrow.h"
#include "engine/cpu/im2col.h"
#include "engine/cpu/keep_or_zero.h"

namespace sal::cpu {

namespace {

// Columns per GEMM that small images are batched up to.
constexpr int64_t kTargetCols = 512;

// Temporaries for one op call; with an arena they are released when the op returns.
class Scratch {
 public:
  explicit Scratch(Ctx& ctx) : ctx_(ctx) {
    if (ctx_.arena) mark_ = ctx_.arena->mark();
  }
  ~Scratch() {
    if (ctx_.arena) ctx_.arena->release(mark_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  template <class T>
  T* get(int64_t n) {
    if (n <= 0) return nullptr;
    Tensor t = ctx_.alloc(Shape{n}, dtype_of<T>());
    if (!ctx_.arena) owned_.push_back(t);
    return t.data<T>();
  }

 private:
  Ctx& ctx_;
  Arena::Mark mark_{};
  std::vector<Tensor> owned_;
};

struct Plan {
  int64_t B = 1;         // images per chunk
  int64_t chunks = 0;
  int threads = 1;
  bool per_thread = false;  // each thread whole chunks; else parallel inside each chunk
};

// Images per chunk: about kTargetCols GEMM columns, but never fewer chunks than threads when
// there are enough images, and as even a split over the threads as the batch allows. Measured:
// the parallel-inside mode forks and joins several times per chunk, and on 2 busy cores each
// join can wait out a time slice of a descheduled thread (a 14x14 layer ran 5x slower that way
// than with whole chunks per thread), so it is kept for batches smaller than the thread count.
Plan make_plan(const ConvGeom& g) {
  Plan pl;
  pl.threads = omp_get_max_threads();
  const int64_t n = std::max<int64_t>(g.N, 1), t = pl.threads;
  const int64_t pq = std::max<int64_t>(g.pq(), 1);
  // A 1x1 conv reads its images in place when B = 1; batching them would add two copies that
  // cost more than the wider GEMM gains (measured: 1x1 64->128 at 8x8, batch 64, 2x faster).
  const int64_t target = g.pointwise() ? 1 : std::clamp<int64_t>((kTargetCols + pq - 1) / pq, 1, n);
  if (t > 1 && n >= t) {
    const int64_t per_thread = std::max<int64_t>(1, n / (t * target));  // chunks per thread
    pl.B = (n + t * per_thread - 1) / (t * per_thread);
  } else {
    pl.B = target;
  }
  pl.chunks = (g.N + pl.B - 1) / pl.B;
  pl.per_thread = t > 1 && pl.chunks >= t;
  return pl;
}

// The per-worker buffers of a chunked pass (forward, dgrad and wgrad size them alike): `col`
// holds a chunk's im2col (none when a 1x1 conv reads single images in place), `tmp` the GEMM
// result of a multi-image chunk before it is scattered to NCHW (dgrad: dy gathered, and with a gate
// always, single images too). One set per worker when threads take whole chunks, else one shared set.
// The forward's narrow GEMM (gemm_narrow.h) adds `pack`, its packed copy of the image's columns.
template <class T>
struct ChunkBuffers {
  int workers;
  int64_t col_size, tmp_size, pack_size;
  T* col_buf;
  T* tmp_buf;
  T* pack_buf;
  ChunkBuffers(Scratch& scratch, const ConvGeom& g, const Plan& pl, bool tmp_always = false, int64_t pack = 0)
      : workers(pl.per_thread ? pl.threads : 1),
        col_size((g.pointwise() && pl.B == 1) ? 0 : g.crs() * pl.B * g.pq()),
        tmp_size((pl.B > 1 || tmp_always) ? g.Kg * pl.B * g.pq() : 0),
        pack_size(pack),
        col_buf(scratch.get<T>(col_size * workers)),
        tmp_buf(scratch.get<T>(tmp_size * workers)),
        pack_buf(scratch.get<T>(pack_size * workers)) {}
  T* col(int worker) const { return col_buf ? col_buf + worker * col_size : nullptr; }
  T* tmp(int worker) const { return tmp_buf ? tmp_buf + worker * tmp_size : nullptr; }
  T* pack(int worker) const { return pack_buf ? pack_buf + worker * pack_size : nullptr; }
};

ConvGeom make_geom(const Shape& in, const Shape& w, const Shape& out, int groups, int sh, int sw, int pt, int pl,
                   int dh, int dw) {
  ConvGeom g;
  g.N = in[0], g.C = in[1], g.H = in[2], g.W = in[3];
  g.K = out[1], g.P = out[2], g.Q = out[3];
  g.R = w[2], g.S = w[3];
  g.G = groups, g.Cg = g.C / groups, g.Kg = g.K / groups;
  g.sh = sh, g.sw = sw, g.pt = pt, g.pl = pl, g.dh = dh, g.dw = dw;
  return g;
}

ConvGeom conv_geom(const Shape& x, const Shape& w, const Shape& y, const Conv2dArgs& a) {
  return make_geom(x, w, y, a.groups, a.stride_h, a.stride_w, a.pad_top, a.pad_left, a.dil_h, a.dil_w);
}

// The conv2d that a transposed conv is the input-gradient of: its input is the transposed
// conv's output `y`, its output the transposed conv's input `x`.
ConvGeom transpose_geom(const Shape& x, const Shape& w, const Shape& y, const ConvTranspose2dArgs& a) {
  return make_geom(y, w, x, a.groups, a.stride_h, a.stride_w, a.pad_h, a.pad_w, a.dil_h, a.dil_w);
}

// ---------------------------------------------------------------- small helpers

// What a forward applies to its GEMM result v at output channel k (nullable parts absent):
//   y = act((v - center[k]) * scale[k] + shift[k] + residual)
// a plain conv bias: center 0, scale 1, shift bias[k] (v + bias exactly); a frozen batch norm: center =
// mean, scale = gamma / sqrt(var + eps) (in double, rounded once), shift = beta, as
// engine/cpu/batchnorm.cpp's batchnorm2d_infer_act (whose results these equal bit for bit).
// `residual` is indexed like y (the whole output tensor).
template <class T>
struct Epilogue {
  const T* bias = nullptr;
  const T *gamma = nullptr, *beta = nullptr, *mean = nullptr, *var = nullptr;  // gamma null: no batch norm
  double eps = 0;
  const T* residual = nullptr;
  Activation act = Activation::None;

  bool any() const { return bias || gamma || residual || act != Activation::None; }
  bool beyond_bias() const { return gamma || residual || act != Activation::None; }
  // channel k's constants
  void channel(int64_t k, T& center, T& scale, T& shift) const {
    if (gamma) {
      center = mean[k];
      scale = static_cast<T>(static_cast<double>(gamma[k]) / std::sqrt(static_cast<double>(var[k]) + eps));
      shift = beta[k];
    } else {
      center = T(0), scale = T(1), shift = bias ? bias[k] : T(0);
    }
  }
};

// out[j] = act((in[j] - center) * scale + shift + r[j]) for j < len (r nullable; in may be out): the
// expression of batchnorm2d_infer_act's affine_act (engine/cpu/batchnorm.cpp), so the same rounding;
// the activations are those of engine/cpu/activation.cpp (relu maps NaN to 0, relu6 passes it).
template <class T>
void epilogue_row(const T* in, T* out, int64_t len, T center, T scale, T shift, const T* r, Activation act) {
  auto run = [&](auto f) {
    if (r) {
      for (int64_t j = 0; j < len; ++j) out[j] = f((in[j] - center) * scale + shift + r[j]);
    } else {
      for (int64_t j = 0; j < len; ++j) out[j] = f((in[j] - center) * scale + shift);
    }
  };
  switch (act) {
    case Activation::None: run([](T t) { return t; }); break;
    case Activation::ReLU: run([](T t) { return t > T(0) ? t : T(0); }); break;
    case Activation::ReLU6: run([](T t) { return t < T(0) ? T(0) : (t > T(6) ? T(6) : t); }); break;
  }
}

// The epilogue of channels [k0, k0 + nrows) on rows[k - k0][:] in place (rows of length len,
// contiguous); res offset like rows.
template <class T>
void epilogue_rows(T* rows, int64_t k0, int64_t nrows, int64_t len, const Epilogue<T>& epi, const T* res,
                   bool parallel) {
#pragma omp parallel for if (parallel && nrows * len > SAL_OMP_MIN_WORK) schedule(static)
  for (int64_t k = 0; k < nrows; ++k) {
    T center, scale, shift;
    epi.channel(k0 + k, center, scale, shift);
    epilogue_row(rows + k * len, rows + k * len, len, center, scale, shift, res ? res + k * len : nullptr, epi.act);
  }
}

// Staged [Kg, nb*PQ] of channels [k0, k0 + kg) -> nb images of y (image stride img):
// y[b][k][:] = epilogue(tmp[k][b*PQ:]); res offset like y.
template <class T>
void scatter_images(const T* tmp, int64_t nb, int64_t k0, int64_t kg, int64_t pq, T* y, int64_t img,
                    const Epilogue<T>& epi, const T* res, bool parallel) {
  const int64_t cols = nb * pq;
#pragma omp parallel for if (parallel && kg * cols > SAL_OMP_MIN_WORK) schedule(static)
  for (int64_t k = 0; k < kg; ++k) {
    T center, scale, shift;
    epi.channel(k0 + k, center, scale, shift);
    for (int64_t b = 0; b < nb; ++b)
      epilogue_row(tmp + k * cols + b * pq, y + b * img + k * pq, pq, center, scale, shift,
                   res ? res + b * img + k * pq : nullptr, epi.act);
  }
}

// What a dgrad applies to dy before its GEMM (conv2d_dgrad_bn_act): dz = act'(y) * dy * scale[k] with
// scale = gamma / sqrt(var + eps), the expression of batchnorm2d_infer_act_backward (engine/cpu/batchnorm.cpp)
// so that the result equals the two ops bit for bit. y is indexed like dy; y null: no gate (plain dgrad).
template <class T>
struct Gate {
  const T *y = nullptr, *gamma = nullptr, *var = nullptr;
  double eps = 0;
  Activation act = Activation::None;
  T scale(int64_t k) const {
    const double invstd = 1.0 / std::sqrt(static_cast<double>(var[k]) + eps);  // as batchnorm2d_infer_backward
    return static_cast<T>(static_cast<double>(gamma[k]) * invstd);
  }
};

// out[j] = act'(y[j]) * dy[j] * scale for j < len (act' from the activation's output, as relu_backward /
// relu6_backward).
template <class T>
void gate_row(const T* dy, const T* y, T* out, int64_t len, T scale, Activation act) {
  switch (act) {
    case Activation::None:
      for (int64_t j = 0; j < len; ++j) out[j] = dy[j] * scale;
      break;
    case Activation::ReLU:
      for (int64_t j = 0; j < len; ++j) out[j] = keep_or_zero(y[j] > T(0), dy[j] * scale);
      break;
    case Activation::ReLU6:
      for (int64_t j = 0; j < len; ++j) out[j] = keep_or_zero(y[j] > T(0) && y[j] < T(6), dy[j] * scale);
      break;
  }
}

// nb images of dy (image stride img), channels [k0, k0 + kg) -> tmp[Kg, nb*PQ], through the gate when it
// has one (gate.y offset like dy).
template <class T>
void gather_images(const T* dy, int64_t nb, int64_t k0, int64_t kg, int64_t pq, int64_t img, const Gate<T>& gate,
                   const T* y, T* tmp, bool parallel) {
  const int64_t cols = nb * pq;
#pragma omp parallel for if (parallel && kg * cols > SAL_OMP_MIN_WORK) schedule(static)
  for (int64_t k = 0; k < kg; ++k) {
    const T scale = gate.y ? gate.scale(k0 + k) : T(1);
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t at = b * img + k * pq;
      if (gate.y)
        gate_row(dy + at, y + at, tmp + k * cols + b * pq, pq, scale, gate.act);
      else
        std::memcpy(tmp + k * cols + b * pq, dy + at, static_cast<size_t>(pq) * sizeof(T));
    }
  }
}

// db[k] += sum over n, j of dy[n][k][j]; dy: [N, K, L].
template <class T>
void bias_grad(const T* dy, int64_t n, int64_t k, int64_t len, T* db) {
#pragma omp parallel for if (n * k * len > SAL_OMP_MIN_WORK) schedule(static)
  for (int64_t c = 0; c < k; ++c) {
    T acc = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T* r = dy + (i * k + c) * len;
      for (int64_t j = 0; j < len; ++j) acc += r[j];
    }
    db[c] += acc;
  }
}

// Runs body(chunk, worker) over all chunks: per thread (worker = thread id, body gets
// parallel=false) or one chunk after another (worker 0, parallel=true inside).
template <class Body>
void for_chunks(const Plan& pl, Body&& body) {
  if (pl.per_thread) {
#pragma omp parallel num_threads(pl.threads)
    {
      const int tid = omp_get_thread_num();
#pragma omp for schedule(static)
      for (int64_t ci = 0; ci < pl.chunks; ++ci) body(ci, tid, false);
    }
  } else {
    for (int64_t ci = 0; ci < pl.chunks; ++ci) body(ci, 0, pl.threads > 1);
  }
}

// ---------------------------------------------------------------- depthwise (Cg = Kg = 1)
// One (image, channel) plane per call; every tap (r, s) is a contiguous row update
// (y_row[q] += w * x_row[q*sw + off]) over the output columns where the tap is inside the image.
// The plane kernels are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time
// (the build itself targets baseline x86-64); OpenMP runs over planes (forward, dgrad) or
// channels (wgrad), so no two threads write the same memory.

// Valid output-column ranges of every kernel column s, computed once per plane (valid_q
// divides; per output row and tap that cost more than the row update itself).
struct TapCols {
  static constexpr int64_t kMax = 16;
  QRange qr[kMax];
  int64_t off[kMax];
  TapCols(const ConvGeom& g) {
    for (int64_t s = 0; s < std::min(g.S, kMax); ++s) {
      off[s] = s * g.dw - g.pl;
      qr[s] = valid_q(off[s], g.sw, g.W, g.Q);
    }
  }
  static QRange range(const ConvGeom& g, const TapCols& t, int64_t s) {
    return s < kMax ? t.qr[s] : valid_q(s * g.dw - g.pl, g.sw, g.W, g.Q);
  }
};

// xp:[H,W], wc:[R,S] -> yp:[P,Q] (overwritten; starts at bias)
template <class T>
inline __attribute__((always_inline)) void dw_forward_plane(const ConvGeom& g, const T* xp, const T* wc, T bias,
                                                            T* yp) {
  std::fill(yp, yp + g.pq(), bias);
  const TapCols taps(g);
  for (int64_t p = 0; p < g.P; ++p) {
    T* yrow = yp + p * g.Q;
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t h = p * g.sh - g.pt + r * g.dh;
      if (h < 0 || h >= g.H) continue;
      const T* xrow = xp + h * g.W;
      for (int64_t s = 0; s < g.S; ++s) {
        const int64_t off = s * g.dw - g.pl;
        const QRange qr = TapCols::range(g, taps, s);
        const T wv = wc[r * g.S + s];
        if (g.sw == 1) {
          const T* xs = xrow + off;
          for (int64_t q = qr.lo; q < qr.hi; ++q) yrow[q] += wv * xs[q];
        } else {
          for (int64_t q = qr.lo; q < qr.hi; ++q) yrow[q] += wv * xrow[q * g.sw + off];
        }
      }
    }
  }
}

// dyp:[P,Q], wc:[R,S] -> dxp:[H,W] (overwritten)
template <class T>
inline __attribute__((always_inline)) void dw_dgrad_plane(const ConvGeom& g, const T* dyp, const T* wc, T* dxp) {
  std::fill(dxp, dxp + g.hw(), T(0));
  const TapCols taps(g);
  for (int64_t p = 0; p < g.P; ++p) {
    const T* dyrow = dyp + p * g.Q;
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t h = p * g.sh - g.pt + r * g.dh;
      if (h < 0 || h >= g.H) continue;
      T* dxrow = dxp + h * g.W;
      for (int64_t s = 0; s < g.S; ++s) {
        const int64_t off = s * g.dw - g.pl;
        const QRange qr = TapCols::range(g, taps, s);
        const T wv = wc[r * g.S + s];
        if (g.sw == 1) {
          T* dxs = dxrow + off;
          for (int64_t q = qr.lo; q < qr.hi; ++q) dxs[q] += wv * dyrow[q];
        } else {
          for (int64_t q = qr.lo; q < qr.hi; ++q) dxrow[q * g.sw + off] += wv * dyrow[q];
        }
      }
    }
  }
}

// acc[r*S + s][q] += dy[p][q] * x[h(p, r)][q*sw + off(s)] over one plane: per-tap vector partial
// sums (acc: [R*S, Q]), so the inner loop is an elementwise multiply-add and each dy row is
// reused from L1 by every tap; the caller reduces acc rows into dw once per channel.
template <class T>
inline __attribute__((always_inline)) void dw_wgrad_plane(const ConvGeom& g, const T* dyp, const T* xp, T* acc) {
  const TapCols taps(g);
  for (int64_t p = 0; p < g.P; ++p) {
    const T* dyrow = dyp + p * g.Q;
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t h = p * g.sh - g.pt + r * g.dh;
      if (h < 0 || h >= g.H) continue;
      const T* xrow = xp + h * g.W;
      for (int64_t s = 0; s < g.S; ++s) {
        const int64_t off = s * g.dw - g.pl;
        const QRange qr = TapCols::range(g, taps, s);
        T* a = acc + (r * g.S + s) * g.Q;
        if (g.sw == 1) {
          const T* xs = xrow + off;
          for (int64_t q = qr.lo; q < qr.hi; ++q) a[q] += dyrow[q] * xs[q];
        } else {
          for (int64_t q = qr.lo; q < qr.hi; ++q) a[q] += dyrow[q] * xrow[q * g.sw + off];
        }
      }
    }
  }
}

// AVX-512 versions for f32 planes up to 64 columns wide (MobileNet's 112..7, CIFAR's 32..8):
// each output row lives in NW registers while all R*S taps are added (masked loads give the
// zeros of the padding), and is stored once, instead of being read and written back per tap.
inline uint32_t lanes(int64_t lo, int64_t hi) {
  lo = std::clamp<int64_t>(lo, 0, 16);
  hi = std::clamp<int64_t>(hi, 0, 16);
  return hi <= lo ? 0u : ((1u << hi) - 1u) & ~((1u << lo) - 1u);
}

template <int NW>
__attribute__((target("avx512f"))) void dw_forward_avx512(const ConvGeom& g, const float* xp, const float* wc,
                                                            float bias, float* yp) {
  const int64_t S = g.S;
  __mmask16 m[TapCols::kMax][NW];
  for (int64_t s = 0; s < S; ++s) {
    const QRange qr = valid_q(s * g.dw - g.pl, g.sw, g.W, g.Q);
    for (int k = 0; k < NW; ++k) m[s][k] = static_cast<__mmask16>(lanes(qr.lo - 16 * k, qr.hi - 16 * k));
  }
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32(static_cast<int>(g.sw)));
  for (int64_t p = 0; p < g.P; ++p) {
    __m512 acc[NW];
    for (int k = 0; k < NW; ++k) acc[k] = _mm512_set1_ps(bias);
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t h = p * g.sh - g.pt + r * g.dh;
      if (h < 0 || h >= g.H) continue;
      const float* xrow = xp + h * g.W;
      for (int64_t s = 0; s < S; ++s) {
        const __m512 wv = _mm512_set1_ps(wc[r * S + s]);
        // Lane j of vector k is output column q = 16k + j, reading x[h][q*sw + s*dw - pl].
        const float* base = xrow + s * g.dw - g.pl;
        for (int k = 0; k < NW; ++k) {
          const __m512 v = g.sw == 1 ? _mm512_maskz_loadu_ps(m[s][k], base + 16 * k)
                                     : _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m[s][k], idx,
                                                                base + 16 * k * g.sw, 4);
          acc[k] = _mm512_fmadd_ps(wv, v, acc[k]);
        }
      }
    }
    for (int k = 0; k < NW; ++k)
      _mm512_mask_storeu_ps(yp + p * g.Q + 16 * k, static_cast<__mmask16>(lanes(0, g.Q - 16 * k)), acc[k]);
  }
}

// Stride-1 columns: dx[h][w] = sum over taps of w[r][s] * dy[p][w + pl - s*dw], p*sh = h + pt - r*dh.
template <int NW>
__attribute__((target("avx512f"))) void dw_dgrad_avx512(const ConvGeom& g, const float* dyp, const float* wc,
                                                          float* dxp) {
  const int64_t S = g.S, W = g.W, Q = g.Q;
  __mmask16 m[TapCols::kMax][NW];
  for (int64_t s = 0; s < S; ++s) {
    const int64_t qoff = g.pl - s * g.dw;  // lane w reads q = w + qoff
    for (int k = 0; k < NW; ++k)
      m[s][k] = static_cast<__mmask16>(lanes(-qoff - 16 * k, Q - qoff - 16 * k) & lanes(0, W - 16 * k));
  }
  for (int64_t h = 0; h < g.H; ++h) {
    __m512 acc[NW];
    for (int k = 0; k < NW; ++k) acc[k] = _mm512_setzero_ps();
    for (int64_t r = 0; r < g.R; ++r) {
      const int64_t t = h + g.pt - r * g.dh;
      if (t < 0) break;  // t only falls as r grows
      int64_t p = t;
      if (g.sh != 1) {
        if (t % g.sh != 0) continue;
        p = t / g.sh;
      }
      if (p >= g.P) continue;
      const float* dyrow = dyp + p * Q + g.pl;
      for (int64_t s = 0; s < S; ++s) {
        const __m512 wv = _mm512_set1_ps(wc[r * S + s]);
        const float* base = dyrow - s * g.dw;
        for (int k = 0; k < NW; ++k)
          acc[k] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m[s][k], base + 16 * k), acc[k]);
      }
    }
    for (int k = 0; k < NW; ++k)
      _mm512_mask_storeu_ps(dxp + h * W + 16 * k, static_cast<__mmask16>(lanes(0, W - 16 * k)), acc[k]);
  }
}

bool dw_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

#define SAL_DW_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
SAL_DW_CLONES void dw_forward_isa(const ConvGeom& g, const float* x, const float* w, float b, float* y) {
  dw_forward_plane<float>(g, x, w, b, y);
}
SAL_DW_CLONES void dw_forward_isa(const ConvGeom& g, const double* x, const double* w, double b, double* y) {
  dw_forward_plane<double>(g, x, w, b, y);
}
SAL_DW_CLONES void dw_dgrad_isa(const ConvGeom& g, const float* dy, const float* w, float* dx) {
  dw_dgrad_plane<float>(g, dy, w, dx);
}
SAL_DW_CLONES void dw_dgrad_isa(const ConvGeom& g, const double* dy, const double* w, double* dx) {
  dw_dgrad_plane<double>(g, dy, w, dx);
}
SAL_DW_CLONES void dw_wgrad_isa(const ConvGeom& g, const float* dy, const float* x, float* acc) {
  dw_wgrad_plane<float>(g, dy, x, acc);
}
SAL_DW_CLONES void dw_wgrad_isa(const ConvGeom& g, const double* dy, const double* x, double* acc) {
  dw_wgrad_plane<double>(g, dy, x, acc);
}
#undef SAL_DW_CLONES

template <class T>
void depthwise_forward(const ConvGeom& g, const T* x, const T* w, const Epilogue<T>& epi, T* y) {
  const T* bias = epi.gamma ? nullptr : epi.bias;  // a batch norm's channel constants come after the conv
  const int64_t planes = g.N * g.C, rs = g.R * g.S;
  using Fn = void (*)(const ConvGeom&, const float*, const float*, float, float*);
  Fn fast = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    const int64_t nw = (g.Q + 15) / 16;
    if (dw_avx512() && g.S <= TapCols::kMax && nw <= 4)
      fast = nw == 1 ? dw_forward_avx512<1> : nw == 2 ? dw_forward_avx512<2> : nw == 3 ? dw_forward_avx512<3>
                                                                                        : dw_forward_avx512<4>;
  }
#pragma omp parallel for if (planes * g.pq() * rs > SAL_OMP_MIN_WORK) schedule(static)
  for (int64_t i = 0; i < planes; ++i) {
    const int64_t c = i % g.C;
    const T b = bias ? bias[c] : T(0);
    T* yp = y + i * g.pq();
    bool done = false;
    if constexpr (std::is_same_v<T, float>) {
      if (fast) {
        fast(g, x + i * g.hw(), w + c * rs, b, yp);
        done = true;
      }
    }
    if (!done) dw_forward_isa(g, x + i * g.hw(), w + c * rs, b, yp);
    // The plane is still in cache: the rest of the epilogue (a plain bias is already in).
    if (epi.beyond_bias()) {
      T center = T(0), scale = T(1), shift = T(0);
      if (epi.gamma) epi.channel(c, center, scale, shift);
      epilogue_row(yp, yp, g.pq(), center, scale, shift, epi.residual ? epi.residual + i * g.pq() : nullptr, epi.act);
    }
  }
}

template <class T>
void depthwise_dgrad(Ctx& ctx, const ConvGeom& g, const T* dy, const T* w, T* dx, const Gate<T>& gate) {
  const int64_t planes = g.N * g.C, rs = g.R * g.S;
  // With a gate, each dy plane is gated into this thread's plane buffer first.
  Scratch scratch(ctx);
  T* gated = gate.y ? scratch.get<T>(g.pq() * omp_get_max_threads()) : nullptr;
  using Fn = void (*)(const ConvGeom&, const float*, const float*, float*);
  Fn fast = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    const int64_t nw = (g.W + 15) / 16;
    if (dw_avx512() && g.sw == 1 && g.S <= TapCols::kMax && nw <= 4)
      fast = nw == 1 ? dw_dgrad_avx512<1> : nw == 2 ? dw_dgrad_avx512<2> : nw == 3 ? dw_dgrad_avx512<3>
                                                                                    : dw_dgrad_avx512<4>;
  }
#pragma omp parallel for if (planes * g.pq() * rs > SAL_OMP_MIN_WORK) schedule(static)
  for (int64_t i = 0; i < planes; ++i) {
    const T* dyp = dy + i * g.pq();
    if (gated) {
      T* buf = gated + omp_get_thread_num() * g.pq();
      gate_row(dyp, gate.y + i * g.pq(), buf, g.pq(), gate.scale(i % g.C), gate.act);
      dyp = buf;
    }
    if constexpr (std::is_same_v<T, float>) {
      if (fast) {
        fast(g, dyp, w + (i % g.C) * rs, dx + i * g.hw());
        continue;
      }
    }
    dw_dgrad_isa(g, dyp, w + (i % g.C) * rs, dx + i * g.hw());
  }
}

template <class T>
void depthwise_wgrad(Ctx& ctx, const ConvGeom& g, const T* dy, const T* x, T* dw) {
  const int64_t rs = g.R * g.S, acc_size = rs * g.Q;
  const int threads = omp_get_max_threads();
  Scratch scratch(ctx);
  T* acc_buf = scratch.get<T>(acc_size * threads);
#pragma omp parallel for if (g.N * g.C * g.pq() * rs > SAL_OMP_MIN_WORK) schedule(static)
  for (int64_t c = 0; c < g.C; ++c) {
    T* acc = acc_buf + omp_get_thread_num() * acc_size;
    std::fill(acc, acc + acc_size, T(0));
    for (int64_t n = 0; n < g.N; ++n)
      dw_wgrad_isa(g, dy + (n * g.C + c) * g.pq(), x + (n * g.C + c) * g.hw(), acc);
    for (int64_t k = 0; k < rs; ++k) {
      T sum = 0;
      for (int64_t q = 0; q < g.Q; ++q) sum += acc[k * g.Q + q];
      dw[c * rs + k] += sum;
    }
  }
}

// ---------------------------------------------------------------- direct 3x3 (engine/cpu/conv_direct.h)

// Image n of the pass's input as its kernel reads it, into dst: the forward at stride 2 splits each plane into
// its four phases; the input gradient of conv2d_dgrad_bn_act gates dy (gate_row, the order of its two ops, so
// that the result is bit-equal to them). Done per image or per chunk right before the kernel, so the prepared
// input is read back from cache instead of being a tensor of its own written to and read from memory.
struct DirectInput {
  const ConvGeom& g;
  Direct3x3Pass pass;
  const float* in;
  const Gate<float>& gate;
  int64_t cin() const { return pass == Direct3x3Pass::forward ? g.C : g.K; }
  int64_t plane() const { return pass == Direct3x3Pass::forward ? g.hw() : g.pq(); }
  int64_t image() const { return cin() * plane(); }
  bool split() const { return direct3x3_splits_input(g, pass); }
  bool prepared() const { return split() || gate.y; }
  // Plane i = n * cin + c of the input -> dst (the same plane of a buffer).
  void plane_to(int64_t i, float* dst) const {
    const int64_t at = i * plane();
    if (split()) direct3x3_split_plane(g, in + at, dst);
    else gate_row(in + at, gate.y + at, dst, plane(), gate.scale(i % cin()), gate.act);
  }
  void images_to(int64_t n0, int64_t nimg, float* dst) const {
    for (int64_t i = 0; i < nimg * cin(); ++i) plane_to(n0 * cin() + i, dst + i * plane());
  }
};

// out = epi(pass of the conv) by the direct kernel: the forward (in = x, out = y) or the input gradient
// (in = dy, gated when gate.y, out = dx). Tasks of (image, block of 8 output channels) over the threads; each
// block's planes get the epilogue right after the kernel wrote them (32 KB at most, still in cache), in the
// order of epilogue_rows.
void direct_run(Ctx& ctx, const ConvGeom& g, Direct3x3Pass pass, const float* in, const float* w,
                const Epilogue<float>& epi, float* out, const Gate<float>& gate = {}) {
  const bool fwd = pass == Direct3x3Pass::forward;
  const int64_t cout = fwd ? g.K : g.C, out_plane = fwd ? g.pq() : g.hw();
  const DirectInput src{g, pass, in, gate};
  Scratch scratch(ctx);
  float* wp = scratch.get<float>(direct3x3_packed_size(g, pass));
  direct3x3_pack(g, pass, w, wp);
  int32_t* masks = scratch.get<int32_t>(direct3x3_mask_count(g));
  direct3x3_masks(g, masks);
  const int64_t task_floats = direct3x3_task_scratch(g, pass), blocks = direct3x3_blocks(g, pass);
  const int threads = omp_get_max_threads();
  float* task_scratch = task_floats ? scratch.get<float>(task_floats * threads) : nullptr;
  // One task: image n's output channel block kb from that image's (prepared) input.
  auto task = [&](int64_t n, int64_t kb, const float* in_n) {
    float* ts = task_scratch ? task_scratch + omp_get_thread_num() * task_floats : nullptr;
    direct3x3_block(g, pass, masks, in_n, wp, kb, out + n * cout * out_plane, ts);
    if (epi.any()) {
      const int64_t k0 = kb * kDirectBlockK, kn = std::min(kDirectBlockK, cout - k0);
      const int64_t off = (n * cout + k0) * out_plane;
      epilogue_rows(out + off, k0, kn, out_plane, epi, epi.residual ? epi.residual + off : nullptr, false);
    }
  };
  const int64_t image = src.image();
  if (!src.prepared()) {
#pragma omp parallel for collapse(2) schedule(static) if (g.N * blocks > 1)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t kb = 0; kb < blocks; ++kb) task(n, kb, in + n * image);
  } else if (g.N >= 2 * threads) {
    // Enough images to share out whole: each thread prepares an image into its own buffer, which stays in
    // cache for all of the image's blocks (splitting the whole batch first costs a write and a re-read of
    // the batch's input: 15% of CIFAR's 16 -> 32 layer).
    float* buf = scratch.get<float>(image * threads);
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < g.N; ++n) {
      float* xn = buf + omp_get_thread_num() * image;
      src.images_to(n, 1, xn);
      for (int64_t kb = 0; kb < blocks; ++kb) task(n, kb, xn);
    }
  } else {
    float* buf = scratch.get<float>(g.N * image);
    const int64_t planes = g.N * src.cin();
#pragma omp parallel for if (g.N * image > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t i = 0; i < planes; ++i) src.plane_to(i, buf + i * src.plane());
#pragma omp parallel for collapse(2) schedule(static) if (g.N * blocks > 1)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t kb = 0; kb < blocks; ++kb) task(n, kb, buf + n * image);
  }
}

// out = epi(pass of the conv) by Winograd F(2x2, 3x3) (conv_winograd.h): chunks of whole images over the
// threads, a gated chunk's dy gated into the thread's buffer first, each chunk's output planes getting the
// epilogue right after its output transform wrote them.
void winograd_run(Ctx& ctx, const ConvGeom& g, Direct3x3Pass pass, const float* in, const float* w,
                  const Epilogue<float>& epi, float* out, const Gate<float>& gate = {}) {
  const int64_t cout = pass == Direct3x3Pass::forward ? g.K : g.C, plane = g.pq();
  const DirectInput src{g, pass, in, gate};
  Scratch scratch(ctx);
  float* U = scratch.get<float>(winograd_packed_size(g, pass));
  winograd_pack(g, pass, w, U);
  const int64_t per_task = winograd_task_scratch(g, pass), step = winograd_chunk_images(g);
  const int64_t chunks = (g.N + step - 1) / step, gated_floats = gate.y ? step * src.image() : 0;
  float* task_scratch = scratch.get<float>((per_task + gated_floats) * omp_get_max_threads());
#pragma omp parallel for schedule(static)
  for (int64_t ci = 0; ci < chunks; ++ci) {
    const int64_t n0 = ci * step, nimg = std::min(step, g.N - n0);
    float* ts = task_scratch + omp_get_thread_num() * (per_task + gated_floats);
    const float* chunk_in = in + n0 * src.image();
    if (gate.y) {
      src.images_to(n0, nimg, ts + per_task);
      chunk_in = ts + per_task;
    }
    float* chunk_out = out + n0 * cout * plane;
    winograd_chunk(g, pass, U, chunk_in, nimg, chunk_out, ts);
    if (epi.any())
      for (int64_t n = n0; n < n0 + nimg; ++n) {
        const int64_t off = n * cout * plane;
        epilogue_rows(out + off, 0, cout, plane, epi, epi.residual ? epi.residual + off : nullptr, false);
      }
  }
}

// The input gradient by Winograd where it applies, else by the direct kernel (conv_direct.h: the flipped
// kernel at stride 1, the four phases at stride 2), the gate applied per image or chunk as the kernels read
// dy. Returns false where neither applies.
bool direct_dgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* w, float* dx, const Gate<float>& gate) {
  if (!direct3x3_applies(g)) return false;
  const Epilogue<float> none{};
  if (winograd_applies(g, omp_get_max_threads())) winograd_run(ctx, g, Direct3x3Pass::dgrad, dy, w, none, dx, gate);
  else direct_run(ctx, g, Direct3x3Pass::dgrad, dy, w, none, dx, gate);
  return true;
}

// ---------------------------------------------------------------- GEMM paths

// The epilogue of a narrow GEMM's finished rows (NarrowRowsDone): channels k0 + [m0, m0 + rows) of one
// image's group, rows of y (and of the residual) pq apart.
struct NarrowEpilogue {
  float* y;
  const float* res;
  int64_t k0, pq;
  const Epilogue<float>* epi;
  static void apply(const void* p, int64_t m0, int64_t rows) {
    const NarrowEpilogue& e = *static_cast<const NarrowEpilogue*>(p);
    epilogue_rows(e.y + m0 * e.pq, e.k0 + m0, rows, e.pq, *e.epi, e.res ? e.res + m0 * e.pq : nullptr, false);
  }
};

// y = epi(conv(x, w)): the bias, or a frozen batch norm, then the residual and the activation (Epilogue)
template <class T>
void conv_forward(Ctx& ctx, const ConvGeom& g, const T* x, const T* w, const Epilogue<T>& epi, T* y) {
  if (g.N == 0 || g.K == 0 || g.pq() == 0) return;
  if (g.depthwise()) return depthwise_forward(g, x, w, epi, y);
  if constexpr (std::is_same_v<T, float>) {
    if (winograd_applies(g, omp_get_max_threads())) return winograd_run(ctx, g, Direct3x3Pass::forward, x, w, epi, y);
    if (direct3x3_applies(g)) return direct_run(ctx, g, Direct3x3Pass::forward, x, w, epi, y);
  }
  const Plan pl = make_plan(g);
  const bool pointwise = g.pointwise();
  const int64_t crs = g.crs(), pq = g.pq();
  // Single images through gemm_narrow (7x7 planes and smaller: see gemm_narrow.h).
  const bool narrow = std::is_same_v<T, float> && pl.B == 1 && gemm_narrow_applies(pq);
  Scratch scratch(ctx);
  const ChunkBuffers<T> bufs(scratch, g, pl, false, narrow ? gemm_narrow_pack_size(pq, crs) : 0);

  for_chunks(pl, [&](int64_t ci, int worker, bool par) {
    T* col = bufs.col(worker);
    T* tmp = bufs.tmp(worker);
    const int64_t n0 = ci * pl.B, nb = std::min(pl.B, g.N - n0), cols = nb * pq;
    for (int64_t gi = 0; gi < g.G; ++gi) {
      const T* xg = x + (n0 * g.C + gi * g.Cg) * g.hw();
      const T* wg = w + gi * g.Kg * crs;
      const int64_t yoff = (n0 * g.K + gi * g.Kg) * pq;
      T* yg = y + yoff;
      const T* rg = epi.residual ? epi.residual + yoff : nullptr;
      const T* bmat = xg;
      int64_t ldb = pq;
      if (!(pointwise && nb == 1)) {
        im2col(g, xg, nb, col, cols, par);
        bmat = col, ldb = cols;
      }
      if constexpr (std::is_same_v<T, float>) {
        if (narrow) {
          const NarrowEpilogue ne{yg, rg, gi * g.Kg, pq, &epi};
          const NarrowRowsDone done = epi.any() ? NarrowRowsDone{&NarrowEpilogue::apply, &ne} : NarrowRowsDone{};
          gemm_narrow(g.Kg, cols, crs, wg, crs, bmat, ldb, yg, pq, bufs.pack(worker), par, done);
          continue;
        }
      }
      if (nb == 1) {
        gemm_parallel<T>(false, false, g.Kg, cols, crs, T(1), wg, crs, bmat, ldb, T(0), yg, pq);
        if (epi.any()) epilogue_rows(yg, gi * g.Kg, g.Kg, pq, epi, rg, par);
      } else {
        gemm_parallel<T>(false, false, g.Kg, cols, crs, T(1), wg, crs, bmat, ldb, T(0), tmp, cols);
        scatter_images(tmp, nb, gi * g.Kg, g.Kg, pq, yg, g.K * pq, epi, rg, par);
      }
    }
  });
}

// dx = conv's input-gradient of gate(dy) (overwritten; no gate: of dy)
template <class T>
void conv_dgrad(Ctx& ctx, const ConvGeom& g, const T* dy, const T* w, T* dx, const Gate<T>& gate = {}) {
  if (g.N == 0 || g.C == 0 || g.hw() == 0) return;
  if (g.K == 0 || g.pq() == 0) {
    std::fill(dx, dx + g.N * g.C * g.hw(), T(0));
    return;
  }
  if (g.depthwise()) return depthwise_dgrad(ctx, g, dy, w, dx, gate);
  if constexpr (std::is_same_v<T, float>) {
    if (direct_dgrad(ctx, g, dy, w, dx, gate)) return;
  }
  const Plan pl = make_plan(g);
  const bool pointwise = g.pointwise();
  const int64_t crs = g.crs(), pq = g.pq();
  Scratch scratch(ctx);
  const ChunkBuffers<T> bufs(scratch, g, pl, /*tmp_always=*/gate.y != nullptr);

  for_chunks(pl, [&](int64_t ci, int worker, bool par) {
    T* col = bufs.col(worker);
    T* tmp = bufs.tmp(worker);
    const int64_t n0 = ci * pl.B, nb = std::min(pl.B, g.N - n0), cols = nb * pq;
    const bool direct = pointwise && nb == 1;
    for (int64_t gi = 0; gi < g.G; ++gi) {
      const T* dyg = dy + (n0 * g.K + gi * g.Kg) * pq;
      const T* wg = w + gi * g.Kg * crs;
      T* dxg = dx + (n0 * g.C + gi * g.Cg) * g.hw();
      const T* dmat = dyg;
      int64_t ld = pq;
      if (nb > 1 || gate.y) {  // gathered (and gated) into tmp, still in cache for the GEMM
        const T* yg = gate.y ? gate.y + (n0 * g.K + gi * g.Kg) * pq : nullptr;
        gather_images(dyg, nb, gi * g.Kg, g.Kg, pq, g.K * pq, gate, yg, tmp, par);
        dmat = tmp, ld = cols;
      }
      if (direct) {
        gemm_parallel<T>(true, false, crs, cols, g.Kg, T(1), wg, crs, dmat, ld, T(0), dxg, pq);
      } else {
        gemm_parallel<T>(true, false, crs, cols, g.Kg, T(1), wg, crs, dmat, ld, T(0), col, cols);
        col2im(g, col, cols, nb, dxg, par);
      }
    }
  });
}

// dw += conv's weight-gradient of (dy, x)
template <class T>
void conv_wgrad(Ctx& ctx, const ConvGeom& g, const T* dy, const T* x, T* dw) {
  if (g.N == 0 || g.K == 0 || g.pq() == 0 || g.crs() == 0) return;
  if (g.depthwise()) return depthwise_wgrad(ctx, g, dy, x, dw);
  Plan pl = make_plan(g);
  const bool pointwise = g.pointwise();
  const int64_t crs = g.crs(), pq = g.pq(), dw_size = g.K * crs;
  Scratch scratch(ctx);
  const ChunkBuffers<T> bufs(scratch, g, pl);
  // Threads other than 0 accumulate into private copies of dW, summed into dw at the end.
  T* priv = scratch.get<T>(dw_size * (bufs.workers - 1));

  auto chunk = [&](int64_t ci, int worker, bool par) {
    T* col = bufs.col(worker);
    T* tmp = bufs.tmp(worker);
    T* acc = worker == 0 ? dw : priv + (worker - 1) * dw_size;
    const int64_t n0 = ci * pl.B, nb = std::min(pl.B, g.N - n0), cols = nb * pq;
    for (int64_t gi = 0; gi < g.G; ++gi) {
      const T* xg = x + (n0 * g.C + gi * g.Cg) * g.hw();
      const T* dyg = dy + (n0 * g.K + gi * g.Kg) * pq;
      const T* bmat = xg;
      int64_t ldb = pq;
      if (!(pointwise && nb == 1)) {
        im2col(g, xg, nb, col, cols, par);
        bmat = col, ldb = cols;
      }
      const T* dmat = dyg;
      int64_t ld = pq;
      if (nb > 1) {
        gather_images<T>(dyg, nb, gi * g.Kg, g.Kg, pq, g.K * pq, Gate<T>{}, nullptr, tmp, par);
        dmat = tmp, ld = cols;
      }
      gemm_parallel<T>(false, true, g.Kg, crs, cols, T(1), dmat, ld, bmat, ldb, T(1), acc + gi * g.Kg * crs, crs);
    }
  };

  if (!pl.per_thread) {
    for_chunks(pl, chunk);
    return;
  }
  int team = 1;
#pragma omp parallel num_threads(pl.threads)
  {
    const int tid = omp_get_thread_num();
    if (tid == 0) team = omp_get_num_threads();
    if (tid > 0) std::fill(priv + (tid - 1) * dw_size, priv + tid * dw_size, T(0));
#pragma omp for schedule(static)
    for (int64_t ci = 0; ci < pl.chunks; ++ci) chunk(ci, tid, false);
    // The implicit barrier above: every private copy is complete here.
#pragma omp for schedule(static)
    for (int64_t i = 0; i < dw_size; ++i) {
      T s = 0;
      for (int t = 1; t < team; ++t) s += priv[(t - 1) * dw_size + i];
      dw[i] += s;
    }
  }
}

// y[n][k][:] += bias[k]
template <class T>
void add_bias_planes(T* y, int64_t n, int64_t k, int64_t len, const T* bias) {
#pragma omp parallel for if (n * k * len > SAL_OMP_MIN_WORK) schedule(static)
  for (int64_t i = 0; i < n * k; ++i) {
    const T v = bias[i % k];
    T* r = y + i * len;
    for (int64_t j = 0; j < len; ++j) r[j] += v;
  }
}

template <class T>
const T* ptr_or_null(const Tensor* t) {
  return t ? t->data<T>() : nullptr;
}

}  // namespace

// ---------------------------------------------------------------- conv2d

void conv2d(Ctx& ctx, const Tensor& x, const Tensor& w, const Tensor* b, const Conv2dArgs& a, Tensor& y) {
  const ConvGeom g = conv_geom(x.shape(), w.shape(), y.shape(), a);
  dispatch_float(x.dtype(), "conv2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    conv_forward<T>(ctx, g, x.data<T>(), w.data<T>(), Epilogue<T>{ptr_or_null<T>(b)}, y.data<T>());
  });
}

void conv2d_bn_act(Ctx& ctx, const Tensor& x, const Tensor& w, const ConvBn& bn, const Tensor* residual, Activation act,
                   const Conv2dArgs& a, Tensor& y) {
  const ConvGeom g = conv_geom(x.shape(), w.shape(), y.shape(), a);
  dispatch_float(x.dtype(), "conv2d_bn_act", [&](auto tag) {
    using T = typename decltype(tag)::type;
    Epilogue<T> epi;
    epi.gamma = bn.gamma->data<T>(), epi.beta = bn.beta->data<T>(), epi.mean = bn.mean->data<T>();
    epi.var = bn.var->data<T>(), epi.eps = bn.eps;
    epi.residual = ptr_or_null<T>(residual), epi.act = act;
    conv_forward<T>(ctx, g, x.data<T>(), w.data<T>(), epi, y.data<T>());
  });
}

void conv2d_dgrad(Ctx& ctx, const Tensor& dy, const Tensor& w, const Conv2dArgs& a, Tensor& dx) {
  const ConvGeom g = conv_geom(dx.shape(), w.shape(), dy.shape(), a);
  dispatch_float(dy.dtype(), "conv2d_dgrad", [&](auto tag) {
    using T = typename decltype(tag)::type;
    conv_dgrad<T>(ctx, g, dy.data<T>(), w.data<T>(), dx.data<T>());
  });
}

void conv2d_dgrad_bn_act(Ctx& ctx, const Tensor& dy, const Tensor& w, const ConvBnGate& gate, const Conv2dArgs& a,
                         Tensor& dx) {
  const ConvGeom g = conv_geom(dx.shape(), w.shape(), dy.shape(), a);
  dispatch_float(dy.dtype(), "conv2d_dgrad_bn_act", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Gate<T> gt{gate.y->data<T>(), gate.gamma->data<T>(), gate.var->data<T>(), gate.eps, gate.act};
    conv_dgrad<T>(ctx, g, dy.data<T>(), w.data<T>(), dx.data<T>(), gt);
  });
}

void conv2d_wgrad(Ctx& ctx, const Tensor& dy, const Tensor& x, const Conv2dArgs& a, Tensor& dw, Tensor* db) {
  const ConvGeom g = conv_geom(x.shape(), dw.shape(), dy.shape(), a);
  dispatch_float(dy.dtype(), "conv2d_wgrad", [&](auto tag) {
    using T = typename decltype(tag)::type;
    conv_wgrad<T>(ctx, g, dy.data<T>(), x.data<T>(), dw.data<T>());
    if (db) bias_grad<T>(dy.data<T>(), g.N, g.K, g.pq(), db->data<T>());
  });
}

// ---------------------------------------------------------------- conv_transpose2d

void conv_transpose2d(Ctx& ctx, const Tensor& x, const Tensor& w, const Tensor* b, const ConvTranspose2dArgs& a,
                      Tensor& y) {
  const ConvGeom g = transpose_geom(x.shape(), w.shape(), y.shape(), a);
  dispatch_float(x.dtype(), "conv_transpose2d", [&](auto tag) {
    using T = typename decltype(tag)::type;
    conv_dgrad<T>(ctx, g, x.data<T>(), w.data<T>(), y.data<T>());
    if (b) add_bias_planes<T>(y.data<T>(), g.N, g.C, g.hw(), b->data<T>());
  });
}

void conv_transpose2d_dgrad(Ctx& ctx, const Tensor& dy, const Tensor& w, const ConvTranspose2dArgs& a,
                            Tensor& dx) {
  const ConvGeom g = transpose_geom(dx.shape(), w.shape(), dy.shape(), a);
  dispatch_float(dy.dtype(), "conv_transpose2d_dgrad", [&](auto tag) {
    using T = typename decltype(tag)::type;
    conv_forward<T>(ctx, g, dy.data<T>(), w.data<T>(), Epilogue<T>{}, dx.data<T>());
  });
}

void conv_transpose2d_wgrad(Ctx& ctx, const Tensor& dy, const Tensor& x, const ConvTranspose2dArgs& a, Tensor& dw,
                            Tensor* db) {
  const ConvGeom g = transpose_geom(x.shape(), dw.shape(), dy.shape(), a);
  dispatch_float(dy.dtype(), "conv_transpose2d_wgrad", [&](auto tag) {
    using T = typename decltype(tag)::type;
    // In the conv2d view, dy is the input image and x the output gradient.
    conv_wgrad<T>(ctx, g, x.data<T>(), dy.data<T>(), dw.data<T>());
    if (db) bias_grad<T>(dy.data<T>(), g.N, g.C, g.hw(), db->data<T>());
  });
}

// ---------------------------------------------------------------- linear
// One GEMM each, split over threads by gemm_parallel: y = x w^T, dx = dy w, dw += dy^T x.

void linear(Ctx&, const Tensor& x, const Tensor& w, const Tensor* b, Tensor& y) {
  const int64_t n = x.dim(0), k = x.dim(1), m = w.dim(0);
  dispatch_float(x.dtype(), "linear", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* out = y.data<T>();
    gemm_parallel<T>(false, true, n, m, k, T(1), x.data<T>(), k, w.data<T>(), k, T(0), out, m);
    if (b) {
      const T* bias = b->data<T>();
#pragma omp parallel for if (n * m > SAL_OMP_MIN_WORK) schedule(static)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < m; ++j) out[i * m + j] += bias[j];
    }
  });
}

void linear_dgrad(Ctx&, const Tensor& dy, const Tensor& w, Tensor& dx) {
  const int64_t n = dy.dim(0), m = dy.dim(1), k = w.dim(1);
  dispatch_float(dy.dtype(), "linear_dgrad", [&](auto tag) {
    using T = typename decltype(tag)::type;
    gemm_parallel<T>(false, false, n, k, m, T(1), dy.data<T>(), m, w.data<T>(), k, T(0), dx.data<T>(), k);
  });
}

void linear_wgrad(Ctx&, const Tensor& dy, const Tensor& x, Tensor& dw, Tensor* db) {
  const int64_t n = dy.dim(0), m = dy.dim(1), k = x.dim(1);
  dispatch_float(dy.dtype(), "linear_wgrad", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = dy.data<T>();
    gemm_parallel<T>(true, false, m, k, n, T(1), g, m, x.data<T>(), k, T(1), dw.data<T>(), k);
    if (db) {
      T* d = db->data<T>();
      // Column sums of dy [N, M]: threads take column blocks, rows are read contiguously.
#pragma omp parallel for if (n * m > SAL_OMP_MIN_WORK) schedule(static)
      for (int64_t j0 = 0; j0 < m; j0 += 64) {
        const int64_t j1 = std::min(m, j0 + 64);
        T acc[64] = {};
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = j0; j < j1; ++j) acc[j - j0] += g[i * m + j];
        for (int64_t j = j0; j < j1; ++j) d[j] += acc[j - j0];
      }
    }
  });
}

}  // namespace sal::cpu
