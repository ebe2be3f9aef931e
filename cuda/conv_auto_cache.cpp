// The file of Auto's convolution backend choices (cuda/conv_auto_cache.h).
#include "cuda/conv_auto_cache.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "cuda/conv_pointwise_gemm.h"
#include "cuda/cudnn_conv.h"
#include "engine/error.h"

namespace sal::cuda {

namespace {

// v2 (session 15): conv2d_bn_act's forward keyed by activation and shortcut, and the batch-norm fold; v3 (session
// 16): cuDNN in NHWC. A file in an older format is read as no choices, and replaced by the next write (as a file
// timed on another GPU is).
constexpr const char* kFormatLine = "saliency conv auto choices v3";
constexpr const char* kOlderFormats[] = {"saliency conv auto choices v1", "saliency conv auto choices v2"};
constexpr const char* kDeviceTag = "device ";
// conv_backend.cpp's Pass, in order (conv2d_bn_act's forward: fwd_fused with ReLU6, the others with ReLU or none,
// with or without a shortcut sum)
constexpr const char* kPassNames[] = {"fwd",   "fwd_fused",      "dgrad",          "wgrad", "fwd_fused_relu",
                                      "fwd_fused_none", "fwd_fused_relu_res", "fwd_fused_none_res"};
constexpr int kPasses = 8;
constexpr int kWgrad = 3;

// What is wrong with a fold choice for this key ("" if nothing): the fold is cuDNN's, for conv2d_bn_act's forward
// with ReLU or no activation, in TF32; with no activation by algorithm 1 (named: the heuristic choice may be
// another).
std::string fold_problem(const ConvChoiceKey& key, const ConvChoice& c) {
  if (!c.fold_bn) return "";
  if (c.backend != ConvBackend::Cudnn || !conv_pass_can_fold(key[0]) || key[17] == 0)
    return "the batch-norm fold ('cudnn+fold') is cuDNN's, for the fwd_fused_relu[_res] and fwd_fused_none[_res] "
           "passes in TF32 only";
  if (conv_pass_has_no_activation(key[0]) && c.cudnn_algo != kCudnnFusedNoActivationAlgo)
    return cat("cuDNN runs its fused convolution + bias with no activation only with algorithm ",
               kCudnnFusedNoActivationAlgo, " (IMPLICIT_PRECOMP_GEMM), which the choice must name ('cudnn+fold:",
               kCudnnFusedNoActivationAlgo, "')");
  return "";
}
constexpr const char* kFold = "+fold";  // after "cudnn": the batch norm folded into the weights

// What is wrong with an NHWC choice for this key ("" if nothing): cuDNN's, for the plain passes in TF32, not with the
// fold.
std::string nhwc_problem(const ConvChoiceKey& key, const ConvChoice& c) {
  if (!c.nhwc) return "";
  if (c.backend != ConvBackend::Cudnn || c.fold_bn || !conv_pass_can_nhwc(key[0]) || key[17] == 0)
    return "cuDNN in NHWC ('cudnn+nhwc') is for the fwd, dgrad and wgrad passes in TF32 only";
  return "";
}
constexpr const char* kNhwc = "+nhwc";  // after "cudnn": cuDNN in NHWC, the tensors converted around it

// The geometry a key describes (key_of in conv_backend.cpp: pass, then these in this order).
ConvGeom geom_of(const ConvChoiceKey& k) {
  ConvGeom g{k[1], k[2], k[3], k[4], k[5], k[6], k[7], k[8], k[9], k[10]};
  g.sh = static_cast<int>(k[11]), g.sw = static_cast<int>(k[12]), g.pt = static_cast<int>(k[13]);
  g.pl = static_cast<int>(k[14]), g.dh = static_cast<int>(k[15]), g.dw = static_cast<int>(k[16]);
  g.tf32 = k[17] != 0;
  return g;
}

[[noreturn]] void bad_line(const std::string& path, int line, const std::string& what) {
  fail(path, " line ", line, ": ", what, " (a file of convolution backend choices, SAL_CONV_AUTO_CACHE; delete it ",
       "and the next run times the shapes again)");
}

}  // namespace

std::string conv_choice_name(const ConvChoice& c) {
  std::string name = conv_backend_name(c.backend);
  if (c.backend != ConvBackend::Cudnn) return name;
  if (c.fold_bn) name += kFold;
  if (c.nhwc) name += kNhwc;
  return c.cudnn_algo >= 0 ? cat(name, ":", c.cudnn_algo) : name;
}

std::string format_conv_choices(const std::string& device, const ConvChoices& choices) {
  SAL_CHECK(!device.empty() && device.find('\n') == std::string::npos, "format_conv_choices: bad device name '",
            device, "'");
  std::ostringstream out;
  out << kFormatLine << '\n' << kDeviceTag << device << '\n';
  for (const auto& [key, choice] : choices) {
    SAL_CHECK(key[0] >= 0 && key[0] < kPasses, "format_conv_choices: pass ", key[0], " out of range");
    SAL_CHECK(choice.backend != ConvBackend::Auto, "format_conv_choices: Auto is not a choice");
    SAL_CHECK(choice.cudnn_algo < 0 || choice.backend == ConvBackend::Cudnn,
              "format_conv_choices: an algorithm number with a backend other than cuDNN");
    const std::string misplaced = fold_problem(key, choice) + nhwc_problem(key, choice);
    SAL_CHECK(misplaced.empty(), "format_conv_choices: ", misplaced);
    out << kPassNames[key[0]];
    for (size_t i = 1; i < key.size(); ++i) out << ' ' << key[i];
    out << ' ' << conv_choice_name(choice) << '\n';
  }
  return out.str();
}

ParsedConvChoices parse_conv_choices(const std::string& text, const std::string& path) {
  std::istringstream in(text);
  std::string line;
  ParsedConvChoices parsed;
  if (!std::getline(in, line) || line != kFormatLine) bad_line(path, 1, cat("expected '", kFormatLine, "'"));
  if (!std::getline(in, line) || line.rfind(kDeviceTag, 0) != 0 || line.size() == std::strlen(kDeviceTag))
    bad_line(path, 2, "expected 'device <GPU name>'");
  parsed.device = line.substr(std::strlen(kDeviceTag));
  for (int number = 3; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string pass, backend;
    fields >> pass;
    ConvChoiceKey key{};
    int p = 0;
    while (p < kPasses && pass != kPassNames[p]) ++p;
    if (p == kPasses)
      bad_line(path, number, cat("unknown pass '", pass,
                                 "' (expected fwd, fwd_fused, fwd_fused_relu[_res], fwd_fused_none[_res], dgrad or "
                                 "wgrad)"));
    key[0] = p;
    for (size_t i = 1; i < key.size(); ++i) {
      if (!(fields >> key[i]) || key[i] < 0)
        bad_line(path, number, cat("expected ", key.size() - 1, " numbers >= 0 after the pass"));
    }
    fields >> backend;
    ConvChoice c;
    const std::string word = backend;  // for the messages
    const std::string fold = cat("cudnn", kFold), nhwc = cat("cudnn", kNhwc);
    if (backend.rfind(fold, 0) == 0) {  // "cudnn+fold[:N]": read as "cudnn[:N]" with the fold
      c.fold_bn = true;
      backend = "cudnn" + backend.substr(fold.size());
    } else if (backend.rfind(nhwc, 0) == 0) {  // "cudnn+nhwc[:N]": likewise in NHWC
      c.nhwc = true;
      backend = "cudnn" + backend.substr(nhwc.size());
    }
    if (backend.rfind("cudnn:", 0) == 0) {  // cuDNN's algorithm N (a small number: cuDNN has under 10 a pass)
      const std::string n = backend.substr(6);
      if (n.empty() || n.size() > 2 || n.find_first_not_of("0123456789") != std::string::npos)
        bad_line(path, number, cat("expected an algorithm number after 'cudnn:', got '", word, "'"));
      c.backend = ConvBackend::Cudnn, c.cudnn_algo = std::stoi(n);
    } else if (backend == "cudnn" || (!c.fold_bn && !c.nhwc && (backend == "custom" || backend == "cublas"))) {
      c.backend = parse_conv_backend(backend);
    } else {
      bad_line(path, number,
               cat("expected 'custom', 'cudnn', 'cudnn:N', 'cudnn+fold', 'cudnn+fold:N', 'cudnn+nhwc', 'cudnn+nhwc:N' "
                   "or 'cublas' after the numbers, got '",
                   word, "'"));
    }
    std::string extra;
    if (fields >> extra) bad_line(path, number, cat("unexpected '", extra, "' at the end"));
    if (c.backend == ConvBackend::Cublas && (p == kWgrad || !pointwise_gemm_applies(geom_of(key))))
      bad_line(path, number, "cuBLAS runs only the forward and input gradient of 1x1, stride-1, unpadded, "
                             "ungrouped convolutions, not this pass and shape");
    // (What Auto never writes: it would fail in the run, mid-step, instead of here.)
    if (c.backend == ConvBackend::Cudnn && !cudnn_conv_supported(geom_of(key)))
      bad_line(path, number, "cuDNN cannot take this shape (cudnn_conv_supported)");
    if (c.cudnn_algo >= 0 && key[17] == 0)
      bad_line(path, number, "a cuDNN algorithm number for f32 math (Auto times cuDNN's algorithms in TF32 only)");
    const std::string misplaced = fold_problem(key, c) + nhwc_problem(key, c);
    if (!misplaced.empty()) bad_line(path, number, misplaced);
    auto [it, inserted] = parsed.choices.emplace(key, c);
    if (!inserted && !(it->second == c)) bad_line(path, number, "the same shape is listed with another choice before");
  }
  return parsed;
}

ConvChoices read_conv_choices(const std::string& path, const std::string& device) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return {};
  std::ifstream f(path, std::ios::binary);
  SAL_CHECK(f.good(), path, ": cannot open the convolution backend choices (SAL_CONV_AUTO_CACHE): ",
            std::strerror(errno));
  std::ostringstream text;
  text << f.rdbuf();
  SAL_CHECK(!f.bad(), path, ": read error");
  const std::string first = text.str().substr(0, text.str().find('\n'));
  for (const char* older : kOlderFormats)
    if (first == older) return {};  // an older format's choices: timed again, and the file rewritten
  ParsedConvChoices parsed = parse_conv_choices(text.str(), path);
  if (parsed.device != device) return {};
  return std::move(parsed.choices);
}

void write_conv_choices(const std::string& path, const std::string& device, const ConvChoices& choices) {
  ConvChoices all = read_conv_choices(path, device);
  for (const auto& [key, backend] : choices) all[key] = backend;
  // A name of our own for the temporary: several processes may write the same cache.
  const std::string tmp = cat(path, ".tmp.", getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    SAL_CHECK(out.good(), tmp, ": cannot open for writing (SAL_CONV_AUTO_CACHE): ", std::strerror(errno));
    out << format_conv_choices(device, all);
    out.flush();
    SAL_CHECK(out.good(), tmp, ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    const std::string why = ec.message();
    std::filesystem::remove(tmp, ec);
    fail(path, ": cannot replace it with ", tmp, " (SAL_CONV_AUTO_CACHE): ", why);
  }
}

}  // namespace sal::cuda
