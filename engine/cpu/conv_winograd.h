// CPU backend: Winograd F(2x2, 3x3) for the stride-1 "same" 3x3 convolution and its input gradient (AVX-512,
// f32), beside the direct kernel (conv_direct.h) for training-sized batches.
//
// Why: the direct kernel already runs the CIFAR ResNets' 3x3 layers at 80-90% of the cores' f32 peak, and
// they are still most of a CIFAR training step (the frozen black box's forward and input gradient). Winograd's
// minimal filtering computes each 2x2 output tile from a 4x4 input tile with 16 products per channel pair
// instead of 36: the element-wise products become 16 small GEMMs (one per transformed tap) with 2.25x fewer
// multiply-adds, plus input and output transforms that cost O(C) and O(K) per tile, not O(C K).
//
// What it computes (Lavin & Gray 2016, F(2x2, 3x3)): per 2x2 tile of the output and channel pair,
// Y = A^T [ (G g G^T) .* (B^T d B) ] A with d the 4x4 input tile (from row 2ty - 1, column 2tx - 1; the
// padding reads zeros), g the 3x3 kernel, and
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1],
// summed over input channels in the transformed domain. The input gradient at stride 1 is the same
// convolution of dy with the transposed kernel flipped in r and s. Rounding differs from a direct sum (the
// transforms add and subtract tile values before the products, then C products are summed per tile point
// instead of 9C): on the test geometries its worst error against double was 0.6-1.1x the direct kernel's.
//
// Work is done in chunks of whole images, each chunk's transformed input (16 x C x tiles) and products
// (16 x K x tiles) sized to stay in the core's L2, one chunk per task.
#pragma once
#include <cstdint>

#include "engine/cpu/conv_direct.h"
#include "engine/cpu/im2col.h"
#include "engine/cpu/path_switch.h"

namespace sal::cpu {

// Whether Winograd runs this forward geometry's passes: the direct kernel's stride-1 conditions
// (direct3x3_applies: 3x3 "same", at most 128 channels, lanes filled, enabled) on its AVX-512 kernel, an even plane,
// at least 32 input and output channels (with 16 the transforms cost what the products save: measured
// even forward, 0.92x for the input gradient), and enough images for two chunks per thread (smaller
// batches, inference at batch 1 among them, keep the direct kernel, whose tasks split one image's
// channels). Off with SAL_CPU_WINOGRAD=0 (read at the first call) or set_winograd_enabled.
bool winograd_applies(const ConvGeom& g, int threads);
void set_winograd_enabled(bool on);
bool winograd_enabled();
// Sets the switch for a scope and restores the previous setting at its end (tests, benchmarks).
using WinogradSwitch = ScopedPathSwitch<winograd_enabled, set_winograd_enabled>;
// Convolutions it has run (one per winograd_pack), for tests.
int64_t winograd_runs();

// Images per chunk (at least one).
int64_t winograd_chunk_images(const ConvGeom& g);
// Floats of the transformed weights, and of one task's scratch (transformed input and products of a chunk).
int64_t winograd_packed_size(const ConvGeom& g, Direct3x3Pass pass);
int64_t winograd_task_scratch(const ConvGeom& g, Direct3x3Pass pass);
// w:[K,C,3,3] (the forward conv's weights, for either pass) -> U:[16][ceil(cout/8)][cin][8], the transformed
// kernel G g G^T (of the transposed, flipped kernel for the input gradient).
void winograd_pack(const ConvGeom& g, Direct3x3Pass pass, const float* w, float* U);
// One task: nimg images of the pass's input (forward: x:[nimg,C,H,W]; dgrad: dy:[nimg,K,P,Q], gated by the
// caller) -> the same images of its output (y:[nimg,K,P,Q] or dx:[nimg,C,H,W]), overwritten.
void winograd_chunk(const ConvGeom& g, Direct3x3Pass pass, const float* U, const float* in, int64_t nimg,
                    float* out, float* scratch);

}  // namespace sal::cpu
