// Training/eval data from WebDataset tar shards (written by tools/sal_make_shards or any WebDataset
// writer): samples KEY.jpg / KEY.jpeg / KEY.png + KEY.cls, decoded and augmented on worker threads into
// batches of a CPU f32 tensor [B,3,S,S] in [0,1] and an I32 label tensor [B].
//
// Pipeline: one reader thread walks the shards (engine/tar.h: headers only, plus the tiny .cls),
// pairs each image with its .cls (consecutive entries with the same key; other extensions are
// ignored), passes sample records through a shuffle buffer, reads the chosen sample's bytes and hands
// it to `threads` worker threads that decode (engine/image.h, libjpeg-turbo / libpng) and augment it.
// next() takes the decoded samples back in stream order, so what a batch holds never depends on
// thread timing. At most `prefetch_batches` batches of samples are in flight.
//
// Augmentation (per sample, from its own seeded random stream):
//   Train:           torchvision RandomResizedCrop: area fraction uniform in [scale_min, scale_max],
//                    log aspect ratio uniform in [log ratio_min, log ratio_max], up to 10 tries, then the
//                    central crop clamped to the ratio range; the crop is resized to SxS (bilinear,
//                    align_corners=false, no antialiasing), then flipped horizontally with probability flip_p.
//   EvalCenterCrop:  the short side resized to S / crop_fraction (torchvision Resize(256) + CenterCrop(224)
//                    for S = 224, crop_fraction 0.875), the central SxS kept; done as one bilinear sampling
//                    of the corresponding box of the original image.
//   EvalResize:      the whole image resized to SxS.
//
// Determinism: for a given seed, shard list and options, the sequence of batches (which samples, in which
// order, their crops and flips, the pixel values) is fixed, and it does NOT depend on the thread count
// or on timing: shard order per epoch, the shuffle buffer and each sample's augmentation draw from
// random streams derived from (seed, epoch, sample number in the epoch) with std::mt19937_64 (fully
// specified by the standard) and our own uniform mapping. Not fixed: how far ahead the threads run
// and when exactly files are read, and, across machines, float results of std::log/std::exp in the crop
// parameters (libm) could differ in the last bit and move a crop by a pixel.
//
// Errors (sal::Error): a truncated or malformed shard names the shard and the byte offset (from
// engine/tar.h); an image without its .cls, a .cls without an image, or a .cls that is not a class index
// names the shard, the key and the entry's offset. Such errors are raised by next() when the stream
// reaches them (the batches before are delivered). A corrupt image is skipped: counted, listed in
// corrupt() with its shard, key and decoder message, and reported on stderr (unless quiet), the first
// time this reader meets it (later epochs skip it again silently). When the fraction of distinct corrupt
// samples among the distinct samples taken (all taken, at most one epoch's worth) exceeds
// max_corrupt_fraction (checked once corrupt_check_after samples were taken, and at the end of every
// epoch), next() throws an error that names the limit. (Counting a corrupt sample again in every epoch
// against the samples taken so far tripped the limit early in the second epoch of a data set under it.)
//
// Resume: position() after a batch says where the stream stands; pass it as `start` to a new reader with
// the same shards, seed and options and it continues with exactly the batch that would have come next.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/image.h"
#include "engine/tensor.h"

namespace sal {

// Shard files from specs: a file, a folder (its *.tar files, sorted), or a glob pattern (sorted
// matches). Errors name a spec that matches nothing.
std::vector<std::string> expand_shards(const std::vector<std::string>& specs);

enum class AugmentMode { Train, EvalCenterCrop, EvalResize };

struct ShardReaderOptions {
  std::vector<std::string> shards;  // shard files (see expand_shards)
  int64_t batch_size = 32;
  int64_t image_size = 224;  // S: batches are [B,3,S,S]
  AugmentMode mode = AugmentMode::Train;
  double scale_min = 0.08, scale_max = 1.0;             // Train: crop area fraction
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;  // Train: crop aspect ratio (width / height)
  double flip_p = 0.5;                                  // Train: horizontal flip probability
  double crop_fraction = 0.875;                         // EvalCenterCrop: S / resized short side
  int threads = 2;                                      // decode + augment workers
  int prefetch_batches = 3;                             // batches of samples in flight
  int64_t shuffle_buffer = 1000;                        // samples; 0 or 1: stream order
  bool shuffle_shards = true;                           // a new shard order every epoch
  uint64_t seed = 0;
  int64_t epochs = 0;     // 0: endless
  bool drop_last = true;  // drop an epoch's last partial batch
  int num_classes = 0;    // > 0: labels must be below it
  double max_corrupt_fraction = 0.01;
  int64_t corrupt_check_after = 200;  // samples taken before the fraction is checked
  bool quiet = false;                 // no stderr line per corrupt image
};

// Where a reader stands: `consumed` samples of epoch `epoch` have been taken (corrupt ones included;
// 0..the epoch's sample count). The last of them was sample `sample_index` (0-based, in file order) of
// shard `shard_index` (index into options.shards); both are -1 when consumed is 0. A reader started from
// a position checks that its stream reaches the same shard sample there (so a changed shard list or
// seed is an error, not a silent misalignment).
struct ReaderPosition {
  int64_t epoch = 0;
  int64_t consumed = 0;
  int64_t shard_index = -1;
  int64_t sample_index = -1;

  std::string str() const;                          // "epoch=1 consumed=640 shard=3 sample=17"
  static ReaderPosition parse(const std::string&);  // the inverse; errors name the text
  bool operator==(const ReaderPosition&) const = default;
};

struct Batch {
  Tensor images;                  // f32 CPU [B,3,S,S], RGB in [0,1]
  Tensor labels;                  // i32 CPU [B]
  std::vector<std::string> keys;  // "<shard file>:<key>" per row
  int64_t epoch = 0;
  int64_t size() const { return images.defined() ? images.dim(0) : 0; }
};

struct CorruptSample {
  std::string shard, key, error;
  uint64_t offset = 0;  // header offset of the image entry in the shard
};

struct ReaderStats {
  int64_t taken = 0;      // samples taken from the stream (corrupt included)
  int64_t delivered = 0;  // samples put into batches
  int64_t corrupt = 0;    // distinct corrupt samples met (once each, whatever the epochs)
  int64_t dropped = 0;  // samples of dropped last batches
};

// Augments one decoded image into out[3*S*S] (planar RGB in [0,1], S = opt.image_size) by opt.mode,
// drawing from `rng`; what the workers run, exposed for tests and tools.
void augment_image(const Image& image, const ShardReaderOptions& opt, std::mt19937_64& rng, float* out);

class ShardReader {
 public:
  explicit ShardReader(ShardReaderOptions options, const ReaderPosition& start = {});
  ~ShardReader();  // stops and joins the threads
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  // Fills the next batch; false once `epochs` epochs are done. batch.images/labels are overwritten in
  // place when their shapes match (keep no views of a previous batch), else newly allocated. Batches never
  // span epochs; an epoch's last batch is partial unless drop_last.
  bool next(Batch& batch);

  ReaderPosition position() const { return pos_; }  // after the last batch returned
  const ReaderStats& stats() const { return stats_; }
  const std::vector<CorruptSample>& corrupt() const { return corrupt_; }
  const ShardReaderOptions& options() const { return opt_; }

 private:
  struct Record;  // a sample located in a shard
  struct Task;    // a sample's bytes on their way to a worker
  struct Result;  // a decoded sample (or a marker: end of epoch, end of data, error)

  ShardReaderOptions opt_;
  ReaderPosition start_, pos_;
  ReaderStats stats_;
  std::vector<CorruptSample> corrupt_;
  std::set<std::pair<int64_t, int64_t>> corrupt_seen_;  // (shard, sample index) of corrupt_
  int64_t epoch_samples_ = -1;  // samples in an epoch, once an epoch end was reached (-1 before)

  std::mutex mu_;
  std::condition_variable cv_tasks_, cv_results_, cv_space_;
  std::deque<std::unique_ptr<Task>> tasks_;
  std::map<int64_t, std::unique_ptr<Result>> results_;  // by global sequence number
  int64_t issued_ = 0;                                  // sequence numbers handed out by the reader thread
  int64_t next_seq_ = 0;                                // the next sequence number next() takes
  bool stop_ = false;
  bool finished_ = false;  // next() saw the end or an error

  std::thread reader_;
  std::vector<std::thread> workers_;

  void reader_loop();
  void worker_loop();
  void emit(std::unique_ptr<Task> task);
  void put_result(int64_t seq, std::unique_ptr<Result> r);
  std::unique_ptr<Result> take(int64_t seq);
};

}  // namespace sal
