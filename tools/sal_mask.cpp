// sal_mask: saliency masks of a trained masker (layers/masker_io.h) for image files, folders or tars
// (engine/image_sources.h), on the CPU or (--device cuda) on CUDA device 0.
//
//   sal_mask --masker runs/cifar/masker.safetensors --out masks/ samples/*.JPEG
//   sal_mask --masker M --labels ../shared/data/imagenet-val/annotations.tsv --out masks/ ../shared/data/imagenet-val/images
//
// For every image: decoded to RGB, resized bilinearly to the masker's image size (its file's
// image_size), classified by the black box (the masker's encoder: --black-box, by default the file the
// masker names, looked up beside the masker and in weights/), masked for the selected class, and the
// mask resized back to the image's own size. --class: "top1" (the black box's top-1; the default),
// "truth" (the label from --labels, a table with 'file' and 'label' columns, engine/annotations.h,
// matched by file name or tar entry name; or a WebDataset .cls; the default when --labels is given),
// or a class index / class name used for every image.
// Outputs in --out, per image STEM: STEM_mask.png (gray), STEM_overlay.png (heat map over the image,
// with the box in white; both enlarged --png-scale times), with --raw npy STEM_mask.npy (float32 [H,W]), and one line of masks.jsonl:
//   {"image", "class", "class_name", "class_source", "prob" (black-box probability of that class on the
//    image), "top1", "box" ([x0,y0,x1,y1] in image pixels, inclusive, of the region mask >= --threshold,
//    optionally its largest connected component; null when empty), "box_area" (fraction of the image),
//    "mask_area" (mean mask), "width", "height"}
// Each batch runs as two steps of layers/saliency_engine.h, on CUDA two captured CUDA graphs
// (engine/step_graph.h; --eager: kernel by kernel): the black box's class probabilities, read back to
// choose the classes, then the masker's decoder on the black box's feature maps from the first step (the
// black box is the masker's encoder, so it runs once per image, not twice). On CUDA a last, shorter batch
// is padded with zero images (every row is computed independently in inference, so padding changes nothing).
// Host work (reading, decoding, resizing; writing the PNGs and lines) runs over each batch's images on
// every core, and on CUDA beside the device's work on the next batch (--pipeline; see run()).
// An image that cannot be read or decoded (or has no label when one is needed) gets a line
// {"image", "error"} and a message on stderr; the others go on. Exit status: 0 all done, 1 some images
// failed (or a fatal error), 2 bad usage.
#include <omp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>

#include "engine/annotations.h"
#include "engine/device_session.h"
#include "engine/error.h"
#include "engine/heatmap.h"
#include "engine/image.h"
#include "engine/image_sources.h"
#include "engine/npy.h"
#include "engine/op_profile.h"
#include "engine/worker_thread.h"
#include "layers/saliency_engine.h"
#include "layers/saliency_eval.h"

using namespace sal;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Options {
  std::string masker, black_box, out, labels, cls, raw = "none", device = "cpu", pipeline = "auto";
  std::vector<std::string> inputs;
  int64_t batch = 16;
  int png_scale = 1;
  int png_level = kPngDefaultLevel;
  double threshold = 0.5, alpha = 0.6;
  bool largest_cc = false, quiet = false, eager = false;
};

void progress(int64_t done, int64_t total, double secs, bool tty) {
  const int width = 30;
  const int64_t filled = total ? done * width / total : width;
  std::string bar(static_cast<size_t>(filled), '=');
  bar.resize(width, ' ');
  std::fprintf(stderr, "%s[%s] %lld/%lld images  %.1f img/s%s", tty ? "\r" : "", bar.c_str(),
               static_cast<long long>(done), static_cast<long long>(total), secs > 0 ? done / secs : 0.0,
               tty ? (done == total ? "\n" : "") : "\n");
  std::fflush(stderr);
}

// Stage 1 of a batch: its sources read, decoded and resized to the masker's input, on every core.
struct LoadContext {
  const std::vector<ImageSource>& sources;
  const std::map<std::string, int>& label_of;
  const std::string& mode;
  int64_t classes, size;  // the black box's class count; the masker's image size
};

struct LoadedBatch {
  int64_t sources = 0;                       // sources in the batch, failed ones included
  std::vector<Image> images;                 // the decoded images, in input order
  std::vector<const ImageSource*> ok;        // their sources
  std::vector<int> labels;                   // their labels (-1: none known)
  std::vector<std::pair<std::string, std::string>> failures;  // {image name, error}, in input order
  Tensor x;                                  // f32 host [images, 3, size, size], values in [0,1]
};

LoadedBatch load_batch(const LoadContext& c, int64_t start, int64_t end) {
  const int64_t count = end - start;
  std::vector<Image> images(static_cast<size_t>(count));
  // Row i: source i resized; the failed sources' rows are closed up afterwards.
  Tensor x = Tensor::empty(Shape{std::max<int64_t>(count, 1), 3, c.size, c.size});
  std::vector<int> labels(static_cast<size_t>(count), -1);
  std::vector<std::string> errors(static_cast<size_t>(count));
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < count; ++i) {
    const ImageSource& s = c.sources[static_cast<size_t>(start + i)];
    const size_t k = static_cast<size_t>(i);
    try {
      int label = s.label;
      if (auto it = c.label_of.find(s.key); it != c.label_of.end()) label = it->second;
      else if (auto jt = c.label_of.find(fs::path(s.key).filename().string()); jt != c.label_of.end()) label = jt->second;
      if (c.mode == "truth") {
        SAL_CHECK(label >= 0, s.name, ": no label for '", s.key, "' (--class truth needs --labels or a .cls entry)");
        SAL_CHECK(label < c.classes, s.name, ": label ", label, " is outside the black box's ", c.classes, " classes");
      }
      images[k] = decode_image(read_source(s), s.name);
      x.slice0(i, 1).copy_from(image_to_tensor(images[k], c.size, c.size).reshape(Shape{1, 3, c.size, c.size}));
      labels[k] = label;
    } catch (const std::exception& e) {  // nothing may leave an OpenMP region
      errors[k] = e.what();
      if (errors[k].empty()) errors[k] = s.name + ": unknown error";
    } catch (...) {
      errors[k] = s.name + ": unknown error";
    }
  }
  LoadedBatch b;
  b.sources = count;
  for (int64_t i = 0; i < count; ++i) {
    const size_t k = static_cast<size_t>(i);
    const ImageSource& s = c.sources[static_cast<size_t>(start + i)];
    if (!errors[k].empty()) {
      b.failures.emplace_back(s.name, errors[k]);
      continue;
    }
    const int64_t n = static_cast<int64_t>(b.images.size());
    if (n != i) x.slice0(n, 1).copy_from(x.slice0(i, 1));  // n < i: distinct rows
    b.images.push_back(std::move(images[k]));
    b.ok.push_back(&s);
    b.labels.push_back(labels[k]);
  }
  if (!b.images.empty()) b.x = x.slice0(0, static_cast<int64_t>(b.images.size()));
  return b;
}

// Stage 2's results for stage 3.
struct BatchMasks {
  Tensor masks;                  // f32 host [images, 1, size, size]
  std::vector<double> log_probs; // [images * classes] the black box's log-probabilities
  std::vector<int32_t> classes;  // the class masked, per image
  std::vector<int> top1;
};

// Stage 3: per image, the mask at the image's size, its area and box, the PNGs (and .npy), and the
// JSON line, on every core. A write failure (a full disk) is fatal: it is rethrown, the first in input
// order.
struct WriteContext {
  const Options& o;
  const std::string& mode;
  const InputSpec& spec;
  int64_t classes;
};

struct WrittenBatch {
  int64_t sources = 0;
  std::vector<std::string> lines;  // masks.jsonl lines: the failures first, then the images
};

WrittenBatch write_batch(const WriteContext& c, const LoadedBatch& b, const BatchMasks& r) {
  WrittenBatch w;
  w.sources = b.sources;
  for (const auto& [name, error] : b.failures) w.lines.push_back(json{{"image", name}, {"error", error}}.dump());
  const int64_t n = static_cast<int64_t>(b.images.size());
  std::vector<std::string> lines(static_cast<size_t>(n));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) {
    const size_t k = static_cast<size_t>(i);
    try {
      const Image& img = b.images[k];
      const ImageSource& s = *b.ok[k];
      const int cls = r.classes[k];
      Ctx host(Device::CPU);
      const Tensor m = resize_bilinear(host, r.masks.slice0(i, 1).clone(), img.height, img.width);
      const float* mp = m.data<float>();
      const int64_t px = int64_t{img.width} * img.height;
      double area = 0;
      for (int64_t j = 0; j < px; ++j) area += mp[j];
      area /= static_cast<double>(px);
      const Box box = mask_box(mp, img.height, img.width, c.o.threshold, c.o.largest_cc);
      const std::string base = (fs::path(c.o.out) / s.stem).string();
      write_png(base + "_mask.png", upscale(mask_to_gray(mp, img.width, img.height), c.o.png_scale), c.o.png_level);
      Image over = overlay_heatmap(img, mp, c.o.alpha);
      draw_box(over, box, {255, 255, 255});
      write_png(base + "_overlay.png", upscale(over, c.o.png_scale), c.o.png_level);
      if (c.o.raw == "npy") write_npy(base + "_mask.npy", mp, {img.height, img.width});
      const std::vector<std::string>& names = c.spec.class_names;
      json j = {{"image", s.name},
                {"class", cls},
                {"class_name", static_cast<size_t>(cls) < names.size() ? names[static_cast<size_t>(cls)] : ""},
                {"class_source", c.mode},
                {"prob", std::exp(r.log_probs[static_cast<size_t>(i * c.classes + cls)])},
                {"top1", r.top1[k]},
                {"box", box.empty() ? json(nullptr) : json::array({box.x0, box.y0, box.x1, box.y1})},
                {"box_area", static_cast<double>(box.area()) / static_cast<double>(px)},
                {"mask_area", area},
                {"width", img.width},
                {"height", img.height}};
      lines[k] = j.dump();
    } catch (...) {
      errors[k] = std::current_exception();
    }
  }
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
  for (std::string& line : lines) w.lines.push_back(std::move(line));
  return w;
}

int run(const Options& o) {
  const DeviceSession device(o.device);
  std::vector<ImageSource> sources = list_image_sources(o.inputs);
  // The networks and their two steps per batch (layers/saliency_engine.h; --black-box: else the file the
  // masker names, beside it or in weights/). Its batch: --batch, or fewer when there are fewer images.
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(o.batch, static_cast<int64_t>(sources.size())));
  SaliencyEngine engine(device, {.masker = o.masker, .black_box = o.black_box, .max_batch = rows, .capture = !o.eager});
  const std::string& bb_path = engine.black_box_path();
  const InputSpec& spec = engine.black_box_spec();
  const int64_t S = engine.image_size(), K = spec.num_classes;

  // Class selection.
  std::string mode = o.cls.empty() ? (o.labels.empty() ? "top1" : "truth") : o.cls;
  int fixed = -1;
  if (mode != "top1" && mode != "truth") {
    for (int64_t k = 0; k < K && fixed < 0; ++k)
      if (static_cast<size_t>(k) < spec.class_names.size() && spec.class_names[static_cast<size_t>(k)] == mode)
        fixed = static_cast<int>(k);
    if (fixed < 0) {
      char* end = nullptr;
      const long v = std::strtol(mode.c_str(), &end, 10);
      SAL_CHECK(end && *end == 0 && !mode.empty() && v >= 0 && v < K, "--class '", mode,
                "' is not top1, truth, a class index in [0, ", K, ") or a class name of ", bb_path);
      fixed = static_cast<int>(v);
    }
    mode = "fixed";
  }
  std::map<std::string, int> label_of;
  if (!o.labels.empty()) {
    const Annotations a = read_annotations(o.labels);
    for (const AnnotationRow& r : a.rows) {
      label_of[r.file] = r.label;
      label_of.emplace(fs::path(r.file).filename().string(), r.label);
    }
  }

  fs::create_directories(o.out);
  const std::string jsonl = (fs::path(o.out) / "masks.jsonl").string();
  std::ofstream log(jsonl, std::ios::trunc);
  SAL_CHECK(log.good(), jsonl, ": cannot open for writing");

  const bool cuda = device.device() == Device::CUDA;
  const bool tty = isatty(2) && !o.quiet;
  if (!o.quiet) std::fprintf(stderr, "compute: %s\n", device.describe().c_str());
  const auto t0 = std::chrono::steady_clock::now();
  int64_t failed = 0, done = 0;
  const int64_t total = static_cast<int64_t>(sources.size());

  // Three stages per batch: load (read, decode, resize; host), compute (both networks; the device),
  // write (mask resize, box, PNGs, JSON; host). Load and write run over the batch's images on every
  // core. On CUDA they also overlap the device: while batch k computes, one worker loads batch k+1 and
  // another writes batch k-1, each with half the cores. On the CPU the stages take turns, as the
  // compute already uses every core (deferred futures run on the calling thread at get()): overlapped
  // on the 2-core development machine, 200 ImageNet images took 3.0-3.3 s instead of 2.65-2.8 s.
  // --pipeline overlap|serial overrides the choice (the outputs are the same either way).
  const LoadContext lc{sources, label_of, mode, K, S};
  const WriteContext wc{o, mode, spec, K};
  std::unique_ptr<WorkerThread> loader, writer;
  if (o.pipeline == "overlap" || (o.pipeline == "auto" && cuda)) {
    const int half = std::max(1, omp_get_max_threads() / 2);
    loader = std::make_unique<WorkerThread>(half);
    writer = std::make_unique<WorkerThread>(half);
  }
  const auto start_load = [&](int64_t start) {
    auto job = [&lc, start, end = std::min(total, start + o.batch)] { return load_batch(lc, start, end); };
    return loader ? loader->submit(job) : std::async(std::launch::deferred, job);
  };
  const auto start_write = [&](LoadedBatch b, BatchMasks r) {
    auto job = [&wc, b = std::move(b), r = std::move(r)] { return write_batch(wc, b, r); };
    return writer ? writer->submit(std::move(job)) : std::async(std::launch::deferred, std::move(job));
  };
  // Appends a written batch's lines to masks.jsonl, in input order.
  const auto finish = [&](std::future<WrittenBatch>& pending) {
    if (!pending.valid()) return;
    const WrittenBatch w = pending.get();
    for (const std::string& line : w.lines) log << line << "\n";
    log.flush();
    done += w.sources;
    if (!o.quiet) progress(done, total, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), tty);
  };

  std::future<LoadedBatch> next = start_load(0);
  std::future<WrittenBatch> written;  // the previous batch, being written
  for (int64_t start = 0; start < total; start += o.batch) {
    LoadedBatch b = next.get();
    if (start + o.batch < total) next = start_load(start + o.batch);
    failed += static_cast<int64_t>(b.failures.size());
    for (const auto& [name, error] : b.failures) std::fprintf(stderr, "%serror: %s\n", tty ? "\n" : "", error.c_str());
    if (b.images.empty()) {  // nothing to compute: the failure lines follow the previous batch's lines
      finish(written);
      written = start_write(std::move(b), BatchMasks{});
      continue;
    }
    const int64_t n = static_cast<int64_t>(b.images.size());
    BatchMasks r;
    r.log_probs = engine.classify(b.x).values();  // the one upload of the batch (staged: b.x may go at once)
    b.x = Tensor();                                // not needed by the writer
    std::vector<int32_t> classes(static_cast<size_t>(n), 0);
    r.top1.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      int64_t best = 0;
      for (int64_t k = 1; k < K; ++k)
        if (r.log_probs[static_cast<size_t>(i * K + k)] > r.log_probs[static_cast<size_t>(i * K + best)]) best = k;
      r.top1[static_cast<size_t>(i)] = static_cast<int>(best);
      classes[static_cast<size_t>(i)] =
          mode == "top1" ? static_cast<int32_t>(best) : mode == "truth" ? b.labels[static_cast<size_t>(i)] : fixed;
    }
    r.masks = engine.masks(classes);  // an owning host copy: the writer may still hold it at the next batch
    r.classes = classes;
    finish(written);
    written = start_write(std::move(b), std::move(r));
  }
  finish(written);
  SAL_CHECK(log.good(), jsonl, ": write failed");
  std::fprintf(stderr, "sal_mask: %lld images, %lld failed; outputs in %s\n", static_cast<long long>(total),
               static_cast<long long>(failed), o.out.c_str());
  return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sal_mask: saliency masks of a trained masker for images, folders or tars (CPU or CUDA)"};
  Options o;
  app.add_option("--masker", o.masker, "trained masker (.safetensors written by sal_train)")->required();
  app.add_option("--black-box", o.black_box, "black-box weights (default: the file the masker names)");
  app.add_option("--out", o.out, "output folder")->required();
  app.add_option("--labels", o.labels, "table with 'file' and 'label' columns (annotations.tsv, labels.tsv)");
  app.add_option("--class", o.cls, "top1 | truth | a class index or name (default: truth with --labels, else top1)");
  app.add_option("--batch", o.batch, "images per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--threshold", o.threshold, "mask threshold for the box")->capture_default_str();
  app.add_flag("--largest-cc", o.largest_cc, "box around the largest connected component only");
  app.add_flag("--eager", o.eager, "CUDA: run every batch kernel by kernel instead of replaying captured CUDA graphs");
  app.add_option("--raw", o.raw, "also write the float mask: none | npy")
      ->check(CLI::IsMember({"none", "npy"}))
      ->capture_default_str();
  app.add_option("--alpha", o.alpha, "heat-map opacity of the overlay")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--png-scale", o.png_scale, "enlarge the PNGs by this integer factor (nearest; for 32 px images)")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  app.add_option("--png-level", o.png_level, "zlib compression level of the PNGs (0 none - 9 smallest, slowest)")
      ->check(CLI::Range(0, 9))
      ->capture_default_str();
  app.add_option("--pipeline", o.pipeline,
                 "auto (overlap on CUDA, serial on the CPU) | overlap (load and write beside the compute) | serial")
      ->check(CLI::IsMember({"auto", "overlap", "serial"}))
      ->capture_default_str();
  app.add_flag("--quiet", o.quiet, "no progress bar");
  app.add_option("--device", o.device, "cpu (OpenMP + BLAS) or cuda (device 0)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("inputs", o.inputs, "image files, folders or tars")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    const int rc = run(o);
    print_op_profile_if_enabled();  // SAL_PROFILE_OPS=1 (with --eager on CUDA: graph replays run no ops)
    return rc;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
