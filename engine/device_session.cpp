#include "engine/device_session.h"

#include "engine/error.h"
#include "engine/host_io_guard.h"
#ifdef SAL_WITH_CUDA
#include "cuda/conv_backend.h"
#include "cuda/device.h"
#endif

namespace sal {

DeviceSession::DeviceSession(const std::string& name, const std::string& option, int ordinal) {
  SAL_CHECK(name == "cpu" || name == "cuda", option, " '", name, "': expected cpu or cuda");
  if (name == "cpu") return;
#ifdef SAL_WITH_CUDA
  SAL_CHECK(cuda_available(), option, " cuda: no CUDA device (the driver reports none)");
  device_ = Device::CUDA;
  cuda_ = std::make_shared<CudaDevice>(ordinal);
#else
  (void)ordinal;
  fail(option, " cuda: this program was built without CUDA");
#endif
}

Ctx DeviceSession::ctx(Arena& arena) const {
#ifdef SAL_WITH_CUDA
  if (cuda_) return cuda_->ctx(&arena);
#endif
  return Ctx(Device::CPU, &arena);
}

std::string DeviceSession::describe() const {
#ifdef SAL_WITH_CUDA
  if (cuda_)
    return "cuda:" + std::to_string(cuda_->ordinal()) + " " + cuda_->name() + " (convolutions: backend " +
           cuda::conv_backend_name(cuda::conv_backend()) + ", math " + cuda::conv_math_name(cuda::conv_math()) + ")";
#endif
  return "cpu";
}

void DeviceSession::synchronize() const {
#ifdef SAL_WITH_CUDA
  if (cuda_) cuda_->synchronize();
#endif
}

Tensor upload(const Ctx& ctx, const Tensor& host) {
  check_no_host_io("upload");
  if (ctx.device == host.device()) return host;
  Tensor t = ctx.alloc(host.shape(), host.dtype());
  upload_into(ctx, t, host);
  return t;
}

void upload_into(const Ctx& ctx, Tensor& dst, const Tensor& host) {
  check_no_host_io("upload_into");
  SAL_CHECK(host.device() == Device::CPU && dst.device() == ctx.device, "upload_into: ", host.desc(), " into ",
            dst.desc(), " on a ", ctx.device == Device::CPU ? "CPU" : "CUDA", " context");
  SAL_CHECK(host.shape() == dst.shape() && host.dtype() == dst.dtype(), "upload_into: ", host.desc(), " into ",
            dst.desc());
#ifdef SAL_WITH_CUDA
  if (ctx.device == Device::CUDA && ctx.cuda) {
    static_cast<CudaDevice*>(ctx.cuda)->upload(dst.raw(), host.raw(), host.nbytes());
    return;
  }
#endif
  dst.copy_from(host);
}

}  // namespace sal
