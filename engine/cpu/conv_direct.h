// CPU backend: a direct 3x3 convolution for 8-128 channels (AVX-512 or AVX2, f32), stride 1 or 2 (8-64 channels),
// and its input gradient, beside the im2col + GEMM path of engine/cpu/conv.cpp, which runs it where it applies.
//
// Why: with 8..128 channels (CIFAR's ResNet, the black box of every CIFAR training step; ResNet-50's first
// two stages; the maskers' decoder blocks) the GEMM of the im2col path has M = 8..128 rows, where OpenBLAS
// reaches 36-80% of the machine's peak, and im2col plus the GEMM's operand packing cost a third again. Here
// each block of 8 output channels x 32 output positions (of the flattened output plane, across rows) lives
// in 16 vector registers while all the taps of all input channels are added, the input read straight from
// the image with masked loads (the masks are the padding and the row ends).
//
// What it computes: the 3x3 convolution with dilation 1, padding 1 and one group, at stride 1 keeping the
// plane size ("same") or at stride 2 halving an even plane, y[n][k][p][q] = sum over c, r, s of
// w[k][c][r][s] x[n][c][sp+r-1][sq+s-1], without bias or epilogue (the caller applies those to each
// block's rows while they are in cache); and its input gradient dx = conv^T(dy).
// - Stride 1: the input gradient is the same kind of convolution of dy with the transposed weights flipped
//   in r and s (tap r reads dy at row h + 1 - r).
// - Stride 2 (polyphase): the input is first split into its four phase planes x_ab[i][j] = x[2i+a][2j+b],
//   each P x Q; tap r reads phase a = (r != 1) at row offset -1 for r = 0, else 0 (columns alike), so all
//   nine taps are shifted reads of P x Q planes, as at stride 1, with nine FMAs per output as at stride 1.
//   The input gradient, phase by phase: dx_ab[i][j] gathers the taps with 2p + r - 1 = 2i + a, i.e. for
//   a = 0 tap r = 1 at p = i, for a = 1 taps r = 0 at p = i + 1 and r = 2 at p = i (1, 2, 2 and 4 taps for
//   the phases (0,0), (0,1), (1,0), (1,1): nine in all again), each a shifted read of dy; a task's four
//   phase blocks are interleaved into dx while they are in cache.
#pragma once
#include <cstdint>

#include "engine/cpu/im2col.h"
#include "engine/cpu/path_switch.h"

namespace sal::cpu {

// Output channels per block (the weights are packed in blocks of this many).
inline constexpr int64_t kDirectBlockK = 8;

// The two computations of a forward geometry g (input [N,C,H,W], weights [K,C,3,3], output [N,K,P,Q]):
// forward: x -> y; dgrad: dy -> dx (input channels K, output channels C).
enum class Direct3x3Pass { forward, dgrad };

// Whether the direct kernel runs this forward geometry and its input gradient: the CPU has AVX-512 or AVX2, 3x3
// with dilation and padding 1, one group, either stride 1 keeping the size (P = H, Q = W) with 8 to 128
// input and output channels or stride 2 on an even plane (H = 2P, W = 2Q) with 8 to 64, and an output plane
// that fills at least 7/8 of its blocks' lanes (a 7x7 plane fills 49 of its 64 and takes the GEMM path).
// The measured range where it beats the GEMM path (bench/RESULTS.md): at 256 channels (128 at stride 2)
// OpenBLAS is as fast or ahead, with fewer than 8 the channel blocks or the taps are too short; the AVX2
// kernel stops at 32 channels, or 64 on output planes of at most 256 positions. f32 only: the caller checks
// the type.
bool direct3x3_applies(const ConvGeom& g);
// The kernel this CPU runs: AVX-512 (8 output channels x 32 positions in 16 of its 32 registers), AVX2 with FMA
// (8 channels x 8 positions in 8 of its 16, the 32 positions of a block in four steps; the CPUs without
// AVX-512: AMD's before Zen 4, Intel's desktop parts), or none (every convolution takes the GEMM path). Both
// add the products in the same order, so they give the same bits.
enum class DirectIsa { None, Avx2, Avx512 };
DirectIsa direct3x3_isa();
// Whether this CPU can run it at all (AVX-512F, or AVX2 and FMA).
bool direct3x3_available();
// On by default; SAL_CPU_DIRECT_AVX512=0 (read at the first use) or this switch makes an AVX-512 CPU run the
// AVX2 kernel (tests and benchmarks of the AVX2 kernel on such a CPU). Winograd (conv_winograd.h), written
// for AVX-512 only, is then off too, as on a CPU without it.
void set_direct3x3_avx512_enabled(bool on);
bool direct3x3_avx512_enabled();
using DirectAvx512Switch = ScopedPathSwitch<direct3x3_avx512_enabled, set_direct3x3_avx512_enabled>;
// On by default; SAL_CPU_DIRECT_CONV=0 (read at the first convolution) or this switch turns it off, and
// every convolution then takes the GEMM path (for comparisons and the tests). Process-wide; not while a
// convolution runs.
void set_direct3x3_enabled(bool on);
bool direct3x3_enabled();
// Sets the switch for a scope and restores the previous setting at its end (tests, benchmarks).
using Direct3x3Switch = ScopedPathSwitch<direct3x3_enabled, set_direct3x3_enabled>;

// Convolutions the kernel has run in this process (one per direct3x3_pack: once per op call), for tests.
int64_t direct3x3_runs();

// Floats of the packed weights (the pass's output channels rounded up to whole blocks, x input channels x 9).
int64_t direct3x3_packed_size(const ConvGeom& g, Direct3x3Pass pass);
// w:[K,C,3,3] (the forward conv's weights, for either pass) -> wp: per block of 8 output channels of the
// pass, per phase (one at stride 1 and for the stride-2 forward, four for the stride-2 input gradient), per
// input channel of the pass, per tap of the phase, 8 weights (channel tail zero).
void direct3x3_pack(const ConvGeom& g, Direct3x3Pass pass, const float* w, float* wp);

// Which lanes of each block's loads read inside the plane, for row and column offsets -1, 0, +1: for the
// AVX-512 kernel 18 masks of 16 bits (offset dr, ds; vector j) per block of 32 positions of the output plane
// P x Q (the phase plane of the stride-2 input gradient is P x Q too), for the AVX2 kernel 9 x 24 lanes (0 or
// -1) per span of 24 positions; direct3x3_mask_count(g) in all, filled once per call and shared by the tasks.
int64_t direct3x3_mask_count(const ConvGeom& g);
void direct3x3_masks(const ConvGeom& g, int32_t* masks);

// The stride-2 forward reads its input as phase planes: whether this pass needs them, and one plane's
// split, x:[H,W] -> xs:[4][P][Q] (phase a*2+b holds x[2i+a][2j+b]; as many floats as the plane, so an
// image's C split planes take [C][4][P][Q] = [C][H][W] floats).
bool direct3x3_splits_input(const ConvGeom& g, Direct3x3Pass pass);
void direct3x3_split_plane(const ConvGeom& g, const float* x, float* xs);

// Floats of scratch one task needs (the stride-2 input gradient's four phase blocks before they are
// interleaved into dx; 0 otherwise).
int64_t direct3x3_task_scratch(const ConvGeom& g, Direct3x3Pass pass);

// Blocks of output channels of the pass (tasks per image).
int64_t direct3x3_blocks(const ConvGeom& g, Direct3x3Pass pass);

// One task: one image's input of the pass (forward: x:[C,H,W], split into phases at stride 2; dgrad: dy:[K,P,Q],
// gated by the caller), its output channels [b*8, b*8 + 8) (fewer at the tail) -> that image's output
// (forward: y:[K,P,Q]; dgrad: dx:[C,H,W]), those channels' planes only (overwritten). scratch: the task's
// direct3x3_task_scratch floats.
void direct3x3_block(const ConvGeom& g, Direct3x3Pass pass, const int32_t* masks, const float* in, const float* wp,
                     int64_t b, float* out, float* scratch);

}  // namespace sal::cpu
