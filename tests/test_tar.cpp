// Tar reader tests: archives whose ustar headers are written here byte by byte (regular files,
// directories, prefix names, GNU long names, pax path/size records, base-256 sizes), one broken
// archive per validation rule (checksum, bad octal, truncated data/header, missing end block) with
// the error's byte offset checked, archives made by GNU tar in gnu, pax and ustar formats, and the shared
// CIFAR-10 test.tar.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "engine/error.h"
#include "engine/tar.h"
#include "tests/error_of.h"
#include "tests/temp_files.h"

using namespace sal;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("sal_tar_test_") {}
};

using test::write_bytes;

void put(std::string& h, size_t off, const std::string& s) { std::memcpy(&h[off], s.data(), s.size()); }

std::string octal(uint64_t v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llo", digits, static_cast<unsigned long long>(v));
  return buf;
}

// A 512-byte POSIX ustar header with a correct checksum (unless `size_field` overrides the size).
std::string header(const std::string& name, uint64_t size, char type = '0', const std::string& prefix = "",
                   const std::string& size_field = "") {
  std::string h(512, '\0');
  put(h, 0, name.substr(0, 100));
  put(h, 100, "0000644");
  put(h, 108, "0000000");
  put(h, 116, "0000000");
  put(h, 124, size_field.empty() ? octal(size, 11) : size_field);
  put(h, 136, "07346545000");
  h[156] = type;
  put(h, 257, std::string("ustar\0", 6));
  put(h, 263, "00");
  put(h, 345, prefix);
  put(h, 148, "        ");
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  put(h, 148, octal(sum, 6));
  h[154] = '\0';
  h[155] = ' ';
  return h;
}

std::string padded(const std::string& data) { return data + std::string((512 - data.size() % 512) % 512, '\0'); }
std::string entry(const std::string& name, const std::string& data, char type = '0', const std::string& prefix = "") {
  return header(name, data.size(), type, prefix) + padded(data);
}
const std::string kEnd(1024, '\0');

// "<len> key=value\n" where len counts the whole record, itself included.
std::string pax_record(const std::string& key, const std::string& value) {
  size_t body = key.size() + value.size() + 3;  // ' ', '=', '\n'
  size_t len = body + 1;
  while (std::to_string(len).size() + body != len) ++len;
  return std::to_string(len) + " " + key + "=" + value + "\n";
}

using test::error_of;

std::string slurp(TarReader& r, const TarEntry& e) {
  std::vector<uint8_t> b = r.read(e);
  return std::string(b.begin(), b.end());
}

}  // namespace

TEST_CASE("tar: entries of a hand-built ustar archive") {
  TempDir tmp;
  const std::string big(1300, 'x');
  std::string tar = entry("dir/", "", '5') + entry("dir/a.txt", "hello") + entry("dir/empty", "") +
                    entry("b.bin", big) + entry("c.jpg", "abc", '0', "some/prefix") + entry("d", "contig", '7') +
                    entry("link", "", '2') + kEnd;
  write_bytes(tmp.file("t.tar"), tar);

  TarReader r(tmp.file("t.tar"));
  CHECK(r.file_size() == tar.size());
  std::vector<TarEntry> es;
  TarEntry e;
  while (r.next(e)) es.push_back(e);
  CHECK_FALSE(r.next(e));  // stays at the end
  REQUIRE(es.size() == 5);
  CHECK(es[0].name == "dir/a.txt");
  CHECK(es[0].size == 5);
  CHECK(es[0].header_offset == 512);
  CHECK(es[0].data_offset == 1024);
  CHECK(es[1].name == "dir/empty");
  CHECK(es[1].size == 0);
  CHECK(es[1].data_offset == 2048);
  CHECK(es[2].name == "b.bin");
  CHECK(es[2].size == 1300);
  CHECK(es[3].name == "some/prefix/c.jpg");
  CHECK(es[3].header_offset == 2048 + 512 + 1536);
  CHECK(es[4].name == "d");
  // Read in any order.
  CHECK(slurp(r, es[3]) == "abc");
  CHECK(slurp(r, es[0]) == "hello");
  CHECK(slurp(r, es[2]) == big);
  CHECK(slurp(r, es[1]).empty());
  CHECK(slurp(r, es[4]) == "contig");
  CHECK(TarReader::list(tmp.file("t.tar")).size() == 5);
}

TEST_CASE("tar: GNU long names, pax path and size, base-256 sizes") {
  TempDir tmp;
  const std::string long_name = std::string(150, 'n') + "/file.jpg";
  const std::string pax_name = "pax/" + std::string(200, 'p') + ".png";
  std::string pax = pax_record("mtime", "946684800.5") + pax_record("path", pax_name) + pax_record("size", "4");
  std::string b256 = header("b256", 0);
  b256[124] = '\x80';
  std::memset(&b256[125], 0, 11);
  b256[135] = 3;  // size 3, big-endian base-256
  std::memset(&b256[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : b256) sum += c;
  put(b256, 148, octal(sum, 6));
  b256[154] = '\0';

  std::string tar = entry("././@LongLink", long_name + '\0', 'L') + entry(long_name.substr(0, 100), "L-data") +
                    entry("pax_global_header", pax_record("comment", "hi"), 'g') +
                    entry("PaxHeaders/x", pax, 'x') + header("short", 9) + padded("ABCD") +  // pax size 4 wins
                    entry("after", "z") + b256 + padded("xyz") + kEnd;
  write_bytes(tmp.file("g.tar"), tar);
  std::vector<TarEntry> es = TarReader::list(tmp.file("g.tar"));
  REQUIRE(es.size() == 4);
  CHECK(es[0].name == long_name);
  CHECK(es[0].header_offset == 0);  // the 'L' header
  CHECK(es[0].data_offset == 512 + 512 + 512);
  CHECK(es[1].name == pax_name);
  CHECK(es[1].size == 4);
  CHECK(es[2].name == "after");  // the pax record applied to one entry only
  CHECK(es[3].name == "b256");
  CHECK(es[3].size == 3);
  TarReader r(tmp.file("g.tar"));
  CHECK(slurp(r, es[0]) == "L-data");
  CHECK(slurp(r, es[1]) == "ABCD");
  CHECK(slurp(r, es[3]) == "xyz");
}

TEST_CASE("tar: malformed archives give errors naming the file and the offset") {
  TempDir tmp;
  const std::string good = entry("a", "first") + entry("b", std::string(700, 'b')) + kEnd;
  const std::string path = tmp.file("bad.tar");
  auto list_error = [&](const std::string& bytes) {
    write_bytes(path, bytes);
    return error_of([&] { TarReader::list(path); });
  };

  SUBCASE("checksum mismatch") {
    std::string t = good;
    t[1024 + 10] = 'Q';  // inside the second header's name
    std::string e = list_error(t);
    CHECK(e.find(path + ": tar header at offset 1024: checksum mismatch") == 0);
  }
  SUBCASE("not a tar at all") {
    std::string e = list_error(std::string(512, 'z') + kEnd);
    CHECK(e.find(path + ": tar header at offset 0: field 'chksum'") == 0);
  }
  SUBCASE("bad octal size") {
    std::string t = entry("a", "first") + header("b", 0, '0', "", "0000000x012") + kEnd;
    std::string e = list_error(t);
    CHECK(e == path + ": tar header at offset 1024: field 'size' = \"0000000x012\\x00\" is not an octal number");
  }
  SUBCASE("truncated entry data") {
    std::string e = list_error(good.substr(0, 1024 + 512 + 300));
    CHECK(e == path + ": truncated: entry 'b' (header at offset 1024) has 700 data bytes but the file ends 300 bytes "
                      "after its header");
  }
  SUBCASE("truncated inside a header") {
    std::string e = list_error(good.substr(0, 1024 + 100));
    CHECK(e == path + ": truncated: the header at offset 1024 is cut short (100 of 512 bytes before the end of the file)");
  }
  SUBCASE("no end-of-archive block") {
    std::string e = list_error(good.substr(0, 1024 + 1536));
    CHECK(e.find(path + ": truncated: the archive ends at offset 2560 without an end-of-archive block") == 0);
  }
  SUBCASE("a long name followed by the end") {
    std::string e = list_error(entry("./@LongLink", "name\0", 'L') + kEnd);
    CHECK(e.find(path + ": the long-name or pax header at offset 0 is followed by the end of the archive") == 0);
  }
  SUBCASE("malformed pax record") {
    std::string e = list_error(entry("p", "99 path=x\n", 'x') + entry("a", "1") + kEnd);
    CHECK(e == path + ": pax header at offset 0: malformed record at byte 0 of its data");
  }
  SUBCASE("empty name") {
    std::string e = list_error(entry("", "data") + kEnd);
    CHECK(e == path + ": tar header at offset 0: empty entry name");
  }
  SUBCASE("missing file") {
    CHECK(error_of([&] { TarReader r(tmp.file("none.tar")); }).find("none.tar: cannot open") != std::string::npos);
  }
  SUBCASE("reading an entry after the file shrank") {
    write_bytes(path, good);
    TarReader r(path);
    TarEntry a, b;
    REQUIRE(r.next(a));
    REQUIRE(r.next(b));
    REQUIRE(::truncate(path.c_str(), 1024 + 512 + 100) == 0);
    CHECK(error_of([&] { r.read(b); }) ==
          path + ": truncated: the data of the entry at offset 1024 ends at byte offset 1636, 600 bytes short");
  }
}

TEST_CASE("tar: archives written by GNU tar (gnu, pax and ustar formats)") {
  TempDir tmp;
  // 218 characters: GNU format stores an 'L' long name, pax a 'path' record, ustar splits it into prefix + name.
  const std::string deep = "d/" + std::string(60, 'q') + "/" + std::string(60, 'Q') + "/" + std::string(90, 'r') + ".txt";
  fs::create_directories(tmp.dir / "src" / fs::path(deep).parent_path());
  write_bytes((tmp.dir / "src" / deep).string(), "deep contents");
  write_bytes((tmp.dir / "src" / "d" / "small").string(), std::string(5000, 's'));
  for (const std::string fmt : {"gnu", "pax", "ustar"}) {
    CAPTURE(fmt);
    const std::string out = tmp.file(fmt + ".tar");
    const std::string cmd = "tar --format=" + fmt + " --sort=name -cf '" + out + "' -C '" + (tmp.dir / "src").string() +
                            "' d 2>/dev/null";
    int rc = std::system(cmd.c_str());
    REQUIRE_MESSAGE(rc == 0, "GNU tar is needed for this test: ", cmd);
    TarReader r(out);
    TarEntry e;
    std::vector<std::pair<std::string, std::string>> got;
    while (r.next(e)) got.emplace_back(e.name, slurp(r, e));
    REQUIRE(got.size() == 2);
    CHECK(got[0].first == deep);
    CHECK(got[0].second == "deep contents");
    CHECK(got[1].first == "d/small");
    CHECK(got[1].second == std::string(5000, 's'));
  }
}

TEST_CASE("tar: the shared CIFAR-10 test.tar") {
  const std::string path = std::string(SAL_SHARED_DIR) + "/data/cifar10/test.tar";
  REQUIRE_MESSAGE(fs::exists(path), path, " is missing (the shared data folder is needed)");
  std::vector<TarEntry> es = TarReader::list(path);
  REQUIRE(es.size() == 10000);  // plus 10 directory entries, skipped
  CHECK(es.front().name == "airplane/0000.jpg");
  CHECK(es[1234].name == "automobile/0234.jpg");
  CHECK(es.back().name == "truck/0999.jpg");
  uint64_t payload = 0;
  for (const TarEntry& e : es) payload += e.size;
  CHECK(payload == 9209662);  // the README's image payload bytes
}
