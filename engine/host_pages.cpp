#include "engine/host_pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include "engine/error.h"

namespace sal::host_pages {

size_t page_size() {
  static const size_t page = [] {
    const long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<size_t>(p) : size_t{4096};
  }();
  return page;
}

size_t round_up(size_t bytes) {
  const size_t page = page_size();
  return (bytes + page - 1) / page * page;
}

size_t reservation_for(size_t bytes) {
  static const size_t physical = [] {
    const long pages = sysconf(_SC_PHYS_PAGES);
    return pages > 0 ? static_cast<size_t>(pages) * page_size() : size_t{64} << 30;
  }();
  return round_up(std::max(bytes, physical));
}

void* reserve(size_t bytes) {
  SAL_CHECK(bytes > 0 && bytes % page_size() == 0, "host_pages::reserve: ", bytes, " bytes is not a whole number of ",
            page_size(), "-byte pages");
  void* p = mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

bool commit(void* p, size_t bytes) {
  SAL_CHECK(bytes % page_size() == 0, "host_pages::commit: ", bytes, " bytes is not a whole number of pages");
  return bytes == 0 || mprotect(p, bytes, PROT_READ | PROT_WRITE) == 0;
}

void release(void* p, size_t bytes) {
  // Fails only for a range that was never mapped, a bug in the caller; nothing to report it to from a destructor.
  if (p) munmap(p, bytes);
}

}  // namespace sal::host_pages
