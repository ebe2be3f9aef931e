// Per-op timing (engine/op_profile.h). CPU ops are timed as they return; a CUDA op leaves a pair of
// event indices that are read when a report is made (or when many are pending: then the pending ones are
// read and the event pool recycled, one wait every kMaxPending ops, so a long run stays bounded).
#include "engine/op_profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <utility>

#include "engine/error.h"
#ifdef SAL_WITH_CUDA
#include "cuda/device.h"
#include "cuda/timing_events.h"
#endif

namespace sal {

namespace detail {
std::atomic<int> g_op_profiling{-1};

bool read_op_profiling_env() {
  const char* e = std::getenv("SAL_PROFILE_OPS");
  int expected = -1;
  g_op_profiling.compare_exchange_strong(expected, (e && *e && std::strcmp(e, "0") != 0) ? 1 : 0);
  return g_op_profiling.load() == 1;
}
}  // namespace detail

namespace {

constexpr size_t kMaxPending = 20000;

struct Totals {
  int64_t calls = 0;
  double ms = 0;
};

struct Pending {
  const char* op;
  int start, stop;  // CUDA timing event indices
};

std::mutex g_mu;
std::map<std::pair<std::string, Device>, Totals>& totals() {
  static auto* t = new std::map<std::pair<std::string, Device>, Totals>();
  return *t;
}
std::vector<Pending>& pending() {
  static auto* p = new std::vector<Pending>();
  return *p;
}
thread_local int t_depth = 0;  // ops open on this thread (an op inside an op is not timed on its own)
#ifdef SAL_WITH_CUDA
int g_open_events = 0;  // CUDA ops open on any thread with a start event (guarded by g_mu)
#endif

// Reads every pending CUDA pair into the totals and recycles the events, unless an op on another thread
// still holds its start event (then the pool grows until a later read finds none open). Caller holds g_mu.
void resolve_pending_locked() {
#ifdef SAL_WITH_CUDA
  std::vector<Pending> todo;
  todo.swap(pending());  // taken first: a CUDA error part-way does not leave pairs to be read twice
  for (const Pending& p : todo) {
    Totals& t = totals()[{p.op, Device::CUDA}];
    ++t.calls;
    t.ms += cuda::timing_event_elapsed_ms(p.start, p.stop);
  }
  if (!todo.empty() && g_open_events == 0) cuda::timing_events_clear();
#endif
  pending().clear();
}

}  // namespace

void set_op_profiling(bool on) { detail::g_op_profiling.store(on ? 1 : 0); }

void OpScope::begin(const Ctx& ctx, const char* op) {
  if (t_depth > 0) {  // inside another op: its time is the outer op's
    ++t_depth;
    counted_ = true;
    return;
  }
#ifdef SAL_WITH_CUDA
  if (ctx.device == Device::CUDA) {
    // Recorded before anything is counted: if it throws, this scope never opened and the depth is right.
    void* stream = ctx.cuda ? static_cast<CudaDevice*>(ctx.cuda)->stream() : nullptr;
    std::lock_guard<std::mutex> lock(g_mu);  // with the count, so a read never recycles this event
    start_event_ = cuda::timing_event_record(stream);
    if (start_event_ >= 0) ++g_open_events;
    stream_ = stream;
  }
#endif
  op_ = op;
  device_ = ctx.device;
  active_ = true;
  counted_ = true;
  ++t_depth;
  if (device_ == Device::CPU) t0_ = std::chrono::steady_clock::now();
}

void OpScope::end() noexcept {
  --t_depth;
  if (!active_) return;
  // A destructor must not throw (it may run while an op's error unwinds the stack): a failure here drops
  // this op's sample. A CUDA error met here (an earlier launch's, which the runtime keeps reporting) is
  // raised by the next checked CUDA call.
  try {
    if (device_ == Device::CPU) {
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
      std::lock_guard<std::mutex> lock(g_mu);
      Totals& t = totals()[{op_, Device::CPU}];
      ++t.calls;
      t.ms += ms;
      return;
    }
#ifdef SAL_WITH_CUDA
    if (start_event_ < 0) return;  // the stream was capturing a graph
    std::lock_guard<std::mutex> lock(g_mu);
    --g_open_events;
    const int stop = cuda::timing_event_record(stream_);
    if (stop >= 0) pending().push_back(Pending{op_, start_event_, stop});
    if (pending().size() >= kMaxPending) resolve_pending_locked();
#endif
  } catch (...) {
  }
}

std::vector<OpTime> op_profile() {
  std::lock_guard<std::mutex> lock(g_mu);
  resolve_pending_locked();
  std::vector<OpTime> out;
  for (const auto& [key, t] : totals()) out.push_back(OpTime{key.first, key.second, t.calls, t.ms});
  std::sort(out.begin(), out.end(), [](const OpTime& a, const OpTime& b) { return a.total_ms > b.total_ms; });
  return out;
}

void reset_op_profile() {
  std::lock_guard<std::mutex> lock(g_mu);
  resolve_pending_locked();
  totals().clear();
}

std::string op_profile_table() {
  const std::vector<OpTime> rows = op_profile();
  double sum = 0;
  for (const OpTime& r : rows) sum += r.total_ms;
  std::ostringstream s;
  char line[256];
  std::snprintf(line, sizeof line, "%-36s %-5s %10s %12s %11s %7s\n", "op", "dev", "calls", "total ms", "mean us",
                "share");
  s << line;
  for (const OpTime& r : rows) {
    std::snprintf(line, sizeof line, "%-36s %-5s %10lld %12.3f %11.2f %6.1f%%\n", r.op.c_str(), device_name(r.device),
                  static_cast<long long>(r.calls), r.total_ms, r.calls ? 1e3 * r.total_ms / static_cast<double>(r.calls) : 0.0,
                  sum > 0 ? 100.0 * r.total_ms / sum : 0.0);
    s << line;
  }
  std::snprintf(line, sizeof line, "%-36s %-5s %10s %12.3f\n", "(all ops)", "", "", sum);
  s << line;
  return s.str();
}

void print_op_profile_if_enabled() {
  if (!op_profiling()) return;
  std::fprintf(stderr, "op profile (SAL_PROFILE_OPS; eager work only, graph replays are not ops):\n%s",
               op_profile_table().c_str());
}

}  // namespace sal
