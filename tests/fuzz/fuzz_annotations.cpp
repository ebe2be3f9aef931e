// libFuzzer target: the annotation / label table parser of the evaluation tools (engine/annotations.h), fed
// any bytes as imagenet-val's annotations.tsv or imagenet-sample's labels.tsv; every accepted row must keep
// the parser's promises (labels >= 0, boxes inside the stated original size).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "engine/annotations.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  sal::fuzz::expect_ok_or_error([&] {
    const sal::Annotations a = sal::parse_annotations(text, "fuzz-annotations.tsv");
    for (const sal::AnnotationRow& r : a.rows) {
      if (r.label < 0 || r.line < 2) std::abort();
      for (const sal::Box& b : r.boxes)
        if (b.empty() || b.x0 < 0 || b.y0 < 0 || b.x1 >= r.orig_width || b.y1 >= r.orig_height) std::abort();
    }
  });
  return 0;
}
