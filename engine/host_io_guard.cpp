#include "engine/host_io_guard.h"

#include "engine/error.h"

namespace sal {

namespace {
thread_local const char* g_owner = nullptr;  // the innermost guard's owner; null when none
}

HostIoGuard::HostIoGuard(const char* owner) : previous_(g_owner) { g_owner = owner; }

HostIoGuard::~HostIoGuard() { g_owner = previous_; }

bool host_io_guarded() { return g_owner != nullptr; }

void check_no_host_io(const char* what) {
  if (g_owner)
    fail(what, " inside ", g_owner, ": a captured step may not copy between host and device or read values back "
         "(upload its inputs into fixed buffers before the step, read its outputs after it)");
}

}  // namespace sal
