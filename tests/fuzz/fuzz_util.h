// Shared by the libFuzzer targets in tests/fuzz/ (built by scripts/sanitize.sh with clang and
// -fsanitize=fuzzer,address,undefined; see docs/reliability.md).
//
// The contract every target checks: a reader given any bytes either succeeds or throws sal::Error (whose
// message names the input). Everything else is a finding that libFuzzer reports: a crash, an ASan or UBSan
// report, a leak, an allocation over -malloc_limit_mb, or any other exception escaping (std::terminate).
//
// Readers that take a path (the tar reader, the shard reader, the masker loader) get the input as an
// anonymous in-memory file (memfd) named /proc/self/fd/N, so no disk I/O and no temporary files are involved.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "engine/error.h"

namespace sal::fuzz {

// The bytes as an anonymous file; path() is valid while this object lives.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = ::memfd_create("fuzz_input", MFD_CLOEXEC);
    if (fd_ < 0) std::abort();
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Runs fn; a sal::Error is the reader's documented way to reject bad input and is swallowed (after
// checking that it has a message); anything else propagates to libFuzzer.
template <class Fn>
void expect_ok_or_error(Fn&& fn) {
  try {
    fn();
  } catch (const sal::Error& e) {
    if (e.what()[0] == '\0') std::abort();  // an error must say what is wrong
  }
}

}  // namespace sal::fuzz
