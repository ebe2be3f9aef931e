// Tar writing (see tar_writer.h). Each entry is one 512-byte POSIX ustar header followed by the data,
// zero-padded to a multiple of 512; the archive ends with two zero blocks. Header fields written
// (offsets in the block): name[100]@0, mode@100 "0000644", uid@108 and gid@116 "0000000",
// size@124 (11 octal digits), mtime@136 (11 octal digits), chksum@148 (6 octal digits, NUL, space;
// the unsigned byte sum of the header with the field counted as 8 spaces), typeflag@156 '0',
// magic@257 "ustar\0", version@263 "00", prefix@345 (the leading directories of a long name).
#include "engine/tar_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "engine/error.h"

namespace sal {

namespace {

constexpr size_t kBlock = 512;

void put_octal(uint8_t* field, size_t width, uint64_t v) {
  // width-1 octal digits, zero-padded, then NUL.
  for (size_t i = width - 1; i-- > 0;) {
    field[i] = static_cast<uint8_t>('0' + (v & 7));
    v >>= 3;
  }
  field[width - 1] = 0;
}

}  // namespace

TarWriter::TarWriter(const std::string& path, uint64_t mtime) : path_(path), tmp_path_(path + ".tmp"), mtime_(mtime) {
  SAL_CHECK(mtime < (uint64_t{1} << 33), path, ": mtime ", mtime, " does not fit the 11-digit octal field");
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  SAL_CHECK(file_ != nullptr, tmp_path_, ": cannot create: ", std::strerror(errno));
  std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
}

TarWriter::~TarWriter() {
  if (file_) std::fclose(file_);
  if (!finished_) std::remove(tmp_path_.c_str());
}

void TarWriter::write(const void* data, size_t n) {
  if (n == 0) return;
  SAL_CHECK(std::fwrite(data, 1, n, file_) == n, tmp_path_, ": write failed at byte offset ", bytes_, ": ",
            std::strerror(errno));
  bytes_ += n;
}

void TarWriter::add(const std::string& name, const void* data, uint64_t size) {
  SAL_CHECK(file_ != nullptr && !finished_, path_, ": add('", name, "') after finish()");
  SAL_CHECK(!name.empty(), path_, ": entry ", entries_, " has an empty name");
  SAL_CHECK(name.find('\0') == std::string::npos, path_, ": entry name '", name, "' contains a NUL byte");
  SAL_CHECK(size < (uint64_t{1} << 33), path_, ": entry '", name, "' has ", size,
            " bytes; ustar sizes stop below 8 GiB");
  std::string base = name, prefix;
  if (name.size() > 100) {
    // The longest prefix of at most 155 bytes that ends before a '/' and leaves at most 100 bytes.
    size_t cut = name.rfind('/', 155);
    if (cut != std::string::npos && name.size() - cut - 1 > 100) cut = std::string::npos;
    SAL_CHECK(cut != std::string::npos && cut > 0, path_, ": entry name '", name, "' (", name.size(),
              " bytes) does not fit ustar's 155-byte prefix and 100-byte name");
    prefix = name.substr(0, cut);
    base = name.substr(cut + 1);
  }
  uint8_t h[kBlock] = {};
  std::memcpy(h, base.data(), base.size());
  std::memcpy(h + 100, "0000644", 8);
  std::memcpy(h + 108, "0000000", 8);
  std::memcpy(h + 116, "0000000", 8);
  put_octal(h + 124, 12, size);
  put_octal(h + 136, 12, mtime_);
  h[156] = '0';
  std::memcpy(h + 257, "ustar", 6);  // "ustar\0"
  h[263] = '0';
  h[264] = '0';
  std::memcpy(h + 345, prefix.data(), prefix.size());
  std::memset(h + 148, ' ', 8);
  uint64_t sum = 0;
  for (uint8_t b : h) sum += b;
  put_octal(h + 148, 7, sum);  // 6 digits + NUL
  h[155] = ' ';
  write(h, kBlock);
  write(data, static_cast<size_t>(size));
  static const uint8_t zeros[kBlock] = {};
  write(zeros, (kBlock - size % kBlock) % kBlock);
  ++entries_;
}

uint64_t TarWriter::finish() {
  SAL_CHECK(file_ != nullptr && !finished_, path_, ": finish() called twice");
  static const uint8_t zeros[2 * kBlock] = {};
  write(zeros, sizeof zeros);
  SAL_CHECK(std::fflush(file_) == 0, tmp_path_, ": flush failed: ", std::strerror(errno));
  SAL_CHECK(::fsync(::fileno(file_)) == 0, tmp_path_, ": fsync failed: ", std::strerror(errno));
  const int rc = std::fclose(file_);
  file_ = nullptr;
  SAL_CHECK(rc == 0, tmp_path_, ": close failed: ", std::strerror(errno));
  SAL_CHECK(std::rename(tmp_path_.c_str(), path_.c_str()) == 0, tmp_path_, ": cannot rename to ", path_, ": ",
            std::strerror(errno));
  finished_ = true;
  return bytes_;
}

// ---------------------------------------------------------------- ShardWriter

ShardWriter::ShardWriter(const std::string& prefix, int64_t per_shard, uint64_t mtime)
    : prefix_(prefix), per_shard_(per_shard), mtime_(mtime) {
  SAL_CHECK(!prefix.empty(), "ShardWriter: empty shard prefix");
  SAL_CHECK(per_shard > 0, prefix, ": samples per shard must be positive, got ", per_shard);
}

ShardWriter::~ShardWriter() = default;

std::string ShardWriter::shard_path(const std::string& prefix, int64_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "-%06lld.tar", static_cast<long long>(index));
  return prefix + buf;
}

void ShardWriter::add(const std::string& key, const std::string& ext, const void* data, uint64_t size, int label) {
  SAL_CHECK(!key.empty() && key.find('.') == std::string::npos, prefix_, ": sample key '", key,
            "' must be non-empty and contain no '.'");
  SAL_CHECK(ext == "jpg" || ext == "png", prefix_, ": sample '", key, "': extension '", ext, "' (jpg or png expected)");
  SAL_CHECK(label >= 0, prefix_, ": sample '", key, "': negative class index ", label);
  if (!open_) {
    current_ = ShardInfo{};
    current_.path = shard_path(prefix_, static_cast<int64_t>(shards_.size()));
    current_.first_key = key;
    current_.min_label = current_.max_label = label;
    open_ = std::make_unique<TarWriter>(current_.path, mtime_);
  }
  open_->add(key + "." + ext, data, size);
  open_->add(key + ".cls", std::to_string(label));
  ++current_.samples;
  current_.last_key = key;
  current_.min_label = std::min(current_.min_label, label);
  current_.max_label = std::max(current_.max_label, label);
  if (current_.samples == per_shard_) close_open();
}

void ShardWriter::close_open() {
  if (!open_) return;
  current_.bytes = open_->finish();
  open_.reset();
  shards_.push_back(current_);
}

const std::vector<ShardInfo>& ShardWriter::finish() {
  close_open();
  return shards_;
}

std::string ShardWriter::summary(const ShardInfo& s) {
  return cat(s.path, "\t", s.samples, " samples\t", s.bytes, " bytes\tlabels ", s.min_label, "..", s.max_label,
             "\tkeys ", s.first_key, " .. ", s.last_key);
}

}  // namespace sal
