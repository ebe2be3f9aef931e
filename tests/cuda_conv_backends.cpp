// The CUDA convolution backends against each other and against the CPU, in each of the
// four settings of cuda/conv_backend.h (Custom, Cudnn, Cublas, Auto): conv2d forward, dgrad and wgrad
// (with the bias gradient, accumulating onto nonzero gradients), and conv_transpose2d, on shapes
// that reach the implicit-GEMM kernels' edges, split-K, the depthwise kernels, shapes cuDNN refuses
// (asymmetric padding) and 1x1 convolutions (cuBLAS's), each in both arithmetic settings
// (ConvMath::TF32 to TF32 rounding, ConvMath::F32 to f32 rounding), and conv2d_bn_act's epilogue on
// every backend, also with the batch norm folded into the weights for cuDNN's fused convolution + bias +
// activation (every algorithm, through a choices file, under Auto). Every cuDNN algorithm Auto may time, also in
// the NHWC layout (cuda/cudnn_conv.h's CudnnLayout, which bench/conv_cuda_bench measures), the batched transpose
// that converts between the layouts (cuda/layout_transpose.h), and cuDNN in NHWC with those conversions as Auto's
// candidate (cuda/conv_nhwc.h: SAL_CONV_NHWC, a choices file's "cudnn+nhwc"). Also checks which backend ran
// (counts), that Auto times a shape once and then keeps its choice, and the parsing of SAL_CONV_BACKEND and
// SAL_CONV_MATH values.
//
// Without a CUDA device it prints "skipped: no CUDA device" and exits with 77 (ctest: Skipped).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cuda/conv_auto_cache.h"
#include "cuda/conv_backend.h"
#include "cuda/conv_bn_fold.h"
#include "cuda/conv_pointwise_gemm.h"
#include "cuda/cudnn_conv.h"
#include "cuda/device.h"
#include "cuda/layout_transpose.h"
#include "cuda/runtime.h"
#include "engine/arena.h"
#include "tests/op_check.h"
#include "tests/temp_files.h"

using namespace sal;
using namespace sal::test;
using sal::cuda::ConvBackend;
using sal::cuda::ConvMath;

namespace {

// Against the f32 CPU (max_rel_diff: |a-b| / (1+|b|)): TF32 products (both backends), or f32 FMA
// (ConvMath::F32: only the summation order differs).
// (The exactness check at the end tells the two apart sharply.)
double tolerance(ConvMath math) { return math == ConvMath::TF32 ? 2e-2 : 5e-4; }

struct Case {
  std::string name;
  Shape x, w;
  Conv2dArgs a;
  bool transpose = false;  // x, w, args describe conv_transpose2d (args: stride, pad, out_pad via tr)
  ConvTranspose2dArgs tr{};
};

Conv2dArgs args(int sh, int sw, int pt, int pl, int pb, int pr, int dh = 1, int dw = 1, int groups = 1) {
  return Conv2dArgs{sh, sw, pt, pl, pb, pr, dh, dw, groups};
}

std::vector<Case> cases() {
  using A = Conv2dArgs;
  using TA = ConvTranspose2dArgs;
  return {
      {"resnet_3x3_64to64_14x14_batch2", {2, 64, 14, 14}, {64, 64, 3, 3}, A::make(1, 1)},
      {"k37_c19_13x13", {2, 19, 13, 13}, {37, 19, 3, 3}, A::make(1, 1)},
      {"k70_c33_17x17_stride2_batch3", {3, 33, 17, 17}, {70, 33, 3, 3}, A::make(2, 1)},
      {"1x1_k129_c68_7x7_batch1", {1, 68, 7, 7}, {129, 68, 1, 1}, A::make(1, 0)},
      {"1x1_k24_c40_9x11_batch3", {3, 40, 9, 11}, {24, 40, 1, 1}, A::make(1, 0)},
      {"1x1_stride2_k256_c128_14x14", {3, 128, 14, 14}, {256, 128, 1, 1}, A::make(2, 0)},
      {"splitk_fwd_3x3_256to40_7x7_batch1", {1, 256, 7, 7}, {40, 256, 3, 3}, A::make(1, 1)},
      {"splitk_wgrad_3x3_8to8_32x32", {2, 8, 32, 32}, {8, 8, 3, 3}, A::make(1, 1)},
      {"7x7_stride2_pad3_3to64_56x56", {2, 3, 56, 56}, {64, 3, 7, 7}, A::make(2, 3)},
      {"tf_same_asym_stride2_17x16", {1, 5, 17, 16}, {24, 5, 3, 3}, A::tf_same(17, 16, 3, 3, 2)},
      {"unused_extra_pad_stride2_9x9", {2, 8, 9, 9}, {16, 8, 3, 3}, args(2, 2, 1, 1, 2, 2)},  // cuDNN takes it
      {"dil2_groups2_asym_pad", {2, 6, 11, 9}, {10, 3, 3, 3}, args(1, 1, 2, 1, 0, 3, 2, 2, 2)},
      {"groups2_stride2_batch3", {3, 10, 7, 7}, {6, 5, 3, 3}, A::make(2, 1, 1, 2)},
      {"depthwise_3x3_c37_17x17_batch3", {3, 37, 17, 17}, {37, 1, 3, 3}, A::make(1, 1, 1, 37)},
      {"depthwise_5x5_stride2_c20_13x13", {2, 20, 13, 13}, {20, 1, 5, 5}, A::make(2, 2, 1, 20)},
      {"depthwise_tf_same_stride2_c32_28x28", {2, 32, 28, 28}, {32, 1, 3, 3}, A::tf_same(28, 28, 3, 3, 2, 32)},
      {"depthwise_split_80x80", {2, 3, 80, 80}, {3, 1, 3, 3}, A::make(1, 1, 1, 3)},
      {"transpose_stride2_outpad1_c13_k19", {2, 13, 7, 7}, {13, 19, 3, 3}, {}, true, TA::make(2, 1, 1)},
      {"transpose_4x4_stride2_outpad1", {3, 8, 5, 6}, {8, 6, 4, 4}, {}, true, TA::make(2, 1, 1)},
      {"transpose_dil2_outpad1_stride1", {1, 2, 3, 3}, {2, 2, 3, 3}, {}, true, TA::make(1, 0, 1, 2)},
      {"transpose_depthwise_stride2", {2, 16, 6, 6}, {16, 1, 3, 3}, {}, true, TA::make(2, 1, 1, 1, 16)},
      {"transpose_1x1_c12_k20_batch2", {2, 12, 5, 7}, {12, 20, 1, 1}, {}, true, TA::make(1, 0)},
  };
}

// Forward output, input gradient, weight gradient, bias gradient.
struct Results {
  Tensor y, dx, dw, db;
};

Tensor random_tensor(const Shape& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  return Tensor::from_values(uniform(s, rng), s, DType::F32);
}

// Everything on ctx's device; the gradients accumulate into dw and db (which start at 0.5, so
// that += is checked).
Results run_case(Ctx& ctx, const Case& c, const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& dy,
                 Tensor dw, Tensor db) {
  Results r;
  r.dw = dw;
  r.db = db;
  if (!c.transpose) {
    r.y = conv2d(ctx, x, w, &b, c.a);
    r.dx = conv2d_dgrad(ctx, dy, w, x.shape(), c.a);
    conv2d_wgrad(ctx, dy, x, r.dw, &r.db, c.a);
  } else {
    r.y = conv_transpose2d(ctx, x, w, &b, c.tr);
    r.dx = conv_transpose2d_dgrad(ctx, dy, w, x.shape(), c.tr);
    conv_transpose2d_wgrad(ctx, dy, x, r.dw, &r.db, c.tr);
  }
  return r;
}

Tensor halves(const Shape& s) {
  return Tensor::from_values(std::vector<double>(static_cast<size_t>(s.numel()), 0.5), s);
}

Shape out_shape(const Case& c) {
  return c.transpose ? conv_transpose2d_out_shape(c.x, c.w, c.tr) : conv2d_out_shape(c.x, c.w, c.a);
}

cuda::ConvGeom geom(const Case& c) {
  const Shape y = out_shape(c);
  return c.transpose ? cuda::transpose_geom(c.x, c.w, y, c.tr) : cuda::conv_geom(c.x, c.w, y, c.a);
}

// Between NCHW [A, B, C, D] and NHWC [A, C, D, B] on the host (a KCRS filter and KRSC likewise); nchw is the NCHW
// shape. to_nhwc: t is NCHW, the result NHWC; else the reverse.
Tensor relayout(const Tensor& t, const Shape& nchw, bool to_nhwc) {
  const std::vector<double> v = t.values();
  std::vector<double> out(v.size());
  const int64_t hw = nchw[2] * nchw[3];
  for (int64_t a = 0; a < nchw[0]; ++a)
    for (int64_t b = 0; b < nchw[1]; ++b)
      for (int64_t i = 0; i < hw; ++i) {
        const auto at_nchw = static_cast<size_t>((a * nchw[1] + b) * hw + i);
        const auto at_nhwc = static_cast<size_t>((a * hw + i) * nchw[1] + b);
        if (to_nhwc)
          out[at_nhwc] = v[at_nchw];
        else
          out[at_nchw] = v[at_nhwc];
      }
  return Tensor::from_values(out, to_nhwc ? Shape{nchw[0], nchw[2], nchw[3], nchw[1]} : nchw, DType::F32);
}
Tensor to_nhwc(const Tensor& t) { return relayout(t, t.shape(), true); }
Tensor from_nhwc(const Tensor& t, const Shape& nchw) { return relayout(t, nchw, false); }

int g_failed = 0, g_checks = 0;

// Auto's choices forgotten and read again from the choices file `path`, the counts reset, then diff(): its result
// (a difference from the CPU) and the counts of the run.
template <class Fn>
std::pair<double, cuda::ConvBackendCounts> rerun_from_file(const std::string& path, Fn&& diff) {
  cuda::clear_conv_auto_choices();
  cuda::set_conv_auto_cache(path);
  cuda::reset_conv_backend_counts();
  const double e = diff();
  return {e, cuda::conv_backend_counts()};
}

// Auto's choices of run() written to a fresh choices file `path`, then each (pass key, choice) given to
// replace(key, choice), which may change the choice and says whether it did; the file rewritten with them.
// Returns how many were replaced.
template <class Run, class Replace>
int rewrite_auto_choices(const std::string& path, Run&& run, Replace&& replace) {
  std::filesystem::remove(path);
  cuda::clear_conv_auto_choices();
  cuda::set_conv_auto_cache(path);
  run();
  cuda::ParsedConvChoices saved = cuda::parse_conv_choices(read_bytes(path), path);
  int replaced = 0;
  for (auto& [key, choice] : saved.choices) replaced += replace(key, choice) ? 1 : 0;
  write_bytes(path, cuda::format_conv_choices(saved.device, saved.choices));
  return replaced;
}

void expect(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failed;
    std::printf("FAIL %s\n", what.c_str());
  }
}

void compare(const Results& got, const Results& want, const std::string& what, double tol) {
  const char* names[] = {"forward", "input gradient", "weight gradient", "bias gradient"};
  const Tensor* g[] = {&got.y, &got.dx, &got.dw, &got.db};
  const Tensor* w[] = {&want.y, &want.dx, &want.dw, &want.db};
  for (int i = 0; i < 4; ++i) {
    double e = max_rel_diff(g[i]->to(Device::CPU), w[i]->to(Device::CPU));
    expect(e <= tol, cat(what, ": ", names[i], " differs by ", e, " (tolerance ", tol, ")"));
  }
}

}  // namespace

int main() {
  if (!cuda_available()) {
    std::printf("skipped: no CUDA device\n");
    return 77;
  }
  // Auto must time here (the counts below), whatever SAL_CONV_AUTO_CACHE says; the choices-file block sets
  // a file of its own.
  cuda::set_conv_auto_cache("");

  // ---- parsing of the setting
  expect(cuda::parse_conv_backend("custom") == ConvBackend::Custom, "parse custom");
  expect(cuda::parse_conv_backend("CUDNN") == ConvBackend::Cudnn, "parse CUDNN");
  expect(cuda::parse_conv_backend("Auto") == ConvBackend::Auto, "parse Auto");
  expect(cuda::parse_conv_backend("cuBLAS") == ConvBackend::Cublas, "parse cuBLAS");
  bool threw = false;
  try {
    cuda::parse_conv_backend("fastest");
  } catch (const Error& e) {
    threw = std::string(e.what()).find("fastest") != std::string::npos;
  }
  expect(threw, "parse_conv_backend rejects an unknown name, naming it");
  expect(cuda::parse_conv_math("tf32") == ConvMath::TF32, "parse tf32");
  expect(cuda::parse_conv_math("F32") == ConvMath::F32, "parse F32");
  threw = false;
  try {
    cuda::parse_conv_math("fp16");
  } catch (const Error& e) {
    threw = std::string(e.what()).find("fp16") != std::string::npos;
  }
  expect(threw, "parse_conv_math rejects an unknown name, naming it");

  CudaDevice dev;
  Arena arena(Device::CUDA);
  Ctx cpu(Device::CPU);
  Ctx plain(Device::CUDA);         // legacy default stream, owning outputs
  Ctx streamed = dev.ctx(&arena);  // the device's own stream, arena outputs and temporaries

  const ConvBackend modes[] = {ConvBackend::Custom, ConvBackend::Cudnn, ConvBackend::Cublas, ConvBackend::Auto};
  for (const ConvMath math : {ConvMath::TF32, ConvMath::F32}) {
    cuda::set_conv_math(math);
    const double tol = tolerance(math);
    int idx = 0;
    for (const Case& c : cases()) {
      ++idx;
      const Shape ys = out_shape(c);
      const int64_t k_out = ys[1];
      Tensor x = random_tensor(c.x, 11 + idx), w = random_tensor(c.w, 23 + idx);
      Tensor b = random_tensor(Shape{k_out}, 37 + idx), dy = random_tensor(ys, 41 + idx);
      const Results want = run_case(cpu, c, x, w, b, dy, halves(c.w), halves(b.shape()));
      const bool cudnn_ok = cuda::cudnn_conv_supported(geom(c));
      // cuBLAS takes the forward and the input gradient of a 1x1 conv (for a transposed one, the same two
      // passes in the conv2d view: its input gradient and its forward), never the weight gradient.
      const int64_t cublas_passes = cuda::pointwise_gemm_applies(geom(c)) ? 2 : 0;

      std::map<ConvBackend, Results> by_mode;
      for (ConvBackend mode : modes) {
        cuda::set_conv_backend(mode);
        cuda::clear_conv_auto_choices();
        for (Ctx* ctx : {&plain, &streamed}) {
          const std::string what = cat(c.name, " [", cuda::conv_backend_name(mode), ", ", cuda::conv_math_name(math),
                                       ctx == &plain ? ", default stream]" : ", own stream]");
          try {
            // Inputs are copied by the runtime's synchronous copies (legacy stream); the device's stream is
            // created blocking, so it orders itself after them anyway: the wait keeps the test from
            // depending on that.
            Tensor gx = x.to(Device::CUDA), gw = w.to(Device::CUDA), gb = b.to(Device::CUDA), gdy = dy.to(Device::CUDA);
            Tensor gdw = halves(c.w).to(Device::CUDA), gdb = halves(b.shape()).to(Device::CUDA);
            cuda::synchronize();
            cuda::reset_conv_backend_counts();
            Results got = run_case(*ctx, c, gx, gw, gb, gdy, gdw, gdb);
            if (ctx == &streamed) dev.synchronize();
            const cuda::ConvBackendCounts n = cuda::conv_backend_counts();
            compare(got, want, what + " vs CPU", tol);
            // Three passes per case; which backend ran them:
            const int64_t total = n.custom + n.cudnn + n.cublas;
            expect(total == 3, cat(what, ": ", total, " passes counted, expected 3"));
            if (mode != ConvBackend::Auto && mode != ConvBackend::Cublas)
              expect(n.cublas == 0, cat(what, ": cuBLAS ran ", n.cublas, " passes"));
            if (mode == ConvBackend::Custom || !cudnn_ok)
              expect(n.cudnn == 0, cat(what, ": cuDNN ran ", n.cudnn, " passes"));
            else if (mode == ConvBackend::Cudnn)
              expect(n.cudnn == 3, cat(what, ": cuDNN ran ", n.cudnn, " of 3 passes"));
            if (mode == ConvBackend::Cublas) {
              expect(n.cublas == cublas_passes,
                     cat(what, ": cuBLAS ran ", n.cublas, " passes, expected ", cublas_passes));
              if (cudnn_ok) expect(n.cudnn == 3 - cublas_passes, cat(what, ": cuDNN ran ", n.cudnn, " passes"));
            }
            if (mode == ConvBackend::Auto) {
              // The plain context timed the three passes; the second context reuses those choices.
              const int64_t want_timed = (ctx == &plain && cudnn_ok) ? 3 : 0;
              expect(n.timed == want_timed, cat(what, ": Auto timed ", n.timed, " passes, expected ", want_timed));
            }
            if (ctx == &plain) by_mode[mode] = got;
          } catch (const std::exception& e) {
            expect(false, cat(what, ": threw: ", e.what()));
          }
          arena.reset();
        }
      }
      // The backends against each other (same inputs, same tolerance).
      if (by_mode.count(ConvBackend::Custom) && by_mode.count(ConvBackend::Cudnn))
        compare(by_mode[ConvBackend::Custom], by_mode[ConvBackend::Cudnn],
                cat(c.name, " custom vs cudnn (", cuda::conv_math_name(math), ")"), tol);
      if (cublas_passes && by_mode.count(ConvBackend::Custom) && by_mode.count(ConvBackend::Cublas))
        compare(by_mode[ConvBackend::Custom], by_mode[ConvBackend::Cublas],
                cat(c.name, " custom vs cublas (", cuda::conv_math_name(math), ")"), tol);
    }
  }
  // ---- conv2d_bn_act (batch norm, residual and ReLU6 as the epilogue) on each backend and in both
  // maths, against the CPU: the custom kernels apply it where they store (GEMM tile, split-K sum,
  // depthwise), cuDNN's output gets it in one pass after. beta in [2, 8] puts part of the outputs past 6.
  for (const ConvMath math : {ConvMath::TF32, ConvMath::F32}) {
    cuda::set_conv_math(math);
    int idx = 0;
    for (const Case& c : cases()) {
      ++idx;
      if (c.transpose) continue;
      const Shape ys = out_shape(c), ks{ys[1]};
      std::mt19937_64 rng(97 + idx);
      Tensor x = random_tensor(c.x, 11 + idx), w = random_tensor(c.w, 23 + idx), r = random_tensor(ys, 29 + idx);
      Tensor g = random_tensor(ks, 31 + idx), m = random_tensor(ks, 43 + idx);
      Tensor be = Tensor::from_values(uniform(ks, rng, 2, 8), ks), v = Tensor::from_values(uniform(ks, rng, 0.5, 1.5), ks);
      const Tensor want = conv2d_bn_act(cpu, x, w, g, be, m, v, 1e-3, &r, Activation::ReLU6, c.a);
      const bool cudnn_ok = cuda::cudnn_conv_supported(geom(c));
      const bool cublas_ok = cuda::pointwise_gemm_applies(geom(c));
      for (ConvBackend mode : modes) {
        cuda::set_conv_backend(mode);
        cuda::clear_conv_auto_choices();
        const std::string what =
            cat(c.name, " conv2d_bn_act [", cuda::conv_backend_name(mode), ", ", cuda::conv_math_name(math), "]");
        try {
          Tensor gx = x.to(Device::CUDA), gw = w.to(Device::CUDA), gr = r.to(Device::CUDA), gg = g.to(Device::CUDA);
          Tensor gbe = be.to(Device::CUDA), gm = m.to(Device::CUDA), gv = v.to(Device::CUDA);
          cuda::synchronize();
          cuda::reset_conv_backend_counts();
          const Tensor got = conv2d_bn_act(plain, gx, gw, gg, gbe, gm, gv, 1e-3, &gr, Activation::ReLU6, c.a);
          const cuda::ConvBackendCounts n = cuda::conv_backend_counts();
          const double e = max_rel_diff(got.to(Device::CPU), want);
          expect(e <= tolerance(math), cat(what, ": differs from the CPU by ", e, " (tolerance ", tolerance(math), ")"));
          const int64_t total = n.custom + n.cudnn + n.cublas;
          expect(total == 1, cat(what, ": ", total, " passes counted, expected 1"));
          if (mode == ConvBackend::Custom || !cudnn_ok) expect(n.cudnn == 0, cat(what, ": cuDNN ran"));
          if (mode == ConvBackend::Cudnn && cudnn_ok) expect(n.cudnn == 1, cat(what, ": cuDNN did not run"));
          if (mode == ConvBackend::Cublas)
            expect(n.cublas == (cublas_ok ? 1 : 0), cat(what, ": cuBLAS ran ", n.cublas, " passes"));
          else if (mode != ConvBackend::Auto)
            expect(n.cublas == 0, cat(what, ": cuBLAS ran"));
        } catch (const std::exception& e) {
          expect(false, cat(what, ": threw: ", e.what()));
        }
      }
    }
  }
  cuda::set_conv_math(ConvMath::TF32);

  // ---- The batched transpose (NCHW <-> NHWC) against the host's, on sizes around its 32 x 32 tiles.
  {
    const int64_t sizes[][3] = {{1, 1, 1}, {3, 33, 65}, {2, 64, 49}, {1, 1, 100}, {4, 100, 1}, {2, 31, 32}};
    for (const auto& z : sizes) {
      const Shape s{z[0], z[1], z[2], 1};
      const Tensor x = random_tensor(s, 101 + z[1]);
      const Tensor gx = x.to(Device::CUDA);
      Tensor gy = Tensor::empty(s, DType::F32, Device::CUDA);
      cuda::batched_transpose(plain, gx.data<float>(), z[0], z[1], z[2], gy.data<float>());
      const Tensor want = to_nhwc(x);  // [z0, z1, z2, 1] -> [z0, z2, 1, z1]: each z1 x z2 matrix transposed
      expect(max_rel_diff(gy.to(Device::CPU).reshape(want.shape()), want) == 0,
             cat("batched_transpose of ", z[0], " x ", z[1], " x ", z[2], " differs from the host's"));
    }
  }

  // ---- Every cuDNN algorithm Auto may time (cudnn_conv_algorithms: the heuristics' first few in TF32, only the
  // heuristic one in f32) gives the CPU's results: forward, input gradient, weight gradient (accumulating). In NCHW,
  // the engine's layout, and in NHWC (TF32 only: what bench/conv_cuda_bench's conv_layout rows time), the inputs and
  // results transposed on the host. An NHWC refusal of a grouped case (no algorithm, or one the heuristics listed and
  // the call then refused) is printed, not failed: cuDNN's NHWC support of groups is not what is measured. (A wrong
  // result always fails.)
  const std::pair<cuda::CudnnLayout, ConvMath> settings[] = {{cuda::CudnnLayout::NCHW, ConvMath::TF32},
                                                              {cuda::CudnnLayout::NCHW, ConvMath::F32},
                                                              {cuda::CudnnLayout::NHWC, ConvMath::TF32}};
  for (const auto& [layout, math] : settings) {
    const bool nhwc = layout == cuda::CudnnLayout::NHWC;
    cuda::set_conv_math(math);
    int idx = 0;
    for (const Case& c : cases()) {
      ++idx;
      if (c.transpose || !cuda::cudnn_conv_supported(geom(c))) continue;
      cuda::ConvGeom g = geom(c);
      g.tf32 = math == ConvMath::TF32;
      const Shape ys = out_shape(c);
      Tensor x = random_tensor(c.x, 11 + idx), w = random_tensor(c.w, 23 + idx), dy = random_tensor(ys, 41 + idx);
      const Tensor want_y = conv2d(cpu, x, w, nullptr, c.a), want_dx = conv2d_dgrad(cpu, dy, w, c.x, c.a);
      Tensor want_dw = halves(c.w);
      conv2d_wgrad(cpu, dy, x, want_dw, nullptr, c.a);
      const auto dev = [nhwc](const Tensor& t) { return (nhwc ? to_nhwc(t) : t).to(Device::CUDA); };
      Tensor gx = dev(x), gw = dev(w), gdy = dev(dy);
      const cuda::CudnnPass passes[] = {cuda::CudnnPass::Fwd, cuda::CudnnPass::Dgrad, cuda::CudnnPass::Wgrad};
      const char* names[] = {"forward", "input gradient", "weight gradient"};
      const char* in_layout = nhwc ? ", NHWC" : "";
      for (int p = 0; p < 3; ++p) {
        std::vector<int> algos;
        try {
          algos = cuda::cudnn_conv_algorithms(plain, passes[p], g, 4, layout);
        } catch (const std::exception& e) {
          if (nhwc && g.G > 1)
            std::printf("note: %s %s in NHWC: %s\n", c.name.c_str(), names[p], e.what());
          else
            expect(false, cat(c.name, " ", names[p], in_layout, ": cudnn_conv_algorithms threw: ", e.what()));
          continue;
        }
        expect(!algos.empty() && (math == ConvMath::TF32 || algos.size() == 1),
               cat(c.name, " ", names[p], ": ", algos.size(), " cuDNN algorithms to time in ",
                   cuda::conv_math_name(math), in_layout));
        int ran = 0;
        for (const int algo : algos) {
          const std::string what =
              cat(c.name, " cuDNN ", names[p], " algorithm ", algo, " (", cuda::conv_math_name(math), in_layout, ")");
          try {
            // (dw starts at 0.5 everywhere, the same in either layout)
            Tensor out = p == 0 ? Tensor::empty(ys, DType::F32, Device::CUDA)
                       : p == 1 ? Tensor::empty(c.x, DType::F32, Device::CUDA)
                                : halves(c.w).to(Device::CUDA);
            const float *px = gx.data<float>(), *pw = gw.data<float>(), *pdy = gdy.data<float>();
            if (p == 0) cuda::cudnn_conv_forward(plain, g, px, pw, out.data<float>(), algo, layout);
            if (p == 1) cuda::cudnn_conv_dgrad(plain, g, pdy, pw, out.data<float>(), algo, layout);
            if (p == 2) cuda::cudnn_conv_wgrad(plain, g, pdy, px, out.data<float>(), algo, layout);
            const Tensor& want = p == 0 ? want_y : p == 1 ? want_dx : want_dw;
            const Tensor got_nchw = nhwc ? from_nhwc(out.to(Device::CPU), want.shape()) : out.to(Device::CPU);
            const double e = max_rel_diff(got_nchw, want);
            expect(e <= tolerance(math),
                   cat(what, ": differs from the CPU by ", e, " (tolerance ", tolerance(math), ")"));
            ++ran;
          } catch (const std::exception& e) {
            // An algorithm the heuristics listed that cuDNN then does not take (NOT_SUPPORTED), or whose queried
            // workspace is over the wrapper's limit, is no candidate for Auto either: a note. Anything else
            // (BAD_PARAM: our arguments; an execution failure) fails, as does a grouped NHWC case's any error.
            const std::string m = e.what();
            if ((nhwc && g.G > 1) || m.find("NOT_SUPPORTED") != std::string::npos ||
                m.find("MiB limit") != std::string::npos)
              std::printf("note: %s: refused: %s\n", what.c_str(), e.what());
            else
              expect(false, cat(what, ": threw: ", e.what()));
          }
        }
        expect(ran > 0 || (nhwc && g.G > 1), cat(c.name, " ", names[p], in_layout, ": none of the ", algos.size(),
                                                 " cuDNN algorithms listed ran"));
      }
    }
  }
  cuda::set_conv_math(ConvMath::TF32);

  // ---- conv2d_bn_act with the batch norm folded into the weights (cuda/conv_bn_fold.h) and run by cuDNN's fused
  // convolution + bias + activation, TF32 (Auto's only use of it). The fold kernel against the CPU's formula; then
  // the algorithms Auto times it with (with ReLU: those cudnn_conv_algorithms gives; with no activation:
  // IMPLICIT_PRECOMP_GEMM, algorithm 1, the only one cuDNN runs that with), with and without a residual, against
  // the CPU's conv2d_bn_act, the output filled with NaN first (with no residual cuDNN is given the output as z,
  // scaled by 0: it must not carry those NaNs through). A refusal by cuDNN is not a failure (Auto then does not
  // time that candidate) but is printed, and at least one case must have run.
  {
    cuda::set_conv_math(ConvMath::TF32);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    int idx = 0, fused_runs = 0;
    for (const Case& c : cases()) {
      ++idx;
      if (c.transpose || !cuda::cudnn_conv_supported(geom(c))) continue;
      cuda::ConvGeom g = geom(c);
      g.tf32 = true;
      const Shape ys = out_shape(c), ks{ys[1]};
      const int64_t K = ys[1], crs = c.w.numel() / K;
      std::mt19937_64 rng(131 + idx);
      Tensor x = random_tensor(c.x, 11 + idx), w = random_tensor(c.w, 23 + idx), r = random_tensor(ys, 29 + idx);
      Tensor ga = random_tensor(ks, 31 + idx), mn = random_tensor(ks, 43 + idx);
      Tensor be = Tensor::from_values(uniform(ks, rng), ks), v = Tensor::from_values(uniform(ks, rng, 0.5, 1.5), ks);
      Tensor gx = x.to(Device::CUDA), gw = w.to(Device::CUDA), gr = r.to(Device::CUDA), gga = ga.to(Device::CUDA);
      Tensor gbe = be.to(Device::CUDA), gmn = mn.to(Device::CUDA), gv = v.to(Device::CUDA);
      Tensor wf = Tensor::empty(c.w, DType::F32, Device::CUDA), bf = Tensor::empty(ks, DType::F32, Device::CUDA);
      Tensor want_wf = Tensor::zeros(c.w, DType::F32), want_bf = Tensor::zeros(ks, DType::F32);
      for (int64_t i = 0; i < K * crs; ++i)
        cuda::bn_fold_element(i, crs, w.data<float>(), ga.data<float>(), be.data<float>(), mn.data<float>(),
                              v.data<float>(), 1e-3, want_wf.data<float>(), want_bf.data<float>());
      try {
        cuda::bn_fold_conv_weights(plain, gw.data<float>(), gga.data<float>(), gbe.data<float>(), gmn.data<float>(),
                                   gv.data<float>(), 1e-3, K, crs, wf.data<float>(), bf.data<float>());
        // (the bias in double, where the device may contract a * b + c into one fma: to 1e-6)
        expect(max_rel_diff(wf.to(Device::CPU), want_wf) == 0, cat(c.name, " fold: weights differ from the CPU's"));
        expect(max_rel_diff(bf.to(Device::CPU), want_bf) <= 1e-6, cat(c.name, " fold: bias differs from the CPU's"));
      } catch (const std::exception& e) {
        expect(false, cat(c.name, " fold kernel threw: ", e.what()));
        continue;
      }
      std::vector<int> algos;
      try {
        algos = cuda::cudnn_conv_algorithms(plain, cuda::CudnnPass::Fwd, g, 4);
      } catch (const std::exception& e) {
        expect(false, cat(c.name, " fold: cudnn_conv_algorithms threw: ", e.what()));
      }
      for (const Activation act : {Activation::ReLU, Activation::None}) {
        for (const int algo : act == Activation::ReLU ? algos : std::vector<int>{1}) {
          for (const bool with_residual : {false, true}) {
            const std::string what = cat(c.name, " folded conv + bias + ", act == Activation::ReLU ? "ReLU" : "nothing",
                                         with_residual ? " + residual" : "", ", cuDNN algorithm ", algo);
            const Tensor want =
                conv2d_bn_act(cpu, x, w, ga, be, mn, v, 1e-3, with_residual ? &r : nullptr, act, c.a);
            Tensor y = Tensor::from_values(std::vector<double>(static_cast<size_t>(ys.numel()), nan), ys)
                           .to(Device::CUDA);
            std::string refused;
            try {
              cuda::cudnn_conv_bias_act_forward(plain, g, gx.data<float>(), wf.data<float>(), bf.data<float>(),
                                                with_residual ? gr.data<float>() : nullptr, act == Activation::ReLU,
                                                y.data<float>(), algo);
            } catch (const std::exception& e) {
              refused = e.what();
            }
            if (!refused.empty()) {
              // NOT_SUPPORTED: a combination cuDNN does not take (a note); BAD_PARAM: our arguments (a failure).
              expect(refused.find("BAD_PARAM") == std::string::npos, what + ": refused as a bad argument: " + refused);
              std::printf("note: %s: refused by cuDNN (not a candidate for Auto): %s\n", what.c_str(),
                          refused.c_str());
              continue;
            }
            ++fused_runs;
            const double e = max_rel_diff(y.to(Device::CPU), want);
            expect(e <= tolerance(ConvMath::TF32),
                   cat(what, ": differs from the CPU by ", e, " (tolerance ", tolerance(ConvMath::TF32), ")"));
          }
        }
      }
    }
    expect(fused_runs > 0, "cuDNN's fused convolution + bias + activation ran in no case");
  }

  // ---- The fold as Auto's choice: under Auto with the fold forbidden (SAL_CONV_FOLD_BN=0) it never runs, allowed
  // it may, the results within TF32 of the CPU either way; a choices file that names "cudnn+fold:N" for a
  // conv2d_bn_act shape (N: an algorithm cuDNN's fused call takes for it, tried first) is run as such
  // (counts.folded, nothing timed, the CPU's results), and with the fold forbidden that choice is timed again.
  {
    cuda::set_conv_math(ConvMath::TF32);
    const std::string path =
        (std::filesystem::temp_directory_path() / cat("sal_conv_fold_choices_", getpid(), ".txt")).string();
    for (const int which : {0, 3}) {  // a 3x3 ResNet layer, a 1x1 one
      const Case c = cases()[which];
      const Shape ys = out_shape(c), ks{ys[1]};
      std::mt19937_64 rng(151 + which);
      Tensor x = random_tensor(c.x, 5), w = random_tensor(c.w, 6), r = random_tensor(ys, 7);
      Tensor ga = random_tensor(ks, 8), mn = random_tensor(ks, 9);
      Tensor be = Tensor::from_values(uniform(ks, rng), ks), v = Tensor::from_values(uniform(ks, rng, 0.5, 1.5), ks);
      Tensor gx = x.to(Device::CUDA), gw = w.to(Device::CUDA), gr = r.to(Device::CUDA), gga = ga.to(Device::CUDA);
      Tensor gbe = be.to(Device::CUDA), gmn = mn.to(Device::CUDA), gv = v.to(Device::CUDA);
      const Tensor want = conv2d_bn_act(cpu, x, w, ga, be, mn, v, 1e-3, &r, Activation::ReLU, c.a);
      const auto run = [&] {
        return conv2d_bn_act(plain, gx, gw, gga, gbe, gmn, gv, 1e-3, &gr, Activation::ReLU, c.a).to(Device::CPU);
      };
      try {
        cuda::set_conv_backend(ConvBackend::Auto);
        for (const bool allowed : {false, true}) {
          cuda::set_conv_fold_bn(allowed);
          cuda::clear_conv_auto_choices();
          cuda::reset_conv_backend_counts();
          const double e = max_rel_diff(run(), want);
          const cuda::ConvBackendCounts n = cuda::conv_backend_counts();
          const std::string what = cat(c.name, " conv2d_bn_act under Auto, fold ", allowed ? "allowed" : "forbidden");
          expect(e <= tolerance(ConvMath::TF32), cat(what, ": differs from the CPU by ", e));
          if (!allowed) expect(n.folded == 0, cat(what, ": the fold ran"));
          std::printf("note: %s: %s\n", what.c_str(), n.folded ? "folded" : n.cudnn ? "cuDNN" : n.cublas ? "cuBLAS"
                                                                                                         : "custom");
        }
        // An algorithm the fused call takes for this shape with a shortcut sum and ReLU (the others are not errors).
        cuda::ConvGeom g = geom(c);
        g.tf32 = true;
        const int64_t K = ys[1], crs = c.w.numel() / K;
        Tensor wf = Tensor::empty(c.w, DType::F32, Device::CUDA), bf = Tensor::empty(ks, DType::F32, Device::CUDA);
        Tensor scratch_y = Tensor::empty(ys, DType::F32, Device::CUDA);
        cuda::bn_fold_conv_weights(plain, gw.data<float>(), gga.data<float>(), gbe.data<float>(), gmn.data<float>(),
                                   gv.data<float>(), 1e-3, K, crs, wf.data<float>(), bf.data<float>());
        int algo = -1;
        for (const int a : cuda::cudnn_conv_algorithms(plain, cuda::CudnnPass::Fwd, g, 4)) {
          try {
            cuda::cudnn_conv_bias_act_forward(plain, g, gx.data<float>(), wf.data<float>(), bf.data<float>(),
                                              gr.data<float>(), true, scratch_y.data<float>(), a);
            algo = a;
            break;
          } catch (const std::exception&) {
          }
        }
        if (algo < 0) {
          std::printf("note: %s: cuDNN's fused call took none of the algorithms; no choices-file check\n",
                      c.name.c_str());
          continue;
        }
        // Auto writes the shape's choice into the file; replaced by "cudnn+fold:N" there, it must run so.
        const int replaced = rewrite_auto_choices(path, run, [algo](const auto& key, cuda::ConvChoice& choice) {
          if (key[0] != 6) return false;  // fwd_fused_relu_res
          choice = cuda::ConvChoice{ConvBackend::Cudnn, algo, true};
          return true;
        });
        expect(replaced == 1, cat(c.name, " fold choices file: ", replaced, " fwd_fused_relu_res lines, expected 1"));
        const auto diff = [&] { return max_rel_diff(run(), want); };
        const auto [e, n] = rerun_from_file(path, diff);
        expect(n.timed == 0 && n.cudnn == 1 && n.folded == 1,
               cat(c.name, " fold choices file: timed ", n.timed, ", cuDNN ", n.cudnn, ", folded ", n.folded,
                   " (expected 0, 1, 1)"));
        expect(e <= tolerance(ConvMath::TF32), cat(c.name, " fold choices file: differs from the CPU by ", e));
        cuda::set_conv_fold_bn(false);
        const auto [e_off, off] = rerun_from_file(path, diff);
        expect(off.timed == 1 && off.folded == 0, cat(c.name, " fold choices file, fold forbidden: timed ", off.timed,
                                                      ", folded ", off.folded, " (expected 1, 0)"));
        expect(e_off <= tolerance(ConvMath::TF32), cat(c.name, " fold forbidden: differs from the CPU by ", e_off));
        cuda::set_conv_fold_bn(true);
      } catch (const std::exception& e) {
        expect(false, cat(c.name, " fold as Auto's choice: threw: ", e.what()));
      }
      cuda::set_conv_auto_cache("");
      std::filesystem::remove(path);
    }
    cuda::set_conv_fold_bn(true);
  }

  // ---- cuDNN in NHWC as Auto's choice (cuda/conv_nhwc.h: the tensors converted around cuDNN's NHWC kernels): with
  // SAL_CONV_NHWC off it never runs, on it may, the results within TF32 of the CPU either way; a choices file that
  // names "cudnn+nhwc" (cuDNN's heuristic NHWC algorithm; the numbered ones run in the every-algorithm block) for a
  // shape's forward, input gradient and weight gradient runs them so (counts.nhwc, nothing timed, the CPU's results, the
  // weight gradient accumulating onto 0.5), and with NHWC off those choices are timed again. A transposed convolution
  // too (its forward is the conv2d view's input gradient, with the bias added after it).
  {
    cuda::set_conv_math(ConvMath::TF32);
    const std::string path =
        (std::filesystem::temp_directory_path() / cat("sal_conv_nhwc_choices_", getpid(), ".txt")).string();
    for (const int which : {0, 5, 17}) {  // a 3x3 ResNet layer, a 1x1 stride-2 one, a transposed 3x3 stride 2
      const Case c = cases()[which];
      if (!cuda::cudnn_conv_supported(geom(c))) {
        expect(false, cat(c.name, ": cuDNN cannot take it, which the NHWC block needs"));
        continue;
      }
      const Shape ys = out_shape(c), bs{ys[1]};
      Tensor x = random_tensor(c.x, 61), w = random_tensor(c.w, 62), b = random_tensor(bs, 64);
      Tensor dy = random_tensor(ys, 63);
      const Results want = run_case(cpu, c, x, w, b, dy, halves(c.w), halves(bs));
      Tensor gx = x.to(Device::CUDA), gw = w.to(Device::CUDA), gb = b.to(Device::CUDA), gdy = dy.to(Device::CUDA);
      // The three passes on the device (and the bias gradient): the largest of their differences from the CPU's.
      const auto run = [&] {
        const Results got =
            run_case(plain, c, gx, gw, gb, gdy, halves(c.w).to(Device::CUDA), halves(bs).to(Device::CUDA));
        return std::max({max_rel_diff(got.y.to(Device::CPU), want.y), max_rel_diff(got.dx.to(Device::CPU), want.dx),
                         max_rel_diff(got.dw.to(Device::CPU), want.dw), max_rel_diff(got.db.to(Device::CPU), want.db)});
      };
      try {
        cuda::set_conv_backend(ConvBackend::Auto);
        for (const bool allowed : {false, true}) {
          cuda::set_conv_nhwc(allowed);
          cuda::clear_conv_auto_choices();
          cuda::reset_conv_backend_counts();
          const double e = run();
          const cuda::ConvBackendCounts n = cuda::conv_backend_counts();
          const std::string what = cat(c.name, " passes under Auto, NHWC ", allowed ? "allowed" : "off");
          expect(e <= tolerance(ConvMath::TF32), cat(what, ": differs from the CPU by ", e));
          if (!allowed) expect(n.nhwc == 0, cat(what, ": ", n.nhwc, " passes ran in NHWC"));
          std::printf("note: %s: %lld of 3 passes in NHWC\n", what.c_str(), static_cast<long long>(n.nhwc));
        }
        // Auto writes the shape's three choices into the file; replaced by "cudnn+nhwc" there, they must run so.
        cuda::set_conv_nhwc(true);
        const int replaced = rewrite_auto_choices(path, run, [](const auto& key, cuda::ConvChoice& choice) {
          if (!cuda::conv_pass_can_nhwc(key[0])) return false;
          // cuDNN's heuristic choice in NHWC (a numbered one could be listed and then refused; every numbered
          // NHWC algorithm runs in the block above)
          choice = cuda::ConvChoice{ConvBackend::Cudnn, -1, false, true};
          return true;
        });
        expect(replaced == 3, cat(c.name, " NHWC choices file: ", replaced, " fwd/dgrad/wgrad lines, expected 3"));
        const auto [e, n] = rerun_from_file(path, run);
        expect(n.timed == 0 && n.cudnn == 3 && n.nhwc == 3,
               cat(c.name, " NHWC choices file: timed ", n.timed, ", cuDNN ", n.cudnn, ", in NHWC ", n.nhwc,
                   " (expected 0, 3, 3)"));
        expect(e <= tolerance(ConvMath::TF32), cat(c.name, " NHWC choices file: differs from the CPU by ", e));
        cuda::set_conv_nhwc(false);
        const auto [e_off, off] = rerun_from_file(path, run);
        expect(off.timed == 3 && off.nhwc == 0, cat(c.name, " NHWC choices file, NHWC off: timed ", off.timed,
                                                    ", in NHWC ", off.nhwc, " (expected 3, 0)"));
        expect(e_off <= tolerance(ConvMath::TF32), cat(c.name, " NHWC off: differs from the CPU by ", e_off));
      } catch (const std::exception& e) {
        expect(false, cat(c.name, " NHWC as Auto's choice: threw: ", e.what()));
      }
      cuda::set_conv_nhwc(false);
      cuda::set_conv_auto_cache("");
      std::filesystem::remove(path);
    }
  }

  // ---- Auto keeps its choice: a second call of a timed shape times nothing.
  {
    cuda::set_conv_backend(ConvBackend::Auto);
    cuda::clear_conv_auto_choices();
    const Case c = cases()[0];
    Tensor x = random_tensor(c.x, 1).to(Device::CUDA), w = random_tensor(c.w, 2).to(Device::CUDA);
    cuda::reset_conv_backend_counts();
    Tensor y1 = conv2d(plain, x, w, nullptr, c.a);
    Tensor y2 = conv2d(plain, x, w, nullptr, c.a);
    const cuda::ConvBackendCounts n = cuda::conv_backend_counts();
    expect(n.timed == 1, cat("Auto timed the repeated shape ", n.timed, " times, expected 1"));
    expect(max_rel_diff(y1.to(Device::CPU), y2.to(Device::CPU)) == 0,
           "Auto: the same shape twice gives bit-identical results");
  }

  // ---- Auto with a choices file (SAL_CONV_AUTO_CACHE): the timed choice goes into the file; a process
  // that reads it (here: the choices forgotten and the file set again) runs that choice without timing,
  // bit for bit; a file timed on another GPU is ignored and replaced.
  {
    const std::string path =
        (std::filesystem::temp_directory_path() / cat("sal_conv_choices_", getpid(), ".txt")).string();
    std::filesystem::remove(path);
    cuda::set_conv_backend(ConvBackend::Auto);
    cuda::clear_conv_auto_choices();
    cuda::set_conv_auto_cache(path);
    const Case c = cases()[0];
    Tensor x = random_tensor(c.x, 1).to(Device::CUDA), w = random_tensor(c.w, 2).to(Device::CUDA);
    cuda::reset_conv_backend_counts();
    const Tensor y1 = conv2d(plain, x, w, nullptr, c.a).to(Device::CPU);
    expect(cuda::conv_backend_counts().timed == 1, "choices file: the first call timed the shape");
    cuda::ParsedConvChoices saved;
    try {
      saved = cuda::parse_conv_choices(read_bytes(path), path);
    } catch (const std::exception& e) {
      expect(false, cat("choices file: not written or unreadable: ", e.what()));
    }
    expect(saved.choices.size() == 1, cat("choices file: ", saved.choices.size(), " choices written, expected 1"));
    expect(saved.device.find("cuDNN") != std::string::npos, cat("choices file: device '", saved.device, "'"));
    const bool chose_cudnn = !saved.choices.empty() && saved.choices.begin()->second.backend == ConvBackend::Cudnn;

    cuda::clear_conv_auto_choices();
    cuda::set_conv_auto_cache(path);
    cuda::reset_conv_backend_counts();
    const Tensor y2 = conv2d(plain, x, w, nullptr, c.a).to(Device::CPU);
    const cuda::ConvBackendCounts n = cuda::conv_backend_counts();
    expect(n.timed == 0, cat("choices file: read back, the shape was timed ", n.timed, " times"));
    expect(n.cudnn == (chose_cudnn ? 1 : 0), "choices file: the stored backend ran");
    expect(max_rel_diff(y1, y2) == 0, "choices file: the same results bit for bit");

    write_bytes(path, "saliency conv auto choices v3\ndevice another GPU\n");
    cuda::clear_conv_auto_choices();
    cuda::set_conv_auto_cache(path);
    cuda::reset_conv_backend_counts();
    conv2d(plain, x, w, nullptr, c.a);
    expect(cuda::conv_backend_counts().timed == 1, "choices file of another GPU: timed again");
    expect(read_bytes(path).find("device another GPU") == std::string::npos,
           "choices file of another GPU: replaced with this GPU's");
    cuda::set_conv_auto_cache("");
    std::filesystem::remove(path);
  }

  // ---- determinism: the custom kernels give bit-identical results run to run (no atomics)
  {
    cuda::set_conv_backend(ConvBackend::Custom);
    // (a weight gradient whose reduction splits: 2 x 32 x 32 positions, 64 K-tiles; cuda/conv_igemm.cu)
    const std::vector<Case> all = cases();
    const Case c = *std::find_if(all.begin(), all.end(),
                                 [](const Case& k) { return k.name == "splitk_wgrad_3x3_8to8_32x32"; });
    Tensor x = random_tensor(c.x, 3).to(Device::CUDA), w = random_tensor(c.w, 4).to(Device::CUDA);
    Tensor dy = random_tensor(out_shape(c), 5).to(Device::CUDA);
    Tensor dw1 = Tensor::zeros(c.w, DType::F32, Device::CUDA), dw2 = Tensor::zeros(c.w, DType::F32, Device::CUDA);
    conv2d_wgrad(plain, dy, x, dw1, nullptr, c.a);
    conv2d_wgrad(plain, dy, x, dw2, nullptr, c.a);
    expect(max_rel_diff(dw1.to(Device::CPU), dw2.to(Device::CPU)) == 0, "custom split-K wgrad is deterministic");
  }

  // ---- f32 math is f32: a 1x1 conv, 64 -> 64 channels, 8x8, of inputs that TF32 cannot hold. With
  // x = dy = 1 + 2^-12 (a quarter of TF32's last place at 1: it rounds to 1) and w = 1, the forward, the
  // input gradient and the weight gradient (x = 1+2^-12, dy = 1) are all 64 (1 + 2^-12) = 64.015625,
  // exact in f32 in any summation order (every partial sum k (1 + 2^-12) fits in 24 bits); TF32 operands
  // give 64. Every backend in f32 must get 64.015625 (cuDNN's transform-based algorithms to 1e-3; cuBLAS,
  // which runs the forward and input gradient here and leaves the weight gradient to cuDNN, exactly); the
  // custom kernels in TF32 must get exactly 64 (they round every operand, by design).
  {
    const Case c{"exactness_1x1_64to64_8x8", {1, 64, 8, 8}, {64, 64, 1, 1}, Conv2dArgs::make(1, 0)};
    const double odd = 1.0 + std::ldexp(1.0, -12), want_f32 = 64.0 * odd;
    auto filled = [](const Shape& s, double v) {
      return Tensor::from_values(std::vector<double>(static_cast<size_t>(s.numel()), v), s, DType::F32).to(Device::CUDA);
    };
    for (const ConvMath math : {ConvMath::F32, ConvMath::TF32}) {
      for (const ConvBackend mode : {ConvBackend::Custom, ConvBackend::Cudnn, ConvBackend::Cublas}) {
        // cuDNN and cuBLAS may or may not use TF32 where they are allowed to
        if (math == ConvMath::TF32 && mode != ConvBackend::Custom) continue;
        cuda::set_conv_math(math);
        cuda::set_conv_backend(mode);
        const std::string what = cat("exactness [", cuda::conv_backend_name(mode), ", ", cuda::conv_math_name(math), "]");
        try {
          Tensor y = conv2d(plain, filled(c.x, odd), filled(c.w, 1.0), nullptr, c.a);
          Tensor dx = conv2d_dgrad(plain, filled(Shape{1, 64, 8, 8}, odd), filled(c.w, 1.0), c.x, c.a);
          Tensor dw = filled(c.w, 0.0);
          conv2d_wgrad(plain, filled(Shape{1, 64, 8, 8}, 1.0), filled(c.x, odd), dw, nullptr, c.a);
          const double want = math == ConvMath::F32 ? want_f32 : 64.0;
          const char* names[] = {"forward", "input gradient", "weight gradient"};
          const Tensor* outs[] = {&y, &dx, &dw};
          for (int i = 0; i < 3; ++i) {
            const bool by_cudnn = mode == ConvBackend::Cudnn || (mode == ConvBackend::Cublas && i == 2);
            const double tol = math == ConvMath::F32 && by_cudnn ? 1e-3 : 0.0;
            double worst = 0;
            for (double v : outs[i]->values()) worst = std::max(worst, std::abs(v - want));
            expect(worst <= tol, cat(what, ": ", names[i], " is off ", want, " by ", worst, " (tolerance ", tol, ")"));
          }
        } catch (const std::exception& e) {
          expect(false, cat(what, ": threw: ", e.what()));
        }
      }
    }
    cuda::set_conv_math(ConvMath::TF32);
  }

  cuda::set_conv_backend(ConvBackend::Auto);
  std::printf("%d checks, %d failed\n", g_checks, g_failed);
  return g_failed ? 1 : 0;
}
