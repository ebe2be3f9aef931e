// safetensors reader and writer.
//
// File layout (https://github.com/huggingface/safetensors):
//   [u64 little-endian N][N bytes of UTF-8 JSON header][byte buffer]
//   header: {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
//   offsets are byte offsets into the buffer, end exclusive; tensors are dense row-major, little-endian.
//
// SafeTensorsFile maps the whole file read-only (mmap, MAP_PRIVATE) and validates the header and every
// entry up front, so that after construction every name, shape and byte range can be trusted. Every error
// message starts with the file path and names the bad entry.
//
// SafeTensorsFile::from_bytes validates the same format held in memory (bytes received from elsewhere, the
// fuzz targets of tests/fuzz/); it owns the bytes, and its views point into them.
//
// write_safetensors writes CPU tensors atomically: a temporary file next to the target, fsync, rename, fsync of
// the directory. Readers of the target see either the old file or the complete new one, never a torn write.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace sal {

// One header entry, as validated.
struct SafeTensorInfo {
  std::string dtype;           // the file's dtype string: "F32", "BF16", "F16", "I64", ...
  std::vector<int64_t> shape;  // may have more dimensions than a sal::Shape holds; tensor() checks
  uint64_t begin = 0, end = 0;  // byte range [begin, end) relative to the start of the data buffer
  size_t elem_size = 0;        // bytes per element of dtype
  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
  std::string shape_str() const;  // "[2,64,1,1]"
};

// Bytes per element of a safetensors dtype string, 0 when the string is not a known dtype.
// Known: F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL F8_E4M3 F8_E5M2.
size_t safetensors_dtype_size(const std::string& dtype);
// The safetensors name of an engine dtype ("F32", "F64", "BF16", "I32").
const char* safetensors_dtype_name(DType dtype);

class SafeTensorsFile {
 public:
  // Headers larger than this are treated as corrupt (the format's own reference reader uses the same bound).
  static constexpr uint64_t kMaxHeaderBytes = 100u * 1000u * 1000u;

  // Opens, maps and validates the file; throws sal::Error on anything malformed.
  explicit SafeTensorsFile(const std::string& path);
  // Validates a file's bytes held in memory, taking ownership of them; `name` stands for the path in messages
  // and path(). Throws sal::Error on anything malformed, exactly as the constructor from a path does.
  static SafeTensorsFile from_bytes(std::vector<std::byte> bytes, const std::string& name);
  ~SafeTensorsFile();
  SafeTensorsFile(SafeTensorsFile&& other) noexcept;
  SafeTensorsFile& operator=(SafeTensorsFile&& other) noexcept;
  SafeTensorsFile(const SafeTensorsFile&) = delete;
  SafeTensorsFile& operator=(const SafeTensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensor names in the order the header lists them.
  const std::vector<std::string>& names() const { return names_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  size_t size() const { return names_.size(); }
  // Throws, naming the tensor, when it is absent.
  const SafeTensorInfo& info(const std::string& name) const;
  // The tensor's bytes as stored (any dtype), inside the mapping.
  std::span<const std::byte> raw_bytes(const std::string& name) const;

  // A CPU tensor for an F32, F64, BF16 or I32 entry.
  // Zero-copy: when the data is aligned for its type (always so for files written by write_safetensors) the
  // result is a non-owning view into the mapping (or into the bytes given to from_bytes). The view is valid only while this SafeTensorsFile is
  // alive, and it is read-only memory: writing through it faults. clone() it for a private, writable copy.
  // When the data is not aligned for its type the result is an owning copy (never an unaligned pointer).
  // Other dtypes throw; load F16 through load_f32().
  Tensor tensor(const std::string& name) const;
  // An owning F32 CPU tensor converted from F32, F64, F16 or BF16 (always a copy, independent of the file).
  Tensor load_f32(const std::string& name) const;

 private:
  SafeTensorsFile() = default;
  void parse_and_validate();
  const std::byte* data_of(const SafeTensorInfo& info) const { return buffer_ + info.begin; }

  std::string path_;
  void* map_ = nullptr;  // the file's bytes: the mapping, or owned_.data() for from_bytes
  size_t map_size_ = 0;
  const std::byte* buffer_ = nullptr;  // start of the data buffer inside the mapping
  uint64_t buffer_size_ = 0;
  std::vector<std::string> names_;
  std::vector<SafeTensorInfo> infos_;  // parallel to names_
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::vector<std::byte> owned_;  // from_bytes only (moving a vector keeps its data pointer)
};

// (name, tensor) pairs to write. Copying a Tensor shares its memory, so building this list copies no data.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes CPU tensors of dtype F32, F64, BF16 or I32 to path, atomically (see the top of this file).
// The header lists the tensors in the given order (SafeTensorsFile::names() returns that order). The data
// buffer is contiguous, as the format's reference reader requires, with the tensors laid out by element size,
// largest first (stable within a size): with the header padded with spaces to a multiple of 8 bytes every
// tensor then starts aligned for its type, so reading it back maps instead of copying.
// Throws, naming the tensor, for a CUDA tensor (copy it explicitly with to(Device::CPU)), an undefined tensor,
// an empty, duplicate or reserved ("__metadata__") name; and, naming the path with the errno text, when any
// file operation fails. On failure the temporary file is removed and an existing target is left untouched.
// Writing over a file that a SafeTensorsFile currently maps is safe (even from views into that mapping): the
// rename replaces the directory entry, and the open mapping keeps showing the old contents.
//
// Fault injection, for the fault tests only (tests/test_train_faults.cpp): when the environment variable
// SAL_FAULT_WRITE is "<path suffix>:<n>:<action>", the n-th call (1-based, counted per process) for a path
// ending in the suffix stops after the header and about half of the data have been flushed to the temporary
// file; action "kill" then raises SIGKILL (a kill -9 or a crash at that moment), "fail" makes the write fail
// as a full disk does (ENOSPC: the error above, the temporary removed, the target untouched).
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace sal
