// The contract of a StepGraph step (engine/step_graph.h), checked on every device: inside the step
// nothing moves between host and device memory and nothing is read back, because a CUDA graph
// captures device work only (a read-back inside a capture is an error, and one that slipped through
// would replay stale host values). While a HostIoGuard lives on a thread, the calls that do host I/O
// (Tensor::values() / item(), Tensor::to(Device), copy_from between devices, upload / upload_into)
// throw an error naming the call and the guard's owner; so do Tensor::zero() and same-device copy_from,
// which run on the legacy default stream (not capturable; Ctx::zero and Ctx::copy are). On the CPU the same calls are harmless, but
// the guard refuses them too: a CPU run of a step proves the CUDA run of the same code is capturable.
#pragma once

namespace sal {

class HostIoGuard {
 public:
  explicit HostIoGuard(const char* owner);  // e.g. "StepGraph (sal_train's training step)"
  ~HostIoGuard();
  HostIoGuard(const HostIoGuard&) = delete;
  HostIoGuard& operator=(const HostIoGuard&) = delete;

 private:
  const char* previous_;
};

// Throws sal::Error "<what> inside <owner>: ..." when a guard is active on this thread.
void check_no_host_io(const char* what);
bool host_io_guarded();

}  // namespace sal
