// CPU backend: a direct 3x3 convolution for 8-128 channels (AVX-512, f32), beside the im2col + GEMM
// path of engine/cpu/conv.cpp, which runs it where it applies.
//
// Why: with 8..128 channels (CIFAR's ResNet, the black box of every CIFAR training step; ResNet-50's first
// two stages; the maskers' decoder blocks) the GEMM of the im2col path has M = 8..128 rows, where OpenBLAS
// reaches 36-80% of the machine's peak, and im2col plus the GEMM's operand packing cost a third again. Here
// each block of 8 output channels x 32 output positions (of the flattened plane, across rows) lives in 16
// vector registers while all C*9 taps are added, the input read straight from the image with masked loads
// (the masks are the padding and the row ends).
//
// What it computes: the stride-1, dilation-1, padding-1, ungrouped 3x3 convolution that keeps the plane
// size ("same"), y[n][k] = sum over c, r, s of w[k][c][r][s] x[n][c][p+r-1][q+s-1], without bias or
// epilogue (the caller applies those to each block's rows while they are in cache). Its input gradient at
// stride 1 is the same kind of convolution of dy with the flipped, transposed weights, so the same kernel
// serves conv2d_dgrad (pack with flip = true).
#pragma once
#include <cstdint>

#include "engine/cpu/im2col.h"

namespace sal::cpu {

// Output channels per block (the weights are packed in blocks of this many).
inline constexpr int64_t kDirectBlockK = 8;

// Whether the direct kernel runs this forward geometry: the CPU has AVX-512, 3x3 with stride, dilation and
// padding 1 keeping the size (P = H, Q = W), one group, 8 to 128 input and output channels, and a plane that
// fills at least 7/8 of its blocks' lanes (a 7x7 plane fills 49 of its 64 and takes the GEMM path). The
// measured range where it beats the GEMM path (bench/RESULTS.md): at 256 channels OpenBLAS is ahead, with
// fewer than 8 the channel blocks or the taps are too short. f32 only: the caller checks the type.
bool direct3x3_applies(const ConvGeom& g);
// Whether this CPU can run it at all (AVX-512F).
bool direct3x3_available();
// On by default; SAL_CPU_DIRECT_CONV=0 (read at the first convolution) or this switch turns it off, and
// every convolution then takes the GEMM path (for comparisons and the tests). Process-wide; not while a
// convolution runs.
void set_direct3x3_enabled(bool on);
bool direct3x3_enabled();
// Sets the switch for a scope and restores the previous setting at its end (tests, benchmarks).
class Direct3x3Switch {
 public:
  explicit Direct3x3Switch(bool on) : was_(direct3x3_enabled()) { set_direct3x3_enabled(on); }
  ~Direct3x3Switch() { set_direct3x3_enabled(was_); }
  Direct3x3Switch(const Direct3x3Switch&) = delete;
  Direct3x3Switch& operator=(const Direct3x3Switch&) = delete;

 private:
  bool was_;
};

// Convolutions the kernel has run in this process (one per direct3x3_pack: once per op call), for tests.
int64_t direct3x3_runs();

// Floats of the packed weights of a geometry (its K rounded up to whole blocks).
int64_t direct3x3_packed_size(const ConvGeom& g);
// w:[K,C,3,3] -> wp:[ceil(K/8)][C][3][3][8] (channel tail zero). flip: w is the weight of the convolution
// whose input gradient g is, [C_g, K_g, 3, 3] in g's terms with g.C = its K and g.K = its C; packed as
// wp[..][c][r][s][k] = w[c][k][2-r][2-s] (the transposed, flipped kernel).
void direct3x3_pack(const ConvGeom& g, const float* w, bool flip, float* wp);

// Which lanes of each block's loads read inside the image (the padding): 18 masks (tap r, s; vector j) per
// block of 32 output positions, direct3x3_mask_count(g) in all, filled once per call and shared by the tasks.
int64_t direct3x3_mask_count(const ConvGeom& g);
void direct3x3_masks(const ConvGeom& g, int32_t* masks);

// One task: image x:[C,H,W] (one image), output channels [kb*8, kb*8 + 8) (fewer at the tail) ->
// y:[K,H,W] of that image, those channels' planes only (overwritten).
void direct3x3_block(const ConvGeom& g, const int32_t* masks, const float* x, const float* wp, int64_t kb, float* y);

}  // namespace sal::cpu
