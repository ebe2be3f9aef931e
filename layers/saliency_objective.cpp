// The saliency objective (layers/saliency_objective.h) over the op API, in two halves. draw(): the
// per-sample random choices of the evidence removal (blur or colour, the colour), the per-sample
// weights, the noise seeds and the step's constants, on the host, packed into two tensors. The
// device half reads them from device memory (two uploads per step) and leaves the loss sums on the
// device, so it does no host I/O and a training step can be captured as one CUDA graph. The
// image-sized noise is made on the device by random_normal from the drawn seeds, so a run is
// reproducible from the host generator's state.
#include "layers/saliency_objective.h"

#include "engine/device_session.h"

#include <cmath>

namespace sal {

ObjectiveConfig ObjectiveConfig::paper() {
  ObjectiveConfig c;
  c.variant = LossVariant::Paper;
  c.tv_weight = 10.0;
  c.area_weight = 1e-3;
  c.destroyer_weight = 5.0;
  c.destroyer_power = 0.3;
  c.selector_weight = 0.0;
  return c;
}

ObjectiveConfig ObjectiveConfig::released() {
  ObjectiveConfig c;
  c.variant = LossVariant::Released;
  c.selector_weight = 0.0;
  c.blur_sigma = 11.0;
  c.blur_ksize = 55;
  return c;
}

namespace {

// Offsets into ObjectiveDraws::values: the constants, then per-sample blocks of N (colour: 3N).
enum : int64_t { kAreaWeight = 0, kPreserverMargin = 1, kDestroyerMargin = 2, kNoiseSd = 3, kPreservedNoiseSd = 6 };
struct Layout {
  int64_t n;
  int64_t sel() const { return kObjectiveConstants; }
  int64_t colour() const { return sel() + n; }
  int64_t w_real() const { return colour() + 3 * n; }
  int64_t w_all() const { return w_real() + n; }
  int64_t size() const { return w_all() + n; }
};

// Views of the device draws: values[begin, begin + count) as `shape`.
Tensor part(const Tensor& values, int64_t begin, const Shape& shape) {
  return values.slice0(begin, shape.numel()).reshape(shape);
}

// sum(per_sample * weights) [N] -> [1] into slot j of sums (no read-back).
void weighted_sum_into(Ctx& ctx, const Tensor& per_sample, const Tensor& weights, Tensor& sums, int64_t j) {
  Tensor slot = sums.slice0(j, 1);
  ctx.copy(sum(ctx, mul(ctx, per_sample, weights)).reshape(Shape{1}), slot);
}

// z_c per sample: [N,K] x one-hot [N,K] -> [N].
Tensor gather(Ctx& ctx, const Tensor& z, const Tensor& onehot) {
  return sum_to(ctx, mul(ctx, z, onehot), Shape{z.dim(0), 1}).reshape(Shape{z.dim(0)});
}

// max_{k != c} z_k per sample, by a 1 x K max pool over z with the true class pushed down.
struct MaxOther {
  Tensor value;    // [N]
  Tensor pooled;   // [N,1,1,K] the pool's input
  Pool2dArgs args;
};
MaxOther max_other(Ctx& ctx, const Tensor& z, const Tensor& onehot) {
  const int64_t n = z.dim(0), k = z.dim(1);
  MaxOther m;
  m.pooled = add(ctx, z, scale(ctx, onehot, -1e9)).reshape(Shape{n, 1, 1, k});
  m.args = Pool2dArgs{1, static_cast<int>(k), 1, static_cast<int>(k), 0, 0, false, true};
  m.value = max_pool2d(ctx, m.pooled, m.args).reshape(Shape{n});
  return m;
}

// r = relu(sign * (max_other(z) - z_c) + margin) [N] and its backward; margin: [1] on the device.
struct Margin {
  Tensor r;
  MaxOther mo;
};
Margin margin_forward(Ctx& ctx, const Tensor& z, const Tensor& onehot, double sign, const Tensor& margin) {
  Margin m;
  m.mo = max_other(ctx, z, onehot);
  Tensor diff = scale(ctx, sub(ctx, m.mo.value, gather(ctx, z, onehot)), sign);
  m.r = relu(ctx, add(ctx, diff, margin));
  return m;
}
Tensor margin_backward(Ctx& ctx, const Tensor& dr, const Margin& m, const Tensor& onehot, double sign) {
  const int64_t n = onehot.dim(0), k = onehot.dim(1);
  Tensor dpre = relu_backward(ctx, dr, m.r);  // [N]
  Tensor dmax = max_pool2d_backward(ctx, scale(ctx, dpre, sign).reshape(Shape{n, 1, 1, 1}), m.mo.pooled, m.mo.args)
                    .reshape(Shape{n, k});
  Tensor dzc = mul(ctx, onehot, scale(ctx, dpre, -sign).reshape(Shape{n, 1}));
  return add(ctx, dmax, dzc);
}

}  // namespace

ObjectiveDraws SaliencyObjective::draw(const Network& bb, const std::vector<uint8_t>& real, DType dtype,
                                       std::mt19937& rng) const {
  const int64_t n = static_cast<int64_t>(real.size());
  const Layout at{n};
  // Colour and noise in the black box's normalised units: x = (v - shift_c) / scale_c.
  float in_scale[3], in_shift[3];
  bb.input_spec().affine(in_scale, in_shift);
  std::vector<double> v(static_cast<size_t>(at.size()), 0.0);
  std::vector<int32_t> ints(static_cast<size_t>(n + 4));
  auto put = [&v](int64_t i, double x) { v[static_cast<size_t>(i)] = x; };
  put(kAreaWeight, cfg_.area_weight);
  put(kPreserverMargin, cfg_.preserver_margin);
  put(kDestroyerMargin, cfg_.destroyer_margin);
  for (int c = 0; c < 3; ++c) {
    put(kNoiseSd + c, cfg_.noise_std / in_scale[c]);
    put(kPreservedNoiseSd + c, cfg_.preserved_noise_std / in_scale[c]);
  }
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int64_t i = 0; i < n; ++i) {
    const bool blur = unit(rng) < cfg_.blur_prob;
    put(at.sel() + i, blur ? 1.0 : 0.0);
    for (int c = 0; c < 3; ++c) {
      const double x = (unit(rng) - 0.5) * cfg_.colour_range;
      put(at.colour() + i * 3 + c, blur ? 0.0 : (x - in_shift[c]) / in_scale[c]);
    }
    const bool r = real[static_cast<size_t>(i)] != 0;
    put(at.w_real() + i, r ? 1.0 / static_cast<double>(n) : 0.0);
    put(at.w_all() + i, 1.0 / static_cast<double>(n));
    ints[static_cast<size_t>(i)] = r ? 1 : 0;
  }
  // The noise seeds, drawn in this order whether or not the noise is on (as the generator always was).
  for (int s = 0; s < 2; ++s) {
    const bool on = s == 0 ? cfg_.noise_std > 0 : cfg_.preserved_noise_std > 0;
    if (!on) continue;
    const uint64_t seed = (static_cast<uint64_t>(rng()) << 32) | static_cast<uint64_t>(rng());
    ints[static_cast<size_t>(n + 2 * s)] = static_cast<int32_t>(static_cast<uint32_t>(seed));
    ints[static_cast<size_t>(n + 2 * s + 1)] = static_cast<int32_t>(static_cast<uint32_t>(seed >> 32));
  }
  return ObjectiveDraws{Tensor::from_values(v, Shape{at.size()}, dtype), Tensor::from_labels(ints)};
}

ObjectiveResult SaliencyObjective::evaluate(Ctx& ctx, Network& bb, const Tensor& images, const Tensor& mask,
                                            const Tensor& head_mask, const Tensor& filter_logits,
                                            const Tensor& classes, const std::vector<uint8_t>& real,
                                            std::mt19937& rng) {
  const ObjectiveDraws host = draw(bb, real, images.dtype(), rng);
  const ObjectiveDraws device{upload(ctx, host.values), upload(ctx, host.ints)};
  ObjectiveResult r = evaluate(ctx, bb, images, mask, head_mask, filter_logits, classes, device);
  r.terms = read_terms(r.sums, r.smooth_factor);
  return r;
}

ObjectiveTerms SaliencyObjective::read_terms(const Tensor& sums, double smooth_factor) const {
  const std::vector<double> s = sums.values();
  ObjectiveTerms t;
  const bool paper = cfg_.variant == LossVariant::Paper;
  t.area = cfg_.area_weight * s[0];
  t.smoothness = smooth_factor * s[1];
  t.preserver = (paper ? 1.0 : cfg_.preserver_weight) * s[2];
  t.destroyer = cfg_.destroyer_weight * s[3];
  t.selector = cfg_.selector_weight > 0 ? cfg_.selector_weight * s[4] : 0.0;
  t.total = t.area + t.smoothness + t.preserver + t.destroyer + t.selector;
  return t;
}

ObjectiveResult SaliencyObjective::evaluate(Ctx& ctx, Network& bb, const Tensor& images, const Tensor& mask,
                                            const Tensor& head_mask, const Tensor& filter_logits,
                                            const Tensor& classes, const ObjectiveDraws& draws) {
  const char* op = "SaliencyObjective";
  SAL_CHECK(images.ndim() == 4 && images.dim(1) == 3, op, ": images must be [N,3,H,W], got ", images.desc());
  const int64_t n = images.dim(0), h = images.dim(2), w = images.dim(3);
  const DType dt = images.dtype();
  SAL_CHECK(mask.shape() == (Shape{n, 1, h, w}), op, ": mask must be [", n, ",1,", h, ",", w, "], got ",
            mask.desc());
  SAL_CHECK(classes.dtype() == DType::I32 && classes.shape() == Shape{n}, op, ": classes must be i32[", n, "], got ",
            classes.desc());
  const Layout at{n};
  SAL_CHECK(draws.values.dtype() == dt && draws.values.shape() == Shape{at.size()} &&
                draws.ints.dtype() == DType::I32 && draws.ints.shape() == Shape{n + 4},
            op, ": the draws ", draws.values.desc(), ", ", draws.ints.desc(), " are not those of a batch of ", n,
            " (", dtype_name(dt), "[", at.size(), "], i32[", n + 4, "])");
  const bool paper = cfg_.variant == LossVariant::Paper;
  const bool on_head = !paper && cfg_.smooth_on_head;
  const bool selector = cfg_.selector_weight > 0;
  if (on_head)
    SAL_CHECK(head_mask.defined() && head_mask.ndim() == 4 && head_mask.dim(0) == n && head_mask.dim(1) == 1, op,
              ": smooth_on_head needs head_mask [", n, ",1,h,w], got ",
              head_mask.defined() ? head_mask.desc() : std::string("(none)"));
  if (selector)
    SAL_CHECK(filter_logits.defined() && filter_logits.ndim() == 4 && filter_logits.dim(0) == n &&
                  filter_logits.dim(1) == 1,
              op, ": selector_weight > 0 needs filter_logits [", n, ",1,h,w], got ",
              filter_logits.defined() ? filter_logits.desc() : std::string("(none)"));
  const int64_t k = bb.input_spec().num_classes;
  SAL_CHECK(k >= 2, op, ": the black box must have at least 2 classes, has ", k);
  const Tensor& v = draws.values;

  // ---------------------------------------------------------------- evidence removal
  // The blur is computed for the whole batch whenever it can be drawn: which samples use it is data
  // (the flags), not control flow, so the step is the same every time (a captured graph).
  Tensor alt = add(ctx, ctx.alloc_zeros(images.shape(), dt), part(v, at.colour(), Shape{n, 3, 1, 1}));
  if (cfg_.blur_prob > 0) {
    Tensor blurred = gaussian_blur(ctx, images, cfg_.blur_sigma, cfg_.blur_ksize);
    alt = add(ctx, alt, mul(ctx, blurred, part(v, at.sel(), Shape{n, 1, 1, 1})));
  }
  // Gaussian noise in the black box's units: N(0,1) numbers made on the device from a seed read from
  // the draws (random_normal: no host loop, no image-sized upload), times sd / scale_c per channel.
  const auto noise = [&](int64_t seed_at, int64_t sd_at) {
    return mul(ctx, random_normal(ctx, images.shape(), dt, draws.ints.slice0(seed_at, 2)),
               part(v, sd_at, Shape{1, 3, 1, 1}));
  };
  if (cfg_.noise_std > 0) alt = add(ctx, alt, noise(n, kNoiseSd));
  Tensor xp = cfg_.preserved_noise_std > 0 ? add(ctx, images, noise(n + 2, kPreservedNoiseSd)) : images;

  // ---------------------------------------------------------------- black box on Phi(X,M) and Phi(X,1-M)
  Tensor phi1 = blend(ctx, xp, alt, mask);
  Tensor phi2 = blend(ctx, alt, xp, mask);
  Tensor both = ctx.alloc(Shape{2 * n, 3, h, w}, dt);
  Tensor both1 = both.slice0(0, n), both2 = both.slice0(n, n);
  ctx.copy(phi1, both1);
  ctx.copy(phi2, both2);
  Tensor logits = bb.forward(ctx, bb.normalize(ctx, both));
  SAL_CHECK(logits.ndim() == 2 && logits.dim(1) == k, op, ": black box logits ", logits.desc(), " for ", k,
            " classes");
  Tensor z1 = logits.slice0(0, n), z2 = logits.slice0(n, n);

  // The identity is made once per K, dtype and device (an upload: on the first, eager run of a step).
  if (!eye_.defined() || eye_.dim(0) != k || eye_.dtype() != dt || eye_.device() != ctx.device) {
    std::vector<double> e(static_cast<size_t>(k * k), 0.0);
    for (int64_t i = 0; i < k; ++i) e[static_cast<size_t>(i * k + i)] = 1.0;
    eye_ = Tensor::from_values(e, Shape{k, k}, dt).to(ctx.device);
  }
  Tensor onehot = embedding(ctx, eye_, classes);  // [N,K]

  const Tensor w_real = part(v, at.w_real(), Shape{n});  // 1/N for real samples, 0 for fake
  const Tensor w_all = part(v, at.w_all(), Shape{n});
  ObjectiveResult res;
  res.sums = ctx.alloc_zeros(Shape{5}, dt);
  res.logits_preserved = z1;
  res.logits_destroyed = z2;
  res.preserved = phi1;

  // ---------------------------------------------------------------- mask terms
  const double apow = paper ? 1.0 : cfg_.area_power, aeps = paper ? 0.0 : cfg_.area_eps;
  Tensor area = area_loss(ctx, mask, apow, aeps);
  weighted_sum_into(ctx, area, w_all, res.sums, 0);
  Tensor dmask = area_loss_backward(ctx, mul(ctx, w_all, part(v, kAreaWeight, Shape{1})), mask, apow, aeps);

  const Tensor& smask = on_head ? head_mask : mask;
  double border;
  if (paper) {
    const double mh = static_cast<double>(smask.dim(2)), mw = static_cast<double>(smask.dim(3));
    const double pairs = (mh - 1) * mw + mh * (mw - 1);
    res.smooth_factor = cfg_.tv_weight / (cfg_.tv_mean && pairs > 0 ? pairs : 1.0);
    border = 0.0;
  } else {
    res.smooth_factor = cfg_.smooth_weight / 2.0;
    border = cfg_.border_weight;
  }
  Tensor tv = tv_loss(ctx, smask, border);
  weighted_sum_into(ctx, tv, w_real, res.sums, 1);
  Tensor dsmooth = tv_loss_backward(ctx, scale(ctx, w_real, res.smooth_factor), smask, border);
  if (on_head) res.dhead_mask = dsmooth;
  else dmask = add(ctx, dmask, dsmooth);

  // ---------------------------------------------------------------- classifier terms
  Tensor dz1, dz2;
  if (paper) {
    Tensor ce = cross_entropy(ctx, z1, classes);
    weighted_sum_into(ctx, ce, w_real, res.sums, 2);
    dz1 = cross_entropy_backward(ctx, w_real, z1, classes);
    Tensor p = softmax(ctx, z2);
    Tensor pc = gather(ctx, p, onehot).reshape(Shape{n, 1, 1, 1});
    Tensor q = area_loss(ctx, pc, cfg_.destroyer_power, cfg_.prob_eps);  // (p_c + eps)^power
    weighted_sum_into(ctx, q, w_real, res.sums, 3);
    Tensor dpc = area_loss_backward(ctx, scale(ctx, w_real, cfg_.destroyer_weight), pc, cfg_.destroyer_power,
                                    cfg_.prob_eps);
    dz2 = softmax_backward(ctx, mul(ctx, onehot, dpc.reshape(Shape{n, 1})), p);
  } else {
    Margin pres = margin_forward(ctx, z1, onehot, +1.0, part(v, kPreserverMargin, Shape{1}));
    weighted_sum_into(ctx, pres.r, w_real, res.sums, 2);
    dz1 = margin_backward(ctx, scale(ctx, w_real, cfg_.preserver_weight), pres, onehot, +1.0);
    Margin destr = margin_forward(ctx, z2, onehot, -1.0, part(v, kDestroyerMargin, Shape{1}));
    weighted_sum_into(ctx, destr.r, w_real, res.sums, 3);
    dz2 = margin_backward(ctx, scale(ctx, w_real, cfg_.destroyer_weight), destr, onehot, -1.0);
  }
  Tensor dlogits = ctx.alloc(logits.shape(), dt);
  Tensor dlogits1 = dlogits.slice0(0, n), dlogits2 = dlogits.slice0(n, n);
  ctx.copy(dz1, dlogits1);
  ctx.copy(dz2, dlogits2);
  Tensor dboth = bb.normalize_backward(ctx, bb.backward_input(ctx, dlogits));
  Tensor dphi1 = dboth.slice0(0, n), dphi2 = dboth.slice0(n, n);
  dmask = add(ctx, dmask, blend_backward(ctx, dphi1, xp, alt, mask, false, false).dm);
  dmask = add(ctx, dmask, blend_backward(ctx, dphi2, alt, xp, mask, false, false).dm);
  res.dmask = dmask;

  // ---------------------------------------------------------------- selector
  if (selector) {
    const int64_t fh = filter_logits.dim(2), fw = filter_logits.dim(3);
    const double inv = 1.0 / static_cast<double>(fh * fw);
    Tensor zbar = scale(ctx, sum_to(ctx, filter_logits, Shape{n, 1, 1, 1}), inv);
    const Tensor parts[2] = {ctx.alloc_zeros(Shape{n, 1, 1, 1}, dt), zbar};
    Tensor two = concat_channels(ctx, parts).reshape(Shape{n, 2});
    const Tensor y = draws.ints.slice0(0, n);  // 1 real, 0 fake
    Tensor bce = cross_entropy(ctx, two, y);  // -log sigmoid(zbar) when real, -log(1 - sigmoid(zbar)) when fake
    weighted_sum_into(ctx, bce, w_all, res.sums, 4);
    Tensor dtwo = cross_entropy_backward(ctx, scale(ctx, w_all, cfg_.selector_weight), two, y);
    Tensor dzbar = scale(ctx, slice_channels(ctx, dtwo.reshape(Shape{n, 2, 1, 1}), 1, 1), inv);
    res.dfilter_logits = add(ctx, ctx.alloc_zeros(filter_logits.shape(), dt), dzbar);
  }
  return res;
}

}  // namespace sal
