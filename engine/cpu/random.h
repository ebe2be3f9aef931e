// CPU kernel: normal random numbers from Philox4x32-10 (engine/philox.h), element-for-element the
// same sequence as cuda/random.cu. Arguments are validated by engine/ops_random.cpp.
#pragma once
#include "engine/context.h"

namespace sal::cpu {

// -> y: any shape, f32 or f64; y[i] = the i-th N(0,1) number of `seed`
void random_normal(Ctx&, uint64_t seed, Tensor& y);

}  // namespace sal::cpu
