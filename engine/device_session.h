// The compute device a tool was asked for (--device cpu | cuda): a Ctx on the CPU, or on a CUDA
// device's own stream (device 0 unless told otherwise) with its library handles. Tools, layers and models are the same code on either; the
// only difference a tool sees is that host data (decoded images, labels) must be uploaded.
#pragma once
#include <memory>
#include <string>

#include "engine/arena.h"
#include "engine/context.h"

namespace sal {

class CudaDevice;

class DeviceSession {
 public:
  // "cpu" or "cuda". Throws sal::Error naming `option` (e.g. "--device") when the name is unknown, the
  // build has no CUDA, or the driver reports no device: never a silent fallback to the CPU.
  // `ordinal`: the CUDA device (a data-parallel rank's LOCAL_RANK); ignored on the CPU.
  explicit DeviceSession(const std::string& name, const std::string& option = "--device", int ordinal = 0);
  DeviceSession(const DeviceSession&) = delete;
  DeviceSession& operator=(const DeviceSession&) = delete;

  Device device() const { return device_; }
  // A context on this device with outputs from `arena` (which must be on the same device).
  Ctx ctx(Arena& arena) const;
  // One line for logs: "cpu", or "cuda:0 NVIDIA H200 (convolutions: backend auto, math tf32)" with the
  // process-wide settings of cuda/conv_backend.h (SAL_CONV_BACKEND, SAL_CONV_MATH).
  std::string describe() const;
  // Waits for the device's work (CUDA: its stream); a no-op on the CPU.
  void synchronize() const;

 private:
  Device device_ = Device::CPU;
  std::shared_ptr<CudaDevice> cuda_;  // shared_ptr: deletable where CudaDevice is incomplete (no-CUDA builds)
};

// A host tensor (decoded images, labels) on ctx's device: the tensor itself on the CPU, else a copy in
// ctx's arena (an explicit upload; the arena is reused every step, so nothing is allocated per call).
// On a CudaDevice's context the copy goes through its pinned staging memory and is queued on its
// stream (the host tensor may be reused at once); a CUDA context without a device copies synchronously.
Tensor upload(const Ctx& ctx, const Tensor& host);
// The same into an existing tensor on ctx's device (a fixed input buffer, e.g. of a StepGraph step).
void upload_into(const Ctx& ctx, Tensor& dst, const Tensor& host);

}  // namespace sal
