#include "layers/masker_train_step.h"

#include "engine/device_session.h"

namespace sal {

MaskerTrainStep::MaskerTrainStep(const Ctx& ctx, Masker& masker, Network& black_box, SaliencyObjective& objective,
                                 Adam& adam, bool capture)
    : ctx_(ctx), masker_(masker), bb_(black_box), objective_(objective), adam_(adam), graph_(ctx, capture) {}

void MaskerTrainStep::launch(const Tensor& images, const std::vector<int32_t>& classes,
                             const std::vector<uint8_t>& real, std::mt19937& rng) {
  SAL_CHECK(!launched_, "MaskerTrainStep::launch: the previous step was not finished (call finish() first)");
  const int64_t n = images.ndim() == 4 ? images.dim(0) : -1;
  SAL_CHECK((images.device() == Device::CPU || images.device() == ctx_.device) && n > 0 && images.dim(1) == 3,
            "MaskerTrainStep: images must be an [N,3,H,W] batch on the host or the step's device, got ", images.desc());
  SAL_CHECK(static_cast<int64_t>(classes.size()) == n && static_cast<int64_t>(real.size()) == n,
            "MaskerTrainStep: ", classes.size(), " classes and ", real.size(), " real flags for ", n, " images");
  const ObjectiveDraws host = objective_.draw(bb_, real, images.dtype(), rng);
  if (!images_.defined() || images_.shape() != images.shape() || images_.dtype() != images.dtype()) {
    images_ = Tensor::empty(images.shape(), images.dtype(), ctx_.device);
    classes_ = Tensor::empty(Shape{n}, DType::I32, ctx_.device);
    draws_ = ObjectiveDraws{Tensor::empty(host.values.shape(), host.values.dtype(), ctx_.device),
                            Tensor::empty(host.ints.shape(), DType::I32, ctx_.device)};
    graph_.reset();
  }
  if (images.device() == ctx_.device && images.device() != Device::CPU) ctx_.copy(images, images_);
  else upload_into(ctx_, images_, images);
  upload_into(ctx_, classes_, Tensor::from_labels(classes));
  upload_into(ctx_, draws_.values, host.values);
  upload_into(ctx_, draws_.ints, host.ints);

  out_ = graph_.run([this](Ctx& c) {
    masker_.params().zero_grads(c);
    MaskerOutput o = masker_.forward(c, bb_, images_, classes_, true);
    ObjectiveResult r = objective_.evaluate(c, bb_, images_, o.mask, o.head_mask, o.filter_logits, classes_, draws_);
    smooth_factor_ = r.smooth_factor;
    masker_.backward(c, r.dmask, &r.dhead_mask, &r.dfilter_logits);
    if (hook_) hook_(c);
    return std::vector<Tensor>{o.mask, r.logits_preserved, r.sums};
  });
  launched_ = true;
}

const MaskerTrainStep::Result& MaskerTrainStep::finish() {
  SAL_CHECK(launched_, "MaskerTrainStep::finish without a launch()");
  launched_ = false;
  result_ = Result{out_[0], out_[1], objective_.read_terms(out_[2], smooth_factor_)};  // waits for the step
  return result_;
}

void MaskerTrainStep::update() {
  adam_.prepare(ctx_);
  adam_.apply(ctx_);
}

}  // namespace sal
