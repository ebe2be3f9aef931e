// Op API: broadcasting arithmetic, reductions, channel concat/slice, embedding.
// Validation and dispatch only; the kernels are in engine/cpu/arith.cpp and cuda/arith.cu.
#include <algorithm>
#include <string>

#include "engine/cpu/arith.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#ifdef SAL_WITH_CUDA
#include "cuda/arith.h"
#endif

namespace sal {

using namespace detail;

namespace {

// NumPy broadcasting, dimensions aligned from the right; `op` names the caller in errors.
Shape broadcast_for(const char* op, const Shape& a, const Shape& b) {
  Shape out;
  out.nd = std::max(a.nd, b.nd);
  for (int i = 1; i <= out.nd; ++i) {
    const int64_t ea = i <= a.nd ? a.d[a.nd - i] : 1;
    const int64_t eb = i <= b.nd ? b.d[b.nd - i] : 1;
    SAL_CHECK(ea == eb || ea == 1 || eb == 1, op, ": shapes ", a.str(), " and ", b.str(),
              " do not broadcast: extents ", ea, " and ", eb, " at dimension ", -i,
              " (counted from the right) differ and neither is 1");
    out.d[out.nd - i] = ea == 1 ? eb : ea;
  }
  return out;
}

using BinaryFn = void (*)(Ctx&, const Tensor&, const Tensor&, Tensor&);

// The CUDA function of a family, or null in a build without CUDA (never called then).
#ifdef SAL_WITH_CUDA
#define CUDA_FN(f) cuda::f
#else
#define CUDA_FN(f) nullptr
#endif

Tensor binary(Ctx& ctx, const char* op, const Tensor& a, const Tensor& b, BinaryFn cpu_fn,
              [[maybe_unused]] BinaryFn cuda_fn) {
  SAL_CHECK(a.defined() && b.defined(), op, ": an operand is undefined");
  check_device(op, ctx, {&a, &b});
  const DType dt = check_float(op, ctx, {&a, &b});
  const Shape out = broadcast_for(op, a.shape(), b.shape());
  Tensor y = ctx.alloc(out, dt);
  SAL_BACKEND(ctx, op, cuda_fn(ctx, a, b, y), cpu_fn(ctx, a, b, y));
  return y;
}

void check_defined_float(const char* op, const Ctx& ctx, const Tensor& x) {
  SAL_CHECK(x.defined(), op, ": x is undefined");
  check_device(op, ctx, {&x});
  check_float(op, ctx, {&x});
}

}  // namespace

Shape broadcast_shape(const Shape& a, const Shape& b) { return broadcast_for("broadcast_shape", a, b); }

Tensor add(Ctx& ctx, const Tensor& a, const Tensor& b) { return binary(ctx, "add", a, b, cpu::add, CUDA_FN(add)); }
Tensor sub(Ctx& ctx, const Tensor& a, const Tensor& b) { return binary(ctx, "sub", a, b, cpu::sub, CUDA_FN(sub)); }
Tensor mul(Ctx& ctx, const Tensor& a, const Tensor& b) { return binary(ctx, "mul", a, b, cpu::mul, CUDA_FN(mul)); }

Tensor scale(Ctx& ctx, const Tensor& x, double alpha) {
  check_defined_float("scale", ctx, x);
  Tensor y = ctx.alloc(x.shape(), x.dtype());
  SAL_BACKEND(ctx, "scale", cuda::scale(ctx, x, alpha, y), cpu::scale(ctx, x, alpha, y));
  return y;
}

void axpy(Ctx& ctx, double alpha, const Tensor& x, Tensor& y) {
  SAL_CHECK(x.defined() && y.defined(), "axpy: x or y is undefined");
  check_device("axpy", ctx, {&x, &y});
  check_float("axpy", ctx, {&x, &y});
  check_shape("axpy", "x", x, y.shape());
  SAL_BACKEND(ctx, "axpy", cuda::axpy(ctx, alpha, x, y), cpu::axpy(ctx, alpha, x, y));
}

Tensor sum_to(Ctx& ctx, const Tensor& x, const Shape& shape) {
  check_defined_float("sum_to", ctx, x);
  bool ok = shape.nd <= x.ndim();
  for (int i = 1; ok && i <= shape.nd; ++i) {
    const int64_t e = shape.d[shape.nd - i];
    ok = e == 1 || e == x.shape().d[x.ndim() - i];
  }
  SAL_CHECK(ok, "sum_to: shape ", shape.str(), " does not broadcast to x's shape ", x.shape().str(),
            " (expected at most ", x.ndim(), " dimensions, each, aligned from the right, equal to x's or 1)");
  Tensor y = ctx.alloc(shape, x.dtype());
  SAL_BACKEND(ctx, "sum_to", cuda::sum_to(ctx, x, y), cpu::sum_to(ctx, x, y));
  return y;
}

Tensor sum(Ctx& ctx, const Tensor& x) {
  check_defined_float("sum", ctx, x);
  Tensor y = ctx.alloc(Shape{1}, x.dtype());
  SAL_BACKEND(ctx, "sum", cuda::sum(ctx, x, y), cpu::sum(ctx, x, y));
  return y;
}

Tensor mean(Ctx& ctx, const Tensor& x) {
  check_defined_float("mean", ctx, x);
  SAL_CHECK(x.numel() > 0, "mean: x ", x.desc(), " has no elements (the mean of nothing is undefined)");
  Tensor y = ctx.alloc(Shape{1}, x.dtype());
  SAL_BACKEND(ctx, "mean", cuda::mean(ctx, x, y), cpu::mean(ctx, x, y));
  return y;
}

Tensor concat_channels(Ctx& ctx, std::span<const Tensor> xs) {
  const char* op = "concat_channels";
  SAL_CHECK(!xs.empty(), op, ": no inputs (expected at least one [N,C,H,W] tensor)");
  const Tensor& x0 = xs[0];
  int64_t channels = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    const std::string what = cat("xs[", i, "]");
    check_ndim(op, what.c_str(), x, 4);
    check_device(op, ctx, {&x});
    check_float(op, ctx, {&x0, &x});
    SAL_CHECK(x.dim(0) == x0.dim(0) && x.dim(2) == x0.dim(2) && x.dim(3) == x0.dim(3), op, ": ", what, " is ",
              x.shape().str(), ", expected N,H,W = ", x0.dim(0), ",", x0.dim(2), ",", x0.dim(3), " as xs[0] ",
              x0.shape().str());
    channels += x.dim(1);
  }
  Tensor y = ctx.alloc(Shape{x0.dim(0), channels, x0.dim(2), x0.dim(3)}, x0.dtype());
  SAL_BACKEND(ctx, op, cuda::concat_channels(ctx, xs, y), cpu::concat_channels(ctx, xs, y));
  return y;
}

Tensor slice_channels(Ctx& ctx, const Tensor& x, int64_t begin, int64_t count) {
  const char* op = "slice_channels";
  check_ndim(op, "x", x, 4);
  check_device(op, ctx, {&x});
  check_float(op, ctx, {&x});
  SAL_CHECK(begin >= 0 && count >= 0 && begin + count <= x.dim(1), op, ": channels [", begin, ", ", begin + count,
            ") are not inside the ", x.dim(1), " channels of ", x.desc());
  Tensor y = ctx.alloc(Shape{x.dim(0), count, x.dim(2), x.dim(3)}, x.dtype());
  SAL_BACKEND(ctx, op, cuda::slice_channels(ctx, x, begin, y), cpu::slice_channels(ctx, x, begin, y));
  return y;
}

namespace {
void check_ids_tensor(const char* op, const Ctx& ctx, const Tensor& ids) {
  SAL_CHECK(ids.defined(), op, ": ids is undefined");
  check_device(op, ctx, {&ids});
  SAL_CHECK(ids.dtype() == DType::I32, op, ": ids must be i32, got ", ids.desc());
  check_ndim(op, "ids", ids, 1);
}
}  // namespace

Tensor embedding(Ctx& ctx, const Tensor& table, const Tensor& ids) {
  const char* op = "embedding";
  check_ndim(op, "table", table, 2);
  check_device(op, ctx, {&table});
  check_float(op, ctx, {&table});
  check_ids_tensor(op, ctx, ids);
  Tensor y = ctx.alloc(Shape{ids.dim(0), table.dim(1)}, table.dtype());
  // The CPU throws naming an id outside [0, V); CUDA writes NaN rows (see engine/ops.h).
  SAL_BACKEND(ctx, op, cuda::embedding(ctx, table, ids, y), cpu::embedding(ctx, table, ids, y));
  return y;
}

void embedding_backward(Ctx& ctx, const Tensor& dy, const Tensor& ids, Tensor& dtable) {
  const char* op = "embedding_backward";
  check_ndim(op, "dtable", dtable, 2);
  check_device(op, ctx, {&dy, &dtable});
  check_float(op, ctx, {&dy, &dtable});
  check_ids_tensor(op, ctx, ids);
  check_shape(op, "dy", dy, Shape{ids.dim(0), dtable.dim(1)});
  SAL_BACKEND(ctx, op, cuda::embedding_backward(ctx, dy, ids, dtable), cpu::embedding_backward(ctx, dy, ids, dtable));
}

}  // namespace sal
