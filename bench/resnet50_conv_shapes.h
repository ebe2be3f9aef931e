// The distinct conv2d shapes of torchvision's ResNet-50 at 224x224, shared by the conv
// benchmarks (conv_cpu_bench.cpp, conv_cuda_bench.cpp), with the output size and FLOP count.
#pragma once

namespace sal::bench {

struct ConvLayer {
  const char* name;
  int c, k, r, stride, pad, h;  // square kernel r x r, square input h x h
  int count = 1;                 // how many of the network's convolutions have this shape
};

// Every distinct conv shape of torchvision's ResNet-50 (v1.5: the stride sits on the 3x3), with
// the input size it sees at 224x224; "ds" is the projection shortcut of each stage's first block.
inline constexpr ConvLayer kResNet50ConvLayers[] = {
    {"conv1_7x7s2_3to64_224", 3, 64, 7, 2, 3, 224, 1},
    {"l1_1x1_64to64_56", 64, 64, 1, 1, 0, 56, 1},
    {"l1_3x3_64to64_56", 64, 64, 3, 1, 1, 56, 3},
    {"l1_1x1_64to256_56", 64, 256, 1, 1, 0, 56, 4},
    {"l1_1x1_256to64_56", 256, 64, 1, 1, 0, 56, 2},
    {"l2_1x1_256to128_56", 256, 128, 1, 1, 0, 56, 1},
    {"l2_3x3s2_128to128_56to28", 128, 128, 3, 2, 1, 56, 1},
    {"l2_ds_1x1s2_256to512_56to28", 256, 512, 1, 2, 0, 56, 1},
    {"l2_1x1_128to512_28", 128, 512, 1, 1, 0, 28, 4},
    {"l2_1x1_512to128_28", 512, 128, 1, 1, 0, 28, 3},
    {"l2_3x3_128to128_28", 128, 128, 3, 1, 1, 28, 3},
    {"l3_1x1_512to256_28", 512, 256, 1, 1, 0, 28, 1},
    {"l3_3x3s2_256to256_28to14", 256, 256, 3, 2, 1, 28, 1},
    {"l3_ds_1x1s2_512to1024_28to14", 512, 1024, 1, 2, 0, 28, 1},
    {"l3_1x1_256to1024_14", 256, 1024, 1, 1, 0, 14, 6},
    {"l3_1x1_1024to256_14", 1024, 256, 1, 1, 0, 14, 5},
    {"l3_3x3_256to256_14", 256, 256, 3, 1, 1, 14, 5},
    {"l4_1x1_1024to512_14", 1024, 512, 1, 1, 0, 14, 1},
    {"l4_3x3s2_512to512_14to7", 512, 512, 3, 2, 1, 14, 1},
    {"l4_ds_1x1s2_1024to2048_14to7", 1024, 2048, 1, 2, 0, 14, 1},
    {"l4_1x1_512to2048_7", 512, 2048, 1, 1, 0, 7, 3},
    {"l4_1x1_2048to512_7", 2048, 512, 1, 1, 0, 7, 2},
    {"l4_3x3_512to512_7", 512, 512, 3, 1, 1, 7, 2},
};
// (layer1's projection shortcut, 1x1 64->256 at 56, has the shape of l1_1x1_64to256_56: counted there.)
static_assert([] {
  int n = 0;
  for (const ConvLayer& l : kResNet50ConvLayers) n += l.count;
  return n;
}() == 53, "ResNet-50 has 53 convolutions (1 + 3 x 3 + 4 x 3 + 6 x 3 + 3 x 3 + 4 projection shortcuts)");

// Output height (= width) of the layer.
inline int out_size(const ConvLayer& l) { return (l.h + 2 * l.pad - l.r) / l.stride + 1; }

// 2*N*K*C*R*S*P*Q: the FLOPs of one pass of the layer at batch `batch`.
inline double conv_flops(const ConvLayer& l, int batch) {
  const double p = out_size(l);
  return 2.0 * batch * l.k * l.c * l.r * l.r * p * p;
}

}  // namespace sal::bench
