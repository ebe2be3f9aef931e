// Ctx: where ops run. It names the device, the workspace arena that op outputs come from
// (or none: outputs are then owning tensors), and, for CUDA, the stream and library handles.
#pragma once
#include "engine/arena.h"

namespace sal {

struct Ctx {
  Device device = Device::CPU;
  Arena* arena = nullptr;   // op outputs and temporaries; null means owning allocations
  void* cuda = nullptr;     // the CUDA backend's state (stream, handles), owned by the backend

  Ctx() = default;
  explicit Ctx(Device d, Arena* a = nullptr) : device(d), arena(a) {
    SAL_CHECK(!a || a->device() == d, "Ctx: arena is on ", device_name(a->device()), ", context on ", device_name(d));
  }

  // An uninitialised tensor on this context's device.
  Tensor alloc(const Shape& shape, DType dtype) const {
    return arena ? arena->alloc(shape, dtype) : Tensor::empty(shape, dtype, device);
  }
  Tensor alloc_zeros(const Shape& shape, DType dtype) const {
    Tensor t = alloc(shape, dtype);
    zero(t);
    return t;
  }
  // Zeroes t / copies src into dst (same shape and dtype), both on this context's device, queued on
  // its stream like any op (engine/context.cpp). Tensor::zero() and copy_from() use the legacy default
  // stream instead, which a CUDA graph capture cannot contain: code that runs inside a step uses these.
  void zero(Tensor& t) const;
  void copy(const Tensor& src, Tensor& dst) const;
};

}  // namespace sal
