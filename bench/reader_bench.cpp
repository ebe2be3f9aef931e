// The training reader (engine/shard_reader.h) alone, in images/s: JPEG decoding, the random resized
// crop, the flip and the conversion to a float batch, on N worker threads, batch 64 at 224x224 (the
// MobileNet preset's augmentation: crop area 0.35-1). What sal_train's loop can get per second before
// the GPU does anything: the number to set beside a training step's images/s.
//
//   reader/train_224/threads:N   ShardReader::next() on N decode threads, batch 64
//
// Shards: $SAL_READER_SHARDS (a folder, file or glob of WebDataset shards), else the first 256 images
// of ../shared/data/imagenet-sample written into a temporary folder at start. Validate, then time: the
// first batch must be [64,3,224,224] with every value in [0,1] and every label in [0,1000).
//
//   reader_bench --benchmark_min_time=2
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_main.h"
#include "engine/error.h"
#include "engine/shard_reader.h"
#include "engine/tar_writer.h"

using namespace sal;

namespace {

constexpr int64_t kBatch = 64, kSize = 224, kSamples = 256;

// <repo>/../shared/data/imagenet-sample (this file is <repo>/bench/reader_bench.cpp).
std::filesystem::path sample_dir() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "shared" / "data" /
         "imagenet-sample";
}

// The first kSamples rows of imagenet-sample/labels.tsv (file, wnid, label, name) as shards of 64.
std::string write_sample_shards() {
  const std::filesystem::path dir = sample_dir();
  std::ifstream labels(dir / "labels.tsv");
  SAL_CHECK(labels.good(), (dir / "labels.tsv").string(), " is missing: set SAL_READER_SHARDS to shards of your own");
  const std::filesystem::path out = std::filesystem::temp_directory_path() / "sal_reader_bench";
  std::filesystem::remove_all(out);
  std::filesystem::create_directories(out);
  ShardWriter w((out / "in").string(), 64);
  std::string line;
  std::getline(labels, line);  // header
  for (int64_t i = 0; i < kSamples && std::getline(labels, line); ++i) {
    std::istringstream row(line);
    std::string file, wnid, label;
    std::getline(row, file, '\t');
    std::getline(row, wnid, '\t');
    std::getline(row, label, '\t');
    std::ifstream img(dir / file, std::ios::binary);
    SAL_CHECK(img.good(), (dir / file).string(), ": cannot read");
    const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(img)), std::istreambuf_iterator<char>());
    w.add("s" + std::to_string(i), "jpg", bytes, std::stoi(label));
  }
  w.finish();
  return out.string();
}

const std::string& shards() {
  static const std::string s = [] {
    const char* env = std::getenv("SAL_READER_SHARDS");
    return env ? std::string(env) : write_sample_shards();
  }();
  return s;
}

std::string check_batch(const Batch& b) {
  if (b.images.shape() != (Shape{kBatch, 3, kSize, kSize})) return "batch shape " + b.images.shape().str();
  const float* p = b.images.data<float>();
  for (int64_t i = 0; i < b.images.numel(); ++i)
    if (!(p[i] >= 0.f && p[i] <= 1.f)) return "a value outside [0,1]: " + std::to_string(p[i]);
  const int32_t* l = b.labels.data<int32_t>();
  for (int64_t i = 0; i < kBatch; ++i)
    if (l[i] < 0 || l[i] >= 1000) return "label " + std::to_string(l[i]);
  return "";
}

void BM_reader(benchmark::State& state) {
  try {
    ShardReaderOptions o;
    o.shards = expand_shards({shards()});
    o.batch_size = kBatch;
    o.image_size = kSize;
    o.mode = AugmentMode::Train;
    o.scale_min = 0.35;  // sal_train's mobilenet preset
    o.threads = static_cast<int>(state.range(0));
    o.num_classes = 1000;
    ShardReader reader(o, ReaderPosition{});
    Batch b;
    SAL_CHECK(reader.next(b), "the shards gave no batch");
    const std::string err = check_batch(b);
    if (!err.empty()) return state.SkipWithError(err.c_str());
    for (auto _ : state) {
      reader.next(b);
      benchmark::DoNotOptimize(b.images.raw());
    }
    state.SetItemsProcessed(state.iterations() * kBatch);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void register_all() {
  auto* b = benchmark::RegisterBenchmark("reader/train_224", BM_reader);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int t = 1; t <= cores; t *= 2) b->Arg(t);
  if ((cores & (cores - 1)) != 0) b->Arg(cores);
  b->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  return sal::bench::run_benchmarks(argc, argv);
}
