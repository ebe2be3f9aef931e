// WebDataset shard reader: see shard_reader.h for the pipeline, augmentation, determinism and errors.
#include "engine/shard_reader.h"

#include <glob.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "engine/error.h"
#include "engine/tar.h"

namespace sal {

namespace fs = std::filesystem;

// ---------------------------------------------------------------- shard lists and positions

std::vector<std::string> expand_shards(const std::vector<std::string>& specs) {
  std::vector<std::string> out;
  for (const std::string& spec : specs) {
    std::vector<std::string> found;
    std::error_code ec;
    if (fs::is_directory(spec, ec)) {
      for (const auto& e : fs::directory_iterator(spec))
        if (e.is_regular_file() && e.path().extension() == ".tar") found.push_back(e.path().string());
      SAL_CHECK(!found.empty(), spec, ": folder holds no *.tar shards");
    } else if (spec.find_first_of("*?[") != std::string::npos) {
      glob_t g{};
      const int rc = ::glob(spec.c_str(), 0, nullptr, &g);
      for (size_t i = 0; rc == 0 && i < g.gl_pathc; ++i) found.push_back(g.gl_pathv[i]);
      ::globfree(&g);
      SAL_CHECK(!found.empty(), spec, ": pattern matches no shard files");
    } else {
      SAL_CHECK(fs::is_regular_file(spec, ec), spec, ": no such shard file");
      found.push_back(spec);
    }
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  SAL_CHECK(!out.empty(), "expand_shards: no shards given");
  return out;
}

std::string ReaderPosition::str() const {
  return cat("epoch=", epoch, " consumed=", consumed, " shard=", shard_index, " sample=", sample_index);
}

ReaderPosition ReaderPosition::parse(const std::string& text) {
  ReaderPosition p;
  std::istringstream in(text);
  std::string item;
  int seen = 0;
  while (in >> item) {
    const size_t eq = item.find('=');
    SAL_CHECK(eq != std::string::npos, "reader position '", text, "': '", item, "' is not key=value");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    int64_t v = 0;
    try {
      size_t used = 0;
      v = std::stoll(value, &used);
      if (used != value.size()) throw std::invalid_argument(value);
    } catch (const std::exception&) {
      fail("reader position '", text, "': '", value, "' is not an integer");
    }
    if (key == "epoch")
      p.epoch = v, seen |= 1;
    else if (key == "consumed")
      p.consumed = v, seen |= 2;
    else if (key == "shard")
      p.shard_index = v, seen |= 4;
    else if (key == "sample")
      p.sample_index = v, seen |= 8;
    else
      fail("reader position '", text, "': unknown key '", key, "'");
  }
  SAL_CHECK(seen == 15, "reader position '", text, "': expected epoch=, consumed=, shard= and sample=");
  SAL_CHECK(p.epoch >= 0 && p.consumed >= 0, "reader position '", text, "': negative epoch or count");
  return p;
}

// ---------------------------------------------------------------- random streams

namespace {

uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A seed for one stream: (seed, epoch, purpose, index) mixed.
uint64_t stream_seed(uint64_t seed, int64_t epoch, uint64_t purpose, int64_t index = 0) {
  uint64_t h = splitmix(seed);
  h = splitmix(h ^ static_cast<uint64_t>(epoch));
  h = splitmix(h ^ purpose);
  return splitmix(h ^ static_cast<uint64_t>(index));
}

double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }
double uniform(std::mt19937_64& rng, double lo, double hi) { return lo + (hi - lo) * uniform01(rng); }
// Integer in [0, n), n > 0.
uint64_t below(std::mt19937_64& rng, uint64_t n) { return rng() % n; }

// Bilinear sampling (align_corners=false, like torch interpolate) of the box [x0, x0+bw) x [y0, y0+bh) of
// `im` into out[3,S,S]; source coordinates are clamped to [lo, hi] per axis.
void sample_box(const Image& im, double x0, double y0, double bw, double bh, int lox, int hix, int loy, int hiy,
                bool flip, int64_t S, float* out) {
  std::vector<int> cx0(static_cast<size_t>(S)), cx1(static_cast<size_t>(S));
  std::vector<float> fx(static_cast<size_t>(S));
  for (int64_t o = 0; o < S; ++o) {
    double s = x0 + (static_cast<double>(o) + 0.5) * bw / static_cast<double>(S) - 0.5;
    s = std::clamp(s, static_cast<double>(lox), static_cast<double>(hix));
    const int i = static_cast<int>(std::floor(s));
    cx0[static_cast<size_t>(o)] = i;
    cx1[static_cast<size_t>(o)] = std::min(i + 1, hix);
    fx[static_cast<size_t>(o)] = static_cast<float>(s - i);
  }
  const size_t plane = static_cast<size_t>(S * S);
  const int C = im.channels;
  const uint8_t* px = im.pixels.data();
  for (int64_t oy = 0; oy < S; ++oy) {
    double s = y0 + (static_cast<double>(oy) + 0.5) * bh / static_cast<double>(S) - 0.5;
    s = std::clamp(s, static_cast<double>(loy), static_cast<double>(hiy));
    const int iy = static_cast<int>(std::floor(s));
    const int iy1 = std::min(iy + 1, hiy);
    const float fy = static_cast<float>(s - iy);
    const uint8_t* r0 = px + static_cast<size_t>(iy) * im.width * C;
    const uint8_t* r1 = px + static_cast<size_t>(iy1) * im.width * C;
    for (int64_t ox = 0; ox < S; ++ox) {
      const size_t o = static_cast<size_t>(ox);
      const int a = cx0[o] * C, b = cx1[o] * C;
      const float wx = fx[o];
      const size_t dst = static_cast<size_t>(oy * S + (flip ? S - 1 - ox : ox));
      for (int c = 0; c < 3; ++c) {
        const int cc = C == 3 ? c : 0;
        const float top = r0[a + cc] + wx * (static_cast<float>(r0[b + cc]) - r0[a + cc]);
        const float bot = r1[a + cc] + wx * (static_cast<float>(r1[b + cc]) - r1[a + cc]);
        out[c * plane + dst] = (top + fy * (bot - top)) * (1.0f / 255.0f);
      }
    }
  }
}

}  // namespace

void augment_image(const Image& im, const ShardReaderOptions& opt, std::mt19937_64& rng, float* out) {
  const int W = im.width, H = im.height;
  const int64_t S = opt.image_size;
  SAL_CHECK(W > 0 && H > 0 && (im.channels == 3 || im.channels == 1), "augment_image: ", W, "x", H, "x", im.channels,
            " image");
  if (opt.mode == AugmentMode::Train) {
    // torchvision RandomResizedCrop.get_params, then a horizontal flip.
    const double area = static_cast<double>(W) * H;
    const double lr0 = std::log(opt.ratio_min), lr1 = std::log(opt.ratio_max);
    int cw = 0, ch = 0, cx = 0, cy = 0;
    bool found = false;
    for (int attempt = 0; attempt < 10 && !found; ++attempt) {
      const double target = area * uniform(rng, opt.scale_min, opt.scale_max);
      const double ar = std::exp(uniform(rng, lr0, lr1));
      const int w = static_cast<int>(std::lround(std::sqrt(target * ar)));
      const int h = static_cast<int>(std::lround(std::sqrt(target / ar)));
      if (w > 0 && w <= W && h > 0 && h <= H) {
        cy = static_cast<int>(below(rng, static_cast<uint64_t>(H - h + 1)));
        cx = static_cast<int>(below(rng, static_cast<uint64_t>(W - w + 1)));
        cw = w;
        ch = h;
        found = true;
      }
    }
    if (!found) {  // the central crop, its ratio clamped to the range
      const double in_ratio = static_cast<double>(W) / H;
      if (in_ratio < opt.ratio_min) {
        cw = W;
        ch = std::clamp(static_cast<int>(std::lround(W / opt.ratio_min)), 1, H);
      } else if (in_ratio > opt.ratio_max) {
        ch = H;
        cw = std::clamp(static_cast<int>(std::lround(H * opt.ratio_max)), 1, W);
      } else {
        cw = W;
        ch = H;
      }
      cy = (H - ch) / 2;
      cx = (W - cw) / 2;
    }
    const bool flip = uniform01(rng) < opt.flip_p;
    sample_box(im, cx, cy, cw, ch, cx, cx + cw - 1, cy, cy + ch - 1, flip, S, out);
  } else if (opt.mode == AugmentMode::EvalCenterCrop) {
    const double scale = std::min(W, H) * opt.crop_fraction / static_cast<double>(S);  // source px per output px
    const double box = scale * static_cast<double>(S);
    sample_box(im, (W - box) / 2, (H - box) / 2, box, box, 0, W - 1, 0, H - 1, false, S, out);
  } else {
    sample_box(im, 0, 0, W, H, 0, W - 1, 0, H - 1, false, S, out);
  }
}

// ---------------------------------------------------------------- the reader

struct ShardReader::Record {
  std::shared_ptr<TarReader> tar;
  int shard = 0;
  int64_t sample_index = 0;
  TarEntry image;
  std::string key;
  int label = 0;
};

struct ShardReader::Task {
  int64_t seq = 0, epoch = 0, index = 0;  // index: sample number in the epoch
  int shard = 0;
  int64_t sample_index = 0;
  uint64_t offset = 0;
  std::string key, name;  // name: "<shard>:<entry>" for decode errors
  std::vector<uint8_t> bytes;
  int label = 0;
};

struct ShardReader::Result {
  enum Kind { Sample, EpochEnd, End, Failure } kind = Sample;
  int64_t epoch = 0;
  int shard = 0;
  int64_t sample_index = 0;
  uint64_t offset = 0;
  std::string key, error;
  std::exception_ptr exception;
  std::vector<float> pixels;  // [3,S,S]
  int label = 0;
  bool corrupt = false;
};

namespace {
struct Stopping {};  // unwinds the reader thread when the reader is destroyed

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string printable(const std::vector<uint8_t>& b) {
  std::string s;
  for (size_t i = 0; i < b.size() && i < 32; ++i) s += (b[i] >= 0x20 && b[i] < 0x7f) ? static_cast<char>(b[i]) : '?';
  if (b.size() > 32) s += "...";
  return s;
}
}  // namespace

ShardReader::ShardReader(ShardReaderOptions options, const ReaderPosition& start)
    : opt_(std::move(options)), start_(start), pos_(start) {
  SAL_CHECK(!opt_.shards.empty(), "ShardReader: no shards");
  SAL_CHECK(opt_.batch_size > 0 && opt_.image_size > 0, "ShardReader: batch size ", opt_.batch_size, " and image size ",
            opt_.image_size, " must be positive");
  SAL_CHECK(opt_.threads >= 1 && opt_.prefetch_batches >= 1, "ShardReader: threads ", opt_.threads,
            " and prefetch_batches ", opt_.prefetch_batches, " must be at least 1");
  SAL_CHECK(opt_.scale_min > 0 && opt_.scale_min <= opt_.scale_max && opt_.scale_max <= 1,
            "ShardReader: crop scale range [", opt_.scale_min, ", ", opt_.scale_max, "] must lie in (0, 1]");
  SAL_CHECK(opt_.ratio_min > 0 && opt_.ratio_min <= opt_.ratio_max, "ShardReader: aspect ratio range [", opt_.ratio_min,
            ", ", opt_.ratio_max, "] is empty or not positive");
  SAL_CHECK(opt_.crop_fraction > 0 && opt_.crop_fraction <= 1, "ShardReader: crop_fraction ", opt_.crop_fraction,
            " must lie in (0, 1]");
  SAL_CHECK(opt_.max_corrupt_fraction >= 0, "ShardReader: negative max_corrupt_fraction");
  SAL_CHECK(start.epoch >= 0 && start.consumed >= 0 && (opt_.epochs == 0 || start.epoch <= opt_.epochs),
            "ShardReader: start position ", start.str(), " is outside the ", opt_.epochs, " epochs");
  reader_ = std::thread([this] { reader_loop(); });
  for (int i = 0; i < opt_.threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ShardReader::~ShardReader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_tasks_.notify_all();
  cv_space_.notify_all();
  cv_results_.notify_all();
  reader_.join();
  for (auto& w : workers_) w.join();
}

void ShardReader::emit(std::unique_ptr<Task> task) {
  const int64_t capacity = std::max<int64_t>(opt_.prefetch_batches * opt_.batch_size, 2 * opt_.threads);
  std::unique_lock<std::mutex> lock(mu_);
  cv_space_.wait(lock, [&] { return stop_ || issued_ - next_seq_ < capacity; });
  if (stop_) throw Stopping{};
  task->seq = issued_++;
  tasks_.push_back(std::move(task));
  cv_tasks_.notify_one();
}

void ShardReader::put_result(int64_t seq, std::unique_ptr<Result> r) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (seq < 0) seq = issued_++;  // markers take the next sequence number
    results_[seq] = std::move(r);
  }
  cv_results_.notify_all();
}

std::unique_ptr<ShardReader::Result> ShardReader::take(int64_t seq) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_results_.wait(lock, [&] { return results_.count(seq) > 0; });
  auto it = results_.find(seq);
  std::unique_ptr<Result> r = std::move(it->second);
  results_.erase(it);
  ++next_seq_;
  cv_space_.notify_one();
  return r;
}

void ShardReader::worker_loop() {
  const size_t n = static_cast<size_t>(3 * opt_.image_size * opt_.image_size);
  for (;;) {
    std::unique_ptr<Task> t;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_tasks_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
      if (stop_) return;
      t = std::move(tasks_.front());
      tasks_.pop_front();
    }
    auto r = std::make_unique<Result>();
    r->epoch = t->epoch;
    r->shard = t->shard;
    r->sample_index = t->sample_index;
    r->offset = t->offset;
    r->key = t->key;
    r->label = t->label;
    try {
      Image im = decode_image(t->bytes, t->name);
      std::mt19937_64 rng(stream_seed(opt_.seed, t->epoch, 3, t->index));
      r->pixels.resize(n);
      augment_image(im, opt_, rng, r->pixels.data());
    } catch (const std::exception& e) {
      r->corrupt = true;
      r->error = e.what();
      r->pixels.clear();
    }
    put_result(t->seq, std::move(r));
  }
}

void ShardReader::reader_loop() {
  try {
    const int n_shards = static_cast<int>(opt_.shards.size());
    for (int64_t epoch = start_.epoch; opt_.epochs == 0 || epoch < opt_.epochs; ++epoch) {
      std::vector<int> order(static_cast<size_t>(n_shards));
      for (int i = 0; i < n_shards; ++i) order[static_cast<size_t>(i)] = i;
      if (opt_.shuffle_shards) {
        std::mt19937_64 rng(stream_seed(opt_.seed, epoch, 1));
        for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[below(rng, i)]);
      }
      std::mt19937_64 buffer_rng(stream_seed(opt_.seed, epoch, 2));
      const int64_t skip = epoch == start_.epoch ? start_.consumed : 0;
      int64_t index = 0;  // samples of this epoch emitted (or skipped) so far

      auto emit_record = [&](Record& r) {
        if (index < skip) {
          if (index == skip - 1 && start_.shard_index >= 0 &&
              (r.shard != start_.shard_index || r.sample_index != start_.sample_index))
            fail("ShardReader: resume position ", start_.str(), " does not match the shards: sample ", index,
                 " of epoch ", epoch, " is sample ", r.sample_index, " of shard ", r.shard, " (",
                 opt_.shards[static_cast<size_t>(r.shard)], "), expected sample ", start_.sample_index, " of shard ",
                 start_.shard_index, " (same shards, seed and options?)");
          ++index;
          return;
        }
        auto t = std::make_unique<Task>();
        t->epoch = epoch;
        t->index = index++;
        t->shard = r.shard;
        t->sample_index = r.sample_index;
        t->offset = r.image.header_offset;
        t->key = r.key;
        t->label = r.label;
        t->name = r.tar->path() + ":" + r.image.name;
        t->bytes = r.tar->read(r.image);
        emit(std::move(t));
      };

      std::vector<Record> buffer;
      auto push = [&](Record&& r) {
        if (opt_.shuffle_buffer <= 1) {
          emit_record(r);
          return;
        }
        buffer.push_back(std::move(r));
        if (static_cast<int64_t>(buffer.size()) >= opt_.shuffle_buffer) {
          std::swap(buffer[below(buffer_rng, buffer.size())], buffer.back());
          emit_record(buffer.back());
          buffer.pop_back();
        }
      };

      for (int si : order) {
        const std::string& path = opt_.shards[static_cast<size_t>(si)];
        auto tar = std::make_shared<TarReader>(path);
        int64_t sample_index = 0;
        // The group of consecutive entries sharing a key.
        std::string key;
        TarEntry img, cls;
        bool has_img = false, has_cls = false;
        auto flush = [&] {
          if (!has_img && !has_cls) return;
          if (!has_cls)
            fail(path, ": sample '", key, "' (entry '", img.name, "' at offset ", img.header_offset,
                 ") has no .cls entry");
          if (!has_img)
            fail(path, ": sample '", key, "' (entry '", cls.name, "' at offset ", cls.header_offset,
                 ") has no .jpg, .jpeg or .png image");
          // A class index is a few digits: a longer entry is not read at all (a corrupt size could be huge).
          std::vector<uint8_t> text = cls.size <= 64 ? tar->read(cls) : std::vector<uint8_t>{'.', '.', '.'};
          while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
          int64_t label = 0;
          bool ok = !text.empty() && text.size() <= 9;
          // Digits only, at most 9 of them: the value is computed only then (no overflow on long text,
          // found by tests/fuzz/fuzz_shard.cpp).
          for (size_t i = 0; ok && i < text.size(); ++i) {
            ok = text[i] >= '0' && text[i] <= '9';
            if (ok) label = label * 10 + (text[i] - '0');
          }
          ok = ok && (opt_.num_classes <= 0 || label < opt_.num_classes);
          if (!ok)
            fail(path, ": sample '", key, "': entry '", cls.name, "' at offset ", cls.header_offset, " holds '",
                 printable(text), "', not a class index",
                 opt_.num_classes > 0 ? cat(" in 0..", opt_.num_classes - 1) : std::string());
          Record r;
          r.tar = tar;
          r.shard = si;
          r.sample_index = sample_index++;
          r.image = img;
          r.key = key;
          r.label = static_cast<int>(label);
          push(std::move(r));
          has_img = has_cls = false;
        };
        TarEntry e;
        while (tar->next(e)) {
          const size_t slash = e.name.rfind('/');
          const size_t dot = e.name.find('.', slash == std::string::npos ? 0 : slash + 1);
          const std::string k = e.name.substr(0, dot);
          const std::string ext = dot == std::string::npos ? std::string() : lower(e.name.substr(dot + 1));
          if (k != key) {
            flush();
            key = k;
          }
          if (ext == "cls") {
            SAL_CHECK(!has_cls, path, ": sample '", key, "' has a second .cls entry at offset ", e.header_offset);
            cls = e;
            has_cls = true;
          } else if (ext == "jpg" || ext == "jpeg" || ext == "png") {
            SAL_CHECK(!has_img, path, ": sample '", key, "' has a second image entry '", e.name, "' at offset ",
                      e.header_offset);
            img = e;
            has_img = true;
          }
        }
        flush();
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (stop_) return;
        }
      }
      while (!buffer.empty()) {
        std::swap(buffer[below(buffer_rng, buffer.size())], buffer.back());
        emit_record(buffer.back());
        buffer.pop_back();
      }
      SAL_CHECK(index >= skip, "ShardReader: resume position ", start_.str(), " lies past the end of epoch ", epoch,
                " (", index, " samples)");
      auto m = std::make_unique<Result>();
      m->kind = Result::EpochEnd;
      m->epoch = epoch;
      put_result(-1, std::move(m));
    }
    auto m = std::make_unique<Result>();
    m->kind = Result::End;
    put_result(-1, std::move(m));
  } catch (const Stopping&) {
  } catch (...) {
    auto m = std::make_unique<Result>();
    m->kind = Result::Failure;
    m->exception = std::current_exception();
    put_result(-1, std::move(m));
  }
}

bool ShardReader::next(Batch& batch) {
  if (finished_) return false;
  const int64_t B = opt_.batch_size, S = opt_.image_size;
  std::vector<std::unique_ptr<Result>> got;
  got.reserve(static_cast<size_t>(B));
  auto check_corrupt = [&](bool epoch_end) {
    if (stats_.corrupt == 0 || (!epoch_end && stats_.taken < opt_.corrupt_check_after)) return;
    // Distinct samples taken: every sample of an epoch at most (the corrupt ones are counted once).
    const int64_t distinct = epoch_samples_ >= 0 ? std::min(stats_.taken, epoch_samples_) : stats_.taken;
    if (static_cast<double>(stats_.corrupt) <= opt_.max_corrupt_fraction * static_cast<double>(distinct)) return;
    finished_ = true;
    const CorruptSample& last = corrupt_.back();
    fail("ShardReader: ", stats_.corrupt, " of ", distinct, " samples taken are corrupt (",
         100.0 * static_cast<double>(stats_.corrupt) / static_cast<double>(distinct),
         "%), more than the limit max_corrupt_fraction = ", opt_.max_corrupt_fraction, " (",
         100.0 * opt_.max_corrupt_fraction, "%); the last: ", last.shard, ": sample '", last.key, "' (offset ",
         last.offset, "): ", last.error);
  };
  for (;;) {
    std::unique_ptr<Result> r = take(next_seq_);
    if (r->kind == Result::Failure) {
      finished_ = true;
      std::rethrow_exception(r->exception);
    }
    if (r->kind == Result::End) {
      finished_ = true;
      return false;
    }
    if (r->kind == Result::EpochEnd) {
      // pos_.consumed counts the whole epoch, also when this reader started inside it (a resume).
      if (epoch_samples_ < 0) epoch_samples_ = pos_.consumed;
      check_corrupt(true);
      pos_ = ReaderPosition{r->epoch + 1, 0, -1, -1};
      if (got.empty()) continue;
      if (opt_.drop_last) {
        stats_.dropped += static_cast<int64_t>(got.size());
        got.clear();
        continue;
      }
      break;
    }
    ++stats_.taken;
    pos_.epoch = r->epoch;
    ++pos_.consumed;
    pos_.shard_index = r->shard;
    pos_.sample_index = r->sample_index;
    if (r->corrupt) {
      if (corrupt_seen_.emplace(r->shard, r->sample_index).second) {  // met for the first time
        ++stats_.corrupt;
        const std::string& shard = opt_.shards[static_cast<size_t>(r->shard)];
        corrupt_.push_back({shard, r->key, r->error, r->offset});
        if (!opt_.quiet)
          std::fprintf(stderr, "ShardReader: skipped corrupt image %s: sample '%s' (offset %llu): %s\n",
                       shard.c_str(), r->key.c_str(), static_cast<unsigned long long>(r->offset), r->error.c_str());
      }
      check_corrupt(false);
      continue;
    }
    got.push_back(std::move(r));
    if (static_cast<int64_t>(got.size()) == B) break;
  }
  const int64_t n = static_cast<int64_t>(got.size());
  if (!batch.images.defined() || batch.images.shape() != Shape{n, 3, S, S} || batch.images.dtype() != DType::F32 ||
      batch.images.on_cuda())
    batch.images = Tensor::empty({n, 3, S, S});
  if (!batch.labels.defined() || batch.labels.shape() != Shape{n} || batch.labels.dtype() != DType::I32 ||
      batch.labels.on_cuda())
    batch.labels = Tensor::empty({n}, DType::I32);
  float* img = batch.images.data<float>();
  int32_t* lab = batch.labels.data<int32_t>();
  batch.keys.resize(static_cast<size_t>(n));
  const size_t per = static_cast<size_t>(3 * S * S);
  for (int64_t i = 0; i < n; ++i) {
    const Result& r = *got[static_cast<size_t>(i)];
    std::memcpy(img + static_cast<size_t>(i) * per, r.pixels.data(), per * sizeof(float));
    lab[i] = r.label;
    batch.keys[static_cast<size_t>(i)] = opt_.shards[static_cast<size_t>(r.shard)] + ":" + r.key;
  }
  batch.epoch = got.front()->epoch;
  stats_.delivered += n;
  return true;
}

}  // namespace sal
