// Op API: random tensors (counter-based, the same numbers on every backend). Validation and dispatch.
#include "engine/cpu/random.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#ifdef SAL_WITH_CUDA
#include "cuda/random.h"
#endif

namespace sal {

namespace {
uint64_t seed_of(const int32_t* words) {
  return static_cast<uint64_t>(static_cast<uint32_t>(words[0])) |
         (static_cast<uint64_t>(static_cast<uint32_t>(words[1])) << 32);
}
}  // namespace

using namespace detail;

Tensor random_normal(Ctx& ctx, const Shape& shape, DType dtype, uint64_t seed) {
  const char* op = "random_normal";
  SAL_CHECK(dtype == DType::F32 || dtype == DType::F64, op, ": dtype must be f32 or f64, got ", dtype_name(dtype));
  Tensor y = ctx.alloc(shape, dtype);
  check_float(op, ctx, {&y});
  SAL_BACKEND(ctx, op, cuda::random_normal(ctx, seed, nullptr, y), cpu::random_normal(ctx, seed, y));
  return y;
}

Tensor random_normal(Ctx& ctx, const Shape& shape, DType dtype, const Tensor& seed) {
  const char* op = "random_normal";
  SAL_CHECK(dtype == DType::F32 || dtype == DType::F64, op, ": dtype must be f32 or f64, got ", dtype_name(dtype));
  SAL_CHECK(seed.dtype() == DType::I32 && seed.shape() == Shape{2}, op, ": the seed tensor must be i32[2], got ",
            seed.desc());
  check_device(op, ctx, {&seed});
  Tensor y = ctx.alloc(shape, dtype);
  check_float(op, ctx, {&y});
  SAL_BACKEND(ctx, op, cuda::random_normal(ctx, 0, seed.data<int32_t>(), y),
              cpu::random_normal(ctx, seed_of(seed.data<int32_t>()), y));
  return y;
}

Tensor seed_tensor(uint64_t seed) {
  return Tensor::from_labels({static_cast<int32_t>(static_cast<uint32_t>(seed)),
                              static_cast<int32_t>(static_cast<uint32_t>(seed >> 32))});
}

}  // namespace sal
