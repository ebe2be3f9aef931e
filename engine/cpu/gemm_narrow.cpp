// CPU backend: the narrow GEMM without packing A (see gemm_narrow.h).
//
// The kernel keeps an MR x (16*NV) block of C in MR*NV vector registers (24 or fewer of the 32) and, for
// each k, loads NV vectors of the packed B row and broadcasts MR elements of A's column k from MR rows of A.
// The packed panel holds B's rows back to back, aligned and zero-padded, so each row is NV aligned loads
// instead of NV unaligned ones at B's stride (those measured at half the speed). K is taken kKC at a time
// over all of a thread's rows (the panel's slice, kKC x 16*NV floats, stays in cache while A's rows stream
// past it; each element of A is read once), C's block reloaded between slices: the running sum per element
// of C stays in k order.
#include "engine/cpu/gemm_narrow.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "engine/cpu/avx512_block.h"
#include "engine/cpu/gemm.h"
#include "engine/error.h"

namespace sal::cpu {

namespace {

constexpr int64_t kKC = 256;  // k per slice (measured 128 / 256 / 512 on 49 columns: 256 best or equal)

std::atomic<int64_t> g_runs{0};

PathSwitch& path_switch() {
  static PathSwitch sw("SAL_CPU_GEMM_NARROW");
  return sw;
}

int64_t vectors(int64_t n) { return (n + 15) / 16; }

// c[i][0:n) (+)= sum over kk < kc of a[i][kk] * bp[kk][0:16*NV) for i < MR; mk[j]: the lanes of vector j
// inside C's n columns. ACC: add to C's current values (a later K slice), else overwrite.
// bp: [kc, 16*NV] (aligned), a: [MR, kc] (lda), c: [MR, n] (ldc)
template <int MR, int NV, bool ACC>
__attribute__((target("avx512f"))) void kernel(int64_t kc, const float* a, int64_t lda, const float* bp, float* c,
                                               int64_t ldc, const __mmask16* mk) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      acc[i][j] = ACC ? _mm512_maskz_loadu_ps(mk[j], c + i * ldc + 16 * j) : _mm512_setzero_ps();
  for (int64_t kk = 0; kk < kc; ++kk) {
    __m512 b[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) b[j] = _mm512_load_ps(bp + kk * 16 * NV + 16 * j);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i * lda + kk]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(ai, b[j], acc[i][j]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) _mm512_mask_storeu_ps(c + i * ldc + 16 * j, mk[j], acc[i][j]);
}

// Rows per block for NV vectors: MR * NV accumulators (at most 24), and MR = 8 rather than more below NV = 4:
// the kernel keeps a pointer to each of its MR rows of A in a general register (x86-64 has 16).
constexpr int rows_per_block(int64_t nv) { return nv == 4 ? 6 : 8; }

// Rows [r0, r1) of C, all of K, from the packed panel; done() on each finished row block.
template <int NV>
void run_rows(int64_t r0, int64_t r1, int64_t n, int64_t k, const float* a, int64_t lda, const float* bpack, float* c,
              int64_t ldc, const NarrowRowsDone& done) {
  constexpr int MR = rows_per_block(NV);
  __mmask16 mk[NV];
  for (int j = 0; j < NV; ++j) mk[j] = first_lanes(n - 16 * j);
  for (int64_t k0 = 0; k0 < k; k0 += kKC) {
    const int64_t kc = std::min(kKC, k - k0);
    const bool last = k0 + kc == k;
    const float* bp = bpack + k0 * 16 * NV;
    int64_t i = r0;
    for (; i + MR <= r1; i += MR) {
      if (k0) kernel<MR, NV, true>(kc, a + i * lda + k0, lda, bp, c + i * ldc, ldc, mk);
      else kernel<MR, NV, false>(kc, a + i * lda + k0, lda, bp, c + i * ldc, ldc, mk);
      if (last && done.fn) done.fn(done.ctx, i, MR);
    }
    for (; i < r1; ++i) {  // the rows left over, one at a time
      if (k0) kernel<1, NV, true>(kc, a + i * lda + k0, lda, bp, c + i * ldc, ldc, mk);
      else kernel<1, NV, false>(kc, a + i * lda + k0, lda, bp, c + i * ldc, ldc, mk);
      if (last && done.fn) done.fn(done.ctx, i, 1);
    }
  }
}

// Rows [k0, k1) of b: [K, n] (ldb) into the panel bp: [K, width], the columns past n zero.
void pack_rows(int64_t k0, int64_t k1, int64_t n, int64_t width, const float* b, int64_t ldb, float* bp) {
  for (int64_t kk = k0; kk < k1; ++kk) {
    float* dst = bp + kk * width;
    std::memcpy(dst, b + kk * ldb, static_cast<size_t>(n) * sizeof(float));
    std::fill(dst + n, dst + width, 0.0f);
  }
}

// This thread's share [lo, hi) of `count` items split into `parts` near-equal runs.
void share(int64_t count, int part, int parts, int64_t& lo, int64_t& hi) {
  lo = count * part / parts, hi = count * (part + 1) / parts;
}

}  // namespace

bool gemm_narrow_available() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

bool gemm_narrow_enabled() { return path_switch().on(); }

void set_gemm_narrow_enabled(bool on) { path_switch().set(on); }

bool gemm_narrow_applies(int64_t n) {
  // The TF32 / BF16 emulations round the operands inside gemm() (gemm.h): those GEMMs stay there.
  return n >= 1 && n <= kNarrowMaxCols && gemm_narrow_available() && gemm_narrow_enabled() && !emulate_tf32() &&
         !emulate_bf16();
}

int64_t gemm_narrow_runs() { return g_runs.load(); }

int64_t gemm_narrow_pack_size(int64_t n, int64_t k) { return k * 16 * vectors(n); }

void gemm_narrow(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                 int64_t ldc, float* bpack, bool parallel, NarrowRowsDone done) {
  SAL_CHECK(n >= 1 && n <= kNarrowMaxCols && gemm_narrow_available(), "gemm_narrow: ", n,
            " columns (1 to 64, on an AVX-512 CPU)");
  SAL_CHECK(reinterpret_cast<uintptr_t>(bpack) % 64 == 0, "gemm_narrow: the packed panel must be 64-byte aligned");
  g_runs.fetch_add(1, std::memory_order_relaxed);
  if (m <= 0) return;
  const int64_t nv = vectors(n), width = 16 * nv;
  if (k <= 0) {  // an empty sum: C = 0 (the epilogue still runs)
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    if (done.fn) done.fn(done.ctx, 0, m);
    return;
  }
  auto rows = [&](int64_t r0, int64_t r1) {
    switch (nv) {
      case 1: run_rows<1>(r0, r1, n, k, a, lda, bpack, c, ldc, done); break;
      case 2: run_rows<2>(r0, r1, n, k, a, lda, bpack, c, ldc, done); break;
      case 3: run_rows<3>(r0, r1, n, k, a, lda, bpack, c, ldc, done); break;
      default: run_rows<4>(r0, r1, n, k, a, lda, bpack, c, ldc, done); break;
    }
  };
  const int mr = rows_per_block(nv);
  const int threads = parallel && !omp_in_parallel() && m * n * k >= kGemmParallelMinWork
                          ? static_cast<int>(std::min<int64_t>(omp_get_max_threads(), (m + mr - 1) / mr))
                          : 1;
  if (threads <= 1) {
    pack_rows(0, k, n, width, b, ldb, bpack);
    rows(0, m);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t lo, hi;
    share(k, t, nt, lo, hi);
    pack_rows(lo, hi, n, width, b, ldb, bpack);
#pragma omp barrier
    // Whole row blocks per thread; the last takes the rows past the last whole block too.
    const int64_t blocks = m / mr;
    share(blocks, t, nt, lo, hi);
    rows(lo * mr, t == nt - 1 ? m : hi * mr);
  }
}

}  // namespace sal::cpu
