// A CUDA build opens cuBLAS on first use (cuda/cublas_gemm.cpp) instead of linking it, so a process
// that never runs a CUDA GEMM (every CPU run) skips its start-up cost. Needs no GPU: dlopen and dlsym
// of the library work on any machine that has it.
#include <doctest/doctest.h>

#ifdef SAL_WITH_CUDA
#include <link.h>

#include <cstring>
#include <string>

#include "cuda/cublas_gemm.h"

namespace {

bool cublas_mapped() {
  bool found = false;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        if (info->dlpi_name && std::strstr(info->dlpi_name, "libcublas")) *static_cast<bool*>(data) = true;
        return 0;
      },
      &found);
  return found;
}

// Taken during static initialisation, before any test can have run a GEMM: a linked cuBLAS (and its
// libcublasLt) would already be mapped here.
const bool cublas_mapped_at_start = cublas_mapped();

}  // namespace

TEST_CASE("cuBLAS is not loaded at start-up, and opening it resolves every entry point used") {
  CHECK_FALSE(cublas_mapped_at_start);
  const std::string path = sal::cuda::cublas_library_path();
  MESSAGE("cuBLAS opened from ", path);
  CHECK(path.find("libcublas.so.") != std::string::npos);
  CHECK(cublas_mapped());
  CHECK(sal::cuda::cublas_library_path() == path);  // opened once per process
}
#endif
