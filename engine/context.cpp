#include "engine/context.h"

#include "engine/error.h"
#ifdef SAL_WITH_CUDA
#include "cuda/device.h"
#include "cuda/runtime.h"
#endif

#include <cstring>

namespace sal {

namespace {
#ifdef SAL_WITH_CUDA
void* stream_of(const Ctx& ctx) { return ctx.cuda ? static_cast<CudaDevice*>(ctx.cuda)->stream() : nullptr; }
#endif
}  // namespace

void Ctx::zero(Tensor& t) const {
  SAL_CHECK(t.device() == device, "Ctx::zero: ", t.desc(), " is not on this context's device (",
            device_name(device), ")");
  if (t.nbytes() == 0) return;
  if (device == Device::CPU) {
    std::memset(t.raw(), 0, t.nbytes());
    return;
  }
#ifdef SAL_WITH_CUDA
  cuda::memset_zero_async(t.raw(), t.nbytes(), stream_of(*this));
#endif
}

void Ctx::copy(const Tensor& src, Tensor& dst) const {
  SAL_CHECK(src.device() == device && dst.device() == device, "Ctx::copy: ", src.desc(), " into ", dst.desc(),
            " on a ", device_name(device), " context (between devices: upload or Tensor::to)");
  SAL_CHECK(src.shape() == dst.shape() && src.dtype() == dst.dtype(), "Ctx::copy: ", src.desc(), " into ",
            dst.desc());
  if (src.nbytes() == 0 || src.raw() == dst.raw()) return;
  if (device == Device::CPU) {
    std::memmove(dst.raw(), src.raw(), src.nbytes());
    return;
  }
#ifdef SAL_WITH_CUDA
  cuda::copy_device_async(dst.raw(), src.raw(), src.nbytes(), stream_of(*this));
#endif
}

}  // namespace sal
