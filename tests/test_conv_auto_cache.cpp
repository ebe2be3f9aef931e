// The file that keeps Auto's convolution backend choices between processes (cuda/conv_auto_cache.h):
// its text round trips, malformed files are errors naming the file and the line, a file for another GPU
// is ignored and replaced, and writes merge with what is there. Needs no GPU (only a CUDA build); the
// choices' use by Auto is checked by tests/cuda_conv_backends.cpp on a GPU.
#include <doctest/doctest.h>

#ifdef SAL_WITH_CUDA
#include <cstdlib>
#include <filesystem>
#include <string>

#include "cuda/conv_auto_cache.h"
#include "engine/error.h"
#include "tests/temp_files.h"

using namespace sal;
using namespace sal::cuda;
using sal::test::read_bytes;
using sal::test::TempDir;
using sal::test::write_bytes;

namespace {

ConvChoiceKey key(int64_t pass, int64_t n) {
  // pass, N, C, H, W, K, P, Q, R, S, G, sh, sw, pt, pl, dh, dw, tf32
  return ConvChoiceKey{pass, n, 64, 56, 56, 64, 56, 56, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1};
}
// A 1x1 convolution, the shape cuBLAS can run (forward and input gradient).
ConvChoiceKey key_1x1(int64_t pass, int64_t n) {
  return ConvChoiceKey{pass, n, 64, 56, 56, 256, 56, 56, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1};
}

const char* kHeader = "saliency conv auto choices v3\ndevice NVIDIA H200 (cuDNN 91000)\n";

std::string error_of(const std::string& text) {
  try {
    parse_conv_choices(text, "/tmp/choices.txt");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("conv auto cache: the text names the device and one choice per line, and parses back") {
  ConvChoices c;
  c[key(0, 64)] = ConvChoice{ConvBackend::Cudnn};
  c[key(1, 1)] = ConvChoice{ConvBackend::Custom};
  c[key(3, 8)] = ConvChoice{ConvBackend::Cudnn};
  c[key(2, 16)] = ConvChoice{ConvBackend::Cudnn, 5};  // cuDNN's algorithm 5, timed fastest
  c[key_1x1(2, 64)] = ConvChoice{ConvBackend::Cublas};
  ConvChoice folded;  // conv2d_bn_act's forward, its batch norm folded into the weights, cuDNN's algorithm 1
  folded.backend = ConvBackend::Cudnn, folded.cudnn_algo = 1, folded.fold_bn = true;
  c[key(4, 32)] = folded;  // with ReLU
  c[key(5, 32)] = folded;  // with no activation (algorithm 1 only)
  folded.cudnn_algo = -1;  // with ReLU after a shortcut sum, cuDNN's heuristic algorithm
  c[key(6, 2)] = folded;
  ConvChoice nhwc;  // cuDNN in NHWC with the conversions around it: its heuristic NHWC algorithm, and algorithm 6
  nhwc.backend = ConvBackend::Cudnn, nhwc.nhwc = true;
  c[key(0, 4)] = nhwc;
  nhwc.cudnn_algo = 6;
  c[key(3, 4)] = nhwc;
  const std::string text = format_conv_choices("NVIDIA H200 (cuDNN 91000)", c);
  CHECK(text.rfind(kHeader, 0) == 0);
  CHECK(text.find("\nfwd 64 64 56 56 64 56 56 3 3 1 1 1 1 1 1 1 1 cudnn\n") != std::string::npos);
  CHECK(text.find("\nfwd_fused 1 64 56 56 64 56 56 3 3 1 1 1 1 1 1 1 1 custom\n") != std::string::npos);
  CHECK(text.find("\nwgrad 8 ") != std::string::npos);
  CHECK(text.find("\ndgrad 64 64 56 56 256 56 56 1 1 1 1 1 0 0 1 1 1 cublas\n") != std::string::npos);
  CHECK(text.find("\ndgrad 16 64 56 56 64 56 56 3 3 1 1 1 1 1 1 1 1 cudnn:5\n") != std::string::npos);
  CHECK(text.find("\nfwd_fused_relu 32 64 56 56 64 56 56 3 3 1 1 1 1 1 1 1 1 cudnn+fold:1\n") != std::string::npos);
  CHECK(text.find("\nfwd_fused_none 32 64 56 56 64 56 56 3 3 1 1 1 1 1 1 1 1 cudnn+fold:1\n") != std::string::npos);
  CHECK(text.find("\nfwd_fused_relu_res 2 64 56 56 64 56 56 3 3 1 1 1 1 1 1 1 1 cudnn+fold\n") != std::string::npos);
  CHECK(text.find("\nfwd 4 64 56 56 64 56 56 3 3 1 1 1 1 1 1 1 1 cudnn+nhwc\n") != std::string::npos);
  CHECK(text.find("\nwgrad 4 64 56 56 64 56 56 3 3 1 1 1 1 1 1 1 1 cudnn+nhwc:6\n") != std::string::npos);
  const ParsedConvChoices p = parse_conv_choices(text, "x");
  CHECK(p.device == "NVIDIA H200 (cuDNN 91000)");
  CHECK(p.choices == c);
  CHECK(parse_conv_choices(format_conv_choices("d", {}), "x").choices.empty());
  CHECK_THROWS_WITH(format_conv_choices("d", {{key(0, 1), ConvChoice{ConvBackend::Auto}}}),
                    doctest::Contains("Auto is not a choice"));
  CHECK_THROWS_WITH(format_conv_choices("d", {{key(0, 1), ConvChoice{ConvBackend::Custom, 2}}}),
                    doctest::Contains("an algorithm number with a backend other than cuDNN"));
  CHECK(conv_choice_name(ConvChoice{ConvBackend::Cudnn, 12}) == "cudnn:12");
  CHECK(conv_choice_name(folded) == "cudnn+fold");
  // the fold where it cannot be: a plain forward, ReLU6's, f32 math, another backend, no activation other than by
  // algorithm 1
  ConvChoice misplaced = folded;
  CHECK_THROWS_WITH(format_conv_choices("d", {{key(0, 1), misplaced}}),
                    doctest::Contains("format_conv_choices: the batch-norm fold ('cudnn+fold') is cuDNN's, for the "
                                      "fwd_fused_relu[_res] and fwd_fused_none[_res] passes in TF32 only"));
  CHECK_THROWS_WITH(format_conv_choices("d", {{key(7, 1), misplaced}}),
                    doctest::Contains("with no activation only with algorithm 1 (IMPLICIT_PRECOMP_GEMM)"));
  CHECK_THROWS_WITH(format_conv_choices("d", {{key(1, 1), misplaced}}), doctest::Contains("the batch-norm fold"));
  ConvChoiceKey f32 = key(4, 1);
  f32[17] = 0;
  CHECK_THROWS_WITH(format_conv_choices("d", {{f32, misplaced}}), doctest::Contains("the batch-norm fold"));
  misplaced.backend = ConvBackend::Custom;
  CHECK_THROWS_WITH(format_conv_choices("d", {{key(4, 1), misplaced}}), doctest::Contains("the batch-norm fold"));
  CHECK(conv_choice_name(ConvChoice{ConvBackend::Cudnn}) == "cudnn");
  // NHWC where it cannot be: a fused forward, f32 math, another backend, with the fold
  CHECK(conv_choice_name(nhwc) == "cudnn+nhwc:6");
  for (const int64_t pass : {1, 4, 5, 6, 7})
    CHECK_THROWS_WITH(format_conv_choices("d", {{key(pass, 1), nhwc}}),
                      doctest::Contains("format_conv_choices: cuDNN in NHWC ('cudnn+nhwc') is for the fwd, dgrad and "
                                        "wgrad passes in TF32 only"));
  ConvChoiceKey f32_plain = key(0, 1);
  f32_plain[17] = 0;
  nhwc.cudnn_algo = -1;
  CHECK_THROWS_WITH(format_conv_choices("d", {{f32_plain, nhwc}}), doctest::Contains("cuDNN in NHWC"));
  ConvChoice nhwc_fold = nhwc;
  nhwc_fold.fold_bn = true;
  CHECK_THROWS_WITH(format_conv_choices("d", {{key(4, 1), nhwc_fold}}), doctest::Contains("cuDNN in NHWC"));
  nhwc.backend = ConvBackend::Cublas;
  CHECK_THROWS_WITH(format_conv_choices("d", {{key_1x1(0, 1), nhwc}}), doctest::Contains("cuDNN in NHWC"));
}

TEST_CASE("conv auto cache: a malformed file is an error naming the file, the line and what is wrong") {
  const std::string good = "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn\n";
  CHECK(error_of(std::string(kHeader) + good).empty());
  CHECK(error_of(std::string(kHeader) + "\n" + good + "\n").empty());  // blank lines are skipped
  const struct {
    std::string text, want;
  } bad[] = {
      {"", "/tmp/choices.txt line 1: expected 'saliency conv auto choices v3'"},
      {"saliency conv auto choices v4\n", "line 1: expected"},
      {"saliency conv auto choices v3\n", "line 2: expected 'device <GPU name>'"},
      {"saliency conv auto choices v3\ndevice \n", "line 2: expected 'device <GPU name>'"},
      {std::string(kHeader) + "forward 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn\n",
       "line 3: unknown pass 'forward' (expected fwd, fwd_fused, fwd_fused_relu[_res], fwd_fused_none[_res], dgrad or "
       "wgrad)"},
      {std::string(kHeader) + good + "dgrad 1 2 3 cudnn\n", "line 4: expected 17 numbers >= 0 after the pass"},
      {std::string(kHeader) + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 -1 0 1 1 1 cudnn\n", "line 3: expected 17 numbers"},
      {std::string(kHeader) + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 auto\n",
       "line 3: expected 'custom', 'cudnn', 'cudnn:N', 'cudnn+fold', 'cudnn+fold:N', 'cudnn+nhwc', 'cudnn+nhwc:N' or "
       "'cublas' after the numbers, got 'auto'"},
      {std::string(kHeader) + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn:\n",
       "line 3: expected an algorithm number after 'cudnn:', got 'cudnn:'"},
      {std::string(kHeader) + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn:x1\n", "got 'cudnn:x1'"},
      {std::string(kHeader) + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn:123\n", "got 'cudnn:123'"},
      {std::string(kHeader) + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn:-1\n", "got 'cudnn:-1'"},
      // choices Auto never makes: cuDNN on a shape it cannot take (1x4 input, 3x3 kernel, output 2x2), an
      // algorithm number in f32 math (the last key number 0)
      {std::string(kHeader) + "fwd 1 2 1 4 5 2 2 3 3 1 1 1 0 0 1 1 1 cudnn\n", "line 3: cuDNN cannot take this shape"},
      {std::string(kHeader) + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 0 cudnn:1\n",
       "line 3: a cuDNN algorithm number for f32 math"},
      // cuBLAS on a pass it cannot run: a weight gradient, or a 3x3 convolution
      {std::string(kHeader) + "wgrad 1 64 56 56 256 56 56 1 1 1 1 1 0 0 1 1 1 cublas\n",
       "line 3: cuBLAS runs only the forward and input gradient of 1x1"},
      {std::string(kHeader) + "fwd 1 2 3 4 5 3 4 3 3 1 1 1 1 1 1 1 1 cublas\n", "line 3: cuBLAS runs only"},
      {std::string(kHeader) + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1\n", "got ''"},
      // the batch-norm fold: cuDNN's only, conv2d_bn_act's forward with ReLU or none only, TF32 only, and with no
      // activation only cuDNN's algorithm 1, named
      {std::string(kHeader) + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn+fold\n",
       "line 3: the batch-norm fold ('cudnn+fold') is cuDNN's, for the fwd_fused_relu[_res] and fwd_fused_none[_res] "
       "passes in TF32 only"},
      {std::string(kHeader) + "fwd_fused 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn+fold\n",
       "line 3: the batch-norm fold"},
      {std::string(kHeader) + "fwd_fused_relu 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 0 cudnn+fold\n",
       "line 3: the batch-norm fold"},
      {std::string(kHeader) + "fwd_fused_none 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn+fold:0\n",
       "line 3: cuDNN runs its fused convolution + bias with no activation only with algorithm 1 "
       "(IMPLICIT_PRECOMP_GEMM), which the choice must name ('cudnn+fold:1')"},
      {std::string(kHeader) + "fwd_fused_none_res 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn+fold\n",
       "line 3: cuDNN runs its fused convolution + bias with no activation only with algorithm 1"},
      {std::string(kHeader) + "fwd_fused_relu 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn+fold:\n",
       "line 3: expected an algorithm number after 'cudnn:', got 'cudnn+fold:'"},
      {std::string(kHeader) + "fwd_fused_relu 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn+folded\n", "got 'cudnn+folded'"},
      {std::string(kHeader) + "fwd_fused_relu 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn+fold+fold\n",
       "got 'cudnn+fold+fold'"},
      {std::string(kHeader) + "fwd_fused_relu 1 64 56 56 256 56 56 1 1 1 1 1 0 0 1 1 1 cublas+fold\n",
       "got 'cublas+fold'"},
      {std::string(kHeader) + "fwd_fused_relu 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn+fold:2\n" +
           "fwd_fused_relu 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn:2\n",
       "line 4: the same shape is listed with another choice before"},
      // cuDNN in NHWC: the plain passes only, TF32 only, not with the fold, cuDNN's only
      {std::string(kHeader) + "fwd_fused_relu 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn+nhwc\n",
       "line 3: cuDNN in NHWC ('cudnn+nhwc') is for the fwd, dgrad and wgrad passes in TF32 only"},
      {std::string(kHeader) + "fwd_fused 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn+nhwc\n", "line 3: cuDNN in NHWC"},
      {std::string(kHeader) + "dgrad 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 0 cudnn+nhwc\n", "line 3: cuDNN in NHWC"},
      {std::string(kHeader) + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn+nhwc+fold\n", "got 'cudnn+nhwc+fold'"},
      {std::string(kHeader) + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn+fold+nhwc\n", "got 'cudnn+fold+nhwc'"},
      {std::string(kHeader) + "fwd 1 64 56 56 256 56 56 1 1 1 1 1 0 0 1 1 1 cublas+nhwc\n", "got 'cublas+nhwc'"},
      {std::string(kHeader) + "wgrad 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn+nhwc:\n",
       "line 3: expected an algorithm number after 'cudnn:', got 'cudnn+nhwc:'"},
      {std::string(kHeader) + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn+nhwc:1\n" +
           "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn:1\n",
       "line 4: the same shape is listed with another choice before"},
      {std::string(kHeader) + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn 7\n", "line 3: unexpected '7' at the end"},
      {std::string(kHeader) + good + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 custom\n",
       "line 4: the same shape is listed with another choice before"},
      {std::string(kHeader) + good + "fwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn:2\n",
       "line 4: the same shape is listed with another choice before"},
  };
  for (const auto& b : bad) {
    INFO(b.text);
    const std::string e = error_of(b.text);
    CHECK(e.find(b.want) != std::string::npos);
    CHECK(e.find("/tmp/choices.txt") != std::string::npos);
    CHECK(e.find("delete it") != std::string::npos);
  }
  // Listed twice with the same backend: not a conflict.
  CHECK(error_of(std::string(kHeader) + good + good).empty());
}

TEST_CASE("conv auto cache: read and write merge for the same GPU, ignore and replace another GPU's or version's file") {
  TempDir t("sal_conv_cache_");
  const std::string path = t.file("choices.txt");
  CHECK(read_conv_choices(path, "gpu A").empty());  // no file yet

  write_conv_choices(path, "gpu A",
                     {{key(0, 1), ConvChoice{ConvBackend::Cudnn}}, {key(2, 1), ConvChoice{ConvBackend::Custom}}});
  ConvChoices a = read_conv_choices(path, "gpu A");
  CHECK(a.size() == 2);
  CHECK(a[key(0, 1)].backend == ConvBackend::Cudnn);
  CHECK(read_conv_choices(path, "gpu B").empty());  // timed on another GPU: not used

  // Another process adds a shape and changes one: both land, its own choice wins.
  write_conv_choices(path, "gpu A",
                     {{key(0, 1), ConvChoice{ConvBackend::Custom}}, {key(3, 4), ConvChoice{ConvBackend::Cudnn, 1}}});
  a = read_conv_choices(path, "gpu A");
  CHECK(a.size() == 3);
  CHECK(a[key(0, 1)].backend == ConvBackend::Custom);
  CHECK(a[key(2, 1)].backend == ConvBackend::Custom);
  CHECK(a[key(3, 4)] == ConvChoice{ConvBackend::Cudnn, 1});

  // A run on another GPU replaces the file with its own choices.
  write_conv_choices(path, "gpu B", {{key(1, 2), ConvChoice{ConvBackend::Cudnn}}});
  CHECK(read_conv_choices(path, "gpu A").empty());
  CHECK(read_conv_choices(path, "gpu B").size() == 1);
  // Written through a temporary that is renamed: nothing else is left in the folder.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(t.dir)) files += e.is_regular_file() ? 1 : 0;
  CHECK(files == 1);

  // A file in a format before session 16 (v1: conv2d_bn_act's forward keyed without its activation; v2: no NHWC)
  // holds no choices for this version and is replaced by the next write.
  for (const char* older : {"v1", "v2"}) {
    INFO(older);
    write_bytes(path, cat("saliency conv auto choices ", older,
                          "\ndevice gpu A\nfwd 1 2 3 4 5 3 4 1 1 1 1 1 0 0 1 1 1 cudnn\n"));
    CHECK(read_conv_choices(path, "gpu A").empty());
    write_conv_choices(path, "gpu A", {{key(1, 2), ConvChoice{ConvBackend::Custom}}});
    CHECK(read_bytes(path).rfind("saliency conv auto choices v3\n", 0) == 0);
    CHECK(read_conv_choices(path, "gpu A").size() == 1);
  }

  // A corrupt file stops the run with the parse error instead of being overwritten.
  write_bytes(path, "not a cache\n");
  CHECK_THROWS_WITH(read_conv_choices(path, "gpu A"), doctest::Contains("choices.txt line 1"));
  CHECK_THROWS_WITH(write_conv_choices(path, "gpu A", {}), doctest::Contains("choices.txt line 1"));
  CHECK(read_bytes(path) == "not a cache\n");

  // A folder that cannot take the file: the error names it.
  CHECK_THROWS_WITH(write_conv_choices(t.file("missing/choices.txt"), "gpu A", {}),
                    doctest::Contains("missing/choices.txt.tmp."));
}

TEST_CASE("conv auto cache: set_conv_auto_cache sets the file Auto uses (SAL_CONV_AUTO_CACHE by default)") {
  const std::string before = conv_auto_cache();
  set_conv_auto_cache("/tmp/some/choices.txt");
  CHECK(conv_auto_cache() == "/tmp/some/choices.txt");
  set_conv_auto_cache("");
  CHECK(conv_auto_cache().empty());
  set_conv_auto_cache(before);
}

TEST_CASE("SAL_CONV_FOLD_BN: the words it takes, and the setting") {
  CHECK(parse_conv_fold_bn("1"));
  CHECK(parse_conv_fold_bn("ON"));
  CHECK(!parse_conv_fold_bn("0"));
  CHECK(!parse_conv_fold_bn("off"));
  CHECK_THROWS_WITH(parse_conv_fold_bn("yes"),
                    doctest::Contains("SAL_CONV_FOLD_BN / parse_conv_fold_bn: expected 1, on, 0 or off, got 'yes'"));
  const bool before = conv_fold_bn();
  set_conv_fold_bn(!before);
  CHECK(conv_fold_bn() == !before);
  set_conv_fold_bn(before);
}

TEST_CASE("SAL_CONV_NHWC: the words it takes, and the setting (off unless the environment says on)") {
  CHECK(parse_conv_nhwc("1"));
  CHECK(parse_conv_nhwc("On"));
  CHECK(!parse_conv_nhwc("0"));
  CHECK(!parse_conv_nhwc("OFF"));
  CHECK_THROWS_WITH(parse_conv_nhwc(""),
                    doctest::Contains("SAL_CONV_NHWC / parse_conv_nhwc: expected 1, on, 0 or off"));
  const char* env = std::getenv("SAL_CONV_NHWC");
  if (!env || !*env) CHECK(!conv_nhwc());
  const bool before = conv_nhwc();
  set_conv_nhwc(!before);
  CHECK(conv_nhwc() == !before);
  set_conv_nhwc(before);
}
#endif
