// Streaming reader of uncompressed tar files (POSIX ustar, GNU, pax), for image folders packed as tar
// and WebDataset shards.
//
// The reader walks the archive one 512-byte header at a time with pread and never loads the whole
// file: next() reads only headers (and the small GNU long-name / pax records), read() fetches one
// entry's bytes on demand. It validates as it goes and every error names the file and the byte offset
// of the offending header:
//   - header checksum (unsigned byte sum with the checksum field as spaces; the historic signed sum is
//     accepted too), octal numeric fields (leading spaces, digits 0-7, then NUL/space; GNU base-256
//     for sizes), a non-empty name;
//   - sizes against the file length: an entry whose data runs past the end, a header cut short, or an
//     archive without its end-of-archive block (a zero block) is "truncated".
// Entry types: regular files ('0', NUL, '7') are returned; GNU long names ('L') and pax extended
// headers ('x': "path" and "size" are applied) modify the entry that follows; pax global headers ('g'),
// GNU long link names ('K'), directories ('5') and every other type (links, devices, fifos, ...) are
// skipped. The POSIX ustar prefix field is joined to the name ("prefix/name").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sal {

struct TarEntry {
  std::string name;            // path inside the archive
  uint64_t size = 0;           // bytes of data
  uint64_t data_offset = 0;    // file offset of the first data byte
  uint64_t header_offset = 0;  // file offset of the entry's first header (its 'L' or 'x' header if any)
};

class TarReader {
 public:
  static constexpr uint64_t kBlock = 512;
  // GNU long names and pax records larger than this are treated as corrupt.
  static constexpr uint64_t kMaxMetaBytes = 1u << 20;

  explicit TarReader(const std::string& path);
  ~TarReader();
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;

  // Advances to the next regular file and fills `entry`; false at the end of the archive.
  bool next(TarEntry& entry);
  // The bytes of an entry of this archive (any entry returned so far, in any order).
  std::vector<uint8_t> read(const TarEntry& entry) const;
  void read(const TarEntry& entry, void* dst) const;  // entry.size bytes into dst

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  // File offset of the next header that next() will read.
  uint64_t position() const { return pos_; }

  // All regular-file entries of a tar, in archive order (headers only).
  static std::vector<TarEntry> list(const std::string& path);

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  uint64_t pos_ = 0;
  bool done_ = false;

  void pread_exact(void* dst, uint64_t n, uint64_t offset, const char* what, uint64_t header_offset) const;
};

}  // namespace sal
