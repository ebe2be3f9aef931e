// libFuzzer target: a WebDataset shard through the whole ShardReader pipeline (tar walk, image/.cls
// pairing, label parsing, decode, augmentation, the corrupt-image limit), one epoch at 8x8 pixels with one
// worker thread, in stream order.
#include <cstddef>
#include <cstdint>

#include "engine/shard_reader.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sal::fuzz::MemFile file(data, size);
  sal::fuzz::expect_ok_or_error([&] {
    sal::ShardReaderOptions o;
    o.shards = {file.path()};
    o.batch_size = 2;
    o.image_size = 8;
    o.mode = sal::AugmentMode::Train;
    o.threads = 1;
    o.prefetch_batches = 1;
    o.shuffle_buffer = 0;
    o.shuffle_shards = false;
    o.epochs = 1;
    o.drop_last = false;
    o.num_classes = 10;
    o.quiet = true;
    sal::ShardReader reader(o);
    sal::Batch b;
    while (reader.next(b)) {
      if (b.size() <= 0 || b.labels.numel() != b.size()) std::abort();
      for (int64_t i = 0; i < b.size(); ++i) {
        const int32_t label = b.labels.data<int32_t>()[i];
        if (label < 0 || label >= 10) std::abort();
      }
    }
  });
  return 0;
}
