// The masker's inference path as one object (see saliency_engine.h).
#include "layers/saliency_engine.h"

#include <filesystem>

#include "engine/error.h"

namespace sal {

namespace fs = std::filesystem;

std::string SaliencyEngine::black_box_path_for(const std::string& masker_path, const MaskerFileInfo& info) {
  SAL_CHECK(!info.black_box.empty(), masker_path, ": the masker names no black box; name one (sal_mask --black-box)");
  for (const fs::path& p : {fs::path(masker_path).parent_path() / info.black_box, fs::path("weights") / info.black_box})
    if (fs::exists(p)) return p.string();
  fail(masker_path, ": its black box '", info.black_box,
       "' is neither beside it nor in weights/; name it (sal_mask --black-box)");
}

SaliencyEngine::SaliencyEngine(const DeviceSession& device, const Config& config)
    : device_(device),
      classify_arena_(device.device()),
      mask_arena_(device.device()),
      classify_step_(device.ctx(classify_arena_), config.capture),
      mask_step_(device.ctx(mask_arena_), config.capture) {
  SAL_CHECK(config.max_batch >= 1, "SaliencyEngine: max_batch must be at least 1, got ", config.max_batch);
  masker_ = load_masker(config.masker, device.device(), &info_);
  black_box_path_ = config.black_box.empty() ? black_box_path_for(config.masker, info_) : config.black_box;
  black_box_ = load_network(black_box_path_, device.device());
  check_masker_black_box(info_, config.masker, *black_box_, black_box_path_);
  rows_ = config.max_batch;
  const int64_t S = info_.image_size;
  x_buf_ = Tensor::empty(Shape{rows_, 3, S, S}, DType::F32, device.device());
  cls_buf_ = Tensor::empty(Shape{rows_}, DType::I32, device.device());
}

int64_t SaliencyEngine::num_classes() const { return black_box_->input_spec().num_classes; }

Tensor SaliencyEngine::classify(const Tensor& images) {
  const int64_t S = info_.image_size;
  SAL_CHECK(images.device() == Device::CPU && images.dtype() == DType::F32 && images.ndim() == 4 &&
                images.dim(0) >= 1 && images.dim(0) <= rows_ && images.dim(1) == 3 && images.dim(2) == S &&
                images.dim(3) == S,
            "SaliencyEngine::classify: images must be host f32 [n,3,", S, ",", S, "] with 1 <= n <= ", rows_,
            " (max_batch), got ", images.desc());
  const int64_t n = images.dim(0);
  // CUDA graphs replay fixed shapes: every call computes all rows, the ones after the images zero.
  used_ = device_.device() == Device::CUDA ? rows_ : n;
  n_ = 0;  // until this classification has run (a failure below leaves no features for masks())
  Tensor host = images;
  if (used_ > n) {
    host = Tensor::zeros(Shape{used_, 3, S, S});
    host.slice0(0, n).copy_from(images);
  }
  Tensor x_rows = x_buf_.slice0(0, used_);
  upload_into(device_.ctx(classify_arena_), x_rows, host);  // allocates nothing (upload_into)
  // The black box's feature maps are outputs of this step (same addresses on every run, valid until its next
  // run): the mask step's decoder reads them instead of running the encoder again.
  const std::vector<Tensor>& out = classify_step_.run([this](Ctx& c) {
    std::vector<Tensor> o = {log_softmax(c, black_box_->forward(c, black_box_->normalize(c, x_buf_.slice0(0, used_))))};
    for (const Tensor& f : black_box_->features()) o.push_back(f);
    return o;
  });
  Tensor log_probs = out[0].slice0(0, n).to(Device::CPU);
  n_ = n;
  return log_probs;
}

Tensor SaliencyEngine::masks(const std::vector<int32_t>& classes) {
  SAL_CHECK(n_ > 0, "SaliencyEngine::masks: no images classified yet (call classify first)");
  SAL_CHECK(static_cast<int64_t>(classes.size()) == n_, "SaliencyEngine::masks: ", classes.size(),
            " classes for the ", n_, " images of the last classify");
  const int64_t K = num_classes(), S = info_.image_size;
  std::vector<int32_t> rows(static_cast<size_t>(used_), 0);  // the padding rows (CUDA) take class 0
  for (size_t i = 0; i < classes.size(); ++i) {
    SAL_CHECK(classes[i] >= 0 && classes[i] < K, "SaliencyEngine::masks: class ", classes[i], " of image ", i,
              " is outside the black box's ", K, " classes");
    rows[i] = classes[i];
  }
  Tensor cls_rows = cls_buf_.slice0(0, used_);
  upload_into(device_.ctx(mask_arena_), cls_rows, Tensor::from_labels(rows));
  // The mask step reads the classify step's feature maps where they are now. Those move until the classify
  // step is captured (its arena settles after its first run), so a mask graph captured earlier (classify,
  // masks, masks: the second masks captures) would read memory the next classify freed: when the addresses
  // change, the mask step forgets its graph and runs eagerly again.
  std::vector<const void*> inputs;
  for (const Tensor& f : classify_step_.outputs()) inputs.push_back(f.raw());
  if (inputs != mask_inputs_) {
    mask_step_.reset();
    mask_inputs_ = inputs;
  }
  const std::vector<Tensor>& out = mask_step_.run([this, S](Ctx& c) {
    const std::vector<Tensor>& classified = classify_step_.outputs();
    const std::vector<Tensor> features(classified.begin() + 1, classified.end());
    return std::vector<Tensor>{masker_->forward_features(c, features, cls_buf_.slice0(0, used_), S, S, false).mask};
  });
  // An owning host copy: the output lives in the step's arena, which the next call reuses.
  return out[0].slice0(0, n_).to(Device::CPU);
}

SaliencyEngine::Result SaliencyEngine::run(const Tensor& images) {
  Result r;
  r.log_probs = classify(images);
  const int64_t n = r.log_probs.dim(0), K = r.log_probs.dim(1);
  const float* lp = r.log_probs.data<float>();
  std::vector<int32_t> classes(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = 0;
    for (int64_t k = 1; k < K; ++k)
      if (lp[i * K + k] > lp[i * K + best]) best = k;
    r.top1.push_back(static_cast<int>(best));
    classes[static_cast<size_t>(i)] = static_cast<int32_t>(best);
  }
  r.masks = masks(classes);
  return r;
}

}  // namespace sal
