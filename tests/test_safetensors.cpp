// safetensors reader/writer and ParamStore save/load: round trips, a byte-exact file worked out by hand,
// one hand-built corrupt file per validation rule, atomic-write failure modes, and load_params errors.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "engine/param_io.h"
#include "engine/safetensors.h"
#include "tests/temp_files.h"

using namespace sal;
namespace fs = std::filesystem;

namespace {

struct TempDir : test::TempDir {
  TempDir() : test::TempDir("sal_safetensors_test_") {}
};

using test::read_bytes;
using test::write_bytes;

std::string u64le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from its parts: the length field (the header's size unless given), header text, buffer.
std::string st_file(const std::string& header, const std::string& buffer, uint64_t len = UINT64_MAX) {
  return u64le(len == UINT64_MAX ? header.size() : len) + header + buffer;
}

std::string f32_bytes(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}

std::string u16_bytes(std::initializer_list<uint16_t> v) {
  std::string s(v.size() * 2, '\0');
  std::memcpy(s.data(), std::data(v), s.size());
  return s;
}

// Names of entries in dir whose name contains ".tmp." (leftover temporary files).
int count_temp_files(const fs::path& dir) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) ++n;
  return n;
}

// doctest::Contains for a std::string (doctest's String copies the text).
doctest::Contains has(const std::string& s) { return doctest::Contains(s.c_str()); }

bool same_values(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  std::vector<double> x = a.values(), y = b.values();
  for (size_t i = 0; i < x.size(); ++i)
    if (!(x[i] == y[i] || (std::isnan(x[i]) && std::isnan(y[i])))) return false;
  return true;
}

}  // namespace

TEST_CASE("safetensors: byte-exact file for a hand-made pair of tensors") {
  TempDir tmp;
  const std::string path = tmp.file("tiny.safetensors");
  // a: BF16 [3] = {1, -2, 0.5}: bf16 is the top half of the float bits: 0x3F80, 0xC000, 0x3F00.
  // b: F32 scalar 1.0 = 0x3F800000.
  Tensor a = Tensor::from_values({1, -2, 0.5}, Shape{3}, DType::BF16);
  Tensor b = Tensor::from_values({1}, Shape{}, DType::F32);
  write_safetensors(path, {{"a", a}, {"b", b}}, {{"k", "v"}});

  // The header lists a then b (given order); the data puts b (4-byte elements) before a (2-byte), so
  // b = [0,4) and a = [4,10). Header text, counted by hand:
  //   {"__metadata__":{"k":"v"},  26    "a":  4    {"dtype":"BF16",  16    "shape":[3],  12
  //   "data_offsets":[4,10]},  23    "b":  4    {"dtype":"F32",  15    "shape":[],  11
  //   "data_offsets":[0,4]}  21    }  1         = 133 bytes, padded with 3 spaces to 136 = 0x88.
  const std::string header =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"BF16","shape":[3],"data_offsets":[4,10]},)"
      R"("b":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}   )";
  REQUIRE(header.size() == 136);
  const std::string expected = std::string("\x88\0\0\0\0\0\0\0", 8) + header +
                               std::string("\x00\x00\x80\x3F", 4) +               // b = 1.0f
                               std::string("\x80\x3F\x00\xC0\x00\x3F", 6);        // a = 1, -2, 0.5
  REQUIRE(expected.size() == 154);
  CHECK(read_bytes(path) == expected);

  SafeTensorsFile f(path);
  CHECK(f.names() == std::vector<std::string>{"a", "b"});
  CHECK(f.metadata() == std::map<std::string, std::string>{{"k", "v"}});
  CHECK(f.info("a").dtype == "BF16");
  CHECK(f.info("a").begin == 4);
  CHECK(f.info("a").end == 10);
  CHECK(f.info("b").shape.empty());
  CHECK(f.tensor("a").values() == std::vector<double>{1, -2, 0.5});
  CHECK(f.tensor("b").item() == 1.0);
  CHECK(f.raw_bytes("a").size() == 6);
  CHECK(static_cast<unsigned char>(f.raw_bytes("a")[1]) == 0x3F);
}

TEST_CASE("safetensors: round trip of dtypes and shapes, with metadata") {
  TempDir tmp;
  const std::string path = tmp.file("round.safetensors");
  std::vector<double> v24;
  for (int i = 0; i < 24; ++i) v24.push_back(0.37 * i - 3.1);
  NamedTensors ts = {
      {"conv.weight", Tensor::from_values(v24, Shape{2, 3, 4, 1})},
      {"f64", Tensor::from_values({1.0 / 3, -1e300, 5e-324}, Shape{3}, DType::F64)},
      {"bf16.odd", Tensor::from_values({1, -2.5, 3.25, 0.015625, -65536}, Shape{5, 1}, DType::BF16)},
      {"labels", Tensor::from_labels({-7, 0, 42, std::numeric_limits<int32_t>::max()})},
      {"scalar", Tensor::from_values({3.5}, Shape{})},
      {"empty", Tensor::empty(Shape{0})},
      {"empty3", Tensor::empty(Shape{2, 0, 3}, DType::F64)},
      {"batch1", Tensor::from_values({1, 2, 3, 4, 5, 6, 7}, Shape{1, 1, 7, 1})},
      {"nan_inf", Tensor::from_values({std::nan(""), INFINITY, -INFINITY}, Shape{3})},
  };
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"step", "123"}, {"note", "größe ✓"}};
  write_safetensors(path, ts, meta);

  SafeTensorsFile f(path);
  REQUIRE(f.size() == ts.size());
  CHECK(f.metadata() == meta);
  uint64_t total = 0;
  for (size_t i = 0; i < ts.size(); ++i) {
    // Not a structured binding: clang 14 (the sanitizer build) cannot capture one in CAPTURE's lambda.
    const std::string& name = ts[i].first;
    const Tensor& t = ts[i].second;
    CAPTURE(name);
    CHECK(f.names()[i] == name);  // file order = given order
    CHECK(f.contains(name));
    const SafeTensorInfo& in = f.info(name);
    CHECK(in.dtype == safetensors_dtype_name(t.dtype()));
    CHECK(in.numel() == t.numel());
    Tensor back = f.tensor(name);
    CHECK(!back.owns_memory());  // aligned, so a zero-copy view
    CHECK(back.device() == Device::CPU);
    CHECK(same_values(back, t));
    total += in.nbytes();
  }
  // Contiguous buffer, header padded to 8 bytes.
  const uint64_t size = fs::file_size(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, read_bytes(path).data(), 8);
  CHECK(header_len % 8 == 0);
  CHECK(size == 8 + header_len + total);
  CHECK(count_temp_files(tmp.dir) == 0);

  // load_f32 converts every float dtype; f64 and bf16 round to the nearest float.
  CHECK(f.load_f32("f64").values() == std::vector<double>{static_cast<float>(1.0 / 3), -INFINITY, 0.0});
  CHECK(f.load_f32("bf16.odd").values() == std::vector<double>{1, -2.5, 3.25, 0.015625, -65536});
  CHECK(f.load_f32("conv.weight").owns_memory());
  CHECK(f.load_f32("scalar").item() == 3.5);
  CHECK(f.load_f32("empty3").shape() == Shape{2, 0, 3});

  // Rewriting over an existing file replaces it.
  write_safetensors(path, {{"only", Tensor::from_values({9}, Shape{1})}});
  SafeTensorsFile g(path);
  CHECK(g.names() == std::vector<std::string>{"only"});
  CHECK(g.metadata().empty());
  CHECK(g.tensor("only").item() == 9);
  // f still maps the replaced file: the rename swapped the directory entry, the old contents stay readable.
  CHECK(f.tensor("scalar").item() == 3.5);
  CHECK(f.tensor("batch1").values() == ts[7].second.values());

  // Moving the file object keeps the mapping and the views into it valid.
  Tensor view = g.tensor("only");
  SafeTensorsFile moved(std::move(g));
  CHECK(view.item() == 9);
  CHECK(moved.tensor("only").item() == 9);
}

TEST_CASE("safetensors: F16 and BF16 conversion, worked out by hand") {
  TempDir tmp;
  const std::string path = tmp.file("half.safetensors");
  // F16 = sign | 5-bit exponent (bias 15) | 10-bit mantissa:
  //   0x3C00 = 1; 0xC000 = -2; 0x3555 = (1 + 341/1024) / 4 = 0.333251953125; 0x0001 = 2^-24 (smallest
  //   subnormal); 0x03FF = 1023 * 2^-24 (largest subnormal); 0x0400 = 2^-14 (smallest normal); 0x7BFF = 65504
  //   (largest finite); 0x7C00 = +inf; 0x8000 = -0; 0x7E00 = NaN.
  // BF16 = top half of a float: 0x3F80 = 1; 0xC0A0 = -(1 + 32/128) * 2^2 = -5.
  const std::string header =
      R"({"h":{"dtype":"F16","shape":[2,5],"data_offsets":[0,20]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[20,24]}})";
  write_bytes(path, st_file(header, u16_bytes({0x3C00, 0xC000, 0x3555, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00,
                                               0x8000, 0x7E00}) +
                                        u16_bytes({0x3F80, 0xC0A0})));
  SafeTensorsFile f(path);
  std::vector<double> h = f.load_f32("h").values();
  CHECK(h[0] == 1.0);
  CHECK(h[1] == -2.0);
  CHECK(h[2] == 0.333251953125);
  CHECK(h[3] == std::ldexp(1.0, -24));
  CHECK(h[4] == 1023 * std::ldexp(1.0, -24));
  CHECK(h[5] == std::ldexp(1.0, -14));
  CHECK(h[6] == 65504.0);
  CHECK(h[7] == INFINITY);
  CHECK((h[8] == 0.0 && std::signbit(h[8])));
  CHECK(std::isnan(h[9]));
  CHECK(f.load_f32("h").shape() == Shape{2, 5});
  CHECK(f.load_f32("b").values() == std::vector<double>{1, -5});
  CHECK(f.tensor("b").values() == std::vector<double>{1, -5});
  CHECK_THROWS_WITH_AS(f.tensor("h"), has(path + ": tensor 'h' is F16; tensor() gives"), Error);
}

TEST_CASE("safetensors: misaligned data is copied, never viewed through an unaligned pointer") {
  TempDir tmp;
  const std::string path = tmp.file("unaligned.safetensors");
  // The mapping starts page-aligned; padding the header so that 8 + N = 2 (mod 8) puts the buffer at an
  // address = 2 (mod 8): the F32 at buffer offset 0, the F64 at 8 and the I32 at 16 are all misaligned.
  std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"d":{"dtype":"F64","shape":[1],)"
                       R"("data_offsets":[8,16]},"i":{"dtype":"I32","shape":[1],"data_offsets":[16,20]}})";
  header.append((8 - (8 + header.size()) % 8) % 8 + 2, ' ');  // (8 + N) = 2 (mod 8)
  REQUIRE((8 + header.size()) % 8 == 2);
  double d = -0.125;
  int32_t i = -3;
  std::string buf = f32_bytes({1.5f, -2.25f}) + std::string(reinterpret_cast<const char*>(&d), 8) +
                    std::string(reinterpret_cast<const char*>(&i), 4);
  write_bytes(path, st_file(header, buf));
  SafeTensorsFile f(path);
  Tensor x = f.tensor("x");
  CHECK(x.owns_memory());  // a copy
  CHECK(reinterpret_cast<uintptr_t>(x.raw()) % 4 == 0);
  CHECK(x.values() == std::vector<double>{1.5, -2.25});
  CHECK(f.tensor("d").owns_memory());
  CHECK(f.tensor("d").item() == -0.125);
  CHECK(f.tensor("i").owns_memory());
  CHECK(f.tensor("i").item() == -3);
  CHECK(f.load_f32("x").values() == std::vector<double>{1.5, -2.25});
  CHECK(f.load_f32("d").item() == -0.125);
}

TEST_CASE("safetensors: every corrupt-file kind has its own error naming the file and the entry") {
  TempDir tmp;
  int n = 0;
  // Writes bytes to a fresh file and returns its path.
  auto make = [&](const std::string& bytes) {
    std::string p = tmp.file("bad" + std::to_string(n++) + ".safetensors");
    write_bytes(p, bytes);
    return p;
  };
  const std::string four = f32_bytes({1});
  std::string p;

  p = make(std::string("\x05\0\0\0\0", 5));  // 5 bytes
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": file is 5 bytes, shorter than the 8-byte"), Error);
  p = tmp.file("absent.safetensors");
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": cannot open: No such file or directory"), Error);
  CHECK_THROWS_WITH_AS(SafeTensorsFile{tmp.dir.string()}, has(": not a regular file"), Error);

  p = make(st_file("{}", "", 1000));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p},
                       has(p + ": header length 1000 is larger than the file (2 bytes follow"), Error);
  p = make(st_file("{}", "", 200'000'000));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": header length 200000000 exceeds the 100000000"),
                       Error);
  p = make(st_file(R"({"w": {"dtype": )", ""));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": header is not valid JSON"), Error);
  p = make(st_file("{\"w\xff\": 1}", ""));  // invalid UTF-8 in a key
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": header is not valid JSON"), Error);
  p = make(st_file("[1, 2]", ""));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": header is not a JSON object (it is array)"), Error);
  p = make(st_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],)"
                   R"("data_offsets":[0,4]}})",
                   four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": header names 'w' twice"), Error);

  // Entry structure and JSON types.
  p = make(st_file(R"({"w": 3})", ""));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": tensor 'w': entry must be an object"), Error);
  p = make(st_file(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": tensor 'w': missing 'dtype'"), Error);
  p = make(st_file(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": tensor 'w': missing 'shape'"), Error);
  p = make(st_file(R"({"w":{"dtype":"F32","shape":[1]}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": tensor 'w': missing 'data_offsets'"), Error);
  p = make(st_file(R"({"w":{"dtype":32,"shape":[1],"data_offsets":[0,4]}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": tensor 'w': 'dtype' must be a string, got number"),
                       Error);
  p = make(st_file(R"({"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": tensor 'w': 'shape' must be an array"), Error);
  p = make(st_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":{"begin":0}}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": tensor 'w': 'data_offsets' must be [begin, end]"),
                       Error);
  p = make(st_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": tensor 'w': 'data_offsets' must be [begin, end]"),
                       Error);
  p = make(st_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,4]}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": tensor 'w': 'data_offsets' must be [begin, end]"),
                       Error);

  // Values.
  p = make(st_file(R"({"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": tensor 'w': unknown dtype 'F33'"), Error);
  p = make(st_file(R"({"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,4]}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p},
                       has(p + ": tensor 'w': shape extent 1 is -1; expected a non-negative integer"),
                       Error);
  p = make(st_file(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": tensor 'w': shape extent 0 is 1.5"), Error);
  p = make(st_file(R"({"w":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": tensor 'w': shape extent 0 is \"1\""), Error);
  p = make(st_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": tensor 'w': data_offsets [4, 0] have begin > end"),
                       Error);
  p = make(st_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p},
                       has(p + ": tensor 'w': data_offsets end 8 is beyond the data buffer (4 bytes)"),
                       Error);
  p = make(st_file(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", four + four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p},
                       has(p + ": tensor 'w': holds 8 bytes, but shape [3] of F32 needs 12"), Error);
  p = make(st_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})", four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p},
                       has(p + ": tensor 'w': holds 4 bytes, but shape [4294967296,4294967296,16] of F32 needs "
                               "more than 2^64"),
                       Error);
  p = make(st_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                   four + four + four));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p},
                       has(p + ": tensor 'b' bytes [4, 12) overlap tensor 'a' bytes [0, 8)"), Error);
  // A long range followed by a short one: the third tensor overlaps the long one, not its neighbour.
  p = make(st_file(R"({"long":{"dtype":"U8","shape":[16],"data_offsets":[4,20]},)"
                   R"("head":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                   R"("mid":{"dtype":"U8","shape":[2],"data_offsets":[8,10]}})",
                   std::string(20, 'x')));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p},
                       has(p + ": tensor 'mid' bytes [8, 10) overlap tensor 'long' bytes [4, 20)"),
                       Error);

  // Metadata.
  p = make(st_file(R"({"__metadata__":{"epoch":3}})", ""));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p},
                       has(p + ": '__metadata__' value for key 'epoch' must be a string, got number"),
                       Error);
  p = make(st_file(R"({"__metadata__":["a"]})", ""));
  CHECK_THROWS_WITH_AS(SafeTensorsFile{p}, has(p + ": '__metadata__' must be an object"), Error);

  // Legal corner cases still open: empty header object, empty and zero-size tensors, unused trailing bytes.
  p = make(st_file("{}", ""));
  CHECK(SafeTensorsFile(p).size() == 0);
  p = make(st_file(R"({"e":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]},)"
                   R"("w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}  )",
                   four + four));
  SafeTensorsFile ok(p);
  CHECK(ok.tensor("e").numel() == 0);
  CHECK(ok.tensor("w").item() == 1.0);
  CHECK(ok.raw_bytes("e").empty());
}

TEST_CASE("safetensors: lookup and dtype errors name the tensor") {
  TempDir tmp;
  const std::string path = tmp.file("lookup.safetensors");
  write_safetensors(path, {{"a", Tensor::from_values({1}, Shape{1})}, {"b", Tensor::from_labels({4})}});
  SafeTensorsFile f(path);
  CHECK_FALSE(f.contains("zz"));
  CHECK_THROWS_WITH_AS(f.tensor("zz"), has(path + ": no tensor 'zz' in the file (it holds 'a', 'b')"),
                       Error);
  CHECK_THROWS_WITH_AS(f.info("zz"), has("no tensor 'zz'"), Error);
  CHECK_THROWS_WITH_AS(f.load_f32("b"), has(path + ": tensor 'b' is I32; load_f32() converts"), Error);

  const std::string p7 = tmp.file("seven.safetensors");
  write_bytes(p7, st_file(R"({"big":{"dtype":"U8","shape":[1,1,1,1,1,1,1],"data_offsets":[0,1]},)"
                          R"("i64":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}})",
                          std::string(16, '\0')));
  SafeTensorsFile g(p7);
  CHECK(g.info("big").shape.size() == 7);
  CHECK_THROWS_WITH_AS(g.tensor("i64"), has(p7 + ": tensor 'i64' is I64"), Error);
  CHECK_THROWS_WITH_AS(g.load_f32("big"), has(p7 + ": tensor 'big' has 7 dimensions [1,1,1,1,1,1,1]"),
                       Error);
  CHECK(g.raw_bytes("i64").size() == 8);
}

TEST_CASE("write_safetensors: argument errors") {
  TempDir tmp;
  const std::string path = tmp.file("args.safetensors");
  Tensor t = Tensor::from_values({1, 2}, Shape{2});
  CHECK_THROWS_WITH_AS(write_safetensors(path, {{"a", t}, {"a", t}}),
                       has(path + ": duplicate tensor name 'a'"), Error);
  CHECK_THROWS_WITH_AS(write_safetensors(path, {{"", t}}), has(path + ": empty tensor name"), Error);
  CHECK_THROWS_WITH_AS(write_safetensors(path, {{"__metadata__", t}}),
                       has(path + ": tensor name '__metadata__' is reserved"), Error);
  CHECK_THROWS_WITH_AS(write_safetensors(path, {{"u", Tensor()}}), has(path + ": tensor 'u' is undefined"),
                       Error);
  float dummy = 0;  // a CUDA-labelled view is never dereferenced by the writer
  Tensor gpu = Tensor::view(&dummy, Shape{1}, DType::F32, Device::CUDA);
  CHECK_THROWS_WITH_AS(write_safetensors(path, {{"a", t}, {"head.weight", gpu}}),
                       has(path + ": tensor 'head.weight' (f32[1]@cuda) is on CUDA; copy it"), Error);
  CHECK_THROWS_WITH_AS(write_safetensors(path, {{"a", t}}, {{"k", std::string("\xff\xfe")}}),
                       has(path + ": tensor names and metadata must be valid UTF-8"), Error);
  CHECK_FALSE(fs::exists(path));
  CHECK(count_temp_files(tmp.dir) == 0);
}

TEST_CASE("write_safetensors: atomic - failures leave no temp file and the old file untouched") {
  TempDir tmp;
  Tensor t = Tensor::from_values({1, 2, 3}, Shape{3});

  // The parent directory does not exist / is a regular file: the temp file cannot be created.
  const std::string no_dir = tmp.file("nope/x.safetensors");
  CHECK_THROWS_WITH_AS(write_safetensors(no_dir, {{"t", t}}),
                       has(no_dir + ": cannot create temporary file"), Error);
  CHECK_THROWS_WITH_AS(write_safetensors(no_dir, {{"t", t}}), has("No such file or directory"), Error);
  CHECK_FALSE(fs::exists(tmp.dir / "nope"));
  write_bytes(tmp.file("plain"), "not a directory");
  const std::string under_file = tmp.file("plain/x.safetensors");
  CHECK_THROWS_WITH_AS(write_safetensors(under_file, {{"t", t}}),
                       has(under_file + ": cannot create temporary file"), Error);
  CHECK_THROWS_WITH_AS(write_safetensors(under_file, {{"t", t}}), has("Not a directory"), Error);
  CHECK(read_bytes(tmp.file("plain")) == "not a directory");

  // An existing good file, then writes that fail at each stage.
  const std::string target = tmp.file("model.safetensors");
  write_safetensors(target, {{"old", t}});
  const std::string old_bytes = read_bytes(target);
  CHECK(count_temp_files(tmp.dir) == 0);

  // 1. The temp name is taken by a directory: creating fails; the directory (not ours) is left alone.
  const std::string tmp_name = target + ".tmp." + std::to_string(::getpid());
  fs::create_directory(tmp_name);
  CHECK_THROWS_WITH_AS(write_safetensors(target, {{"new", t}}), has(target + ": cannot create temporary"),
                       Error);
  CHECK(fs::is_directory(tmp_name));
  fs::remove(tmp_name);
  CHECK(read_bytes(target) == old_bytes);

  // 2. Writing fails part way: a file-size limit makes write() fail with EFBIG after 4 KiB.
  {
    std::vector<double> big(64 * 1024, 0.5);
    Tensor large = Tensor::from_values(big, Shape{static_cast<int64_t>(big.size())});
    struct rlimit old_limit {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    struct rlimit small = old_limit;
    small.rlim_cur = 4096;
    auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    std::string msg;
    try {
      write_safetensors(target, {{"new", large}});
    } catch (const Error& e) {
      msg = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old_limit);
    ::signal(SIGXFSZ, old_handler);
    CHECK(msg.find(target + ": writing failed: File too large") != std::string::npos);
    CHECK(read_bytes(target) == old_bytes);
    CHECK(count_temp_files(tmp.dir) == 0);
  }

  // 3. The rename fails (the target is a non-empty directory): the complete temp file is removed again.
  const std::string dir_target = tmp.file("dir.safetensors");
  fs::create_directory(dir_target);
  write_bytes(dir_target + "/keep", "keep");
  CHECK_THROWS_WITH_AS(write_safetensors(dir_target, {{"new", t}}), has(dir_target + ": renaming '"),
                       Error);
  CHECK(count_temp_files(tmp.dir) == 0);
  CHECK(read_bytes(dir_target + "/keep") == "keep");

  // The old file still reads back, and a good write afterwards replaces it and leaves only the target.
  CHECK(SafeTensorsFile(target).names() == std::vector<std::string>{"old"});
  write_safetensors(target, {{"new", t}});
  CHECK(SafeTensorsFile(target).names() == std::vector<std::string>{"new"});
  CHECK(count_temp_files(tmp.dir) == 0);
}

namespace {

// conv.weight [2,3,1,1], conv.bias [2], bn.running_mean [2] (frozen), gain [] (scalar), empty [0].
void add_small_model(ParamStore& s) {
  s.add("conv.weight", Shape{2, 3, 1, 1});
  s.add("conv.bias", Shape{2});
  s.add("bn.running_mean", Shape{2}, /*trainable=*/false);
  s.add("gain", Shape{});
  s.add("empty", Shape{0});
}

void fill_counting(ParamStore& s, double start) {
  for (int i = 0; i < s.size(); ++i) {
    Tensor v = s.value(ParamRef{i});
    std::vector<double> vals;
    for (int64_t k = 0; k < v.numel(); ++k) vals.push_back(start + 0.25 * static_cast<double>(k + 10 * i));
    if (!vals.empty()) v.copy_from(Tensor::from_values(vals, v.shape(), v.dtype()));
  }
}

}  // namespace

TEST_CASE("param_io: save and load round trip, with dtype conversion") {
  TempDir tmp;
  const std::string path = tmp.file("params.safetensors");
  ParamStore src;
  add_small_model(src);
  src.finalize(Device::CPU);
  fill_counting(src, 1.0);
  save_params(src, path, {{"model", "small"}});

  SafeTensorsFile f(path);
  CHECK(f.names() == src.names());
  CHECK(f.metadata().at("model") == "small");
  CHECK(f.info("conv.weight").shape == std::vector<int64_t>{2, 3, 1, 1});
  CHECK(f.info("gain").shape.empty());

  ParamStore dst;
  add_small_model(dst);
  dst.finalize(Device::CPU);
  load_params(dst, f);
  for (const std::string& n : src.names()) {
    CAPTURE(n);
    CHECK(same_values(dst.value(n), src.value(n)));
  }
  CHECK(dst.value("conv.bias").values() == std::vector<double>{1 + 0.25 * 10, 1 + 0.25 * 11});

  // An f64 store saves F64; loading it into an f32 store converts (these values are exact in f32).
  ParamStore d64;
  add_small_model(d64);
  d64.finalize(Device::CPU, DType::F64);
  fill_counting(d64, -3.0);
  save_params(d64, tmp.file("p64.safetensors"));
  SafeTensorsFile f64(tmp.file("p64.safetensors"));
  CHECK(f64.info("conv.weight").dtype == "F64");
  load_params(dst, f64);
  CHECK(dst.value("conv.weight").values() == d64.value("conv.weight").values());
  CHECK(dst.value("gain").item() == -3.0 + 0.25 * 30);

  // An F32 file into a bf16 store, and an F16 file (made by hand) into an f32 store.
  ParamStore b16;
  add_small_model(b16);
  b16.finalize(Device::CPU, DType::BF16);
  load_params(b16, f);
  CHECK(b16.value("conv.bias").values() == std::vector<double>{3.5, 3.75});

  ParamStore one;
  one.add("w", Shape{2});
  one.finalize(Device::CPU);
  const std::string p16 = tmp.file("half.safetensors");
  write_bytes(p16, st_file(R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})",
                           u16_bytes({0x3C00, 0xC000})));  // 1, -2
  load_params(one, SafeTensorsFile(p16));
  CHECK(one.value("w").values() == std::vector<double>{1, -2});
}

TEST_CASE("param_io: prefix and strict options") {
  TempDir tmp;
  const std::string path = tmp.file("prefixed.safetensors");
  write_safetensors(path, {{"module.a", Tensor::from_values({1, 2}, Shape{2})},
                           {"module.b", Tensor::from_values({3}, Shape{1})},
                           {"decoder.c", Tensor::from_values({4}, Shape{1})}});
  SafeTensorsFile f(path);
  ParamStore s;
  s.add("a", Shape{2});
  s.add("b", Shape{1});
  s.finalize(Device::CPU);
  load_params(s, f, LoadOptions{.strict = true, .prefix = "module."});  // decoder.c is outside the prefix
  CHECK(s.value("a").values() == std::vector<double>{1, 2});
  CHECK(s.value("b").item() == 3);

  ParamStore only_a;
  only_a.add("a", Shape{2});
  only_a.finalize(Device::CPU);
  CHECK_THROWS_WITH_AS(load_params(only_a, f, LoadOptions{.prefix = "module."}),
                       has(path + ": unexpected tensor 'module.b' (not a parameter of the model)"), Error);
  load_params(only_a, f, LoadOptions{.strict = false, .prefix = "module."});
  CHECK(only_a.value("a").values() == std::vector<double>{1, 2});
  CHECK_THROWS_WITH_AS(load_params(only_a, f, LoadOptions{.strict = false}),
                       has(path + ": missing tensor 'a'"), Error);
}

TEST_CASE("param_io: shape mismatch, missing and unexpected tensors are all reported, nothing is copied") {
  TempDir tmp;
  const std::string path = tmp.file("bad_params.safetensors");
  write_safetensors(path, {{"head.weight", Tensor::zeros(Shape{2, 64, 1, 1})},
                           {"a", Tensor::from_values({5}, Shape{1})},
                           {"y", Tensor::zeros(Shape{1})},
                           {"z", Tensor::zeros(Shape{1})},
                           {"idx", Tensor::from_labels({1, 2})}});
  SafeTensorsFile f(path);

  ParamStore s;
  s.add("head.weight", Shape{2, 192, 1, 1});
  s.add("a", Shape{1});
  s.add("x", Shape{3});
  s.add("w", Shape{3});
  s.add("idx", Shape{2});
  s.finalize(Device::CPU);
  s.value("a").fill(-1);
  std::string msg;
  try {
    load_params(s, f);
  } catch (const Error& e) {
    msg = e.what();
  }
  INFO(msg);
  CHECK(msg.find(path + ": tensor 'head.weight' has shape [2,64,1,1], expected [2,192,1,1]") != std::string::npos);
  CHECK(msg.find(path + ": missing tensor 'x'") != std::string::npos);
  CHECK(msg.find(path + ": missing tensor 'w'") != std::string::npos);
  CHECK(msg.find(path + ": unexpected tensor 'y' (not a parameter of the model)") != std::string::npos);
  CHECK(msg.find(path + ": unexpected tensor 'z' (not a parameter of the model)") != std::string::npos);
  CHECK(msg.find(path + ": tensor 'idx' has dtype I32, expected a float dtype") != std::string::npos);
  CHECK(s.value("a").item() == -1);  // validation happens before any copy

  ParamStore unfinished;
  unfinished.add("a", Shape{1});
  CHECK_THROWS_WITH_AS(load_params(unfinished, f), has(path + ": load_params: the parameter store is not"),
                       Error);
  CHECK_THROWS_WITH_AS(save_params(unfinished, path), has(path + ": save_params: the parameter store"),
                       Error);
}

TEST_CASE("param_io: CUDA store round trip") {
  if (!cuda_available()) {
    MESSAGE("skipped: no CUDA device in this build or machine");
    return;
  }
  TempDir tmp;
  const std::string path = tmp.file("gpu.safetensors");
  ParamStore cpu;
  add_small_model(cpu);
  cpu.finalize(Device::CPU);
  fill_counting(cpu, 2.0);
  save_params(cpu, path);

  ParamStore gpu;
  add_small_model(gpu);
  gpu.finalize(Device::CUDA);
  load_params(gpu, SafeTensorsFile(path));
  for (const std::string& n : cpu.names()) CHECK(gpu.value(n).values() == cpu.value(n).values());
  // And back: a CUDA store saves through one host copy.
  save_params(gpu, tmp.file("gpu2.safetensors"));
  CHECK(read_bytes(tmp.file("gpu2.safetensors")) == read_bytes(path));
}
