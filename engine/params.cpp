#include "engine/params.h"

namespace sal {

namespace {
// Each slice starts on a 64-byte boundary (16 floats) so vectorised kernels see aligned rows.
constexpr int64_t kSliceAlign = 16;
int64_t align_elems(int64_t n) { return (n + kSliceAlign - 1) / kSliceAlign * kSliceAlign; }
}  // namespace

ParamRef ParamStore::add(const std::string& name, const Shape& shape, bool trainable) {
  SAL_CHECK(!finalized_, "ParamStore::add('", name, "'): the store is already finalized");
  SAL_CHECK(!name.empty(), "ParamStore::add: empty parameter name");
  SAL_CHECK(!index_.count(name), "ParamStore::add: parameter '", name, "' added twice");
  Entry e{name, shape, 0, trainable ? 0 : -1};
  value_count_ += align_elems(shape.numel());
  if (trainable) grad_count_ += align_elems(shape.numel());
  index_[name] = static_cast<int>(entries_.size());
  entries_.push_back(e);
  return ParamRef{static_cast<int>(entries_.size()) - 1};
}

void ParamStore::finalize(Device device, DType dtype, bool with_grads) {
  SAL_CHECK(!finalized_, "ParamStore::finalize called twice");
  // Trainable parameters first, so values [0, num_trainable) line up with the gradient buffer
  // element for element and an optimizer runs over one contiguous range.
  int64_t offset = 0;
  for (Entry& e : entries_)
    if (e.grad_offset >= 0) {
      e.offset = e.grad_offset = offset;
      offset += align_elems(e.shape.numel());
    }
  for (Entry& e : entries_)
    if (e.grad_offset < 0) {
      e.offset = offset;
      offset += align_elems(e.shape.numel());
    }
  values_ = Tensor::zeros(Shape{value_count_}, dtype, device);
  if (grad_count_ && with_grads) grads_ = Tensor::zeros(Shape{grad_count_}, dtype, device);
  finalized_ = true;
}

void ParamStore::require_finalized(const char* what) const {
  SAL_CHECK(finalized_, "ParamStore::", what, ": call finalize() first");
}

void ParamStore::require_grads(const char* what) const {
  require_finalized(what);
  SAL_CHECK(grads_.defined() || grad_count_ == 0, "ParamStore::", what, ": these parameters have no gradient buffer "
            "(finalized without one: a model loaded for inference, e.g. by load_masker)");
}

Tensor ParamStore::flat_grads() const {
  require_grads("flat_grads");
  return grads_;
}

ParamRef ParamStore::find(const std::string& name) const {
  auto it = index_.find(name);
  SAL_CHECK(it != index_.end(), "no parameter named '", name, "'");
  return ParamRef{it->second};
}

Tensor ParamStore::value(ParamRef p) const {
  require_finalized("value");
  const Entry& e = entries_.at(static_cast<size_t>(p.index));
  return values_.slice0(e.offset, e.shape.numel()).reshape(e.shape);
}

Tensor ParamStore::grad(ParamRef p) const { return grad_slice(p, grads_); }

Tensor ParamStore::grad_slice(ParamRef p, const Tensor& flat) const {
  require_grads("grad");
  const Entry& e = entries_.at(static_cast<size_t>(p.index));
  SAL_CHECK(e.grad_offset >= 0, "parameter '", e.name, "' is frozen and has no gradient");
  SAL_CHECK(flat.numel() == grad_count_, "grad_slice: ", flat.desc(), " is not aligned with the ", grad_count_,
            " gradient elements");
  return flat.slice0(e.grad_offset, e.shape.numel()).reshape(e.shape);
}

std::vector<std::string> ParamStore::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const Entry& e : entries_) out.push_back(e.name);
  return out;
}

void ParamStore::zero_grads() {
  require_finalized("zero_grads");
  if (grads_.defined()) grads_.zero();
}

void ParamStore::zero_grads(const Ctx& ctx) {
  require_finalized("zero_grads");
  if (grads_.defined()) ctx.zero(grads_);
}

}  // namespace sal
