// Fault tests of tools/sal_train (docs/reliability.md): each injects one fault and checks that nothing is
// lost and the error says what happened.
//   - SIGKILL halfway through writing a checkpoint (SAL_FAULT_WRITE=...:kill, engine/safetensors.h): the
//     previous checkpoint stays valid, the torn temporary file is not it, and --resume then logs exactly the
//     losses of an uninterrupted run;
//   - a failing write while saving (SAL_FAULT_WRITE=...:fail, a full disk): exit 1 with the path and the
//     errno text, the previous checkpoint kept, no temporary file left, and --resume works;
//   - corrupt images in the middle of a shard: skipped, each reported with its shard, key and offset, the run
//     goes on to its last step;
//   - a truncated shard: exit 1, the error names the shard file, "truncated" and the byte offset;
//   - a black-box weight file with a tensor of the wrong shape or dtype, and a checkpoint with a wrong-shape
//     tensor or a malformed step count on --resume: exit 1, the error names the file and the tensor or key.
// (The NaN-loss guard is tested in tests/test_train.cpp.)
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/safetensors.h"
#include "engine/tar.h"
#include "temp_files.h"
#include "train_cli.h"

using namespace sal;
using namespace sal::test;
namespace fs = std::filesystem;

namespace {

// Files in `dir` whose name starts with `prefix`.
std::vector<std::string> files_starting(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path().string());
  return out;
}

// A copy of `src` with tensor `name` replaced by `replacement` (same metadata, same order).
void rewrite_tensor(const std::string& src, const std::string& dst, const std::string& name, const Tensor& replacement) {
  const SafeTensorsFile f(src);
  REQUIRE(f.contains(name));
  NamedTensors list;
  for (const std::string& n : f.names()) list.emplace_back(n, n == name ? replacement : f.tensor(n).clone());
  write_safetensors(dst, list, f.metadata());
}

// Overwrites `n` bytes of the file at `offset` with `byte`.
void clobber(const std::string& path, uint64_t offset, uint64_t n, char byte) {
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  REQUIRE(io.good());
  io.seekp(static_cast<std::streamoff>(offset));
  const std::string fill(n, byte);
  io.write(fill.data(), static_cast<std::streamsize>(n));
  REQUIRE(io.good());
}

}  // namespace

TEST_CASE("sal_train faults: SIGKILL while writing a checkpoint and then a failing write lose nothing") {
  TempDir t("sal_train_faults_");
  const std::string shards = make_cifar_shards(t, 64, 32);
  const std::string bb = shipped_black_box();
  // The reference: 6 uninterrupted steps.
  REQUIRE(run_status(train_command(shards, bb) + " --steps 6 --out " + t.file("a") + " > " + t.file("a.txt") +
                     " 2>&1") == 0);
  const std::vector<std::string> ref = log_lines(t.file("a/log.jsonl"));
  REQUIRE(ref.size() == 6);

  {  // SIGKILL halfway through the second checkpoint (after step 4)
    const std::string out = t.file("k"), ckpt = out + "/checkpoint.safetensors";
    const std::string cmd = train_command(shards, bb, "SAL_FAULT_WRITE=/checkpoint.safetensors:2:kill") +
                            " --steps 6 --checkpoint-every 2 --out " + out;
    CHECK(run_status(cmd + " > " + t.file("k1.txt") + " 2>&1") == 128 + 9);
    // The checkpoint of step 2 is intact; the torn temporary file of step 4 is beside it and is not valid.
    REQUIRE(fs::exists(ckpt));
    {
      const SafeTensorsFile f(ckpt);
      CHECK(f.metadata().at("step") == "2");
      CHECK(f.contains("adam.m"));
    }
    const std::vector<std::string> torn = files_starting(out, "checkpoint.safetensors.tmp.");
    REQUIRE(torn.size() == 1);
    CHECK(fs::file_size(torn[0]) < fs::file_size(ckpt));
    const std::string err = [&] {
      try {
        SafeTensorsFile f(torn[0]);
      } catch (const Error& e) {
        return std::string(e.what());
      }
      return std::string("(no error)");
    }();
    CHECK(err.find("beyond the data buffer") != std::string::npos);
    CHECK(log_lines(out + "/log.jsonl").size() == 4);  // steps 1-4 were logged before the kill
    // --resume continues from step 2 and logs exactly the uninterrupted run's losses.
    REQUIRE(run_status(train_command(shards, bb) + " --steps 6 --checkpoint-every 2 --resume --out " + out + " > " +
                       t.file("k2.txt") + " 2>&1") == 0);
    CHECK(read_bytes(t.file("k2.txt")).find("after step 2") != std::string::npos);
    CHECK(log_lines(out + "/log.jsonl") == ref);
    CHECK(SafeTensorsFile(ckpt).metadata().at("step") == "6");
    // The resumed run removed the torn temporary file.
    CHECK(read_bytes(t.file("k2.txt")).find("left by an interrupted checkpoint write") != std::string::npos);
    CHECK(files_starting(out, "checkpoint.safetensors.tmp.").empty());
  }

  {  // a write failure (ENOSPC) while saving the second checkpoint
    const std::string out = t.file("w"), ckpt = out + "/checkpoint.safetensors";
    const std::string cmd = train_command(shards, bb, "SAL_FAULT_WRITE=/checkpoint.safetensors:2:fail") +
                            " --steps 6 --checkpoint-every 2 --out " + out;
    CHECK(run_status(cmd + " > " + t.file("w1.txt") + " 2>&1") == 1);
    const std::string msg = read_bytes(t.file("w1.txt"));
    INFO(msg);
    CHECK(msg.find("error: " + ckpt + ": writing failed: No space left on device (nothing written; the target is "
                   "untouched)") != std::string::npos);
    CHECK(SafeTensorsFile(ckpt).metadata().at("step") == "2");
    CHECK(files_starting(out, "checkpoint.safetensors.tmp.").empty());
    REQUIRE(run_status(train_command(shards, bb) + " --steps 6 --checkpoint-every 2 --resume --out " + out + " > " +
                       t.file("w2.txt") + " 2>&1") == 0);
    CHECK(log_lines(out + "/log.jsonl") == ref);
  }
}

TEST_CASE("sal_train faults: corrupt images in the middle of a shard are skipped and reported and the run goes on") {
  TempDir t("sal_train_faults_");
  // 512 images (JPEGs) in 8 shards; 2 corrupt ones (0.4%, under the reader's 1% limit, which counts a
  // corrupt sample again in every epoch) in the second shard.
  const std::string shards = make_cifar_shards(t, 512, 64);
  const std::string shard = t.file("shards/c-000001.tar");
  const std::vector<TarEntry> entries = TarReader::list(shard);
  std::vector<const TarEntry*> images;
  for (const TarEntry& e : entries)
    if (e.name.size() > 4 && e.name.substr(e.name.size() - 4) == ".jpg") images.push_back(&e);
  REQUIRE(images.size() == 64);
  const TarEntry& a = *images[20];
  const TarEntry& b = *images[41];
  clobber(shard, a.data_offset, a.size, '\0');                 // not an image at all
  clobber(shard, b.data_offset + 40, b.size - 40, '\x5a');     // a JPEG whose tables and scan are garbage
  const std::string key_a = a.name.substr(0, a.name.size() - 4), key_b = b.name.substr(0, b.name.size() - 4);

  // 70 steps of 8: more than the first epoch (510 good images), so both corrupt samples are taken.
  const int rc = run_status(train_command(shards, shipped_black_box()) + " --steps 70 --out " +
                            t.file("o") + " > " + t.file("o.txt") + " 2>&1");
  const std::string text = read_bytes(t.file("o.txt"));
  INFO(text);
  REQUIRE(rc == 0);
  CHECK(SafeTensorsFile(t.file("o/checkpoint.safetensors")).metadata().at("step") == "70");
  std::set<std::string> named;
  std::istringstream lines(text);
  std::string line;
  int reports = 0;
  while (std::getline(lines, line)) {
    if (line.find("skipped corrupt image") == std::string::npos) continue;
    ++reports;
    CHECK(line.find(shard) != std::string::npos);
    if (line.find("'" + key_a + "'") != std::string::npos) named.insert(key_a);
    else if (line.find("'" + key_b + "'") != std::string::npos) named.insert(key_b);
    else FAIL("an unexpected corrupt-image report: ", line);
  }
  CHECK(named == std::set<std::string>{key_a, key_b});
  CHECK(reports >= 2);
  CHECK(text.find("offset " + std::to_string(a.header_offset)) != std::string::npos);
}

TEST_CASE("sal_train faults: a truncated shard stops the run with an error naming the shard and the offset") {
  TempDir t("sal_train_faults_");
  const std::string shards = make_cifar_shards(t, 64, 32);
  const std::string shard = t.file("shards/c-000001.tar");
  const std::vector<TarEntry> entries = TarReader::list(shard);
  REQUIRE(entries.size() == 64);
  const TarEntry& cut = entries[30];
  fs::resize_file(shard, cut.data_offset + cut.size / 2);  // in the middle of an entry's data
  const int rc = run_status(train_command(shards, shipped_black_box()) + " --steps 6 --out " + t.file("o") + " > " +
                            t.file("o.txt") + " 2>&1");
  const std::string text = read_bytes(t.file("o.txt"));
  INFO(text);
  CHECK(rc == 1);
  CHECK(text.find("error: " + shard + ": truncated") != std::string::npos);
  CHECK(text.find("offset " + std::to_string(cut.header_offset)) != std::string::npos);
}

TEST_CASE("sal_train faults: weight and checkpoint files with a wrong shape or dtype name the tensor") {
  TempDir t("sal_train_faults_");
  const std::string shards = make_cifar_shards(t, 64, 32);
  const std::string bb = shipped_black_box();
  struct Outcome {
    int rc;
    std::string text;
  };
  const auto train = [&](const std::string& black_box, const std::string& extra, const std::string& name) {
    const int rc = run_status(train_command(shards, black_box) + " " + extra + " > " + t.file(name) + " 2>&1");
    return Outcome{rc, read_bytes(t.file(name))};
  };

  {  // black box: a tensor of the wrong shape
    rewrite_tensor(bb, t.file("shape.safetensors"), "conv1.weight", Tensor::zeros(Shape{16, 3, 3, 2}));
    const Outcome o = train(t.file("shape.safetensors"), "--steps 2 --out " + t.file("o1"), "o1.txt");
    const std::string& text = o.text;
    INFO(text);
    CHECK(o.rc == 1);
    CHECK(text.find(t.file("shape.safetensors") + ": tensor 'conv1.weight' has shape [16,3,3,2], expected "
                                                  "[16,3,3,3]") != std::string::npos);
  }
  {  // black box: a tensor of an integer dtype
    rewrite_tensor(bb, t.file("dtype.safetensors"), "bn1.bias", Tensor::zeros(Shape{16}, DType::I32));
    const Outcome o = train(t.file("dtype.safetensors"), "--steps 2 --out " + t.file("o2"), "o2.txt");
    const std::string& text = o.text;
    INFO(text);
    CHECK(o.rc == 1);
    CHECK(text.find(t.file("dtype.safetensors") + ": tensor 'bn1.bias' has dtype I32, expected a float dtype") !=
          std::string::npos);
  }
  {  // checkpoint: a masker tensor of the wrong shape, on --resume
    REQUIRE(train(bb, "--steps 2 --out " + t.file("c"), "c1.txt").rc == 0);
    const std::string ckpt = t.file("c/checkpoint.safetensors");
    const SafeTensorsFile f(ckpt);
    const std::string name = f.names().front();
    const SafeTensorInfo in = f.info(name);
    rewrite_tensor(ckpt, ckpt, name, Tensor::zeros(Shape{in.numel() + 1}));
    const Outcome o = train(bb, "--steps 4 --resume --out " + t.file("c"), "c2.txt");
    const std::string& text = o.text;
    INFO(text);
    CHECK(o.rc == 1);
    CHECK(text.find(ckpt + ": tensor '" + name + "' has shape [" + std::to_string(in.numel() + 1) + "], expected " +
                    in.shape_str()) != std::string::npos);
  }
  // checkpoint: damaged metadata on --resume. Each error names the checkpoint (the step count was a bare
  // "stoll" from std::stoll before; the random states and the reader position named no file before).
  const struct {
    const char *key, *value, *want;
  } damaged[] = {
      {"step", "2x", ": metadata 'step' is not a non-negative integer: '2x'"},
      {"rng_labels", "12 34", ": cannot parse the random state 'rng_labels'"},
      {"rng_objective", "", ": cannot parse the random state 'rng_objective'"},
      {"reader_position", "epoch=0 consumed=x", ": reader position 'epoch=0 consumed=x': 'x' is not an integer"},
  };
  REQUIRE(train(bb, "--steps 2 --out " + t.file("s"), "s1.txt").rc == 0);
  const std::string ckpt = t.file("s/checkpoint.safetensors");
  std::map<std::string, std::string> meta;
  NamedTensors list;
  {
    const SafeTensorsFile f(ckpt);
    meta = f.metadata();
    for (const std::string& n : f.names()) list.emplace_back(n, f.tensor(n).clone());
  }
  for (const auto& d : damaged) {
    INFO(d.key);
    REQUIRE(meta.count(d.key));
    std::map<std::string, std::string> bad = meta;
    bad[d.key] = d.value;
    write_safetensors(ckpt, list, bad);
    const Outcome o = train(bb, "--steps 4 --resume --out " + t.file("s"), "s2.txt");
    const std::string& text = o.text;
    INFO(text);
    CHECK(o.rc == 1);
    CHECK(text.find(ckpt + d.want) != std::string::npos);
  }
}
