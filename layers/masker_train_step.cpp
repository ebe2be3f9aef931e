#include "layers/masker_train_step.h"

#include "engine/device_session.h"
#include "engine/host_io_guard.h"
#ifdef SAL_WITH_CUDA
#include "cuda/device.h"
#endif

namespace sal {

MaskerTrainStep::MaskerTrainStep(const Ctx& ctx, Masker& masker, Network& black_box, SaliencyObjective& objective,
                                 Adam& adam, bool capture)
    : ctx_(ctx), masker_(masker), bb_(black_box), objective_(objective), adam_(adam), graph_(ctx, capture) {}

void MaskerTrainStep::launch(const Tensor& images, const std::vector<int32_t>& classes,
                             const std::vector<uint8_t>& real, std::mt19937& rng) {
  launch_on(images, false, classes, real, rng);
}

void MaskerTrainStep::launch_prefetched(const std::vector<int32_t>& classes, const std::vector<uint8_t>& real,
                                        std::mt19937& rng) {
  SAL_CHECK(prefetched_, "MaskerTrainStep::launch_prefetched without a prefetch()");
  launch_on(next_images_, true, classes, real, rng);
}

void MaskerTrainStep::prefetch(const Tensor& host_images) {
  check_no_host_io("MaskerTrainStep::prefetch");
  SAL_CHECK(host_images.device() == Device::CPU && host_images.ndim() == 4 && host_images.dim(1) == 3,
            "MaskerTrainStep::prefetch: images must be an [N,3,H,W] batch on the host, got ", host_images.desc());
  SAL_CHECK(!prefetched_, "MaskerTrainStep::prefetch: the images prefetched before were not launched yet");
  if (!next_images_.defined() || next_images_.shape() != host_images.shape() ||
      next_images_.dtype() != host_images.dtype())
    next_images_ = Tensor::empty(host_images.shape(), host_images.dtype(), ctx_.device);
#ifdef SAL_WITH_CUDA
  if (ctx_.device == Device::CUDA && ctx_.cuda) {
    // After the last launch's copy out of next_images_ (marked there), not after its step.
    auto* dev = static_cast<CudaDevice*>(ctx_.cuda);
    dev->copy_waits_for_mark();
    dev->upload_on_copy_stream(next_images_.raw(), host_images.raw(), host_images.nbytes());
    prefetched_ = true;
    return;
  }
#endif
  upload_into(ctx_, next_images_, host_images);  // the CPU (or a CUDA context without a device: synchronous)
  prefetched_ = true;
}

void MaskerTrainStep::launch_on(const Tensor& images, bool from_prefetch, const std::vector<int32_t>& classes,
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
  if (from_prefetch) {
#ifdef SAL_WITH_CUDA
    auto* dev = ctx_.device == Device::CUDA ? static_cast<CudaDevice*>(ctx_.cuda) : nullptr;
    if (dev) dev->compute_waits_for_copies();
#endif
    ctx_.copy(next_images_, images_);
#ifdef SAL_WITH_CUDA
    if (dev) dev->mark_compute();  // the next prefetch may overwrite next_images_ from here on
#endif
    prefetched_ = false;
  } else if (images.device() == ctx_.device && images.device() != Device::CPU) {
    ctx_.copy(images, images_);
  } else {
    upload_into(ctx_, images_, images);
  }
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
