// Elementwise activations, forward and backward: one pass over contiguous memory, OpenMP over
// elements for large tensors. x, y, dy, dx: any shape, same shape.
#include "engine/cpu/activation.h"

#include <cmath>

#include "engine/cpu/dispatch.h"
#include "engine/cpu/keep_or_zero.h"

namespace sal::cpu {

namespace {

template <class Fn>
void unary(const char* op, const Tensor& x, Tensor& y, Fn fn) {
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* a = x.data<T>();
    T* out = y.data<T>();
    const int64_t n = x.numel();
#pragma omp parallel for if (n > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t i = 0; i < n; ++i) out[i] = fn(a[i]);
  });
}

template <class Fn>
void binary(const char* op, const Tensor& x1, const Tensor& x2, Tensor& y, Fn fn) {
  dispatch_float(x1.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* a = x1.data<T>();
    const T* b = x2.data<T>();
    T* out = y.data<T>();
    const int64_t n = x1.numel();
#pragma omp parallel for if (n > SAL_OMP_MIN_WORK) schedule(static)
    for (int64_t i = 0; i < n; ++i) out[i] = fn(a[i], b[i]);
  });
}

}  // namespace

void relu(Ctx&, const Tensor& x, Tensor& y) {
  unary("relu", x, y, [](auto v) { return v > 0 ? v : decltype(v)(0); });
}
void relu_backward(Ctx&, const Tensor& dy, const Tensor& y, Tensor& dx) {
  binary("relu_backward", dy, y, dx, [](auto g, auto v) { return keep_or_zero(v > 0, g); });
}
void relu6(Ctx&, const Tensor& x, Tensor& y) {
  unary("relu6", x, y, [](auto v) {
    using T = decltype(v);
    return v < T(0) ? T(0) : (v > T(6) ? T(6) : v);
  });
}
void relu6_backward(Ctx&, const Tensor& dy, const Tensor& x, Tensor& dx) {
  binary("relu6_backward", dy, x, dx, [](auto g, auto v) {
    using T = decltype(g);
    return keep_or_zero(v > T(0) && v < T(6), g);
  });
}
void sigmoid(Ctx&, const Tensor& x, Tensor& y) {
  unary("sigmoid", x, y, [](auto v) {
    using T = decltype(v);
    // Stable for large |v|: never exponentiates a large positive number.
    if (v >= T(0)) return T(1) / (T(1) + std::exp(-v));
    T e = std::exp(v);
    return e / (T(1) + e);
  });
}
void sigmoid_backward(Ctx&, const Tensor& dy, const Tensor& y, Tensor& dx) {
  binary("sigmoid_backward", dy, y, dx, [](auto g, auto s) { return g * s * (decltype(g)(1) - s); });
}

}  // namespace sal::cpu
