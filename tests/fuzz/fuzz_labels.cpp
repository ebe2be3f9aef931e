// libFuzzer target: the label tables of tools/sal_make_shards (engine/label_table.h), the same bytes read
// as a class index (--tree --labels) and as a label list (--list), every label cell parsed.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "engine/label_table.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  sal::fuzz::expect_ok_or_error([&] {
    std::istringstream in(text);
    for (const auto& [folder, index] : sal::read_class_index(in, "fuzz-classes.tsv"))
      if (index < 0) std::abort();
  });
  sal::fuzz::expect_ok_or_error([&] {
    std::istringstream in(text);
    sal::read_label_list(in, "fuzz-labels.tsv", [](const sal::LabelListRow& r) {
      if (r.line < 2) std::abort();
      sal::fuzz::expect_ok_or_error([&] {
        if (sal::parse_label(r.label, "fuzz-labels.tsv") < 0) std::abort();
      });
    });
  });
  return 0;
}
