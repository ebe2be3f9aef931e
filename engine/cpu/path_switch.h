// CPU backend: a process-wide on/off switch for one optional code path (the direct 3x3 kernel, Winograd),
// so that tests and benchmarks can compare a path with the one it replaces.
#pragma once
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace sal::cpu {

// On by default; off when the environment variable env_var is "0" at the first use (the switch is a
// function-local static of its path), or by set(). Not to be flipped while a convolution runs.
class PathSwitch {
 public:
  explicit PathSwitch(const char* env_var) : flag_(!is_zero(std::getenv(env_var))) {}
  bool on() const { return flag_.load(); }
  void set(bool on) { flag_.store(on); }

 private:
  static bool is_zero(const char* v) { return v && std::strcmp(v, "0") == 0; }
  std::atomic<bool> flag_;
};

// Sets a path's switch (through its Get and Set functions) for a scope and restores the previous setting at
// the scope's end.
template <bool (*Get)(), void (*Set)(bool)>
class ScopedPathSwitch {
 public:
  explicit ScopedPathSwitch(bool on) : was_(Get()) { Set(on); }
  ~ScopedPathSwitch() { Set(was_); }
  ScopedPathSwitch(const ScopedPathSwitch&) = delete;
  ScopedPathSwitch& operator=(const ScopedPathSwitch&) = delete;

 private:
  bool was_;
};

}  // namespace sal::cpu
