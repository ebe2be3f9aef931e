// Parser of the labelled-image tables of ../shared/data: imagenet-val/annotations.tsv
// (file, label, orig_width, orig_height, boxes) and imagenet-sample/labels.tsv (file, wnid, label, name).
//
// Format: tab-separated text; the first line is a header naming the columns, in any order. "file" and
// "label" are required; "orig_width", "orig_height" and "boxes" are read when present (all three or
// none); other columns are ignored. Every further line is one image; empty lines (and a final
// newline, "\r\n" endings) are skipped. A label is a decimal integer >= 0; widths and heights are
// integers >= 1; boxes is a ';'-separated list of "x0,y0,x1,y1" in original pixels, 0-based and
// inclusive (x0 <= x1 < orig_width, y0 <= y1 < orig_height), possibly empty.
//
// The parser takes the text and a source name (the file path, for messages), so it can be fed any
// bytes: every error is a sal::Error naming the source, the 1-based line and the column, e.g.
//   "data/annotations.tsv:17: column 'boxes': box 2 '5,9,3,12' has x1 < x0".
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sal {

// A pixel box, inclusive corners: columns x0..x1, rows y0..y1. Empty when x1 < x0 or y1 < y0.
struct Box {
  int x0 = 0, y0 = 0, x1 = -1, y1 = -1;
  bool empty() const { return x1 < x0 || y1 < y0; }
  int64_t width() const { return empty() ? 0 : int64_t{x1} - x0 + 1; }
  int64_t height() const { return empty() ? 0 : int64_t{y1} - y0 + 1; }
  int64_t area() const { return width() * height(); }
  bool operator==(const Box&) const = default;
};

struct AnnotationRow {
  std::string file;
  int label = 0;
  int orig_width = 0, orig_height = 0;  // 0 when the table has no size columns
  std::vector<Box> boxes;               // original pixels; empty when the table has no boxes column
  int line = 0;                         // 1-based line in the source
};

struct Annotations {
  std::string source;
  bool has_boxes = false;  // the table has the orig_width, orig_height and boxes columns
  std::vector<AnnotationRow> rows;
};

// Parses the table text; `source` names it in errors. Throws sal::Error on any malformed line.
Annotations parse_annotations(std::string_view text, const std::string& source);
// Reads and parses a file (errors name the path).
Annotations read_annotations(const std::string& path);

}  // namespace sal
