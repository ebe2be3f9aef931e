// Convolutions on CUDA without cuDNN: implicit GEMMs on TF32 tensor cores (f32 in and out,
// TF32 products, f32 accumulation; or, ConvGeom::tf32 = false, the same tiles on f32 FMA units:
// FmaTile below), direct kernels for depthwise convolutions, bias add and
// bias-gradient reductions. Layout NCHW, weights [K, C/G, R, S]; per group g (Kg = K/G output and
// Cg = C/G input channels):
//   forward  y[n, gKg+k, p, q]   = sum_(c,r,s)  w[gKg+k, c, r, s] * x[n, gCg+c, p*sh-pt+r*dh, q*sw-pl+s*dw]
//            GEMM M = Kg, N = N*P*Q, K = Cg*R*S; A = w (row-major [Kg, CRS]), B = im2col(x) gathered.
//   dgrad    dx[n, gCg+c, h, w]  = sum_(k,r,s)  w[gKg+k, c, r, s] * dy[n, gKg+k, p, q]
//            where p = (h+pt-r*dh)/sh, q = (w+pl-s*dw)/sw when those divide exactly and are in range.
//            Split by stride phase: the pixels h = a + sh*i (a < sh; likewise w = b + sw*j) are
//            reached only by the taps r with (a+pt-r*dh) divisible by sh, which are r0, r0+step, ...
//            (step = sh/gcd(sh,dh)), and then p = i + (a+pt-r*dh)/sh. So each phase (a,b) is a dense
//            GEMM M = Cg, N = N*ceil((H-a)/sh)*ceil((W-b)/sw), K = Kg*(its taps), with no wasted
//            zero taps and no division per element; stride 1 is the single phase (0,0) with all taps.
//            A = w restricted to the phase's taps and transposed into [G, Cg, Kg*taps] (a small
//            kernel, so that A is row-major like the forward's), B = dy gathered. Every dx element is
//            written once by one block: no col2im scatter, no atomics.
//   wgrad    dw[gKg+k, c, r, s] += sum_(n,p,q) dy[n, gKg+k, p, q] * x[n, gCg+c, h(p,r), w(q,s)]
//            GEMM M = Kg, N = Cg*R*S, K = N*P*Q; A = dy, B = im2col(x)^T. The reduction is long and
//            the output small, so it is split over blockIdx.z (split-K) into a workspace and the
//            splits are summed by a second kernel in a fixed order (deterministic, no atomics).
//   Forward and dgrad also split K when the grid would leave most multiprocessors idle (batch 1).
//   All index arithmetic is int inside one image (the host checks C*H*W and K*P*Q fit) and 64-bit
//   for image and group base offsets.
//
// Tensor cores through nvcuda::wmma (16x16x8 TF32 fragments) rather than inline mma.sync PTX: the
// fragment API fixes the register layouts, which cannot be checked without a GPU here; its only
// requirements (ldm a multiple of 4 floats, 32-byte aligned tile pointers) are checked by
// static_asserts and the padding below.
//
// Tiling: block tile BM x 64 x 32 (BM = 128 when M > 64, else 64), 128 threads = 4 warps in a 2x2
// grid, each warp BM/2 x 32 (BM/32 x 2 accumulator fragments). Shared memory: A tile [BM][32+4]
// (k contiguous), B tile [32][64+4] (n contiguous; wgrad stores it transposed, [64][32+4], so that
// its gather, which is coalesced along K = (n,p,q), also writes consecutive addresses); the +4
// padding staggers rows across banks and keeps every 16-row fragment pointer 32-byte aligned. The
// same shared memory is reused as a [BM][64+4] staging tile for the epilogue, whose writes walk
// along the output's contiguous (n,p,q) / (n,h,w) / (c,r,s) index so they coalesce.
// Pipelining: synchronous shared-memory staging with a register prefetch: the global loads of
// tile t+1 are issued before the tensor-core work of tile t and stored after it. Values are
// rounded to TF32 (round to nearest) when stored to shared memory, once per element.
// Gathers: each thread keeps the column it loads for the whole kernel (forward, dgrad) and decodes
// it once; the decoding of the K index (forward: (c,r,s) -> (c*H*W, r*dh, s*dw); dgrad: (k,u,v) ->
// (k*P*Q, row and column offset of the tap in dy)) is a 32-entry table per K tile in shared memory,
// built by one warp and double-buffered, so the per-element work is two adds and a bounds test.
// In wgrad the columns (c,r,s) are fixed per block (one 64-entry table) and each thread decodes its
// K row (n,p,q) once per tile.
// Loads of A use float4 when the row length is a multiple of 4 and the pointer 16-byte aligned,
// else scalar loads (coalesced along k either way). All edges (M, N, K not multiples of the tile)
// are guarded: padding taps and out-of-range rows/columns load zeros and store nothing.
//
// Depthwise (Cg = Kg = 1): a GEMM would be 1 x R*S, so forward and dgrad are one thread per output
// element (dgrad gathers: no atomics), and wgrad is a block per (channel, slice of N*P*Q) that keeps
// 9 taps in registers and reduces them in a fixed order (plus a split-sum kernel when sliced).
#include <mma.h>

#include <algorithm>
#include <numeric>
#include <type_traits>

#include "cuda/conv_igemm.h"
#include "cuda/bn_infer_scale.h"
#include "cuda/launch.cuh"

namespace sal::cuda {

namespace {

using namespace nvcuda;

constexpr int kThreads = 128;  // 4 warps
constexpr int kBN = 64;
constexpr int kBK = 32;
constexpr int kLdA = kBK + 4;     // As[BM][kLdA]
constexpr int kLdBRow = kBN + 4;  // Bs[kBK][kLdBRow] (forward, dgrad)
constexpr int kLdBCol = kBK + 4;  // Bs[kBN][kLdBCol] (wgrad: B stored transposed)
constexpr int kLdC = kBN + 4;     // Cs[BM][kLdC]
static_assert(kLdA % 4 == 0 && kLdBRow % 4 == 0 && kLdBCol % 4 == 0 && kLdC % 4 == 0, "wmma ldm: multiple of 4");
static_assert((16 * kLdA * 4) % 32 == 0 && (8 * kLdBRow * 4) % 32 == 0 && (16 * kLdBCol * 4) % 32 == 0 &&
                  (16 * kLdC * 4) % 32 == 0,
              "fragment pointers must stay 32-byte aligned");
static_assert(2 * kBK == kBN, "the K-table double buffer and the wgrad column table share one array");

constexpr int kMinKtPerSplit = 8;  // split-K: at least 8 K tiles (256 of K) per split

enum class Pass { Fwd, Dgrad, Wgrad };

// One launch. Sizes are int: the host checks that every GEMM dimension and every per-image
// offset fits; image base offsets are computed in 64 bits.
struct Gemm {
  int N, C, H, W, K, P, Q, R, S, G, Cg, Kg;
  int sh, sw, pt, pl, dh, dw;
  int M, Kdim, Ncols;  // the GEMM of one group: [M, Kdim] x [Kdim, Ncols]
  // The K index is (channel, u, v) with tap (r, s) = (r0 + step_r*u, s0 + step_s*v), u < tap_rs/tap_s:
  // all taps (r0 = s0 = 0, steps 1) except in a dgrad stride phase.
  int tap_rs, tap_s, r0, s0, step_r, step_s;
  int pa, pb, Hi, Wj;  // dgrad: the phase (pa, pb) and its pixel grid Hi x Wj; Hi = 0 otherwise
  const float* a;      // forward: w [G*Kg, Cg*R*S]; dgrad: w^T [G, Cg, Kg*taps]; wgrad: dy
  const float* b;      // forward, wgrad: x; dgrad: dy
  const float* bias;   // indexed by g*M + m; null for none
  ConvEpilogue epi;    // forward only: batch norm, residual and activation after the bias (bias: above)
  float* out;          // (g, m, col) -> out[col_offset(col) + (g*M + m) * plane]
  int plane;
  long long img_stride;
  bool accumulate;  // out += instead of out =
  bool tf32;        // TF32 tensor cores (true) or f32 FMA (false): ConvGeom::tf32
  int splits, kt_per_split;
  float* ws;  // splits > 1: partial sums [splits][G][M][Ncols]
};

// The table entry of K index idx = (channel, u, v): {offset of the channel's plane, row term,
// column term, valid}. Forward / wgrad (im2col of x): {c*H*W, r*dh, s*dw}; dgrad (dy of a phase):
// {k*P*Q, (pa+pt-r*dh)/sh, (pb+pl-s*dw)/sw} (exact divisions: the phase's taps divide).
template <bool DGRAD, class G>
__device__ __forceinline__ int4 tap_entry(const G& p, int idx, int limit) {
  if (idx >= limit) return make_int4(0, 0, 0, 0);
  const int ch = idx / p.tap_rs, t = idx - ch * p.tap_rs;
  const int u = t / p.tap_s, v = t - u * p.tap_s;
  const int r = p.r0 + p.step_r * u, s = p.s0 + p.step_s * v;
  if (DGRAD) return make_int4(ch * p.P * p.Q, (p.pa + p.pt - r * p.dh) / p.sh, (p.pb + p.pl - s * p.dw) / p.sw, 1);
  return make_int4(ch * p.H * p.W, r * p.dh, s * p.dw, 1);
}

// Element offset of output column col, channel term excluded: n*img_stride + pixel offset.
template <class G>
__device__ __forceinline__ long long col_offset(const G& p, int col) {
  if (p.Hi > 0) {  // dgrad phase: col = (n, i, j) -> pixel (pa + sh*i, pb + sw*j)
    const int hw = p.Hi * p.Wj;
    const int n = col / hw, rem = col - n * hw;
    const int i = rem / p.Wj, j = rem - i * p.Wj;
    return n * p.img_stride + static_cast<long long>(p.pa + p.sh * i) * p.W + p.pb + p.sw * j;
  }
  const int n = col / p.plane;
  return n * p.img_stride + (col - n * p.plane);
}

__device__ __forceinline__ float tf32(float v) { return wmma::__float_to_tf32(v); }

// The epilogue's activation (Activation as int), as the CPU: relu maps NaN to 0, relu6 passes it.
__device__ __forceinline__ float activate(float v, int act) {
  if (act == static_cast<int>(Activation::ReLU)) return v > 0.f ? v : 0.f;
  if (act == static_cast<int>(Activation::ReLU6)) return v < 0.f ? 0.f : (v > 6.f ? 6.f : v);
  return v;
}

// ConvEpilogue after the bias: v (bias already added) at element i of the output, channel k.
__device__ __forceinline__ float finish_value(const ConvEpilogue& e, float v, long long i, long long k) {
  if (e.scale) v = (v - e.mean[k]) * e.scale[k] + e.beta[k];
  if (e.residual) v += e.residual[i];
  return activate(v, static_cast<int>(e.act));
}

// A shared-memory operand value: rounded to TF32 once for the tensor cores, unchanged for FMA.
template <bool TF32>
__device__ __forceinline__ float operand(float v) {
  if constexpr (TF32)
    return tf32(v);
  else
    return v;
}

// The block tile's accumulators, BM x 64, over the shared tiles As [BM][kLdA] (k contiguous) and
// Bs ([kBK][kLdBRow], or [kBN][kLdBCol] when B_COL), one K tile (kBK) per mma() call; store()
// writes them to the staging tile Cs [BM][kLdC].
//
// Tensor cores: warps in a 2x2 grid, each BM/2 x 32 as (BM/32) x 2 wmma 16x16x8 TF32 fragments.
template <int BM, bool B_COL>
struct TensorCoreTile {
  static constexpr int WM = BM / 2, FM = WM / 16, FN = 2;
  using BLayout = typename std::conditional<B_COL, wmma::col_major, wmma::row_major>::type;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[FM][FN];

  __device__ void zero() {
#pragma unroll
    for (int i = 0; i < FM; ++i)
#pragma unroll
      for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.f);
  }
  __device__ void mma(const float* As, const float* Bs, int tid) {
    const int warp = tid >> 5, wm = warp >> 1, wn = warp & 1;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> af[FM];
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, BLayout> bf[FN];
#pragma unroll
      for (int i = 0; i < FM; ++i) wmma::load_matrix_sync(af[i], As + (wm * WM + i * 16) * kLdA + kk, kLdA);
#pragma unroll
      for (int j = 0; j < FN; ++j) {
        if constexpr (B_COL)
          wmma::load_matrix_sync(bf[j], Bs + (wn * 32 + j * 16) * kLdBCol + kk, kLdBCol);
        else
          wmma::load_matrix_sync(bf[j], Bs + kk * kLdBRow + wn * 32 + j * 16, kLdBRow);
      }
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], af[i], bf[j], acc[i][j]);
    }
  }
  __device__ void store(float* Cs, int tid) {
    const int warp = tid >> 5, wm = warp >> 1, wn = warp & 1;
#pragma unroll
    for (int i = 0; i < FM; ++i)
#pragma unroll
      for (int j = 0; j < FN; ++j)
        wmma::store_matrix_sync(Cs + (wm * WM + i * 16) * kLdC + wn * 32 + j * 16, acc[i][j], kLdC,
                                wmma::mem_row_major);
  }
};

// f32 FMA (ConvMath::F32): thread t owns rows (t / 8) + 16 i (i < BM/16) and columns (t % 8) + 8 j
// (j < 8). In every shared-memory read a warp touches 4 A rows (banks 4 apart: kLdA = 36) and 8
// consecutive B columns (or 8 B rows 36 apart), each value broadcast: no bank conflicts.
template <int BM, bool B_COL>
struct FmaTile {
  static constexpr int TM = BM / 16, TN = 8;
  float acc[TM][TN];

  __device__ void zero() {
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;
  }
  __device__ void mma(const float* As, const float* Bs, int tid) {
    const int tm = tid >> 3, tn = tid & 7;
#pragma unroll 4
    for (int k = 0; k < kBK; ++k) {
      float a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; ++i) a[i] = As[(tm + 16 * i) * kLdA + k];
#pragma unroll
      for (int j = 0; j < TN; ++j) b[j] = B_COL ? Bs[(tn + 8 * j) * kLdBCol + k] : Bs[k * kLdBRow + tn + 8 * j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  }
  __device__ void store(float* Cs, int tid) {
    const int tm = tid >> 3, tn = tid & 7;
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) Cs[(tm + 16 * i) * kLdC + tn + 8 * j] = acc[i][j];
  }
};
static_assert(kThreads == 128 && kBN == 64, "FmaTile maps 128 threads onto 16 x 8 thread rows/columns");

// x: [N,C,H,W] (*) w: [K,C/G,R,S] -> y: [N,K,P,Q]      (PASS = Fwd)
// dy: [N,K,P,Q] (*) w^T: [G,C/G,K/G*taps] -> dx: [N,C,H,W] at one stride phase (PASS = Dgrad)
// dy: [N,K,P,Q] (*) x: [N,C,H,W] -> dw: [K,C/G,R,S] += (PASS = Wgrad)
// grid: (ceil(Ncols/64), ceil(M/BM), G*splits), block: 128. TF32: tensor cores, else f32 FMA.
template <Pass PASS, int BM, bool VEC_A, bool TF32>
__global__ void __launch_bounds__(kThreads) igemm_kernel(const Gemm p) {
  constexpr int A_PER = BM * kBK / kThreads;   // A values per thread per tile (BM/4)
  constexpr int B_PER = kBK * kBN / kThreads;  // 16
  constexpr bool B_COL = PASS == Pass::Wgrad;
  constexpr int A_ELEMS = BM * kLdA;
  constexpr int B_ELEMS = B_COL ? kBN * kLdBCol : kBK * kLdBRow;
  constexpr int C_ELEMS = BM * kLdC;
  constexpr int SMEM = (A_ELEMS + B_ELEMS) > C_ELEMS ? (A_ELEMS + B_ELEMS) : C_ELEMS;
  static_assert(BM == 64 || BM == 128, "tile rows");
  static_assert((A_ELEMS * 4) % 32 == 0, "B tile must start 32-byte aligned");
  static_assert(B_PER == 16, "B mapping below assumes 16 values per thread");

  __shared__ __align__(128) float smem[SMEM];
  __shared__ int4 tab[2 * kBK];  // forward/dgrad: K-tile tables (double buffer); wgrad: column table
  float* const As = smem;
  float* const Bs = smem + A_ELEMS;

  const int tid = threadIdx.x;
  const int g = blockIdx.z % p.G, split = blockIdx.z / p.G;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * kBN;
  const int ktiles = (p.Kdim + kBK - 1) / kBK;
  const int kt0 = split * p.kt_per_split;
  const int nk = max(min(ktiles, kt0 + p.kt_per_split) - kt0, 0);
  const int HW = p.H * p.W, PQ = p.P * p.Q;

  // ---- per-thread column of B (forward, dgrad): fixed for the whole kernel
  const int bj = tid & (kBN - 1);  // column within the tile
  const int bcol = n0 + bj;
  const bool bcol_ok = bcol < p.Ncols;
  int bh = 0, bw = 0;  // forward: p*sh-pt, q*sw-pl; dgrad: the phase pixel (i, j)
  const float* bbase = p.b;
  if constexpr (PASS == Pass::Fwd) {
    if (bcol_ok) {
      const int n = bcol / PQ, pq = bcol - n * PQ;
      const int pp = pq / p.Q, qq = pq - pp * p.Q;
      bh = pp * p.sh - p.pt;
      bw = qq * p.sw - p.pl;
      bbase = p.b + (static_cast<long long>(n) * p.C + static_cast<long long>(g) * p.Cg) * HW;
    }
  } else if constexpr (PASS == Pass::Dgrad) {
    if (bcol_ok) {
      const int hw = p.Hi * p.Wj;
      const int n = bcol / hw, rem = bcol - n * hw;
      bh = rem / p.Wj;
      bw = rem - bh * p.Wj;
      bbase = p.b + (static_cast<long long>(n) * p.K + static_cast<long long>(g) * p.Kg) * PQ;
    }
  }
  const float* const a_g = PASS == Pass::Wgrad ? p.a + static_cast<long long>(g) * p.Kg * PQ
                                               : p.a + static_cast<long long>(g) * p.M * p.Kdim;

  float ra[A_PER], rb[B_PER];

  // Global -> registers for K tile kt (tab_buf: which table half holds its decoding).
  auto load_tile = [&](int kt, int tab_buf) {
    const int k0 = kt * kBK;
    if constexpr (PASS == Pass::Wgrad) {
      // This thread's K row (n,p,q), shared by its A and B values.
      const int kk = tid & (kBK - 1);
      const int npq = k0 + kk;
      const bool row_ok = npq < p.Kdim;
      int n = 0, pq = 0, h0 = 0, w0 = 0;
      if (row_ok) {
        n = npq / PQ;
        pq = npq - n * PQ;
        const int pp = pq / p.Q, qq = pq - pp * p.Q;
        h0 = pp * p.sh - p.pt;
        w0 = qq * p.sw - p.pl;
      }
      // A = dy[n, g*Kg + m, pq], rows m = (tid>>5) + 4i
      const float* arow = a_g + static_cast<long long>(n) * p.K * PQ + pq;
#pragma unroll
      for (int i = 0; i < A_PER; ++i) {
        const int m = m0 + (tid >> 5) + 4 * i;
        ra[i] = (row_ok && m < p.M) ? __ldg(arow + static_cast<long long>(m) * PQ) : 0.f;
      }
      // B = x[n, g*Cg + c, h0 + r*dh, w0 + s*dw], columns (tid>>5) + 4i
      const float* xb = p.b + (static_cast<long long>(n) * p.C + static_cast<long long>(g) * p.Cg) * HW;
#pragma unroll
      for (int i = 0; i < B_PER; ++i) {
        const int4 e = tab[(tid >> 5) + 4 * i];
        float v = 0.f;
        if (row_ok && e.w) {
          const int h = h0 + e.y, w = w0 + e.z;
          if (static_cast<unsigned>(h) < static_cast<unsigned>(p.H) &&
              static_cast<unsigned>(w) < static_cast<unsigned>(p.W))
            v = __ldg(xb + e.x + h * p.W + w);
        }
        rb[i] = v;
      }
    } else {
      // A: row-major [M, Kdim] of this group.
      if constexpr (VEC_A) {
        const int k = k0 + (tid & 7) * 4;  // Kdim % 4 == 0, so k < Kdim covers all four
#pragma unroll
        for (int i = 0; i < BM / 16; ++i) {
          const int m = m0 + (tid >> 3) + 16 * i;
          float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
          if (m < p.M && k < p.Kdim)
            v = __ldg(reinterpret_cast<const float4*>(a_g + static_cast<long long>(m) * p.Kdim + k));
          ra[4 * i] = v.x;
          ra[4 * i + 1] = v.y;
          ra[4 * i + 2] = v.z;
          ra[4 * i + 3] = v.w;
        }
      } else {
        const int k = k0 + (tid & (kBK - 1));
#pragma unroll
        for (int i = 0; i < A_PER; ++i) {
          const int m = m0 + (tid >> 5) + 4 * i;
          ra[i] = (m < p.M && k < p.Kdim) ? __ldg(a_g + static_cast<long long>(m) * p.Kdim + k) : 0.f;
        }
      }
      // B: rows (tid>>6) + 2i of this K tile, this thread's column.
      const int4* t = tab + tab_buf * kBK;
#pragma unroll
      for (int i = 0; i < B_PER; ++i) {
        const int4 e = t[(tid >> 6) + 2 * i];
        float v = 0.f;
        if (bcol_ok && e.w) {
          if constexpr (PASS == Pass::Fwd) {
            const int h = bh + e.y, w = bw + e.z;
            if (static_cast<unsigned>(h) < static_cast<unsigned>(p.H) &&
                static_cast<unsigned>(w) < static_cast<unsigned>(p.W))
              v = __ldg(bbase + e.x + h * p.W + w);
          } else {
            const int pp = bh + e.y, qq = bw + e.z;  // the dy pixel this tap takes (i, j) from
            if (static_cast<unsigned>(pp) < static_cast<unsigned>(p.P) &&
                static_cast<unsigned>(qq) < static_cast<unsigned>(p.Q))
              v = __ldg(bbase + e.x + pp * p.Q + qq);
          }
        }
        rb[i] = v;
      }
    }
  };

  // Registers -> shared memory (rounded to TF32 for the tensor cores).
  auto store_tile = [&]() {
    if constexpr (PASS != Pass::Wgrad && VEC_A) {
#pragma unroll
      for (int i = 0; i < BM / 16; ++i) {
        const int row = (tid >> 3) + 16 * i;
        *reinterpret_cast<float4*>(As + row * kLdA + (tid & 7) * 4) =
            make_float4(operand<TF32>(ra[4 * i]), operand<TF32>(ra[4 * i + 1]), operand<TF32>(ra[4 * i + 2]),
                        operand<TF32>(ra[4 * i + 3]));
      }
    } else {
#pragma unroll
      for (int i = 0; i < A_PER; ++i) As[((tid >> 5) + 4 * i) * kLdA + (tid & (kBK - 1))] = operand<TF32>(ra[i]);
    }
    if constexpr (B_COL) {
#pragma unroll
      for (int i = 0; i < B_PER; ++i) Bs[((tid >> 5) + 4 * i) * kLdBCol + (tid & (kBK - 1))] = operand<TF32>(rb[i]);
    } else {
#pragma unroll
      for (int i = 0; i < B_PER; ++i) Bs[((tid >> 6) + 2 * i) * kLdBRow + bj] = operand<TF32>(rb[i]);
    }
  };

  // Table of K tile kt into half `buf` (forward, dgrad), by the first warp.
  auto build_tab = [&](int kt, int buf) {
    if (tid < kBK) tab[buf * kBK + tid] = tap_entry<PASS == Pass::Dgrad>(p, kt * kBK + tid, p.Kdim);
  };

  using Tile = typename std::conditional<TF32, TensorCoreTile<BM, B_COL>, FmaTile<BM, B_COL>>::type;
  Tile acc;
  acc.zero();

  // ---- prologue: tables, first tile
  if constexpr (B_COL) {
    if (tid < kBN) tab[tid] = tap_entry<false>(p, n0 + tid, p.Ncols);
  } else {
    build_tab(kt0, 0);
  }
  __syncthreads();
  if (nk > 0) {
    load_tile(kt0, 0);
    if constexpr (!B_COL) {
      if (nk > 1) build_tab(kt0 + 1, 1);
    }
    store_tile();
  }
  __syncthreads();

  // ---- main loop: prefetch tile it+1 into registers while the tensor cores work on tile it
  for (int it = 0; it < nk; ++it) {
    if (it + 1 < nk) load_tile(kt0 + it + 1, (it + 1) & 1);
    acc.mma(As, Bs, tid);
    __syncthreads();  // everyone is done reading As/Bs and the table half of tile it+1
    if (it + 1 < nk) {
      store_tile();
      if constexpr (!B_COL) {
        if (it + 2 < nk) build_tab(kt0 + it + 2, it & 1);  // the half tile `it` used
      }
      __syncthreads();
    }
  }

  // ---- epilogue: accumulators -> shared staging tile -> global, coalesced along the columns
  __syncthreads();
  float* const Cs = smem;
  acc.store(Cs, tid);
  __syncthreads();

  const int col = n0 + bj;
  if (col >= p.Ncols) return;
  if (p.splits > 1) {
    float* dst = p.ws + (static_cast<long long>(split) * p.G + g) * p.M * static_cast<long long>(p.Ncols) + col;
    for (int r = tid >> 6; r < BM; r += kThreads / kBN) {
      const int m = m0 + r;
      if (m < p.M) dst[static_cast<long long>(m) * p.Ncols] = Cs[r * kLdC + bj];
    }
  } else {
    float* dst = p.out + col_offset(p, col) + static_cast<long long>(g) * p.M * p.plane;
    for (int r = tid >> 6; r < BM; r += kThreads / kBN) {
      const int m = m0 + r;
      if (m >= p.M) break;
      float v = Cs[r * kLdC + bj];
      if (p.bias) v += p.bias[g * p.M + m];
      float* o = dst + static_cast<long long>(m) * p.plane;
      if (p.accumulate)
        *o += v;
      else
        *o = finish_value(p.epi, v, o - p.out, g * p.M + m);
    }
  }
}

// Split-K sum: part [splits][G*M][Ncols] -> p.out, mapped as in Gemm (bias by g*M+m; += or =).
// grid-stride over G*M*Ncols.
__global__ void splitk_finish_kernel(const float* __restrict__ part, int splits, long long total, const Gemm p) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int k = 0; k < splits; ++k) s += part[k * total + i];
    const long long gm = i / p.Ncols;
    const int col = static_cast<int>(i - gm * p.Ncols);
    if (p.bias) s += p.bias[gm];
    float* o = p.out + col_offset(p, col) + gm * p.plane;
    if (p.accumulate)
      *o += s;
    else
      *o = finish_value(p.epi, s, o - p.out, gm);
  }
}

// w: [G*Kg, Cg, R, S] -> wT: [G, Cg, Kg, taps] (the dgrad GEMM's A of one phase, row-major per
// group), tap (u, v) = w's (r0 + step_r*u, s0 + step_s*v); taps = tap_rs = Ru * tap_s.
__global__ void transpose_weights_kernel(const float* __restrict__ w, float* __restrict__ wT, const Gemm p,
                                         long long total) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int t = static_cast<int>(i % p.tap_rs);
    long long rest = i / p.tap_rs;
    const int k = static_cast<int>(rest % p.Kg);
    rest /= p.Kg;
    const int c = static_cast<int>(rest % p.Cg);
    const long long g = rest / p.Cg;
    const int u = t / p.tap_s, v = t - u * p.tap_s;
    const int r = p.r0 + p.step_r * u, s = p.s0 + p.step_s * v;
    wT[i] = w[((g * p.Kg + k) * p.Cg + c) * p.R * p.S + r * p.S + s];
  }
}

// ---------------------------------------------------------------- depthwise
struct DwGeom {
  int N, C, H, W, P, Q, R, S;
  int sh, sw, pt, pl, dh, dw;
};

// x: [N,C,H,W] w: [C,1,R,S] -> y = epi(conv): [N,C,P,Q]; one thread per output element
__global__ void dw_forward_kernel(const DwGeom g, const float* __restrict__ x, const float* __restrict__ w,
                                  const ConvEpilogue epi, float* __restrict__ y, long long total) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int q = static_cast<int>(i % g.Q);
    long long t = i / g.Q;
    const int p = static_cast<int>(t % g.P);
    const long long nc = t / g.P;
    const int c = static_cast<int>(nc % g.C);
    const float* xp = x + nc * g.H * g.W;
    const float* wc = w + c * g.R * g.S;
    float acc = epi.bias ? epi.bias[c] : 0.f;
    for (int r = 0; r < g.R; ++r) {
      const int h = p * g.sh - g.pt + r * g.dh;
      if (static_cast<unsigned>(h) >= static_cast<unsigned>(g.H)) continue;
      for (int s = 0; s < g.S; ++s) {
        const int ww = q * g.sw - g.pl + s * g.dw;
        if (static_cast<unsigned>(ww) < static_cast<unsigned>(g.W)) acc += wc[r * g.S + s] * xp[h * g.W + ww];
      }
    }
    y[i] = finish_value(epi, acc, i, c);
  }
}

// dy: [N,C,P,Q] w: [C,1,R,S] -> dx: [N,C,H,W]; one thread per input element, gathering the taps
// that reach it (p*sh - pt + r*dh = h)
__global__ void dw_dgrad_kernel(const DwGeom g, const float* __restrict__ dy, const float* __restrict__ w,
                                float* __restrict__ dx, long long total) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const int xw = static_cast<int>(i % g.W);
    long long t = i / g.W;
    const int h = static_cast<int>(t % g.H);
    const long long nc = t / g.H;
    const int c = static_cast<int>(nc % g.C);
    const float* dyp = dy + nc * g.P * g.Q;
    const float* wc = w + c * g.R * g.S;
    float acc = 0.f;
    for (int r = 0; r < g.R; ++r) {
      const int hp = h + g.pt - r * g.dh;
      if (hp < 0 || hp % g.sh) continue;
      const int p = hp / g.sh;
      if (p >= g.P) continue;
      for (int s = 0; s < g.S; ++s) {
        const int wp = xw + g.pl - s * g.dw;
        if (wp < 0 || wp % g.sw) continue;
        const int q = wp / g.sw;
        if (q < g.Q) acc += wc[r * g.S + s] * dyp[p * g.Q + q];
      }
    }
    dx[i] = acc;
  }
}

constexpr int kRedThreads = 256;
constexpr int kDwTaps = 9;  // taps kept in registers per pass over the data

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// dy: [N,C,P,Q] x: [N,C,H,W] -> dw: [C,1,R,S] += (splits == 1) or part: [splits][C*R*S]
// grid: (C, splits), block: 256; block (c, s) covers elements [s*per_split, ...) of N*P*Q.
__global__ void __launch_bounds__(kRedThreads)
    dw_wgrad_kernel(const DwGeom g, const float* __restrict__ dy, const float* __restrict__ x, float* dw, float* part,
                    long long per_split) {
  __shared__ float red[kRedThreads / 32][kDwTaps];
  const int c = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int PQ = g.P * g.Q, RS = g.R * g.S;
  const long long E = static_cast<long long>(g.N) * PQ;
  const long long e0 = split * per_split;
  const long long e1 = min(E, e0 + per_split);
  for (int t0 = 0; t0 < RS; t0 += kDwTaps) {
    int tdr[kDwTaps], tds[kDwTaps];
#pragma unroll
    for (int t = 0; t < kDwTaps; ++t) {
      const int tap = t0 + t < RS ? t0 + t : 0;
      tdr[t] = (tap / g.S) * g.dh;
      tds[t] = (tap % g.S) * g.dw;
    }
    float acc[kDwTaps];
#pragma unroll
    for (int t = 0; t < kDwTaps; ++t) acc[t] = 0.f;
    for (long long e = e0 + tid; e < e1; e += kRedThreads) {
      const int n = static_cast<int>(e / PQ), pq = static_cast<int>(e - static_cast<long long>(n) * PQ);
      const int p = pq / g.Q, q = pq - p * g.Q;
      const long long plane = static_cast<long long>(n) * g.C + c;
      const float v = dy[plane * PQ + pq];
      const float* xp = x + plane * g.H * g.W;
      const int h0 = p * g.sh - g.pt, w0 = q * g.sw - g.pl;
#pragma unroll
      for (int t = 0; t < kDwTaps; ++t) {
        if (t0 + t >= RS) break;
        const int h = h0 + tdr[t], w = w0 + tds[t];
        if (static_cast<unsigned>(h) < static_cast<unsigned>(g.H) &&
            static_cast<unsigned>(w) < static_cast<unsigned>(g.W))
          acc[t] += v * xp[h * g.W + w];
      }
    }
#pragma unroll
    for (int t = 0; t < kDwTaps; ++t) {
      const float s = warp_sum(acc[t]);
      if (lane == 0) red[warp][t] = s;
    }
    __syncthreads();
    if (tid < kDwTaps && t0 + tid < RS) {
      float s = 0.f;
      for (int k = 0; k < kRedThreads / 32; ++k) s += red[k][tid];
      const int idx = c * RS + t0 + tid;
      if (splits == 1)
        dw[idx] += s;
      else
        part[static_cast<long long>(split) * g.C * RS + idx] = s;
    }
    __syncthreads();
  }
}

// ---------------------------------------------------------------- bias
// y: [n, K, plane] = epi(y) in place (with a bias alone: the bias add); grid-stride over all elements
__global__ void epilogue_kernel(float* __restrict__ y, const ConvEpilogue epi, int K, long long plane,
                                long long total) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const long long k = (i / plane) % K;
    const float v = y[i];
    y[i] = finish_value(epi, epi.bias ? v + epi.bias[k] : v, i, k);
  }
}

// gamma, var: [K] -> scale: [K]
__global__ void bn_scale_kernel(const float* __restrict__ gamma, const float* __restrict__ var, double eps, int K,
                                float* __restrict__ scale) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k < K) scale[k] = bn_infer_scale(gamma[k], var[k], eps);
}

// dy: [n, K, plane] -> db[K] += (splits == 1) or part: [splits][K]
// grid: (K, splits), block: 256; block (k, s) sums elements [s*per_split, ...) of n*plane.
__global__ void __launch_bounds__(kRedThreads)
    channel_sum_kernel(const float* __restrict__ dy, int n, int K, long long plane, float* db, float* part,
                       long long per_split) {
  __shared__ float red[kRedThreads / 32];
  const int k = blockIdx.x, split = blockIdx.y, splits = gridDim.y;
  const long long E = static_cast<long long>(n) * plane;
  const long long e0 = split * per_split;
  const long long e1 = min(E, e0 + per_split);
  float acc = 0.f;
  for (long long e = e0 + threadIdx.x; e < e1; e += kRedThreads) {
    const long long img = e / plane, i = e - img * plane;
    acc += dy[(img * K + k) * plane + i];
  }
  acc = warp_sum(acc);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.f;
    for (int w = 0; w < kRedThreads / 32; ++w) s += red[w];
    if (splits == 1)
      db[k] += s;
    else
      part[static_cast<long long>(split) * K + k] = s;
  }
}

// ---------------------------------------------------------------- host side

int as_int(int64_t v, const char* op, const char* what) {
  SAL_CHECK(v >= 0 && v <= INT32_MAX, op, ": ", what, " = ", v, " does not fit the kernels' 32-bit indexing");
  return static_cast<int>(v);
}

// Sums the split-K partials [splits][G*M][Ncols] into p.out with p's mapping.
void finish_splits(Ctx& ctx, const char* op, const float* part, int splits, const Gemm& p) {
  const long long total = static_cast<long long>(p.G) * p.M * p.Ncols;
  splitk_finish_kernel<<<grid_for(total), 256, 0, stream_of(ctx)>>>(part, splits, total, p);
  SAL_CUDA_LAUNCH_CHECK(op);
}

// dst[i] += sum_s part[s][i], i < L (the finish of the split reductions).
void finish_linear(Ctx& ctx, const char* op, const float* part, int splits, float* dst, int L) {
  Gemm p{};
  p.G = 1, p.M = 1, p.Ncols = L, p.plane = L, p.img_stride = 0, p.Hi = 0;
  p.out = dst, p.bias = nullptr, p.accumulate = true;
  finish_splits(ctx, op, part, splits, p);
}

template <Pass PASS, int BM, bool VEC_A>
void launch(Ctx& ctx, const char* op, const Gemm& p, dim3 grid) {
  if (p.tf32)
    igemm_kernel<PASS, BM, VEC_A, true><<<grid, kThreads, 0, stream_of(ctx)>>>(p);
  else
    igemm_kernel<PASS, BM, VEC_A, false><<<grid, kThreads, 0, stream_of(ctx)>>>(p);
  SAL_CUDA_LAUNCH_CHECK(op);
}

template <Pass PASS, int BM>
void launch_bm(Ctx& ctx, const char* op, const Gemm& p, dim3 grid, bool vec_a) {
  if (vec_a && PASS != Pass::Wgrad)
    launch<PASS, BM, PASS != Pass::Wgrad>(ctx, op, p, grid);
  else
    launch<PASS, BM, false>(ctx, op, p, grid);
}

// The geometry part of a Gemm; the K index covers all taps (no phase).
Gemm base_gemm(const char* op, const ConvGeom& cg) {
  Gemm p{};
  p.N = as_int(cg.N, op, "N");
  p.C = as_int(cg.C, op, "C");
  p.H = as_int(cg.H, op, "H");
  p.W = as_int(cg.W, op, "W");
  p.K = as_int(cg.K, op, "K");
  p.P = as_int(cg.P, op, "P");
  p.Q = as_int(cg.Q, op, "Q");
  p.R = as_int(cg.R, op, "R");
  p.S = as_int(cg.S, op, "S");
  p.G = as_int(cg.G, op, "groups");
  p.Cg = as_int(cg.Cg(), op, "C/groups");
  p.Kg = as_int(cg.Kg(), op, "K/groups");
  p.sh = cg.sh, p.sw = cg.sw, p.pt = cg.pt, p.pl = cg.pl, p.dh = cg.dh, p.dw = cg.dw;
  // Offsets inside one image (all channels) are int.
  as_int(cg.C * cg.hw(), op, "C*H*W");
  as_int(cg.K * cg.pq(), op, "K*P*Q");
  p.tap_rs = as_int(cg.rs(), op, "R*S");
  p.tap_s = p.S;
  p.r0 = p.s0 = 0;
  p.step_r = p.step_s = 1;
  p.Hi = p.Wj = 0;
  p.tf32 = cg.tf32;
  return p;
}

// One implicit GEMM (plus the split-K sum): p complete but for the split fields.
template <Pass PASS>
void run_igemm(Ctx& ctx, const char* op, Gemm p) {
  if (p.M == 0 || p.Ncols == 0 || p.G == 0) return;
  const int bm = p.M > 64 ? 128 : 64;
  const long long tiles_n = (p.Ncols + kBN - 1) / kBN, tiles_m = (p.M + bm - 1) / bm;
  const int ktiles = (p.Kdim + kBK - 1) / kBK;
  SAL_CHECK(tiles_m <= 65535, op, ": ", p.M, " GEMM rows is too many for the grid");
  // Split K when the grid leaves multiprocessors idle: aim at two blocks per multiprocessor, at
  // least kMinKtPerSplit K tiles per split, and a workspace of at most 2^26 floats (256 MB).
  const long long blocks = tiles_n * tiles_m * p.G;
  const long long target = 2LL * sm_count();
  long long splits = 1;
  if (blocks < target && ktiles >= 2 * kMinKtPerSplit) {
    splits = std::min<long long>((target + blocks - 1) / blocks, ktiles / kMinKtPerSplit);
    const long long out_elems = static_cast<long long>(p.G) * p.M * p.Ncols;
    splits = std::max<long long>(1, std::min<long long>(splits, (1LL << 26) / std::max<long long>(out_elems, 1)));
  }
  p.kt_per_split = static_cast<int>((ktiles + splits - 1) / splits);
  if (p.kt_per_split == 0) p.kt_per_split = 1;  // Kdim == 0: one (empty) split writes zeros or the bias
  splits = ktiles ? (ktiles + p.kt_per_split - 1) / p.kt_per_split : 1;  // no empty splits
  p.splits = static_cast<int>(splits);
  SAL_CHECK(static_cast<long long>(p.G) * splits <= 65535, op, ": groups x splits = ", p.G * splits,
            " is too many for the grid");

  DeviceScratch scratch(ctx);
  p.ws = p.splits > 1 ? scratch.floats(splits * p.G * static_cast<long long>(p.M) * p.Ncols) : nullptr;
  const bool vec_a = PASS != Pass::Wgrad && p.Kdim % 4 == 0 && aligned16(p.a);
  const dim3 grid(static_cast<unsigned>(tiles_n), static_cast<unsigned>(tiles_m), static_cast<unsigned>(p.G * splits));
  if (bm == 128)
    launch_bm<PASS, 128>(ctx, op, p, grid, vec_a);
  else
    launch_bm<PASS, 64>(ctx, op, p, grid, vec_a);
  if (p.splits > 1) finish_splits(ctx, op, p.ws, p.splits, p);
}

// The taps of one stride phase along one axis: the kernel offsets r < R with (a + pad - r*dil)
// divisible by stride are first, first + step, ... (count of them; step = stride / gcd).
struct PhaseTaps {
  int first = 0, step = 1, count = 0;
};
PhaseTaps phase_taps(int a, int pad, int dil, int stride, int R) {
  PhaseTaps t;
  t.step = stride / std::gcd(stride, dil);
  for (int r = 0; r < t.step && r < R; ++r) {
    if (((a + pad - r * dil) % stride + stride) % stride == 0) {
      t.first = r;
      t.count = (R - 1 - r) / t.step + 1;
      break;
    }
  }
  return t;
}

DwGeom dw_geom(const char* op, const ConvGeom& g) {
  as_int(g.N * g.C * std::max(g.hw(), g.pq()), op, "N*C*H*W");
  return DwGeom{static_cast<int>(g.N),
                static_cast<int>(g.C),
                static_cast<int>(g.H),
                static_cast<int>(g.W),
                static_cast<int>(g.P),
                static_cast<int>(g.Q),
                static_cast<int>(g.R),
                static_cast<int>(g.S),
                g.sh,
                g.sw,
                g.pt,
                g.pl,
                g.dh,
                g.dw};
}

// Splits of a per-channel reduction over E elements with `channels` blocks: enough blocks for two
// per multiprocessor, at least 4096 elements per split.
long long reduction_splits(long long channels, long long E) {
  const long long target = 2LL * sm_count();
  if (channels >= target || E <= 8192) return 1;
  return std::clamp<long long>((target + channels - 1) / channels, 1, std::min<long long>(E / 4096, 65535));
}

}  // namespace

void custom_conv_forward(Ctx& ctx, const ConvGeom& g, const float* x, const float* w, const ConvEpilogue& epi,
                         float* y) {
  const char* op = "conv2d forward (custom)";
  if (g.N == 0 || g.K == 0 || g.pq() == 0) return;
  if (g.depthwise() && g.C > 0) {
    const DwGeom d = dw_geom(op, g);
    const long long total = g.N * g.K * g.pq();
    dw_forward_kernel<<<grid_for(total), 256, 0, stream_of(ctx)>>>(d, x, w, epi, y, total);
    SAL_CUDA_LAUNCH_CHECK(op);
    return;
  }
  Gemm p = base_gemm(op, g);
  p.M = p.Kg;
  p.Kdim = as_int(g.crs(), op, "C/groups*R*S");
  p.Ncols = as_int(g.N * g.pq(), op, "N*P*Q");
  p.plane = as_int(g.pq(), op, "P*Q");
  p.img_stride = g.K * g.pq();
  p.a = w, p.b = x, p.bias = epi.bias, p.out = y, p.accumulate = false;
  p.epi = epi;
  p.epi.bias = nullptr;  // added as p.bias, before the rest
  run_igemm<Pass::Fwd>(ctx, op, p);
}

void custom_conv_dgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* w, const float* bias, float* dx) {
  const char* op = "conv2d dgrad (custom)";
  if (g.N == 0 || g.C == 0 || g.hw() == 0) return;
  if (g.depthwise() && g.pq() > 0) {
    const DwGeom d = dw_geom(op, g);
    const long long total = g.N * g.C * g.hw();
    dw_dgrad_kernel<<<grid_for(total), 256, 0, stream_of(ctx)>>>(d, dy, w, dx, total);
    SAL_CUDA_LAUNCH_CHECK(op);
    if (bias) channel_bias_add(ctx, dx, bias, g.N, g.C, g.hw());
    return;
  }
  // One GEMM per stride phase (pa, pb); A = the phase's weights transposed into [G, Cg, Kg*taps],
  // one arena buffer reused by the phases in stream order.
  DeviceScratch scratch(ctx);
  float* wT = scratch.floats(g.K * g.crs());
  Gemm base = base_gemm(op, g);
  base.M = base.Cg;
  base.plane = as_int(g.hw(), op, "H*W");
  base.img_stride = g.C * g.hw();
  base.b = dy, base.bias = bias, base.out = dx, base.accumulate = false;
  for (int pa = 0; pa < g.sh; ++pa) {
    for (int pb = 0; pb < g.sw; ++pb) {
      Gemm p = base;
      p.pa = pa, p.pb = pb;
      p.Hi = pa < base.H ? (base.H - pa + g.sh - 1) / g.sh : 0;
      p.Wj = pb < base.W ? (base.W - pb + g.sw - 1) / g.sw : 0;
      if (p.Hi == 0 || p.Wj == 0) continue;
      const PhaseTaps tr = phase_taps(pa, g.pt, g.dh, g.sh, base.R), ts = phase_taps(pb, g.pl, g.dw, g.sw, base.S);
      p.r0 = tr.first, p.step_r = tr.step, p.s0 = ts.first, p.step_s = ts.step;
      p.tap_s = ts.count;
      p.tap_rs = tr.count * ts.count;
      p.Kdim = as_int(g.Kg() * p.tap_rs, op, "K/groups*R*S");
      p.Ncols = as_int(g.N * p.Hi * static_cast<int64_t>(p.Wj), op, "N*H*W");
      p.a = wT;
      const long long wn = g.K * g.Cg() * p.tap_rs;
      if (wn > 0) {  // no taps reach this phase: Kdim = 0 and the GEMM writes zeros (plus the bias)
        transpose_weights_kernel<<<grid_for(wn), 256, 0, stream_of(ctx)>>>(w, wT, p, wn);
        SAL_CUDA_LAUNCH_CHECK(op);
      }
      run_igemm<Pass::Dgrad>(ctx, op, p);
    }
  }
}

void custom_conv_wgrad(Ctx& ctx, const ConvGeom& g, const float* dy, const float* x, float* dw) {
  const char* op = "conv2d wgrad (custom)";
  if (g.N == 0 || g.K == 0 || g.pq() == 0 || g.crs() == 0) return;
  if (g.depthwise()) {
    const DwGeom d = dw_geom(op, g);
    const long long E = g.N * g.pq();
    const long long splits = reduction_splits(g.C, E);
    const long long per_split = (E + splits - 1) / splits;
    DeviceScratch scratch(ctx);
    float* part = splits > 1 ? scratch.floats(splits * g.C * g.rs()) : nullptr;
    dw_wgrad_kernel<<<dim3(static_cast<unsigned>(g.C), static_cast<unsigned>(splits)), kRedThreads, 0,
                      stream_of(ctx)>>>(d, dy, x, dw, part, per_split);
    SAL_CUDA_LAUNCH_CHECK(op);
    if (splits > 1) {
      finish_linear(ctx, op, part, static_cast<int>(splits), dw, static_cast<int>(g.C * g.rs()));
    }
    return;
  }
  Gemm p = base_gemm(op, g);
  p.M = p.Kg;
  p.Kdim = as_int(g.N * g.pq(), op, "N*P*Q");
  p.Ncols = as_int(g.crs(), op, "C/groups*R*S");
  p.plane = p.Ncols;
  p.img_stride = 0;
  p.a = dy, p.b = x, p.bias = nullptr, p.out = dw, p.accumulate = true;
  run_igemm<Pass::Wgrad>(ctx, op, p);
}

void channel_bias_add(Ctx& ctx, float* y, const float* bias, int64_t n, int64_t k, int64_t plane) {
  channel_epilogue(ctx, y, ConvEpilogue{bias}, n, k, plane);
}

void bn_epilogue_scale(Ctx& ctx, const float* gamma, const float* var, double eps, int64_t k, float* scale) {
  if (k == 0) return;
  const int K = as_int(k, "conv epilogue", "channels");
  bn_scale_kernel<<<(K + 255) / 256, 256, 0, stream_of(ctx)>>>(gamma, var, eps, K, scale);
  SAL_CUDA_LAUNCH_CHECK("conv epilogue scale");
}

void channel_epilogue(Ctx& ctx, float* y, const ConvEpilogue& epi, int64_t n, int64_t k, int64_t plane) {
  const long long total = n * k * plane;
  if (total == 0 || !epi.any()) return;
  epilogue_kernel<<<grid_for(total), 256, 0, stream_of(ctx)>>>(y, epi, static_cast<int>(k), plane, total);
  SAL_CUDA_LAUNCH_CHECK("conv epilogue");
}

void channel_sum_add(Ctx& ctx, const float* dy, int64_t n, int64_t k, int64_t plane, float* db) {
  const char* op = "bias gradient";
  if (k == 0) return;
  const long long E = n * plane;
  if (E == 0) return;
  as_int(k, op, "channels");
  as_int(n, op, "N");
  const long long splits = reduction_splits(k, E);
  const long long per_split = (E + splits - 1) / splits;
  DeviceScratch scratch(ctx);
  float* part = splits > 1 ? scratch.floats(splits * k) : nullptr;
  channel_sum_kernel<<<dim3(static_cast<unsigned>(k), static_cast<unsigned>(splits)), kRedThreads, 0, stream_of(ctx)>>>(
      dy, static_cast<int>(n), static_cast<int>(k), plane, db, part, per_split);
  SAL_CUDA_LAUNCH_CHECK(op);
  if (splits > 1) finish_linear(ctx, op, part, static_cast<int>(splits), db, static_cast<int>(k));
}

}  // namespace sal::cuda
