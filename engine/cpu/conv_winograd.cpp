// CPU backend: Winograd F(2x2, 3x3) convolution (see conv_winograd.h).
#include "engine/cpu/conv_winograd.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <utility>

#include "engine/cpu/avx512_block.h"

namespace sal::cpu {

namespace {

constexpr int kKB = static_cast<int>(kDirectBlockK);  // output channels per GEMM block
static_assert(kKB == 8, "fma_8x32 (avx512_block.h) adds blocks of 8 output channels");
constexpr int kSpan = 32;                              // tiles per GEMM block: two vectors
// A chunk's transformed input and products, 16 x (C + K) x tiles floats, kept to 1 MB of the 2 MB L2.
constexpr int64_t kChunkFloats = int64_t(1) << 18;

std::atomic<int64_t> g_runs{0};

// Read from SAL_CPU_WINOGRAD at the first use, then only changed by set_winograd_enabled.
PathSwitch& path_switch() {
  static PathSwitch sw("SAL_CPU_WINOGRAD");
  return sw;
}

struct Dims {
  int64_t cin, cout, P, Q, TH, TW, TT;
};
Dims dims(const ConvGeom& g, Direct3x3Pass pass) {
  const bool fwd = pass == Direct3x3Pass::forward;
  return Dims{fwd ? g.C : g.K, fwd ? g.K : g.C, g.P, g.Q, g.P / 2, g.Q / 2, (g.P / 2) * (g.Q / 2)};
}

// Tiles of a chunk rounded up to whole GEMM blocks: the row length of its transformed input and products.
int64_t chunk_ld(const ConvGeom& g) {
  const int64_t tiles = winograd_chunk_images(g) * (g.P / 2) * (g.Q / 2);
  return (tiles + kSpan - 1) / kSpan * kSpan;
}

// Lanes l of [start, start + 16) that lie in [0, n) (the others are the padding).
__mmask16 lanes_inside(int64_t start, int64_t n) {
  const int64_t lo = std::max<int64_t>(0, -start), hi = std::min<int64_t>(16, n - start);
  return hi <= lo ? __mmask16(0) : static_cast<__mmask16>(first_lanes(hi) & ~first_lanes(lo));
}

// Rows of 2, 4 or 8 tiles fill a vector with 8, 4 or 2 tile rows ("narrow"); wider rows take blocks of 16
// tiles of one row.
bool narrow(const Dims& d) { return d.TW == 2 || d.TW == 4 || d.TW == 8; }

// The row transform u = d B of 16 tiles' rows i: d0..d3 = columns 2tx - 1 .. 2tx + 2 of their input rows.
struct RowT {
  __m512 u[4];
};
__attribute__((target("avx512f"))) inline RowT row_transform(__m512 a, __m512 b, __m512 e, __m512 f) {
  __m512 d0, d1, d2, d3;
  even_odd(a, b, d0, d1);
  even_odd(e, f, d2, d3);
  return RowT{{_mm512_sub_ps(d0, d2), _mm512_add_ps(d1, d2), _mm512_sub_ps(d2, d1), _mm512_sub_ps(d1, d3)}};
}

// v = B^T u for the four rows' transforms, stored to V[(i*4 + j) * xi_stride + t] for 16 tiles (mask mk).
__attribute__((target("avx512f"))) inline void store_tiles(const RowT (&u)[4], __mmask16 mk, float* V,
                                                           int64_t xi_stride) {
  for (int j = 0; j < 4; ++j) {
    const __m512 v[4] = {_mm512_sub_ps(u[0].u[j], u[2].u[j]), _mm512_add_ps(u[1].u[j], u[2].u[j]),
                         _mm512_sub_ps(u[2].u[j], u[1].u[j]), _mm512_sub_ps(u[1].u[j], u[3].u[j])};
    for (int i = 0; i < 4; ++i) _mm512_mask_storeu_ps(V + (i * 4 + j) * xi_stride, mk, v[i]);
  }
}

// The narrow case for one plane x:[P,Q], Q = 2TW: 16 / TW tile rows per vector. In the 32 values a|b, tile
// row q of the vector holds the 2TW input values from column -1 of its row (a piece at 2TW q), so the even
// and odd positions are again d0 and d1 of lanes q TW + tx; e|f the same from column +1. Templated on TW so
// that each piece's masks and register are constants (with them computed per piece the loop spilled a..f to
// the stack and was 9% of a CIFAR training step).
template <int TW, int q>
__attribute__((target("avx512f"), always_inline)) inline void narrow_piece(const Dims& d, const float* x, int64_t ty0,
                                                                          int i, __m512i& a, __m512i& b, __m512i& e,
                                                                          __m512i& f) {
  constexpr int pw = 2 * TW, pos = (q * pw) % 16;
  constexpr auto m01 = static_cast<__mmask16>(((1u << pw) - 2u) << pos);        // column -1 is padding
  constexpr auto m23 = static_cast<__mmask16>(((1u << (pw - 1)) - 1u) << pos);  // column Q is padding
  const int64_t r = 2 * (ty0 + q) - 1 + i;
  if (ty0 + q >= d.TH || r < 0 || r >= d.P) return;  // zeros: padding, or past the last tile row
  const float* row = x + r * pw;
  // Zero-masked loads OR-ed together: merge-masked ones would chain each piece's load on the last.
  const __m512i p01 = _mm512_castps_si512(_mm512_maskz_loadu_ps(m01, row - 1 - pos));
  const __m512i p23 = _mm512_castps_si512(_mm512_maskz_loadu_ps(m23, row + 1 - pos));
  if constexpr (q * pw < 16) {
    a = _mm512_or_si512(a, p01), e = _mm512_or_si512(e, p23);
  } else {
    b = _mm512_or_si512(b, p01), f = _mm512_or_si512(f, p23);
  }
}

// V: tile 0 of the plane, xi_stride between the 16 transformed planes.
template <int TW, int... q>
__attribute__((target("avx512f"))) void narrow_input_tiles(const Dims& d, const float* x, float* V, int64_t xi_stride,
                                                           std::integer_sequence<int, q...>) {
  constexpr int R = 16 / TW;
  for (int64_t ty0 = 0; ty0 < d.TH; ty0 += R) {
    RowT u[4];
    for (int i = 0; i < 4; ++i) {
      __m512i a = _mm512_setzero_si512(), b = a, e = a, f = a;
      (narrow_piece<TW, q>(d, x, ty0, i, a, b, e, f), ...);
      u[i] = row_transform(_mm512_castsi512_ps(a), _mm512_castsi512_ps(b), _mm512_castsi512_ps(e),
                           _mm512_castsi512_ps(f));
    }
    store_tiles(u, first_lanes(d.TT - ty0 * TW), V + ty0 * TW, xi_stride);
  }
}

__attribute__((target("avx512f"))) void narrow_input_tiles(const Dims& d, const float* x, float* V,
                                                           int64_t xi_stride) {
  switch (d.TW) {
    case 2: return narrow_input_tiles<2>(d, x, V, xi_stride, std::make_integer_sequence<int, 8>{});
    case 4: return narrow_input_tiles<4>(d, x, V, xi_stride, std::make_integer_sequence<int, 4>{});
    default: return narrow_input_tiles<8>(d, x, V, xi_stride, std::make_integer_sequence<int, 2>{});
  }
}

// V[xi][c][t] = (B^T d B)[xi] for every tile t of the nimg images of in, channel c; V: [16][cin][ld].
// For 16 tiles of a tile row at once: tile tx's row i holds x[r][2tx - 1 + j], j = 0..3, i.e. from the 32
// values at 2tx0 - 1 on, the even lanes (j = 0) and the odd ones (j = 1); from 2tx0 + 1 on, j = 2 and 3.
// (Loaded straight from x with masks: splitting rows into a buffer first stalled every load on the store.)
__attribute__((target("avx512f"))) void input_transform(const Dims& d, const float* in, int64_t nimg,
                                                        float* V, int64_t ld) {
  const int64_t plane = d.P * d.Q, blocks = (d.TW + 15) / 16;
  // The load masks of each block of 16 tiles (columns 2tx - 1 + [0, 16), + 16, + 2, + 18 inside the row).
  __mmask16 masks[64][4];
  for (int64_t tb = 0; tb < blocks; ++tb)
    for (int q = 0; q < 4; ++q) masks[tb][q] = lanes_inside(32 * tb - 1 + (q % 2) * 16 + (q / 2) * 2, d.Q);
  for (int64_t n = 0; n < nimg; ++n)
    for (int64_t c = 0; c < d.cin; ++c) {
      const float* x = in + (n * d.cin + c) * plane;
      if (narrow(d)) {
        narrow_input_tiles(d, x, V + c * ld + n * d.TT, d.cin * ld);
        continue;
      }
      for (int64_t ty = 0; ty < d.TH; ++ty)
        for (int64_t tb = 0; tb < blocks; ++tb) {
          const int64_t tx = 16 * tb;
          const __mmask16 mk = first_lanes(d.TW - tx), *lm = masks[tb];
          RowT u[4];
          for (int i = 0; i < 4; ++i) {
            const int64_t r = 2 * ty - 1 + i;
            __m512 a = _mm512_setzero_ps(), b = a, e = a, f = a;
            if (r >= 0 && r < d.P) {
              const float* src = x + r * d.Q + 2 * tx - 1;  // masked lanes are not read (no fault before x)
              a = _mm512_maskz_loadu_ps(lm[0], src), b = _mm512_maskz_loadu_ps(lm[1], src + 16);
              e = _mm512_maskz_loadu_ps(lm[2], src + 2), f = _mm512_maskz_loadu_ps(lm[3], src + 18);
            }
            u[i] = row_transform(a, b, e, f);
          }
          store_tiles(u, mk, V + c * ld + n * d.TT + ty * d.TW + tx, d.cin * ld);
        }
    }
}

// M[xi][k][t] = sum over c of U[xi][k][c] V[xi][c][t], all xi, k < cout, t < ld (a multiple of 32).
__attribute__((target("avx512f"))) void products(const Dims& d, const float* U, const float* V, int64_t ld, float* M) {
  const int64_t blocks = (d.cout + kKB - 1) / kKB;
  for (int xi = 0; xi < 16; ++xi) {
    const float* Vx = V + xi * d.cin * ld;
    for (int64_t kb = 0; kb < blocks; ++kb) {
      const float* Ub = U + (xi * blocks + kb) * d.cin * kKB;
      const int kn = static_cast<int>(std::min<int64_t>(kKB, d.cout - kb * kKB));
      for (int64_t t0 = 0; t0 < ld; t0 += kSpan) {
        __m512 acc[kKB][2];
#pragma GCC unroll 8
        for (int k = 0; k < kKB; ++k) acc[k][0] = acc[k][1] = _mm512_setzero_ps();
        for (int64_t c = 0; c < d.cin; ++c) {
          const __m512 v0 = _mm512_loadu_ps(Vx + c * ld + t0), v1 = _mm512_loadu_ps(Vx + c * ld + t0 + 16);
          fma_8x32(acc, Ub + c * kKB, v0, v1);
        }
        for (int k = 0; k < kn; ++k) {
          float* m = M + (xi * d.cout + kb * kKB + k) * ld + t0;
          _mm512_storeu_ps(m, acc[k][0]);
          _mm512_storeu_ps(m + 16, acc[k][1]);
        }
      }
    }
  }
}

// A^T m A of 16 tiles: m[xi] at src + xi * xs (mask mk). lohi[a] = [lo|hi]: output row a of each tile
// with its two columns interleaved, i.e. the 32 values of the 16 tiles' row a in order.
__attribute__((target("avx512f"))) void output_tiles(const float* src, int64_t xs, __mmask16 mk, __m512 (&lohi)[2][2]) {
  __m512 s[2][4];
  for (int j = 0; j < 4; ++j) {
    const __m512 m0 = _mm512_maskz_loadu_ps(mk, src + (0 + j) * xs);
    const __m512 m1 = _mm512_maskz_loadu_ps(mk, src + (4 + j) * xs);
    const __m512 m2 = _mm512_maskz_loadu_ps(mk, src + (8 + j) * xs);
    const __m512 m3 = _mm512_maskz_loadu_ps(mk, src + (12 + j) * xs);
    s[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
    s[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
  }
  for (int a = 0; a < 2; ++a) {
    const __m512 y0 = _mm512_add_ps(_mm512_add_ps(s[a][0], s[a][1]), s[a][2]);
    const __m512 y1 = _mm512_sub_ps(_mm512_sub_ps(s[a][1], s[a][2]), s[a][3]);
    zip(y0, y1, lohi[a][0], lohi[a][1]);
  }
}

// The narrow case of one output plane y:[P,Q], Q = 2TW: 16 / TW tile rows per vector, tile row q's 2TW
// outputs of row a at 2TW q in [lo|hi] (templated like narrow_input_tiles).
template <int TW, int q>
__attribute__((target("avx512f"), always_inline)) inline void narrow_store(const Dims& d, int64_t ty0,
                                                                          const __m512 (&lohi)[2][2], float* y) {
  constexpr int pw = 2 * TW, pos = (q * pw) % 16;
  constexpr auto m = static_cast<__mmask16>(((1u << pw) - 1u) << pos);
  if (ty0 + q >= d.TH) return;
  for (int a = 0; a < 2; ++a) _mm512_mask_storeu_ps(y + (2 * (ty0 + q) + a) * pw - pos, m, lohi[a][q * pw / 16]);
}

template <int TW, int... q>
__attribute__((target("avx512f"))) void narrow_output_tiles(const Dims& d, const float* m_plane, int64_t xs, float* y,
                                                            std::integer_sequence<int, q...>) {
  for (int64_t ty0 = 0; ty0 < d.TH; ty0 += 16 / TW) {
    __m512 lohi[2][2];
    output_tiles(m_plane + ty0 * TW, xs, first_lanes(d.TT - ty0 * TW), lohi);
    (narrow_store<TW, q>(d, ty0, lohi, y), ...);
  }
}

// out[n][k] 2x2 tiles = A^T M A for the nimg images of out.
__attribute__((target("avx512f"))) void output_transform(const Dims& d, const float* M, int64_t ld,
                                                         int64_t nimg, float* out) {
  const int64_t plane = d.P * d.Q, xs = d.cout * ld;  // xs: between the 16 transformed planes
  for (int64_t n = 0; n < nimg; ++n)
    for (int64_t k = 0; k < d.cout; ++k) {
      float* y = out + (n * d.cout + k) * plane;
      const float* mk_plane = M + k * ld + n * d.TT;
      if (narrow(d)) {
        switch (d.TW) {
          case 2: narrow_output_tiles<2>(d, mk_plane, xs, y, std::make_integer_sequence<int, 8>{}); break;
          case 4: narrow_output_tiles<4>(d, mk_plane, xs, y, std::make_integer_sequence<int, 4>{}); break;
          default: narrow_output_tiles<8>(d, mk_plane, xs, y, std::make_integer_sequence<int, 2>{});
        }
        continue;
      }
      for (int64_t ty = 0; ty < d.TH; ++ty)
        for (int64_t tx = 0; tx < d.TW; tx += 16) {
          const int64_t m = std::min<int64_t>(16, d.TW - tx);
          __m512 lohi[2][2];
          output_tiles(mk_plane + ty * d.TW + tx, xs, first_lanes(m), lohi);
          for (int a = 0; a < 2; ++a) {
            float* row = y + (2 * ty + a) * d.Q + 2 * tx;
            _mm512_mask_storeu_ps(row, first_lanes(2 * m), lohi[a][0]);
            _mm512_mask_storeu_ps(row + 16, first_lanes(2 * m - 16), lohi[a][1]);
          }
        }
    }
}

}  // namespace

bool winograd_applies(const ConvGeom& g, int threads) {
  if (!winograd_enabled() || direct3x3_isa() != DirectIsa::Avx512) return false;  // its kernels are AVX-512 only
  if (!direct3x3_applies(g) || g.sh != 1 || g.P % 2 != 0 || g.Q % 2 != 0) return false;
  if (g.Q > 2048) return false;  // input_transform keeps the masks of up to 64 blocks of 16 tiles
  if (g.C < 32 || g.K < 32) return false;  // the transforms, O(C) per tile, outweigh the products' O(C K) saving
  const int64_t step = winograd_chunk_images(g);
  return (g.N + step - 1) / step >= 2 * int64_t(threads);
}

void set_winograd_enabled(bool on) { path_switch().set(on); }

bool winograd_enabled() { return path_switch().on(); }

int64_t winograd_runs() { return g_runs.load(); }

int64_t winograd_chunk_images(const ConvGeom& g) {
  const int64_t tiles = (g.P / 2) * (g.Q / 2);
  return std::max<int64_t>(1, kChunkFloats / (16 * (g.C + g.K) * std::max<int64_t>(tiles, 1)));
}

int64_t winograd_packed_size(const ConvGeom& g, Direct3x3Pass pass) {
  const Dims d = dims(g, pass);
  return 16 * ((d.cout + kKB - 1) / kKB) * kKB * d.cin;
}

int64_t winograd_task_scratch(const ConvGeom& g, Direct3x3Pass pass) {
  const Dims d = dims(g, pass);
  return 16 * (d.cin + d.cout) * chunk_ld(g);
}

void winograd_pack(const ConvGeom& g, Direct3x3Pass pass, const float* w, float* U) {
  g_runs.fetch_add(1);
  const Dims d = dims(g, pass);
  const bool fwd = pass == Direct3x3Pass::forward;
  const int64_t blocks = (d.cout + kKB - 1) / kKB;
  std::fill(U, U + winograd_packed_size(g, pass), 0.f);
  // In double, then rounded once; over the threads (64 x 64 channels: 0.07 ms on one, 10% of a batch-32 call).
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < d.cout; ++o)
    for (int64_t i = 0; i < d.cin; ++i) {
      double k3[3][3];  // the kernel of output o, input i: w[o][i] forward, w[i][o] flipped for the gradient
      for (int r = 0; r < 3; ++r)
        for (int s = 0; s < 3; ++s)
          k3[r][s] = fwd ? w[(o * g.C + i) * 9 + r * 3 + s] : w[(i * g.C + o) * 9 + (2 - r) * 3 + (2 - s)];
      double h[4][3], u[4][4];  // h = G g, u = h G^T
      for (int s = 0; s < 3; ++s) {
        h[0][s] = k3[0][s], h[3][s] = k3[2][s];
        h[1][s] = 0.5 * (k3[0][s] + k3[1][s] + k3[2][s]), h[2][s] = 0.5 * (k3[0][s] - k3[1][s] + k3[2][s]);
      }
      for (int a = 0; a < 4; ++a) {
        u[a][0] = h[a][0], u[a][3] = h[a][2];
        u[a][1] = 0.5 * (h[a][0] + h[a][1] + h[a][2]), u[a][2] = 0.5 * (h[a][0] - h[a][1] + h[a][2]);
      }
      for (int xi = 0; xi < 16; ++xi)
        U[((xi * blocks + o / kKB) * d.cin + i) * kKB + o % kKB] = static_cast<float>(u[xi / 4][xi % 4]);
    }
}

void winograd_chunk(const ConvGeom& g, Direct3x3Pass pass, const float* U, const float* in,
                    int64_t nimg, float* out, float* scratch) {
  const Dims d = dims(g, pass);
  const int64_t ld = chunk_ld(g), tiles = nimg * d.TT;
  float* V = scratch;
  float* M = V + 16 * d.cin * ld;
  // The columns past the chunk's tiles are read by the last GEMM block: zeros, so its products stay finite.
  if (tiles < ld)
    for (int64_t r = 0; r < 16 * d.cin; ++r) std::fill(V + r * ld + tiles, V + (r + 1) * ld, 0.f);
  input_transform(d, in, nimg, V, ld);
  products(d, U, V, ld, M);
  output_transform(d, M, ld, nimg, out);
}

}  // namespace sal::cpu
