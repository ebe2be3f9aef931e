// CUDA kernel: normal random numbers from Philox4x32-10 (engine/philox.h), element-for-element the
// same sequence as engine/cpu/random.cpp (f32; up to the rounding of logf/sinf/cosf). Arguments are
// validated by engine/ops_random.cpp.
#pragma once
#include "engine/context.h"

namespace sal::cuda {

// -> y: any shape, f32 contiguous; y[i] = the i-th N(0,1) number of the seed: `seed`, or, when
// seed_words (device memory, {low, high} 32-bit words) is given, the seed read there by the kernel.
void random_normal(Ctx&, uint64_t seed, const int32_t* seed_words, Tensor& y);

}  // namespace sal::cuda
