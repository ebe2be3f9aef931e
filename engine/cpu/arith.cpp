// CPU kernels: NumPy-broadcasting add/sub/mul, scale, axpy, sum_to (the backward of
// broadcasting), sum/mean, channel concat/slice, and embedding lookup and its backward.
//
// Broadcasting: a, b: any shapes (<= kMaxDims, right-aligned) -> y: broadcast shape.
// Every operand is contiguous row-major, so an operand's stride in an output dimension is the
// product of its extents to the right, or 0 where it is broadcast. Dimensions of extent 1 are
// dropped and neighbouring dimensions that are contiguous in every operand are merged. After
// that the common patterns are one or two dimensions:
//   equal shapes                       -> [n]               one flat loop;
//   [N,C,H,W] x [N,C,1,1] (filter)     -> [N*C, H*W]        each row times one scalar;
//   [N,C,H,W] x [N,1,H,W] (blend mask) -> [N, C, H*W]       each row times a contiguous row;
// so the kernel is "rows of the last merged dimension" with three contiguous inner loops (both
// operands contiguous, a scalar on the left, a scalar on the right) that the compiler
// vectorises. Rows are split into chunks so a few long rows still spread over the threads.
//
// sum_to uses the same merging, with x as the "output" and y's strides 0 on reduced dimensions.
// If the last merged dimension is kept (e.g. [N,C,H,W] -> [N,1,H,W]) each task adds the
// reduced slices of a chunk of an output row into a small double accumulator on the stack; if
// it is reduced (e.g. [N,C,H,W] -> [N,C,1,1] or [1,C,1,1]) each output is a sum of contiguous
// runs, taken in double, in parallel over outputs or, when there are few outputs, inside each.
// sum and mean accumulate in double whatever the input type, so f32 sums of large tensors do
// not lose the small terms.
#include "engine/cpu/arith.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "engine/broadcast.h"
#include "engine/cpu/dispatch.h"

namespace sal::cpu {

namespace {

constexpr int64_t kChunk = 4096;     // elements of a row per elementwise task
constexpr int64_t kAccChunk = 256;   // doubles of the stack accumulator in sum_to

// Broadcast geometry (dims merged, operand strides): engine/broadcast.h, shared with CUDA.
using broadcast::collapse;
using broadcast::Dims;  // sum_to's kept / reduced dimensions
using broadcast::Geometry;
using broadcast::split_outer;

// Offsets of the two operands at row r of the dimensions [0, k) (the last is fastest).
inline void row_offsets(const Geometry& g, int k, int64_t r, int64_t& oa, int64_t& ob) {
  oa = 0;
  ob = 0;
  for (int d = k - 1; d >= 0; --d) {
    const int64_t i = r % g.dim[d];
    r /= g.dim[d];
    oa += i * g.sa[d];
    ob += i * g.sb[d];
  }
}

template <class T, class F>
void broadcast_binary(const Tensor& A, const Tensor& B, Tensor& Y, F f) {
  const int64_t n = Y.numel();
  if (n == 0) return;
  const Geometry g = collapse(Y.shape(), A.shape(), B.shape());
  const T* a = A.data<T>();
  const T* b = B.data<T>();
  T* y = Y.data<T>();
  const int k = g.nd - 1;
  const int64_t inner = g.dim[k];
  const int64_t rows = n / inner;
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
  const int64_t tasks = rows * chunks;
  const bool ca = g.sa[k] != 0, cb = g.sb[k] != 0;  // contiguous (stride 1) or scalar in the row
#pragma omp parallel for if (n > SAL_OMP_MIN_WORK) schedule(static)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t r = t / chunks, j0 = (t % chunks) * kChunk;
    const int64_t len = std::min(inner - j0, kChunk);
    int64_t oa, ob;
    row_offsets(g, k, r, oa, ob);
    const T* pa = a + oa + (ca ? j0 : 0);
    const T* pb = b + ob + (cb ? j0 : 0);
    T* py = y + r * inner + j0;
    if (ca && cb) {
      for (int64_t j = 0; j < len; ++j) py[j] = f(pa[j], pb[j]);
    } else if (ca) {
      const T s = pb[0];
      for (int64_t j = 0; j < len; ++j) py[j] = f(pa[j], s);
    } else if (cb) {
      const T s = pa[0];
      for (int64_t j = 0; j < len; ++j) py[j] = f(s, pb[j]);
    } else {
      const T v = f(pa[0], pb[0]);
      for (int64_t j = 0; j < len; ++j) py[j] = v;
    }
  }
}

template <class F>
void binary_op(const char* op, const Tensor& a, const Tensor& b, Tensor& y, F f) {
  dispatch_float(y.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    broadcast_binary<T>(a, b, y, [&](T u, T v) { return f(u, v); });
  });
}

// Sum of a contiguous run in double. Eight independent partial sums break the dependency chain
// of one accumulator (several times faster than a single running sum, and still deterministic).
template <class T>
inline double sum_run(const T* p, int64_t n) {
  double acc[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(p[j + k]);
  double tail = 0;
  for (; j < n; ++j) tail += static_cast<double>(p[j]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

template <class T>
void sum_to_impl(const Tensor& X, Tensor& Y) {
  const T* x = X.data<T>();
  T* y = Y.data<T>();
  const int64_t nx = X.numel(), ny = Y.numel();
  if (ny == 0) return;
  if (nx == 0) {
    std::fill_n(y, ny, T(0));
    return;
  }
  // "a" = x itself, "b" = y (stride 0 on the reduced dimensions).
  const Geometry g = collapse(X.shape(), X.shape(), Y.shape());
  const int k = g.nd - 1;
  const int64_t inner = g.dim[k];
  Dims kept, reduced;  // outer dimensions [0, k): x strides in .stride
  split_outer(g, kept, reduced);
  const int64_t nred = reduced.count();

  if (g.sb[k] != 0 || nx == ny) {
    // The last dimension is kept: y is [kept rows, inner]; add the reduced slices chunk by chunk.
    const int64_t rows = kept.count();
    const int64_t chunks = (inner + kAccChunk - 1) / kAccChunk;
#pragma omp parallel for if (nx > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t t = 0; t < rows * chunks; ++t) {
      const int64_t q = t / chunks, j0 = (t % chunks) * kAccChunk;
      const int64_t len = std::min(inner - j0, kAccChunk);
      double acc[kAccChunk];
      std::fill_n(acc, len, 0.0);
      const T* base = x + kept.offset(q) + j0;
      for (int64_t r = 0; r < nred; ++r) {
        const T* p = base + reduced.offset(r);
        for (int64_t j = 0; j < len; ++j) acc[j] += p[j];
      }
      T* py = y + q * inner + j0;
      for (int64_t j = 0; j < len; ++j) py[j] = static_cast<T>(acc[j]);
    }
    return;
  }

  // The last dimension is reduced: each output sums nred contiguous runs of `inner` elements.
  if (ny >= 2 * omp_get_max_threads()) {
#pragma omp parallel for if (nx > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t q = 0; q < ny; ++q) {
      const T* base = x + kept.offset(q);
      double s = 0;
      for (int64_t r = 0; r < nred; ++r) s += sum_run(base + reduced.offset(r), inner);
      y[q] = static_cast<T>(s);
    }
    return;
  }
  // Few outputs (a bias-like [1,C,1,1] or a full sum): parallel inside each output.
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
  for (int64_t q = 0; q < ny; ++q) {
    const T* base = x + kept.offset(q);
    double s = 0;
#pragma omp parallel for if (nx > SAL_OMP_MIN_WORK) schedule(static) reduction(+ : s)
    for (int64_t t = 0; t < nred * chunks; ++t) {
      const int64_t r = t / chunks, j0 = (t % chunks) * kChunk;
      const int64_t len = std::min(inner - j0, kChunk);
      s += sum_run(base + reduced.offset(r) + j0, len);
    }
    y[q] = static_cast<T>(s);
  }
}

template <class T>
double total(const Tensor& X) {
  const T* x = X.data<T>();
  const int64_t n = X.numel();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  double s = 0;
#pragma omp parallel for if (n > SAL_OMP_MIN_WORK) schedule(static) reduction(+ : s)
  for (int64_t t = 0; t < chunks; ++t) s += sum_run(x + t * kChunk, std::min(kChunk, n - t * kChunk));
  return s;
}

}  // namespace

// a, b -> y: broadcast shape
void add(Ctx&, const Tensor& a, const Tensor& b, Tensor& y) {
  binary_op("add", a, b, y, [](auto u, auto v) { return u + v; });
}
void sub(Ctx&, const Tensor& a, const Tensor& b, Tensor& y) {
  binary_op("sub", a, b, y, [](auto u, auto v) { return u - v; });
}
void mul(Ctx&, const Tensor& a, const Tensor& b, Tensor& y) {
  binary_op("mul", a, b, y, [](auto u, auto v) { return u * v; });
}

// x, y: same shape, flat loop
void scale(Ctx&, const Tensor& x, double alpha, Tensor& y) {
  dispatch_float(x.dtype(), "scale", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const T al = static_cast<T>(alpha);
    const int64_t n = x.numel();
#pragma omp parallel for if (n > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t i = 0; i < n; ++i) py[i] = al * px[i];
  });
}

void axpy(Ctx&, double alpha, const Tensor& x, Tensor& y) {
  dispatch_float(x.dtype(), "axpy", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* px = x.data<T>();
    T* py = y.data<T>();
    const T al = static_cast<T>(alpha);
    const int64_t n = x.numel();
#pragma omp parallel for if (n > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t i = 0; i < n; ++i) py[i] += al * px[i];
  });
}

// x: any shape -> y: a shape that broadcasts to x's
void sum_to(Ctx&, const Tensor& x, Tensor& y) {
  dispatch_float(x.dtype(), "sum_to", [&](auto tag) { sum_to_impl<typename decltype(tag)::type>(x, y); });
}

// x: any shape -> y: [1]
void sum(Ctx&, const Tensor& x, Tensor& y) {
  dispatch_float(x.dtype(), "sum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    y.data<T>()[0] = static_cast<T>(total<T>(x));
  });
}
void mean(Ctx&, const Tensor& x, Tensor& y) {
  dispatch_float(x.dtype(), "mean", [&](auto tag) {
    using T = typename decltype(tag)::type;
    y.data<T>()[0] = static_cast<T>(total<T>(x) / static_cast<double>(x.numel()));
  });
}

// xs[i]: [N,C_i,H,W] -> y: [N,sum C_i,H,W]; each (n, i) is one contiguous block of C_i*H*W.
void concat_channels(Ctx&, std::span<const Tensor> xs, Tensor& y) {
  const int64_t N = y.dim(0), HW = y.dim(2) * y.dim(3), Cy = y.dim(1);
  const size_t esz = dtype_size(y.dtype());
  std::vector<const char*> src(xs.size());
  std::vector<int64_t> cofs(xs.size() + 1, 0);
  for (size_t i = 0; i < xs.size(); ++i) {
    src[i] = static_cast<const char*>(xs[i].raw());
    cofs[i + 1] = cofs[i] + xs[i].dim(1);
  }
  char* dst = static_cast<char*>(y.raw());
  const int64_t ni = static_cast<int64_t>(xs.size());
#pragma omp parallel for if (y.numel() > SAL_OMP_MIN_WORK) schedule(static)
  for (int64_t t = 0; t < N * ni; ++t) {
    const int64_t n = t / ni, i = t % ni;
    const int64_t ci = cofs[i + 1] - cofs[i];
    std::memcpy(dst + static_cast<size_t>((n * Cy + cofs[i]) * HW) * esz, src[i] + static_cast<size_t>(n * ci * HW) * esz,
                static_cast<size_t>(ci * HW) * esz);
  }
}

// x: [N,C,H,W] -> y: [N,count,H,W], channels [begin, begin+count): one block per sample.
void slice_channels(Ctx&, const Tensor& x, int64_t begin, Tensor& y) {
  const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3), count = y.dim(1);
  const size_t esz = dtype_size(x.dtype());
  const char* src = static_cast<const char*>(x.raw());
  char* dst = static_cast<char*>(y.raw());
#pragma omp parallel for if (y.numel() > SAL_OMP_MIN_WORK) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    std::memcpy(dst + static_cast<size_t>(n * count * HW) * esz, src + static_cast<size_t>((n * C + begin) * HW) * esz,
                static_cast<size_t>(count * HW) * esz);
}

namespace {
void check_ids(const char* op, const Tensor& ids, int64_t V) {
  const int32_t* id = ids.data<int32_t>();
  for (int64_t n = 0; n < ids.numel(); ++n)
    SAL_CHECK(id[n] >= 0 && id[n] < V, op, ": ids[", n, "] = ", id[n], " is out of range for a table of ", V,
              " rows (expected 0 <= id < ", V, ")");
}
}  // namespace

// table: [V,D], ids: i32[N] -> y: [N,D]; rows are copied, in parallel over samples.
void embedding(Ctx&, const Tensor& table, const Tensor& ids, Tensor& y) {
  const int64_t V = table.dim(0), D = table.dim(1), N = ids.numel();
  check_ids("embedding", ids, V);
  const int32_t* id = ids.data<int32_t>();
  const size_t esz = dtype_size(table.dtype());
  const char* src = static_cast<const char*>(table.raw());
  char* dst = static_cast<char*>(y.raw());
#pragma omp parallel for if (N * D > SAL_OMP_MIN_WORK) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    std::memcpy(dst + static_cast<size_t>(n * D) * esz, src + static_cast<size_t>(id[n] * D) * esz,
                static_cast<size_t>(D) * esz);
}

// dy: [N,D], ids: i32[N], dtable: [V,D] += rows of dy. Duplicate ids add up; threads split the
// D columns (not the samples) so no two threads ever write the same element.
void embedding_backward(Ctx&, const Tensor& dy, const Tensor& ids, Tensor& dtable) {
  const int64_t V = dtable.dim(0), D = dtable.dim(1), N = ids.numel();
  check_ids("embedding_backward", ids, V);
  const int32_t* id = ids.data<int32_t>();
  constexpr int64_t kCols = 64;
  const int64_t blocks = (D + kCols - 1) / kCols;
  dispatch_float(dy.dtype(), "embedding_backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* g = dy.data<T>();
    T* dt = dtable.data<T>();
#pragma omp parallel for if (N * D > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t j0 = b * kCols, j1 = std::min(D, j0 + kCols);
      for (int64_t n = 0; n < N; ++n) {
        T* row = dt + id[n] * D;
        const T* src = g + n * D;
        for (int64_t j = j0; j < j1; ++j) row[j] += src[j];
      }
    }
  });
}

}  // namespace sal::cpu
