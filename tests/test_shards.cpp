// Training data pipeline tests: the ustar writer read back by engine/tar.h, WebDataset shard sets
// (ShardWriter), the shard reader (labels, counts, seeded determinism across thread counts,
// augmentation shapes and ranges, flips and crops on hand-made images, corrupt images skipped or
// aborting at the limit, truncated shards, missing or invalid .cls, resume positions), and
// tools/sal_make_shards end to end on a generated image tree and on the shared CIFAR-10 test tar.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "engine/error.h"
#include "engine/image.h"
#include "engine/shard_reader.h"
#include "engine/tar.h"
#include "engine/tar_writer.h"

using namespace sal;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path dir;
  TempDir() {
    static std::atomic<int> counter{0};
    dir =
        fs::temp_directory_path() / ("sal_shard_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string file(const std::string& name) const { return (dir / name).string(); }
};

std::vector<uint8_t> file_bytes(const std::string& path) { return read_file_bytes(path); }

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

std::vector<uint8_t> encode_jpeg(const Image& im, int quality = 95) {
  tjhandle c = tjInitCompress();
  REQUIRE(c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  const int rc =
      tjCompress2(c, im.pixels.data(), im.width, 0, im.height, TJPF_RGB, &buf, &size, TJSAMP_444, quality, 0);
  REQUIRE(rc == 0);
  std::vector<uint8_t> out(buf, buf + size);
  tjFree(buf);
  tjDestroy(c);
  return out;
}

// A solid image whose colour encodes the label: R = 60 * label + 20, G = 200 - 60 * label, B = 90.
Image label_image(int label, int w = 24, int h = 18) {
  Image im(w, h, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      im.at(x, y, 0) = static_cast<uint8_t>(60 * label + 20);
      im.at(x, y, 1) = static_cast<uint8_t>(200 - 60 * label);
      im.at(x, y, 2) = 90;
    }
  return im;
}

// `n` samples, label i % 3, every other one a PNG; `corrupt` sample indices get broken JPEG bytes.
std::vector<std::string> write_set(const TempDir& t, int n, int per_shard, const std::set<int>& corrupt = {}) {
  ShardWriter w(t.file("set"), per_shard);
  for (int i = 0; i < n; ++i) {
    const int label = i % 3;
    const Image im = label_image(label);
    std::string key = cat("s", i < 10 ? "0" : "", i);
    if (corrupt.count(i)) {
      std::vector<uint8_t> bad = encode_jpeg(im);
      bad.resize(bad.size() / 3);  // a JPEG cut off in its scan: libjpeg-turbo reports it, the reader skips it
      w.add(key, "jpg", bad, label);
    } else if (i % 2) {
      w.add(key, "png", encode_png(im), label);
    } else {
      w.add(key, "jpg", encode_jpeg(im), label);
    }
  }
  std::vector<std::string> paths;
  for (const ShardInfo& s : w.finish()) paths.push_back(s.path);
  return paths;
}

ShardReaderOptions eval_options(const std::vector<std::string>& shards, int64_t batch, int64_t size) {
  ShardReaderOptions o;
  o.shards = shards;
  o.batch_size = batch;
  o.image_size = size;
  o.mode = AugmentMode::EvalResize;
  o.shuffle_buffer = 0;
  o.shuffle_shards = false;
  o.epochs = 1;
  o.drop_last = false;
  o.threads = 2;
  o.quiet = true;
  return o;
}

struct Collected {
  std::vector<std::vector<float>> images;
  std::vector<int> labels;
  std::vector<std::string> keys;
  std::vector<int64_t> batch_sizes;
  std::vector<ReaderPosition> positions;  // after each batch
};

Collected collect(ShardReader& r, int max_batches = 1 << 30) {
  Collected c;
  Batch b;
  while (max_batches-- > 0 && r.next(b)) {
    const int64_t n = b.size(), per = b.images.numel() / n;
    const float* p = b.images.data<float>();
    for (int64_t i = 0; i < n; ++i) {
      c.images.emplace_back(p + i * per, p + (i + 1) * per);
      c.labels.push_back(b.labels.data<int32_t>()[i]);
      c.keys.push_back(b.keys[static_cast<size_t>(i)]);
    }
    c.batch_sizes.push_back(n);
    c.positions.push_back(r.position());
  }
  return c;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

int run(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

TEST_CASE("TarWriter: archives read back by TarReader, long names via the ustar prefix, atomic") {
  TempDir t;
  const std::string path = t.file("a.tar");
  const std::string long_name = std::string(120, 'd') + "/" + std::string(90, 'f') + ".bin";
  std::vector<std::pair<std::string, std::string>> files = {{"empty", ""},
                                                            {"one", "x"},
                                                            {"dir/511", std::string(511, 'a')},
                                                            {"512", std::string(512, 'b')},
                                                            {"513.jpg", std::string(513, 'c')},
                                                            {long_name, std::string(3000, 'e')}};
  {
    TarWriter w(path, 1234567);
    for (auto& [n, d] : files) w.add(n, d);
    CHECK(fs::exists(path + ".tmp"));
    CHECK_FALSE(fs::exists(path));
    const uint64_t bytes = w.finish();
    CHECK(bytes == fs::file_size(path));
    CHECK(bytes % 512 == 0);
  }
  CHECK_FALSE(fs::exists(path + ".tmp"));
  TarReader r(path);
  TarEntry e;
  for (auto& [n, d] : files) {
    REQUIRE(r.next(e));
    CHECK(e.name == n);
    CHECK(e.size == d.size());
    std::vector<uint8_t> got = r.read(e);
    CHECK(std::string(got.begin(), got.end()) == d);
  }
  CHECK_FALSE(r.next(e));
  // GNU tar agrees (when it is installed).
  if (run("tar --version > /dev/null 2>&1") == 0) {
    CHECK(run("tar -tf " + path + " > " + t.file("list.txt") + " 2>&1") == 0);
    std::ifstream in(t.file("list.txt"));
    std::string line;
    std::vector<std::string> names;
    while (std::getline(in, line)) names.push_back(line);
    REQUIRE(names.size() == files.size());
    CHECK(names.back() == long_name);
  }

  // Unfinished: no file under the final name, no temporary left behind.
  {
    TarWriter w(t.file("b.tar"));
    w.add("x", "y");
  }
  CHECK_FALSE(fs::exists(t.file("b.tar")));
  CHECK_FALSE(fs::exists(t.file("b.tar.tmp")));
  TarWriter w(t.file("c.tar"));
  CHECK(error_of([&] { w.add(std::string(150, 'n'), "x"); }).find("does not fit") != std::string::npos);
  CHECK(error_of([&] { w.add("", "x"); }).find("empty name") != std::string::npos);
}

TEST_CASE("ShardWriter: PREFIX-%06d.tar shards of N samples, KEY.ext + KEY.cls, byte-reproducible") {
  TempDir t;
  std::vector<std::string> a = write_set(t, 10, 4);
  REQUIRE(a.size() == 3);
  CHECK(a[0] == t.file("set-000000.tar"));
  CHECK(a[2] == t.file("set-000002.tar"));
  std::vector<TarEntry> e = TarReader::list(a[0]);
  REQUIRE(e.size() == 8);
  CHECK(e[0].name == "s00.jpg");
  CHECK(e[1].name == "s00.cls");
  CHECK(e[2].name == "s01.png");
  TarReader r(a[0]);
  CHECK(r.read(e[3]) == std::vector<uint8_t>{'1'});
  CHECK(TarReader::list(a[2]).size() == 4);  // the last shard holds 2 samples
  const std::vector<uint8_t> first = file_bytes(a[1]);
  write_set(t, 10, 4);  // again: identical bytes
  CHECK(file_bytes(a[1]) == first);

  ShardWriter w(t.file("x"), 2);
  CHECK(error_of([&] { w.add("a.b", "jpg", std::vector<uint8_t>{1}, 0); }).find("no '.'") != std::string::npos);
  CHECK(error_of([&] { w.add("a", "gif", std::vector<uint8_t>{1}, 0); }).find("gif") != std::string::npos);
  w.add("k", "jpg", std::vector<uint8_t>{1, 2}, 7);
  const auto& s = w.finish();
  REQUIRE(s.size() == 1);
  CHECK(ShardWriter::summary(s[0]).find("1 samples") != std::string::npos);
  CHECK(s[0].max_label == 7);
}

TEST_CASE("ShardReader: eval batches in stream order, labels, shapes, values") {
  TempDir t;
  const std::vector<std::string> shards = write_set(t, 24, 8);
  ShardReader r(eval_options(shards, 5, 16));
  Collected c = collect(r);
  CHECK(c.batch_sizes == std::vector<int64_t>{5, 5, 5, 5, 4});
  REQUIRE(c.labels.size() == 24);
  for (int i = 0; i < 24; ++i) {
    CHECK(c.labels[static_cast<size_t>(i)] == i % 3);
    CHECK(c.keys[static_cast<size_t>(i)] == cat(shards[static_cast<size_t>(i / 8)], ":s", i < 10 ? "0" : "", i));
    const std::vector<float>& im = c.images[static_cast<size_t>(i)];
    REQUIRE(im.size() == 3 * 16 * 16);
    // The solid colour comes through the codec and the resize (JPEG within a few levels).
    const int label = i % 3;
    CHECK(std::abs(im[0] * 255 - (60 * label + 20)) < 3);
    CHECK(std::abs(im[256 + 100] * 255 - (200 - 60 * label)) < 3);
    CHECK(std::abs(im[512 + 255] * 255 - 90) < 3);
  }
  CHECK(r.stats().delivered == 24);
  CHECK(r.stats().corrupt == 0);
  Batch b;
  CHECK_FALSE(r.next(b));
  CHECK(r.position() == ReaderPosition{1, 0, -1, -1});

  // drop_last drops the partial batch; two epochs deliver every sample twice.
  ShardReaderOptions o = eval_options(shards, 5, 8);
  o.drop_last = true;
  o.epochs = 2;
  ShardReader r2(o);
  Collected c2 = collect(r2);
  CHECK(c2.batch_sizes == std::vector<int64_t>(8, 5));
  CHECK(r2.stats().dropped == 8);
}

TEST_CASE("ShardReader: training batches are seeded, identical for 1 and 2 threads, shuffled per epoch") {
  TempDir t;
  const std::vector<std::string> shards = write_set(t, 30, 7);
  auto make = [&](int threads, uint64_t seed) {
    ShardReaderOptions o = eval_options(shards, 4, 20);
    o.mode = AugmentMode::Train;
    o.shuffle_buffer = 6;
    o.shuffle_shards = true;
    o.seed = seed;
    o.threads = threads;
    o.epochs = 2;
    ShardReader r(o);
    return collect(r);
  };
  Collected a = make(1, 7), b = make(2, 7), c = make(2, 8);
  CHECK(a.keys == b.keys);
  CHECK(a.labels == b.labels);
  CHECK(a.images == b.images);
  CHECK(a.keys != c.keys);
  REQUIRE(a.keys.size() == 60);
  // Each epoch holds every sample once, in a different order.
  std::vector<std::string> e0(a.keys.begin(), a.keys.begin() + 30), e1(a.keys.begin() + 30, a.keys.end());
  CHECK(std::set<std::string>(e0.begin(), e0.end()).size() == 30);
  CHECK(std::set<std::string>(e0.begin(), e0.end()) == std::set<std::string>(e1.begin(), e1.end()));
  CHECK(e0 != e1);
  bool in_stream_order = true;
  for (size_t i = 1; i < 30; ++i) in_stream_order = in_stream_order && e0[i - 1] < e0[i];
  CHECK_FALSE(in_stream_order);
  // Labels still match the images (the colour encodes the label), values in [0,1].
  for (size_t i = 0; i < a.labels.size(); ++i) {
    const std::vector<float>& im = a.images[i];
    CHECK(std::abs(im[210] * 255 - (60 * a.labels[i] + 20)) < 3);
    CHECK(*std::min_element(im.begin(), im.end()) >= 0.0f);
    CHECK(*std::max_element(im.begin(), im.end()) <= 1.0f);
  }
}

TEST_CASE("augment_image: flips, crops, centre crop and the default range on hand-made images") {
  // R = 4x, G = 4y: every pixel says where it came from.
  Image im(64, 64, 3);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) {
      im.at(x, y, 0) = static_cast<uint8_t>(4 * x);
      im.at(x, y, 1) = static_cast<uint8_t>(4 * y);
      im.at(x, y, 2) = static_cast<uint8_t>((x * 7 + y * 13) % 256);
    }
  ShardReaderOptions o;
  o.mode = AugmentMode::Train;
  auto R = [](const std::vector<float>& v, int64_t S, int c, int64_t y, int64_t x) {
    return std::lround(v[static_cast<size_t>((c * S + y) * S + x)] * 255);
  };

  SUBCASE("full-image crop: the output is the image or its mirror, both occur") {
    o.image_size = 64;
    o.scale_min = o.scale_max = 1.0;
    o.ratio_min = o.ratio_max = 1.0;
    int flipped = 0, plain = 0;
    for (uint64_t s = 0; s < 64; ++s) {
      std::mt19937_64 rng(s);
      std::vector<float> out(3 * 64 * 64);
      augment_image(im, o, rng, out.data());
      bool is_plain = true, is_flip = true;
      for (int y = 0; y < 64; ++y)
        for (int x = 0; x < 64; ++x)
          for (int c = 0; c < 3; ++c) {
            is_plain = is_plain && R(out, 64, c, y, x) == im.at(x, y, c);
            is_flip = is_flip && R(out, 64, c, y, x) == im.at(63 - x, y, c);
          }
      CHECK(is_plain != is_flip);
      plain += is_plain;
      flipped += is_flip;
    }
    CHECK(plain > 16);
    CHECK(flipped > 16);
  }
  SUBCASE("quarter-area square crops are translated windows; no flips with flip_p = 0") {
    o.image_size = 32;
    o.scale_min = o.scale_max = 0.25;
    o.ratio_min = o.ratio_max = 1.0;
    o.flip_p = 0;
    std::set<std::pair<long, long>> origins;
    for (uint64_t s = 0; s < 20; ++s) {
      std::mt19937_64 rng(s);
      std::vector<float> out(3 * 32 * 32);
      augment_image(im, o, rng, out.data());
      const long x0 = R(out, 32, 0, 0, 0) / 4, y0 = R(out, 32, 1, 0, 0) / 4;
      CHECK(x0 + 32 <= 64);
      CHECK(y0 + 32 <= 64);
      bool window = true;
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x)
          window = window && R(out, 32, 0, y, x) == 4 * (x0 + x) && R(out, 32, 1, y, x) == 4 * (y0 + y);
      CHECK(window);
      origins.insert({x0, y0});
    }
    CHECK(origins.size() > 10);
  }
  SUBCASE("centre crop of a wide image keeps the middle square") {
    Image wide(40, 20, 3);
    for (int y = 0; y < 20; ++y)
      for (int x = 0; x < 40; ++x) wide.at(x, y, 0) = static_cast<uint8_t>(6 * x);
    o.mode = AugmentMode::EvalCenterCrop;
    o.crop_fraction = 1.0;
    o.image_size = 20;
    std::mt19937_64 rng(0);
    std::vector<float> out(3 * 20 * 20);
    augment_image(wide, o, rng, out.data());
    for (int x = 0; x < 20; ++x) CHECK(R(out, 20, 0, 7, x) == 6 * (10 + x));
  }
  SUBCASE("default RandomResizedCrop: values in [0,1], crops differ") {
    o.image_size = 24;
    std::set<std::vector<float>> outs;
    for (uint64_t s = 0; s < 10; ++s) {
      std::mt19937_64 rng(s);
      std::vector<float> out(3 * 24 * 24);
      augment_image(im, o, rng, out.data());
      CHECK(*std::min_element(out.begin(), out.end()) >= 0.0f);
      CHECK(*std::max_element(out.begin(), out.end()) <= 1.0f);
      outs.insert(out);
    }
    CHECK(outs.size() == 10);
  }
}

TEST_CASE("ShardReader: a corrupt JPEG is skipped, counted and named - too many abort with the limit") {
  TempDir t;
  SUBCASE("one in the middle, under the limit") {
    const std::vector<std::string> shards = write_set(t, 20, 10, {7});
    ShardReaderOptions o = eval_options(shards, 4, 8);
    o.max_corrupt_fraction = 0.1;
    ShardReader r(o);
    Collected c = collect(r);
    CHECK(c.labels.size() == 19);
    CHECK(std::find(c.keys.begin(), c.keys.end(), shards[0] + ":s07") == c.keys.end());
    CHECK(c.keys[7] == shards[0] + ":s08");
    CHECK(r.stats().corrupt == 1);
    REQUIRE(r.corrupt().size() == 1);
    CHECK(r.corrupt()[0].shard == shards[0]);
    CHECK(r.corrupt()[0].key == "s07");
    CHECK(r.corrupt()[0].offset > 0);
    CHECK(!r.corrupt()[0].error.empty());
  }
  SUBCASE("over the default 1% limit") {
    const std::vector<std::string> shards = write_set(t, 20, 10, {3, 9, 12});
    ShardReader r(eval_options(shards, 4, 8));
    std::string err = error_of([&] { collect(r); });
    CHECK(err.find("3 of 20") != std::string::npos);
    CHECK(err.find("max_corrupt_fraction = 0.01") != std::string::npos);
    CHECK(err.find("s12") != std::string::npos);
  }
  SUBCASE("met again in later epochs, a corrupt sample counts once") {
    // 2 of 20 at the limit of 10%. Counting them again in every epoch against the samples taken so far
    // stopped the run at the first sample of epoch 2 (3 of 21).
    const std::vector<std::string> shards = write_set(t, 20, 10, {0, 1});
    ShardReaderOptions o = eval_options(shards, 4, 8);
    o.epochs = 3;
    o.max_corrupt_fraction = 0.1;
    o.corrupt_check_after = 20;
    ShardReader r(o);
    Collected c = collect(r);
    CHECK(c.labels.size() == 3 * 18);
    CHECK(r.stats().corrupt == 2);
    CHECK(r.stats().taken == 60);
    REQUIRE(r.corrupt().size() == 2);
    CHECK(r.corrupt()[1].key == "s01");
  }
  SUBCASE("over the limit once corrupt_check_after samples were taken") {
    const std::vector<std::string> shards = write_set(t, 20, 10, {1, 2, 4});
    ShardReaderOptions o = eval_options(shards, 2, 8);
    o.max_corrupt_fraction = 0.2;
    o.corrupt_check_after = 5;
    ShardReader r(o);
    std::string err = error_of([&] { collect(r); });
    CHECK(err.find("3 of 5") != std::string::npos);
    CHECK(err.find("max_corrupt_fraction = 0.2") != std::string::npos);
  }
}

TEST_CASE("ShardReader: truncated shard, missing .cls, bad .cls name the shard and the offset") {
  TempDir t;
  SUBCASE("truncated") {
    const std::vector<std::string> shards = write_set(t, 12, 12);
    const uint64_t size = fs::file_size(shards[0]);
    fs::resize_file(shards[0], size / 2 + 100);
    ShardReader r(eval_options(shards, 4, 8));
    const std::string err = error_of([&] { collect(r); });
    CHECK(err.find(shards[0]) != std::string::npos);
    CHECK(err.find("truncated") != std::string::npos);
    CHECK(err.find("offset") != std::string::npos);
  }
  auto shard_with = [&](const std::vector<std::pair<std::string, std::string>>& entries) {
    const std::string path = t.file("hand.tar");
    const std::vector<uint8_t> jpg = encode_jpeg(label_image(1));
    TarWriter w(path);
    for (auto& [name, data] : entries) {
      if (data == "JPG")
        w.add(name, jpg.data(), jpg.size());
      else
        w.add(name, data);
    }
    w.finish();
    return path;
  };
  SUBCASE("missing .cls") {
    const std::string p =
        shard_with({{"a.jpg", "JPG"}, {"a.cls", "1"}, {"b.jpg", "JPG"}, {"c.jpg", "JPG"}, {"c.cls", "2"}});
    ShardReader r(eval_options({p}, 1, 8));
    Batch b;
    REQUIRE(r.next(b));  // the sample before the error is delivered
    CHECK(b.keys[0] == p + ":a");
    const std::string err = error_of([&] { r.next(b); });
    CHECK(err.find(p) != std::string::npos);
    CHECK(err.find("'b'") != std::string::npos);
    CHECK(err.find("no .cls") != std::string::npos);
    CHECK(err.find("offset " + std::to_string(TarReader::list(p)[2].header_offset)) != std::string::npos);
  }
  SUBCASE(".cls without an image, and not a class index") {
    const std::string p1 = shard_with({{"a.cls", "1"}});
    ShardReader r1(eval_options({p1}, 1, 8));
    CHECK(error_of([&] { collect(r1); }).find("no .jpg, .jpeg or .png") != std::string::npos);
    const std::string p2 = shard_with({{"a.jpg", "JPG"}, {"a.cls", "x7"}});
    ShardReader r2(eval_options({p2}, 1, 8));
    CHECK(error_of([&] { collect(r2); }).find("holds 'x7', not a class index") != std::string::npos);
    const std::string p3 = shard_with({{"dir/a.jpg", "JPG"}, {"dir/a.cls", "5\n"}});
    ShardReaderOptions o = eval_options({p3}, 1, 8);
    o.num_classes = 3;
    ShardReader r3(o);
    CHECK(error_of([&] { collect(r3); }).find("not a class index in 0..2") != std::string::npos);
    o.num_classes = 6;
    ShardReader r4(o);
    Collected c = collect(r4);
    CHECK(c.labels == std::vector<int>{5});
    REQUIRE(c.keys.size() == 1);
    CHECK(c.keys[0] == p3 + ":dir/a");
  }
}

TEST_CASE("ShardReader: resuming from a position continues with the same batches") {
  TempDir t;
  const std::vector<std::string> shards = write_set(t, 23, 5);
  ShardReaderOptions o = eval_options(shards, 3, 12);
  o.mode = AugmentMode::Train;
  o.shuffle_buffer = 7;
  o.shuffle_shards = true;
  o.seed = 5;
  o.epochs = 2;
  o.drop_last = true;
  o.corrupt_check_after = 1 << 30;
  ShardReader full(o);
  Collected all = collect(full);
  REQUIRE(all.batch_sizes.size() == 14);  // 7 full batches of 3 per epoch
  for (size_t k : {size_t{0}, size_t{3}, size_t{6}, size_t{9}}) {
    const ReaderPosition p = ReaderPosition::parse(all.positions[k].str());
    CHECK(p == all.positions[k]);
    ShardReader resumed(o, p);
    Collected rest = collect(resumed);
    const size_t skip = (k + 1) * 3;
    REQUIRE(rest.keys.size() == all.keys.size() - skip);
    CHECK(std::equal(rest.keys.begin(), rest.keys.end(), all.keys.begin() + static_cast<std::ptrdiff_t>(skip)));
    CHECK(std::equal(rest.images.begin(), rest.images.end(), all.images.begin() + static_cast<std::ptrdiff_t>(skip)));
  }
  CHECK(all.positions[6].epoch == 0);  // after epoch 0's 7th batch (its last 2 samples are dropped)
  CHECK(all.positions[6].consumed == 21);
  CHECK(all.positions[7].epoch == 1);
  CHECK(all.positions[7].consumed == 3);
  CHECK(all.positions[3].consumed == 12);
  // A position that does not fit the stream is an error, not a silent shift.
  ReaderPosition wrong = all.positions[3];
  wrong.sample_index += 1;
  ShardReader bad(o, wrong);
  CHECK(error_of([&] { collect(bad); }).find("does not match the shards") != std::string::npos);
  CHECK(error_of([] { ReaderPosition::parse("epoch=1 consumed=x shard=0 sample=0"); }).find("not an integer") !=
        std::string::npos);
}

TEST_CASE("expand_shards: files, folders and globs, sorted - errors name the spec") {
  TempDir t;
  const std::vector<std::string> shards = write_set(t, 9, 3);
  CHECK(expand_shards({t.dir.string()}) == shards);
  CHECK(expand_shards({t.file("set-*.tar")}) == shards);
  CHECK(expand_shards({shards[1], shards[0]}) == std::vector<std::string>{shards[1], shards[0]});
  CHECK(error_of([&] { expand_shards({t.file("nope.tar")}); }).find("nope.tar: no such shard file") !=
        std::string::npos);
  CHECK(error_of([&] { expand_shards({t.file("none-*.tar")}); }).find("matches no shard") != std::string::npos);
}

TEST_CASE("sal_make_shards: a generated class tree, end to end") {
  TempDir t;
  const std::vector<std::string> classes = {"cat", "ant", "bee"};  // sorted: ant 0, bee 1, cat 2
  for (size_t c = 0; c < classes.size(); ++c) {
    fs::create_directories(t.dir / "tree" / classes[c]);
    const int label = static_cast<int>(std::vector<int>{2, 0, 1}[c]);
    for (int i = 0; i < 4; ++i) {
      const std::string stem = (t.dir / "tree" / classes[c] / cat("img", i)).string();
      if (i % 2)
        write_bytes(stem + ".png", encode_png(label_image(label)));
      else
        write_bytes(stem + ".jpg", encode_jpeg(label_image(label)));
    }
  }
  const std::string out = t.file("out/tree");
  REQUIRE(run(cat(SAL_MAKE_SHARDS, " --tree ", t.file("tree"), " --out ", out, " --per-shard 5 --shuffle --seed 3 > ",
                  t.file("log.txt"), " 2>&1")) == 0);
  const std::vector<std::string> shards = expand_shards({out + "-*.tar"});
  REQUIRE(shards.size() == 3);
  std::ifstream idx(out + "-index.tsv");
  std::string line;
  int lines = 0;
  while (std::getline(idx, line)) ++lines;
  CHECK(lines == 4);
  ShardReader r(eval_options(shards, 12, 8));
  Collected c = collect(r);
  REQUIRE(c.labels.size() == 12);
  std::set<std::string> names;
  for (size_t i = 0; i < 12; ++i) {
    CHECK(std::abs(c.images[i][0] * 255 - (60 * c.labels[i] + 20)) < 3);  // label matches the image
    names.insert(c.keys[i].substr(c.keys[i].find(':') + 11));             // after "NNNNNNNNN_"
  }
  CHECK(names.count("ant_img0") == 1);
  CHECK(names.count("cat_img3") == 1);
  CHECK(names.size() == 12);
  // PNGs stay PNGs: the original bytes.
  CHECK(TarReader::list(shards[0]).size() == 10);

  // With a --labels table; a folder without an index is an error; no source is a usage error.
  write_bytes(t.file("labels.tsv"), std::vector<uint8_t>{'a', 'n', 't', '\t', '7', '\n'});
  CHECK(run(cat(SAL_MAKE_SHARDS, " --tree ", t.file("tree"), " --labels ", t.file("labels.tsv"), " --out ", t.file("x"),
                " > ", t.file("log2.txt"), " 2>&1")) == 1);
  std::ifstream log2(t.file("log2.txt"));
  std::string text((std::istreambuf_iterator<char>(log2)), std::istreambuf_iterator<char>());
  CHECK(text.find("no class index for the folder 'bee'") != std::string::npos);
  CHECK(run(cat(SAL_MAKE_SHARDS, " --out ", t.file("y"), " > /dev/null 2>&1")) == 2);
}

TEST_CASE("sal_make_shards: 300 images of the shared CIFAR-10 test tar, end to end") {
  const std::string tar = std::string(SAL_SHARED_DIR) + "/data/cifar10/test.tar";
  REQUIRE(fs::exists(tar));
  TempDir t;
  const std::string out = t.file("cifar");
  REQUIRE(run(cat(SAL_MAKE_SHARDS, " --tar ", tar, " --out ", out, " --per-shard 128 --shuffle --seed 1 --limit 300 > ",
                  t.file("log.txt"), " 2>&1")) == 0);
  const std::vector<std::string> shards = expand_shards({t.dir.string()});
  REQUIRE(shards.size() == 3);
  CHECK(TarReader::list(shards[2]).size() == 2 * 44);
  const std::vector<std::string> names = {"airplane", "automobile", "bird",  "cat",  "deer",
                                          "dog",      "frog",       "horse", "ship", "truck"};
  ShardReaderOptions o = eval_options(shards, 64, 32);
  o.num_classes = 10;
  ShardReader r(o);
  Collected c = collect(r);
  REQUIRE(c.labels.size() == 300);
  std::set<int> seen;
  for (size_t i = 0; i < 300; ++i) {
    // Key "NNNNNNNNN_<class>_<NNNN>": the label is the class folder's index.
    const std::string key = c.keys[i].substr(c.keys[i].find(':') + 11);
    const std::string cls = key.substr(0, key.rfind('_'));
    const auto it = std::find(names.begin(), names.end(), cls);
    REQUIRE(it != names.end());
    CHECK(c.labels[i] == it - names.begin());
    seen.insert(c.labels[i]);
  }
  CHECK(seen.size() == 10);  // the shuffled subset spans the classes
  CHECK(r.stats().corrupt == 0);
}

TEST_CASE("sal_make_shards: an ImageNet-style labels table (file and label columns), end to end") {
  TempDir t;
  fs::create_directories(t.dir / "set" / "images");
  write_bytes(t.file("set/images/a.jpg"), encode_jpeg(label_image(2)));
  write_bytes(t.file("set/images/b.png"), encode_png(label_image(0)));
  write_bytes(t.file("set/images/c.jpg"), encode_jpeg(label_image(1)));
  // Paths relative to the table's folder (imagenet-sample) or to its images/ folder (imagenet-val).
  const std::string table = "file\tname\tlabel\na.jpg\tx\t2\nimages/b.png\ty\t0\nc.jpg\tz\t1\n";
  write_bytes(t.file("set/labels.tsv"), std::vector<uint8_t>(table.begin(), table.end()));
  const std::string out = t.file("out/list");
  REQUIRE(run(cat(SAL_MAKE_SHARDS, " --list ", t.file("set/labels.tsv"), " --out ", out, " --per-shard 2 > ",
                  t.file("log.txt"), " 2>&1")) == 0);
  const std::vector<std::string> shards = expand_shards({t.file("out")});
  REQUIRE(shards.size() == 2);
  CHECK(TarReader::list(shards[0])[2].name == "000000001_images_b.png");  // the PNG kept as PNG
  ShardReader r(eval_options(shards, 8, 8));
  Collected c = collect(r);
  CHECK(c.labels == std::vector<int>{2, 0, 1});
  for (size_t i = 0; i < 3; ++i) CHECK(std::abs(c.images[i][0] * 255 - (60 * c.labels[i] + 20)) < 3);

  // A missing image and a bad label are errors naming the table and the line.
  const std::string bad = "file\tlabel\nmissing.jpg\t3\n";
  write_bytes(t.file("set/bad.tsv"), std::vector<uint8_t>(bad.begin(), bad.end()));
  CHECK(run(cat(SAL_MAKE_SHARDS, " --list ", t.file("set/bad.tsv"), " --out ", t.file("o2"), " > ", t.file("log2.txt"),
                " 2>&1")) == 1);
  std::ifstream log2(t.file("log2.txt"));
  const std::string text((std::istreambuf_iterator<char>(log2)), std::istreambuf_iterator<char>());
  CHECK(text.find("bad.tsv: line 2: image 'missing.jpg' not found") != std::string::npos);
}
