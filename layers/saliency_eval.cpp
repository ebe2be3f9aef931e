// Boxes, IoU, the saliency metric and the baseline saliency maps (layers/saliency_eval.h). Pixel-level
// work (thresholds, components, boxes, per-image normalisation) runs on host copies; the networks and
// every resampling go through the op API.
#include "layers/saliency_eval.h"

#include <algorithm>
#include <cmath>

#include "engine/error.h"

namespace sal {

namespace {

Tensor labels_on(const Ctx& ctx, const std::vector<int>& classes) {
  std::vector<int32_t> v(classes.begin(), classes.end());
  return Tensor::from_labels(v).to(ctx.device);
}

void check_images(const Tensor& images, const std::vector<int>& classes, const char* what) {
  SAL_CHECK(images.ndim() == 4 && images.dim(1) == 3, what, ": images must be [N,3,H,W], got ", images.desc());
  SAL_CHECK(static_cast<int64_t>(classes.size()) == images.dim(0), what, ": ", classes.size(), " classes for ",
            images.dim(0), " images");
}

// The arena mark of the context (or nothing without an arena), released at scope exit.
struct ArenaScope {
  Arena* arena;
  Arena::Mark mark;
  explicit ArenaScope(Ctx& ctx) : arena(ctx.arena), mark(ctx.arena ? ctx.arena->mark() : Arena::Mark{}) {}
  ~ArenaScope() {
    if (arena) arena->release(mark);
  }
};

}  // namespace

// ---------------------------------------------------------------- boxes

std::vector<uint8_t> threshold_map(const float* m, int64_t h, int64_t w, double threshold) {
  std::vector<uint8_t> r(static_cast<size_t>(h * w));
  for (int64_t i = 0; i < h * w; ++i) r[static_cast<size_t>(i)] = m[i] >= threshold ? 1 : 0;
  return r;
}

std::vector<uint8_t> largest_component(const std::vector<uint8_t>& region, int64_t h, int64_t w) {
  SAL_CHECK(static_cast<int64_t>(region.size()) == h * w, "largest_component: ", region.size(), " pixels for ", h,
            "x", w);
  std::vector<int32_t> label(region.size(), 0);
  std::vector<int64_t> stack;
  int32_t best = 0, next = 0;
  int64_t best_size = 0;
  for (int64_t start = 0; start < h * w; ++start) {
    if (!region[static_cast<size_t>(start)] || label[static_cast<size_t>(start)]) continue;
    const int32_t id = ++next;
    int64_t size = 0;
    label[static_cast<size_t>(start)] = id;
    stack.assign(1, start);
    while (!stack.empty()) {
      const int64_t p = stack.back();
      stack.pop_back();
      ++size;
      const int64_t y = p / w, x = p % w;
      for (int64_t dy = -1; dy <= 1; ++dy)
        for (int64_t dx = -1; dx <= 1; ++dx) {
          const int64_t yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
          const size_t q = static_cast<size_t>(yy * w + xx);
          if (region[q] && !label[q]) {
            label[q] = id;
            stack.push_back(static_cast<int64_t>(q));
          }
        }
    }
    if (size > best_size) {
      best_size = size;
      best = id;
    }
  }
  std::vector<uint8_t> out(region.size(), 0);
  if (best)
    for (size_t i = 0; i < out.size(); ++i) out[i] = label[i] == best ? 1 : 0;
  return out;
}

Box bounding_box(const std::vector<uint8_t>& region, int64_t h, int64_t w) {
  SAL_CHECK(static_cast<int64_t>(region.size()) == h * w, "bounding_box: ", region.size(), " pixels for ", h, "x", w);
  Box b{static_cast<int>(w), static_cast<int>(h), -1, -1};
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      if (region[static_cast<size_t>(y * w + x)]) {
        b.x0 = std::min(b.x0, static_cast<int>(x));
        b.y0 = std::min(b.y0, static_cast<int>(y));
        b.x1 = std::max(b.x1, static_cast<int>(x));
        b.y1 = std::max(b.y1, static_cast<int>(y));
      }
  return b.x1 < 0 ? Box{} : b;
}

Box mask_box(const float* m, int64_t h, int64_t w, double threshold, bool largest_cc) {
  std::vector<uint8_t> r = threshold_map(m, h, w, threshold);
  if (largest_cc) r = largest_component(r, h, w);
  return bounding_box(r, h, w);
}

double box_iou(const Box& a, const Box& b) {
  if (a.empty() || b.empty()) return 0.0;
  const Box i{std::max(a.x0, b.x0), std::max(a.y0, b.y0), std::min(a.x1, b.x1), std::min(a.y1, b.y1)};
  const double inter = static_cast<double>(i.area());
  return inter / static_cast<double>(a.area() + b.area() - i.area());
}

Box scale_box(const Box& b, int64_t from_w, int64_t from_h, int64_t to_w, int64_t to_h) {
  SAL_CHECK(from_w > 0 && from_h > 0 && to_w > 0 && to_h > 0, "scale_box: bad sizes ", from_w, "x", from_h, " -> ",
            to_w, "x", to_h);
  if (b.empty()) return Box{};
  const double sx = static_cast<double>(to_w) / static_cast<double>(from_w);
  const double sy = static_cast<double>(to_h) / static_cast<double>(from_h);
  // Edges: [x0, x1 + 1) scaled; the pixels overlapping it (a pixel [k, k+1) overlaps when k < e1 and k + 1 > e0).
  const auto lo = [](double e, int64_t n) { return static_cast<int>(std::clamp<int64_t>(static_cast<int64_t>(std::floor(e + 1e-9)), 0, n - 1)); };
  const auto hi = [](double e, int64_t n) { return static_cast<int>(std::clamp<int64_t>(static_cast<int64_t>(std::ceil(e - 1e-9)) - 1, 0, n - 1)); };
  Box r{lo(b.x0 * sx, to_w), lo(b.y0 * sy, to_h), hi((b.x1 + 1) * sx, to_w), hi((b.y1 + 1) * sy, to_h)};
  r.x1 = std::max(r.x1, r.x0);
  r.y1 = std::max(r.y1, r.y0);
  return r;
}

bool localisation_correct(const Box& b, const std::vector<Box>& truth, double min_iou) {
  for (const Box& t : truth)
    if (box_iou(b, t) >= min_iou) return true;
  return false;
}

Box centre_box(int64_t w, int64_t h, double area_fraction) {
  SAL_CHECK(w > 0 && h > 0 && area_fraction > 0 && area_fraction <= 1, "centre_box: bad arguments ", w, "x", h, ", ",
            area_fraction);
  const double f = std::sqrt(area_fraction);
  const int64_t bw = std::max<int64_t>(1, std::llround(static_cast<double>(w) * f));
  const int64_t bh = std::max<int64_t>(1, std::llround(static_cast<double>(h) * f));
  const int64_t x0 = (w - bw) / 2, y0 = (h - bh) / 2;
  return Box{static_cast<int>(x0), static_cast<int>(y0), static_cast<int>(x0 + bw - 1), static_cast<int>(y0 + bh - 1)};
}

Tensor box_map(const Box& b, int64_t h, int64_t w) {
  Tensor t = Tensor::zeros(Shape{1, 1, h, w});
  float* p = t.data<float>();
  for (int64_t y = std::max(0, b.y0); y <= std::min<int64_t>(b.y1, h - 1); ++y)
    for (int64_t x = std::max(0, b.x0); x <= std::min<int64_t>(b.x1, w - 1); ++x) p[y * w + x] = 1.0f;
  return t;
}

// ---------------------------------------------------------------- the saliency metric

double saliency_metric(double area_fraction, double log_prob) {
  return std::log(std::max(area_fraction, 0.05)) - log_prob;
}

Tensor crop_resize(const Tensor& images, const std::vector<Box>& boxes, int64_t out) {
  SAL_CHECK(images.ndim() == 4 && !images.on_cuda(), "crop_resize: images must be a CPU [N,C,H,W], got ",
            images.desc());
  const int64_t n = images.dim(0), c = images.dim(1), h = images.dim(2), w = images.dim(3);
  SAL_CHECK(static_cast<int64_t>(boxes.size()) == n, "crop_resize: ", boxes.size(), " boxes for ", n, " images");
  Tensor result = Tensor::empty(Shape{n, c, out, out}, images.dtype());
  Ctx host(Device::CPU);
  for (int64_t i = 0; i < n; ++i) {
    const Box& b = boxes[static_cast<size_t>(i)];
    SAL_CHECK(!b.empty() && b.x0 >= 0 && b.y0 >= 0 && b.x1 < w && b.y1 < h, "crop_resize: box [", b.x0, ",", b.y0,
              ",", b.x1, ",", b.y1, "] of image ", i, " is empty or outside the ", w, "x", h, " image");
    const int64_t bw = b.width(), bh = b.height();
    Tensor crop = Tensor::empty(Shape{1, c, bh, bw}, images.dtype());
    const size_t es = dtype_size(images.dtype());
    const char* src = static_cast<const char*>(images.raw());
    char* dst = static_cast<char*>(crop.raw());
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t y = 0; y < bh; ++y)
        std::copy_n(src + ((((i * c + ch) * h) + b.y0 + y) * w + b.x0) * es, static_cast<size_t>(bw) * es,
                    dst + ((ch * bh + y) * bw) * es);
    Tensor slot = result.slice0(i, 1);
    slot.copy_from(resize_bilinear(host, crop, out, out));
  }
  return result;
}

ClassScores class_scores(Ctx& ctx, Network& net, const Tensor& images, const std::vector<int>& classes) {
  check_images(images, classes, "class_scores");
  ArenaScope scope(ctx);
  const Tensor logits = net.forward(ctx, net.normalize(ctx, images));
  const std::vector<double> z = logits.values(), lp = log_softmax(ctx, logits).values();
  const int64_t n = logits.dim(0), k = logits.dim(1);
  ClassScores s;
  for (int64_t i = 0; i < n; ++i) {
    const int c = classes[static_cast<size_t>(i)];
    SAL_CHECK(c >= 0 && c < k, "class_scores: class ", c, " of image ", i, " is outside [0, ", k, ")");
    s.log_prob.push_back(lp[static_cast<size_t>(i * k + c)]);
    int64_t best = 0;
    for (int64_t j = 1; j < k; ++j)
      if (z[static_cast<size_t>(i * k + j)] > z[static_cast<size_t>(i * k + best)]) best = j;
    s.top1.push_back(static_cast<int>(best));
  }
  return s;
}

// ---------------------------------------------------------------- baselines

void normalise_by_max(Tensor& maps) {
  SAL_CHECK(maps.ndim() == 4 && maps.dim(1) == 1 && !maps.on_cuda(), "normalise_by_max: maps must be a CPU [N,1,H,W], got ",
            maps.desc());
  const int64_t n = maps.dim(0), per = maps.dim(2) * maps.dim(3);
  std::vector<double> v = maps.values();
  for (int64_t i = 0; i < n; ++i) {
    double* p = v.data() + i * per;
    const double mx = *std::max_element(p, p + per);
    for (int64_t j = 0; j < per; ++j) p[j] = mx > 0 ? std::max(0.0, p[j] / mx) : 0.0;
  }
  maps.copy_from(Tensor::from_values(v, maps.shape(), maps.dtype()));
}

Tensor gradient_saliency(Ctx& ctx, Network& net, const Tensor& images, const std::vector<int>& classes) {
  check_images(images, classes, "gradient_saliency");
  ArenaScope scope(ctx);
  const Tensor logits = net.forward(ctx, net.normalize(ctx, images));
  const int64_t n = logits.dim(0), k = logits.dim(1), h = images.dim(2), w = images.dim(3);
  std::vector<double> onehot(static_cast<size_t>(n * k), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const int c = classes[static_cast<size_t>(i)];
    SAL_CHECK(c >= 0 && c < k, "gradient_saliency: class ", c, " of image ", i, " is outside [0, ", k, ")");
    onehot[static_cast<size_t>(i * k + c)] = 1.0;
  }
  const Tensor dz = Tensor::from_values(onehot, Shape{n, k}, logits.dtype()).to(ctx.device);
  const std::vector<double> g = net.normalize_backward(ctx, net.backward_input(ctx, dz)).values();
  std::vector<double> m(static_cast<size_t>(n * h * w), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < 3; ++ch)
      for (int64_t p = 0; p < h * w; ++p) {
        double& o = m[static_cast<size_t>(i * h * w + p)];
        o = std::max(o, std::abs(g[static_cast<size_t>((i * 3 + ch) * h * w + p)]));
      }
  Tensor maps = Tensor::from_values(m, Shape{n, 1, h, w}, images.dtype());
  normalise_by_max(maps);
  return maps;
}

LinearHead linear_head(const Network& net) {
  const ParamStore& ps = net.params();
  LinearHead head;
  if (ps.contains("conv_preds.weight")) {
    const Tensor w = ps.value("conv_preds.weight").to(Device::CPU);
    SAL_CHECK(w.ndim() == 4 && w.dim(2) == 1 && w.dim(3) == 1, net.input_spec().arch,
              ": conv_preds.weight must be [K,C,1,1], got ", w.desc());
    head.weight = w.clone().reshape(Shape{w.dim(0), w.dim(1)});
    head.bias = ps.value("conv_preds.bias").to(Device::CPU).clone();
  } else if (ps.contains("linear.weight")) {
    head.weight = ps.value("linear.weight").to(Device::CPU).clone();
    head.bias = ps.value("linear.bias").to(Device::CPU).clone();
  } else {
    fail(net.input_spec().arch,
         ": Grad-CAM here needs a global-average-pool + linear classifier ('conv_preds.weight' of MobileNet v1 or "
         "'linear.weight' of a CIFAR ResNet); this network has neither");
  }
  return head;
}

Tensor class_activation_maps(Ctx& ctx, Network& net, const Tensor& images, const std::vector<int>& classes) {
  check_images(images, classes, "class_activation_maps");
  const LinearHead head = linear_head(net);
  ArenaScope scope(ctx);
  net.forward(ctx, net.normalize(ctx, images));
  const std::vector<Tensor> feats = net.features();
  SAL_CHECK(!feats.empty(), net.input_spec().arch, ": no feature maps after forward");
  const Tensor& a = feats.back();
  const int64_t n = a.dim(0), c = a.dim(1), h = a.dim(2), w = a.dim(3), k = head.weight.dim(0);
  SAL_CHECK(head.weight.dim(1) == c, net.input_spec().arch, ": the classifier takes ", head.weight.dim(1),
            " channels, the last feature map has ", c);
  const std::vector<double> av = a.values(), wv = head.weight.values();
  std::vector<double> cam(static_cast<size_t>(n * h * w), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    const int cls = classes[static_cast<size_t>(i)];
    SAL_CHECK(cls >= 0 && cls < k, "class_activation_maps: class ", cls, " of image ", i, " is outside [0, ", k, ")");
    for (int64_t ch = 0; ch < c; ++ch) {
      const double wc = wv[static_cast<size_t>(cls * c + ch)];
      const double* ap = av.data() + (i * c + ch) * h * w;
      double* out = cam.data() + i * h * w;
      for (int64_t p = 0; p < h * w; ++p) out[p] += wc * ap[p];
    }
  }
  return Tensor::from_values(cam, Shape{n, 1, h, w}, images.dtype());
}

Tensor gradcam_saliency(Ctx& ctx, Network& net, const Tensor& images, const std::vector<int>& classes) {
  Tensor cam = class_activation_maps(ctx, net, images, classes);
  ArenaScope scope(ctx);
  Ctx host(Device::CPU);
  Tensor up = resize_bilinear(host, relu(host, cam), images.dim(2), images.dim(3));
  normalise_by_max(up);
  return up;
}

Tensor optimise_masks(Ctx& ctx, Network& net, const Tensor& images, const std::vector<int>& classes,
                      const MaskOptimConfig& cfg, double* final_loss) {
  check_images(images, classes, "optimise_masks");
  SAL_CHECK(cfg.steps >= 0 && cfg.resolution > 0 && cfg.lr > 0, "optimise_masks: bad settings (steps ", cfg.steps,
            ", resolution ", cfg.resolution, ", lr ", cfg.lr, ")");
  ObjectiveConfig oc = cfg.objective;
  oc.selector_weight = 0.0;  // no filter logits: the mask is a free parameter
  oc.smooth_on_head = false;
  SaliencyObjective objective(oc);
  const int64_t n = images.dim(0), h = images.dim(2), w = images.dim(3), r = cfg.resolution;
  const Shape ps{n, 1, r, r};
  std::vector<double> theta(static_cast<size_t>(ps.numel()), cfg.init_logit), m1(theta.size(), 0.0),
      m2(theta.size(), 0.0);
  const Tensor cls = labels_on(ctx, classes);
  const std::vector<uint8_t> real(static_cast<size_t>(n), 1);
  std::mt19937 rng(cfg.seed);
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  double loss = 0;
  for (int step = 1; step <= cfg.steps; ++step) {
    ArenaScope scope(ctx);
    const Tensor p = Tensor::from_values(theta, ps, images.dtype()).to(ctx.device);
    const Tensor s = sigmoid(ctx, p);
    const Tensor mask = resize_bilinear(ctx, s, h, w);
    ObjectiveResult res = objective.evaluate(ctx, net, images, mask, Tensor(), Tensor(), cls, real, rng);
    loss = res.terms.total;
    SAL_CHECK(std::isfinite(loss), "optimise_masks: the objective is not finite at step ", step);
    const Tensor d = sigmoid_backward(ctx, resize_bilinear_backward(ctx, res.dmask, ps), s);
    const std::vector<double> g = d.values();
    const double c1 = 1.0 - std::pow(b1, step), c2 = 1.0 - std::pow(b2, step);
    for (size_t j = 0; j < theta.size(); ++j) {
      const double gj = g[j] * static_cast<double>(n);  // per-image problems: undo the batch mean
      m1[j] = b1 * m1[j] + (1 - b1) * gj;
      m2[j] = b2 * m2[j] + (1 - b2) * gj * gj;
      theta[j] -= cfg.lr * (m1[j] / c1) / (std::sqrt(m2[j] / c2) + eps);
    }
  }
  if (final_loss) *final_loss = loss;
  ArenaScope scope(ctx);
  Ctx host(Device::CPU);
  const Tensor p = Tensor::from_values(theta, ps, images.dtype());
  return resize_bilinear(host, sigmoid(host, p), h, w).clone();
}

Tensor blur_phi(Ctx& ctx, const Tensor& images, const Tensor& maps, double sigma, int ksize) {
  return blend(ctx, images, gaussian_blur(ctx, images, sigma, ksize), maps);
}

}  // namespace sal
