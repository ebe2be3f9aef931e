// CPU backend helpers: run a kernel template for the tensor's float type.
#pragma once
#include <type_traits>

#include "engine/tensor.h"

namespace sal::cpu {

template <class T>
struct TypeTag {
  using type = T;
};

// dispatch_float(dtype, op, [&](auto tag) { using T = typename decltype(tag)::type; ... });
template <class F>
void dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::F32: f(TypeTag<float>{}); return;
    case DType::F64: f(TypeTag<double>{}); return;
    default: fail(op, ": the CPU backend computes in f32 or f64, got ", dtype_name(dt));
  }
}

}  // namespace sal::cpu

// Loops over more than this many elements run with OpenMP threads.
#define SAL_OMP_MIN_WORK 16384
