// Streaming tar reader: see tar.h. Header layout (POSIX.1-1988 ustar, with the GNU and pax additions
// it understands), all offsets in the 512-byte header block:
//   0 name[100]  100 mode[8]  108 uid[8]  116 gid[8]  124 size[12]  136 mtime[12]  148 chksum[8]
//   156 typeflag  157 linkname[100]  257 magic[6]  263 version[2]  265 uname[32]  297 gname[32]
//   329 devmajor[8]  337 devminor[8]  345 prefix[155] (POSIX ustar only; GNU uses it for other fields)
// Data follows the header, padded with zeros to a multiple of 512; the archive ends with zero blocks.
#include "engine/tar.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/error.h"

namespace sal {

namespace {

constexpr uint64_t kBlock = TarReader::kBlock;

uint64_t round_up_block(uint64_t n) { return (n + kBlock - 1) / kBlock * kBlock; }

// A header field for an error message: printable ASCII kept, other bytes as \xNN.
std::string show_field(const uint8_t* f, size_t len) {
  std::string s;
  for (size_t i = 0; i < len; ++i) {
    if (f[i] >= 0x20 && f[i] < 0x7f) {
      s += static_cast<char>(f[i]);
    } else {
      static const char* hex = "0123456789abcdef";
      s += "\\x";
      s += hex[f[i] >> 4];
      s += hex[f[i] & 15];
    }
  }
  return s;
}

// A NUL-terminated string in a fixed-size field (no terminator when it fills the field).
std::string field_string(const uint8_t* f, size_t len) {
  size_t n = 0;
  while (n < len && f[n] != 0) ++n;
  return std::string(reinterpret_cast<const char*>(f), n);
}

// A numeric header field: optional leading spaces, octal digits, then only NULs/spaces; an empty
// field reads as 0. With base256, GNU's binary form (first byte 0x80, big-endian value) is accepted.
uint64_t parse_number(const uint8_t* f, size_t len, const char* field, bool base256, const std::string& path,
                      uint64_t header_offset) {
  auto bad = [&](const char* why) {
    fail(path, ": tar header at offset ", header_offset, ": field '", field, "' = \"", show_field(f, len), "\" ", why);
  };
  if (base256 && (f[0] & 0x80)) {
    if (f[0] != 0x80) bad("is a negative or oversized base-256 number");
    uint64_t v = 0;
    for (size_t i = 1; i < len; ++i) {
      if (v >> 56) bad("overflows 64 bits");
      v = (v << 8) | f[i];
    }
    return v;
  }
  size_t i = 0;
  while (i < len && f[i] == ' ') ++i;
  uint64_t v = 0;
  for (; i < len && f[i] >= '0' && f[i] <= '7'; ++i) {
    if (v >> 61) bad("overflows 64 bits");
    v = v * 8 + static_cast<uint64_t>(f[i] - '0');
  }
  for (; i < len; ++i)
    if (f[i] != 0 && f[i] != ' ') bad("is not an octal number");
  return v;
}

bool all_zero(const uint8_t* b, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (b[i]) return false;
  return true;
}

}  // namespace

TarReader::TarReader(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  SAL_CHECK(fd_ >= 0, path, ": cannot open: ", std::strerror(errno));
  struct stat sb {};
  const bool stat_ok = ::fstat(fd_, &sb) == 0;
  const int err = errno;
  if (!stat_ok || !S_ISREG(sb.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    if (!stat_ok) fail(path, ": cannot stat: ", std::strerror(err));
    fail(path, ": not a regular file");
  }
  file_size_ = static_cast<uint64_t>(sb.st_size);
  ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
}

TarReader::~TarReader() {
  if (fd_ >= 0) ::close(fd_);
}

void TarReader::pread_exact(void* dst, uint64_t n, uint64_t offset, const char* what, uint64_t header_offset) const {
  auto* p = static_cast<uint8_t*>(dst);
  uint64_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd_, p + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      fail(path_, ": reading ", what, " of the entry at offset ", header_offset, " failed at byte offset ",
           offset + done, ": ", std::strerror(errno));
    if (r == 0)
      fail(path_, ": truncated: ", what, " of the entry at offset ", header_offset, " ends at byte offset ",
           offset + done, ", ", n - done, " bytes short");
    done += static_cast<uint64_t>(r);
  }
}

bool TarReader::next(TarEntry& entry) {
  if (done_) return false;
  std::string long_name, pax_path;
  bool have_long_name = false, have_pax_path = false, have_pax_size = false;
  uint64_t pax_size = 0;
  uint64_t first_header = UINT64_MAX;  // the first 'L'/'x' header of this entry, for messages
  uint8_t h[kBlock];
  for (;;) {
    const uint64_t off = pos_;
    if (off >= file_size_)
      fail(path_, ": truncated: the archive ends at offset ", file_size_,
           " without an end-of-archive block (a tar ends with zero blocks)");
    if (file_size_ - off < kBlock)
      fail(path_, ": truncated: the header at offset ", off, " is cut short (", file_size_ - off,
           " of 512 bytes before the end of the file)");
    pread_exact(h, kBlock, off, "the header", off);

    if (all_zero(h, kBlock)) {
      SAL_CHECK(first_header == UINT64_MAX, path_, ": the long-name or pax header at offset ", first_header,
                " is followed by the end of the archive (offset ", off, ") instead of an entry");
      done_ = true;
      return false;
    }

    // Checksum: the field holds the sum of all header bytes with the field itself counted as spaces.
    const uint64_t stored = parse_number(h + 148, 8, "chksum", false, path_, off);
    uint64_t usum = 0;
    int64_t ssum = 0;
    for (size_t i = 0; i < kBlock; ++i) {
      uint8_t b = (i >= 148 && i < 156) ? ' ' : h[i];
      usum += b;
      ssum += static_cast<int8_t>(b);
    }
    if (stored != usum && static_cast<int64_t>(stored) != ssum)
      fail(path_, ": tar header at offset ", off, ": checksum mismatch (stored ", stored, ", computed ", usum,
           "): corrupt header or not a tar file");

    const char type = static_cast<char>(h[156]);
    uint64_t size = parse_number(h + 124, 12, "size", true, path_, off);
    const bool regular = type == '0' || type == '\0' || type == '7';
    if (regular && have_pax_size) size = pax_size;
    // Links, devices, directories and FIFOs store no data whatever their size field says.
    const bool no_data = type >= '1' && type <= '6';
    const uint64_t data_off = off + kBlock;
    const uint64_t data_size = no_data ? 0 : size;

    std::string name = field_string(h, 100);
    const bool posix_ustar = std::memcmp(h + 257, "ustar\0", 6) == 0;
    if (posix_ustar && h[345] != 0) name = field_string(h + 345, 155) + "/" + name;

    if (data_size > file_size_ - data_off)
      fail(path_, ": truncated: entry '", name, "' (header at offset ", off, ") has ", data_size,
           " data bytes but the file ends ", file_size_ - data_off, " bytes after its header");
    const uint64_t next_off = data_off + round_up_block(data_size);

    if (type == 'L' || type == 'x') {
      if (first_header == UINT64_MAX) first_header = off;
      SAL_CHECK(size <= kMaxMetaBytes, path_, ": tar header at offset ", off, ": ", type == 'L' ? "GNU long name" : "pax header",
                " of ", size, " bytes (more than ", kMaxMetaBytes, ")");
      std::string data(size, '\0');
      pread_exact(data.data(), size, data_off, type == 'L' ? "the long name" : "the pax records", off);
      if (type == 'L') {
        long_name = data.substr(0, data.find('\0'));
        SAL_CHECK(!long_name.empty(), path_, ": GNU long-name header at offset ", off, " holds an empty name");
        have_long_name = true;
      } else {
        // Records "<length> <key>=<value>\n"; <length> counts the whole record in bytes.
        size_t p = 0;
        while (p < data.size() && data[p] != '\0') {
          size_t sp = data.find(' ', p);
          size_t len = 0;
          bool ok = sp != std::string::npos && sp > p && sp - p <= 20;
          for (size_t i = p; ok && i < sp; ++i) {
            ok = data[i] >= '0' && data[i] <= '9';
            len = len * 10 + static_cast<size_t>(data[i] - '0');
          }
          ok = ok && len > sp - p + 1 && len <= data.size() - p && data[p + len - 1] == '\n';
          size_t eq = ok ? data.find('=', sp + 1) : std::string::npos;
          if (!ok || eq == std::string::npos || eq >= p + len - 1)
            fail(path_, ": pax header at offset ", off, ": malformed record at byte ", p, " of its data");
          std::string key = data.substr(sp + 1, eq - sp - 1);
          std::string value = data.substr(eq + 1, p + len - 1 - (eq + 1));
          if (key == "path" && !value.empty()) {
            pax_path = value;
            have_pax_path = true;
          } else if (key == "size" && !value.empty()) {
            uint64_t v = 0;
            for (char c : value) {
              SAL_CHECK(c >= '0' && c <= '9' && v <= (UINT64_MAX - 9) / 10, path_, ": pax header at offset ", off,
                        ": size '", value, "' is not a decimal number");
              v = v * 10 + static_cast<uint64_t>(c - '0');
            }
            pax_size = v;
            have_pax_size = true;
          }
          p += len;
        }
      }
      pos_ = next_off;
      continue;
    }
    pos_ = next_off;
    if (!regular) {
      // 'g' (pax global), 'K' (GNU long link name) and 'V' (volume label) do not end a pending long
      // name; a directory or any other entry consumes it.
      if (type != 'g' && type != 'K' && type != 'V') {
        have_long_name = have_pax_path = have_pax_size = false;
        first_header = UINT64_MAX;
      }
      continue;
    }
    if (have_pax_path) {
      name = pax_path;
    } else if (have_long_name) {
      name = long_name;
    }
    SAL_CHECK(!name.empty(), path_, ": tar header at offset ", off, ": empty entry name");
    entry.name = std::move(name);
    entry.size = size;
    entry.data_offset = data_off;
    entry.header_offset = first_header == UINT64_MAX ? off : first_header;
    return true;
  }
}

void TarReader::read(const TarEntry& entry, void* dst) const {
  SAL_CHECK(entry.data_offset <= file_size_ && entry.size <= file_size_ - entry.data_offset, path_, ": entry '",
            entry.name, "' (header at offset ", entry.header_offset, ") lies outside the file");
  pread_exact(dst, entry.size, entry.data_offset, "the data", entry.header_offset);
}

std::vector<uint8_t> TarReader::read(const TarEntry& entry) const {
  std::vector<uint8_t> bytes(entry.size);
  read(entry, bytes.data());
  return bytes;
}

std::vector<TarEntry> TarReader::list(const std::string& path) {
  TarReader r(path);
  std::vector<TarEntry> out;
  TarEntry e;
  while (r.next(e)) out.push_back(e);
  return out;
}

}  // namespace sal
