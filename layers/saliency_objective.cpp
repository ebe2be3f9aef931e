// The saliency objective (layers/saliency_objective.h) over the op API. The per-sample random
// choices of the evidence removal (blur or colour, the colour) are drawn on the host and uploaded
// (a few numbers per sample); the image-sized noise is made on the device by random_normal from
// seeds drawn from the same host generator, so a run is reproducible from that generator's state.
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

// A host vector as a tensor of `shape` on the context's device (engine/device_session.h's upload).
Tensor upload(Ctx& ctx, const std::vector<double>& v, const Shape& shape, DType dtype) {
  return sal::upload(ctx, Tensor::from_values(v, shape, dtype));
}

double weighted_sum(Ctx& ctx, const Tensor& per_sample, const Tensor& weights) {
  return sum(ctx, mul(ctx, per_sample, weights)).item();
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

// r = relu(sign * (max_other(z) - z_c) + margin) [N] and its backward.
struct Margin {
  Tensor r;
  MaxOther mo;
};
Margin margin_forward(Ctx& ctx, const Tensor& z, const Tensor& onehot, double sign, double margin) {
  Margin m;
  m.mo = max_other(ctx, z, onehot);
  Tensor diff = scale(ctx, sub(ctx, m.mo.value, gather(ctx, z, onehot)), sign);
  Tensor c = upload(ctx, {margin}, Shape{1}, z.dtype());
  m.r = relu(ctx, add(ctx, diff, c));
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

ObjectiveResult SaliencyObjective::evaluate(Ctx& ctx, Network& bb, const Tensor& images, const Tensor& mask,
                                            const Tensor& head_mask, const Tensor& filter_logits,
                                            const Tensor& classes, const std::vector<uint8_t>& real,
                                            std::mt19937& rng) {
  const char* op = "SaliencyObjective";
  SAL_CHECK(images.ndim() == 4 && images.dim(1) == 3, op, ": images must be [N,3,H,W], got ", images.desc());
  const int64_t n = images.dim(0), h = images.dim(2), w = images.dim(3);
  const DType dt = images.dtype();
  SAL_CHECK(mask.shape() == (Shape{n, 1, h, w}), op, ": mask must be [", n, ",1,", h, ",", w, "], got ",
            mask.desc());
  SAL_CHECK(classes.dtype() == DType::I32 && classes.shape() == Shape{n}, op, ": classes must be i32[", n, "], got ",
            classes.desc());
  SAL_CHECK(static_cast<int64_t>(real.size()) == n, op, ": ", real.size(), " real/fake flags for a batch of ", n);
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

  // ---------------------------------------------------------------- evidence removal
  // Colour and noise in the black box's normalised units: x = (v - shift_c) / scale_c.
  float in_scale[3], in_shift[3];
  bb.input_spec().affine(in_scale, in_shift);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<double> sel(static_cast<size_t>(n)), colour(static_cast<size_t>(n * 3));
  bool any_blur = false;
  for (int64_t i = 0; i < n; ++i) {
    const bool blur = unit(rng) < cfg_.blur_prob;
    any_blur = any_blur || blur;
    sel[static_cast<size_t>(i)] = blur ? 1.0 : 0.0;
    for (int c = 0; c < 3; ++c) {
      const double v = (unit(rng) - 0.5) * cfg_.colour_range;
      colour[static_cast<size_t>(i * 3 + c)] = blur ? 0.0 : (v - in_shift[c]) / in_scale[c];
    }
  }
  Tensor alt = add(ctx, ctx.alloc_zeros(images.shape(), dt), upload(ctx, colour, Shape{n, 3, 1, 1}, dt));
  if (any_blur) {
    Tensor blurred = gaussian_blur(ctx, images, cfg_.blur_sigma, cfg_.blur_ksize);
    alt = add(ctx, alt, mul(ctx, blurred, upload(ctx, sel, Shape{n, 1, 1, 1}, dt)));
  }
  // Gaussian noise of standard deviation sd (in [0,1] pixel units) in the black box's units: N(0,1)
  // numbers made on the device from a seed drawn here (random_normal: no host loop, no upload of an
  // image-sized tensor), times sd / scale_c per channel.
  const auto noise = [&](double sd) {
    const uint64_t seed = (static_cast<uint64_t>(rng()) << 32) | static_cast<uint64_t>(rng());
    const std::vector<double> per_channel = {sd / in_scale[0], sd / in_scale[1], sd / in_scale[2]};
    return mul(ctx, random_normal(ctx, images.shape(), dt, seed), upload(ctx, per_channel, Shape{1, 3, 1, 1}, dt));
  };
  if (cfg_.noise_std > 0) alt = add(ctx, alt, noise(cfg_.noise_std));
  Tensor xp = cfg_.preserved_noise_std > 0 ? add(ctx, images, noise(cfg_.preserved_noise_std)) : images;

  // ---------------------------------------------------------------- black box on Phi(X,M) and Phi(X,1-M)
  Tensor phi1 = blend(ctx, xp, alt, mask);
  Tensor phi2 = blend(ctx, alt, xp, mask);
  Tensor both = ctx.alloc(Shape{2 * n, 3, h, w}, dt);
  both.slice0(0, n).copy_from(phi1);
  both.slice0(n, n).copy_from(phi2);
  Tensor logits = bb.forward(ctx, bb.normalize(ctx, both));
  SAL_CHECK(logits.ndim() == 2 && logits.dim(1) == k, op, ": black box logits ", logits.desc(), " for ", k,
            " classes");
  Tensor z1 = logits.slice0(0, n), z2 = logits.slice0(n, n);

  if (!eye_.defined() || eye_.dim(0) != k || eye_.dtype() != dt || eye_.device() != ctx.device) {
    std::vector<double> e(static_cast<size_t>(k * k), 0.0);
    for (int64_t i = 0; i < k; ++i) e[static_cast<size_t>(i * k + i)] = 1.0;
    eye_ = Tensor::from_values(e, Shape{k, k}, dt).to(ctx.device);
  }
  Tensor onehot = embedding(ctx, eye_, classes);  // [N,K]

  std::vector<double> wr(static_cast<size_t>(n)), wall(static_cast<size_t>(n), 1.0 / static_cast<double>(n));
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    wr[static_cast<size_t>(i)] = real[static_cast<size_t>(i)] ? 1.0 / static_cast<double>(n) : 0.0;
    labels[static_cast<size_t>(i)] = real[static_cast<size_t>(i)] ? 1 : 0;
  }
  Tensor w_real = upload(ctx, wr, Shape{n}, dt);  // 1/N for real samples, 0 for fake
  Tensor w_all = upload(ctx, wall, Shape{n}, dt);

  ObjectiveResult res;
  ObjectiveTerms& t = res.terms;
  res.logits_preserved = z1;
  res.logits_destroyed = z2;
  res.preserved = phi1;

  // ---------------------------------------------------------------- mask terms
  const double apow = paper ? 1.0 : cfg_.area_power, aeps = paper ? 0.0 : cfg_.area_eps;
  Tensor area = area_loss(ctx, mask, apow, aeps);
  t.area = cfg_.area_weight * weighted_sum(ctx, area, w_all);
  Tensor dmask = area_loss_backward(ctx, scale(ctx, w_all, cfg_.area_weight), mask, apow, aeps);

  const Tensor& smask = on_head ? head_mask : mask;
  double sfactor, border;
  if (paper) {
    const double mh = static_cast<double>(smask.dim(2)), mw = static_cast<double>(smask.dim(3));
    const double pairs = (mh - 1) * mw + mh * (mw - 1);
    sfactor = cfg_.tv_weight / (cfg_.tv_mean && pairs > 0 ? pairs : 1.0);
    border = 0.0;
  } else {
    sfactor = cfg_.smooth_weight / 2.0;
    border = cfg_.border_weight;
  }
  Tensor tv = tv_loss(ctx, smask, border);
  t.smoothness = sfactor * weighted_sum(ctx, tv, w_real);
  Tensor dsmooth = tv_loss_backward(ctx, scale(ctx, w_real, sfactor), smask, border);
  if (on_head) res.dhead_mask = dsmooth;
  else dmask = add(ctx, dmask, dsmooth);

  // ---------------------------------------------------------------- classifier terms
  Tensor dz1, dz2;
  if (paper) {
    Tensor ce = cross_entropy(ctx, z1, classes);
    t.preserver = weighted_sum(ctx, ce, w_real);
    dz1 = cross_entropy_backward(ctx, w_real, z1, classes);
    Tensor p = softmax(ctx, z2);
    Tensor pc = gather(ctx, p, onehot).reshape(Shape{n, 1, 1, 1});
    Tensor q = area_loss(ctx, pc, cfg_.destroyer_power, cfg_.prob_eps);  // (p_c + eps)^power
    t.destroyer = cfg_.destroyer_weight * weighted_sum(ctx, q, w_real);
    Tensor dpc = area_loss_backward(ctx, scale(ctx, w_real, cfg_.destroyer_weight), pc, cfg_.destroyer_power,
                                    cfg_.prob_eps);
    dz2 = softmax_backward(ctx, mul(ctx, onehot, dpc.reshape(Shape{n, 1})), p);
  } else {
    Margin pres = margin_forward(ctx, z1, onehot, +1.0, cfg_.preserver_margin);
    t.preserver = cfg_.preserver_weight * weighted_sum(ctx, pres.r, w_real);
    dz1 = margin_backward(ctx, scale(ctx, w_real, cfg_.preserver_weight), pres, onehot, +1.0);
    Margin destr = margin_forward(ctx, z2, onehot, -1.0, cfg_.destroyer_margin);
    t.destroyer = cfg_.destroyer_weight * weighted_sum(ctx, destr.r, w_real);
    dz2 = margin_backward(ctx, scale(ctx, w_real, cfg_.destroyer_weight), destr, onehot, -1.0);
  }
  Tensor dlogits = ctx.alloc(logits.shape(), dt);
  dlogits.slice0(0, n).copy_from(dz1);
  dlogits.slice0(n, n).copy_from(dz2);
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
    Tensor y = sal::upload(ctx, Tensor::from_labels(labels));
    Tensor bce = cross_entropy(ctx, two, y);  // -log sigmoid(zbar) when real, -log(1 - sigmoid(zbar)) when fake
    t.selector = cfg_.selector_weight * weighted_sum(ctx, bce, w_all);
    Tensor dtwo = cross_entropy_backward(ctx, scale(ctx, w_all, cfg_.selector_weight), two, y);
    Tensor dzbar = scale(ctx, slice_channels(ctx, dtwo.reshape(Shape{n, 2, 1, 1}), 1, 1), inv);
    res.dfilter_logits = add(ctx, ctx.alloc_zeros(filter_logits.shape(), dt), dzbar);
  }
  t.total = t.area + t.smoothness + t.preserver + t.destroyer + t.selector;
  return res;
}

}  // namespace sal
