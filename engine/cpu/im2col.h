// CPU backend: convolution geometry and the im2col / col2im lowering shared by conv2d and
// conv_transpose2d (engine/cpu/conv.cpp).
#pragma once
#include <cstdint>

namespace sal::cpu {

// One convolution in its "forward" orientation: input [N,C,H,W], weight [K,C/G,R,S],
// output [N,K,P,Q]. conv_transpose2d uses the same struct with the roles swapped (its output is
// this struct's input). P and Q come from the output tensor, not from a formula, so a transposed
// conv whose output_padding leaves rows no tap reaches is described exactly.
struct ConvGeom {
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t K = 0, P = 0, Q = 0;
  int64_t R = 0, S = 0;
  int64_t G = 1, Cg = 0, Kg = 0;
  int64_t sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1;

  int64_t hw() const { return H * W; }
  int64_t pq() const { return P * Q; }
  int64_t crs() const { return Cg * R * S; }  // rows of the column matrix of one group
  // One input and one output channel per group: done by the direct depthwise loops.
  bool depthwise() const { return Cg == 1 && Kg == 1; }
  // The input image already is the GEMM operand: no im2col needed.
  bool pointwise() const {
    return R == 1 && S == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && P == H && Q == W;
  }
};

// For kernel column offset `off` (= s*dw - pad_left): the output columns q in [lo, hi) whose
// input column q*stride + off lies inside [0, W).
struct QRange {
  int64_t lo, hi;
};
inline QRange valid_q(int64_t off, int64_t stride, int64_t W, int64_t Q) {
  int64_t lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  int64_t hi = (W - 1 - off) < 0 ? 0 : (W - 1 - off) / stride + 1;
  if (lo > Q) lo = Q;
  if (hi > Q) hi = Q;
  if (hi < lo) hi = lo;
  return {lo, hi};
}

// x: nb images of one group, x[b] at x + b*C*H*W, channels [0, Cg) of that group
// -> col: [Cg*R*S, nb*P*Q] with row stride ldcol; image b fills columns [b*P*Q, (b+1)*P*Q).
// Padding taps are written as zeros. `parallel`: OpenMP over rows (call outside a parallel region).
template <class T>
void im2col(const ConvGeom& g, const T* x, int64_t nb, T* col, int64_t ldcol, bool parallel);

// The adjoint: dx[b, c, h, w] = the sum of every column entry that im2col copied from
// (b, c, h, w); dx (laid out like x above) is overwritten, each plane zeroed just before its
// sums so that no separate pass over dx is needed. `parallel`: OpenMP over (image, channel) planes.
template <class T>
void col2im(const ConvGeom& g, const T* col, int64_t ldcol, int64_t nb, T* dx, bool parallel);

}  // namespace sal::cpu
