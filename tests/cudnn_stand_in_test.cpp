// The engine's cuDNN wrapper (cuda/cudnn_conv.cpp) run without a GPU against a CPU stand-in for cuDNN's
// library (tests/cudnn_stand_in/, found first through LD_LIBRARY_PATH, which ctest sets): the wrapper's own
// code runs as on a GPU (descriptors in NCHW and NHWC, the heuristics' results filtered and numbered, plans,
// alpha / beta, the fused convolution + bias + z + activation, errors), the arithmetic is the stand-in's,
// computed from what the descriptors say. What the stand-in cannot show (cuDNN's kernels, streams, workspace
// under a graph, what cuDNN really refuses) is checked on a GPU by tests/cuda_conv_backends.cpp.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/conv_igemm.h"
#include "cuda/cudnn_conv.h"
#include "engine/ops.h"
#include "tests/stand_in_util.h"

using namespace sal;
using cuda::CudnnLayout;
using cuda::CudnnPass;

namespace {

// The stand-in's record of its calls (tests/cudnn_stand_in/libcudnn_stand_in.cpp; same layout).
struct SalCudnnStandInLog {
  int64_t handles_alive;
  int64_t runs;
  int last_algo;
  int last_math;
  int last_nhwc;
  int last_alpha2_zero;
};

// cuDNN's numbers the expectations use (cudnn_cnn.h / cudnn_graph.h; this file does not include cuDNN).
constexpr int kImplicitGemm = 0, kImplicitPrecompGemm = 1, kGemm = 2;  // forward algorithms
constexpr int kDefaultMath = 0, kTensorOpMath = 1, kFmaMath = 3;

// The log of the libcudnn.so.9 this process loaded.
const SalCudnnStandInLog& stand_in_log() {
  return test::stand_in_log<SalCudnnStandInLog>("libcudnn.so.9", "sal_cudnn_stand_in_log", "tests/cudnn_stand_in");
}

std::vector<double> uniform(int64_t n, uint64_t seed) { return test::uniform_f32_values(n, seed); }

// f(first, last) for every element of [A,B,C,D]: its index there and in [A,C,D,B], the same tensor with B moved
// last (NCHW -> NHWC, KCRS -> KRSC).
template <class F>
void for_each_channel_move(const Shape& s, F&& f) {
  for (int64_t a = 0; a < s[0]; ++a)
    for (int64_t b = 0; b < s[1]; ++b)
      for (int64_t c = 0; c < s[2]; ++c)
        for (int64_t d = 0; d < s[3]; ++d)
          f(static_cast<size_t>(((a * s[1] + b) * s[2] + c) * s[3] + d),
            static_cast<size_t>(((a * s[2] + c) * s[3] + d) * s[1] + b));
}
std::vector<float> channels_last(const std::vector<double>& v, const Shape& s) {
  std::vector<float> out(v.size());
  for_each_channel_move(s, [&](size_t first, size_t last) { out[last] = static_cast<float>(v[first]); });
  return out;
}
std::vector<double> channels_first(const std::vector<float>& v, const Shape& s) {
  std::vector<double> out(v.size());
  for_each_channel_move(s, [&](size_t first, size_t last) { out[first] = v[last]; });
  return out;
}

// The tensor of `s` in `layout` as f32 (NCHW: as it is).
std::vector<float> in_layout(const std::vector<double>& v, const Shape& s, CudnnLayout layout) {
  return layout == CudnnLayout::NHWC ? channels_last(v, s) : std::vector<float>(v.begin(), v.end());
}
std::vector<double> from_layout(const std::vector<float>& v, const Shape& s, CudnnLayout layout) {
  return layout == CudnnLayout::NHWC ? channels_first(v, s) : std::vector<double>(v.begin(), v.end());
}

double max_abs_diff(const std::vector<double>& got, const std::vector<double>& want) {
  double m = got.size() == want.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) m = std::fmax(m, std::fabs(got[i] - want[i]));
  return m;
}

struct Case {
  const char* name;
  Shape x, w;
  Conv2dArgs a;
};

// Padded, strided, dilated and grouped convolutions, a 1x1, and one with unequal height and width arguments.
std::vector<Case> cases() {
  return {{"3x3 pad 1", {2, 5, 7, 9}, {4, 5, 3, 3}, Conv2dArgs::make(1, 1)},
          {"3x2 stride 2, dilation 2, groups 2", {1, 6, 9, 8}, {4, 3, 3, 2}, Conv2dArgs::make(2, 1, 2, 2)},
          {"1x1", {3, 4, 5, 5}, {6, 4, 1, 1}, Conv2dArgs::make(1, 0)},
          {"depthwise 3x3 stride 2", {2, 3, 6, 7}, {3, 1, 3, 3}, Conv2dArgs::make(2, 1, 1, 3)},
          // Every height and width argument different, so that one given for the other shows.
          {"3x3 stride 1x2, pad 1x0, dilation 2x1", {1, 3, 8, 9}, {2, 3, 3, 3}, Conv2dArgs{1, 2, 1, 0, 1, 0, 2, 1, 1}}};
}

cuda::ConvGeom geom(const Case& c, bool tf32) {
  cuda::ConvGeom g = cuda::conv_geom(c.x, c.w, conv2d_out_shape(c.x, c.w, c.a), c.a);
  g.tf32 = tf32;
  return g;
}

}  // namespace

TEST_CASE("the engine runs on the stand-in") {
  const SalCudnnStandInLog& log = stand_in_log();
  CHECK(cuda::cudnn_runtime_version() >= 90000);
  CHECK(log.handles_alive <= 1);  // at most the process-wide handle of a context without a CudaDevice
}

TEST_CASE("the algorithms Auto times: acceptable heuristic results, the choice first, each number once") {
  stand_in_log();
  Ctx ctx(Device::CUDA);  // no CudaDevice: the wrapper's process-wide handle (nothing of the GPU is touched)
  const cuda::ConvGeom tf32 = geom(cases()[0], true), f32 = geom(cases()[0], false);
  // The stand-in's forward list: precomp (tensor op), Winograd (converts data: never), implicit, precomp again
  // (default math: the same number), FFT (failed), GEMM (8 MiB), direct (100 MiB: over what a candidate may use).
  CHECK(cuda::cudnn_conv_algorithms(ctx, CudnnPass::Fwd, tf32, 4) == std::vector<int>{1, 0, 2});
  CHECK(cuda::cudnn_conv_algorithms(ctx, CudnnPass::Fwd, tf32, 2) == std::vector<int>{1, 0});
  // f32: no tensor-op result, and the heuristic choice alone.
  CHECK(cuda::cudnn_conv_algorithms(ctx, CudnnPass::Fwd, f32, 4) == std::vector<int>{0});
  // The gradients keep deterministic algorithms when there are any: input gradient ALGO_1 (ALGO_0 is not, the
  // Winograd one is over the timed workspace), in f32 the first deterministic non-tensor-op one (Winograd, 5).
  CHECK(cuda::cudnn_conv_algorithms(ctx, CudnnPass::Dgrad, tf32, 4) == std::vector<int>{1});
  CHECK(cuda::cudnn_conv_algorithms(ctx, CudnnPass::Dgrad, f32, 4) == std::vector<int>{5});
  CHECK(cuda::cudnn_conv_algorithms(ctx, CudnnPass::Wgrad, tf32, 4) == std::vector<int>{1, 3});
  CHECK(cuda::cudnn_conv_algorithms(ctx, CudnnPass::Wgrad, f32, 4) == std::vector<int>{3});
  for (const CudnnLayout layout : {CudnnLayout::NCHW, CudnnLayout::NHWC})
    CHECK(cuda::cudnn_conv_algorithms(ctx, CudnnPass::Wgrad, tf32, 4, layout) == std::vector<int>{1, 3});
}

TEST_CASE("forward, input and weight gradients in NCHW and NHWC, each algorithm, equal the CPU's ops") {
  const SalCudnnStandInLog& log = stand_in_log();
  Ctx cpu(Device::CPU), ctx(Device::CUDA);
  uint64_t seed = 1;
  for (const Case& c : cases()) {
    const Shape ys = conv2d_out_shape(c.x, c.w, c.a);
    const std::vector<double> x = uniform(c.x.numel(), seed++), w = uniform(c.w.numel(), seed++),
                              dy = uniform(ys.numel(), seed++), dw0 = uniform(c.w.numel(), seed++);
    const Tensor x64 = Tensor::from_values(x, c.x, DType::F64), w64 = Tensor::from_values(w, c.w, DType::F64),
                 dy64 = Tensor::from_values(dy, ys, DType::F64);
    const std::vector<double> y_cpu = conv2d(cpu, x64, w64, nullptr, c.a).values();
    const std::vector<double> dx_cpu = conv2d_dgrad(cpu, dy64, w64, c.x, c.a).values();
    Tensor dw64 = Tensor::zeros(c.w, DType::F64);
    conv2d_wgrad(cpu, dy64, x64, dw64, nullptr, c.a);
    std::vector<double> dw_cpu = dw64.values();
    for (size_t i = 0; i < dw_cpu.size(); ++i) dw_cpu[i] += dw0[i];  // the wrapper's weight gradient accumulates
    for (const bool tf32 : {true, false}) {
      const cuda::ConvGeom g = geom(c, tf32);
      REQUIRE(cuda::cudnn_conv_supported(g));
      for (const CudnnLayout layout : {CudnnLayout::NCHW, CudnnLayout::NHWC}) {
        const bool nhwc = layout == CudnnLayout::NHWC;
        const std::vector<float> xl = in_layout(x, c.x, layout), wl = in_layout(w, c.w, layout),
                                 dyl = in_layout(dy, ys, layout);
        // -1 (the heuristic choice) and every number Auto may time, except forward GEMM (asks for too much
        // workspace: below) and, for a dilated convolution, forward IMPLICIT_PRECOMP_GEMM (listed, then refused:
        // -1 gets past it to the next).
        const bool dilated = c.a.dil_h > 1 || c.a.dil_w > 1;
        for (const CudnnPass pass : {CudnnPass::Fwd, CudnnPass::Dgrad, CudnnPass::Wgrad}) {
          std::vector<int> algos = {-1};
          for (const int a : cuda::cudnn_conv_algorithms(ctx, pass, g, 4, layout))
            if (!(pass == CudnnPass::Fwd && (a == kGemm || (dilated && a == kImplicitPrecompGemm)))) algos.push_back(a);
          for (const int algo : algos) {
            INFO(c.name, ", tf32 ", tf32, ", ", nhwc ? "NHWC" : "NCHW", ", pass ", static_cast<int>(pass),
                 ", algorithm ", algo);
            const int64_t runs = log.runs;
            if (pass == CudnnPass::Fwd) {
              std::vector<float> y(static_cast<size_t>(ys.numel()), NAN);
              cuda::cudnn_conv_forward(ctx, g, xl.data(), wl.data(), y.data(), algo, layout);
              CHECK(max_abs_diff(from_layout(y, ys, layout), y_cpu) < 1e-5);
            } else if (pass == CudnnPass::Dgrad) {
              std::vector<float> dx(static_cast<size_t>(c.x.numel()), NAN);
              cuda::cudnn_conv_dgrad(ctx, g, dyl.data(), wl.data(), dx.data(), algo, layout);
              CHECK(max_abs_diff(from_layout(dx, c.x, layout), dx_cpu) < 1e-5);
            } else {
              std::vector<float> dw = in_layout(dw0, c.w, layout);
              cuda::cudnn_conv_wgrad(ctx, g, dyl.data(), xl.data(), dw.data(), algo, layout);
              CHECK(max_abs_diff(from_layout(dw, c.w, layout), dw_cpu) < 1e-5);
            }
            CHECK(log.runs == runs + 1);
            CHECK(log.last_nhwc == (nhwc ? 1 : 0));
            if (algo >= 0) CHECK(log.last_algo == algo);
            // f32 asks for FMA kernels; TF32 runs each result with the math type it was listed with.
            if (!tf32) CHECK(log.last_math == kFmaMath);
            if (tf32 && pass == CudnnPass::Fwd && algo == kImplicitGemm) CHECK(log.last_math == kDefaultMath);
            if (pass == CudnnPass::Fwd && dilated && algo < 0) {
              CHECK(log.last_algo == kImplicitGemm);  // the heuristic choice refused: the next acceptable one
            } else if (tf32 && algo < 0) {
              CHECK(log.last_math == kTensorOpMath);  // every pass's tf32 choice is tensor-op
            }
          }
        }
      }
    }
  }
}

TEST_CASE("an algorithm that is not among the timed ones, or asks for too much workspace, is an error") {
  stand_in_log();
  Ctx ctx(Device::CUDA);
  const Case c = cases()[0];
  const cuda::ConvGeom g = geom(c, true);
  const Shape ys = conv2d_out_shape(c.x, c.w, c.a);
  std::vector<float> x(static_cast<size_t>(c.x.numel()), 1.f), w(static_cast<size_t>(c.w.numel()), 1.f),
      y(static_cast<size_t>(ys.numel()), 0.f);
  // Direct (3) is listed, but over the workspace a timed candidate may use: not a number Auto can name.
  CHECK_THROWS_WITH(cuda::cudnn_conv_forward(ctx, g, x.data(), w.data(), y.data(), 3),
                    doctest::Contains("algorithm 3 is not among this cuDNN's usable algorithms for the forward"));
  // GEMM (2) is timed by its heuristic figure (8 MiB), but the call asks for 600 MiB.
  CHECK_THROWS_WITH(cuda::cudnn_conv_forward(ctx, g, x.data(), w.data(), y.data(), kGemm),
                    doctest::Contains("asks for 600 MiB of workspace, over the 512 MiB limit"));
  // Neither failure is kept as a plan: asked again, the same error, not a stale plan.
  CHECK_THROWS_WITH(cuda::cudnn_conv_forward(ctx, g, x.data(), w.data(), y.data(), kGemm),
                    doctest::Contains("600 MiB"));
  // A numbered algorithm cuDNN refuses for the shape is an error too (no fallback: Auto asked for that one).
  const Case d = cases()[1];  // dilated
  const Shape dys = conv2d_out_shape(d.x, d.w, d.a);
  std::vector<float> dx(static_cast<size_t>(d.x.numel()), 1.f), dw(static_cast<size_t>(d.w.numel()), 1.f),
      dy(static_cast<size_t>(dys.numel()), 0.f);
  CHECK_THROWS_WITH(
      cuda::cudnn_conv_forward(ctx, geom(d, true), dx.data(), dw.data(), dy.data(), kImplicitPrecompGemm),
      doctest::Contains("NOT_SUPPORTED"));
}

TEST_CASE("the fused convolution + bias + z + activation: ReLU or identity, with and without a shortcut") {
  const SalCudnnStandInLog& log = stand_in_log();
  Ctx cpu(Device::CPU), ctx(Device::CUDA);
  const Case c = cases()[0];  // (not dilated: identity runs only with IMPLICIT_PRECOMP_GEMM, which here refuses that)
  const Shape ys = conv2d_out_shape(c.x, c.w, c.a);
  const cuda::ConvGeom g = geom(c, true);
  const std::vector<double> x = uniform(c.x.numel(), 11), w = uniform(c.w.numel(), 12), z = uniform(ys.numel(), 13),
                            bias = uniform(ys[1], 14);
  const Tensor b64 = Tensor::from_values(bias, Shape{ys[1]}, DType::F64);
  const std::vector<double> conv_bias =
      conv2d(cpu, Tensor::from_values(x, c.x, DType::F64), Tensor::from_values(w, c.w, DType::F64), &b64, c.a).values();
  const std::vector<float> xf(x.begin(), x.end()), wf(w.begin(), w.end()), zf(z.begin(), z.end()),
      bf(bias.begin(), bias.end());
  for (const bool relu : {true, false}) {
    for (const bool with_z : {true, false}) {
      INFO("relu ", relu, ", shortcut ", with_z);
      std::vector<double> want = conv_bias;
      for (size_t i = 0; i < want.size(); ++i) {
        if (with_z) want[i] += z[i];
        if (relu) want[i] = std::fmax(want[i], 0.0);
      }
      // Without a shortcut y is also cuDNN's z, with alpha2 = 0: its old contents (NaN) must not reach y.
      std::vector<float> y(static_cast<size_t>(ys.numel()), NAN);
      const int algo = relu ? -1 : kImplicitPrecompGemm;  // identity runs with IMPLICIT_PRECOMP_GEMM only
      cuda::cudnn_conv_bias_act_forward(ctx, g, xf.data(), wf.data(), bf.data(), with_z ? zf.data() : nullptr, relu,
                                        y.data(), algo);
      CHECK(max_abs_diff(std::vector<double>(y.begin(), y.end()), want) < 1e-5);
      CHECK(log.last_alpha2_zero == (with_z ? 0 : 1));
      if (relu) {  // a ReLU clipped at its coefficient would have zeroed the positive outputs
        double largest = 0;
        for (const float v : y) largest = std::fmax(largest, v);
        CHECK(largest > 0.5);
      }
    }
  }
  std::vector<float> y(static_cast<size_t>(ys.numel()), 0.f);
  CHECK_THROWS_WITH(cuda::cudnn_conv_bias_act_forward(ctx, g, xf.data(), wf.data(), bf.data(), nullptr, false,
                                                      y.data(), kImplicitGemm),
                    doctest::Contains("without an activation only with its IMPLICIT_PRECOMP_GEMM algorithm"));
}
