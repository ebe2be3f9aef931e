// Scratch files for the file-format tests (test_image.cpp, test_tar.cpp, test_safetensors.cpp):
// a fresh temporary directory removed at scope exit, and whole-file byte reads and writes.
#pragma once
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

namespace sal::test {

// A fresh directory `<prefix><pid>_<n>` under the system temp dir, removed with everything in it
// at scope exit.
struct TempDir {
  std::filesystem::path dir;
  explicit TempDir(const std::string& prefix) {
    static std::atomic<int> counter{0};
    dir = std::filesystem::temp_directory_path() /
          (prefix + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (dir / name).string(); }
};

// Replaces the file at `path` with `size` bytes from `data`.
inline void write_file(const std::string& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  write_file(path, bytes.data(), bytes.size());
}

// The whole file (empty if it cannot be opened).
inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace sal::test
