// Op API: random tensors (counter-based, the same numbers on every backend). Validation and dispatch.
#include "engine/cpu/random.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#ifdef SAL_WITH_CUDA
#include "cuda/random.h"
#endif

namespace sal {

using namespace detail;

Tensor random_normal(Ctx& ctx, const Shape& shape, DType dtype, uint64_t seed) {
  const char* op = "random_normal";
  SAL_CHECK(dtype == DType::F32 || dtype == DType::F64, op, ": dtype must be f32 or f64, got ", dtype_name(dtype));
  Tensor y = ctx.alloc(shape, dtype);
  check_float(op, ctx, {&y});
  SAL_BACKEND(ctx, op, cuda::random_normal(ctx, seed, y), cpu::random_normal(ctx, seed, y));
  return y;
}

}  // namespace sal
