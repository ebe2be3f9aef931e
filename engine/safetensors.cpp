// safetensors reader (mmap + full header validation) and atomic writer; the format is described in
// engine/safetensors.h.
//
// Why it is written this way:
// - The reader maps the file instead of reading it: weights are used in place (zero-copy views) and pages
//   that are never touched are never read. Every header field is checked once, in the constructor, so the
//   accessors can index the mapping without further checks; byte ranges are checked against the buffer and
//   against each other (no overlaps) before any pointer into the mapping is formed.
// - The header is parsed with nlohmann::ordered_json so names() keeps the file's order; a parser callback
//   catches duplicate top-level keys, which plain parsing would silently merge.
// - Typed views are only made at addresses aligned for the type; misaligned data (legal in the format, e.g.
//   a header length that is not a multiple of 8) is copied into aligned owning memory instead.
// - The writer lays the data out by element size, largest first, and pads the header to a multiple of 8 so
//   every tensor it writes is aligned; the buffer has no holes, as the reference reader demands.
#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "engine/cpu/dispatch.h"  // SAL_OMP_MIN_WORK

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; this reader/writer maps it as native memory");

namespace sal {

namespace {

using ojson = nlohmann::ordered_json;

struct DTypeEntry {
  const char* name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2},    {"I64", 8},     {"I32", 4},     {"I16", 2}, {"I8", 1},
    {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1},      {"BOOL", 1},    {"F8_E4M3", 1}, {"F8_E5M2", 1},
};

bool engine_dtype(const std::string& s, DType* out) {
  if (s == "F32") *out = DType::F32;
  else if (s == "F64") *out = DType::F64;
  else if (s == "BF16") *out = DType::BF16;
  else if (s == "I32") *out = DType::I32;
  else return false;
  return true;
}

std::string errno_text(int err) { return std::strerror(err); }

// IEEE binary16 -> binary32, exact for every input (normals, subnormals, infinities, NaN payloads).
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    float v = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal: mant * 2^-24
    return sign ? -v : v;
  }
  uint32_t u = exp == 0x1f ? (sign | 0x7f800000u | (mant << 13)) : (sign | ((exp + 112u) << 23) | (mant << 13));
  return std::bit_cast<float>(u);
}

// Converts n elements starting at src (any alignment) into out. Elements are read with memcpy, which the
// compiler turns into plain loads, so misaligned sources are fine.
template <class Src, class Fn>
void convert(const std::byte* src, float* out, int64_t n, Fn fn) {
#pragma omp parallel for if (n > SAL_OMP_MIN_WORK) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    Src v;
    std::memcpy(&v, src + static_cast<size_t>(i) * sizeof(Src), sizeof(Src));
    out[i] = fn(v);
  }
}

Shape engine_shape(const std::string& path, const std::string& name, const SafeTensorInfo& in) {
  SAL_CHECK(in.shape.size() <= static_cast<size_t>(kMaxDims), path, ": tensor '", name, "' has ", in.shape.size(),
            " dimensions ", in.shape_str(), "; the engine's tensors hold at most ", kMaxDims);
  return Shape::from_range(in.shape.begin(), in.shape.end());
}

// SAL_FAULT_WRITE (see write_safetensors in the header): the action to inject into this write of `path`,
// "" for none. Malformed settings are errors, so a test cannot silently inject nothing.
std::string fault_for_write(const std::string& path) {
  const char* env = std::getenv("SAL_FAULT_WRITE");
  if (!env || !*env) return "";
  const std::string spec = env;
  const size_t c2 = spec.rfind(':');
  const size_t c1 = c2 == std::string::npos || c2 == 0 ? std::string::npos : spec.rfind(':', c2 - 1);
  SAL_CHECK(c1 != std::string::npos, "SAL_FAULT_WRITE='", spec, "': expected <path suffix>:<n>:<kill|fail>");
  const std::string suffix = spec.substr(0, c1), action = spec.substr(c2 + 1);
  const long n = std::strtol(spec.c_str() + c1 + 1, nullptr, 10);
  SAL_CHECK(n > 0 && (action == "kill" || action == "fail"), "SAL_FAULT_WRITE='", spec,
            "': expected <path suffix>:<n>:<kill|fail> with n >= 1");
  if (path.size() < suffix.size() || path.compare(path.size() - suffix.size(), suffix.size(), suffix) != 0) return "";
  static std::atomic<long> calls{0};
  return ++calls == n ? action : "";
}

}  // namespace

// ---------------------------------------------------------------- info helpers

int64_t SafeTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string SafeTensorInfo::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

size_t safetensors_dtype_size(const std::string& dtype) {
  for (const DTypeEntry& e : kDTypes)
    if (dtype == e.name) return e.size;
  return 0;
}

const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
  }
  return "?";
}

// ---------------------------------------------------------------- reader

SafeTensorsFile::SafeTensorsFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SAL_CHECK(fd >= 0, path, ": cannot open: ", errno_text(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail(path, ": cannot stat: ", errno_text(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, ": not a regular file");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    fail(path, ": file is ", file_size, " bytes, shorter than the 8-byte header length field (not a safetensors file)");
  }
  void* m = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_err = errno;
  ::close(fd);  // the mapping keeps the file referenced
  SAL_CHECK(m != MAP_FAILED, path, ": cannot map ", file_size, " bytes: ", errno_text(map_err));
  map_ = m;
  map_size_ = file_size;
  try {
    parse_and_validate();
  } catch (...) {
    ::munmap(map_, map_size_);
    map_ = nullptr;
    throw;
  }
}

SafeTensorsFile SafeTensorsFile::from_bytes(std::vector<std::byte> bytes, const std::string& name) {
  SafeTensorsFile f;
  f.path_ = name;
  SAL_CHECK(bytes.size() >= 8, name, ": file is ", bytes.size(),
            " bytes, shorter than the 8-byte header length field (not a safetensors file)");
  f.owned_ = std::move(bytes);
  f.map_size_ = f.owned_.size();
  f.buffer_ = nullptr;
  f.map_ = f.owned_.data();
  try {
    f.parse_and_validate();
  } catch (...) {
    f.map_ = nullptr;  // nothing to unmap
    throw;
  }
  return f;
}

SafeTensorsFile::~SafeTensorsFile() {
  if (map_ && owned_.empty()) ::munmap(map_, map_size_);
}

SafeTensorsFile::SafeTensorsFile(SafeTensorsFile&& o) noexcept
    : path_(std::move(o.path_)),
      map_(std::exchange(o.map_, nullptr)),
      map_size_(std::exchange(o.map_size_, 0)),
      buffer_(std::exchange(o.buffer_, nullptr)),
      buffer_size_(std::exchange(o.buffer_size_, 0)),
      names_(std::move(o.names_)),
      infos_(std::move(o.infos_)),
      index_(std::move(o.index_)),
      metadata_(std::move(o.metadata_)),
      owned_(std::move(o.owned_)) {}

SafeTensorsFile& SafeTensorsFile::operator=(SafeTensorsFile&& o) noexcept {
  if (this != &o) {
    if (map_ && owned_.empty()) ::munmap(map_, map_size_);
    path_ = std::move(o.path_);
    map_ = std::exchange(o.map_, nullptr);
    map_size_ = std::exchange(o.map_size_, 0);
    buffer_ = std::exchange(o.buffer_, nullptr);
    buffer_size_ = std::exchange(o.buffer_size_, 0);
    names_ = std::move(o.names_);
    infos_ = std::move(o.infos_);
    index_ = std::move(o.index_);
    metadata_ = std::move(o.metadata_);
    owned_ = std::move(o.owned_);
  }
  return *this;
}

void SafeTensorsFile::parse_and_validate() {
  const std::byte* base = static_cast<const std::byte*>(map_);
  uint64_t header_len = 0;
  std::memcpy(&header_len, base, 8);
  const uint64_t after_len = map_size_ - 8;
  SAL_CHECK(header_len <= kMaxHeaderBytes, path_, ": header length ", header_len, " exceeds the ", kMaxHeaderBytes,
            "-byte limit (corrupt file, or not a safetensors file)");
  SAL_CHECK(header_len <= after_len, path_, ": header length ", header_len, " is larger than the file (", after_len,
            " bytes follow the length field)");
  buffer_ = base + 8 + header_len;
  buffer_size_ = after_len - header_len;

  // Parse, noting top-level keys seen twice (plain parsing would keep only one of them).
  const char* hbegin = reinterpret_cast<const char*>(base + 8);
  std::unordered_set<std::string> keys;
  std::string duplicate;
  ojson::parser_callback_t cb = [&](int depth, ojson::parse_event_t event, ojson& parsed) {
    if (depth == 1 && event == ojson::parse_event_t::key && parsed.is_string()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!keys.insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  ojson header;
  try {
    header = ojson::parse(hbegin, hbegin + header_len, cb);
  } catch (const ojson::exception& e) {
    fail(path_, ": header is not valid JSON: ", e.what());
  }
  SAL_CHECK(header.is_object(), path_, ": header is not a JSON object (it is ", header.type_name(), ")");
  SAL_CHECK(duplicate.empty(), path_, ": header names '", duplicate, "' twice");

  struct Range {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const ojson& v = it.value();
    if (name == "__metadata__") {
      SAL_CHECK(v.is_object(), path_, ": '__metadata__' must be an object of string values, got ", v.type_name());
      for (auto m = v.begin(); m != v.end(); ++m) {
        SAL_CHECK(m.value().is_string(), path_, ": '__metadata__' value for key '", m.key(),
                  "' must be a string, got ", m.value().type_name());
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = cat(path_, ": tensor '", name, "': ");
    SAL_CHECK(v.is_object(), where, "entry must be an object with dtype, shape and data_offsets, got ",
              v.type_name());
    for (const char* field : {"dtype", "shape", "data_offsets"})
      SAL_CHECK(v.contains(field), where, "missing '", field, "'");

    SafeTensorInfo in;
    const ojson& dt = v["dtype"];
    SAL_CHECK(dt.is_string(), where, "'dtype' must be a string, got ", dt.type_name());
    in.dtype = dt.get<std::string>();
    in.elem_size = safetensors_dtype_size(in.dtype);
    SAL_CHECK(in.elem_size != 0, where, "unknown dtype '", in.dtype,
              "' (expected one of F64 F32 F16 BF16 I64 I32 I16 I8 U64 U32 U16 U8 BOOL F8_E4M3 F8_E5M2)");

    const ojson& sh = v["shape"];
    SAL_CHECK(sh.is_array(), where, "'shape' must be an array of non-negative integers, got ", sh.type_name());
    uint64_t numel = 1;
    bool overflow = false;
    for (size_t d = 0; d < sh.size(); ++d) {
      const ojson& e = sh[d];
      SAL_CHECK(e.is_number_unsigned() &&
                    e.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                where, "shape extent ", d, " is ", e.dump(), "; expected a non-negative integer");
      const uint64_t x = e.get<uint64_t>();
      in.shape.push_back(static_cast<int64_t>(x));
      overflow = overflow || __builtin_mul_overflow(numel, x, &numel);
    }

    const ojson& off = v["data_offsets"];
    SAL_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(), where,
              "'data_offsets' must be [begin, end] with non-negative integers, got ", off.dump());
    in.begin = off[0].get<uint64_t>();
    in.end = off[1].get<uint64_t>();
    SAL_CHECK(in.begin <= in.end, where, "data_offsets [", in.begin, ", ", in.end, "] have begin > end");
    SAL_CHECK(in.end <= buffer_size_, where, "data_offsets end ", in.end, " is beyond the data buffer (",
              buffer_size_, " bytes)");
    uint64_t want = 0;
    overflow = overflow || __builtin_mul_overflow(numel, static_cast<uint64_t>(in.elem_size), &want);
    SAL_CHECK(!overflow && want == in.end - in.begin, where, "holds ", in.end - in.begin, " bytes, but shape ",
              in.shape_str(), " of ", in.dtype, " needs ", overflow ? std::string("more than 2^64") : cat(want));

    if (in.end > in.begin) ranges.push_back({in.begin, in.end, infos_.size()});
    index_[name] = infos_.size();
    names_.push_back(name);
    infos_.push_back(std::move(in));
  }

  // No two non-empty byte ranges may share a byte: sort by begin and compare with the furthest end so far.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1, far = 0; i < ranges.size(); ++i) {
    const Range& r = ranges[i];
    const Range& f = ranges[far];
    SAL_CHECK(r.begin >= f.end, path_, ": tensor '", names_[r.index], "' bytes [", r.begin, ", ", r.end,
              ") overlap tensor '", names_[f.index], "' bytes [", f.begin, ", ", f.end, ")");
    if (r.end > f.end) far = i;
  }
}

const SafeTensorInfo& SafeTensorsFile::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    std::string some;
    for (size_t i = 0; i < names_.size() && i < 8; ++i) some += (i ? ", '" : "'") + names_[i] + "'";
    if (names_.size() > 8) some += cat(", ... (", names_.size(), " in all)");
    fail(path_, ": no tensor '", name, "' in the file (it holds ", names_.empty() ? std::string("no tensors") : some,
         ")");
  }
  return infos_[it->second];
}

std::span<const std::byte> SafeTensorsFile::raw_bytes(const std::string& name) const {
  const SafeTensorInfo& in = info(name);
  return {data_of(in), static_cast<size_t>(in.nbytes())};
}

Tensor SafeTensorsFile::tensor(const std::string& name) const {
  const SafeTensorInfo& in = info(name);
  DType dt;
  SAL_CHECK(engine_dtype(in.dtype, &dt), path_, ": tensor '", name, "' is ", in.dtype,
            "; tensor() gives F32, F64, BF16 or I32 (load_f32() converts F16, BF16 and F64 to F32)");
  const Shape shape = engine_shape(path_, name, in);
  const std::byte* p = data_of(in);
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(dt) == 0)
    return Tensor::view(const_cast<std::byte*>(p), shape, dt, Device::CPU);  // read-only mapping, see the header
  Tensor t = Tensor::empty(shape, dt, Device::CPU);
  if (in.nbytes()) std::memcpy(t.raw(), p, static_cast<size_t>(in.nbytes()));
  return t;
}

Tensor SafeTensorsFile::load_f32(const std::string& name) const {
  const SafeTensorInfo& in = info(name);
  const Shape shape = engine_shape(path_, name, in);
  Tensor t = Tensor::empty(shape, DType::F32, Device::CPU);
  float* out = t.data<float>();
  const std::byte* p = data_of(in);
  const int64_t n = in.numel();
  if (in.dtype == "F32") {
    if (n) std::memcpy(out, p, static_cast<size_t>(in.nbytes()));
  } else if (in.dtype == "F64") {
    convert<double>(p, out, n, [](double v) { return static_cast<float>(v); });
  } else if (in.dtype == "BF16") {
    convert<uint16_t>(p, out, n, [](uint16_t v) { return std::bit_cast<float>(static_cast<uint32_t>(v) << 16); });
  } else if (in.dtype == "F16") {
    convert<uint16_t>(p, out, n, half_to_float);
  } else {
    fail(path_, ": tensor '", name, "' is ", in.dtype, "; load_f32() converts F32, F64, F16 and BF16 only");
  }
  return t;
}

// ---------------------------------------------------------------- writer

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::unordered_set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    SAL_CHECK(!name.empty(), path, ": empty tensor name");
    SAL_CHECK(name != "__metadata__", path, ": tensor name '__metadata__' is reserved for the metadata");
    SAL_CHECK(seen.insert(name).second, path, ": duplicate tensor name '", name, "'");
    SAL_CHECK(t.defined(), path, ": tensor '", name, "' is undefined");
    SAL_CHECK(!t.on_cuda(), path, ": tensor '", name, "' (", t.desc(),
              ") is on CUDA; copy it to the CPU explicitly with to(Device::CPU)");
  }

  // Data layout: largest element size first (stable), contiguous, so every tensor is aligned for its type.
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].second.dtype()) > dtype_size(tensors[b].second.dtype());
  });
  std::vector<uint64_t> begin(tensors.size());
  uint64_t cursor = 0;
  for (size_t i : order) {
    begin[i] = cursor;
    cursor += tensors[i].second.nbytes();
  }

  ojson header = ojson::object();
  if (!metadata.empty()) {
    ojson m = ojson::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i].second;
    ojson shape = ojson::array();
    for (int d = 0; d < t.ndim(); ++d) shape.push_back(t.dim(d));
    ojson e = ojson::object();
    e["dtype"] = safetensors_dtype_name(t.dtype());
    e["shape"] = std::move(shape);
    e["data_offsets"] = ojson::array({begin[i], begin[i] + t.nbytes()});
    header[tensors[i].first] = std::move(e);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const ojson::exception& e) {
    fail(path, ": tensor names and metadata must be valid UTF-8: ", e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t header_len = text.size();

  // Write to a temporary file beside the target, make it durable, then rename it over the target.
  const std::string tmp = cat(path, ".tmp.", ::getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  SAL_CHECK(f, path, ": cannot create temporary file '", tmp, "': ", errno_text(errno));
  auto abandon = [&](const char* what, int err) {
    if (f) std::fclose(f);
    std::remove(tmp.c_str());
    fail(path, ": ", what, " failed: ", errno_text(err), " (nothing written; the target is untouched)");
  };
  auto put = [&](const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f) != n) abandon("writing", errno);
  };
  const std::string fault = fault_for_write(path);
  put(&header_len, 8);
  put(text.data(), text.size());
  for (size_t k = 0; k < order.size(); ++k) {
    if (!fault.empty() && k == order.size() / 2) {  // injected fault: halfway through the data
      std::fflush(f);
      if (fault == "kill") std::raise(SIGKILL);
      abandon("writing", ENOSPC);
    }
    put(tensors[order[k]].second.raw(), tensors[order[k]].second.nbytes());
  }
  if (std::fflush(f) != 0) abandon("writing", errno);
  if (::fsync(::fileno(f)) != 0) abandon("fsync", errno);
  int rc = std::fclose(f);
  f = nullptr;
  if (rc != 0) abandon("closing", errno);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    abandon(cat("renaming '", tmp, "' over it").c_str(), err);
  }

  // Make the rename itself durable.
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  SAL_CHECK(dfd >= 0, path, ": written, but opening its directory to sync it failed: ", errno_text(errno));
  int sync_rc = ::fsync(dfd);
  int sync_err = errno;
  ::close(dfd);
  // Some file systems cannot sync a directory (EINVAL); the data itself is synced already.
  SAL_CHECK(sync_rc == 0 || sync_err == EINVAL, path, ": written, but syncing its directory failed: ",
            errno_text(sync_err));
}

}  // namespace sal
