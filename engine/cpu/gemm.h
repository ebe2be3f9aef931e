// CPU backend: the thin BLAS wrapper. The only place in the CPU backend that calls
// cblas_sgemm / cblas_dgemm. Row-major GEMM, C = alpha * op(A) * op(B) + beta * C, with
// op(A): [M,K], op(B): [K,N], C: [M,N].
#pragma once
#include <cstdint>

namespace sal::cpu {

// One BLAS call on the calling thread (BLAS itself runs single-threaded, see gemm.cpp).
// Safe to call from inside an OpenMP parallel region, one call per thread.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Below this many multiply-adds (m * n * k, ~0.25 MFLOP) a GEMM runs on one thread: the fork and join
// cost more than the second core gains. Shared by gemm_parallel and gemm_narrow (gemm_narrow.h).
constexpr int64_t kGemmParallelMinWork = int64_t{1} << 17;

// The same GEMM split over the OpenMP threads (C in column or row slabs, no reduction across
// threads). Called inside a parallel region, or for small problems, it is a plain gemm().
template <class T>
void gemm_parallel(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                   int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc);

// Diagnostics: emulate TF32 tensor cores (the CUDA backend's default convolution arithmetic,
// cuda/conv_backend.h ConvMath) in every f32 GEMM: both operands rounded to a 10-bit mantissa (round
// to nearest, ties to even), products accumulated in f32 as before. Off by default; the environment
// variable SAL_CPU_EMULATE_TF32=1 turns it on at the first GEMM. It answers "how much of a CUDA-vs-CPU
// difference is TF32?" without a GPU (tests/test_masker.cpp). Process-wide; set it between steps,
// not while a GEMM runs. f64 GEMMs are never rounded.
void set_emulate_tf32(bool on);
bool emulate_tf32();
// The TF32 value of v (exported for the tests).
float round_to_tf32(float v);
// The same with bf16 operands (8-bit mantissa: what bf16 tensor cores multiply), SAL_CPU_EMULATE_BF16=1;
// it takes precedence over TF32 when both are on. For deciding where bf16 arithmetic is good enough.
void set_emulate_bf16(bool on);
bool emulate_bf16();
float round_to_bf16(float v);

}  // namespace sal::cpu
