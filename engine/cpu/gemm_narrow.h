// CPU backend: C = A * B for a narrow B (at most 64 columns), without packing A. The convolution forward on
// 7x7 planes runs this: a 1x1 conv takes one image at a time whatever the batch (conv.cpp's plan), and at
// batch 1 a 3x3 one does too, so the GEMM is [K, C*R*S] x [C*R*S, 49]. BLAS packs A (the weights: 28 MB for
// the MobileNet decoder's 768 -> 1024 3x3) into its own layout on every call, and with 49 columns each
// packed weight is used in only 49 products: perf put BLAS's copy of the weights at 13.5% of a ResNet-50
// masker's batch-1 inference. Here only B (the image's columns, the small operand) is copied, into one
// zero-padded panel of 16, 32, 48 or 64 columns, and the kernel broadcasts A's elements straight from its
// rows (row-major, any lda). conv2d on 2 threads ran 1.10-1.37x the BLAS path on 7x7 planes and 1.15-1.34x on
// 6x6 to 3x3 (bench/RESULTS.md); a one-core prototype over several panels lost to BLAS at 196 columns (14x14)
// and at 784, hence the limit.
//
//   c: [M, N] (ldc) = a: [M, K] (lda) * b: [K, N] (ldb), f32, overwritten; N <= kNarrowMaxCols
//
// Each element of C is one running sum over k = 0, 1, ..., K-1 in order (fused multiply-adds), so the result
// does not depend on the thread count. AVX-512 only (gemm_narrow_applies says whether it runs).
#pragma once
#include <cstdint>

#include "engine/cpu/path_switch.h"

namespace sal::cpu {

constexpr int64_t kNarrowMaxCols = 64;

// Called with each finished block of rows [m0, m0 + rows) of C, right after the kernel stored them (still in
// the core's cache): the caller's epilogue. Runs on the thread that computed the rows.
struct NarrowRowsDone {
  void (*fn)(const void* ctx, int64_t m0, int64_t rows) = nullptr;
  const void* ctx = nullptr;
};

bool gemm_narrow_available();  // the CPU has AVX-512
// On by default; off with SAL_CPU_GEMM_NARROW=0 (read at the first use) or set_gemm_narrow_enabled.
bool gemm_narrow_enabled();
void set_gemm_narrow_enabled(bool on);
using GemmNarrowSwitch = ScopedPathSwitch<gemm_narrow_enabled, set_gemm_narrow_enabled>;
// Whether a GEMM with n columns runs here: available, enabled, 1 <= n <= kNarrowMaxCols, and neither of
// gemm.h's TF32 / BF16 emulations on (they round the operands in gemm()).
bool gemm_narrow_applies(int64_t n);
// Calls of gemm_narrow so far (tests check that the path under test ran).
int64_t gemm_narrow_runs();

// Floats of the packed copy of B that gemm_narrow needs (k rows of n columns rounded up to a vector).
int64_t gemm_narrow_pack_size(int64_t n, int64_t k);

// c = a * b as above, with bpack (gemm_narrow_pack_size floats, 64-byte aligned) as the packed copy of b.
// parallel: split the rows of C over the OpenMP threads (ignored inside a parallel region).
void gemm_narrow(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                 int64_t ldc, float* bpack, bool parallel, NarrowRowsDone done = {});

}  // namespace sal::cpu
