// Tar writing: POSIX ustar archives written entry by entry (TarWriter), and WebDataset shard sets
// built on it (ShardWriter): samples KEY.jpg / KEY.png (the original bytes) + KEY.cls (the decimal
// class index), N samples per shard, shards named PREFIX-000000.tar, PREFIX-000001.tar, ...
//
// Both write atomically: an archive is written to "<path>.tmp", flushed, fsync'ed and renamed to
// <path> only when it is complete, so a crash never leaves a half-written file under the final name
// (and a "*.tar" glob never picks up a temporary). Output is reproducible: every header has mode 0644,
// uid/gid 0, empty user/group names and the same mtime (0 unless set), so the same input gives
// byte-identical archives. The archives are read by engine/tar.h.
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace sal {

class TarWriter {
 public:
  // Starts writing `path` (as "<path>.tmp" until finish()). Errors name the file.
  explicit TarWriter(const std::string& path, uint64_t mtime = 0);
  // Without finish(), the temporary file is removed and `path` is left untouched.
  ~TarWriter();
  TarWriter(const TarWriter&) = delete;
  TarWriter& operator=(const TarWriter&) = delete;

  // Appends a regular file. Names longer than 100 bytes are split into the ustar prefix (up to 155
  // bytes, at a '/'); a name that cannot be split, or data of 8 GiB or more, is an error.
  void add(const std::string& name, const void* data, uint64_t size);
  void add(const std::string& name, const std::string& data) { add(name, data.data(), data.size()); }
  // Writes the end-of-archive blocks, syncs and renames the temporary to the final path.
  // Returns the archive's size in bytes.
  uint64_t finish();

  const std::string& path() const { return path_; }
  uint64_t bytes() const { return bytes_; }     // written so far
  int64_t entries() const { return entries_; }  // regular files added so far

 private:
  std::string path_, tmp_path_;
  std::FILE* file_ = nullptr;
  uint64_t mtime_ = 0, bytes_ = 0;
  int64_t entries_ = 0;
  bool finished_ = false;

  void write(const void* data, size_t n);
};

// One finished shard of a ShardWriter.
struct ShardInfo {
  std::string path;
  int64_t samples = 0;
  uint64_t bytes = 0;
  std::string first_key, last_key;
  int min_label = 0, max_label = 0;
};

// Writes samples into WebDataset shards PREFIX-%06d.tar of `per_shard` samples each (the last one may
// hold fewer). Keys must be unique within a shard set, non-empty and free of '.' (WebDataset splits a
// name into key and extension at the first dot of its base name); `ext` is "jpg" or "png".
class ShardWriter {
 public:
  ShardWriter(const std::string& prefix, int64_t per_shard, uint64_t mtime = 0);
  ~ShardWriter();  // an unfinished shard is discarded (its temporary removed)
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;
  void add(const std::string& key, const std::string& ext, const void* data, uint64_t size, int label);
  void add(const std::string& key, const std::string& ext, const std::vector<uint8_t>& bytes, int label) {
    add(key, ext, bytes.data(), bytes.size(), label);
  }
  // Finishes the open shard (if any) and returns every shard written.
  const std::vector<ShardInfo>& finish();
  const std::vector<ShardInfo>& shards() const { return shards_; }  // finished so far

  static std::string shard_path(const std::string& prefix, int64_t index);  // PREFIX-000042.tar
  // "PREFIX-000000.tar  128 samples  454656 bytes  labels 0..9  keys a .. b": the per-shard summary line.
  static std::string summary(const ShardInfo& info);

 private:
  std::string prefix_;
  int64_t per_shard_;
  uint64_t mtime_;
  std::unique_ptr<TarWriter> open_;  // the shard being written
  ShardInfo current_;
  std::vector<ShardInfo> shards_;

  void close_open();
};

}  // namespace sal
