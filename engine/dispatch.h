// Helpers for engine/ops_*.cpp: argument validation shared by both backends, and the
// device switch. Every message starts with the op's name.
#pragma once
#include <initializer_list>

#include "engine/context.h"
#include "engine/op_profile.h"

namespace sal::detail {

// Every defined tensor is on ctx.device (no silent copies between devices).
inline void check_device(const char* op, const Ctx& ctx, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (!t || !t->defined()) continue;
    SAL_CHECK(t->device() == ctx.device, op, ": tensor ", t->desc(), " is not on the context's device (",
              device_name(ctx.device), "); copy it explicitly with Tensor::to()");
  }
}

// Every defined tensor has the float dtype of the first one; F32 everywhere, F64 on the CPU.
inline DType check_float(const char* op, const Ctx& ctx, std::initializer_list<const Tensor*> ts) {
  DType dt = DType::F32;
  bool first = true;
  for (const Tensor* t : ts) {
    if (!t || !t->defined()) continue;
    if (first) {
      dt = t->dtype();
      first = false;
      SAL_CHECK(dt == DType::F32 || (dt == DType::F64 && ctx.device == Device::CPU), op, ": tensor ", t->desc(),
                " has an unsupported dtype (f32, or f64 on the CPU)");
    }
    SAL_CHECK(t->dtype() == dt, op, ": mixed dtypes (", t->desc(), " with ", dtype_name(dt), ")");
  }
  return dt;
}

inline void check_ndim(const char* op, const char* what, const Tensor& t, int nd) {
  SAL_CHECK(t.defined(), op, ": ", what, " is undefined");
  SAL_CHECK(t.ndim() == nd, op, ": ", what, " must have ", nd, " dimensions, got ", t.desc());
}

inline void check_shape(const char* op, const char* what, const Tensor& t, const Shape& want) {
  SAL_CHECK(t.defined(), op, ": ", what, " is undefined");
  SAL_CHECK(t.shape() == want, op, ": ", what, " has shape ", t.shape().str(), ", expected ", want.str());
}

inline void check_labels(const char* op, const Ctx& ctx, const Tensor& labels, int64_t n) {
  check_device(op, ctx, {&labels});
  SAL_CHECK(labels.dtype() == DType::I32, op, ": labels must be i32, got ", labels.desc());
  check_shape(op, "labels", labels, Shape{n});
}

[[noreturn]] inline void no_cuda_kernel(const char* op) {
  fail(op, ": the CUDA backend has no kernel for this op yet");
}

[[noreturn]] inline void no_cuda_build(const char* op) {
  fail(op, ": a CUDA context, but this build has no CUDA backend (configure with nvcc to enable it)");
}

}  // namespace sal::detail

// SAL_BACKEND(ctx, "op", cuda_call, cpu_call): runs cuda_call on a CUDA context and cpu_call on a
// CPU one. In a build without CUDA the cuda_call text is never compiled, and a CUDA context is
// an error. An ops_*.cpp includes its cuda/<family>.h under #ifdef SAL_WITH_CUDA.
// Each call is one op of engine/op_profile.h (timed when profiling is on).
#ifdef SAL_WITH_CUDA
#define SAL_BACKEND(ctx, op, cuda_call, cpu_call)            \
  do {                                                       \
    const ::sal::OpScope sal_op_scope_((ctx), (op));         \
    if ((ctx).device == ::sal::Device::CUDA) {               \
      cuda_call;                                             \
    } else {                                                 \
      cpu_call;                                              \
    }                                                        \
  } while (0)
#else
#define SAL_BACKEND(ctx, op, cuda_call, cpu_call)                           \
  do {                                                                      \
    if ((ctx).device == ::sal::Device::CUDA) ::sal::detail::no_cuda_build(op); \
    const ::sal::OpScope sal_op_scope_((ctx), (op));                        \
    cpu_call;                                                               \
  } while (0)
#endif
