// Flat parameter store: every parameter of a model is a named slice of one flat buffer, and
// every trainable parameter's gradient the same slice of one flat gradient buffer. Optimizers,
// gradient all-reduce and checkpoints work on the flat buffers; layers see tensor views.
// Names follow the source checkpoints (torchvision's `layer1.0.conv1.weight`).
//
// Use: add() every parameter, then finalize(device) once; views are valid from then on.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/context.h"
#include "engine/tensor.h"

namespace sal {

struct ParamRef {
  int index = -1;
  bool valid() const { return index >= 0; }
};

class ParamStore {
 public:
  // trainable=false: no gradient slice (frozen weights, batchnorm running statistics).
  ParamRef add(const std::string& name, const Shape& shape, bool trainable = true);
  // Allocates the flat buffers, zeroed. with_grads=false leaves the gradient buffer out (a model
  // loaded for inference: no memory for gradients it never has); flat_grads(), grad() and the
  // optimizers then refuse, naming the reason. The value layout is the same either way.
  void finalize(Device device, DType dtype = DType::F32, bool with_grads = true);
  bool finalized() const { return finalized_; }
  bool has_grads() const { return grads_.defined(); }

  Tensor value(ParamRef p) const;
  Tensor grad(ParamRef p) const;  // throws for a frozen parameter
  // p's slice, shaped like p, of a flat buffer aligned with flat_grads() (an optimizer's moments; grad(p)
  // is grad_slice(p, flat_grads())). Throws for a frozen parameter or a buffer of another size.
  Tensor grad_slice(ParamRef p, const Tensor& flat) const;
  Tensor value(const std::string& name) const { return value(find(name)); }
  ParamRef find(const std::string& name) const;  // throws with the name when absent
  bool contains(const std::string& name) const { return index_.count(name) != 0; }

  const std::string& name(ParamRef p) const { return entries_.at(static_cast<size_t>(p.index)).name; }
  const Shape& shape(ParamRef p) const { return entries_.at(static_cast<size_t>(p.index)).shape; }
  bool trainable(ParamRef p) const { return entries_.at(static_cast<size_t>(p.index)).grad_offset >= 0; }
  int size() const { return static_cast<int>(entries_.size()); }
  std::vector<std::string> names() const;

  Tensor flat_values() const { return values_; }
  // The trainable parameters: the first num_trainable() values, aligned with flat_grads().
  Tensor flat_trainable_values() const { return values_.slice0(0, num_trainable()); }
  // The frozen values (batch-norm running statistics, frozen weights): the rest, after the trainable ones.
  Tensor flat_frozen_values() const { return values_.slice0(num_trainable(), num_values() - num_trainable()); }
  Tensor flat_grads() const;  // one slice per trainable parameter, in add() order (undefined: none)
  int64_t num_values() const { return values_.numel(); }
  int64_t num_trainable() const { return finalized_ ? grad_count_ : 0; }
  void zero_grads();
  void zero_grads(const Ctx& ctx);  // queued on ctx's stream (inside a captured step)

 private:
  struct Entry {
    std::string name;
    Shape shape;
    int64_t offset = 0;        // elements into values_ (set by finalize)
    int64_t grad_offset = -1;  // elements into grads_ (== offset), -1 when frozen
  };
  void require_finalized(const char* what) const;
  void require_grads(const char* what) const;

  std::vector<Entry> entries_;
  std::unordered_map<std::string, int> index_;
  int64_t value_count_ = 0, grad_count_ = 0;
  bool finalized_ = false;
  Tensor values_, grads_;
};

}  // namespace sal
