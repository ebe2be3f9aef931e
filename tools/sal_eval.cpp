// sal_eval: the evaluation of Dabkowski & Gal (2017, Tables 2 and 3; DESIGN.md section 1) for a trained
// masker and the baseline saliency methods on the same images and the same black box, on the CPU.
//
//   sal_eval --data ../shared/data/imagenet-val --black-box weights/mobilenet_v1_0.75_224.safetensors
//            --masker runs/imagenet/masker.safetensors --out results/imagenet
//   sal_eval --data ../shared/data/cifar10/test.tar --black-box weights/cifar_resnet20.safetensors
//            --masker runs/cifar/masker.safetensors --images 1000 --out results/cifar
//
// --data: a folder with annotations.tsv (file, label, orig_width, orig_height, boxes; engine/annotations.h)
// and images/, or a tar of <class>/<file> images (labels from the sorted class folders; no boxes, so no
// localisation). --images N takes N images spread evenly over the set (every size/N-th). Images are
// resized to the black box's input size S (the masker's image size must match). Every method makes a
// map [S,S] in [0,1] for the true class (--class truth, the default) or the black box's top-1:
//   masker   the trained masker (layers/masker_io.h); without --masker its row says "pending"
//   centre   a centred box of half the image area        max   the whole image
//   gt       the ground-truth boxes (saliency metric only: averaged over an image's boxes)
//   grad     |d z_c / d x|, max over channels, / its max (layers/saliency_eval.h)
//   gradcam  Grad-CAM (= CAM for these GAP + linear heads), upsampled, / its max
//   mask     per-image mask optimisation with Adam on the masker's objective (--mask-steps), run on
//            --slow-images images spread over the selection
// and each map is thresholded the same way (--threshold, default 0.5) for the box; localisation with the
// tightest box around the whole thresholded region and around its largest connected component; the
// saliency metric on the tightest box (an empty region falls back to the whole image, counted as
// "empty"). Also per method: the time per image of making the map (the method's own cost, not the
// evaluation's), the mean map value, and the black box's top-1 accuracy on Phi(X,M) = blend(X, blur(X), M).
// For the masker also its mean mask for a wrong class. Every method is also scored on the slow subset.
//
// Outputs in --out: results.json (all numbers with their exact sums, the settings and the command),
// results.md (the tables with the paper's numbers beside ours), grid.png (--grid images x methods:
// overlays, the method's box in white and the ground-truth boxes in green), cells/ (its cells) and
// per_image.jsonl (one line per image and method: box, box area, log p on the crop, s, localisation).
// --reuse DIR adds the methods of an earlier run on the same images and settings that this run does not
// compute (e.g. the slow Mask baseline, run once, joined later by the masker's row), from their sums and
// cells; a different selection or setting is an error.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "engine/annotations.h"
#include "engine/arena.h"
#include "engine/error.h"
#include "engine/heatmap.h"
#include "engine/image.h"
#include "layers/classifier_eval.h"
#include "layers/masker.h"
#include "layers/masker_io.h"
#include "layers/network.h"
#include "layers/saliency_eval.h"

using namespace sal;
namespace fs = std::filesystem;
using nlohmann::json;
using clk = std::chrono::steady_clock;

namespace {

struct Options {
  std::string data, black_box, masker, out, methods = "masker,centre,max,gt,grad,gradcam,mask", cls = "truth", name;
  int64_t images = 0, slow_images = 20, batch = 16, grid = 6, mask_res = 0;
  int grid_shrink = 1;
  int mask_steps = 300;
  double threshold = 0.5, mask_lr = 0.1, mask_area_weight = 4.0, phi_sigma = -1;
  int phi_ksize = -1;
  uint64_t seed = 0;
  std::string command, reuse;
  std::map<std::string, double> method_threshold;  // --method-threshold overrides of --threshold
};

// The labelled images of --data: names, labels, ground-truth boxes in original pixels and a loader.
struct EvalSet {
  std::vector<std::string> names;
  std::vector<int> labels;
  std::vector<std::vector<Box>> boxes;  // empty per image without boxes
  std::vector<std::pair<int, int>> orig_size;
  bool has_boxes = false;
  std::function<Image(int64_t)> load;
};

EvalSet load_set(const std::string& data) {
  EvalSet s;
  const bool table = fs::is_regular_file(data) && fs::path(data).extension() == ".tsv";
  if (fs::is_directory(data) || table) {
    // A folder: annotations.tsv (with boxes) and images/<file>. A table: file paths relative to its
    // folder, boxes optional (without them the saliency metric only, e.g. imagenet-sample/labels.tsv).
    const fs::path root = table ? fs::path(data).parent_path() : fs::path(data) / "images";
    const Annotations a = read_annotations(table ? data : (fs::path(data) / "annotations.tsv").string());
    SAL_CHECK(table || a.has_boxes, a.source,
              ": no orig_width/orig_height/boxes columns: cannot evaluate localisation");
    s.has_boxes = a.has_boxes;
    for (const AnnotationRow& r : a.rows) {
      s.names.push_back((root / r.file).string());
      s.labels.push_back(r.label);
      s.boxes.push_back(r.boxes);
      s.orig_size.emplace_back(r.orig_width, r.orig_height);
    }
    std::vector<std::string> names = s.names;
    s.load = [names](int64_t i) { return read_image(names[static_cast<size_t>(i)]); };
  } else {
    auto set = std::make_shared<LabelledImages>(LabelledImages::class_tar(data));
    for (int64_t i = 0; i < set->size(); ++i) {
      s.names.push_back(data + ":" + set->names[static_cast<size_t>(i)]);
      s.labels.push_back(set->labels[static_cast<size_t>(i)]);
    }
    s.boxes.resize(s.names.size());
    s.orig_size.resize(s.names.size());
    s.load = [set](int64_t i) { return set->load(i); };
  }
  SAL_CHECK(!s.names.empty(), data, ": no images");
  return s;
}

// n indices spread evenly over [0, size): floor(t * size / n).
std::vector<int64_t> spread(int64_t size, int64_t n) {
  std::vector<int64_t> v;
  for (int64_t t = 0; t < n; ++t) v.push_back(t * size / n);
  return v;
}

struct Stat {
  int64_t n = 0, loc_n = 0, loc = 0, loc_cc = 0, empty = 0, phi_correct = 0, wrong_n = 0;
  double sal = 0, area = 0, box_area = 0, map_seconds = 0, wrong_area = 0;
  json to_json() const {
    const auto r = [](double a, int64_t b) { return b ? json(a / static_cast<double>(b)) : json(nullptr); };
    return {{"images", n},
            {"localisation_error", loc_n ? json(100.0 * (1.0 - static_cast<double>(loc) / static_cast<double>(loc_n))) : json(nullptr)},
            {"localisation_error_largest_cc",
             loc_n ? json(100.0 * (1.0 - static_cast<double>(loc_cc) / static_cast<double>(loc_n))) : json(nullptr)},
            {"saliency_metric", r(sal, n)},
            {"empty_boxes", empty},
            {"mean_map", r(area, n)},
            {"mean_box_area", r(box_area, n)},
            {"phi_accuracy", r(static_cast<double>(phi_correct), n)},
            {"wrong_class_mean_map", r(wrong_area, wrong_n)},
            {"ms_per_image", r(1000.0 * map_seconds, n)},
            {"sums", {{"n", n}, {"loc_n", loc_n}, {"loc", loc}, {"loc_cc", loc_cc}, {"empty", empty},
                      {"phi_correct", phi_correct}, {"wrong_n", wrong_n}, {"sal", sal}, {"area", area},
                      {"box_area", box_area}, {"map_seconds", map_seconds}, {"wrong_area", wrong_area}}}};
  }
  // Back from to_json's "sums" (--reuse).
  static Stat from_json(const json& j) {
    const json& s = j.at("sums");
    Stat t;
    t.n = s.at("n");
    t.loc_n = s.at("loc_n");
    t.loc = s.at("loc");
    t.loc_cc = s.at("loc_cc");
    t.empty = s.at("empty");
    t.phi_correct = s.at("phi_correct");
    t.wrong_n = s.at("wrong_n");
    t.sal = s.at("sal");
    t.area = s.at("area");
    t.box_area = s.at("box_area");
    t.map_seconds = s.at("map_seconds");
    t.wrong_area = s.at("wrong_area");
    return t;
  }
};

std::string fmt(const json& v, int digits, const char* suffix = "") {
  if (v.is_null()) return "—";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f%s", digits, v.get<double>(), suffix);
  return b;
}

const std::map<std::string, std::string> kLabel = {
    {"masker", "Ours (trained masker)"}, {"centre", "Centre box"}, {"max", "Max box"}, {"gt", "Ground-truth boxes"},
    {"grad", "Grad"}, {"gradcam", "Grad-CAM (= CAM here)"}, {"mask", "Mask (iterative optimisation)"}};
// The paper's Table 2 (localisation error %, ResNet-50 black box) and Table 3 (saliency metric).
const std::map<std::string, std::string> kPaperLoc = {
    {"masker", "36.7 (ResNet-50), 36.9 (GoogLeNet), 39.8 (AlexNet)"}, {"centre", "46.3"}, {"grad", "41.7"},
    {"gradcam", "48.1 (CAM)"}, {"mask", "43.1"}};
const std::map<std::string, std::string> kPaperSal = {
    {"masker", "0.318"}, {"centre", "0.645"}, {"max", "1.366"}, {"gt", "0.284"}, {"grad", "0.451"}};

int run(Options& o) {
  std::unique_ptr<Network> bb = load_network(o.black_box, Device::CPU);
  const InputSpec& spec = bb->input_spec();
  const int64_t S = spec.size, K = spec.num_classes;
  std::unique_ptr<Masker> masker;
  std::vector<std::string> methods;
  {
    std::stringstream ss(o.methods);
    std::string m;
    while (std::getline(ss, m, ',')) {
      SAL_CHECK(kLabel.count(m), "--methods: unknown method '", m, "' (masker, centre, max, gt, grad, gradcam, mask)");
      methods.push_back(m);
    }
  }
  const bool want_masker = std::find(methods.begin(), methods.end(), "masker") != methods.end();
  if (want_masker && !o.masker.empty()) {
    MaskerFileInfo info;
    masker = load_masker(o.masker, Device::CPU, &info);
    check_masker_black_box(info, o.masker, *bb, o.black_box);
    SAL_CHECK(info.image_size == S, o.masker, ": trained at ", info.image_size, " px, the black box takes ", S);
  }
  EvalSet set = load_set(o.data);
  for (size_t i = 0; i < set.labels.size(); ++i)
    SAL_CHECK(set.labels[i] >= 0 && set.labels[i] < K, set.names[i], ": label ", set.labels[i], " outside the ", K,
              " classes of ", o.black_box);
  const int64_t total = static_cast<int64_t>(set.names.size());
  const int64_t n_sel = o.images > 0 ? std::min(o.images, total) : total;
  const std::vector<int64_t> sel = spread(total, n_sel);
  // The slow subset (the Mask baseline's images; every method is also scored on it).
  const int64_t n_slow = std::min(o.slow_images, n_sel);
  std::set<int64_t> slow;  // positions in sel
  for (int64_t p : spread(n_sel, n_slow)) slow.insert(p);
  // Grid rows: --grid images spread over the slow subset (so every method has a map), else over the
  // selection; with --reuse the rows the earlier run drew (its cells/r<row>_*.png), so the columns match.
  std::vector<int64_t> grid_rows;
  {
    const std::vector<int64_t> pool = n_slow ? std::vector<int64_t>(slow.begin(), slow.end()) : spread(n_sel, n_sel);
    for (int64_t k : spread(static_cast<int64_t>(pool.size()), std::min<int64_t>(o.grid, static_cast<int64_t>(pool.size()))))
      grid_rows.push_back(pool[static_cast<size_t>(k)]);
  }
  if (!o.reuse.empty() && fs::is_directory(fs::path(o.reuse) / "cells")) {
    std::set<int64_t> rows;
    for (const fs::directory_entry& e : fs::directory_iterator(fs::path(o.reuse) / "cells")) {
      const std::string f = e.path().filename().string();
      const size_t us = f.find('_');
      if (f.size() < 2 || f[0] != 'r' || us == std::string::npos || us < 2) continue;
      const std::string digits = f.substr(1, us - 1);
      if (digits.find_first_not_of("0123456789") == std::string::npos && digits.size() < 12)
        rows.insert(std::stoll(digits));
    }
    if (!rows.empty()) grid_rows.assign(rows.begin(), rows.end());
  }

  const double phi_sigma = o.phi_sigma > 0 ? o.phi_sigma : (S >= 128 ? 10.0 : 3.0);
  const int phi_ksize = o.phi_ksize > 0 ? o.phi_ksize : (S >= 128 ? 55 : 13);
  MaskOptimConfig mcfg;
  mcfg.steps = o.mask_steps;
  mcfg.resolution = o.mask_res > 0 ? o.mask_res : (S >= 128 ? 28 : 8);
  mcfg.lr = o.mask_lr;
  mcfg.objective = ObjectiveConfig::released();
  mcfg.objective.area_weight = o.mask_area_weight;
  mcfg.objective.blur_sigma = phi_sigma;
  mcfg.objective.blur_ksize = phi_ksize;
  mcfg.seed = static_cast<uint32_t>(o.seed);

  std::map<std::string, Stat> all, sub;
  fs::create_directories(o.out);
  const std::string per_image_path = (fs::path(o.out) / "per_image.jsonl").string();
  std::ofstream per_image(per_image_path, std::ios::trunc);
  SAL_CHECK(per_image.good(), per_image_path, ": cannot open for writing");
  const auto box_json = [](const Box& b) { return b.empty() ? json() : json::array({b.x0, b.y0, b.x1, b.y1}); };
  std::map<std::pair<int64_t, std::string>, Image> cells;  // (grid row, method) -> overlay
  Arena arena(Device::CPU);
  Ctx ctx(Device::CPU, &arena);
  const int factor = S < 96 ? static_cast<int>((96 + S - 1) / S) : 1;
  const auto t_start = clk::now();
  int64_t done = 0;
  for (int64_t b0 = 0; b0 < n_sel; b0 += o.batch) {
    const int64_t b1 = std::min(n_sel, b0 + o.batch), n = b1 - b0;
    Tensor x = Tensor::empty(Shape{n, 3, S, S});
    std::vector<int> labels, classes;
    std::vector<std::vector<Box>> truth(static_cast<size_t>(n));
    std::vector<Image> shown(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t idx = sel[static_cast<size_t>(b0 + i)];
      const Image img = set.load(idx);
      Tensor slot = x.slice0(i, 1);
      slot.copy_from(image_to_tensor(img, S, S).reshape(Shape{1, 3, S, S}));
      labels.push_back(set.labels[static_cast<size_t>(idx)]);
      if (set.has_boxes) {
        const auto [ow, oh] = set.orig_size[static_cast<size_t>(idx)];
        for (const Box& bx : set.boxes[static_cast<size_t>(idx)]) truth[static_cast<size_t>(i)].push_back(scale_box(bx, ow, oh, S, S));
      }
      if (std::find(grid_rows.begin(), grid_rows.end(), b0 + i) != grid_rows.end())
        shown[static_cast<size_t>(i)] = tensor_to_image(x.slice0(i, 1));
    }
    classes = labels;
    if (o.cls == "top1") {
      arena.reset();
      classes = class_scores(ctx, *bb, x, labels).top1;
    }
    for (const std::string& m : methods) {
      if (m == "masker" && !masker) continue;
      if (m == "gt") {
        if (!set.has_boxes) continue;
        for (int64_t i = 0; i < n; ++i) {
          const auto& tb = truth[static_cast<size_t>(i)];
          if (tb.empty()) continue;
          arena.reset();
          const Tensor xi = x.slice0(i, 1);
          std::vector<double> s;
          for (const Box& bx : tb) {
            const ClassScores sc = class_scores(ctx, *bb, crop_resize(xi, {bx}, S), {labels[static_cast<size_t>(i)]});
            s.push_back(saliency_metric(static_cast<double>(bx.area()) / static_cast<double>(S * S), sc.log_prob[0]));
          }
          double mean_s = 0;
          for (double v : s) mean_s += v / static_cast<double>(s.size());
          per_image << json{{"image", set.names[static_cast<size_t>(sel[static_cast<size_t>(b0 + i)])]},
                            {"method", m}, {"class", labels[static_cast<size_t>(i)]}, {"s", mean_s}, {"s_per_box", s}}
                           .dump()
                    << "\n";
          for (Stat* st : {&all[m], slow.count(b0 + i) ? &sub[m] : nullptr}) {
            if (!st) continue;
            ++st->n;
            st->sal += mean_s;
          }
        }
        continue;
      }
      // The images this method runs on.
      std::vector<int64_t> rows;
      for (int64_t i = 0; i < n; ++i)
        if (m != "mask" || slow.count(b0 + i)) rows.push_back(i);
      if (rows.empty()) continue;
      const int64_t r = static_cast<int64_t>(rows.size());
      Tensor xs = Tensor::empty(Shape{r, 3, S, S});
      std::vector<int> ls, cs;
      for (int64_t j = 0; j < r; ++j) {
        Tensor slot = xs.slice0(j, 1);
        slot.copy_from(x.slice0(rows[static_cast<size_t>(j)], 1));
        ls.push_back(labels[static_cast<size_t>(rows[static_cast<size_t>(j)])]);
        cs.push_back(classes[static_cast<size_t>(rows[static_cast<size_t>(j)])]);
      }
      arena.reset();
      const auto t0 = clk::now();
      Tensor maps;
      if (m == "masker") {
        std::vector<int32_t> c32(cs.begin(), cs.end());
        maps = masker->forward(ctx, *bb, xs, Tensor::from_labels(c32), false).mask.clone();
      } else if (m == "centre" || m == "max") {
        maps = Tensor::empty(Shape{r, 1, S, S});
        const Box bx = m == "centre" ? centre_box(S, S, 0.5) : full_box(S, S);
        for (int64_t j = 0; j < r; ++j) {
          Tensor slot = maps.slice0(j, 1);
          slot.copy_from(box_map(bx, S, S));
        }
      } else if (m == "grad") {
        maps = gradient_saliency(ctx, *bb, xs, cs);
      } else if (m == "gradcam") {
        maps = gradcam_saliency(ctx, *bb, xs, cs);
      } else if (m == "mask") {
        maps = optimise_masks(ctx, *bb, xs, cs, mcfg);
      }
      const double secs = std::chrono::duration<double>(clk::now() - t0).count();
      // The masker's encoder features (owning copies: the classifications below reuse the arena), so the
      // wrong-class masks need the decoder alone.
      std::vector<Tensor> features;
      if (m == "masker")
        for (const Tensor& f : bb->features()) features.push_back(f.clone());
      // Boxes, localisation, the saliency metric, map area, accuracy on Phi(X,M).
      const double thr = o.method_threshold.count(m) ? o.method_threshold.at(m) : o.threshold;
      const float* mp = maps.data<float>();
      std::vector<Box> boxes, crop_boxes;
      std::vector<int> empties;
      for (int64_t j = 0; j < r; ++j) {
        const Box bx = mask_box(mp + j * S * S, S, S, thr, false);
        boxes.push_back(bx);
        crop_boxes.push_back(bx.empty() ? full_box(S, S) : bx);
      }
      arena.reset();
      const ClassScores crop_sc = class_scores(ctx, *bb, crop_resize(xs, crop_boxes, S), ls);
      arena.reset();
      const ClassScores phi_sc = class_scores(ctx, *bb, blur_phi(ctx, xs, maps, phi_sigma, phi_ksize), ls);
      std::vector<double> wrong_area;
      if (m == "masker") {
        std::vector<int32_t> wrong;
        for (int64_t j = 0; j < r; ++j) wrong.push_back(static_cast<int32_t>((ls[static_cast<size_t>(j)] + 1 + (b0 + j) % std::max<int64_t>(K - 1, 1)) % K));
        arena.reset();
        const std::vector<double> wm =
            masker->forward_features(ctx, features, Tensor::from_labels(wrong), S, S, false).mask.values();
        for (int64_t j = 0; j < r; ++j) {
          double a = 0;
          for (int64_t p = 0; p < S * S; ++p) a += wm[static_cast<size_t>(j * S * S + p)];
          wrong_area.push_back(a / static_cast<double>(S * S));
        }
      }
      for (int64_t j = 0; j < r; ++j) {
        const int64_t i = rows[static_cast<size_t>(j)];
        const Box& bx = boxes[static_cast<size_t>(j)];
        const Box bcc = mask_box(mp + j * S * S, S, S, thr, true);
        double area = 0;
        for (int64_t p = 0; p < S * S; ++p) area += mp[j * S * S + p];
        area /= static_cast<double>(S * S);
        const double frac = static_cast<double>(crop_boxes[static_cast<size_t>(j)].area()) / static_cast<double>(S * S);
        const double s = saliency_metric(frac, crop_sc.log_prob[static_cast<size_t>(j)]);
        const auto& tb = truth[static_cast<size_t>(i)];
        {
          json line{{"image", set.names[static_cast<size_t>(sel[static_cast<size_t>(b0 + i)])]},
                    {"method", m},
                    {"class", cs[static_cast<size_t>(j)]},
                    {"box", box_json(bx)},
                    {"box_area", static_cast<double>(bx.area()) / static_cast<double>(S * S)},
                    {"mean_map", area},
                    {"log_p_crop", crop_sc.log_prob[static_cast<size_t>(j)]},
                    {"s", s},
                    {"phi_top1", phi_sc.top1[static_cast<size_t>(j)]}};
          if (!tb.empty()) {
            line["loc_correct"] = localisation_correct(bx, tb);
            line["loc_correct_largest_cc"] = localisation_correct(bcc, tb);
          }
          if (!wrong_area.empty()) line["wrong_class_mean_map"] = wrong_area[static_cast<size_t>(j)];
          per_image << line.dump() << "\n";
        }
        for (Stat* st : {&all[m], slow.count(b0 + i) ? &sub[m] : nullptr}) {
          if (!st) continue;
          ++st->n;
          st->map_seconds += secs / static_cast<double>(r);
          st->sal += s;
          st->empty += bx.empty();
          st->area += area;
          st->box_area += static_cast<double>(bx.area()) / static_cast<double>(S * S);
          st->phi_correct += phi_sc.top1[static_cast<size_t>(j)] == ls[static_cast<size_t>(j)];
          if (!tb.empty()) {
            ++st->loc_n;
            st->loc += localisation_correct(bx, tb);
            st->loc_cc += localisation_correct(bcc, tb);
          }
          if (!wrong_area.empty()) {
            ++st->wrong_n;
            st->wrong_area += wrong_area[static_cast<size_t>(j)];
          }
        }
        if (shown[static_cast<size_t>(i)].width) {
          Image over = overlay_heatmap(shown[static_cast<size_t>(i)], mp + j * S * S, 0.6);
          for (const Box& t : tb) draw_box(over, t, {0, 255, 0});
          draw_box(over, bx, {255, 255, 255});
          cells[{b0 + i, m}] = upscale(over, factor);
        }
      }
    }
    for (int64_t i = 0; i < n; ++i)
      if (shown[static_cast<size_t>(i)].width) {
        Image img = shown[static_cast<size_t>(i)];
        for (const Box& t : truth[static_cast<size_t>(i)]) draw_box(img, t, {0, 255, 0});
        cells[{b0 + i, "image"}] = upscale(img, factor);
      }
    done = b1;
    const double el = std::chrono::duration<double>(clk::now() - t_start).count();
    std::fprintf(stderr, "sal_eval: %lld/%lld images, %.0f s\n", static_cast<long long>(done),
                 static_cast<long long>(n_sel), el);
  }

  per_image.flush();
  SAL_CHECK(per_image.good(), per_image_path, ": write failed");
  // ---------------------------------------------------------------- earlier results (--reuse)
  fs::create_directories(fs::path(o.out) / "cells");
  for (const auto& [key, img] : cells)
    write_png((fs::path(o.out) / "cells" / ("r" + std::to_string(key.first) + "_" + key.second + ".png")).string(), img);
  std::vector<std::string> reused;
  if (!o.reuse.empty()) {
    const std::string rj = (fs::path(o.reuse) / "results.json").string();
    std::ifstream in(rj);
    SAL_CHECK(in.good(), rj, ": cannot open");
    json old = json::parse(in);
    const auto same = [&](const char* k, const json& v) {
      SAL_CHECK(old.contains(k) && old[k] == v, rj, ": '", k, "' is ", old.contains(k) ? old[k].dump() : "missing",
                ", this run has ", v.dump(), ": not the same evaluation");
    };
    same("data", o.data);
    same("black_box_file", fs::path(o.black_box).filename().string());
    same("images", n_sel);
    same("input_size", S);
    same("class", o.cls);
    same("threshold", o.threshold);
    // (A results.json from before per-method thresholds existed used --threshold for every method.)
    if (!old.contains("method_thresholds")) old["method_thresholds"] = json::object();
    same("method_thresholds", json(o.method_threshold));
    same("phi_blur", json{{"sigma", phi_sigma}, {"ksize", phi_ksize}});
    for (const auto& [m, st] : old["methods"].items()) {
      if (all.count(m) || !kLabel.count(m)) continue;
      all[m] = Stat::from_json(st);
      if (old.contains("methods_on_slow_subset") && old["methods_on_slow_subset"].contains(m))
        sub[m] = Stat::from_json(old["methods_on_slow_subset"][m]);
      reused.push_back(m);
      for (int64_t row : grid_rows) {
        const fs::path c = fs::path(o.reuse) / "cells" / ("r" + std::to_string(row) + "_" + m + ".png");
        if (fs::exists(c)) cells[{row, m}] = read_image(c.string());
      }
    }
    same("slow_subset_images", n_slow);
  }
  // The methods in the tables: the canonical order, those run now or reused, and the masker always.
  methods.clear();
  for (const char* m : {"masker", "centre", "max", "gt", "grad", "gradcam", "mask"})
    if (all.count(m) || std::string(m) == "masker" || (std::string(m) == "gt" && set.has_boxes)) methods.push_back(m);

  // ---------------------------------------------------------------- outputs
  const std::string dataset =
      !o.name.empty() ? o.name : set.has_boxes ? "ImageNet validation" : S >= 128 ? "ImageNet (no boxes)" : "CIFAR-10 test";
  json res;
  res["command"] = o.command;
  res["dataset"] = dataset;
  res["data"] = o.data;
  res["black_box"] = o.black_box;
  res["black_box_file"] = fs::path(o.black_box).filename().string();
  res["masker"] = o.masker.empty() ? json(nullptr) : json(o.masker);
  res["reused"] = {{"from", o.reuse.empty() ? json(nullptr) : json(o.reuse)}, {"methods", reused}};
  res["images"] = n_sel;
  res["slow_subset_images"] = n_slow;
  res["input_size"] = S;
  res["class"] = o.cls;
  res["threshold"] = o.threshold;
  res["method_thresholds"] = json(o.method_threshold);
  res["phi_blur"] = {{"sigma", phi_sigma}, {"ksize", phi_ksize}};
  res["mask_baseline"] = {{"steps", mcfg.steps}, {"resolution", mcfg.resolution}, {"lr", mcfg.lr},
                          {"area_weight", mcfg.objective.area_weight}, {"objective", "released"}};
  res["seconds"] = std::chrono::duration<double>(clk::now() - t_start).count();
  for (const std::string& m : methods) {
    if (all.count(m)) res["methods"][m] = all[m].to_json();
    if (sub.count(m)) res["methods_on_slow_subset"][m] = sub[m].to_json();
  }
  {
    std::ofstream f((fs::path(o.out) / "results.json").string(), std::ios::trunc);
    f << res.dump(2) << "\n";
    SAL_CHECK(f.good(), o.out, "/results.json: write failed");
  }

  std::ostringstream md;
  const bool paper = set.has_boxes;  // the paper's numbers are ImageNet numbers
  const auto row_json = [&](const std::map<std::string, Stat>& st, const std::string& m) {
    return st.count(m) ? st.at(m).to_json() : json();
  };
  md << "### " << dataset << ": " << n_sel << " images, black box `" << fs::path(o.black_box).filename().string()
     << "`\n\n";
  if (!reused.empty()) {
    md << "Rows reused from `" << o.reuse << "` (same images and settings):";
    for (const std::string& m : reused) md << " " << m;
    md << ".\n\n";
  }
  if (set.has_boxes) {
    md << "Localisation error (%) (paper Table 2; lower is better). Box: threshold " << o.threshold
       << (o.method_threshold.empty() ? std::string() : " (per method: " + json(o.method_threshold).dump() + ")")
       << ", tightest box around the whole region / around its largest connected component; correct when IoU >= 0.5 "
          "with any ground-truth box.\n\n";
    md << "| Method | images | ours: tightest box | ours: largest CC | on the " << n_slow
       << "-image subset | paper |\n|---|---:|---:|---:|---:|---|\n";
    for (const std::string& m : methods) {
      if (m == "gt") continue;
      const json a = row_json(all, m), s = row_json(sub, m);
      if (!all.count(m)) {
        md << "| " << kLabel.at(m) << " | pending | pending | pending | pending | " << (kPaperLoc.count(m) ? kPaperLoc.at(m) : "—") << " |\n";
        continue;
      }
      md << "| " << kLabel.at(m) << " | " << (a.is_null() ? 0 : a["images"].get<int64_t>()) << " | "
         << (a.is_null() ? "—" : fmt(a["localisation_error"], 1)) << " | "
         << (a.is_null() ? "—" : fmt(a["localisation_error_largest_cc"], 1)) << " | "
         << (s.is_null() ? "—" : fmt(s["localisation_error"], 1)) << " | "
         << (kPaperLoc.count(m) ? kPaperLoc.at(m) : "—") << " |\n";
    }
    md << "| Guided backprop / Excitation backprop / Feedback | not run | | | | 42.0 / 39.0 / 38.7 |\n\n";
  }
  md << "Saliency metric (paper Table 3; lower is better): s = log(max(a, 0.05)) - log p on the crop of the "
        "tightest box, resized to "
     << S << "x" << S << ".\n\n";
  md << "| Method | images | ours | on the " << n_slow << "-image subset | paper | empty maps |\n|---|---:|---:|---:|---|---:|\n";
  for (const std::string& m : methods) {
    const json a = row_json(all, m), s = row_json(sub, m);
    if (m == "gt" && !set.has_boxes) continue;
    const std::string pap = paper && kPaperSal.count(m) ? kPaperSal.at(m) : "—";
    if (!all.count(m)) {
      md << "| " << kLabel.at(m) << " | pending | pending | pending | " << pap << " | |\n";
      continue;
    }
    md << "| " << kLabel.at(m) << " | " << (a.is_null() ? 0 : a["images"].get<int64_t>()) << " | "
       << (a.is_null() ? "—" : fmt(a["saliency_metric"], 3)) << " | " << (s.is_null() ? "—" : fmt(s["saliency_metric"], 3))
       << " | " << pap << " | " << (a.is_null() || m == "gt" ? std::string("—") : std::to_string(a["empty_boxes"].get<int64_t>()))
       << " |\n";
  }
  if (paper) md << "| Excitation backprop | not run | | | 0.415 | |\n";
  md << "\nPer method: time to make the map (ms per image, CPU), mean map value, mean box area (fraction), black-box "
        "top-1 accuracy on Phi(X,M) = blend(X, blur(X, sigma "
     << phi_sigma << "), M), and for the masker its mean mask for a wrong class.\n\n";
  md << "| Method | ms / image | mean map | mean box area | accuracy on Phi(X,M) | wrong-class mean map |\n"
        "|---|---:|---:|---:|---:|---:|\n";
  for (const std::string& m : methods) {
    if (m == "gt" || !all.count(m)) continue;
    const json a = all[m].to_json();
    md << "| " << kLabel.at(m) << " | " << fmt(a["ms_per_image"], 1) << " | " << fmt(a["mean_map"], 3) << " | "
       << fmt(a["mean_box_area"], 3) << " | " << fmt(a["phi_accuracy"], 3) << " | " << fmt(a["wrong_class_mean_map"], 3)
       << " |\n";
  }
  {
    std::ofstream f((fs::path(o.out) / "results.md").string(), std::ios::trunc);
    f << md.str();
    SAL_CHECK(f.good(), o.out, "/results.md: write failed");
  }
  std::printf("%s", md.str().c_str());

  // The grid: rows = images, columns = the image then each method with a map.
  if (!grid_rows.empty()) {
    std::vector<std::string> cols = {"image"};
    for (const std::string& m : methods)
      if (m != "gt" && all.count(m)) cols.push_back(m);
    const int cell = static_cast<int>(S) * factor, gap = 4;
    Image canvas(static_cast<int>(cols.size()) * (cell + gap), static_cast<int>(grid_rows.size()) * (cell + gap), 3);
    for (size_t r = 0; r < grid_rows.size(); ++r)
      for (size_t c = 0; c < cols.size(); ++c) {
        const auto it = cells.find({grid_rows[r], cols[c]});
        if (it != cells.end()) paste(canvas, it->second, static_cast<int>(c) * (cell + gap), static_cast<int>(r) * (cell + gap));
      }
    write_png((fs::path(o.out) / "grid.png").string(), downscale(canvas, o.grid_shrink));
    std::string legend;
    for (const std::string& c : cols) legend += c + " ";
    std::printf("\ngrid.png columns: %s\n", legend.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sal_eval: localisation error and saliency metric of a masker and baselines (CPU)"};
  Options o;
  app.add_option("--data", o.data, "imagenet-val folder (annotations.tsv + images/), a .tsv table (file, label[, boxes]) of paths relative to its folder, or a tar of <class>/<file>")
      ->required();
  app.add_option("--black-box", o.black_box, "black-box weights (.safetensors)")->required();
  app.add_option("--masker", o.masker, "trained masker (.safetensors); without it the masker row is 'pending'");
  app.add_option("--out", o.out, "output folder: results.json, results.md, grid.png")->required();
  app.add_option("--methods", o.methods, "comma-separated: masker,centre,max,gt,grad,gradcam,mask")
      ->capture_default_str();
  app.add_option("--class", o.cls, "the class every map is made for: truth or top1")
      ->check(CLI::IsMember({"truth", "top1"}))
      ->capture_default_str();
  app.add_option("--images", o.images, "images spread evenly over the set (0: all)")->capture_default_str();
  app.add_option("--slow-images", o.slow_images, "images for the iterative Mask baseline")->capture_default_str();
  app.add_option("--batch", o.batch, "images per batch")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--threshold", o.threshold, "map threshold for the boxes")->capture_default_str();
  std::vector<std::string> method_thresholds;
  app.add_option("--method-threshold", method_thresholds, "per-method thresholds, e.g. grad=0.2 (repeatable)");
  app.add_option("--mask-steps", o.mask_steps, "Adam steps of the Mask baseline")->capture_default_str();
  app.add_option("--mask-res", o.mask_res, "Mask baseline parameter resolution (0: 28 for >= 128 px, else 8)")
      ->capture_default_str();
  app.add_option("--mask-lr", o.mask_lr, "Mask baseline Adam learning rate")->capture_default_str();
  app.add_option("--mask-area-weight", o.mask_area_weight, "Mask baseline area weight (released loss)")
      ->capture_default_str();
  app.add_option("--phi-blur-sigma", o.phi_sigma, "blur sigma of Phi (default 10 for >= 128 px, else 3)");
  app.add_option("--phi-blur-ksize", o.phi_ksize, "blur kernel size of Phi (default 55 for >= 128 px, else 13)");
  app.add_option("--grid", o.grid, "images in grid.png (0: none)")->capture_default_str();
  app.add_option("--grid-shrink", o.grid_shrink, "shrink grid.png by this integer factor (box filter)")
      ->check(CLI::Range(1, 8))
      ->capture_default_str();
  app.add_option("--name", o.name, "dataset name in the tables");
  app.add_option("--reuse", o.reuse,
                 "an earlier --out of the same images and settings: its methods not run now join the tables")
      ->check(CLI::ExistingDirectory);
  app.add_option("--seed", o.seed, "seed of the Mask baseline's evidence removal")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  for (const std::string& mt : method_thresholds) {
    const size_t eq = mt.find('=');
    char* end = nullptr;
    const double v = eq == std::string::npos ? 0.0 : std::strtod(mt.c_str() + eq + 1, &end);
    if (eq == std::string::npos || !kLabel.count(mt.substr(0, eq)) || !end || *end != 0 || end == mt.c_str() + eq + 1) {
      std::fprintf(stderr, "error: --method-threshold '%s' is not METHOD=VALUE with a known method\n", mt.c_str());
      return 2;
    }
    o.method_threshold[mt.substr(0, eq)] = v;
  }
  for (int i = 0; i < argc; ++i) o.command += (i ? " " : "") + std::string(argv[i]);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
